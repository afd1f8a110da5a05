//! Fixture packages built in memory: tarballs with raw (possibly hostile) names,
//! compressed as a `.deb`'s members may be, in an `ar` archive.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// One entry of a fixture tarball.
pub(super) enum Item<'a> {
    Dir(&'a str, u32),
    File(&'a str, &'a [u8], u32),
    Symlink(&'a str, &'a str),
    HardLink(&'a str, &'a str),
}

/// A tar header whose name is written raw, so tests can build hostile paths the
/// `tar` builder itself refuses.
fn header(path: &str, kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(mode);
    header
}

pub(super) fn tarball(items: &[Item]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for item in items {
        let (mut header, data): (tar::Header, &[u8]) = match *item {
            Item::Dir(path, mode) => (header(path, tar::EntryType::Directory, 0, mode), b""),
            Item::File(path, data, mode) => {
                let kind = tar::EntryType::Regular;
                (header(path, kind, data.len() as u64, mode), data)
            }
            Item::Symlink(path, to) | Item::HardLink(path, to) => {
                let kind = match item {
                    Item::Symlink(..) => tar::EntryType::Symlink,
                    _ => tar::EntryType::Link,
                };
                let mut header = header(path, kind, 0, 0o777);
                header.as_old_mut().linkname[..to.len()].copy_from_slice(to.as_bytes());
                (header, b"")
            }
        };
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap()
}

fn compress(ext: &str, bytes: &[u8]) -> Vec<u8> {
    match ext {
        "" => bytes.to_vec(),
        ".gz" => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), Default::default());
            gz.write_all(bytes).unwrap();
            gz.finish().unwrap()
        }
        ".xz" => {
            let mut xz = xz2::write::XzEncoder::new(Vec::new(), 6);
            xz.write_all(bytes).unwrap();
            xz.finish().unwrap()
        }
        ".zst" => zstd::stream::encode_all(bytes, 3).unwrap(),
        other => panic!("no compressor for {other}"),
    }
}

pub(super) const CONTROL: &str = "Package: tool\nVersion: 1:2.0-1\nArchitecture: amd64\n\
    Depends: libc6 (>= 2.34), libfoo1:any | libbar1,\n libbaz (= 1.0) [amd64]\n\
    Description: a tool\n more words\n";

pub(super) fn write_deb(dir: &Path, control_ext: &str, data_ext: &str, data: &[Item]) -> PathBuf {
    let control = tarball(&[
        Item::Dir("./", 0o755),
        Item::File("./control", CONTROL.as_bytes(), 0o644),
    ]);
    let members = [
        ("debian-binary".to_string(), b"2.0\n".to_vec()),
        (
            format!("control.tar{control_ext}"),
            compress(control_ext, &control),
        ),
        (
            format!("data.tar{data_ext}"),
            compress(data_ext, &tarball(data)),
        ),
    ];
    let path = dir.join("tool_2.0-1_amd64.deb");
    write_ar(&path, &members);
    path
}

pub(super) fn write_ar(path: &Path, members: &[(String, Vec<u8>)]) {
    let mut builder = ar::Builder::new(File::create(path).unwrap());
    for (name, bytes) in members {
        let header = ar::Header::new(name.clone().into_bytes(), bytes.len() as u64);
        builder.append(&header, bytes.as_slice()).unwrap();
    }
}

pub(super) fn sample() -> Vec<Item<'static>> {
    vec![
        Item::Dir("./", 0o755),
        Item::Dir("./usr/", 0o755),
        Item::Dir("./usr/bin/", 0o755),
        Item::File("./usr/bin/tool", b"#!/bin/true\n", 0o755),
        Item::Symlink("./usr/bin/alias", "tool"),
        Item::HardLink("./usr/bin/tool2", "./usr/bin/tool"),
        Item::Dir("./etc/secret/", 0o700),
        Item::File("./etc/secret/key", b"k", 0o600),
        Item::Symlink("./usr/lib64/ld.so", "/lib/x86_64-linux-gnu/ld.so"),
    ]
}

pub(super) fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}
