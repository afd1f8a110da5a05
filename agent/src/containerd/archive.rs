//! Reading image archives as they stream: OCI image layouts (what `image/src/oci.rs`
//! writes) and `docker save` tars.
//!
//! [`read`] walks the tar once, front to back, and never holds it whole: every regular
//! file that is not one of the few top-level metadata files (`index.json`,
//! `manifest.json`, `oci-layout`, `repositories`) is a blob, handed chunk by chunk to a
//! [`BlobSink`] (containerd's content store, see `import.rs`) while its sha256 is
//! computed. A blob named `blobs/sha256/<hex>` must hash to that name; its end is
//! committed only once it does. What cannot be trusted is refused before any of its
//! data is read: paths that leave the archive (absolute, `..`) and links that point out
//! of it, entry types an image archive never holds, and entries (or tar extension
//! headers) that claim more bytes than the archive has left. The metadata files and the
//! small blobs that look like JSON (manifests, configs, indexes) are kept, within
//! [`Limits`], for [`layout`] to turn into images to import.
//!
//! The tar is read raw: long names and PAX records are handled here, with a size bound,
//! rather than read whole by the `tar` crate; a PAX `size` record (only needed above
//! 8 GiB) is refused, so no two readers can disagree on where an entry ends.

mod layout;

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Component, Path};

use sha2::{Digest, Sha256};

pub use layout::{images, Descriptor, ImagePlan};

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Top-level files that describe the archive rather than being content.
const METADATA: [&str; 4] = ["index.json", "manifest.json", "oci-layout", "repositories"];
/// How much of a blob one [`BlobSink::data`] call carries.
const CHUNK: u64 = 256 << 10;
/// Largest tar extension header (GNU long name or link, PAX records).
const MAX_EXTENSION: u64 = 64 << 10;

/// What the reader keeps in memory, at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest metadata file.
    pub metadata: u64,
    /// Largest blob kept to be read as JSON (manifest, config, index).
    pub json_blob: u64,
    /// All kept JSON blobs together.
    pub json_total: u64,
    /// Most tar entries.
    pub entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            metadata: 1 << 20,
            json_blob: 8 << 20,
            json_total: 64 << 20,
            entries: 20_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("the archive is truncated: it ends after {received} of its declared {declared} bytes")]
    Truncated { received: u64, declared: u64 },
    #[error("the archive is truncated: its tar data stops inside an entry, at byte {0}")]
    Cut(u64),
    #[error("the archive is longer than its declared {declared} bytes")]
    LongerThanDeclared { declared: u64 },
    #[error("the archive's bytes stopped coming")]
    Source(#[source] io::Error),
    #[error("not a valid tar archive")]
    Tar(#[source] io::Error),
    #[error("entry {path:?} leaves the archive (an absolute path or `..`)")]
    UnsafePath { path: String },
    #[error("entry {path:?} links to {target:?}, outside the archive")]
    UnsafeLink { path: String, target: String },
    #[error("entry {path:?} is a {kind}, which an image archive does not hold")]
    EntryType { path: String, kind: String },
    #[error("entry {path:?} claims {size} bytes, but only {left} are left in the archive (truncated, or a forged size)")]
    ClaimsTooMuch { path: String, size: u64, left: u64 },
    #[error("entry {path:?} is {size} bytes, more than {max} for a {what}")]
    TooLarge {
        path: String,
        what: &'static str,
        size: u64,
        max: u64,
    },
    #[error("entry {0:?} has a PAX size record, which only archives above 8 GiB need")]
    PaxSize(String),
    #[error("the archive has more than {0} entries")]
    TooManyEntries(usize),
    #[error("the archive holds {0} twice")]
    Duplicate(String),
    #[error("blob {0}: only sha256 blobs named by their 64 hex digits are supported")]
    BlobName(String),
    #[error("blob {path} has digest {actual}, not the one its name says")]
    Digest { path: String, actual: String },
    #[error("the archive's JSON documents exceed {0} bytes in all")]
    JsonBudget(u64),
    #[error("the import stopped taking blobs")]
    Stopped,
    #[error("the archive has neither index.json nor manifest.json")]
    NoIndex,
    #[error("{what} is not valid JSON of the expected shape")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{0} lists no images")]
    NoImages(&'static str),
    #[error("{what} {digest} is not in the archive")]
    MissingBlob { what: String, digest: String },
    #[error("{what} {path} is not in the archive")]
    MissingFile { what: String, path: String },
    #[error("{what} {digest} is {actual} bytes, but its descriptor says {declared}")]
    Size {
        what: String,
        digest: String,
        actual: u64,
        declared: i64,
    },
    #[error("{what} {digest} is not a JSON document (or is larger than the reader keeps)")]
    NotJson { what: String, digest: String },
    #[error("{what} has unsupported media type {media_type:?}")]
    MediaType { what: String, media_type: String },
    #[error("image {image}: its config lists {diff_ids} diff IDs for {layers} layers")]
    LayerCount {
        image: String,
        diff_ids: usize,
        layers: usize,
    },
    #[error("layer {digest} is uncompressed, so its diff ID must be its digest, but the config says {diff_id}")]
    DiffId { digest: String, diff_id: String },
    #[error("image {0} has no name: no `io.containerd.image.name` or full `{REF_NAME}` annotation, or no RepoTags")]
    NoReference(String),
    #[error("image reference {0:?} is malformed")]
    Reference(String),
    #[error("two images of the archive are named {0}")]
    DuplicateReference(String),
    #[error("index {0} has no linux/amd64 image manifest in the archive")]
    NoPlatform(String),
}

/// The blob compression a layer's first bytes show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    fn sniff(head: &[u8]) -> Self {
        match head {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
            _ => Compression::None,
        }
    }
}

