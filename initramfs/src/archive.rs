//! The archive builder: validates paths and collects entries, keyed by path components.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Bound;

use thiserror::Error;

use crate::entry::FileType;

/// Longest stored name the kernel accepts: `PATH_MAX` (4096) including the NUL.
const MAX_NAME_LEN: usize = 4095;

/// Mode of the parent directories the writer adds implicitly.
pub(crate) static IMPLICIT_DIR: Node<'static> = Node::Directory { mode: 0o755 };

/// Errors from adding an entry to an [`Archive`].
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ArchiveError {
    /// The path cannot be stored.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The mode has bits beyond the permission bits.
    #[error("invalid mode {mode:#o} for {path:?}: only permission bits (0o7777) are allowed")]
    InvalidMode {
        /// The path as given.
        path: String,
        /// The mode as given.
        mode: u32,
    },
    /// The symlink target cannot be stored.
    #[error("invalid symlink target {target:?} for {path:?}: {reason}")]
    InvalidTarget {
        /// The path as given.
        path: String,
        /// The target as given.
        target: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// newc stores sizes in 32 bits.
    #[error("file {path:?} is {size} bytes, more than a newc archive can hold (4 GiB - 1)")]
    FileTooLarge {
        /// The path as given.
        path: String,
        /// The size of the data.
        size: usize,
    },
    /// The path was added before with a different type, mode or contents.
    #[error("path {path:?} added twice with different contents")]
    Duplicate {
        /// The path as given the second time.
        path: String,
    },
    /// An ancestor of the path is something other than a directory.
    #[error("cannot add {path:?}: its parent {parent:?} is not a directory")]
    ParentNotDirectory {
        /// The path that needs the parent to be a directory.
        path: String,
        /// The stored path of the conflicting non-directory.
        parent: String,
    },
}

/// What the builder knows about one path; uid, gid, mtime and inode come from the writer.
/// File contents may be borrowed, so a caller holding them already lends them for the
/// write instead of copying hundreds of megabytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node<'a> {
    Directory { mode: u32 },
    File { mode: u32, data: Cow<'a, [u8]> },
    Symlink { target: String },
    CharDevice { mode: u32, major: u32, minor: u32 },
}

impl Node<'_> {
    /// File-type bits plus permission bits.
    pub fn mode(&self) -> u32 {
        match self {
            Node::Directory { mode } => FileType::Directory.mode_bits() | mode,
            Node::File { mode, .. } => FileType::Regular.mode_bits() | mode,
            Node::Symlink { .. } => FileType::Symlink.mode_bits() | 0o777,
            Node::CharDevice { mode, .. } => FileType::CharDevice.mode_bits() | mode,
        }
    }

    /// The bytes stored after the name: file contents or symlink target.
    pub fn data(&self) -> &[u8] {
        match self {
            Node::File { data, .. } => data,
            Node::Symlink { target } => target.as_bytes(),
            Node::Directory { .. } | Node::CharDevice { .. } => &[],
        }
    }
}

/// An initramfs under construction. Entries are kept sorted by path components, so the
/// order they are added in never shows in the output. `'a` is how long borrowed file
/// contents live; an archive of owned contents is an `Archive<'static>`.
#[derive(Debug, Default, Clone)]
pub struct Archive<'a> {
    nodes: BTreeMap<Vec<String>, Node<'a>>,
}

impl<'a> Archive<'a> {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a directory with permission bits `mode` (e.g. `0o755`).
    pub fn add_dir(&mut self, path: &str, mode: u32) -> Result<(), ArchiveError> {
        check_mode(path, mode)?;
        self.insert(path, Node::Directory { mode })
    }

    /// Adds a regular file with permission bits `mode` and contents `data`, owned
    /// (`Vec<u8>`) or borrowed (`&[u8]`) until the archive is written.
    pub fn add_file(
        &mut self,
        path: &str,
        mode: u32,
        data: impl Into<Cow<'a, [u8]>>,
    ) -> Result<(), ArchiveError> {
        let data = data.into();
        check_mode(path, mode)?;
        if u32::try_from(data.len()).is_err() {
            let (path, size) = (path.to_owned(), data.len());
            return Err(ArchiveError::FileTooLarge { path, size });
        }
        self.insert(path, Node::File { mode, data })
    }

