//! Container images as deterministic OCI image layout archives.
//!
//! An image is one uncompressed layer (a tar of its files) plus the JSON the OCI image
//! spec asks for: the image config (`rootfs.diff_ids` names the layer by its sha256),
//! the manifest (config and layer descriptors) and `index.json`, whose single entry
//! carries the reference in the `org.opencontainers.image.ref.name` annotation
//! (image-spec `annotations.md`; `ctr images import` and the agent both read it). The
//! archive is a tar of `oci-layout`, `index.json` and `blobs/sha256/<hex>`.
//!
//! Reproducible by construction, like the initramfs: entries sorted, one fixed mtime,
//! uid/gid 0 with empty owner names, and JSON from structs with a fixed field order.
//! The layer stays uncompressed: the initramfs around it is compressed anyway, and
//! containerd applies `application/vnd.oci.image.layer.v1.tar` directly.

use std::collections::BTreeMap;
use std::io;

use serde::Serialize;

use crate::manifest::sha256_hex;

pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_TYPE_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// One entry of a layer, at an absolute path inside the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerEntry {
    Dir { mode: u32 },
    File { mode: u32, data: Vec<u8> },
    Symlink { target: String },
}

/// What the image runs and with which environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
}

/// A written archive and the digests it is known by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageArchive {
    pub bytes: Vec<u8>,
    /// `sha256:<hex>` of the manifest: what containerd lists as the image's digest.
    pub manifest_digest: String,
    /// `sha256:<hex>` of the uncompressed layer (its diff ID).
    pub layer_digest: String,
}

#[derive(Serialize)]
struct Descriptor<'a> {
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    digest: String,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<BTreeMap<&'a str, &'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<Platform>,
}

#[derive(Serialize)]
struct Platform {
    architecture: &'static str,
    os: &'static str,
}

#[derive(Serialize)]
struct ImageConfig<'a> {
    architecture: &'static str,
    os: &'static str,
    config: ExecConfig<'a>,
    rootfs: RootFs,
}

#[derive(Serialize)]
struct ExecConfig<'a> {
    #[serde(rename = "Env", skip_serializing_if = "<[_]>::is_empty")]
    env: &'a [String],
    #[serde(rename = "Entrypoint", skip_serializing_if = "<[_]>::is_empty")]
    entrypoint: &'a [String],
    #[serde(rename = "Cmd", skip_serializing_if = "<[_]>::is_empty")]
    cmd: &'a [String],
    #[serde(rename = "WorkingDir")]
    working_dir: &'static str,
}

#[derive(Serialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<String>,
}

#[derive(Serialize)]
struct ImageManifest<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    config: Descriptor<'a>,
    layers: Vec<Descriptor<'a>>,
}

#[derive(Serialize)]
struct Index<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    manifests: Vec<Descriptor<'a>>,
}

fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

fn descriptor<'a>(media_type: &'a str, bytes: &[u8]) -> Descriptor<'a> {
    Descriptor {
        media_type,
        digest: digest_of(bytes),
        size: bytes.len() as u64,
        annotations: None,
        platform: None,
    }
}

/// Builds the archive for `reference` from `entries` (absolute paths; missing parent
/// directories are added with mode 0755).
pub fn write_image(
    reference: &str,
    entries: &BTreeMap<String, LayerEntry>,
    run: &RunConfig,
    mtime: u64,
) -> io::Result<ImageArchive> {
    let layer = layer_tar(entries, mtime)?;
    let config = serde_json::to_vec(&ImageConfig {
        architecture: "amd64",
        os: "linux",
        config: ExecConfig {
            env: &run.env,
            entrypoint: &run.entrypoint,
            cmd: &run.cmd,
            working_dir: "/",
        },
        rootfs: RootFs {
            kind: "layers",
            diff_ids: vec![digest_of(&layer)],
        },
    })?;
    let manifest = serde_json::to_vec(&ImageManifest {
        schema_version: 2,
        media_type: MEDIA_TYPE_MANIFEST,
        config: descriptor(MEDIA_TYPE_CONFIG, &config),
        layers: vec![descriptor(MEDIA_TYPE_LAYER, &layer)],
    })?;
    let mut entry = descriptor(MEDIA_TYPE_MANIFEST, &manifest);
    entry.annotations = Some(BTreeMap::from([(REF_NAME, reference)]));
    entry.platform = Some(Platform {
        architecture: "amd64",
        os: "linux",
    });
    let index = serde_json::to_vec(&Index {
        schema_version: 2,
        media_type: MEDIA_TYPE_INDEX,
        manifests: vec![entry],
    })?;
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    let mut blobs: BTreeMap<String, &[u8]> = BTreeMap::new();
    for blob in [&layer, &config, &manifest] {
        blobs.insert(format!("blobs/sha256/{}", sha256_hex(blob)), blob);
    }
    let mut outer = Tar::new(mtime);
    outer.dir("blobs", 0o755)?;
    outer.dir("blobs/sha256", 0o755)?;
    for (path, blob) in &blobs {
        outer.file(path, 0o644, blob)?;
    }
    outer.file("index.json", 0o644, &index)?;
    outer.file("oci-layout", 0o644, layout)?;
    Ok(ImageArchive {
        bytes: outer.finish()?,
        manifest_digest: digest_of(&manifest),
        layer_digest: digest_of(&layer),
    })
}