/// One blob the archive holds, verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blob {
    pub size: u64,
    pub compression: Compression,
}

/// Everything [`read`] learnt, for [`images`].
#[derive(Debug, Default)]
pub struct Contents {
    /// Archive bytes read.
    pub bytes: u64,
    /// Every blob by digest.
    pub blobs: BTreeMap<String, Blob>,
    /// The digest of each blob entry's path.
    pub paths: BTreeMap<String, String>,
    /// Symbolic and hard links inside the archive: path -> target path.
    pub links: BTreeMap<String, String>,
    /// The metadata files' bytes by path.
    pub metadata: BTreeMap<String, Vec<u8>>,
    /// The bytes of the small blobs that look like JSON, by digest.
    pub json: BTreeMap<String, Vec<u8>>,
}

impl Contents {
    /// The digest of the blob at `path`, following links (docker save links layers
    /// it already wrote).
    pub fn blob_at(&self, path: &str) -> Option<&str> {
        let mut path = clean(Path::new(path))?;
        for _ in 0..8 {
            if let Some(digest) = self.paths.get(&path) {
                return Some(digest);
            }
            path = self.links.get(&path)?.clone();
        }
        None
    }
}

/// The importer did not take a blob; the reason is on its side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

/// Where blobs go as they stream. Each blob is `begin`, `data`..., then `commit` once
/// its digest is verified; a blob that fails is never committed (the reader returns
/// the error and the sink's owner cleans up).
pub trait BlobSink {
    /// A blob of `size` bytes starts; `expected` is the digest its name claims.
    fn begin(&mut self, size: u64, expected: Option<&str>) -> Result<(), Stopped>;
    fn data(&mut self, chunk: Vec<u8>) -> Result<(), Stopped>;
    /// The blob is complete and hashes to `digest`.
    fn commit(&mut self, digest: &str) -> Result<(), Stopped>;
}

