//! One archive member as it is stored, shared by the reader, the writer and the listing.

use std::borrow::Cow;

use crate::newc::Header;

/// Mask of the file-type bits in `st_mode`, see inode(7).
const S_IFMT: u32 = 0o170_000;

/// The file type encoded in the high bits of a mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    /// `S_IFDIR`
    Directory,
    /// `S_IFREG`
    Regular,
    /// `S_IFLNK`
    Symlink,
    /// `S_IFCHR`
    CharDevice,
    /// `S_IFBLK`
    BlockDevice,
    /// `S_IFIFO`
    Fifo,
    /// `S_IFSOCK`
    Socket,
    /// Type bits that name none of the above (only found in foreign archives).
    Unknown,
}

impl FileType {
    /// The type encoded in `mode`; permission bits are ignored.
    pub fn from_mode(mode: u32) -> Self {
        match mode & S_IFMT {
            0o040_000 => FileType::Directory,
            0o100_000 => FileType::Regular,
            0o120_000 => FileType::Symlink,
            0o020_000 => FileType::CharDevice,
            0o060_000 => FileType::BlockDevice,
            0o010_000 => FileType::Fifo,
            0o140_000 => FileType::Socket,
            _ => FileType::Unknown,
        }
    }

    /// The `S_IF*` bits of this type (0 for `Unknown`).
    pub fn mode_bits(self) -> u32 {
        match self {
            FileType::Directory => 0o040_000,
            FileType::Regular => 0o100_000,
            FileType::Symlink => 0o120_000,
            FileType::CharDevice => 0o020_000,
            FileType::BlockDevice => 0o060_000,
            FileType::Fifo => 0o010_000,
            FileType::Socket => 0o140_000,
            FileType::Unknown => 0,
        }
    }
}

/// One member of an archive, exactly as stored (the trailer is not an entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path as stored; archives from [`Archive`](crate::Archive) have no leading `/`.
    pub path: String,
    /// File type and permission bits, like `st_mode`.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time in seconds since the epoch.
    pub mtime: u32,
    /// Inode number; the kernel uses it only to recreate hard links.
    pub ino: u32,
    /// Link count.
    pub nlink: u32,
    /// Major number of a device node.
    pub rdev_major: u32,
    /// Minor number of a device node.
    pub rdev_minor: u32,
    /// File contents; for a symlink, the target.
    pub data: Vec<u8>,
}

impl Entry {
    pub(crate) fn from_header(header: &Header, path: String, data: Vec<u8>) -> Self {
        Entry {
            path,
            mode: header.mode,
            uid: header.uid,
            gid: header.gid,
            mtime: header.mtime,
            ino: header.ino,
            nlink: header.nlink,
            rdev_major: header.rdevmajor,
            rdev_minor: header.rdevminor,
            data,
        }
    }

    /// The file type from [`Entry::mode`].
    pub fn file_type(&self) -> FileType {
        FileType::from_mode(self.mode)
    }

    /// The permission bits of [`Entry::mode`], including setuid, setgid and sticky.
    pub fn permissions(&self) -> u32 {
        self.mode & 0o7777
    }

    /// The symlink target, if this is a symlink (lossily decoded: foreign archives may hold
    /// targets that are not UTF-8).
    pub fn symlink_target(&self) -> Option<Cow<'_, str>> {
        (self.file_type() == FileType::Symlink).then(|| String::from_utf8_lossy(&self.data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_type_round_trips_through_mode_bits() {
        for t in [
            FileType::Directory,
            FileType::Regular,
            FileType::Symlink,
            FileType::CharDevice,
            FileType::BlockDevice,
            FileType::Fifo,
            FileType::Socket,
        ] {
            assert_eq!(FileType::from_mode(t.mode_bits() | 0o644), t);
        }
        assert_eq!(FileType::from_mode(0o644), FileType::Unknown);
    }
}
