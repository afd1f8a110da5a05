//! The end of a boot, for the data disk's sake: every process but PID 1 ended, every
//! mount below `/var` unmounted (container rootfs overlays, pod volumes, the disk), so
//! the next boot finds a clean file system. The services are stopped before this;
//! what is left are the containers and their shims, which outlive containerd on
//! purpose.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::signal::Signal;

use crate::syscall::Syscall;
use crate::Paths;

/// How long processes get after SIGTERM, then after SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(5);
pub const KILL_GRACE: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(50);
/// proc(5) stat `flags`: PF_KTHREAD, set on kernel threads, which no signal ends.
const PF_KTHREAD: u64 = 0x0020_0000;

/// Ends every user process but PID 1: SIGTERM, a grace period, SIGKILL. The reaper
/// (running on the agent's runtime) collects them; returns how many were left after
/// the SIGKILL grace (0 normally).
pub async fn end_processes(sys: &dyn Syscall, paths: &Paths) -> usize {
    let proc = paths.resolve("/proc");
    for (signal, grace) in [(Signal::SIGTERM, TERM_GRACE), (Signal::SIGKILL, KILL_GRACE)] {
        if user_processes(&proc).is_empty() {
            return 0;
        }
        // ESRCH: nothing left to signal.
        if let Err(errno) = sys.kill_all(signal) {
            if errno != Errno::ESRCH {
                tracing::warn!("kill(-1, {signal}): {errno}");
            }
        }
        let deadline = tokio::time::Instant::now() + grace;
        while !user_processes(&proc).is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(POLL).await;
        }
    }
    let left = user_processes(&proc);
    if !left.is_empty() {
        tracing::warn!("processes still present after SIGKILL: {left:?}");
    }
    left.len()
}

/// Pids of user-space processes other than PID 1 (zombies included: they hold no
/// files, but they show the reaper has not caught up).
pub fn user_processes(proc: &Path) -> Vec<u32> {
    let Ok(entries) = fs::read_dir(proc) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != 1)
        .filter(|pid| {
            fs::read_to_string(proc.join(pid.to_string()).join("stat"))
                .ok()
                .and_then(|stat| stat_flags(&stat))
                .is_some_and(|flags| flags & PF_KTHREAD == 0)
        })
        .collect()
}

/// The `flags` field of proc(5) stat: the seventh after the command name.
fn stat_flags(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(6)?.parse().ok()
}

/// Mounts below this hold the data disk busy without being on it: containerd's task
/// directories have every container's rootfs overlay (whose layers are on `/var`), and
/// network namespaces are bind-mounted there too.
pub const RUNTIME_DIR: &str = "/run";

/// Unmounts everything at and below `mount_point` and every mount below [`RUNTIME_DIR`]
/// (not that tmpfs itself), newest first. A mount that stays busy is detached
/// (MNT_DETACH); if `mount_point` itself stays busy, it is remounted read-only so its
/// file system is still clean. Returns what went wrong.
pub fn unmount_below(sys: &dyn Syscall, paths: &Paths, mount_point: &str) -> Vec<String> {
    let mountinfo = fs::read_to_string(paths.resolve("/proc/self/mountinfo")).unwrap_or_default();
    let top = paths.resolve(mount_point);
    let runtime = Path::new(RUNTIME_DIR);
    let mut targets = mountinfo_points(&mountinfo);
    targets.retain(|point| {
        point.starts_with(mount_point) || (point.starts_with(runtime) && point != runtime)
    });
    let mut problems = Vec::new();
    for target in targets.iter().rev() {
        let target = paths.resolve(target);
        match sys.unmount(&target, MntFlags::empty()) {
            Ok(()) | Err(Errno::EINVAL | Errno::ENOENT) => continue,
            Err(errno) if target != top => {
                let detached = sys.unmount(&target, MntFlags::MNT_DETACH);
                problems.push(format!(
                    "{} busy ({errno}), detached: {detached:?}",
                    target.display()
                ));
            }
            Err(errno) => {
                let flags = MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
                let remount = sys.mount(None, &target, None, flags, None);
                problems.push(format!(
                    "{} busy ({errno}), remounted read-only: {remount:?}",
                    target.display()
                ));
            }
        }
    }
    sys.sync();
    problems
}

