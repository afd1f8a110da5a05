//! The build manifest: what is in the image, where each file came from, and the
//! image's digest. Written as pretty JSON with every list sorted, so two builds from
//! the same inputs give the same bytes.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bumped when the shape changes incompatibly.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// See [`image_digest`].
    pub image_digest: String,
    pub os_release: OsReleaseFields,
    pub kernel: KernelInfo,
    pub cmdline: String,
    pub initramfs: InitramfsInfo,
    /// sha256 over every initramfs entry but `/etc/cairn/build.json`, which carries
    /// the same value into the running node.
    pub content_digest: String,
    /// The Cargo profile of the workspace's binaries: `release` for images that are
    /// benchmarked, tested in CI and shipped; `dev-image` for quick rebuilds.
    #[serde(default)]
    pub cargo_profile: String,
    /// Packages and other inputs, sorted by component then name.
    pub sources: Vec<SourceInfo>,
    /// OCI archives in the initramfs for the agent to import, in config order.
    pub container_images: Vec<ContainerImageInfo>,
    /// Modules in load order (dependencies first), as `/etc/cairn/modules.load` lists them.
    pub modules: Vec<ModuleInfo>,
    /// Requested modules the kernel has built in (nothing to load).
    pub builtin_modules: Vec<String>,
    /// Every entry of the initramfs, sorted by path.
    pub files: Vec<FileInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsReleaseFields {
    pub version: String,
    pub version_id: String,
    pub build_id: String,
    pub source_date_epoch: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelInfo {
    pub package: String,
    pub version: String,
    pub release: String,
    pub vmlinuz_sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitramfsInfo {
    pub file: String,
    pub compression: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SourceInfo {
    pub component: String,
    /// `deb`, `cargo`, `file` or `go`.
    pub kind: String,
    /// Package name, cargo package, or repository path.
    pub name: String,
    pub version: Option<String>,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerImageInfo {
    pub name: String,
    pub reference: String,
    /// The archive's path in the initramfs.
    pub archive: String,
    pub archive_sha256: String,
    /// `sha256:<hex>` of the OCI manifest: the digest containerd lists.
    pub manifest_digest: String,
    /// `sha256:<hex>` of the single uncompressed layer.
    pub layer_digest: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleInfo {
    pub name: String,
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    pub path: String,
    /// `file`, `dir`, `symlink` or `char`.
    pub kind: String,
    /// Octal permission bits, e.g. `0755`.
    pub mode: String,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub target: Option<String>,
    pub component: String,
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The image digest binds the kernel, the initramfs and the command line together:
/// sha256 of `vmlinuz <sha256>\ninitramfs <sha256>\ncmdline <cmdline>\n`, written
/// `sha256:<hex>` (docs/interfaces.md).
pub fn image_digest(vmlinuz_sha256: &str, initramfs_sha256: &str, cmdline: &str) -> String {
    let text =
        format!("vmlinuz {vmlinuz_sha256}\ninitramfs {initramfs_sha256}\ncmdline {cmdline}\n");
    format!("sha256:{}", sha256_hex(text.as_bytes()))
}

impl Manifest {
    /// Pretty JSON with a trailing newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("manifest serializes");
        text.push('\n');
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_depends_on_every_part() {
        let base = image_digest("a", "b", "c");
        assert!(base.starts_with("sha256:") && base.len() == 7 + 64);
        assert_ne!(base, image_digest("x", "b", "c"));
        assert_ne!(base, image_digest("a", "x", "c"));
        assert_ne!(base, image_digest("a", "b", "x"));
        assert_eq!(base, image_digest("a", "b", "c"));
    }

    #[test]
    fn sha256_of_empty_input() {
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(sha256_hex(b""), empty);
    }
}
