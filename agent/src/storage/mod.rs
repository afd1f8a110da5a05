//! Boot step: storage. The node's state (identity key, PKI, etcd data, containerd and
//! kubelet state, pod logs) lives under `/var`, and `/var` is the data disk's ext4
//! partition when there is one.
//!
//! First boot on a blank disk: a GPT with one partition named `cairn-data` is written,
//! the partition formatted ext4 and mounted. Later boots find the partition by name,
//! check it with `e2fsck -p` and mount it. Anything else — no disk, a disk holding
//! unknown data, a file system the check refuses — is never formatted over: the node
//! says why on the console and in the `storage` condition and runs ephemeral, with a
//! tmpfs on `/var`, rather than hanging or destroying data. See [`devices`] for how
//! the disk is chosen and [`release`] for the clean unmount at shutdown.

pub mod devices;
pub mod disk;
pub mod release;

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use cairn_api::error_chain;

use crate::syscall::Syscall;
use crate::Paths;
use devices::{BlockDevice, Choice};
use disk::DiskError;

/// Where the state lives.
pub const MOUNT_POINT: &str = "/var";

/// Why not even the ephemeral `/var` could be mounted (the boot cannot go on).
#[derive(Debug, thiserror::Error)]
#[error("cannot mount a tmpfs on {MOUNT_POINT}")]
pub struct StorageError(#[source] nix::Error);

/// What `/var` is for this boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// The data partition, mounted; `formatted` on its first boot, otherwise `check`
    /// is what `e2fsck -p` said (`<label>: clean, ...` after a clean shutdown).
    Persistent {
        device: PathBuf,
        formatted: bool,
        check: String,
    },
    /// A tmpfs: everything is lost at power-off. `why` names what was missing.
    Ephemeral { why: String },
}

impl Storage {
    pub fn is_persistent(&self) -> bool {
        matches!(self, Storage::Persistent { .. })
    }

    /// The `storage` condition's reason.
    pub fn reason(&self) -> String {
        match self {
            Storage::Persistent {
                device,
                formatted,
                check,
            } => {
                let how = match formatted {
                    true => " (formatted this boot)".to_owned(),
                    false => format!("; e2fsck: {}", check.lines().collect::<Vec<_>>().join("; ")),
                };
                format!(
                    "data partition {} mounted on {MOUNT_POINT}{how}",
                    device.display()
                )
            }
            Storage::Ephemeral { why } => format!(
                "running ephemeral: {why}; {MOUNT_POINT} is a tmpfs and the node's state \
                 is lost at power-off"
            ),
        }
    }
}

/// Mounts the data partition on `/var`, creating it on a blank disk first; falls back
/// to a tmpfs. Fails only if the tmpfs cannot be mounted either.
pub fn prepare(sys: &dyn Syscall, paths: &Paths) -> Result<Storage, StorageError> {
    let target = paths.resolve(MOUNT_POINT);
    if let Err(err) = sys.create_dir_all(&target) {
        tracing::warn!("cannot create {}: {err}", target.display());
    }
    match attach_data_disk(sys, paths, &target) {
        Ok(storage) => Ok(storage),
        Err(why) => {
            // Not nosuid: containerd's overlay snapshots live here.
            sys.mount(
                Some(Path::new("tmpfs")),
                &target,
                Some("tmpfs"),
                MsFlags::empty(),
                Some("mode=0755"),
            )
            .map_err(StorageError)?;
            Ok(Storage::Ephemeral { why })
        }
    }
}

fn attach_data_disk(sys: &dyn Syscall, paths: &Paths, target: &Path) -> Result<Storage, String> {
    let devices = devices::scan(paths);
    let blank = |d: &BlockDevice| disk::is_blank(&d.dev_path(paths)).unwrap_or(false);
    let (partition, formatted) = match devices::choose(&devices, blank) {
        Choice::Existing(partition) => (partition.dev_path(paths), false),
        Choice::Candidate(disk) => (partition_disk(sys, paths, &disk).map_err(describe)?, true),
        Choice::Nothing(why) => return Err(why),
    };
    let check = prepare_filesystem(sys, &partition, formatted).map_err(describe)?;
    sys.mount(
        Some(&partition),
        target,
        Some("ext4"),
        MsFlags::MS_NOATIME,
        None,
    )
    .map_err(|errno| {
        format!(
            "cannot mount {} on {MOUNT_POINT}: {errno}",
            partition.display()
        )
    })?;
    Ok(Storage::Persistent {
        device: partition,
        formatted,
        check,
    })
}

/// The GPT and the kernel's view of it; returns the partition's device node.
fn partition_disk(
    sys: &dyn Syscall,
    paths: &Paths,
    disk: &BlockDevice,
) -> Result<PathBuf, DiskError> {
    let device = disk.dev_path(paths);
    let partition = device.with_file_name(partition_name(&disk.name, 1));
    tracing::info!(
        "storage: {} is blank: writing a partition table with {}",
        device.display(),
        devices::DATA_LABEL
    );
    disk::write_partition_table(&device)?;
    disk::rescan(sys, &device, &partition)?;
    Ok(partition)
}

