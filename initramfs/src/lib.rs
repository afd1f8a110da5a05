//! Reproducible Linux initramfs archives: a cpio "newc" writer, a reader for inspection, and
//! deterministic gzip / zstd compression.
//!
//! newc (magic `070701`) is the one cpio format the kernel unpacks into its rootfs at boot
//! (`Documentation/driver-api/early-userspace/buffer-format.rst`): a 110-byte header of
//! ASCII-hex fields, a NUL-terminated name and the file data, each padded to four bytes, and
//! a final `TRAILER!!!` entry. It has no owners by name, no timestamps beyond one 32-bit
//! mtime and no extended attributes, so everything that goes into a header is something the
//! writer decides.
//!
//! The output is a pure function of the entries added and the [`WriteOptions`]. An
//! [`Archive`] keys entries by their path components, so the order they were added in never
//! shows: every directory precedes its contents and missing parents are filled in (mode
//! 0755). The writer stamps uid/gid 0, the mtime from the options (the builder passes
//! `SOURCE_DATE_EPOCH`), inode numbers counted up in written order, nlink 2 for directories
//! and 1 otherwise, and zero for the device the files came from. Compression is pinned too:
//! gzip with no mtime or file name in its header, zstd at a fixed level in its
//! multithreaded format, whose jobs are cut by size alone, so the frame is the same on one
//! core or many. Given the same `Cargo.lock`, the same entries give the same bytes on any
//! host. File contents can be lent to the archive rather than copied into it.
//!
//! [`read`] parses untrusted archives (gzip, zstd or plain, detected by magic) and reports
//! malformed input as a [`ReadError`] with the byte offset of the problem; it never trusts a
//! size in a header beyond the bytes actually present. [`format_listing`] prints the result
//! like `ls -l`.
//!
//! ```
//! use cairn_initramfs::{read, Archive, Compression, WriteOptions};
//!
//! let mut archive = Archive::new();
//! archive.add_file("/init", 0o755, b"#!/bin/sh\n".to_vec())?;
//! archive.add_char_device("/dev/console", 0o600, 5, 1)?;
//! let options = WriteOptions { mtime: 0, compression: Compression::Zstd { level: 19 } };
//! let bytes = archive.to_bytes(&options)?;
//! assert_eq!(read(&bytes)?, archive.entries(0)?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod archive;
mod compress;
mod entry;
mod listing;
mod newc;
mod reader;
mod writer;

pub use archive::{Archive, ArchiveError};
pub use compress::{CompressError, Compression};
pub use entry::{Entry, FileType};
pub use listing::{format_entry, format_listing, mode_string};
pub use reader::{read, ReadError, MAX_UNPACKED_SIZE};
pub use writer::{WriteError, WriteOptions};
