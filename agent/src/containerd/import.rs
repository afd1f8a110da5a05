//! Importing the preloaded images into containerd, natively over its gRPC API.
//!
//! For each archive under the images directory, in the `k8s.io` namespace (the one
//! CRI, and so the kubelet, uses) and under one lease so garbage collection cannot
//! take half-written content:
//!
//! 1. write the config, layer and manifest blobs to the content store, labelled with
//!    the `containerd.io/gc.ref.*` references that keep them alive once the image
//!    record points at the manifest;
//! 2. unpack for the overlayfs snapshotter: per layer, prepare a snapshot on the
//!    parent chain ID, apply the layer with the diff service, commit it under its
//!    chain ID (this is what makes CRI report the image as present and usable);
//! 3. create (or update) the image record with the reference, pinned so the kubelet's
//!    image garbage collection never removes an image nobody could pull again.
//!
//! This is what `ctr images import` does through the client library, without shelling
//! out and without the 22 MB `ctr` in the image. Writing again what exists is a no-op,
//! so a restarted containerd (or a persistent root) is handled.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::diff_client::DiffClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::{
    ApplyRequest, CreateImageRequest, CreateRequest, DeleteRequest, Image as ImageRecord, Info,
    UpdateImageRequest, UpdateRequest, WriteAction, WriteContentRequest,
};
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{Code, Status};
use containerd_client::types::Descriptor as ApiDescriptor;

use super::archive::{ArchiveError, Descriptor, Image};
use super::client::{self, ClientError};
use super::{NAMESPACE, SNAPSHOTTER};

/// Content is streamed in chunks well under gRPC's 4 MiB default message limit.
const CHUNK: usize = 1 << 20;
/// Labels every preloaded image carries (containerd `internal/cri/labels`): managed by
/// CRI, and pinned against the kubelet's image garbage collection.
const IMAGE_LABELS: [(&str, &str); 2] = [
    ("io.cri-containerd.image", "managed"),
    ("io.cri-containerd.pinned", "pinned"),
];

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot list the image archives in {}", .0.display())]
    ListDir(PathBuf, #[source] std::io::Error),
    #[error("cannot read image archive {}", .0.display())]
    Read(PathBuf, #[source] std::io::Error),
    #[error("image archive {}", .0.display())]
    Archive(PathBuf, #[source] ArchiveError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("importing {reference}: {step} failed")]
    Call {
        reference: String,
        step: String,
        #[source]
        source: Status,
    },
}

/// An image now in containerd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub reference: String,
    /// The manifest digest containerd lists for it.
    pub digest: String,
}

/// Imports every `*.tar` under `dir` (sorted by name) through containerd at `socket`.
pub async fn import_dir(socket: &Path, dir: &Path) -> Result<Vec<Imported>, ImportError> {
    let mut archives: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| ImportError::ListDir(dir.to_owned(), e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "tar"))
        .collect();
    archives.sort();
    let channel = client::connect(socket).await?;
    let mut imported = Vec::new();
    for path in archives {
        let bytes = std::fs::read(&path).map_err(|e| ImportError::Read(path.clone(), e))?;
        let image = Image::parse(&bytes).map_err(|e| ImportError::Archive(path.clone(), e))?;
        imported.push(import(channel.clone(), &image).await?);
    }
    Ok(imported)
}

/// Imports one parsed image: content, unpacked snapshots, image record.
pub async fn import(channel: Channel, image: &Image) -> Result<Imported, ImportError> {
    let importer = Importer {
        channel,
        image,
        lease: format!("cairn-import-{}", &image.manifest.digest[7..19]),
    };
    importer.create_lease().await?;
    let result = importer.run().await;
    // Dropping the lease hands the content and snapshots to the image's references.
    importer.delete_lease().await;
    result
}

struct Importer<'a> {
    channel: Channel,
    image: &'a Image,
    lease: String,
}