/// A new partition gets a file system; an existing one must have one and pass the
/// check. A partition without ext4 is formatted only if it is blank, i.e. the first
/// boot was cut off between the partition table and mke2fs. Returns what the check
/// said (empty after formatting).
fn prepare_filesystem(
    sys: &dyn Syscall,
    partition: &Path,
    formatted: bool,
) -> Result<String, DiskError> {
    if !formatted && disk::has_ext4(partition)? {
        let output = disk::check_filesystem(sys, partition)?;
        tracing::info!("storage: e2fsck -p {}: {output}", partition.display());
        return Ok(output);
    }
    if !formatted && !disk::is_blank(partition)? {
        return Err(DiskError::Tool {
            tool: "probe",
            device: partition.to_owned(),
            status: "no ext4 file system".into(),
            output: "the partition holds something else; not formatting it".into(),
        });
    }
    disk::make_filesystem(sys, partition)?;
    tracing::info!(
        "storage: made an ext4 file system on {}",
        partition.display()
    );
    Ok(String::new())
}

/// Linux names partition N of `vda` `vda<N>`, of `nvme0n1` `nvme0n1p<N>`.
pub fn partition_name(disk: &str, number: u32) -> String {
    match disk.ends_with(|c: char| c.is_ascii_digit()) {
        true => format!("{disk}p{number}"),
        false => format!("{disk}{number}"),
    }
}

fn describe(err: DiskError) -> String {
    error_chain(&err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::fake::{Call, RecordingSyscall};

    #[test]
    fn partition_names_follow_the_kernel() {
        assert_eq!(partition_name("vda", 1), "vda1");
        assert_eq!(partition_name("nvme0n1", 1), "nvme0n1p1");
        assert_eq!(partition_name("mmcblk0", 2), "mmcblk0p2");
    }

    #[test]
    fn without_a_disk_var_is_a_tmpfs_and_the_reason_says_so() {
        let root = tempfile::tempdir().unwrap();
        let paths = Paths::under_root(root.path());
        let sys = RecordingSyscall::new();
        let storage = prepare(&sys, &paths).unwrap();
        assert_eq!(
            storage,
            Storage::Ephemeral {
                why: "no disk attached".into()
            }
        );
        assert!(storage
            .reason()
            .contains("running ephemeral: no disk attached"));
        assert!(sys.calls().iter().any(|c| matches!(c,
            Call::Mount { fstype: Some(t), target, .. } if t == "tmpfs" && target.ends_with("var"))));
    }

    #[test]
    fn a_failing_tmpfs_mount_is_fatal() {
        let root = tempfile::tempdir().unwrap();
        let sys = RecordingSyscall::new();
        sys.fail_when(
            |c| matches!(c, Call::Mount { .. }),
            nix::errno::Errno::EPERM,
        );
        assert!(prepare(&sys, &Paths::under_root(root.path())).is_err());
    }

    #[test]
    fn a_non_blank_partition_without_ext4_is_left_alone() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), vec![0xAA; 8192]).unwrap();
        let sys = RecordingSyscall::new();
        let err = prepare_filesystem(&sys, file.path(), false).unwrap_err();
        assert!(error_chain(&err).contains("not formatting it"), "{err}");
        assert_eq!(sys.calls(), []);
    }

    fn tool_runs(sys: &RecordingSyscall) -> Vec<(String, Vec<String>)> {
        let text = |s: &std::ffi::OsStr| s.to_string_lossy().into_owned();
        sys.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::RunTool { binary, args } => Some((
                    text(binary.as_os_str()),
                    args.iter().map(|a| text(a)).collect(),
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_blank_partition_gets_ext4_labelled_for_the_data_disk() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), vec![0; 8192]).unwrap();
        let sys = RecordingSyscall::new();
        prepare_filesystem(&sys, file.path(), false).unwrap();
        let runs = tool_runs(&sys);
        assert_eq!(runs.len(), 1, "{runs:?}");
        let (binary, args) = &runs[0];
        assert_eq!(binary, disk::MKE2FS);
        assert!(
            args.windows(2).any(|w| w == ["-L", devices::DATA_LABEL]),
            "{args:?}"
        );
        assert_eq!(args.last().unwrap(), &file.path().to_string_lossy());
    }

    #[test]
    fn an_ext4_partition_is_checked_and_e2fsck_above_2_is_an_error() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut bytes = vec![0; 8192];
        bytes[1080..1082].copy_from_slice(&0xEF53u16.to_le_bytes());
        std::fs::write(file.path(), bytes).unwrap();
        let sys = RecordingSyscall::new();
        sys.queue_tool_exits([1, 4]);
        prepare_filesystem(&sys, file.path(), false).unwrap();
        let err = prepare_filesystem(&sys, file.path(), false).unwrap_err();
        assert!(error_chain(&err).contains("e2fsck"), "{err}");
        let runs = tool_runs(&sys);
        assert_eq!(runs.len(), 2, "{runs:?}");
        assert!(runs
            .iter()
            .all(|(binary, args)| binary == disk::E2FSCK && args[0] == "-p"));
    }
}
