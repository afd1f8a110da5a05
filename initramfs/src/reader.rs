//! Parses newc archives from untrusted bytes.
//!
//! Every size in a header is checked against the bytes actually present before it is used,
//! so the reader allocates at most what the (decompressed) input already holds.

use thiserror::Error;

use crate::compress::{decompress, CompressError};
use crate::entry::Entry;
use crate::newc::{padding, parse_hex, Header, FIELD_NAMES, HEADER_LEN, MAGIC, MAGIC_CRC, TRAILER};

/// Largest decompressed archive [`read`] accepts.
pub const MAX_UNPACKED_SIZE: u64 = 1 << 30;

/// Errors from reading an archive. Offsets count bytes of the uncompressed cpio stream.
#[derive(Debug, Error)]
pub enum ReadError {
    /// The compressed input could not be unpacked.
    #[error("cannot unpack the archive")]
    Decompress(#[source] CompressError),
    /// A header does not start with `070701` (or `070702`).
    #[error("bad magic {:?} at offset {offset}, expected \"070701\"", .found.escape_ascii().to_string())]
    BadMagic {
        /// Offset of the header.
        offset: usize,
        /// The six bytes found instead.
        found: Vec<u8>,
    },
    /// A header field is not eight hex digits.
    #[error("header field {field} at offset {offset} is not eight hex digits")]
    BadHex {
        /// Offset of the field.
        offset: usize,
        /// Name of the field, as in buffer-format.rst.
        field: &'static str,
    },
    /// The input ends inside a header, name or file body.
    #[error("truncated {what} at offset {offset}: {needed} bytes needed, {available} left")]
    Truncated {
        /// `header`, `name` or `data`.
        what: &'static str,
        /// Where the truncated part starts.
        offset: usize,
        /// Bytes the header promised.
        needed: usize,
        /// Bytes the input has from `offset` on.
        available: usize,
    },
    /// A name is not a NUL-terminated UTF-8 string.
    #[error("bad name at offset {offset}: {reason}")]
    BadName {
        /// Offset of the name.
        offset: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The input ends without a `TRAILER!!!` entry.
    #[error("missing TRAILER!!! entry: input ends at offset {offset}")]
    MissingTrailer {
        /// Length of the uncompressed input.
        offset: usize,
    },
}

/// One parsed record, borrowing from the input.
struct Record<'a> {
    header: Header,
    name: &'a str,
    data: &'a [u8],
    /// Offset just past the record and its padding.
    end: usize,
}

/// Reads all entries of an archive that is gzip-, zstd- or not compressed (detected by
/// magic). Archives concatenated after a trailer are read on, as the kernel does; NUL
/// padding between them is skipped.
pub fn read(bytes: &[u8]) -> Result<Vec<Entry>, ReadError> {
    let cpio = decompress(bytes, MAX_UNPACKED_SIZE).map_err(ReadError::Decompress)?;
    let mut entries = Vec::new();
    let mut offset = 0;
    loop {
        if offset >= cpio.len() {
            return Err(ReadError::MissingTrailer { offset: cpio.len() });
        }
        let record = parse_record(&cpio, offset)?;
        if record.name != TRAILER {
            entries.push(Entry::from_header(
                &record.header,
                record.name.to_owned(),
                record.data.to_vec(),
            ));
            offset = record.end;
            continue;
        }
        offset = skip_nuls(&cpio, record.end);
        if offset == cpio.len() {
            return Ok(entries);
        }
    }
}

fn skip_nuls(cpio: &[u8], from: usize) -> usize {
    let rest = cpio.get(from..).unwrap_or_default();
    from + rest.iter().take_while(|&&b| b == 0).count()
}

fn parse_record(cpio: &[u8], offset: usize) -> Result<Record<'_>, ReadError> {
    let header = parse_header(cpio, offset)?;
    let name_offset = offset + HEADER_LEN;
    let name = take(cpio, name_offset, header.namesize as usize, "name")?;
    let name = parse_name(name, name_offset)?;
    let data_offset = name_offset.saturating_add(name.len() + 1);
    let data_offset = data_offset.saturating_add(padding(data_offset));
    let filesize = header.filesize as usize;
    if filesize == 0 {
        // A final record may lack its padding; the next header read reports the truncation.
        let end = data_offset.min(cpio.len());
        return Ok(Record {
            header,
            name,
            data: &[],
            end,
        });
    }
    let data = take(cpio, data_offset, filesize, "data")?;
    let end = data_offset + filesize;
    let end = end.saturating_add(padding(end)).min(cpio.len());
    Ok(Record {
        header,
        name,
        data,
        end,
    })
}

fn parse_header(cpio: &[u8], offset: usize) -> Result<Header, ReadError> {
    // The magic first, so short garbage reads as "not cpio" rather than "truncated".
    let magic = take(cpio, offset, MAGIC.len(), "header")?;
    if magic != MAGIC && magic != MAGIC_CRC {
        let found = magic.to_vec();
        return Err(ReadError::BadMagic { offset, found });
    }
    let raw = take(cpio, offset, HEADER_LEN, "header")?;
    let fields = &raw[MAGIC.len()..];
    let mut values = [0u32; 13];
    for (i, (value, digits)) in values.iter_mut().zip(fields.chunks_exact(8)).enumerate() {
        let field = FIELD_NAMES[i];
        let offset = offset + MAGIC.len() + 8 * i;
        *value = parse_hex(digits).ok_or(ReadError::BadHex { offset, field })?;
    }
    Ok(Header::from_fields(values))
}

/// The name without its NUL; exactly one NUL, at the end, is required.
fn parse_name(raw: &[u8], offset: usize) -> Result<&str, ReadError> {
    let bad = |reason| ReadError::BadName { offset, reason };
    let name = match raw.split_last() {
        Some((0, name)) => name,
        _ => return Err(bad("not nul-terminated")),
    };
    if name.is_empty() {
        return Err(bad("empty"));
    }
    if name.contains(&0) {
        return Err(bad("contains a nul byte before its end"));
    }
    std::str::from_utf8(name).map_err(|_| bad("not utf-8"))
}

/// `len` bytes at `offset`, or the truncation error for `what`.
fn take<'a>(
    cpio: &'a [u8],
    offset: usize,
    len: usize,
    what: &'static str,
) -> Result<&'a [u8], ReadError> {
    match cpio.get(offset..).and_then(|rest| rest.get(..len)) {
        Some(bytes) => Ok(bytes),
        None => {
            let available = cpio.len().saturating_sub(offset);
            Err(ReadError::Truncated {
                what,
                offset,
                needed: len,
                available,
            })
        }
    }
}
