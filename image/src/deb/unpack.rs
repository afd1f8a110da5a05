//! A `.deb`'s `data.tar.*` written to disk: every entry must land inside the
//! destination, whatever the archive says.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use tracing::debug;

use super::package::with_member;
use super::{create_dir, write_error, Deb, DebError, Result};

/// Unpacks `deb`'s `data.tar.*` into `dest`, which must not exist yet.
///
/// The tree is written into a temporary sibling and renamed to `dest` at the end.
/// Directories, regular files (with their permission bits), symlinks and hard links
/// are created; device nodes and FIFOs, which packages do not ship, are skipped.
pub fn unpack(deb: &Deb, dest: &Path) -> Result<()> {
    if dest.exists() {
        return Err(DebError::DestExists {
            path: dest.to_path_buf(),
        });
    }
    let parent = dest.parent().unwrap_or(Path::new("."));
    create_dir(parent)?;
    let staging = tempfile::Builder::new()
        .prefix(".unpack-")
        .tempdir_in(parent)
        .map_err(|source| write_error(parent, source))?;
    set_mode(staging.path(), 0o755)?;
    with_member(&deb.path, "data.tar", |tar| {
        extract(&deb.path, tar, staging.path())
    })?;
    fs::rename(staging.path(), dest).map_err(|source| write_error(dest, source))?;
    Ok(())
}

/// Extracts every entry of a data tarball under `dest`.
fn extract(deb: &Path, tar: &mut dyn Read, dest: &Path) -> Result<()> {
    let read_error = |source| DebError::Read {
        path: deb.to_path_buf(),
        source,
    };
    let mut dir_modes = Vec::new();
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().map_err(read_error)? {
        let mut entry = entry.map_err(read_error)?;
        let raw = entry.path_bytes().into_owned();
        let unsafe_entry = || DebError::UnsafeEntry {
            path: deb.to_path_buf(),
            entry: String::from_utf8_lossy(&raw).into_owned(),
        };
        let rel = safe_relative(&raw).ok_or_else(unsafe_entry)?;
        if through_symlink(dest, &rel, entry.header().entry_type().is_dir()) {
            return Err(unsafe_entry());
        }
        if let Some(dir) = extract_entry(deb, &mut entry, dest, &rel)? {
            dir_modes.push(dir);
        }
    }
    // Directory modes last: a read-only directory must not stop us filling it.
    dir_modes
        .into_iter()
        .try_for_each(|(path, mode)| set_mode(&path, mode))
}

/// Creates one entry; returns a directory and its mode, to be applied at the end.
fn extract_entry<R: Read>(
    deb: &Path,
    entry: &mut tar::Entry<R>,
    dest: &Path,
    rel: &Path,
) -> Result<Option<(PathBuf, u32)>> {
    let target = dest.join(rel);
    let mode = entry.header().mode().unwrap_or(0o644) & 0o7777;
    let kind = entry.header().entry_type();
    if kind.is_dir() {
        fs::create_dir_all(&target).map_err(|source| write_error(&target, source))?;
        return Ok(Some((target, mode)));
    }
    if let Some(parent) = target.parent() {
        create_dir(parent)?;
    }
    remove_existing(&target)?;
    if kind.is_file() || kind == tar::EntryType::Continuous {
        write_file(entry, &target, mode)?;
    } else if kind.is_symlink() {
        let link = link_name(deb, entry)?;
        std::os::unix::fs::symlink(&link, &target)
            .map_err(|source| write_error(&target, source))?;
    } else if kind.is_hard_link() {
        hard_link_entry(deb, &link_name(deb, entry)?, dest, &target)?;
    } else {
        debug!(entry = %rel.display(), ?kind, "skipping special file");
    }
    Ok(None)
}

fn write_file<R: Read>(entry: &mut tar::Entry<R>, target: &Path, mode: u32) -> Result<()> {
    let write = |source| write_error(target, source);
    let mut file = File::create(target).map_err(write)?;
    io::copy(entry, &mut file).map_err(write)?;
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(write)
}