    /// Adds a symlink to `target`, stored verbatim (relative targets stay relative).
    pub fn add_symlink(&mut self, path: &str, target: &str) -> Result<(), ArchiveError> {
        let reason = if target.is_empty() {
            Some("is empty")
        } else if target.contains('\0') {
            Some("contains a nul byte")
        } else if target.len() > MAX_NAME_LEN {
            Some("is longer than 4095 bytes")
        } else {
            None
        };
        if let Some(reason) = reason {
            let (path, target) = (path.to_owned(), target.to_owned());
            return Err(ArchiveError::InvalidTarget {
                path,
                target,
                reason,
            });
        }
        self.insert(
            path,
            Node::Symlink {
                target: target.to_owned(),
            },
        )
    }

    /// Adds a character device node `major:minor` with permission bits `mode`.
    pub fn add_char_device(
        &mut self,
        path: &str,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), ArchiveError> {
        check_mode(path, mode)?;
        self.insert(path, Node::CharDevice { mode, major, minor })
    }

    /// Every entry to write, parents first, with missing parent directories filled in.
    /// Slices of path components compare component by component, so the order is a pure
    /// function of the set of paths and every directory precedes its contents.
    pub(crate) fn layout(&self) -> BTreeMap<&[String], &Node<'a>> {
        let mut all: BTreeMap<&[String], &Node<'a>> = BTreeMap::new();
        for (path, node) in &self.nodes {
            for depth in 1..path.len() {
                all.entry(&path[..depth]).or_insert(&IMPLICIT_DIR);
            }
            all.insert(path, node);
        }
        all
    }

    fn insert(&mut self, path: &str, node: Node<'a>) -> Result<(), ArchiveError> {
        let key = components(path)?;
        self.check_ancestors(path, &key)?;
        match self.nodes.get(&key) {
            Some(existing) if *existing == node => return Ok(()),
            Some(_) => {
                return Err(ArchiveError::Duplicate {
                    path: path.to_owned(),
                })
            }
            None => {}
        }
        if !matches!(node, Node::Directory { .. }) {
            self.check_no_descendants(path, &key)?;
        }
        self.nodes.insert(key, node);
        Ok(())
    }

    /// Refuses `a/b` when `a` is already a file, symlink or device.
    fn check_ancestors(&self, path: &str, key: &[String]) -> Result<(), ArchiveError> {
        for depth in 1..key.len() {
            match self.nodes.get(&key[..depth]) {
                Some(Node::Directory { .. }) | None => {}
                Some(_) => {
                    let (path, parent) = (path.to_owned(), key[..depth].join("/"));
                    return Err(ArchiveError::ParentNotDirectory { path, parent });
                }
            }
        }
        Ok(())
    }

    /// Refuses a non-directory `a` when `a/b` is already there. Descendants sort right
    /// after their ancestor, so the next key is the only one to look at.
    fn check_no_descendants(&self, path: &str, key: &[String]) -> Result<(), ArchiveError> {
        let after = (Bound::Excluded(key), Bound::Unbounded);
        match self.nodes.range::<[String], _>(after).next() {
            Some((next, _)) if next.starts_with(key) => Err(ArchiveError::ParentNotDirectory {
                path: next.join("/"),
                parent: path.to_owned(),
            }),
            _ => Ok(()),
        }
    }
}