/// Mount points in `mountinfo` (proc(5)) at or below `top`, in mount order.
pub fn mounts_below(mountinfo: &str, top: &Path) -> Vec<PathBuf> {
    let mut points = mountinfo_points(mountinfo);
    points.retain(|point| point.starts_with(top));
    points
}

/// Every mount point in `mountinfo`, in mount order.
fn mountinfo_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape(field)))
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let text = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::fake::{Call, RecordingSyscall};

    const MOUNTINFO: &str = "\
22 1 0:21 / / rw - rootfs rootfs rw
25 22 0:5 / /proc rw - proc proc rw
26 22 0:25 / /run rw - tmpfs tmpfs rw
30 22 254:1 / /var rw,noatime - ext4 /dev/vda1 rw
41 30 0:40 / /var/lib/kubelet/pods/x/volumes/secret rw - tmpfs tmpfs rw
45 30 0:44 / /var/lib/containerd/rootfs/my\\040dir rw - overlay overlay rw
46 22 0:45 / /variable rw - tmpfs tmpfs rw
47 26 0:46 / /run/containerd/io.containerd.runtime.v2.task/k8s.io/c1/rootfs rw - overlay overlay rw
";

    #[test]
    fn mounts_below_keep_order_and_unescape() {
        assert_eq!(
            mounts_below(MOUNTINFO, Path::new("/var")),
            [
                PathBuf::from("/var"),
                "/var/lib/kubelet/pods/x/volumes/secret".into(),
                "/var/lib/containerd/rootfs/my dir".into(),
            ]
        );
    }

    #[test]
    fn unmounts_innermost_first_and_remounts_a_busy_top_read_only() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("proc/self")).unwrap();
        fs::write(root.path().join("proc/self/mountinfo"), MOUNTINFO).unwrap();
        let paths = Paths::under_root(root.path());
        let var = paths.resolve("/var");
        let sys = RecordingSyscall::new();
        let busy = var.clone();
        sys.fail_when(
            move |c| matches!(c, Call::Unmount(t, f) if *t == busy && f.is_empty()),
            Errno::EBUSY,
        );

        let problems = unmount_below(&sys, &paths, "/var");

        let calls = sys.calls();
        let unmounted: Vec<_> = calls
            .iter()
            .filter_map(|c| match c {
                Call::Unmount(t, _) => Some(t.strip_prefix(root.path()).unwrap().to_owned()),
                _ => None,
            })
            .collect();
        assert_eq!(
            unmounted,
            [
                PathBuf::from("run/containerd/io.containerd.runtime.v2.task/k8s.io/c1/rootfs"),
                "var/lib/containerd/rootfs/my dir".into(),
                "var/lib/kubelet/pods/x/volumes/secret".into(),
                "var".into(),
            ]
        );
        assert!(matches!(&calls[4], Call::Mount { target, flags, .. }
            if *target == var && flags.contains(MsFlags::MS_RDONLY | MsFlags::MS_REMOUNT)));
        assert_eq!(calls.last(), Some(&Call::Sync));
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    #[test]
    fn kernel_threads_and_pid1_are_not_user_processes() {
        let root = tempfile::tempdir().unwrap();
        let proc = root.path();
        for (pid, flags) in [
            (1, 4194560),
            (2, 2129984),
            (300, 4194560),
            (301, 1077936192),
        ] {
            fs::create_dir_all(proc.join(pid.to_string())).unwrap();
            let stat = format!("{pid} (some (name)) S 0 0 0 0 -1 {flags} 0 0");
            fs::write(proc.join(pid.to_string()).join("stat"), stat).unwrap();
        }
        fs::create_dir_all(proc.join("self")).unwrap();
        let mut found = user_processes(proc);
        found.sort();
        assert_eq!(found, [300, 301]);
    }
}
