//! The plan written out: the initramfs archive, the manifest describing it, and the
//! image directory, written beside its final place and swapped in with
//! `renameat2(RENAME_EXCHANGE)` so a failed build leaves the previous image intact.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use cairn_initramfs as cpio;
use sha2::{Digest, Sha256};

use super::closure::Modules;
use super::plan::{Content, Plan};
use super::{BuildError, Kernel};
use crate::config::{CompressionKind, Validated};
use crate::manifest::{self, Manifest};
use crate::osrelease::BuildInfo;

/// The archive, hashed and ready to be written into the image directory.
pub(super) struct Initramfs<'a> {
    content: Archived<'a>,
    size: u64,
    sha256: String,
}

enum Archived<'a> {
    /// Compressed in memory: a fraction of the payload.
    Compressed(Vec<u8>),
    /// Uncompressed, the archive is little more than the plan's file contents, which
    /// it borrows: streamed into the output file when that is written, never copied
    /// into a buffer of its own.
    Plain(cpio::Archive<'a>, cpio::WriteOptions),
}

impl Initramfs<'_> {
    /// Writes the archive to a new file at `path`.
    fn write_to(&self, path: &Path) -> Result<(), BuildError> {
        let output = |source| BuildError::Output {
            path: path.to_owned(),
            source,
        };
        let file = File::create(path).map_err(output)?;
        match &self.content {
            Archived::Compressed(bytes) => (&file).write_all(bytes).map_err(output),
            Archived::Plain(archive, options) => archive
                .write(file, options)
                .map(drop)
                .map_err(BuildError::Write),
        }
    }
}

/// The planned entries as a newc cpio archive, compressed as the config says. The
/// archive borrows the plan's file contents and is hashed as it is made, so no byte of
/// the payload is copied or read more often than the output needs.
pub(super) fn write_archive<'a>(
    plan: &'a Plan,
    config: &Validated,
    mtime: u64,
) -> Result<Initramfs<'a>, BuildError> {
    let mut archive = cpio::Archive::new();
    let mut payload = 0;
    for (path, planned) in &plan.entries {
        let result = match &planned.content {
            Content::Dir => archive.add_dir(path, planned.mode),
            Content::File(data) => {
                payload += data.len();
                archive.add_file(path, planned.mode, &data[..])
            }
            Content::Symlink(target) => archive.add_symlink(path, target),
            Content::CharDevice(major, minor) => {
                archive.add_char_device(path, planned.mode, *major, *minor)
            }
        };
        result.map_err(BuildError::Archive)?;
    }
    let compression = match (config.initramfs.compression, config.initramfs.level) {
        (CompressionKind::None, _) => cpio::Compression::None,
        (CompressionKind::Gzip, level) => cpio::Compression::Gzip {
            level: level.unwrap_or(6).unsigned_abs(),
        },
        (CompressionKind::Zstd, level) => cpio::Compression::Zstd {
            level: level.unwrap_or(3),
        },
    };
    // newc stores 32-bit times; clamp rather than wrap (year 2106 problem).
    let mtime = u32::try_from(mtime).unwrap_or(u32::MAX);
    let options = cpio::WriteOptions { mtime, compression };
    if compression == cpio::Compression::None {
        let hashed = archive.write(Hashing::new(io::sink()), &options);
        let hashed = hashed.map_err(BuildError::Write)?;
        return Ok(Initramfs {
            content: Archived::Plain(archive, options),
            size: hashed.size,
            sha256: hashed.hex(),
        });
    }
    // Compressed, the archive is a fraction of its payload.
    let out = Hashing::new(Vec::with_capacity(payload / 2));
    let hashed = archive.write(out, &options).map_err(BuildError::Write)?;
    Ok(Initramfs {
        size: hashed.size,
        sha256: hashed.hex(),
        content: Archived::Compressed(hashed.out),
    })
}

