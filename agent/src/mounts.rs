//! Boot step: mount the kernel's pseudo file systems, by syscall (mount(2)), never by exec.
//!
//! One table, mounted in order: a parent before anything below it (`/dev` before
//! `/dev/pts`, `/sys` before `/sys/fs/cgroup`), because devtmpfs and sysfs replace the
//! directories underneath and the mount points below them are created afterwards.

use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;

use crate::syscall::Syscall;
use crate::Paths;

const NOSUID_NODEV: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV);
const NOSUID_NODEV_NOEXEC: MsFlags = NOSUID_NODEV.union(MsFlags::MS_NOEXEC);

/// One row of the mount table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountSpec {
    /// Absolute path on the node.
    pub target: &'static str,
    /// File system type; also used as the source name shown in /proc/mounts.
    pub fstype: &'static str,
    pub flags: MsFlags,
    /// File-system specific options (the data argument of mount(2)).
    pub data: Option<&'static str>,
}

/// What a node needs before anything else runs. Options per proc(5), sysfs(5),
/// devpts (kernel Documentation/filesystems/devpts.rst), tmpfs(5) and cgroups(7).
pub const MOUNTS: &[MountSpec] = &[
    spec("/proc", "proc", NOSUID_NODEV_NOEXEC, None),
    spec("/sys", "sysfs", NOSUID_NODEV_NOEXEC, None),
    spec("/dev", "devtmpfs", MsFlags::MS_NOSUID, Some("mode=0755")),
    // A private instance: ptys the agent or runc allocate do not mix with any other.
    spec(
        "/dev/pts",
        "devpts",
        MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        Some("newinstance,ptmxmode=0666,mode=0620"),
    ),
    spec("/dev/shm", "tmpfs", NOSUID_NODEV, Some("mode=1777")),
    spec("/run", "tmpfs", NOSUID_NODEV, Some("mode=0755")),
    spec("/tmp", "tmpfs", NOSUID_NODEV, Some("mode=1777")),
    spec("/sys/fs/cgroup", "cgroup2", NOSUID_NODEV_NOEXEC, None),
    // Not `/var`: the storage step mounts the data disk or a tmpfs there. Either way
    // it is a real file system, never the moved initramfs root, which shows as fstype
    // `rootfs` in mountinfo, which cAdvisor has no plugin for, and the kubelet then
    // refuses to start ("failed to get rootfs info").
];