/// The layer: every entry and its missing parents, sorted, relative paths.
fn layer_tar(entries: &BTreeMap<String, LayerEntry>, mtime: u64) -> io::Result<Vec<u8>> {
    let mut all: BTreeMap<String, &LayerEntry> = BTreeMap::new();
    const PARENT: LayerEntry = LayerEntry::Dir { mode: 0o755 };
    for (path, entry) in entries {
        let relative = path.trim_start_matches('/');
        let mut parent = std::path::Path::new(relative).parent();
        while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
            all.entry(dir.display().to_string()).or_insert(&PARENT);
            parent = dir.parent();
        }
        all.insert(relative.to_owned(), entry);
    }
    let mut tar = Tar::new(mtime);
    for (path, entry) in all {
        match entry {
            LayerEntry::Dir { mode } => tar.dir(&path, *mode)?,
            LayerEntry::File { mode, data } => tar.file(&path, *mode, data)?,
            LayerEntry::Symlink { target } => tar.symlink(&path, target)?,
        }
    }
    tar.finish()
}

/// A tar writer with fixed metadata (mtime, uid/gid 0, no owner names).
struct Tar {
    builder: tar::Builder<Vec<u8>>,
    mtime: u64,
}

impl Tar {
    fn new(mtime: u64) -> Self {
        Self {
            builder: tar::Builder::new(Vec::new()),
            mtime,
        }
    }

    fn header(&self, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(size);
        header.set_mtime(self.mtime);
        header.set_uid(0);
        header.set_gid(0);
        header
    }

    fn dir(&mut self, path: &str, mode: u32) -> io::Result<()> {
        let mut header = self.header(tar::EntryType::Directory, mode, 0);
        self.builder
            .append_data(&mut header, format!("{path}/"), io::empty())
    }

    fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        let mut header = self.header(tar::EntryType::Regular, mode, data.len() as u64);
        self.builder.append_data(&mut header, path, data)
    }

    fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        let mut header = self.header(tar::EntryType::Symlink, 0o777, 0);
        self.builder.append_link(&mut header, path, target)
    }

    fn finish(self) -> io::Result<Vec<u8>> {
        self.builder.into_inner()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample() -> BTreeMap<String, LayerEntry> {
        BTreeMap::from([
            (
                "/bin/busybox".to_owned(),
                LayerEntry::File {
                    mode: 0o755,
                    data: b"\x7fELF...".to_vec(),
                },
            ),
            (
                "/bin/sh".to_owned(),
                LayerEntry::Symlink {
                    target: "busybox".into(),
                },
            ),
        ])
    }

    fn read_tar(bytes: &[u8]) -> BTreeMap<String, (tar::EntryType, u64, Vec<u8>)> {
        let mut archive = tar::Archive::new(bytes);
        let mut out = BTreeMap::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().display().to_string();
            let (kind, mtime) = (entry.header().entry_type(), entry.header().mtime().unwrap());
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            out.insert(path, (kind, mtime, data));
        }
        out
    }

    #[test]
    fn archive_is_a_complete_oci_layout() {
        let run = RunConfig {
            cmd: vec!["/bin/sh".into()],
            ..RunConfig::default()
        };
        let image = write_image("localhost/cairn/toolbox:1", &sample(), &run, 42).unwrap();
        let files = read_tar(&image.bytes);
        assert!(files.values().all(|(_, mtime, _)| *mtime == 42));
        let index: serde_json::Value = serde_json::from_slice(&files["index.json"].2).unwrap();
        let entry = &index["manifests"][0];
        assert_eq!(entry["annotations"][REF_NAME], "localhost/cairn/toolbox:1");
        assert_eq!(entry["digest"], image.manifest_digest);
        let blob = |digest: &str| &files[&format!("blobs/sha256/{}", &digest[7..])].2;
        let manifest: serde_json::Value =
            serde_json::from_slice(blob(&image.manifest_digest)).unwrap();
        let config_digest = manifest["config"]["digest"].as_str().unwrap();
        let config: serde_json::Value = serde_json::from_slice(blob(config_digest)).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"][0], image.layer_digest);
        assert_eq!(config["config"]["Cmd"][0], "/bin/sh");
        let layer = read_tar(blob(&image.layer_digest));
        let paths: Vec<&str> = layer.keys().map(String::as_str).collect();
        assert_eq!(paths, ["bin/", "bin/busybox", "bin/sh"]);
        assert_eq!(layer["bin/sh"].0, tar::EntryType::Symlink);
    }

    #[test]
    fn same_input_same_bytes_and_reference_changes_digest() {
        let run = RunConfig {
            entrypoint: vec!["/pause".into()],
            ..RunConfig::default()
        };
        let a = write_image("localhost/a:1", &sample(), &run, 1).unwrap();
        let b = write_image("localhost/a:1", &sample(), &run, 1).unwrap();
        assert_eq!(a, b);
        let c = write_image("localhost/b:1", &sample(), &run, 1).unwrap();
        assert_eq!(a.manifest_digest, c.manifest_digest);
        assert_ne!(a.bytes, c.bytes);
    }
}
