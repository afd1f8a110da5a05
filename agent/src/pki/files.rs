//! Writing PKI files: private keys 0600, certificates 0644, each with
//! [`write_atomic`], so a crash never leaves half a key.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use super::{Issued, PkiError};
use crate::atomic_write::write_atomic;

/// Creates `dir` (and parents) and makes it private even if it already existed.
pub(super) fn create_dir(dir: &Path) -> Result<(), PkiError> {
    let err = |source| PkiError::Write {
        path: dir.to_owned(),
        source,
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(err)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(err)
}

pub(super) fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Read {
        path: path.to_owned(),
        source,
    })
}

/// `<name>.crt` and `<name>.key`.
pub(super) fn write_pair(dir: &Path, name: &str, issued: &Issued) -> Result<(), PkiError> {
    write_public(&dir.join(format!("{name}.crt")), &issued.cert_pem)?;
    write_secret(&dir.join(format!("{name}.key")), &issued.key_pem)
}

pub(super) fn write_secret(path: &Path, text: &str) -> Result<(), PkiError> {
    write_atomically(path, text, 0o600)
}

pub(super) fn write_public(path: &Path, text: &str) -> Result<(), PkiError> {
    write_atomically(path, text, 0o644)
}

fn write_atomically(path: &Path, text: &str, mode: u32) -> Result<(), PkiError> {
    write_atomic(path, text.as_bytes(), mode).map_err(|source| PkiError::Write {
        path: path.to_owned(),
        source,
    })
}
