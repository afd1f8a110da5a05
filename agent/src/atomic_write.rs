//! The agent's one way to write a file that a power cut must not leave half-written
//! and that a reader must see whole or not at all: keys, certificates, kubeconfigs,
//! component configuration.
//!
//! The sequence is the one rename(2) and fsync(2) make durable: write a temporary
//! file in the same directory, created with its final mode so a key is never readable
//! by others even briefly; fsync it, so its data is on disk before its name is; rename
//! it over the target, which replaces the old file atomically; fsync the directory, so
//! the rename itself survives a power cut.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Replaces `path` with `contents`, file mode `mode`, durably. The directory must exist.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let temporary = temporary_path(path);
    // A temporary file left by a crash is ours and stale.
    match fs::remove_file(&temporary) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temporary)?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temporary, path)?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// `<name>.tmp` beside `path`; appended rather than replacing the extension, so
/// `a.crt` and `a.key` never share one.
fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map_or_else(OsString::new, OsString::from);
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn replaces_the_file_with_the_mode_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        fs::write(&path, "old").unwrap();
        fs::write(dir.path().join("node.key.tmp"), "stale").unwrap();
        write_atomic(&path, b"new", 0o600).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn a_missing_directory_is_an_error_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent/file");
        assert_eq!(
            write_atomic(&path, b"x", 0o644).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn temporary_names_keep_the_extension() {
        assert_eq!(
            temporary_path(Path::new("/pki/a.crt")),
            Path::new("/pki/a.crt.tmp")
        );
    }
}