/// Reads a tar of `declared` bytes from `source`, handing blobs to `sink`.
pub fn read(
    source: impl Read,
    declared: u64,
    limits: &Limits,
    sink: &mut dyn BlobSink,
) -> Result<Contents, ArchiveError> {
    let mut counted = Counted::new(source, declared);
    let mut contents = Contents::default();
    let walked = Walk {
        declared,
        limits,
        sink,
        contents: &mut contents,
    }
    .run(&mut tar::Archive::new(&mut counted));
    let drained = walked.and_then(|()| {
        // What follows the end-of-archive blocks (padding to the record size).
        io::copy(&mut counted, &mut io::sink())
            .map(drop)
            .map_err(ArchiveError::Tar)
    });
    match drained {
        Err(ArchiveError::Tar(err)) => return Err(counted.classify(err)),
        Err(err) => return Err(err),
        Ok(()) => {}
    }
    if counted.read < declared {
        return Err(ArchiveError::Truncated {
            received: counted.read,
            declared,
        });
    }
    contents.bytes = counted.read;
    Ok(contents)
}

struct Walk<'a> {
    declared: u64,
    limits: &'a Limits,
    sink: &'a mut dyn BlobSink,
    contents: &'a mut Contents,
}

/// A GNU long name or link, or PAX records, for the entry that follows.
#[derive(Default)]
struct Pending {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
}