fn check_mode(path: &str, mode: u32) -> Result<(), ArchiveError> {
    if mode & !0o7777 != 0 {
        return Err(ArchiveError::InvalidMode {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Splits an image path into the components stored in the archive. A leading `/`, repeated
/// slashes and `.` components are dropped, because the kernel unpacks relative to `/`.
fn components(path: &str) -> Result<Vec<String>, ArchiveError> {
    let invalid = |reason| ArchiveError::InvalidPath {
        path: path.to_owned(),
        reason,
    };
    if path.contains('\0') {
        return Err(invalid("contains a nul byte"));
    }
    let parts: Vec<String> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_owned)
        .collect();
    if parts.iter().any(|c| c == "..") {
        return Err(invalid("contains a `..` component"));
    }
    if parts.is_empty() {
        return Err(invalid("is empty or names the root"));
    }
    if parts.iter().map(|c| c.len() + 1).sum::<usize>() - 1 > MAX_NAME_LEN {
        return Err(invalid("is longer than 4095 bytes"));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored_paths(archive: &Archive) -> Vec<String> {
        archive.layout().keys().map(|k| k.join("/")).collect()
    }

    #[test]
    fn paths_are_stored_relative_and_normalised() {
        assert_eq!(
            components("/etc/os-release").unwrap(),
            ["etc", "os-release"]
        );
        assert_eq!(
            components("etc//./os-release/").unwrap(),
            ["etc", "os-release"]
        );
        assert_eq!(components("init").unwrap(), ["init"]);
    }

    #[test]
    fn bad_paths_are_rejected_by_name() {
        let mut archive = Archive::new();
        for bad in ["", "/", "./", "/etc/../init", "..", "a\0b"] {
            let err = archive.add_dir(bad, 0o755).unwrap_err();
            assert!(
                matches!(&err, ArchiveError::InvalidPath { path, .. } if path == bad),
                "{err}"
            );
        }
        let long = "a/".repeat(2048) + "b"; // 4097 bytes stored
        assert!(matches!(
            archive.add_dir(&long, 0o755),
            Err(ArchiveError::InvalidPath { .. })
        ));
    }

    #[test]
    fn mode_must_be_permission_bits_only() {
        let err = Archive::new()
            .add_file("/init", 0o100_755, vec![])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid mode 0o100755 for \"/init\": only permission bits (0o7777) are allowed"
        );
    }

    #[test]
    fn bad_symlink_targets_are_rejected() {
        let mut archive = Archive::new();
        assert!(matches!(
            archive.add_symlink("/a", ""),
            Err(ArchiveError::InvalidTarget { .. })
        ));
        assert!(matches!(
            archive.add_symlink("/a", "b\0"),
            Err(ArchiveError::InvalidTarget { .. })
        ));
    }

    #[test]
    fn missing_parents_are_added_before_children() {
        let mut archive = Archive::new();
        archive
            .add_file("/lib/modules/6.1/kernel/a.ko", 0o644, vec![1])
            .unwrap();
        archive.add_dir("/lib", 0o700).unwrap();
        let expected = [
            "lib",
            "lib/modules",
            "lib/modules/6.1",
            "lib/modules/6.1/kernel",
            "lib/modules/6.1/kernel/a.ko",
        ];
        assert_eq!(stored_paths(&archive), expected);
        let layout = archive.layout();
        let modes: Vec<u32> = layout.values().map(|n| n.mode() & 0o7777).collect();
        assert_eq!(modes, [0o700, 0o755, 0o755, 0o755, 0o644]);
    }

    #[test]
    fn order_is_by_components_not_by_string() {
        let mut archive = Archive::new();
        for path in ["/a-b", "/a/c", "/a.d", "/a"] {
            archive.add_dir(path, 0o755).unwrap();
        }
        // As strings "a-b" < "a.d" < "a/c"; by components "a" and its contents come first.
        assert_eq!(stored_paths(&archive), ["a", "a/c", "a-b", "a.d"]);
    }

    #[test]
    fn duplicates_are_errors_unless_identical() {
        let mut archive = Archive::new();
        archive
            .add_file("/etc/hostname", 0o644, b"node\n".to_vec())
            .unwrap();
        archive
            .add_file("etc/hostname", 0o644, b"node\n".to_vec())
            .unwrap();
        archive.add_dir("/etc", 0o755).unwrap();
        archive.add_dir("/etc", 0o755).unwrap();
        let err = archive
            .add_file("/etc/hostname", 0o600, b"node\n".to_vec())
            .unwrap_err();
        assert_eq!(
            err,
            ArchiveError::Duplicate {
                path: "/etc/hostname".into()
            }
        );
        assert!(err.to_string().contains("/etc/hostname"));
        assert!(matches!(
            archive.add_dir("/etc", 0o700),
            Err(ArchiveError::Duplicate { .. })
        ));
        assert!(matches!(
            archive.add_symlink("/etc/hostname", "x"),
            Err(ArchiveError::Duplicate { .. })
        ));
    }

    #[test]
    fn non_directories_cannot_have_children() {
        let mut archive = Archive::new();
        archive.add_symlink("/lib", "usr/lib").unwrap();
        let err = archive.add_file("/lib/x.so", 0o644, vec![]).unwrap_err();
        let expected = ArchiveError::ParentNotDirectory {
            path: "/lib/x.so".into(),
            parent: "lib".into(),
        };
        assert_eq!(err, expected);
        archive.add_file("/bin/sh", 0o755, vec![]).unwrap();
        let err = archive.add_file("/bin", 0o755, vec![]).unwrap_err();
        let expected = ArchiveError::ParentNotDirectory {
            path: "bin/sh".into(),
            parent: "/bin".into(),
        };
        assert_eq!(err, expected);
    }
}