/// Hashes and counts what passes through it.
struct Hashing<W> {
    out: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> Hashing<W> {
    fn new(out: W) -> Self {
        Hashing {
            out,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    fn hex(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.out.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.size += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Everything the manifest describes, gathered by the build.
pub(super) struct ManifestInputs<'a> {
    pub plan: &'a Plan,
    pub config: &'a Validated,
    pub info: &'a BuildInfo,
    pub kernel: &'a Kernel,
    pub vmlinuz: &'a [u8],
    /// The archive, as written to `initramfs.img`.
    pub initramfs: &'a Initramfs<'a>,
    pub modules: Modules,
    /// The digest `build.json` carries.
    pub content_digest: String,
}

impl ManifestInputs<'_> {
    pub fn manifest(self) -> Manifest {
        let vmlinuz_sha256 = manifest::sha256_hex(self.vmlinuz);
        let initramfs_sha256 = self.initramfs.sha256.clone();
        let mut sources = self.plan.sources.clone();
        sources.sort();
        sources.dedup();
        let (config, info, deb) = (self.config, self.info, &self.kernel.deb);
        Manifest {
            format: manifest::FORMAT,
            image_digest: manifest::image_digest(
                &vmlinuz_sha256,
                &initramfs_sha256,
                &config.kernel.cmdline,
            ),
            os_release: manifest::OsReleaseFields {
                version: info.version.clone(),
                version_id: info.version_id.clone(),
                build_id: info.build_id.clone(),
                source_date_epoch: info.source_date_epoch,
            },
            kernel: manifest::KernelInfo {
                package: deb.control.package.clone(),
                version: deb.control.version.clone(),
                release: self.kernel.tree.release().to_owned(),
                vmlinuz_sha256,
            },
            cmdline: config.kernel.cmdline.clone(),
            initramfs: manifest::InitramfsInfo {
                file: "initramfs.img".into(),
                compression: format!("{:?}", config.initramfs.compression).to_lowercase(),
                size: self.initramfs.size,
                sha256: initramfs_sha256,
            },
            content_digest: self.content_digest,
            cargo_profile: info.cargo_profile.clone(),
            sources,
            container_images: self.plan.images.clone(),
            modules: self.modules.loaded,
            builtin_modules: self.modules.builtin,
            files: self.plan.files(),
        }
    }
}

/// Writes the image directory beside `out` and swaps it into place.
pub(super) fn write_output(
    out: &Path,
    vmlinuz: &[u8],
    initramfs: &Initramfs<'_>,
    cmdline: &str,
    manifest: &Manifest,
) -> Result<(), BuildError> {
    let parent = super::fresh::parent_of(out);
    let write_err = |path: &Path| {
        let path = path.to_owned();
        move |source| BuildError::Output { path, source }
    };
    fs::create_dir_all(parent).map_err(write_err(parent))?;
    let staging = tempfile::Builder::new()
        .prefix(&super::fresh::staging_prefix(out))
        .tempdir_in(parent)
        .map_err(write_err(parent))?;
    let manifest_json = manifest.to_json();
    let files: [(&str, &[u8]); 3] = [
        ("vmlinuz", vmlinuz),
        ("cmdline", cmdline.as_bytes()),
        ("manifest.json", manifest_json.as_bytes()),
    ];
    for (name, bytes) in files {
        let path = staging.path().join(name);
        fs::write(&path, bytes).map_err(write_err(&path))?;
    }
    initramfs.write_to(&staging.path().join("initramfs.img"))?;
    swap_into_place(staging, out).map_err(write_err(out))
}

/// Exchanges the staged directory with `out` atomically (or renames it there when
/// `out` does not exist yet); the old image is removed with the staging directory.
fn swap_into_place(staging: tempfile::TempDir, out: &Path) -> std::io::Result<()> {
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    if out.exists() {
        renameat2(
            AT_FDCWD,
            staging.path(),
            AT_FDCWD,
            out,
            RenameFlags::RENAME_EXCHANGE,
        )?;
        drop(staging);
    } else {
        fs::rename(staging.keep(), out)?;
    }
    Ok(())
}
