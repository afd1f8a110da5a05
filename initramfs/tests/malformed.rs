//! Untrusted input: every malformation is an error with an offset, never a panic.

use cairn_initramfs::{read, Archive, Compression, ReadError, WriteOptions};

fn plain(compression: Compression) -> Vec<u8> {
    let mut archive = Archive::new();
    archive.add_file("/init", 0o755, b"agent".to_vec()).unwrap();
    archive.add_symlink("/bin", "usr/bin").unwrap();
    archive
        .add_char_device("/dev/console", 0o600, 5, 1)
        .unwrap();
    archive
        .to_bytes(&WriteOptions {
            mtime: 0,
            compression,
        })
        .unwrap()
}

/// Offset of the second header: the `bin` symlink takes 110 + 4 (+ 2 padding) + 7 (+ 1).
const SECOND_HEADER: usize = 124;

#[test]
fn empty_input_has_no_trailer() {
    assert!(matches!(
        read(&[]),
        Err(ReadError::MissingTrailer { offset: 0 })
    ));
}

#[test]
fn bad_magic_names_the_offset() {
    let mut bytes = plain(Compression::None);
    bytes[SECOND_HEADER + 5] = b'7';
    let err = read(&bytes).unwrap_err();
    assert_eq!(
        err.to_string(),
        "bad magic \"070707\" at offset 124, expected \"070701\""
    );
    assert!(matches!(
        read(b"\x89PNG\r\n\x1a\n"),
        Err(ReadError::BadMagic { offset: 0, .. })
    ));
}

#[test]
fn bad_hex_names_the_field() {
    let mut bytes = plain(Compression::None);
    let filesize = 6 + 6 * 8;
    bytes[filesize + 3] = b'x';
    let err = read(&bytes).unwrap_err();
    assert!(
        matches!(
            err,
            ReadError::BadHex {
                offset: 54,
                field: "filesize"
            }
        ),
        "{err}"
    );
    bytes[filesize + 3] = b'+';
    assert!(matches!(read(&bytes), Err(ReadError::BadHex { .. })));
}

#[test]
fn huge_sizes_are_truncation_not_allocation() {
    let mut bytes = plain(Compression::None);
    bytes[54..62].copy_from_slice(b"FFFFFFFF");
    let err = read(&bytes).unwrap_err();
    assert!(
        matches!(
            err,
            ReadError::Truncated {
                what: "data",
                needed: 0xFFFF_FFFF,
                ..
            }
        ),
        "{err}"
    );
    let mut bytes = plain(Compression::None);
    bytes[94..102].copy_from_slice(b"7FFFFFFF");
    let err = read(&bytes).unwrap_err();
    assert!(
        matches!(
            err,
            ReadError::Truncated {
                what: "name",
                offset: 110,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn names_must_be_nul_terminated() {
    let mut bytes = plain(Compression::None);
    bytes[110 + 3] = b'x';
    let err = read(&bytes).unwrap_err();
    assert_eq!(
        err.to_string(),
        "bad name at offset 110: not nul-terminated"
    );
    bytes[94..102].copy_from_slice(b"00000000");
    assert!(matches!(
        read(&bytes),
        Err(ReadError::BadName { offset: 110, .. })
    ));
}

#[test]
fn missing_trailer_is_reported() {
    let bytes = plain(Compression::None);
    let without_trailer = &bytes[..bytes.len() - 124];
    let err = read(without_trailer).unwrap_err();
    let offset = without_trailer.len();
    assert!(
        matches!(err, ReadError::MissingTrailer { offset: o } if o == offset),
        "{err}"
    );
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = plain(Compression::None);
    let trailer_start = bytes.len() - 124;
    for len in 0..bytes.len() {
        let result = read(&bytes[..len]);
        // Cutting only the trailer's padding is harmless, as in the kernel.
        if len < trailer_start + 121 {
            assert!(result.is_err(), "prefix of {len} bytes was accepted");
        }
    }
}

#[test]
fn every_byte_flip_is_handled_without_panic() {
    for compression in [
        Compression::None,
        Compression::Gzip { level: 6 },
        Compression::Zstd { level: 3 },
    ] {
        let bytes = plain(compression);
        for i in 0..bytes.len() {
            for value in [0x00, 0xff, b'0', b'F', bytes[i] ^ 1] {
                let mut mutated = bytes.clone();
                mutated[i] = value;
                let _ = read(&mutated);
            }
        }
    }
}

#[test]
fn corrupt_compression_is_an_error() {
    let mut bytes = plain(Compression::Zstd { level: 3 });
    bytes.truncate(bytes.len() - 6);
    assert!(matches!(read(&bytes), Err(ReadError::Decompress(_))));
    assert!(matches!(
        read(&[0x1f, 0x8b, 8, 0]),
        Err(ReadError::Decompress(_))
    ));
}
