//! Serialises an [`Archive`] as newc, optionally compressed.

use std::io::{self, BufWriter, Write};

use thiserror::Error;

use crate::archive::{Archive, Node};
use crate::compress::{self, CompressError, Compression};
use crate::entry::Entry;
use crate::newc::{padding, Header, TRAILER};

/// Inode number of the first entry; the rest count up in written order. Like
/// `gen_init_cpio`, start away from 0, which some tools treat as "no inode".
const FIRST_INO: u32 = 1;
/// Headers and names gather here; file data larger than this bypasses the buffer.
const BUFFER_SIZE: usize = 64 * 1024;

/// How to write an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    /// Modification time of every entry, normally `SOURCE_DATE_EPOCH` (newc stores 32 bits).
    pub mtime: u32,
    /// Compression of the whole archive.
    pub compression: Compression,
}

/// Errors from writing an archive.
#[derive(Debug, Error)]
pub enum WriteError {
    /// Setting up or finishing compression failed.
    #[error("compression failed")]
    Compress(#[source] CompressError),
    /// Writing one entry failed.
    #[error("failed to write entry {path:?}")]
    Write {
        /// The stored path of the entry (`TRAILER!!!` for the trailer).
        path: String,
        /// The writer's error.
        #[source]
        source: io::Error,
    },
    /// More entries than newc's 32-bit inode numbers can tell apart.
    #[error("archive has more entries than 32-bit inode numbers allow")]
    TooManyEntries,
}

/// One entry in written order, borrowed from the archive.
struct Planned<'a> {
    path: String,
    header: Header,
    data: &'a [u8],
}

impl Archive<'_> {
    /// Writes the archive to `out` and returns `out` once the compressed stream is finished.
    /// Small writes are buffered here, so `out` may be an unbuffered file. zstd compresses
    /// on every available core; the bytes are the same whatever their number.
    pub fn write<W: Write>(&self, out: W, options: &WriteOptions) -> Result<W, WriteError> {
        self.write_with_workers(out, options, compress::default_workers())
    }

    /// [`Archive::write`] with `workers` compression threads (zstd only).
    pub(crate) fn write_with_workers<W: Write>(
        &self,
        out: W,
        options: &WriteOptions,
        workers: u32,
    ) -> Result<W, WriteError> {
        let encoder = options
            .compression
            .encoder(out, workers)
            .map_err(WriteError::Compress)?;
        let mut buffered = BufWriter::with_capacity(BUFFER_SIZE, encoder);
        for planned in self.plan(options.mtime)? {
            write_record(&mut buffered, &planned)?;
        }
        write_record(&mut buffered, &trailer())?;
        let encoder = buffered.into_inner().map_err(|e| WriteError::Write {
            path: TRAILER.to_owned(),
            source: e.into_error(),
        })?;
        encoder.finish().map_err(WriteError::Compress)
    }

    /// The archive as bytes, see [`Archive::write`].
    pub fn to_bytes(&self, options: &WriteOptions) -> Result<Vec<u8>, WriteError> {
        self.write(Vec::new(), options)
    }

    /// The entries exactly as [`Archive::write`] stores them (and [`crate::read`] returns
    /// them), in written order, including the implicit parent directories.
    pub fn entries(&self, mtime: u32) -> Result<Vec<Entry>, WriteError> {
        let plan = self.plan(mtime)?;
        let entry = |p: Planned| Entry::from_header(&p.header, p.path, p.data.to_vec());
        Ok(plan.into_iter().map(entry).collect())
    }

    /// Assigns inode numbers in layout order and fills in every header.
    fn plan(&self, mtime: u32) -> Result<Vec<Planned<'_>>, WriteError> {
        let layout = self.layout();
        let mut plan = Vec::with_capacity(layout.len());
        for (index, (components, node)) in layout.into_iter().enumerate() {
            let ino = u32::try_from(index)
                .ok()
                .and_then(|i| i.checked_add(FIRST_INO))
                .ok_or(WriteError::TooManyEntries)?;
            let path = components.join("/");
            let header = header(node, &path, ino, mtime);
            plan.push(Planned {
                path,
                header,
                data: node.data(),
            });
        }
        Ok(plan)
    }
}

