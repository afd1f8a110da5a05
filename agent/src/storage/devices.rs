//! Which block device holds the node's state: read from sysfs (sysfs-block(5) in the
//! kernel's Documentation/ABI), never guessed from device names alone.
//!
//! The data partition is found by its GPT name, [`DATA_LABEL`], on any disk, so extra
//! disks and their order do not matter. Only when no disk has one does the agent take a
//! disk to format, and then only a blank one: a disk with anything on it might be
//! someone's data, and nothing is ever formatted over it.

use std::fs;
use std::path::{Path, PathBuf};

use crate::Paths;

/// The GPT partition name (and ext4 label) of the data partition.
pub const DATA_LABEL: &str = "cairn-data";
/// Disks smaller than this are not worth formatting (and are not real data disks).
pub const MIN_DISK_BYTES: u64 = 256 << 20;
/// Kernel device names that are never data disks: RAM, loop, optical and mapped devices.
const SKIPPED_PREFIXES: [&str; 6] = ["loop", "ram", "zram", "sr", "dm-", "md"];

/// One entry of /sys/class/block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDevice {
    /// Kernel name, e.g. `vda` or `vda1`; the node is /dev/<name>.
    pub name: String,
    /// For a partition, the disk it is on.
    pub disk: Option<String>,
    /// GPT partition name (uevent PARTNAME), if any.
    pub part_name: Option<String>,
    pub size_bytes: u64,
    pub read_only: bool,
}

impl BlockDevice {
    pub fn dev_path(&self, paths: &Paths) -> PathBuf {
        paths.resolve("/dev").join(&self.name)
    }

    fn is_disk(&self) -> bool {
        self.disk.is_none()
    }
}

/// What the scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// A partition named [`DATA_LABEL`].
    Existing(BlockDevice),
    /// No such partition; this disk is writable, big enough and, if `blank` says so,
    /// empty: it may be partitioned.
    Candidate(BlockDevice),
    /// Nothing usable; the text says what was seen.
    Nothing(String),
}

/// Every block device in /sys/class/block, sorted by name.
pub fn scan(paths: &Paths) -> Vec<BlockDevice> {
    let dir = paths.resolve("/sys/class/block");
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut devices: Vec<BlockDevice> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| read_device(&entry.path(), &entry.file_name().to_string_lossy()))
        .collect();
    devices.sort_by(|a, b| a.name.cmp(&b.name));
    devices
}

fn read_device(dir: &Path, name: &str) -> Option<BlockDevice> {
    if SKIPPED_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return None;
    }
    let read = |file: &str| fs::read_to_string(dir.join(file)).ok();
    let sectors: u64 = read("size")?.trim().parse().ok()?;
    let uevent = read("uevent").unwrap_or_default();
    let is_partition = dir.join("partition").exists();
    // A partition's sysfs directory sits inside its disk's: <disk>/<partition>.
    let disk = is_partition
        .then(|| fs::canonicalize(dir).ok())
        .flatten()
        .and_then(|real| {
            real.parent()?
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        });
    Some(BlockDevice {
        name: name.to_owned(),
        disk,
        part_name: uevent_value(&uevent, "PARTNAME"),
        size_bytes: sectors.saturating_mul(512),
        read_only: read("ro").is_some_and(|ro| ro.trim() == "1"),
    })
}

fn uevent_value(uevent: &str, key: &str) -> Option<String> {
    uevent
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_owned)
}