fn link_name<R: Read>(deb: &Path, entry: &tar::Entry<R>) -> Result<PathBuf> {
    match entry.link_name() {
        Ok(Some(link)) => Ok(link.into_owned()),
        Ok(None) => Err(DebError::UnsafeEntry {
            path: deb.to_path_buf(),
            entry: String::from_utf8_lossy(&entry.path_bytes()).into_owned(),
        }),
        Err(source) => Err(DebError::Read {
            path: deb.to_path_buf(),
            source,
        }),
    }
}

/// Links `target` to the earlier entry `link` (a hard link, or a copy where the
/// filesystem has none). `link` must name a file inside `dest` reached through no
/// symlink, or the link (or copy) could pull in a file from outside the tree.
fn hard_link_entry(deb: &Path, link: &Path, dest: &Path, target: &Path) -> Result<()> {
    let unsafe_link = || DebError::UnsafeEntry {
        path: deb.to_path_buf(),
        entry: link.display().to_string(),
    };
    let rel = safe_relative(link.as_os_str().as_bytes()).ok_or_else(unsafe_link)?;
    if rel.as_os_str().is_empty() || through_symlink(dest, &rel, true) {
        return Err(unsafe_link());
    }
    let source = dest.join(rel);
    if fs::hard_link(&source, target).is_ok() {
        return Ok(());
    }
    fs::copy(&source, target).map_err(|err| write_error(target, err))?;
    Ok(())
}

/// An archive path as a plain relative path (`./a/b` -> `a/b`; `./` -> empty), or
/// `None` when it is absolute or climbs with `..`.
pub(super) fn safe_relative(raw: &[u8]) -> Option<PathBuf> {
    let path = Path::new(OsStr::from_bytes(raw));
    let mut rel = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => rel.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(rel)
}

/// Whether a parent of `rel` under `dest` (or `rel` itself, for a directory entry, which
/// would be filled later) is a symlink: writing there could leave `dest`.
fn through_symlink(dest: &Path, rel: &Path, include_last: bool) -> bool {
    let mut path = dest.to_path_buf();
    let count = rel.components().count();
    let checked = if include_last {
        count
    } else {
        count.saturating_sub(1)
    };
    rel.components().take(checked).any(|part| {
        path.push(part);
        fs::symlink_metadata(&path).is_ok_and(|meta| meta.file_type().is_symlink())
    })
}

