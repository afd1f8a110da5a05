//! The real [`Syscall`] implementation: thin wrappers over `nix`.

use std::ffi::{CStr, CString, OsStr};
use std::fs::DirBuilder;
use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::kmod::{finit_module, ModuleInitFlags};
use nix::mount::{mount, MntFlags, MsFlags};
use nix::sys::reboot::{reboot, set_cad_enabled, RebootMode};
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{chdir, chroot, execve, gethostname, sethostname, sync};

use super::Syscall;

/// Calls the kernel.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinuxSyscall;

impl Syscall for LinuxSyscall {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        mount(source, target, fstype, flags, data)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        DirBuilder::new().recursive(true).mode(0o755).create(path)
    }

    fn chdir(&self, path: &Path) -> nix::Result<()> {
        chdir(path)
    }

    fn chroot(&self, path: &Path) -> nix::Result<()> {
        chroot(path)
    }

    fn execve(&self, path: &Path, argv: &[CString], env: &[CString]) -> Errno {
        let path = match CString::new(path.as_os_str().as_encoded_bytes()) {
            Ok(path) => path,
            Err(_) => return Errno::EINVAL,
        };
        match execve::<&CStr, &CStr>(&path, &as_cstrs(argv), &as_cstrs(env)) {
            Err(errno) => errno,
            Ok(never) => match never {},
        }
    }

    fn finit_module(&self, path: &Path) -> nix::Result<()> {
        let file = open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())?;
        finit_module(&file, c"", ModuleInitFlags::empty())
    }

    fn sethostname(&self, name: &str) -> nix::Result<()> {
        sethostname(name)
    }

    fn gethostname(&self) -> nix::Result<String> {
        Ok(gethostname()?.to_string_lossy().into_owned())
    }

    fn interface_addresses(&self) -> nix::Result<Vec<String>> {
        let mut found = Vec::new();
        for entry in nix::ifaddrs::getifaddrs()? {
            let (Some(address), Some(netmask)) = (entry.address, entry.netmask) else {
                continue;
            };
            let (address, prefix) =
                if let (Some(a), Some(m)) = (address.as_sockaddr_in(), netmask.as_sockaddr_in()) {
                    (IpAddr::V4(a.ip()), u32::from(m.ip()).count_ones())
                } else if let (Some(a), Some(m)) =
                    (address.as_sockaddr_in6(), netmask.as_sockaddr_in6())
                {
                    (IpAddr::V6(a.ip()), u128::from(m.ip()).count_ones())
                } else {
                    continue; // AF_PACKET: a link, not an address
                };
            found.push(format!("{} {address}/{prefix}", entry.interface_name));
        }
        Ok(found)
    }

    fn set_nofile_limit(&self, limit: u64) -> nix::Result<()> {
        setrlimit(Resource::RLIMIT_NOFILE, limit, limit)
    }

    fn set_cad_enabled(&self, enabled: bool) -> nix::Result<()> {
        set_cad_enabled(enabled)
    }

    fn sync(&self) {
        sync();
    }

    fn reboot(&self, mode: RebootMode) -> Errno {
        match reboot(mode) {
            Err(errno) => errno,
            Ok(never) => match never {},
        }
    }

    fn wait_any(&self) -> nix::Result<WaitStatus> {
        waitpid(None, Some(WaitPidFlag::WNOHANG))
    }

    fn unmount(&self, target: &Path, flags: MntFlags) -> nix::Result<()> {
        nix::mount::umount2(target, flags)
    }

    fn kill_all(&self, signal: Signal) -> nix::Result<()> {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(-1), signal)
    }

    fn reread_partitions(&self, disk: &Path) -> nix::Result<()> {
        let file = open(disk, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())?;
        // SAFETY: BLKRRPART takes no argument; `file` is open for the whole call.
        unsafe { blkrrpart(file.as_raw_fd()) }.map(drop)
    }

    fn run_tool(&self, binary: &Path, args: &[&OsStr]) -> io::Result<Output> {
        Command::new(binary)
            .args(args)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null())
            .output()
    }
}

nix::ioctl_none!(blkrrpart, 0x12, 95);

fn as_cstrs(strings: &[CString]) -> Vec<&CStr> {
    strings.iter().map(CString::as_c_str).collect()
}
