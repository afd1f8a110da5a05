//! The build output the launcher boots: `vmlinuz`, `initramfs.img`, `cmdline`
//! (`docs/interfaces.md`, "Build output"), and where to find it by default.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Image directory relative to the workspace root.
pub const DEFAULT_IMAGE_DIR: &str = "build/image";
/// State directory of the default node relative to the workspace root.
pub const DEFAULT_STATE_DIR: &str = "build/node";

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A required build output is missing.
    #[error("{0} not found; build the image first with `make image`")]
    Missing(PathBuf),
    /// A build output could not be read.
    #[error("cannot read {0}")]
    Read(PathBuf, #[source] io::Error),
}

/// A built image on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The build directory.
    pub dir: PathBuf,
    /// The kernel.
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
    /// The kernel command line from the build's `cmdline` file.
    pub cmdline: String,
}

impl Image {
    /// Opens the build output in `dir`, checking that every file the launcher needs is there.
    pub fn open(dir: &Path) -> Result<Self, ImageError> {
        let kernel = existing(dir.join("vmlinuz"))?;
        let initrd = existing(dir.join("initramfs.img"))?;
        let cmdline_path = existing(dir.join("cmdline"))?;
        let cmdline = fs::read_to_string(&cmdline_path)
            .map_err(|e| ImageError::Read(cmdline_path, e))?
            .trim_end_matches(['\n', '\r'])
            .to_owned();
        Ok(Image {
            dir: dir.to_owned(),
            kernel,
            initrd,
            cmdline,
        })
    }

    /// The build's command line with `extra` parameters appended.
    pub fn cmdline_with(&self, extra: &[String]) -> String {
        std::iter::once(self.cmdline.as_str())
            .chain(extra.iter().map(String::as_str))
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The build manifest (`manifest.json`).
    pub fn manifest_path(&self) -> PathBuf {
        self.dir.join("manifest.json")
    }
}

fn existing(path: PathBuf) -> Result<PathBuf, ImageError> {
    if path.exists() {
        Ok(path)
    } else {
        Err(ImageError::Missing(path))
    }
}

/// The workspace root above `start`: the nearest directory whose `Cargo.toml` declares
/// `[workspace]`, or `start` itself when there is none (an installed launcher).
pub fn workspace_root(start: &Path) -> PathBuf {
    start
        .ancestors()
        .find(|dir| {
            fs::read_to_string(dir.join("Cargo.toml"))
                .is_ok_and(|text| text.lines().any(|line| line.trim() == "[workspace]"))
        })
        .unwrap_or(start)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_image(dir: &Path, cmdline: &str) {
        fs::write(dir.join("vmlinuz"), b"kernel").unwrap();
        fs::write(dir.join("initramfs.img"), b"cpio").unwrap();
        fs::write(dir.join("cmdline"), cmdline).unwrap();
    }

    #[test]
    fn open_reads_the_cmdline_without_newline() {
        let dir = tempfile::tempdir().unwrap();
        write_image(dir.path(), "console=ttyS0 panic=-1\n");
        let image = Image::open(dir.path()).unwrap();
        assert_eq!(image.cmdline, "console=ttyS0 panic=-1");
        assert_eq!(
            image.cmdline_with(&["cairn.x=1".to_owned()]),
            "console=ttyS0 panic=-1 cairn.x=1"
        );
    }

    #[test]
    fn missing_files_say_how_to_build_the_image() {
        let dir = tempfile::tempdir().unwrap();
        let err = Image::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("vmlinuz not found"), "{err}");
        assert!(err.to_string().contains("make image"), "{err}");
    }

    #[test]
    fn workspace_root_is_found_from_a_subdirectory() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("Cargo.toml"), "[workspace]\nmembers = []\n").unwrap();
        let sub = dir.path().join("qemu-tests/src");
        fs::create_dir_all(&sub).unwrap();
        fs::write(dir.path().join("qemu-tests/Cargo.toml"), "[package]\n").unwrap();
        assert_eq!(workspace_root(&sub), dir.path());
        let lonely = tempfile::tempdir().unwrap();
        assert_eq!(workspace_root(lonely.path()), lonely.path());
    }
}
