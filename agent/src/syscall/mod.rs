//! The system calls of the boot steps, behind one small trait.
//!
//! Boot steps take a `&dyn Syscall` instead of calling `nix` directly, so unit tests can
//! drive them with [`fake::RecordingSyscall`], which records every call in order and
//! fails the calls a test asks it to. The shape follows youki's
//! `libcontainer/src/syscall/{syscall,test}.rs`.
//!
//! What the trait covers: every kernel call of the steps that `boot.rs` runs in order
//! and that take the `&dyn Syscall` — leaving the initramfs root, the pseudo file
//! systems, limits, modules, storage (partition rescan, the e2fsprogs runs, mounts),
//! the hostname — and of PID 1's loop: reaping, ending every process with kill(-1),
//! unmounting, sync and reboot. Plain file reads and writes (device nodes, `/proc`,
//! `/sys` and cgroupfs files included) go through [`crate::Paths`] instead, which tests
//! point at a temporary directory, and the node key's getrandom(2) sits behind
//! [`crate::identity::KeySource`].
//!
//! What it does not cover, because those parts run as tasks on the tokio runtime that
//! are handed no `&dyn Syscall` and test against real processes or servers instead:
//! the supervisor (fork/exec of services through `std::process::Command`, kill(2) and
//! killpg(2) to stop them, `Supervisor::signal`), the debug service's kill(2), the
//! network step (rtnetlink sockets, if_nametoindex(3)) and the clock of
//! [`crate::conditions`] (clock_gettime(2)).

mod linux;

#[cfg(test)]
pub mod fake;

pub use linux::LinuxSyscall;

use std::ffi::{CString, OsStr};
use std::fmt;
use std::io;
use std::path::Path;
use std::process::Output;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::reboot::RebootMode;
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;

/// The kernel calls of the boot steps and of PID 1's loop (the module doc says which
/// parts of the agent are outside it).
pub trait Syscall: fmt::Debug + Send + Sync {
    /// mount(2).
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()>;
    /// mkdir(2) of a path and its missing parents (mode 0755).
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// chdir(2).
    fn chdir(&self, path: &Path) -> nix::Result<()>;
    /// chroot(2).
    fn chroot(&self, path: &Path) -> nix::Result<()>;
    /// execve(2): only returns on failure, so it returns the error alone.
    fn execve(&self, path: &Path, argv: &[CString], env: &[CString]) -> Errno;
    /// open(2) + finit_module(2) with empty parameters.
    fn finit_module(&self, path: &Path) -> nix::Result<()>;
    /// sethostname(2).
    fn sethostname(&self, name: &str) -> nix::Result<()>;
    /// gethostname(2) (uname(2) on Linux).
    fn gethostname(&self) -> nix::Result<String>;
    /// getifaddrs(3): every interface address as `<interface> <address>/<prefix length>`,
    /// IPv4 and IPv6, in the kernel's order.
    fn interface_addresses(&self) -> nix::Result<Vec<String>>;
    /// setrlimit(2) of RLIMIT_NOFILE, soft and hard limit alike.
    fn set_nofile_limit(&self, limit: u64) -> nix::Result<()>;
    /// reboot(2) with RB_ENABLE_CAD / RB_DISABLE_CAD.
    fn set_cad_enabled(&self, enabled: bool) -> nix::Result<()>;
    /// sync(2).
    fn sync(&self);
    /// reboot(2): only returns on failure, so it returns the error alone.
    fn reboot(&self, mode: RebootMode) -> Errno;
    /// waitpid(-1, WNOHANG).
    fn wait_any(&self) -> nix::Result<WaitStatus>;
    /// umount2(2).
    fn unmount(&self, target: &Path, flags: MntFlags) -> nix::Result<()>;
    /// kill(-1, signal): every process but PID 1 and the caller (kill(2)).
    fn kill_all(&self, signal: Signal) -> nix::Result<()>;
    /// open(2) of the block device `disk`, then ioctl(BLKRRPART): the kernel re-reads
    /// its partition table (and devtmpfs then creates the partitions' nodes).
    fn reread_partitions(&self, disk: &Path) -> nix::Result<()>;
    /// fork(2) + execve(2) of `binary` with `args`, stdin from /dev/null and a fixed
    /// `PATH`, and wait for it: its exit status and what it wrote to stdout and stderr.
    /// For the tools the agent does not reimplement (mke2fs(8), e2fsck(8)).
    fn run_tool(&self, binary: &Path, args: &[&OsStr]) -> io::Result<Output>;
}