impl Walk<'_> {
    fn run<R: Read>(mut self, archive: &mut tar::Archive<R>) -> Result<(), ArchiveError> {
        let mut pending = Pending::default();
        let mut count = 0;
        for entry in archive.entries().map_err(ArchiveError::Tar)?.raw(true) {
            let mut entry = entry.map_err(ArchiveError::Tar)?;
            count += 1;
            if count > self.limits.entries {
                return Err(ArchiveError::TooManyEntries(self.limits.entries));
            }
            let kind = entry.header().entry_type();
            let header_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            self.check_claim(&header_path, &entry)?;
            if kind.is_gnu_longname()
                || kind.is_gnu_longlink()
                || kind.is_pax_local_extensions()
                || kind.is_pax_global_extensions()
            {
                let size = entry.size();
                let what = "tar extension header";
                let data = Self::read_small(&mut entry, size, &header_path, what, MAX_EXTENSION)?;
                extension(kind, data, &header_path, &mut pending)?;
                continue;
            }
            let raw_path = pending
                .path
                .take()
                .unwrap_or_else(|| entry.path_bytes().into_owned());
            let shown = String::from_utf8_lossy(&raw_path).into_owned();
            let path = safe_path(&shown)?;
            let link = pending
                .link
                .take()
                .or_else(|| entry.link_name_bytes().map(std::borrow::Cow::into_owned));
            match kind {
                tar::EntryType::Directory => {}
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    self.file(&mut entry, path)?
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = String::from_utf8_lossy(&link.unwrap_or_default()).into_owned();
                    let resolved = resolve_link(&path, &target, kind == tar::EntryType::Symlink)
                        .ok_or(ArchiveError::UnsafeLink {
                            path: shown,
                            target,
                        })?;
                    if self.contents.links.insert(path.clone(), resolved).is_some() {
                        return Err(ArchiveError::Duplicate(path));
                    }
                }
                other => {
                    return Err(ArchiveError::EntryType {
                        path: shown,
                        kind: format!("{other:?}").to_lowercase(),
                    })
                }
            }
        }
        Ok(())
    }

    /// Refuses an entry whose size runs past the archive's end, before reading it.
    fn check_claim<R: Read>(&self, path: &str, entry: &tar::Entry<R>) -> Result<(), ArchiveError> {
        let left = self.declared.saturating_sub(entry.raw_file_position());
        if entry.size() > left {
            return Err(ArchiveError::ClaimsTooMuch {
                path: path.to_owned(),
                size: entry.size(),
                left,
            });
        }
        Ok(())
    }

    /// The whole (small) entry, refused before reading if it claims more than `max`.
    fn read_small(
        entry: &mut impl Read,
        size: u64,
        path: &str,
        what: &'static str,
        max: u64,
    ) -> Result<Vec<u8>, ArchiveError> {
        if size > max {
            return Err(ArchiveError::TooLarge {
                path: path.to_owned(),
                what,
                size,
                max,
            });
        }
        let mut data = Vec::with_capacity(size as usize);
        entry.read_to_end(&mut data).map_err(ArchiveError::Tar)?;
        if data.len() as u64 != size {
            return Err(short_entry());
        }
        Ok(data)
    }

    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        path: String,
    ) -> Result<(), ArchiveError> {
        let size = entry.size();
        if METADATA.contains(&path.as_str()) {
            let max = self.limits.metadata;
            let data = Self::read_small(entry, size, &path, "metadata file", max)?;
            if self.contents.metadata.insert(path.clone(), data).is_some() {
                return Err(ArchiveError::Duplicate(path));
            }
            return Ok(());
        }
        if self.contents.paths.contains_key(&path) {
            return Err(ArchiveError::Duplicate(path));
        }
        let expected = expected_digest(&path)?;
        let (digest, blob, json) = self.stream_blob(entry, size, expected.as_deref())?;
        if expected.is_some_and(|e| e != digest) {
            return Err(ArchiveError::Digest {
                path,
                actual: digest,
            });
        }
        self.sink
            .commit(&digest)
            .map_err(|Stopped| ArchiveError::Stopped)?;
        if let Some(json) = json {
            self.contents.json.insert(digest.clone(), json);
        }
        self.contents.blobs.insert(digest.clone(), blob);
        self.contents.paths.insert(path, digest);
        Ok(())
    }

    /// Streams one blob of `size` bytes to the sink; its digest, what it is, and its
    /// bytes if it looks like a JSON document small enough to keep.
    fn stream_blob(
        &mut self,
        entry: &mut impl Read,
        size: u64,
        expected: Option<&str>,
    ) -> Result<(String, Blob, Option<Vec<u8>>), ArchiveError> {
        self.sink
            .begin(size, expected)
            .map_err(|Stopped| ArchiveError::Stopped)?;
        let mut hasher = Sha256::new();
        let (mut done, mut compression, mut json) = (0u64, Compression::None, None);
        while done < size {
            let mut chunk = Vec::with_capacity(CHUNK.min(size - done) as usize);
            let n = (&mut *entry)
                .take(CHUNK)
                .read_to_end(&mut chunk)
                .map_err(ArchiveError::Tar)?;
            if n == 0 {
                return Err(short_entry());
            }
            if done == 0 {
                compression = Compression::sniff(&chunk);
                json = self.json_candidate(&chunk, size)?;
            }
            done += n as u64;
            hasher.update(&chunk);
            if let Some(json) = json.as_mut() {
                json.extend_from_slice(&chunk);
            }
            self.sink
                .data(chunk)
                .map_err(|Stopped| ArchiveError::Stopped)?;
        }
        let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
        Ok((digest, Blob { size, compression }, json))
    }

    /// A buffer for a blob whose first bytes open a JSON object, if it is small
    /// enough: manifests, configs and indexes are; layers (tar, gzip, zstd) never
    /// start with `{`.
    fn json_candidate(&mut self, head: &[u8], size: u64) -> Result<Option<Vec<u8>>, ArchiveError> {
        let first = head.iter().find(|b| !b.is_ascii_whitespace());
        if first != Some(&b'{') || size > self.limits.json_blob {
            return Ok(None);
        }
        let kept: u64 = self.contents.json.values().map(|j| j.len() as u64).sum();
        if kept + size > self.limits.json_total {
            return Err(ArchiveError::JsonBudget(self.limits.json_total));
        }
        Ok(Some(Vec::with_capacity(size as usize)))
    }
}