/// Removes a non-directory at `target` so a later entry replaces it instead of
/// writing through it (it might be a symlink).
fn remove_existing(target: &Path) -> Result<()> {
    match fs::symlink_metadata(target) {
        Ok(meta) if meta.is_dir() => Err(write_error(target, io::ErrorKind::AlreadyExists.into())),
        Ok(_) => fs::remove_file(target).map_err(|source| write_error(target, source)),
        Err(_) => Ok(()),
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|s| write_error(path, s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deb::fixtures::*;
    #[test]
    fn unpacks_files_modes_and_links() {
        for (control_ext, data_ext) in [(".gz", ".xz"), (".xz", ".zst"), (".zst", ".gz"), ("", "")]
        {
            let dir = tempfile::tempdir().unwrap();
            let deb = Deb::open(&write_deb(dir.path(), control_ext, data_ext, &sample())).unwrap();
            let dest = dir.path().join("out");
            unpack(&deb, &dest).unwrap();
            assert_eq!(
                fs::read(dest.join("usr/bin/tool")).unwrap(),
                b"#!/bin/true\n"
            );
            assert_eq!(mode(&dest.join("usr/bin/tool")), 0o755);
            assert_eq!(mode(&dest.join("etc/secret/key")), 0o600);
            assert_eq!(mode(&dest.join("etc/secret")), 0o700);
            assert_eq!(mode(&dest), 0o755);
            assert_eq!(
                fs::read_link(dest.join("usr/bin/alias")).unwrap(),
                Path::new("tool")
            );
            let ld = fs::read_link(dest.join("usr/lib64/ld.so")).unwrap();
            assert_eq!(ld, Path::new("/lib/x86_64-linux-gnu/ld.so"));
            assert_eq!(
                fs::read(dest.join("usr/bin/tool2")).unwrap(),
                b"#!/bin/true\n"
            );
        }
    }

    #[test]
    fn refuses_entries_escaping_the_destination() {
        let hostile: [&[Item]; 7] = [
            &[Item::File("../evil", b"x", 0o644)],
            &[Item::File("./usr/../../evil", b"x", 0o644)],
            &[Item::File("/tmp/evil", b"x", 0o644)],
            &[
                Item::Symlink("./lib", "/tmp"),
                Item::File("./lib/evil", b"x", 0o644),
            ],
            &[
                Item::Symlink("./etc", "/etc"),
                Item::HardLink("./evil", "./etc/hostname"),
            ],
            &[
                Item::Symlink("./pw", "/etc/hostname"),
                Item::HardLink("./evil", "./pw"),
            ],
            &[Item::HardLink("./evil", "../etc/hostname")],
        ];
        for items in hostile {
            let dir = tempfile::tempdir().unwrap();
            let deb = Deb::open(&write_deb(dir.path(), ".gz", ".gz", items)).unwrap();
            let dest = dir.path().join("sub/out");
            let err = unpack(&deb, &dest).unwrap_err();
            assert!(matches!(err, DebError::UnsafeEntry { .. }), "{err}");
            assert!(err.to_string().contains("tool_2.0-1_amd64.deb"), "{err}");
            assert!(!dest.exists());
            assert!(!dir.path().join("evil").exists());
            assert_eq!(fs::read_dir(dir.path().join("sub")).unwrap().count(), 0);
        }
    }

    #[test]
    fn corrupt_deb_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.deb");
        fs::write(&garbage, b"this is not an ar archive").unwrap();
        let good = fs::read(write_deb(dir.path(), ".xz", ".xz", &sample())).unwrap();
        let truncated = dir.path().join("truncated.deb");
        fs::write(&truncated, &good[..good.len() / 2]).unwrap();
        for path in [&garbage, &truncated] {
            let err = Deb::open(path).map(|deb| unpack(&deb, &dir.path().join("x")));
            let err = match err {
                Err(err) | Ok(Err(err)) => err,
                Ok(Ok(())) => panic!("{} unpacked", path.display()),
            };
            assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
        }
    }

    #[test]
    fn missing_members_and_unknown_compression_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("odd.deb");
        let control = tarball(&[Item::File("./control", CONTROL.as_bytes(), 0o644)]);
        let control = ("control.tar".to_string(), control);
        write_ar(&path, &[("debian-binary".into(), b"2.0\n".to_vec())]);
        let err = Deb::open(&path).unwrap_err();
        assert!(matches!(err, DebError::MissingMember { .. }), "{err}");
        write_ar(&path, std::slice::from_ref(&control));
        let err = unpack(&Deb::open(&path).unwrap(), &dir.path().join("x")).unwrap_err();
        assert!(matches!(err, DebError::MissingMember { .. }), "{err}");
        write_ar(&path, &[control, ("data.tar.bz2".into(), b"BZh".to_vec())]);
        let err = unpack(&Deb::open(&path).unwrap(), &dir.path().join("x")).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "debian package {} has member data.tar.bz2 with an unsupported compression",
                path.display()
            )
        );
        let empty = tarball(&[Item::File("./md5sums", b"", 0o644)]);
        write_ar(&path, &[("control.tar".into(), empty)]);
        let err = Deb::open(&path).unwrap_err();
        assert!(matches!(err, DebError::NoControl { .. }), "{err}");
    }
}
