//! From what an archive holds to the images to import.
//!
//! An OCI image layout names its images in `index.json`: each entry is an image
//! manifest, or an index whose linux/amd64 manifest is taken (what `docker save` with
//! containerd's image store writes). Without `index.json`, a `docker save`
//! `manifest.json` lists each image's config and layer files; the node writes an OCI
//! manifest for them itself. Either way every descriptor must point at a blob the
//! archive holds, of the size it states; media types must be ones containerd unpacks;
//! the config must list one diff ID per layer, and an uncompressed layer's diff ID must
//! be its own digest (a compressed one's is checked when it is unpacked). Names are
//! normalized as the kubelet normalizes a pod's `image` (`busybox` is
//! `docker.io/library/busybox:latest`).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{sha256_digest, ArchiveError, Compression, Contents, MEDIA_TYPE_MANIFEST, REF_NAME};

const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Layer media types containerd's diff service applies, and whether each is compressed.
const LAYER_TYPES: [(&str, bool); 5] = [
    ("application/vnd.oci.image.layer.v1.tar", false),
    ("application/vnd.oci.image.layer.v1.tar+gzip", true),
    ("application/vnd.oci.image.layer.v1.tar+zstd", true),
    ("application/vnd.docker.image.rootfs.diff.tar", false),
    ("application/vnd.docker.image.rootfs.diff.tar.gzip", true),
];
/// The full name containerd (and docker) put on an index entry.
const IMAGE_NAME: &str = "io.containerd.image.name";

/// An OCI content descriptor (image-spec `descriptor.md`), the fields cairn uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing)]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
}

/// One image, checked and ready to import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePlan {
    /// Normalized references, at least one.
    pub references: Vec<String>,
    /// The image record's target.
    pub manifest: Descriptor,
    /// The manifest's bytes when the node wrote it (docker save): it must be stored too.
    pub written_manifest: Option<Vec<u8>>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    /// Uncompressed layer digests, from the config.
    pub diff_ids: Vec<String>,
}

impl ImagePlan {
    /// The bytes of everything the image refers to.
    pub fn size(&self) -> u64 {
        let all = [&self.manifest, &self.config]
            .into_iter()
            .chain(&self.layers);
        all.map(|d| d.size.max(0) as u64).sum()
    }

    /// Whether layer `i` is stored uncompressed (its digest is its diff ID).
    pub fn uncompressed(&self, i: usize) -> bool {
        self.layers
            .get(i)
            .is_some_and(|layer| !compressed(&layer.media_type).unwrap_or(true))
    }
}

#[derive(Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

