//! Reading the builder's OCI image layout archives (`image/src/oci.rs` writes them).
//!
//! An archive is a tar of `oci-layout`, `index.json` and `blobs/sha256/<hex>`. The
//! index's single manifest names the reference in `org.opencontainers.image.ref.name`.
//! Every blob is checked against its digest before anything reaches containerd, and
//! the shapes cairn does not produce (nested indexes, several manifests) are refused
//! rather than guessed at.

use std::collections::BTreeMap;
use std::io::Read;

use serde::Deserialize;
use sha2::{Digest, Sha256};

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// The largest archive entry read into memory (the toolbox layer is ~2 MB).
const MAX_ENTRY: u64 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("not a tar archive")]
    Tar(#[source] std::io::Error),
    #[error("archive entry {0} is larger than {MAX_ENTRY} bytes")]
    TooLarge(String),
    #[error("archive has no {0}")]
    Missing(String),
    #[error("{what} is not valid JSON of the expected shape")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("index.json must list exactly one manifest, found {0}")]
    Manifests(usize),
    #[error("the manifest has no `{REF_NAME}` annotation")]
    NoReference,
    #[error("unsupported media type {0}")]
    MediaType(String),
    #[error("blob {digest} does not match its digest")]
    Digest { digest: String },
    #[error("the config lists {diff_ids} diff IDs for {layers} layers")]
    LayerCount { diff_ids: usize, layers: usize },
}

/// An OCI content descriptor (image-spec `descriptor.md`), the fields cairn uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Manifest {
    config: Descriptor,
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Config {
    rootfs: RootFs,
}

#[derive(Deserialize)]
struct RootFs {
    diff_ids: Vec<String>,
}

/// One image, checked and ready to import.
#[derive(Debug, Clone)]
pub struct Image {
    pub reference: String,
    pub manifest: Descriptor,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    /// Uncompressed layer digests, from the config.
    pub diff_ids: Vec<String>,
    blobs: BTreeMap<String, Vec<u8>>,
}

impl Image {
    /// Parses and verifies an archive.
    pub fn parse(bytes: &[u8]) -> Result<Self, ArchiveError> {
        let files = read_tar(bytes)?;
        let index: Index = json(&files, "index.json")?;
        let [manifest] = <[Descriptor; 1]>::try_from(index.manifests)
            .map_err(|all| ArchiveError::Manifests(all.len()))?;
        if manifest.media_type != MEDIA_TYPE_MANIFEST {
            return Err(ArchiveError::MediaType(manifest.media_type));
        }
        let reference = manifest
            .annotations
            .get(REF_NAME)
            .cloned()
            .ok_or(ArchiveError::NoReference)?;
        let mut blobs = BTreeMap::new();
        let body: Manifest = serde_json::from_slice(blob(&files, &manifest, &mut blobs)?)
            .map_err(|source| json_error("the manifest", source))?;
        let config: Config = serde_json::from_slice(blob(&files, &body.config, &mut blobs)?)
            .map_err(|source| json_error("the image config", source))?;
        for layer in &body.layers {
            blob(&files, layer, &mut blobs)?;
        }
        if config.rootfs.diff_ids.len() != body.layers.len() {
            return Err(ArchiveError::LayerCount {
                diff_ids: config.rootfs.diff_ids.len(),
                layers: body.layers.len(),
            });
        }
        Ok(Self {
            reference,
            manifest,
            config: body.config,
            layers: body.layers,
            diff_ids: config.rootfs.diff_ids,
            blobs,
        })
    }

    /// The verified bytes of the blob `digest` (config, manifest or a layer).
    pub fn blob(&self, digest: &str) -> &[u8] {
        self.blobs
            .get(digest)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The snapshot chain IDs of the layers, bottom first (image-spec `config.md`:
    /// `ChainID(L0|...|Ln) = sha256(ChainID(L0|...|Ln-1) + " " + DiffID(Ln))`).
    pub fn chain_ids(&self) -> Vec<String> {
        let mut chain: Vec<String> = Vec::with_capacity(self.diff_ids.len());
        for diff_id in &self.diff_ids {
            let next = match chain.last() {
                None => diff_id.clone(),
                Some(parent) => sha256_digest(format!("{parent} {diff_id}").as_bytes()),
            };
            chain.push(next);
        }
        chain
    }
}

fn read_tar(bytes: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, ArchiveError> {
    let mut files = BTreeMap::new();
    let mut archive = tar::Archive::new(bytes);
    for entry in archive.entries().map_err(ArchiveError::Tar)? {
        let mut entry = entry.map_err(ArchiveError::Tar)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().map_err(ArchiveError::Tar)?;
        let path = path.to_string_lossy().trim_start_matches("./").to_owned();
        if entry.size() > MAX_ENTRY {
            return Err(ArchiveError::TooLarge(path));
        }
        let mut data = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut data).map_err(ArchiveError::Tar)?;
        files.insert(path, data);
    }
    Ok(files)
}

fn json<T: for<'de> Deserialize<'de>>(
    files: &BTreeMap<String, Vec<u8>>,
    path: &str,
) -> Result<T, ArchiveError> {
    let data = files
        .get(path)
        .ok_or_else(|| ArchiveError::Missing(path.to_owned()))?;
    serde_json::from_slice(data).map_err(|source| json_error(path, source))
}

fn json_error(what: &str, source: serde_json::Error) -> ArchiveError {
    ArchiveError::Json {
        what: what.to_owned(),
        source,
    }
}

/// The blob a descriptor names, verified, also kept in `blobs`.
fn blob<'a>(
    files: &BTreeMap<String, Vec<u8>>,
    descriptor: &Descriptor,
    blobs: &'a mut BTreeMap<String, Vec<u8>>,
) -> Result<&'a [u8], ArchiveError> {
    let hex = descriptor
        .digest
        .strip_prefix("sha256:")
        .ok_or_else(|| ArchiveError::Digest {
            digest: descriptor.digest.clone(),
        })?;
    let path = format!("blobs/sha256/{hex}");
    let data = files.get(&path).ok_or(ArchiveError::Missing(path))?;
    if sha256_digest(data) != descriptor.digest || data.len() as i64 != descriptor.size {
        return Err(ArchiveError::Digest {
            digest: descriptor.digest.clone(),
        });
    }
    Ok(blobs
        .entry(descriptor.digest.clone())
        .or_insert_with(|| data.clone()))
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[cfg(test)]
#[path = "archive_tests.rs"]
mod tests;