/// Applies a tar extension header to `pending`.
fn extension(
    kind: tar::EntryType,
    data: Vec<u8>,
    path: &str,
    pending: &mut Pending,
) -> Result<(), ArchiveError> {
    let trim = |mut bytes: Vec<u8>| {
        while bytes.last() == Some(&0) {
            bytes.pop();
        }
        bytes
    };
    if kind.is_gnu_longname() {
        pending.path = Some(trim(data));
    } else if kind.is_gnu_longlink() {
        pending.link = Some(trim(data));
    } else if kind.is_pax_local_extensions() {
        for record in tar::PaxExtensions::new(&data) {
            let record = record.map_err(ArchiveError::Tar)?;
            match record.key_bytes() {
                b"path" => pending.path = Some(record.value_bytes().to_vec()),
                b"linkpath" => pending.link = Some(record.value_bytes().to_vec()),
                b"size" => return Err(ArchiveError::PaxSize(path.to_owned())),
                _ => {}
            }
        }
    }
    // PAX global headers carry nothing an image archive needs.
    Ok(())
}

/// `path` relative to the archive's root, without `./`; `None` if it leaves it.
fn clean(path: &Path) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// The entry's path, cleaned, or why it is refused. `..` anywhere is refused, even
/// where it would stay inside: no image tool writes one.
fn safe_path(path: &str) -> Result<String, ArchiveError> {
    clean(Path::new(path)).ok_or_else(|| ArchiveError::UnsafePath {
        path: path.to_owned(),
    })
}

/// Where a link at `path` points, relative to the archive's root: a symlink's target
/// from its own directory, a hard link's from the root. `None` if it leaves the archive.
fn resolve_link(path: &str, target: &str, symbolic: bool) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    if symbolic {
        parts.extend(path.split('/'));
        parts.pop();
    }
    for component in Path::new(target).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// The digest a blob's path claims: `blobs/sha256/<64 hex>` names one; other paths
/// under `blobs/` are refused; any other path (docker save) claims none.
fn expected_digest(path: &str) -> Result<Option<String>, ArchiveError> {
    let Some(rest) = path.strip_prefix("blobs/") else {
        return Ok(None);
    };
    let hex = rest.strip_prefix("sha256/").unwrap_or_default();
    let valid = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !valid {
        return Err(ArchiveError::BlobName(path.to_owned()));
    }
    Ok(Some(format!("sha256:{hex}")))
}

/// An entry's data ended early: the source ran dry ([`Counted::classify`] says so).
fn short_entry() -> ArchiveError {
    ArchiveError::Tar(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "an entry ends before its size",
    ))
}

/// The source, counted against the declared size, so a tar error can be told apart
/// from a short or long stream.
struct Counted<R> {
    inner: R,
    read: u64,
    declared: u64,
    at_end: bool,
    overrun: bool,
    failed: bool,
}

impl<R: Read> Counted<R> {
    fn new(inner: R, declared: u64) -> Self {
        Self {
            inner,
            read: 0,
            declared,
            at_end: false,
            overrun: false,
            failed: false,
        }
    }

    /// What a tar-level error really was.
    fn classify(&self, err: io::Error) -> ArchiveError {
        if self.overrun {
            ArchiveError::LongerThanDeclared {
                declared: self.declared,
            }
        } else if self.failed {
            ArchiveError::Source(err)
        } else if self.at_end && self.read < self.declared {
            ArchiveError::Truncated {
                received: self.read,
                declared: self.declared,
            }
        } else if self.at_end || err.kind() == io::ErrorKind::UnexpectedEof {
            ArchiveError::Cut(self.read)
        } else {
            ArchiveError::Tar(err)
        }
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).inspect_err(|_| self.failed = true)?;
        if n == 0 && !buf.is_empty() {
            self.at_end = true;
        }
        self.read += n as u64;
        if self.read > self.declared {
            self.overrun = true;
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "more bytes than declared",
            ));
        }
        Ok(n)
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The snapshot chain IDs of layers with these diff IDs, bottom first (image-spec
/// `config.md`: `ChainID(L0|...|Ln) = sha256(ChainID(L0|...|Ln-1) + " " + DiffID(Ln))`).
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chain: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match chain.last() {
            None => diff_id.clone(),
            Some(parent) => sha256_digest(format!("{parent} {diff_id}").as_bytes()),
        };
        chain.push(next);
    }
    chain
}

#[cfg(test)]
#[path = "archive_tests.rs"]
mod tests;
