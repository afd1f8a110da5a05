//! Deterministic compression of the written archive and detection on reading.

use std::borrow::Cow;
use std::io::{self, Read, Write};

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::GzBuilder;
use thiserror::Error;

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
/// Levels 20-22 ("ultra") need windows up to 128 MiB that the kernel must allocate while
/// unpacking in early boot, for a few percent of size; they are refused.
const ZSTD_MAX_LEVEL: i32 = 19;
/// More zstd workers than this only cost memory (a job buffer each).
const MAX_WORKERS: u32 = 16;

/// How the archive is compressed. The kernel detects the format by its magic, and needs the
/// matching `CONFIG_RD_GZIP` / `CONFIG_RD_ZSTD` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain cpio.
    None,
    /// gzip (deflate).
    Gzip {
        /// Compression level, 0 (store) to 9 (best).
        level: u32,
    },
    /// Zstandard, compressed in fixed-size jobs that run on worker threads.
    Zstd {
        /// Compression level, 1 (fast) to 19 (best).
        level: i32,
    },
}

/// Errors from compressing or decompressing an archive.
#[derive(Debug, Error)]
pub enum CompressError {
    /// The level is outside what the format (or early boot) supports.
    #[error("{format} level {level} is out of range {min}..={max}")]
    InvalidLevel {
        /// `gzip` or `zstd`.
        format: &'static str,
        /// The level as given.
        level: i64,
        /// Lowest accepted level.
        min: i64,
        /// Highest accepted level.
        max: i64,
    },
    /// Setting up the encoder failed.
    #[error("failed to start the {format} encoder")]
    Start {
        /// `gzip` or `zstd`.
        format: &'static str,
        /// The encoder's error.
        #[source]
        source: io::Error,
    },
    /// Writing the end of the compressed stream failed.
    #[error("failed to finish the {format} stream")]
    Finish {
        /// `none`, `gzip` or `zstd`.
        format: &'static str,
        /// The writer's or encoder's error.
        #[source]
        source: io::Error,
    },
    /// The input is not a valid compressed stream.
    #[error("failed to decompress {format} input")]
    Decompress {
        /// `gzip` or `zstd`.
        format: &'static str,
        /// The decoder's error.
        #[source]
        source: io::Error,
    },
    /// The input decompresses to more than the reader accepts.
    #[error("decompressed archive is larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
}

impl Compression {
    /// `none`, `gzip` or `zstd`, as in the builder's config.
    pub fn name(&self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip { .. } => "gzip",
            Compression::Zstd { .. } => "zstd",
        }
    }

    /// Checks the level, so a bad config fails before any work is done.
    pub fn validate(&self) -> Result<(), CompressError> {
        let (level, min, max) = match *self {
            Compression::None => return Ok(()),
            Compression::Gzip { level } => (i64::from(level), 0, 9),
            Compression::Zstd { level } => (i64::from(level), 1, i64::from(ZSTD_MAX_LEVEL)),
        };
        if (min..=max).contains(&level) {
            return Ok(());
        }
        Err(CompressError::InvalidLevel {
            format: self.name(),
            level,
            min,
            max,
        })
    }

    /// Wraps `out` in an encoder whose output depends only on the bytes written to it, not
    /// on the number of `workers` (zstd's compression threads; other formats have none).
    pub(crate) fn encoder<W: Write>(
        self,
        out: W,
        workers: u32,
    ) -> Result<Encoder<W>, CompressError> {
        self.validate()?;
        match self {
            Compression::None => Ok(Encoder::None(out)),
            // GzBuilder leaves the header's mtime at 0 and writes no file name.
            Compression::Gzip { level } => Ok(Encoder::Gzip(
                GzBuilder::new().write(out, flate2::Compression::new(level)),
            )),
            Compression::Zstd { level } => zstd_encoder(out, level, workers).map(Encoder::Zstd),
        }
    }
}

/// Worker threads for zstd: one per available core, at least one and at most
/// [`MAX_WORKERS`].
pub(crate) fn default_workers() -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    u32::try_from(cores)
        .unwrap_or(MAX_WORKERS)
        .clamp(1, MAX_WORKERS)
}

/// zstd's multithreaded mode cuts the input into jobs of a size that follows from the
/// level alone (`ZSTD_c_jobSize` left at its default: 4 windows, at least 1 MiB; 8 MiB at
/// level 3) and compresses each with the tail of the one before as a dictionary
/// (`ZSTD_c_overlapLog`, also from the level), then writes the jobs' output in input
/// order. Where jobs are cut and what each one sees depends on the input and those
/// parameters, never on how many workers run them or how the writes were split, so any
/// number of workers from one up gives the same frame (`writer.rs` tests it). No workers
/// at all would be zstd's single-threaded mode, a different (and slower) frame, so it is
/// never used. The content size is left out explicitly: the stream is written before
/// its length is known, and the kernel does not need it.
fn zstd_encoder<W: Write>(
    out: W,
    level: i32,
    workers: u32,
) -> Result<zstd::Encoder<'static, W>, CompressError> {
    let start = |source| CompressError::Start {
        format: "zstd",
        source,
    };
    let mut encoder = zstd::Encoder::new(out, level).map_err(start)?;
    encoder.include_contentsize(false).map_err(start)?;
    encoder.include_checksum(true).map_err(start)?;
    encoder.multithread(workers.max(1)).map_err(start)?;
    Ok(encoder)
}

