//! Writing and reading back through the public API.

use cairn_initramfs::{read, Archive, Compression, Entry, FileType, WriteOptions};

const MTIME: u32 = 1_700_000_000;
const ALL: [Compression; 3] = [
    Compression::None,
    Compression::Gzip { level: 9 },
    Compression::Zstd { level: 19 },
];

fn options(compression: Compression) -> WriteOptions {
    WriteOptions {
        mtime: MTIME,
        compression,
    }
}

/// The shape of a cairn initramfs; `order` permutes the calls.
fn sample(order: &[usize]) -> Archive<'static> {
    type Add = fn(&mut Archive);
    let adds: [Add; 7] = [
        |a| {
            a.add_file("/init", 0o755, b"\x7fELF agent".to_vec())
                .unwrap()
        },
        |a| {
            a.add_file("/etc/os-release", 0o644, b"ID=cairn\n".to_vec())
                .unwrap()
        },
        |a| a.add_char_device("/dev/console", 0o600, 5, 1).unwrap(),
        |a| a.add_symlink("/lib64", "usr/lib64").unwrap(),
        |a| a.add_dir("/proc", 0o555).unwrap(),
        |a| a.add_dir("/tmp", 0o1777).unwrap(),
        |a| {
            a.add_file("/usr/lib/modules/6.1/kernel/virtio.ko", 0o644, vec![0; 5])
                .unwrap()
        },
    ];
    let mut archive = Archive::new();
    for &i in order {
        adds[i](&mut archive);
    }
    archive
}

fn find<'a>(entries: &'a [Entry], path: &str) -> &'a Entry {
    entries
        .iter()
        .find(|e| e.path == path)
        .unwrap_or_else(|| panic!("{path} missing"))
}

#[test]
fn every_compression_round_trips() {
    let archive = sample(&[0, 1, 2, 3, 4, 5, 6]);
    let expected = archive.entries(MTIME).unwrap();
    for compression in ALL {
        let bytes = archive.to_bytes(&options(compression)).unwrap();
        assert_eq!(read(&bytes).unwrap(), expected, "{compression:?}");
    }
}

#[test]
fn output_does_not_depend_on_insertion_order() {
    let forward = sample(&[0, 1, 2, 3, 4, 5, 6]);
    let backward = sample(&[6, 5, 4, 3, 2, 1, 0]);
    let shuffled = sample(&[3, 6, 0, 4, 1, 5, 2]);
    for compression in ALL {
        let reference = forward.to_bytes(&options(compression)).unwrap();
        assert_eq!(backward.to_bytes(&options(compression)).unwrap(), reference);
        assert_eq!(shuffled.to_bytes(&options(compression)).unwrap(), reference);
    }
}

#[test]
fn written_metadata_is_fixed() {
    let archive = sample(&[0, 1, 2, 3, 4, 5, 6]);
    let entries = read(&archive.to_bytes(&options(Compression::None)).unwrap()).unwrap();
    let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    let expected = [
        "dev",
        "dev/console",
        "etc",
        "etc/os-release",
        "init",
        "lib64",
        "proc",
        "tmp",
        "usr",
        "usr/lib",
        "usr/lib/modules",
        "usr/lib/modules/6.1",
        "usr/lib/modules/6.1/kernel",
        "usr/lib/modules/6.1/kernel/virtio.ko",
    ];
    assert_eq!(paths, expected);
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!((entry.uid, entry.gid, entry.mtime), (0, 0, MTIME));
        assert_eq!(entry.ino, i as u32 + 1);
        let dir = entry.file_type() == FileType::Directory;
        assert_eq!(entry.nlink, if dir { 2 } else { 1 }, "{}", entry.path);
    }
    assert_eq!(find(&entries, "usr/lib").mode, 0o040_755);
    assert_eq!(find(&entries, "tmp").mode, 0o041_777);
    assert_eq!(find(&entries, "init").mode, 0o100_755);
}

#[test]
fn device_and_symlink_survive() {
    let archive = sample(&[2, 3]);
    let bytes = archive
        .to_bytes(&options(Compression::Gzip { level: 1 }))
        .unwrap();
    let entries = read(&bytes).unwrap();
    let console = find(&entries, "dev/console");
    assert_eq!(console.file_type(), FileType::CharDevice);
    assert_eq!(
        (console.mode, console.rdev_major, console.rdev_minor),
        (0o020_600, 5, 1)
    );
    assert!(console.data.is_empty());
    let link = find(&entries, "lib64");
    assert_eq!(link.mode, 0o120_777);
    assert_eq!(link.symlink_target().as_deref(), Some("usr/lib64"));
}

#[test]
fn layout_matches_buffer_format() {
    let mut archive = Archive::new();
    archive.add_file("/init", 0o755, b"hi".to_vec()).unwrap();
    let bytes = archive
        .to_bytes(&WriteOptions {
            mtime: 16,
            compression: Compression::None,
        })
        .unwrap();
    let header = |fields: [u32; 13]| -> String {
        fields
            .iter()
            .fold("070701".to_owned(), |acc, f| acc + &format!("{f:08X}"))
    };
    // ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor,
    // namesize, check; 110 + 5 name bytes pad to 116, 110 + 11 to 124.
    let expected = header([1, 0o100_755, 0, 0, 1, 16, 2, 0, 0, 0, 0, 5, 0])
        + "init\0\0hi\0\0"
        + &header([0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 11, 0])
        + "TRAILER!!!\0\0\0\0";
    assert_eq!(String::from_utf8_lossy(&bytes), expected);
}

#[test]
fn concatenated_archives_are_read_in_sequence() {
    let first = sample(&[0]).to_bytes(&options(Compression::None)).unwrap();
    let second = sample(&[1]).to_bytes(&options(Compression::None)).unwrap();
    let mut joined = first;
    joined.extend_from_slice(&[0; 8]);
    joined.extend_from_slice(&second);
    let paths: Vec<String> = read(&joined).unwrap().into_iter().map(|e| e.path).collect();
    assert_eq!(paths, ["init", "etc", "etc/os-release"]);
}

#[test]
fn empty_archive_is_just_a_trailer() {
    let bytes = Archive::new()
        .to_bytes(&options(Compression::None))
        .unwrap();
    assert_eq!(bytes.len(), 124);
    assert_eq!(read(&bytes).unwrap(), []);
}