/// uid and gid are 0 and devmajor/devminor are 0: nothing about the build host leaks in.
/// Sizes fit in 32 bits because `Archive` checked them on the way in.
fn header(node: &Node, path: &str, ino: u32, mtime: u32) -> Header {
    let (rdevmajor, rdevminor) = match node {
        Node::CharDevice { major, minor, .. } => (*major, *minor),
        _ => (0, 0),
    };
    Header {
        ino,
        mode: node.mode(),
        nlink: if matches!(node, Node::Directory { .. }) {
            2
        } else {
            1
        },
        mtime,
        filesize: u32::try_from(node.data().len()).unwrap_or(u32::MAX),
        rdevmajor,
        rdevminor,
        namesize: u32::try_from(path.len() + 1).unwrap_or(u32::MAX),
        ..Header::default()
    }
}

fn trailer() -> Planned<'static> {
    let header = Header {
        nlink: 1,
        namesize: TRAILER.len() as u32 + 1,
        ..Header::default()
    };
    Planned {
        path: TRAILER.to_owned(),
        header,
        data: &[],
    }
}

/// Header, NUL-terminated name padded to four bytes (counting the header), data padded to
/// four bytes.
fn write_record(out: &mut impl Write, planned: &Planned) -> Result<(), WriteError> {
    const ZEROS: [u8; 4] = [0; 4];
    let header = planned.header.encode();
    let name_len = planned.path.len() + 1;
    let write = |out: &mut dyn Write| -> io::Result<()> {
        out.write_all(&header)?;
        out.write_all(planned.path.as_bytes())?;
        out.write_all(&ZEROS[..1 + padding(header.len() + name_len)])?;
        out.write_all(planned.data)?;
        out.write_all(&ZEROS[..padding(planned.data.len())])
    };
    write(out).map_err(|source| WriteError::Write {
        path: planned.path.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes that compress somewhat, like executables: runs of a small alphabet, with
    /// stretches copied from earlier on so that matches reach back across zstd's jobs.
    fn contents(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut data = Vec::with_capacity(len);
        while data.len() < len {
            let r = next();
            if data.len() > 4096 && r % 4 == 0 {
                let start = (next() as usize) % (data.len() - 1024);
                data.extend_from_within(start..start + 1024);
            } else {
                data.extend(r.to_le_bytes().iter().map(|b| b % 16));
            }
        }
        data.truncate(len);
        data
    }

    /// Several files, one borrowed, together larger than a few of zstd's jobs at
    /// `level` (2 MiB at level 1, 8 MiB at level 3).
    fn written(level: i32, files: &[Vec<u8>], workers: u32) -> Vec<u8> {
        let mut archive = Archive::new();
        for (i, data) in files.iter().enumerate() {
            let path = format!("/usr/lib/file{i}");
            if i % 2 == 0 {
                archive.add_file(&path, 0o644, data.as_slice()).unwrap();
            } else {
                archive.add_file(&path, 0o755, data.clone()).unwrap();
            }
        }
        archive.add_symlink("/lib", "usr/lib").unwrap();
        let options = WriteOptions {
            mtime: 1_704_067_200,
            compression: Compression::Zstd { level },
        };
        archive
            .write_with_workers(Vec::new(), &options, workers)
            .unwrap()
    }

    #[test]
    fn zstd_output_does_not_depend_on_the_number_of_workers() {
        for (level, total) in [(1, 9 << 20), (3, 26 << 20)] {
            let files: Vec<Vec<u8>> = (0..5u64).map(|i| contents(total / 5, i + 7)).collect();
            let one = written(level, &files, 1);
            let unpacked = crate::read(&one).unwrap();
            assert_eq!(unpacked.len(), 8, "lib, usr, usr/lib and 5 files");
            assert!(unpacked[3].path == "usr/lib/file0" && unpacked[3].data == files[0]);
            for workers in [2, 3, 4] {
                let many = written(level, &files, workers);
                assert!(
                    many == one,
                    "level {level}: {workers} workers wrote other bytes than one worker"
                );
            }
        }
    }

    #[test]
    fn every_write_of_an_archive_gives_the_same_bytes() {
        let files: Vec<Vec<u8>> = (0..3u64).map(|i| contents(3 << 20, i)).collect();
        let first = written(1, &files, default_or_two());
        for _ in 0..2 {
            assert!(written(1, &files, default_or_two()) == first);
        }
    }

    fn default_or_two() -> u32 {
        compress::default_workers().max(2)
    }
}
