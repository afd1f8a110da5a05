//! Debian packages, fetched with apt and unpacked by us.
//!
//! The module has two halves. The apt side ([`DebCache`]) asks apt only two things:
//! which version and pool file a package name resolves to (`apt-cache show`), and to
//! download that file (`apt-get download`). A build asks about all its packages in one
//! `apt-cache show` ([`DebCache::resolve_ahead`]): apt rebuilds its package cache on
//! every call where `pkgcache.bin` is disabled (Debian's container images do), about a
//! second each, which dominated a warm build. apt's answers are kept beside the `.deb`s
//! for as long as apt's state (its package lists, sources, preferences, dpkg's status)
//! is unchanged, so a warm build asks apt nothing at all. [`DebCache`] keeps downloaded
//! `.deb`s under one directory (outside the repository) and their unpacked trees under
//! `unpacked/<sha256>/`, so a rebuild with the same packages downloads and unpacks
//! nothing.
//!
//! The other half parses untrusted bytes, and is what the `deb_open` and
//! `deb_control` fuzz targets exercise: a `.deb` is an `ar` archive holding
//! `control.tar.*` and `data.tar.*` (xz, zstd, gzip or plain), which we read with the
//! `ar` and `tar` crates ([`Deb::open`], [`Control::parse`]) and unpack ourselves
//! ([`unpack`]). dpkg never runs, so no maintainer script touches the build host and
//! the result does not depend on what the host has installed. Entries that would land
//! outside the destination (`..`, absolute paths, paths through a symlink the archive
//! made) are refused, and malformed archives are errors naming the file, never panics.
//!
//! Every write lands in a temporary sibling first and is renamed into place, so an
//! interrupted build leaves no half-written file or tree behind.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

mod apt;
mod cache;
mod package;
mod unpack;

pub use cache::DebCache;
pub use package::{Control, Deb, Relation};
pub use unpack::unpack;

/// How many `linux-image-*` metapackages [`DebCache::fetch_kernel`] follows.
const MAX_META_DEPTH: usize = 4;

/// Why a Debian package could not be fetched, read or unpacked.
#[derive(Debug, Error)]
pub enum DebError {
    #[error("debian package `{name}` not found (is it spelled right? has `apt-get update` run?)")]
    NotFound { name: String },
    #[error("debian package `{name}` has no version `{version}` (see `apt-cache policy {name}`)")]
    VersionNotFound { name: String, version: String },
    #[error("cannot run `{command}` for debian package `{name}`")]
    AptSpawn {
        name: String,
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed for debian package `{name}`: {stderr}")]
    Apt {
        name: String,
        command: String,
        stderr: String,
    },
    #[error("apt gave no usable `{field}` for debian package `{name}`")]
    AptField { name: String, field: &'static str },
    #[error(
        "downloaded debian package `{name}` at {path} has sha256 {actual}, apt expects {expected}"
    )]
    Checksum {
        name: String,
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("cannot read debian package {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("debian package {path} has no {member} member")]
    MissingMember { path: PathBuf, member: &'static str },
    #[error("debian package {path} has member {member} with an unsupported compression")]
    Compression { path: PathBuf, member: String },
    #[error("debian package {path} has no control file")]
    NoControl { path: PathBuf },
    #[error("debian package {path}: control file has no `{field}` field")]
    ControlField { path: PathBuf, field: &'static str },
    #[error("debian package {path}: entry {entry:?} would land outside the destination")]
    UnsafeEntry { path: PathBuf, entry: String },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("unpack destination {path} already exists")]
    DestExists { path: PathBuf },
    #[error(
        "debian package `{name}` leads through more than {MAX_META_DEPTH} linux-image metapackages"
    )]
    MetaLoop { name: String },
}

type Result<T> = std::result::Result<T, DebError>;

fn create_dir(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(|source| write_error(path, source))
}

fn write_error(path: &Path, source: io::Error) -> DebError {
    DebError::Write {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod fixtures;
