//! The system calls the agent makes, behind one small trait.
//!
//! Boot steps take a `&dyn Syscall` instead of calling `nix` directly, so unit tests can
//! drive them with [`fake::RecordingSyscall`], which records every call in order and
//! fails the calls a test asks it to. The shape follows youki's
//! `libcontainer/src/syscall/{syscall,test}.rs`.

mod linux;

#[cfg(test)]
pub mod fake;

pub use linux::LinuxSyscall;

use std::ffi::CString;
use std::fmt;
use std::io;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::reboot::RebootMode;
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;

/// Every kernel interface a boot step touches, except plain file reads and writes
/// under [`crate::Paths`], which tests point at a temporary directory instead.
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
}
