//! GetBuildInfo: what the image says about itself, read once when the service starts
//! (the files are part of the immutable image, so they cannot change while it runs),
//! and which boot of which node this is (boot ID, node ID), fixed for the boot too.

use std::fs;
use std::io;
use std::path::Path;

use cairn_api::v1::BuildInfo;

use crate::os_release;
use crate::Paths;

/// `/etc/cairn/build.json`: the builder's summary of the image (optional).
pub const BUILD_JSON: &str = "/etc/cairn/build.json";
/// random(4): a fresh UUID every boot.
pub const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";
/// Bigger files are not the builder's and are not read.
const MAX_FILE: u64 = 1 << 20;

/// Reads os-release(5) and the build summary under `paths`. Missing or unreadable
/// files leave their fields empty (logged once): build info is for people, and a node
/// without it is still worth debugging.
pub fn read(paths: &Paths) -> BuildInfo {
    let os_release = read_optional(&paths.os_release());
    let build_json = read_optional(&paths.resolve(BUILD_JSON));
    BuildInfo {
        os_release_fields: os_release::fields(&os_release::parse(&os_release)),
        content_digest: content_digest(&build_json),
        os_release,
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        build_json,
        boot_id: read_optional(&paths.resolve(BOOT_ID)).trim().to_owned(),
        node_id: read_optional(&paths.machine_id()).trim().to_owned(),
    }
}

fn read_optional(path: &Path) -> String {
    let read = fs::metadata(path).and_then(|meta| {
        if meta.len() > MAX_FILE {
            return Err(io::Error::other(format!("larger than {MAX_FILE} bytes")));
        }
        fs::read(path)
    });
    match read {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(err) if err.kind() == io::ErrorKind::NotFound => String::new(),
        Err(err) => {
            tracing::warn!("build info: cannot read {}: {err}", path.display());
            String::new()
        }
    }
}

/// `content_digest` of build.json, or empty.
fn content_digest(build_json: &str) -> String {
    if build_json.is_empty() {
        return String::new();
    }
    match serde_json::from_str::<serde_json::Value>(build_json) {
        Ok(value) => value["content_digest"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        Err(err) => {
            tracing::warn!("build info: {BUILD_JSON} is not JSON: {err}");
            String::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_read_below_the_root_and_may_be_missing() {
        let root = tempfile::tempdir().unwrap();
        let paths = Paths::under_root(root.path());
        let info = read(&paths);
        assert_eq!(info.os_release, "");
        assert_eq!(info.content_digest, "");
        assert_eq!(info.agent_version, env!("CARGO_PKG_VERSION"));

        fs::create_dir_all(root.path().join("etc/cairn")).unwrap();
        fs::write(root.path().join("etc/os-release"), "ID=cairn\n").unwrap();
        fs::write(
            root.path().join("etc/cairn/build.json"),
            r#"{"content_digest":"sha256:ab","other":1}"#,
        )
        .unwrap();
        let info = read(&paths);
        assert_eq!(info.os_release_fields["ID"], "cairn");
        assert_eq!(info.content_digest, "sha256:ab");
        assert!(info.build_json.contains("other"));

        fs::write(root.path().join("etc/cairn/build.json"), "not json").unwrap();
        assert_eq!(read(&paths).content_digest, "");
    }
}
