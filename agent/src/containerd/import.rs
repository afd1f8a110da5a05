//! Importing image archives into containerd, natively over its gRPC API: the preloaded
//! images at boot ([`import_dir`], pinned) and archives loaded over the node API
//! ([`load`], not pinned). One load, in the `k8s.io` namespace (the one CRI, and so the
//! kubelet, uses) and under a lease of its own:
//!
//! 1. stream the archive through [`archive::read`] on a blocking thread: each blob goes
//!    straight into the content store, one `Write` stream per blob, committed only
//!    once its digest is verified (a blob the store already holds is still hashed,
//!    not written again);
//! 2. check the images it names ([`archive::images`]) and store the manifests the node
//!    writes for `docker save` archives;
//! 3. label each manifest and config with the `containerd.io/gc.ref.*` references
//!    that keep its content and snapshots alive once an image record points at it;
//! 4. unpack for the overlayfs snapshotter: per layer, prepare a snapshot on the
//!    parent chain ID, apply the layer with the diff service (whose digest of what it
//!    applied must be the config's diff ID), commit it under its chain ID (this is
//!    what makes CRI report the image as present and usable);
//! 5. only then create (or update) the image records, labelled managed by CRI and, for
//!    the preloaded images, pinned, so the kubelet's image garbage collection never
//!    removes an image nobody could pull again;
//! 6. delete the lease with a synchronous garbage collection. After a success the
//!    records hold what they need; after a failure at any step everything the load
//!    wrote goes with the lease: blobs, partial writes, snapshots. No record points at
//!    missing content and no orphan blob stays.
//!
//! This is what `ctr images import` does through the client library, without shelling
//! out and without the 22 MB `ctr` in the image. Writing again what exists is a no-op,
//! so a restarted containerd (or a persistent root) is handled.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::diff_client::DiffClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::{
    AbortRequest, AddResourceRequest, ApplyRequest, CreateImageRequest, CreateRequest,
    DeleteRequest, GetImageRequest, Image as ImageRecord, Info, InfoRequest, ListRequest, Resource,
    UpdateImageRequest, UpdateRequest, WriteAction, WriteContentRequest,
};
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{Code, Status};
use containerd_client::types::Descriptor as ApiDescriptor;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::archive::{self, ArchiveError, BlobSink, Descriptor, ImagePlan, Limits, Stopped};
use super::client::{self, ClientError};
use super::{NAMESPACE, SNAPSHOTTER};

/// Content is streamed in chunks well under gRPC's 4 MiB default message limit.
const CHUNK: usize = 1 << 20;
/// CRI's labels (containerd `internal/cri/labels`): the image is managed by CRI; and
/// pinned against the kubelet's image garbage collection.
const MANAGED: (&str, &str) = ("io.cri-containerd.image", "managed");
pub const PINNED: (&str, &str) = ("io.cri-containerd.pinned", "pinned");
/// How long a lease outlives an agent that died mid-load before containerd's garbage
/// collection takes what it held; the next load of the same kind deletes it sooner.
const LEASE_EXPIRY: Duration = Duration::from_secs(24 * 3600);
/// Lease ID prefixes: boot imports, and loads over the node API.
const BOOT_LEASE: &str = "cairn-import-";
const LOAD_LEASE: &str = "cairn-load-";

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot list the image archives in {}", .0.display())]
    ListDir(PathBuf, #[source] std::io::Error),
    #[error("cannot open image archive {}", .0.display())]
    Open(PathBuf, #[source] std::io::Error),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("image archive {}", .0.display())]
    Load(PathBuf, #[source] LoadError),
}

/// Why a load failed; nothing of it stays in containerd.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid image archive")]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{step} failed")]
    Call {
        step: String,
        #[source]
        source: Status,
    },
    #[error("{0} is a preloaded (pinned) image; load the archive under another name")]
    Pinned(String),
    #[error("layer {index} of {image} ({digest}) unpacks to {applied}, but the config's diff ID is {expected}")]
    DiffId {
        image: String,
        index: usize,
        digest: String,
        applied: String,
        expected: String,
    },
    #[error("the archive reader stopped unexpectedly")]
    Reader(#[source] tokio::task::JoinError),
}

/// An image reference now in containerd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub reference: String,
    /// The target (manifest) digest containerd lists for it.
    pub digest: String,
    /// Manifest, config and layers as stored.
    pub size: u64,
}

/// Imports every `*.tar` under `dir` (sorted by name) through containerd at `socket`,
/// pinned.
pub async fn import_dir(socket: &Path, dir: &Path) -> Result<Vec<Imported>, ImportError> {
    let mut archives: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| ImportError::ListDir(dir.to_owned(), e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "tar"))
        .collect();
    archives.sort();
    let channel = client::connect(socket).await?;
    delete_stale_leases(&channel, BOOT_LEASE).await;
    let mut imported = Vec::new();
    for path in archives {
        let file = std::fs::File::open(&path).map_err(|e| ImportError::Open(path.clone(), e))?;
        let size = (file.metadata())
            .map_err(|e| ImportError::Open(path.clone(), e))?
            .len();
        let images = load(channel.clone(), file, size, BOOT_LEASE, true)
            .await
            .map_err(|e| ImportError::Load(path.clone(), e))?;
        imported.extend(images);
    }
    Ok(imported)
}

