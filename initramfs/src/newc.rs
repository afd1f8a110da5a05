//! The newc header layout shared by the writer and the reader.
//!
//! See the kernel's `Documentation/driver-api/early-userspace/buffer-format.rst`.

/// Magic of a newc header without checksums, the variant the writer produces.
pub(crate) const MAGIC: &[u8; 6] = b"070701";
/// Magic of the "crc" variant; the kernel accepts it and so does the reader.
pub(crate) const MAGIC_CRC: &[u8; 6] = b"070702";
/// Six bytes of magic and thirteen fields of eight hex digits.
pub(crate) const HEADER_LEN: usize = 110;
/// Name of the entry that ends an archive.
pub(crate) const TRAILER: &str = "TRAILER!!!";
/// Field names in on-disk order, for error messages.
pub(crate) const FIELD_NAMES: [&str; 13] = [
    "ino",
    "mode",
    "uid",
    "gid",
    "nlink",
    "mtime",
    "filesize",
    "devmajor",
    "devminor",
    "rdevmajor",
    "rdevminor",
    "namesize",
    "check",
];

/// The numeric fields of one header.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub ino: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub mtime: u32,
    pub filesize: u32,
    pub devmajor: u32,
    pub devminor: u32,
    pub rdevmajor: u32,
    pub rdevminor: u32,
    pub namesize: u32,
    pub check: u32,
}

impl Header {
    /// Builds a header from the fields in on-disk order.
    pub fn from_fields(f: [u32; 13]) -> Self {
        let [ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize, check] =
            f;
        Header {
            ino,
            mode,
            uid,
            gid,
            nlink,
            mtime,
            filesize,
            devmajor,
            devminor,
            rdevmajor,
            rdevminor,
            namesize,
            check,
        }
    }

    fn fields(&self) -> [u32; 13] {
        [
            self.ino,
            self.mode,
            self.uid,
            self.gid,
            self.nlink,
            self.mtime,
            self.filesize,
            self.devmajor,
            self.devminor,
            self.rdevmajor,
            self.rdevminor,
            self.namesize,
            self.check,
        ]
    }

    /// The 110 header bytes. Upper-case hex, as the kernel's own `gen_init_cpio` writes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN);
        out.extend_from_slice(MAGIC);
        for field in self.fields() {
            out.extend_from_slice(format!("{field:08X}").as_bytes());
        }
        out
    }
}

/// Parses exactly eight hex digits. `u32::from_str_radix` would also accept a leading `+`.
pub(crate) fn parse_hex(digits: &[u8]) -> Option<u32> {
    if digits.len() != 8 {
        return None;
    }
    digits.iter().try_fold(0u32, |acc, &b| {
        let digit = char::from(b).to_digit(16)?;
        Some((acc << 4) | digit)
    })
}

/// Number of NUL bytes that pad `len` to a multiple of four.
pub(crate) fn padding(len: usize) -> usize {
    (4 - len % 4) % 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_encodes_to_fixed_width() {
        let header = Header {
            ino: 1,
            mode: 0o40755,
            namesize: 4,
            ..Header::default()
        };
        let bytes = header.encode();
        assert_eq!(bytes.len(), HEADER_LEN);
        assert!(bytes.starts_with(b"07070100000001000041ED"));
    }

    #[test]
    fn parse_hex_is_strict() {
        assert_eq!(parse_hex(b"000041ed"), Some(0o40755));
        assert_eq!(parse_hex(b"FFFFFFFF"), Some(u32::MAX));
        assert_eq!(parse_hex(b"+0000001"), None);
        assert_eq!(parse_hex(b"0000001"), None);
        assert_eq!(parse_hex(b"0000000g"), None);
    }

    #[test]
    fn padding_rounds_up_to_four() {
        assert_eq!(padding(110 + 11), 3);
        assert_eq!(padding(8), 0);
        assert_eq!(padding(5), 3);
    }
}