impl Importer<'_> {
    async fn run(&self) -> Result<Imported, ImportError> {
        let chain = self.image.chain_ids();
        let top = chain.last().cloned().unwrap_or_default();
        let snapshot_ref = format!("containerd.io/gc.ref.snapshot.{SNAPSHOTTER}");
        self.write_blob(&self.image.config, &[(snapshot_ref, top)])
            .await?;
        for layer in &self.image.layers {
            self.write_blob(layer, &[]).await?;
        }
        let mut refs = vec![(
            "containerd.io/gc.ref.content.config".to_owned(),
            self.image.config.digest.clone(),
        )];
        for (i, layer) in self.image.layers.iter().enumerate() {
            refs.push((
                format!("containerd.io/gc.ref.content.l.{i}"),
                layer.digest.clone(),
            ));
        }
        self.write_blob(&self.image.manifest, &refs).await?;
        self.unpack(&chain).await?;
        self.put_image_record().await?;
        Ok(Imported {
            reference: self.image.reference.clone(),
            digest: self.image.manifest.digest.clone(),
        })
    }

    fn request<T>(&self, message: T) -> containerd_client::tonic::Request<T> {
        client::request(message, NAMESPACE, Some(&self.lease))
    }

    fn failed(&self, step: impl Into<String>) -> impl FnOnce(Status) -> ImportError {
        let (reference, step) = (self.image.reference.clone(), step.into());
        move |source| ImportError::Call {
            reference,
            step,
            source,
        }
    }

    async fn create_lease(&self) -> Result<(), ImportError> {
        let labels = HashMap::from([(
            // Expires by itself should the agent die mid-import.
            "containerd.io/gc.expire".to_owned(),
            "2100-01-01T00:00:00Z".to_owned(),
        )]);
        let request = CreateRequest {
            id: self.lease.clone(),
            labels,
        };
        match LeasesClient::new(self.channel.clone())
            .create(client::request(request, NAMESPACE, None))
            .await
        {
            Err(status) if status.code() != Code::AlreadyExists => {
                Err(self.failed("creating a lease")(status))
            }
            _ => Ok(()),
        }
    }

    async fn delete_lease(&self) {
        let request = DeleteRequest {
            id: self.lease.clone(),
            sync: false,
        };
        let result = LeasesClient::new(self.channel.clone())
            .delete(client::request(request, NAMESPACE, None))
            .await;
        if let Err(status) = result {
            tracing::warn!(lease = %self.lease, "cannot delete the import lease: {status}");
        }
    }

    /// Streams one blob into the content store; an existing blob only gets its labels.
    async fn write_blob(
        &self,
        descriptor: &Descriptor,
        labels: &[(String, String)],
    ) -> Result<(), ImportError> {
        let data = self.image.blob(&descriptor.digest).to_vec();
        let labels: HashMap<String, String> = labels.iter().cloned().collect();
        let reference = format!("cairn-import-{}", descriptor.digest);
        let mut messages = Vec::new();
        let chunks: Vec<&[u8]> = if data.is_empty() {
            vec![&[]]
        } else {
            data.chunks(CHUNK).collect()
        };
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.iter().enumerate() {
            messages.push(WriteContentRequest {
                action: if i == last {
                    WriteAction::Commit
                } else {
                    WriteAction::Write
                } as i32,
                r#ref: reference.clone(),
                total: descriptor.size,
                expected: descriptor.digest.clone(),
                offset: (i * CHUNK) as i64,
                data: chunk.to_vec(),
                labels: if i == last {
                    labels.clone()
                } else {
                    HashMap::new()
                },
            });
        }
        let result = ContentClient::new(self.channel.clone())
            .write(self.request(tokio_stream::iter(messages)))
            .await;
        let outcome = match result {
            Ok(response) => {
                let mut stream = response.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(_)) => continue,
                        Ok(None) => break Ok(()),
                        Err(status) => break Err(status),
                    }
                }
            }
            Err(status) => Err(status),
        };
        match outcome {
            Ok(()) => Ok(()),
            Err(status) if status.code() == Code::AlreadyExists => {
                self.label_blob(descriptor, labels).await
            }
            Err(status) => Err(self.failed(format!("writing blob {}", descriptor.digest))(
                status,
            )),
        }
    }

    async fn label_blob(
        &self,
        descriptor: &Descriptor,
        labels: HashMap<String, String>,
    ) -> Result<(), ImportError> {
        if labels.is_empty() {
            return Ok(());
        }
        let paths = labels.keys().map(|key| format!("labels.{key}")).collect();
        let request = UpdateRequest {
            info: Some(Info {
                digest: descriptor.digest.clone(),
                labels,
                ..Info::default()
            }),
            update_mask: Some(prost_types::FieldMask { paths }),
        };
        ContentClient::new(self.channel.clone())
            .update(self.request(request))
            .await
            .map(|_| ())
            .map_err(self.failed(format!("labelling blob {}", descriptor.digest)))
    }

    /// Applies each layer on its parent snapshot unless its chain ID is committed.
    async fn unpack(&self, chain: &[String]) -> Result<(), ImportError> {
        let mut snapshots = SnapshotsClient::new(self.channel.clone());
        let mut diff = DiffClient::new(self.channel.clone());
        for (i, (layer, chain_id)) in self.image.layers.iter().zip(chain).enumerate() {
            let stat = StatSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_owned(),
                key: chain_id.clone(),
            };
            if snapshots.stat(self.request(stat)).await.is_ok() {
                continue;
            }
            let key = format!("cairn-unpack-{chain_id}");
            // A key left by an import that died half-way would make prepare fail.
            let remove = RemoveSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_owned(),
                key: key.clone(),
            };
            let _ = snapshots.remove(self.request(remove)).await;
            let prepare = PrepareSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_owned(),
                key: key.clone(),
                parent: if i == 0 {
                    String::new()
                } else {
                    chain[i - 1].clone()
                },
                labels: HashMap::new(),
            };
            let mounts = snapshots
                .prepare(self.request(prepare))
                .await
                .map_err(self.failed(format!("preparing snapshot for layer {i}")))?
                .into_inner()
                .mounts;
            let apply = ApplyRequest {
                diff: Some(api_descriptor(layer)),
                mounts,
                payloads: HashMap::new(),
                sync_fs: false,
            };
            diff.apply(self.request(apply))
                .await
                .map_err(self.failed(format!("applying layer {i}")))?;
            let commit = CommitSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_owned(),
                name: chain_id.clone(),
                key,
                labels: HashMap::new(),
            };
            match snapshots.commit(self.request(commit)).await {
                Err(status) if status.code() != Code::AlreadyExists => {
                    return Err(self.failed(format!("committing layer {i}"))(status))
                }
                _ => {}
            }
        }
        Ok(())
    }

    async fn put_image_record(&self) -> Result<(), ImportError> {
        let record = ImageRecord {
            name: self.image.reference.clone(),
            labels: IMAGE_LABELS
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            target: Some(api_descriptor(&self.image.manifest)),
            ..ImageRecord::default()
        };
        let mut images = ImagesClient::new(self.channel.clone());
        let create = CreateImageRequest {
            image: Some(record.clone()),
            source_date_epoch: None,
        };
        match images.create(self.request(create)).await {
            Ok(_) => Ok(()),
            Err(status) if status.code() == Code::AlreadyExists => {
                let update = UpdateImageRequest {
                    image: Some(record),
                    update_mask: None,
                    source_date_epoch: None,
                };
                images
                    .update(self.request(update))
                    .await
                    .map(|_| ())
                    .map_err(self.failed("updating the image record"))
            }
            Err(status) => Err(self.failed("creating the image record")(status)),
        }
    }
}

fn api_descriptor(descriptor: &Descriptor) -> ApiDescriptor {
    ApiDescriptor {
        media_type: descriptor.media_type.clone(),
        digest: descriptor.digest.clone(),
        size: descriptor.size,
        annotations: HashMap::new(),
    }
}