/// Loads an archive sent over the node API, not pinned, through containerd at
/// `socket`. Loads run one at a time (the caller's job), so any earlier load's lease
/// still there was left by an agent that died mid-load: it goes first.
pub async fn load_archive<R: Read + Send + 'static>(
    socket: &Path,
    source: R,
    declared: u64,
) -> Result<Vec<Imported>, LoadError> {
    let channel = client::connect(socket).await?;
    delete_stale_leases(&channel, LOAD_LEASE).await;
    load(channel, source, declared, LOAD_LEASE, false).await
}

/// Loads the archive of `declared` bytes that `source` yields (read on a blocking
/// thread), under a new lease named `lease_prefix` and a random suffix; `pinned` for
/// the preloaded images only.
pub async fn load<R: Read + Send + 'static>(
    channel: Channel,
    source: R,
    declared: u64,
    lease_prefix: &str,
    pinned: bool,
) -> Result<Vec<Imported>, LoadError> {
    let loader = Loader {
        channel,
        lease: format!("{lease_prefix}{}", random_suffix()),
        pinned,
    };
    loader.create_lease().await?;
    let result = loader.run(source, declared).await;
    loader.delete_lease().await;
    result
}

/// Deletes the leases with `prefix` that a load left when the agent died mid-way.
pub async fn delete_stale_leases(channel: &Channel, prefix: &str) {
    let request = client::request(ListRequest::default(), NAMESPACE, None);
    let leases = match LeasesClient::new(channel.clone()).list(request).await {
        Ok(list) => list.into_inner().leases,
        Err(status) => {
            tracing::warn!("cannot list containerd leases: {status}");
            return;
        }
    };
    for lease in leases.into_iter().filter(|l| l.id.starts_with(prefix)) {
        tracing::info!(lease = %lease.id, "deleting the lease of an interrupted image load");
        let request = DeleteRequest {
            id: lease.id,
            sync: false,
        };
        let request = client::request(request, NAMESPACE, None);
        if let Err(status) = LeasesClient::new(channel.clone()).delete(request).await {
            tracing::warn!("cannot delete a stale lease: {status}");
        }
    }
}

fn random_suffix() -> String {
    let mut bytes = [0u8; 8];
    // A clash only makes the lease creation fail, which is reported.
    let _ = getrandom::fill(&mut bytes);
    hex::encode(bytes)
}

/// One blob on its way from the archive reader to the content store.
struct IncomingBlob {
    size: u64,
    expected: Option<String>,
    pieces: mpsc::Receiver<Piece>,
}

enum Piece {
    Data(Vec<u8>),
    /// The blob is complete and verified: its digest.
    End(String),
}

/// The reader's side: hands each blob to the async writer, chunk by chunk. Dropped
/// mid-blob (the reader failed), the blob's channel closes without an `End`.
struct ChannelSink {
    blobs: mpsc::Sender<IncomingBlob>,
    current: Option<mpsc::Sender<Piece>>,
}