#[derive(Serialize, Deserialize)]
struct Manifest {
    #[serde(rename = "schemaVersion", default)]
    schema_version: u32,
    #[serde(
        rename = "mediaType",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    media_type: String,
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

/// A `docker save` manifest.json entry.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerImage {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// The images an archive holds, each checked against what it contains.
pub fn images(contents: &Contents) -> Result<Vec<ImagePlan>, ArchiveError> {
    let plans = if let Some(index) = contents.metadata.get("index.json") {
        oci(contents, index)?
    } else if let Some(manifest) = contents.metadata.get("manifest.json") {
        docker(contents, manifest)?
    } else {
        return Err(ArchiveError::NoIndex);
    };
    let mut seen = BTreeSet::new();
    for reference in plans.iter().flat_map(|p| &p.references) {
        if !seen.insert(reference) {
            return Err(ArchiveError::DuplicateReference(reference.clone()));
        }
    }
    Ok(plans)
}

fn oci(contents: &Contents, index: &[u8]) -> Result<Vec<ImagePlan>, ArchiveError> {
    let index: Index = parse("index.json", index)?;
    if index.manifests.is_empty() {
        return Err(ArchiveError::NoImages("index.json"));
    }
    let mut plans = Vec::new();
    for entry in &index.manifests {
        let reference = reference_of(entry)?;
        let manifest = match entry.media_type.as_str() {
            MEDIA_TYPE_MANIFEST | DOCKER_MANIFEST => entry.clone(),
            MEDIA_TYPE_INDEX | DOCKER_MANIFEST_LIST => platform_manifest(contents, entry)?,
            other => return Err(media_type(format!("index entry {}", entry.digest), other)),
        };
        let body: Manifest = json_blob(contents, "manifest", &manifest)?;
        plans.push(plan(contents, vec![reference], manifest, body, None)?);
    }
    Ok(plans)
}

/// The name an index entry gives its image.
fn reference_of(entry: &Descriptor) -> Result<String, ArchiveError> {
    let full = |name: &&String| name.contains(['/', ':', '@']);
    let name = (entry.annotations.get(IMAGE_NAME))
        .or_else(|| entry.annotations.get(REF_NAME).filter(full))
        .ok_or_else(|| ArchiveError::NoReference(entry.digest.clone()))?;
    normalize(name)
}

/// The linux/amd64 manifest of a nested index, among those the archive holds.
fn platform_manifest(contents: &Contents, entry: &Descriptor) -> Result<Descriptor, ArchiveError> {
    let nested: Index = json_blob(contents, "index", entry)?;
    nested
        .manifests
        .into_iter()
        .find(|m| {
            matches!(m.media_type.as_str(), MEDIA_TYPE_MANIFEST | DOCKER_MANIFEST)
                && (m.platform.as_ref())
                    .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
                && contents.blobs.contains_key(&m.digest)
        })
        .ok_or_else(|| ArchiveError::NoPlatform(entry.digest.clone()))
}

fn docker(contents: &Contents, manifest: &[u8]) -> Result<Vec<ImagePlan>, ArchiveError> {
    let list: Vec<DockerImage> = parse("manifest.json", manifest)?;
    if list.is_empty() {
        return Err(ArchiveError::NoImages("manifest.json"));
    }
    let mut plans = Vec::new();
    for image in list {
        let file = |what: &str, path: &str| {
            let digest = contents
                .blob_at(path)
                .ok_or_else(|| ArchiveError::MissingFile {
                    what: what.to_owned(),
                    path: path.to_owned(),
                })?;
            let blob = contents.blobs[digest];
            Ok::<_, ArchiveError>((digest.to_owned(), blob))
        };
        let (digest, blob) = file("config", &image.config)?;
        let config = descriptor(MEDIA_TYPE_CONFIG, digest, blob.size);
        let mut layers = Vec::new();
        for path in &image.layers {
            let (digest, blob) = file("layer", path)?;
            let media_type = match blob.compression {
                Compression::None => LAYER_TYPES[0].0,
                Compression::Gzip => LAYER_TYPES[1].0,
                Compression::Zstd => LAYER_TYPES[2].0,
            };
            layers.push(descriptor(media_type, digest, blob.size));
        }
        let tags = image.repo_tags.unwrap_or_default();
        if tags.is_empty() {
            return Err(ArchiveError::NoReference(image.config));
        }
        let references = tags
            .iter()
            .map(|t| normalize(t))
            .collect::<Result<_, _>>()?;
        let body = Manifest {
            schema_version: 2,
            media_type: MEDIA_TYPE_MANIFEST.to_owned(),
            config,
            layers,
        };
        let bytes = serde_json::to_vec(&body).expect("a manifest serializes");
        let manifest = descriptor(
            MEDIA_TYPE_MANIFEST,
            sha256_digest(&bytes),
            bytes.len() as u64,
        );
        plans.push(plan(contents, references, manifest, body, Some(bytes))?);
    }
    Ok(plans)
}

fn descriptor(media_type: &str, digest: String, size: u64) -> Descriptor {
    Descriptor {
        media_type: media_type.to_owned(),
        digest,
        size: i64::try_from(size).unwrap_or(i64::MAX),
        annotations: BTreeMap::new(),
        platform: None,
    }
}

/// Checks a manifest's config and layers against the archive.
fn plan(
    contents: &Contents,
    references: Vec<String>,
    manifest: Descriptor,
    body: Manifest,
    written_manifest: Option<Vec<u8>>,
) -> Result<ImagePlan, ArchiveError> {
    let image = &references[0];
    if !matches!(
        body.config.media_type.as_str(),
        MEDIA_TYPE_CONFIG | DOCKER_CONFIG
    ) {
        return Err(media_type(
            format!("the config of {image}"),
            &body.config.media_type,
        ));
    }
    let config: Config = json_blob(contents, "config", &body.config)?;
    for layer in &body.layers {
        if compressed(&layer.media_type).is_none() {
            return Err(media_type(
                format!("layer {}", layer.digest),
                &layer.media_type,
            ));
        }
        present(contents, "layer", layer)?;
    }
    let diff_ids = config.rootfs.diff_ids;
    if diff_ids.len() != body.layers.len() {
        return Err(ArchiveError::LayerCount {
            image: image.clone(),
            diff_ids: diff_ids.len(),
            layers: body.layers.len(),
        });
    }
    for (layer, diff_id) in body.layers.iter().zip(&diff_ids) {
        if compressed(&layer.media_type) == Some(false) && *diff_id != layer.digest {
            return Err(ArchiveError::DiffId {
                digest: layer.digest.clone(),
                diff_id: diff_id.clone(),
            });
        }
    }
    Ok(ImagePlan {
        references,
        manifest,
        written_manifest,
        config: body.config,
        layers: body.layers,
        diff_ids,
    })
}

/// Whether a layer media type is compressed; `None` for one containerd cannot apply.
fn compressed(media_type: &str) -> Option<bool> {
    LAYER_TYPES
        .iter()
        .find(|(known, _)| *known == media_type)
        .map(|(_, compressed)| *compressed)
}

fn media_type(what: String, media_type: &str) -> ArchiveError {
    ArchiveError::MediaType {
        what,
        media_type: media_type.to_owned(),
    }
}

/// Checks that the archive holds the blob `descriptor` names, of its size.
fn present(contents: &Contents, what: &str, descriptor: &Descriptor) -> Result<(), ArchiveError> {
    let blob = contents
        .blobs
        .get(&descriptor.digest)
        .ok_or_else(|| ArchiveError::MissingBlob {
            what: what.to_owned(),
            digest: descriptor.digest.clone(),
        })?;
    if i64::try_from(blob.size) != Ok(descriptor.size) {
        return Err(ArchiveError::Size {
            what: what.to_owned(),
            digest: descriptor.digest.clone(),
            actual: blob.size,
            declared: descriptor.size,
        });
    }
    Ok(())
}

/// The JSON blob `descriptor` names, parsed.
fn json_blob<T: for<'de> Deserialize<'de>>(
    contents: &Contents,
    what: &str,
    descriptor: &Descriptor,
) -> Result<T, ArchiveError> {
    present(contents, what, descriptor)?;
    let bytes = contents
        .json
        .get(&descriptor.digest)
        .ok_or_else(|| ArchiveError::NotJson {
            what: what.to_owned(),
            digest: descriptor.digest.clone(),
        })?;
    parse(&format!("{what} {}", descriptor.digest), bytes)
}

fn parse<T: for<'de> Deserialize<'de>>(what: &str, bytes: &[u8]) -> Result<T, ArchiveError> {
    serde_json::from_slice(bytes).map_err(|source| ArchiveError::Json {
        what: what.to_owned(),
        source,
    })
}

/// An image name as the kubelet and containerd spell it: a registry (`docker.io`
/// unless the first part has a `.` or `:` or is `localhost`), `library/` for docker.io
/// names of one part, `:latest` without a tag or digest (distribution `reference`'s
/// grammar, lower-case repository paths).
pub fn normalize(name: &str) -> Result<String, ArchiveError> {
    let bad = || ArchiveError::Reference(name.chars().take(256).collect());
    if name.is_empty() || name.len() > 255 {
        return Err(bad());
    }
    let (rest, digest) = match name.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (name, None),
    };
    let (repository, tag) = match rest.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => (repository, Some(tag)),
        _ => (rest, None),
    };
    let (domain, path) = match repository.split_once('/') {
        Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => (first, path),
        _ => ("docker.io", repository),
    };
    let path = match domain == "docker.io" && !path.contains('/') {
        true => format!("library/{path}"),
        false => path.to_owned(),
    };
    let valid = digest.is_none_or(valid_digest)
        && tag.is_none_or(valid_tag)
        && valid_domain(domain)
        && path.split('/').all(valid_component);
    if !valid {
        return Err(bad());
    }
    let mut out = format!("{domain}/{path}");
    match (tag, digest) {
        (None, None) => out.push_str(":latest"),
        (tag, digest) => {
            if let Some(tag) = tag {
                out.push_str(&format!(":{tag}"));
            }
            if let Some(digest) = digest {
                out.push_str(&format!("@{digest}"));
            }
        }
    }
    Ok(out)
}

fn valid_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

fn valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    (1..=128).contains(&bytes.len())
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(b))
}

fn valid_domain(domain: &str) -> bool {
    let (host, port) = match domain.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    host_ok
        && port
            .is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// A repository path component: lower-case letters and digits, separated by `.`, `_`,
/// `__` or dashes.
fn valid_component(part: &str) -> bool {
    let bytes = part.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && alnum(&bytes[0])
        && alnum(&bytes[bytes.len() - 1])
        && bytes.iter().all(|b| alnum(b) || b"._-".contains(b))
        && !part.contains("..")
        && !part.contains("___")
}