/// Picks the data partition, or a disk to create it on. `blank` tells whether a disk
/// holds nothing (it reads the device; tests pass a fake).
pub fn choose(devices: &[BlockDevice], blank: impl Fn(&BlockDevice) -> bool) -> Choice {
    if let Some(existing) = devices
        .iter()
        .find(|d| !d.is_disk() && d.part_name.as_deref() == Some(DATA_LABEL))
    {
        return Choice::Existing(existing.clone());
    }
    let mut seen = Vec::new();
    for disk in devices.iter().filter(|d| d.is_disk()) {
        let verdict = if disk.read_only {
            "read-only"
        } else if disk.size_bytes < MIN_DISK_BYTES {
            "too small"
        } else if devices
            .iter()
            .any(|d| d.disk.as_deref() == Some(&disk.name))
        {
            "partitioned, without a cairn-data partition"
        } else if !blank(disk) {
            "not blank (holds data of unknown kind)"
        } else {
            return Choice::Candidate(disk.clone());
        };
        seen.push(format!("{} {verdict}", disk.name));
    }
    Choice::Nothing(if seen.is_empty() {
        "no disk attached".to_owned()
    } else {
        format!("no usable disk: {}; none is formatted", seen.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(name: &str, gib: u64) -> BlockDevice {
        BlockDevice {
            name: name.into(),
            disk: None,
            part_name: None,
            size_bytes: gib << 30,
            read_only: false,
        }
    }

    fn partition(name: &str, disk: &str, label: Option<&str>) -> BlockDevice {
        BlockDevice {
            name: name.into(),
            disk: Some(disk.into()),
            part_name: label.map(str::to_owned),
            size_bytes: 1 << 30,
            read_only: false,
        }
    }

    #[test]
    fn an_existing_data_partition_wins_on_any_disk() {
        let devices = [
            disk("vda", 8),
            disk("vdb", 8),
            partition("vdb1", "vdb", Some("EFI")),
            partition("vdb2", "vdb", Some(DATA_LABEL)),
        ];
        assert_eq!(
            choose(&devices, |_| true),
            Choice::Existing(devices[3].clone())
        );
    }

    #[test]
    fn only_a_blank_writable_big_enough_disk_is_a_candidate() {
        let mut ro = disk("vda", 8);
        ro.read_only = true;
        let devices = [
            ro,
            disk("vdb", 0),
            disk("vdc", 8),
            partition("vdc1", "vdc", None),
            disk("vdd", 8),
            disk("vde", 8),
        ];
        let choice = choose(&devices, |d| d.name != "vdd");
        assert_eq!(choice, Choice::Candidate(devices[5].clone()));
        let Choice::Nothing(why) = choose(&devices[..5], |d| d.name != "vdd") else {
            panic!("expected nothing");
        };
        assert_eq!(
            why,
            "no usable disk: vda read-only, vdb too small, vdc partitioned, without a \
             cairn-data partition, vdd not blank (holds data of unknown kind); none is formatted"
        );
        assert_eq!(
            choose(&[], |_| true),
            Choice::Nothing("no disk attached".into())
        );
    }

    #[test]
    fn scan_reads_sysfs() {
        let root = tempfile::tempdir().unwrap();
        let block = root.path().join("sys/class/block");
        let devices = root.path().join("sys/devices/virtio1/block/vda");
        fs::create_dir_all(devices.join("vda1")).unwrap();
        fs::create_dir_all(root.path().join("sys/devices/virtual/block/loop0")).unwrap();
        fs::create_dir_all(&block).unwrap();
        fs::write(devices.join("size"), "16777216\n").unwrap();
        fs::write(devices.join("ro"), "0\n").unwrap();
        fs::write(devices.join("uevent"), "MAJOR=254\nDEVNAME=vda\n").unwrap();
        fs::write(devices.join("vda1/size"), "16775168\n").unwrap();
        fs::write(devices.join("vda1/partition"), "1\n").unwrap();
        fs::write(
            devices.join("vda1/uevent"),
            "DEVNAME=vda1\nPARTNAME=cairn-data\n",
        )
        .unwrap();
        std::os::unix::fs::symlink(&devices, block.join("vda")).unwrap();
        std::os::unix::fs::symlink(devices.join("vda1"), block.join("vda1")).unwrap();
        std::os::unix::fs::symlink(
            root.path().join("sys/devices/virtual/block/loop0"),
            block.join("loop0"),
        )
        .unwrap();

        let found = scan(&Paths::under_root(root.path()));
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].name, "vda");
        assert_eq!(found[0].size_bytes, 8 << 30);
        assert_eq!(found[0].disk, None);
        assert_eq!(found[1].disk.as_deref(), Some("vda"));
        assert_eq!(found[1].part_name.as_deref(), Some(DATA_LABEL));
        assert_eq!(
            choose(&found, |_| false),
            Choice::Existing(found[1].clone())
        );
    }
}
