//! What the agent does to a data disk: look at its first bytes, write a GPT with the one
//! data partition, make and check the ext4 file system.
//!
//! The partition table is written in-process (the `gpt` crate); the file system is
//! made and checked by Debian's e2fsprogs (`mke2fs`, `e2fsck`), which the image carries:
//! no Rust crate writes ext4, and a checker must be the file system's own.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use super::devices::DATA_LABEL;
use crate::syscall::Syscall;

/// mke2fs(8) and e2fsck(8), from the e2fsprogs package.
pub const MKE2FS: &str = "/sbin/mke2fs";
pub const E2FSCK: &str = "/sbin/e2fsck";
/// How much of a disk must be zero for it to count as blank: the MBR and GPT (LBA 0-33),
/// the superblocks of ext4 (1 KiB), XFS (0), btrfs (64 KiB), LVM and md metadata.
pub const BLANK_PROBE_BYTES: usize = 1 << 20;
/// How long the kernel gets to create the partition's device node after a rescan.
const PARTITION_WAIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);
/// ext4's superblock: 1024 bytes in, magic 0xEF53 (little-endian) at offset 56.
const EXT4_MAGIC_OFFSET: u64 = 1024 + 56;
/// The first partition starts at 1 MiB, the alignment every tool uses.
const ALIGNMENT_SECTORS: u64 = 2048;

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("cannot read {}", .0.display())]
    Read(PathBuf, #[source] io::Error),
    #[error("cannot write a partition table to {}", .0.display())]
    Partition(PathBuf, #[source] gpt::GptError),
    #[error("cannot make the kernel re-read the partitions of {}", .0.display())]
    Rescan(PathBuf, #[source] nix::errno::Errno),
    #[error("{} did not appear within {PARTITION_WAIT:?} of the rescan", .0.display())]
    NoPartitionNode(PathBuf),
    #[error("cannot run {tool}")]
    Spawn {
        tool: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{tool} {} failed ({status}): {output}", .device.display())]
    Tool {
        tool: &'static str,
        device: PathBuf,
        status: String,
        output: String,
    },
}

/// True if the first [`BLANK_PROBE_BYTES`] of `device` are all zero (or it is shorter).
pub fn is_blank(device: &Path) -> Result<bool, DiskError> {
    let mut head = Vec::with_capacity(BLANK_PROBE_BYTES);
    File::open(device)
        .and_then(|file| file.take(BLANK_PROBE_BYTES as u64).read_to_end(&mut head))
        .map_err(|e| DiskError::Read(device.to_owned(), e))?;
    Ok(head.iter().all(|&b| b == 0))
}

/// True if `device` carries an ext2/3/4 superblock.
pub fn has_ext4(device: &Path) -> Result<bool, DiskError> {
    let read = || -> io::Result<[u8; 2]> {
        let mut file = File::open(device)?;
        file.seek(SeekFrom::Start(EXT4_MAGIC_OFFSET))?;
        let mut magic = [0; 2];
        file.read_exact(&mut magic)?;
        Ok(magic)
    };
    match read() {
        Ok(magic) => Ok(u16::from_le_bytes(magic) == 0xEF53),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(DiskError::Read(device.to_owned(), e)),
    }
}

/// Writes a protective MBR and a GPT holding one partition named [`DATA_LABEL`] that
/// spans the disk from 1 MiB, and flushes it. Works on an image file as well.
pub fn write_partition_table(disk: &Path) -> Result<(), DiskError> {
    let fail = |e: gpt::GptError| DiskError::Partition(disk.to_owned(), e);
    let io_fail = |e: io::Error| DiskError::Partition(disk.to_owned(), e.into());
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(disk)
        .map_err(|e| DiskError::Read(disk.to_owned(), e))?;
    let bytes = file.seek(SeekFrom::End(0)).map_err(io_fail)?;
    let sectors = bytes / 512;
    let mbr = gpt::mbr::ProtectiveMBR::with_lb_size(
        u32::try_from(sectors.saturating_sub(1)).unwrap_or(u32::MAX),
    );
    mbr.overwrite_lba0(&mut file)
        .map_err(|e| DiskError::Partition(disk.to_owned(), io::Error::other(e).into()))?;
    let mut table = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(gpt::disk::LogicalBlockSize::Lb512)
        .create_from_device(file, None)
        .map_err(fail)?;
    // The largest aligned extent: everything between the two tables, rounded down.
    let (first, length) = table
        .find_free_sectors()
        .into_iter()
        .max_by_key(|&(_, len)| len)
        .unwrap_or((0, 0));
    let start = first.div_ceil(ALIGNMENT_SECTORS) * ALIGNMENT_SECTORS;
    let usable = (first + length).saturating_sub(start);
    let size = usable / ALIGNMENT_SECTORS * ALIGNMENT_SECTORS * 512;
    table
        .add_partition_at(
            DATA_LABEL,
            1,
            start,
            size / 512,
            gpt::partition_types::LINUX_FS,
            0,
        )
        .map_err(fail)?;
    let file = table.write().map_err(fail)?;
    file.sync_all().map_err(io_fail)
}

/// BLKRRPART, then waits for `partition`'s device node (devtmpfs creates it).
pub fn rescan(sys: &dyn Syscall, disk: &Path, partition: &Path) -> Result<(), DiskError> {
    sys.reread_partitions(disk)
        .map_err(|e| DiskError::Rescan(disk.to_owned(), e))?;
    let deadline = Instant::now() + PARTITION_WAIT;
    while !partition.exists() {
        if Instant::now() >= deadline {
            return Err(DiskError::NoPartitionNode(partition.to_owned()));
        }
        thread::sleep(POLL);
    }
    Ok(())
}

/// mke2fs -t ext4, labelled [`DATA_LABEL`]. Inode tables and the journal are
/// initialised lazily by the kernel after mount, so formatting takes a second, not
/// minutes, on a large disk.
pub fn make_filesystem(sys: &dyn Syscall, partition: &Path) -> Result<String, DiskError> {
    run(
        sys,
        "mke2fs",
        MKE2FS,
        &[
            "-q",
            "-F",
            "-t",
            "ext4",
            "-L",
            DATA_LABEL,
            "-m",
            "1",
            "-E",
            "lazy_itable_init=1,lazy_journal_init=1",
        ],
        partition,
        |code| code == 0,
    )
}

/// e2fsck -p ("preen"): replays the journal and fixes what is safe to fix unattended.
/// Exit codes 0-2 mean the file system is usable (e2fsck(8)); anything else is an
/// error, and the disk is left alone for a person to look at.
pub fn check_filesystem(sys: &dyn Syscall, partition: &Path) -> Result<String, DiskError> {
    run(sys, "e2fsck", E2FSCK, &["-p"], partition, |code| code <= 2)
}

fn run(
    sys: &dyn Syscall,
    tool: &'static str,
    binary: &str,
    args: &[&str],
    device: &Path,
    ok: impl Fn(i32) -> bool,
) -> Result<String, DiskError> {
    let args: Vec<&OsStr> = args
        .iter()
        .map(OsStr::new)
        .chain([device.as_os_str()])
        .collect();
    let output = sys
        .run_tool(Path::new(binary), &args)
        .map_err(|source| DiskError::Spawn { tool, source })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
    .trim()
    .to_owned();
    match output.status.code() {
        Some(code) if ok(code) => Ok(text),
        _ => Err(DiskError::Tool {
            tool,
            device: device.to_owned(),
            status: output.status.to_string(),
            output: text,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(bytes: u64) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().set_len(bytes).unwrap();
        file
    }

    #[test]
    fn blank_means_zero_head() {
        let file = image(4 << 20);
        assert!(is_blank(file.path()).unwrap());
        std::fs::write(file.path(), b"\0\0x").unwrap();
        assert!(!is_blank(file.path()).unwrap());
        assert!(matches!(
            is_blank(Path::new("/nonexistent/vdz")),
            Err(DiskError::Read(..))
        ));
    }

    #[test]
    fn ext4_is_recognised_by_its_magic() {
        let file = image(1 << 20);
        assert!(!has_ext4(file.path()).unwrap());
        let mut bytes = vec![0; 4096];
        bytes[1080] = 0x53;
        bytes[1081] = 0xEF;
        std::fs::write(file.path(), &bytes).unwrap();
        assert!(has_ext4(file.path()).unwrap());
        std::fs::write(file.path(), b"short").unwrap();
        assert!(!has_ext4(file.path()).unwrap());
    }

    #[test]
    fn the_partition_table_has_one_aligned_data_partition() {
        let file = image(64 << 20);
        write_partition_table(file.path()).unwrap();
        assert!(!is_blank(file.path()).unwrap());
        let table = gpt::GptConfig::new().open(file.path()).unwrap();
        let partitions: Vec<_> = table.partitions().values().collect();
        assert_eq!(partitions.len(), 1);
        let data = partitions[0];
        assert_eq!(data.name, DATA_LABEL);
        assert_eq!(data.part_type_guid, gpt::partition_types::LINUX_FS);
        assert_eq!(data.first_lba, ALIGNMENT_SECTORS);
        assert_eq!((data.last_lba + 1) % ALIGNMENT_SECTORS, 0);
        // Everything up to the backup table's 33 sectors, in whole MiB.
        assert!(data.last_lba < (64 << 20) / 512 - 33);
        assert!(data.last_lba + 1 >= (63 << 20) / 512 - 33);
    }
}