impl BlobSink for ChannelSink {
    fn begin(&mut self, size: u64, expected: Option<&str>) -> Result<(), Stopped> {
        let (sender, pieces) = mpsc::channel(4);
        self.current = Some(sender);
        let blob = IncomingBlob {
            size,
            expected: expected.map(str::to_owned),
            pieces,
        };
        self.blobs.blocking_send(blob).map_err(|_| Stopped)
    }

    fn data(&mut self, chunk: Vec<u8>) -> Result<(), Stopped> {
        let current = self.current.as_ref().ok_or(Stopped)?;
        current
            .blocking_send(Piece::Data(chunk))
            .map_err(|_| Stopped)
    }

    fn commit(&mut self, digest: &str) -> Result<(), Stopped> {
        let current = self.current.take().ok_or(Stopped)?;
        (current.blocking_send(Piece::End(digest.to_owned()))).map_err(|_| Stopped)
    }
}

struct Loader {
    channel: Channel,
    lease: String,
    pinned: bool,
}

impl Loader {
    async fn run<R: Read + Send + 'static>(
        &self,
        source: R,
        declared: u64,
    ) -> Result<Vec<Imported>, LoadError> {
        let (blobs, incoming) = mpsc::channel(1);
        let reader = tokio::task::spawn_blocking(move || {
            let mut sink = ChannelSink {
                blobs,
                current: None,
            };
            archive::read(source, declared, &Limits::default(), &mut sink)
        });
        let started = std::time::Instant::now();
        // A containerd failure ends the load at once: the reader stops at its next
        // blob or chunk, when it finds nobody taking them.
        self.write_blobs(incoming).await?;
        let contents = reader.await.map_err(LoadError::Reader)??;
        let streamed = started.elapsed();
        let plans = archive::images(&contents)?;
        self.check_names(&plans).await?;
        for plan in &plans {
            self.prepare(plan).await?;
        }
        let mut imported = Vec::new();
        for plan in &plans {
            self.put_image_records(plan).await?;
            imported.extend(plan.references.iter().map(|reference| Imported {
                reference: reference.clone(),
                digest: plan.manifest.digest.clone(),
                size: plan.size(),
            }));
        }
        tracing::info!(
            lease = %self.lease,
            "{declared} archive bytes streamed in {:.2} s, images checked, unpacked and named in {:.2} s",
            streamed.as_secs_f64(),
            (started.elapsed() - streamed).as_secs_f64()
        );
        Ok(imported)
    }

    fn request<T>(&self, message: T) -> containerd_client::tonic::Request<T> {
        client::request(message, NAMESPACE, Some(&self.lease))
    }

    fn failed(&self, step: impl Into<String>) -> impl FnOnce(Status) -> LoadError {
        let step = step.into();
        move |source| LoadError::Call { step, source }
    }

    async fn create_lease(&self) -> Result<(), LoadError> {
        let expires = time::OffsetDateTime::now_utc() + LEASE_EXPIRY;
        let labels = HashMap::from([(
            // Expires by itself should the agent die mid-load.
            "containerd.io/gc.expire".to_owned(),
            rfc3339(expires),
        )]);
        let request = CreateRequest {
            id: self.lease.clone(),
            labels,
        };
        LeasesClient::new(self.channel.clone())
            .create(client::request(request, NAMESPACE, None))
            .await
            .map(drop)
            .map_err(self.failed(format!("creating lease {}", self.lease)))
    }

    /// Deletes the lease and waits for the garbage collection that follows, so what
    /// no image refers to is gone when the load answers.
    async fn delete_lease(&self) {
        let request = DeleteRequest {
            id: self.lease.clone(),
            sync: true,
        };
        let result = LeasesClient::new(self.channel.clone())
            .delete(client::request(request, NAMESPACE, None))
            .await;
        if let Err(status) = result {
            tracing::warn!(lease = %self.lease, "cannot delete the import lease: {status}");
        }
    }

    /// Takes the reader's blobs until it ends or stops mid-blob (its error says why).
    async fn write_blobs(
        &self,
        mut incoming: mpsc::Receiver<IncomingBlob>,
    ) -> Result<(), LoadError> {
        let mut count = 0u64;
        while let Some(blob) = incoming.recv().await {
            count += 1;
            let reference = format!("{}-{count}", self.lease);
            if !self.write_blob(&reference, blob).await? {
                break;
            }
        }
        Ok(())
    }

    /// Streams one blob into the content store as its pieces arrive. True once it is
    /// committed (or was there already), false if the reader stopped before its end.
    async fn write_blob(&self, reference: &str, blob: IncomingBlob) -> Result<bool, LoadError> {
        if let Some(expected) = &blob.expected {
            // Leased first, so nothing collects it between the look and the import's end.
            self.lease_content(expected).await?;
            if self.has_content(expected).await? {
                // The reader still hashes it: the archive's copy must be right too.
                return Ok(drain(blob.pieces).await.is_some());
            }
        }
        let IncomingBlob {
            size, mut pieces, ..
        } = blob;
        let total = i64::try_from(size).unwrap_or(i64::MAX);
        let message = |action: WriteAction, offset: i64, data: Vec<u8>, expected: String| {
            WriteContentRequest {
                action: action as i32,
                r#ref: reference.to_owned(),
                total,
                expected,
                offset,
                data,
                labels: HashMap::new(),
            }
        };
        let (requests, outgoing) = mpsc::channel(4);
        let _ = requests
            .send(message(WriteAction::Write, 0, Vec::new(), String::new()))
            .await;
        let mut content = ContentClient::new(self.channel.clone());
        let request = self.request(ReceiverStream::new(outgoing));
        let answers = async move {
            let mut stream = content.write(request).await?.into_inner();
            while stream.message().await?.is_some() {}
            Ok::<(), Status>(())
        };
        // The digest goes with the commit only: containerd ends the call before it only
        // on an error, so the feed never waits on a stream nobody reads.
        let feed = async move {
            let mut offset = 0i64;
            while let Some(piece) = pieces.recv().await {
                let (next, end) = match piece {
                    Piece::Data(data) => {
                        let at = offset;
                        offset += data.len() as i64;
                        (message(WriteAction::Write, at, data, String::new()), None)
                    }
                    Piece::End(digest) => {
                        let commit =
                            message(WriteAction::Commit, offset, Vec::new(), digest.clone());
                        (commit, Some(digest))
                    }
                };
                if requests.send(next).await.is_err() || end.is_some() {
                    return end;
                }
            }
            None
        };
        tokio::pin!(feed, answers);
        let mut fed = None;
        let answered = loop {
            tokio::select! {
                digest = &mut feed, if fed.is_none() => fed = Some(digest),
                answered = &mut answers => break answered,
            }
        };
        if let Err(status) = &answered {
            if status.code() != Code::AlreadyExists {
                // Fail fast, the feed dropped: the reader finds nobody taking its pieces.
                self.abort(reference).await;
                return Err(self.failed(format!("writing blob {reference}"))(
                    status.clone(),
                ));
            }
        }
        // containerd answered the commit, or the end of a feed that stopped: either way
        // the feed has returned.
        let fed = match fed {
            Some(fed) => fed,
            None => feed.await,
        };
        match (fed, answered) {
            (Some(digest), answered) => {
                if answered.is_err() {
                    // It was committed meanwhile by someone else: lease theirs.
                    self.lease_content(&digest).await?;
                }
                Ok(true)
            }
            (None, _) => {
                self.abort(reference).await;
                Ok(false)
            }
        }
    }

    async fn has_content(&self, digest: &str) -> Result<bool, LoadError> {
        let request = InfoRequest {
            digest: digest.to_owned(),
        };
        match ContentClient::new(self.channel.clone())
            .info(self.request(request))
            .await
        {
            Ok(_) => Ok(true),
            Err(status) if status.code() == Code::NotFound => Ok(false),
            Err(status) => Err(self.failed(format!("looking up blob {digest}"))(status)),
        }
    }

    /// Writes a blob the node made (a manifest for a docker save archive).
    async fn write_bytes(&self, descriptor: &Descriptor, bytes: &[u8]) -> Result<(), LoadError> {
        let chunks: Vec<&[u8]> = bytes.chunks(CHUNK).collect();
        let (sender, pieces) = mpsc::channel(chunks.len() + 1);
        for chunk in chunks {
            let _ = sender.try_send(Piece::Data(chunk.to_vec()));
        }
        let _ = sender.try_send(Piece::End(descriptor.digest.clone()));
        let blob = IncomingBlob {
            size: bytes.len() as u64,
            expected: Some(descriptor.digest.clone()),
            pieces,
        };
        let reference = format!("{}-{}", self.lease, descriptor.digest);
        self.write_blob(&reference, blob).await.map(drop)
    }

    /// Adds content the store already had to the lease, so nothing can collect it
    /// before an image record refers to it.
    async fn lease_content(&self, digest: &str) -> Result<(), LoadError> {
        let request = AddResourceRequest {
            id: self.lease.clone(),
            resource: Some(Resource {
                id: digest.to_owned(),
                r#type: "content".to_owned(),
            }),
        };
        LeasesClient::new(self.channel.clone())
            .add_resource(client::request(request, NAMESPACE, None))
            .await
            .map(drop)
            .map_err(self.failed(format!("leasing blob {digest}")))
    }

    /// Drops a write that will never be committed (the lease's collection would too).
    async fn abort(&self, reference: &str) {
        let request = AbortRequest {
            r#ref: reference.to_owned(),
        };
        let result = ContentClient::new(self.channel.clone())
            .abort(self.request(request))
            .await;
        match result {
            Err(status) if status.code() != Code::NotFound => {
                tracing::debug!(reference, "cannot abort a content write: {status}");
            }
            _ => {}
        }
    }

    /// Refuses to move a pinned (preloaded) name to an image that is not pinned.
    async fn check_names(&self, plans: &[ImagePlan]) -> Result<(), LoadError> {
        if self.pinned {
            return Ok(());
        }
        let mut images = ImagesClient::new(self.channel.clone());
        for name in plans.iter().flat_map(|p| &p.references) {
            let request = GetImageRequest { name: name.clone() };
            match images.get(self.request(request)).await {
                Ok(found) => {
                    let labels = (found.into_inner().image)
                        .map(|i| i.labels)
                        .unwrap_or_default();
                    if labels.get(PINNED.0).is_some_and(|v| v == PINNED.1) {
                        return Err(LoadError::Pinned(name.clone()));
                    }
                }
                Err(status) if status.code() == Code::NotFound => {}
                Err(status) => return Err(self.failed(format!("looking up image {name}"))(status)),
            }
        }
        Ok(())
    }

    /// Everything but the image records: the node's own manifest, labels, snapshots.
    async fn prepare(&self, plan: &ImagePlan) -> Result<(), LoadError> {
        if let Some(bytes) = &plan.written_manifest {
            self.write_bytes(&plan.manifest, bytes).await?;
        }
        let chain = archive::chain_ids(&plan.diff_ids);
        let top = chain.last().cloned().unwrap_or_default();
        let snapshot_ref = format!("containerd.io/gc.ref.snapshot.{SNAPSHOTTER}");
        self.label_blob(&plan.config, HashMap::from([(snapshot_ref, top)]))
            .await?;
        let mut refs = HashMap::from([(
            "containerd.io/gc.ref.content.config".to_owned(),
            plan.config.digest.clone(),
        )]);
        for (i, layer) in plan.layers.iter().enumerate() {
            refs.insert(
                format!("containerd.io/gc.ref.content.l.{i}"),
                layer.digest.clone(),
            );
        }
        self.label_blob(&plan.manifest, refs).await?;
        self.unpack(plan, &chain).await
    }

    async fn label_blob(
        &self,
        descriptor: &Descriptor,
        labels: HashMap<String, String>,
    ) -> Result<(), LoadError> {
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
            .map(drop)
            .map_err(self.failed(format!("labelling blob {}", descriptor.digest)))
    }

    /// Applies each layer on its parent snapshot unless its chain ID is committed.
    async fn unpack(&self, plan: &ImagePlan, chain: &[String]) -> Result<(), LoadError> {
        let mut snapshots = SnapshotsClient::new(self.channel.clone());
        for (i, chain_id) in chain.iter().enumerate() {
            let stat = StatSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_owned(),
                key: chain_id.clone(),
            };
            if snapshots.stat(self.request(stat)).await.is_ok() {
                continue;
            }
            let key = format!("cairn-unpack-{}-{chain_id}", self.lease);
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
            let applied = self.apply(plan, i, mounts).await;
            let committed = match applied {
                Ok(()) => {
                    let commit = CommitSnapshotRequest {
                        snapshotter: SNAPSHOTTER.to_owned(),
                        name: chain_id.clone(),
                        key: key.clone(),
                        labels: HashMap::new(),
                    };
                    match snapshots.commit(self.request(commit)).await {
                        Err(status) if status.code() != Code::AlreadyExists => {
                            Err(self.failed(format!("committing layer {i}"))(status))
                        }
                        _ => Ok(()),
                    }
                }
                Err(err) => Err(err),
            };
            if let Err(err) = committed {
                let remove = RemoveSnapshotRequest {
                    snapshotter: SNAPSHOTTER.to_owned(),
                    key,
                };
                let _ = snapshots.remove(self.request(remove)).await;
                return Err(err);
            }
        }
        Ok(())
    }

    /// Applies layer `i` onto `mounts` and checks what was applied against its diff ID.
    async fn apply(
        &self,
        plan: &ImagePlan,
        i: usize,
        mounts: Vec<containerd_client::types::Mount>,
    ) -> Result<(), LoadError> {
        let layer = &plan.layers[i];
        let apply = ApplyRequest {
            diff: Some(api_descriptor(layer)),
            mounts,
            payloads: HashMap::new(),
            sync_fs: false,
        };
        let applied = DiffClient::new(self.channel.clone())
            .apply(self.request(apply))
            .await
            .map_err(self.failed(format!("applying layer {i}")))?
            .into_inner()
            .applied
            .map(|d| d.digest)
            .unwrap_or_default();
        if applied != plan.diff_ids[i] {
            return Err(LoadError::DiffId {
                image: plan.references[0].clone(),
                index: i,
                digest: layer.digest.clone(),
                applied,
                expected: plan.diff_ids[i].clone(),
            });
        }
        Ok(())
    }

    async fn put_image_records(&self, plan: &ImagePlan) -> Result<(), LoadError> {
        let mut labels = HashMap::from([(MANAGED.0.to_owned(), MANAGED.1.to_owned())]);
        if self.pinned {
            labels.insert(PINNED.0.to_owned(), PINNED.1.to_owned());
        }
        let mut images = ImagesClient::new(self.channel.clone());
        for name in &plan.references {
            let record = ImageRecord {
                name: name.clone(),
                labels: labels.clone(),
                target: Some(api_descriptor(&plan.manifest)),
                ..ImageRecord::default()
            };
            let create = CreateImageRequest {
                image: Some(record.clone()),
                source_date_epoch: None,
            };
            match images.create(self.request(create)).await {
                Ok(_) => {}
                Err(status) if status.code() == Code::AlreadyExists => {
                    let update = UpdateImageRequest {
                        image: Some(record),
                        update_mask: None,
                        source_date_epoch: None,
                    };
                    images
                        .update(self.request(update))
                        .await
                        .map_err(self.failed(format!("updating image record {name}")))?;
                }
                Err(status) => {
                    return Err(self.failed(format!("creating image record {name}"))(status))
                }
            }
        }
        Ok(())
    }
}

/// Waits for a blob's end, discarding its data; its digest, or `None` if the reader
/// stopped before it.
async fn drain(mut pieces: mpsc::Receiver<Piece>) -> Option<String> {
    while let Some(piece) = pieces.recv().await {
        if let Piece::End(digest) = piece {
            return Some(digest);
        }
    }
    None
}

fn api_descriptor(descriptor: &Descriptor) -> ApiDescriptor {
    ApiDescriptor {
        media_type: descriptor.media_type.clone(),
        digest: descriptor.digest.clone(),
        size: descriptor.size,
        annotations: HashMap::new(),
    }
}

/// `2026-01-02T03:04:05Z`, the form containerd's `gc.expire` label takes.
fn rfc3339(at: time::OffsetDateTime) -> String {
    let (date, clock) = (at.date(), at.time());
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        date.year(),
        u8::from(date.month()),
        date.day(),
        clock.hour(),
        clock.minute(),
        clock.second()
    )
}