/// A writer for one of the [`Compression`] formats.
pub(crate) enum Encoder<W: Write> {
    None(W),
    Gzip(GzEncoder<W>),
    Zstd(zstd::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    /// Ends the compressed stream and returns the underlying writer, flushed.
    pub fn finish(self) -> Result<W, CompressError> {
        let (format, result) = match self {
            Encoder::None(mut out) => ("none", out.flush().map(|()| out)),
            Encoder::Gzip(encoder) => ("gzip", encoder.finish()),
            Encoder::Zstd(encoder) => ("zstd", encoder.finish()),
        };
        let mut out = result.map_err(|source| CompressError::Finish { format, source })?;
        out.flush()
            .map_err(|source| CompressError::Finish { format, source })?;
        Ok(out)
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::None(out) => out.write(buf),
            Encoder::Gzip(encoder) => encoder.write(buf),
            Encoder::Zstd(encoder) => encoder.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::None(out) => out.flush(),
            Encoder::Gzip(encoder) => encoder.flush(),
            Encoder::Zstd(encoder) => encoder.flush(),
        }
    }
}

/// Returns the uncompressed archive, detecting gzip and zstd by their magic; anything else is
/// passed through for the cpio parser to judge. Concatenated gzip members or zstd frames are
/// joined, as the kernel does. At most `limit` bytes are produced, so a small hostile input
/// cannot exhaust memory.
pub(crate) fn decompress(bytes: &[u8], limit: u64) -> Result<Cow<'_, [u8]>, CompressError> {
    if bytes.starts_with(GZIP_MAGIC) {
        read_limited("gzip", MultiGzDecoder::new(bytes), limit).map(Cow::Owned)
    } else if bytes.starts_with(ZSTD_MAGIC) {
        let decompress = |source| CompressError::Decompress {
            format: "zstd",
            source,
        };
        let decoder = zstd::Decoder::with_buffer(bytes).map_err(decompress)?;
        read_limited("zstd", decoder, limit).map(Cow::Owned)
    } else {
        Ok(Cow::Borrowed(bytes))
    }
}

fn read_limited(
    format: &'static str,
    decoder: impl Read,
    limit: u64,
) -> Result<Vec<u8>, CompressError> {
    let mut out = Vec::new();
    decoder
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|source| CompressError::Decompress { format, source })?;
    if out.len() as u64 > limit {
        return Err(CompressError::TooLarge { limit });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compress(compression: Compression, data: &[u8]) -> Vec<u8> {
        let mut encoder = compression.encoder(Vec::new(), 2).unwrap();
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn levels_are_validated() {
        assert!(Compression::Gzip { level: 9 }.validate().is_ok());
        assert!(Compression::Zstd { level: 19 }.validate().is_ok());
        let err = Compression::Zstd { level: 22 }.validate().unwrap_err();
        assert_eq!(err.to_string(), "zstd level 22 is out of range 1..=19");
        assert!(Compression::Gzip { level: 10 }.validate().is_err());
        assert!(Compression::Zstd { level: 0 }.validate().is_err());
    }

    #[test]
    fn gzip_header_has_no_mtime_or_name() {
        let out = compress(Compression::Gzip { level: 9 }, b"hello");
        // ID1 ID2 CM FLG, then MTIME (4 bytes) all zero, no FNAME flag.
        assert_eq!(&out[..8], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn zstd_frame_has_no_content_size() {
        let out = compress(Compression::Zstd { level: 3 }, b"hello");
        assert!(out.starts_with(ZSTD_MAGIC));
        // Frame header descriptor: Frame_Content_Size_flag (top two bits) is 0 and
        // Single_Segment_flag (bit 5) is 0, so no content size field is present.
        assert_eq!(out[4] & 0b1110_0000, 0);
    }

    #[test]
    fn each_format_round_trips() {
        let data = b"0707010000".repeat(100);
        for c in [
            Compression::None,
            Compression::Gzip { level: 6 },
            Compression::Zstd { level: 19 },
        ] {
            let packed = compress(c, &data);
            assert_eq!(
                decompress(&packed, 1 << 20).unwrap().as_ref(),
                data.as_slice(),
                "{c:?}"
            );
        }
    }

    #[test]
    fn output_exceeding_the_limit_is_refused() {
        let packed = compress(Compression::Zstd { level: 1 }, &[0; 4096]);
        assert!(matches!(
            decompress(&packed, 4095),
            Err(CompressError::TooLarge { limit: 4095 })
        ));
        assert!(decompress(&packed, 4096).is_ok());
    }

    #[test]
    fn corrupt_streams_are_errors() {
        let mut packed = compress(Compression::Gzip { level: 6 }, &[7; 4096]);
        packed.truncate(packed.len() / 2);
        assert!(matches!(
            decompress(&packed, 1 << 20),
            Err(CompressError::Decompress { .. })
        ));
        let packed = [0x28, 0xb5, 0x2f, 0xfd, 0xff, 0xff];
        assert!(matches!(
            decompress(&packed, 1 << 20),
            Err(CompressError::Decompress { .. })
        ));
    }
}