const fn spec(
    target: &'static str,
    fstype: &'static str,
    flags: MsFlags,
    data: Option<&'static str>,
) -> MountSpec {
    MountSpec {
        target,
        fstype,
        flags,
        data,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("failed to create mount point {}", .0.display())]
    CreateDir(PathBuf, #[source] io::Error),
    #[error("failed to mount {fstype} on {}", .target.display())]
    Mount {
        target: PathBuf,
        fstype: &'static str,
        #[source]
        source: Errno,
    },
}

/// Mounts every row of `table` under `paths`, in order.
///
/// EBUSY means the target is already mounted (mount(2)) and is accepted. Nothing else
/// is checked for earlier mounts: the agent runs this once per boot, after the re-exec,
/// and the first run mounts nothing, so there is nothing to stack on.
pub fn mount_all(sys: &dyn Syscall, paths: &Paths, table: &[MountSpec]) -> Result<(), MountError> {
    for spec in table {
        let target = paths.resolve(spec.target);
        sys.create_dir_all(&target)
            .map_err(|e| MountError::CreateDir(target.clone(), e))?;
        match mount_one(sys, spec, &target) {
            Err(Errno::EBUSY) => tracing::info!("{} already mounted", spec.target),
            Err(source) => {
                let fstype = spec.fstype;
                return Err(MountError::Mount {
                    target,
                    fstype,
                    source,
                });
            }
            Ok(()) => tracing::debug!("mounted {} on {}", spec.fstype, spec.target),
        }
    }
    Ok(())
}

fn mount_one(sys: &dyn Syscall, spec: &MountSpec, target: &Path) -> nix::Result<()> {
    let source = Path::new(spec.fstype);
    sys.mount(
        Some(source),
        target,
        Some(spec.fstype),
        spec.flags,
        spec.data,
    )
}

/// The cgroup2 mount (the last row of [`MOUNTS`]).
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The cgroup the supervised services run in, each in a child named after it
/// (`system/etcd`, `system/kubelet`, ...), beside the kubelet's `/kubepods`.
pub const SYSTEM_CGROUP: &str = "/sys/fs/cgroup/system";

/// Delegates every controller the root cgroup has to its children by writing
/// `+<controller>` for each name in `cgroup.controllers` to `cgroup.subtree_control`
/// (cgroups(7), "Enabling and disabling controllers"). The kubelet's cgroupfs driver
/// creates `/kubepods` below the root and needs cpu, cpuset, memory, pids (and io,
/// hugetlb when present) enabled there; with no systemd on the node, nobody else does
/// it. The root cgroup is exempt from the no-internal-processes rule, so the agent
/// stays where it is. Returns the controllers enabled.
pub fn enable_controllers(paths: &Paths) -> io::Result<Vec<String>> {
    delegate_controllers(&paths.resolve(CGROUP_ROOT))
}

/// Creates [`SYSTEM_CGROUP`] and delegates its controllers to the services' cgroups
/// below it, so each service's memory, CPU and pids are accounted apart (memory.current
/// of `system/etcd` is etcd's, page cache and kernel memory included). Returns its path.
///
/// Called at boot while the agent is the only process, for a second reason: the first
/// memory and cpuset cgroups below the root switch static keys on, which rewrites the
/// kernel's code at every slab and page allocation site (text_poke_bp). Left to the
/// kubelet's first `/kubepods`, that rewrite ran while etcd, containerd and the
/// apiserver allocated on both CPUs, and a CI node under TCG hung for good: one CPU in
/// the kubelet's cgroup mkdir, the other taking int3 after int3 at `kmem_cache_alloc`'s
/// memcg branch (a stale translation of the patch's int3, docs/architecture.md). Here
/// the other CPUs are idle. The keys stay on for the whole boot: this cgroup never goes.
pub fn create_system_cgroup(paths: &Paths) -> io::Result<PathBuf> {
    let dir = paths.resolve(SYSTEM_CGROUP);
    std::fs::create_dir_all(&dir)?;
    delegate_controllers(&dir)?;
    Ok(dir)
}

fn delegate_controllers(cgroup: &Path) -> io::Result<Vec<String>> {
    let available = std::fs::read_to_string(cgroup.join("cgroup.controllers"))?;
    let controllers: Vec<String> = available.split_whitespace().map(str::to_owned).collect();
    if controllers.is_empty() {
        return Ok(controllers);
    }
    let line: Vec<String> = controllers.iter().map(|c| format!("+{c}")).collect();
    std::fs::write(cgroup.join("cgroup.subtree_control"), line.join(" "))?;
    Ok(controllers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::fake::{Call, RecordingSyscall};

    fn expected_calls(root: &Path) -> Vec<Call> {
        let mut calls = Vec::new();
        for spec in MOUNTS {
            let target = root.join(&spec.target[1..]);
            calls.push(Call::CreateDirAll(target.clone()));
            calls.push(Call::Mount {
                source: Some(PathBuf::from(spec.fstype)),
                target,
                fstype: Some(spec.fstype.to_owned()),
                flags: spec.flags,
                data: spec.data.map(str::to_owned),
            });
        }
        calls
    }

    #[test]
    fn enables_every_available_controller_for_children() {
        let dir = tempfile::tempdir().unwrap();
        let cgroup = dir.path().join("sys/fs/cgroup");
        fake_cgroup(&cgroup, "cpuset cpu io memory pids\n");
        let enabled = enable_controllers(&Paths::under_root(dir.path())).unwrap();
        assert_eq!(enabled, ["cpuset", "cpu", "io", "memory", "pids"]);
        let written = std::fs::read_to_string(cgroup.join("cgroup.subtree_control")).unwrap();
        assert_eq!(written, "+cpuset +cpu +io +memory +pids");
    }

    /// A directory standing in for a fresh cgroup: the kernel fills cgroup.controllers.
    fn fake_cgroup(dir: &Path, controllers: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("cgroup.controllers"), controllers).unwrap();
    }

    #[test]
    fn the_system_cgroup_delegates_its_controllers_to_the_services() {
        let root = tempfile::tempdir().unwrap();
        let system = root.path().join("sys/fs/cgroup/system");
        // mkdir(2) in cgroupfs creates the interface files; here the test does.
        fake_cgroup(&system, "cpu memory pids\n");
        let created = create_system_cgroup(&Paths::under_root(root.path())).unwrap();
        assert_eq!(created, system);
        let written = std::fs::read_to_string(system.join("cgroup.subtree_control")).unwrap();
        assert_eq!(written, "+cpu +memory +pids");
    }

    #[test]
    fn mounts_the_table_in_order() {
        let sys = RecordingSyscall::new();
        mount_all(&sys, &Paths::under_root("/r"), MOUNTS).unwrap();
        assert_eq!(sys.calls(), expected_calls(Path::new("/r")));
        let targets: Vec<_> = MOUNTS.iter().map(|m| m.target).collect();
        assert_eq!(
            targets,
            [
                "/proc",
                "/sys",
                "/dev",
                "/dev/pts",
                "/dev/shm",
                "/run",
                "/tmp",
                "/sys/fs/cgroup",
            ]
        );
    }

    #[test]
    fn already_mounted_is_not_an_error() {
        let sys = RecordingSyscall::new();
        sys.fail_when(
            |c| matches!(c, Call::Mount { fstype: Some(t), .. } if t == "proc"),
            Errno::EBUSY,
        );
        mount_all(&sys, &Paths::under_root("/r"), MOUNTS).unwrap();
        assert_eq!(sys.calls().len(), 2 * MOUNTS.len());
    }

    #[test]
    fn failure_names_the_target_and_stops() {
        let sys = RecordingSyscall::new();
        sys.fail_when(
            |c| matches!(c, Call::Mount { fstype: Some(t), .. } if t == "devpts"),
            Errno::ENODEV,
        );
        let err = mount_all(&sys, &Paths::under_root("/"), MOUNTS).unwrap_err();
        assert_eq!(err.to_string(), "failed to mount devpts on /dev/pts");
        assert_eq!(sys.calls().len(), 8);
    }
}
