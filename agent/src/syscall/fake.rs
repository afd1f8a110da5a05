//! A recording [`Syscall`] for unit tests: every call is appended to a log, nothing
//! reaches the kernel, and tests choose which calls fail with which errno.

use std::collections::VecDeque;
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::reboot::RebootMode;
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;

use super::Syscall;

/// One recorded call, with owned copies of its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Mount {
        source: Option<PathBuf>,
        target: PathBuf,
        fstype: Option<String>,
        flags: MsFlags,
        data: Option<String>,
    },
    CreateDirAll(PathBuf),
    Chdir(PathBuf),
    Chroot(PathBuf),
    Execve {
        path: PathBuf,
        argv: Vec<CString>,
        env: Vec<CString>,
    },
    FinitModule(PathBuf),
    SetHostname(String),
    SetNofileLimit(u64),
    SetCadEnabled(bool),
    Sync,
    Reboot(RebootMode),
    WaitAny,
    Unmount(PathBuf, MntFlags),
    KillAll(Signal),
    RereadPartitions(PathBuf),
    RunTool {
        binary: PathBuf,
        args: Vec<OsString>,
    },
}

type Matcher = Box<dyn Fn(&Call) -> bool + Send>;

/// Records calls; fails those matching a rule added with [`RecordingSyscall::fail_when`].
#[derive(Default)]
pub struct RecordingSyscall {
    calls: Mutex<Vec<Call>>,
    failures: Mutex<Vec<(Matcher, Errno)>>,
    waits: Mutex<VecDeque<nix::Result<WaitStatus>>>,
    hostname: Mutex<String>,
    tool_exits: Mutex<VecDeque<i32>>,
}

impl std::fmt::Debug for RecordingSyscall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingSyscall")
            .field("calls", &self.calls)
            .finish_non_exhaustive()
    }
}

impl RecordingSyscall {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every later call for which `matches` is true fail with `errno`.
    pub fn fail_when(&self, matches: impl Fn(&Call) -> bool + Send + 'static, errno: Errno) {
        self.failures
            .lock()
            .unwrap()
            .push((Box::new(matches), errno));
    }

    /// Queues the results `wait_any` returns, in order; when empty it returns ECHILD.
    pub fn queue_waits(&self, results: impl IntoIterator<Item = nix::Result<WaitStatus>>) {
        self.waits.lock().unwrap().extend(results);
    }

    /// Queues the exit codes `run_tool` reports, in order; when empty it reports 0.
    pub fn queue_tool_exits(&self, codes: impl IntoIterator<Item = i32>) {
        self.tool_exits.lock().unwrap().extend(codes);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn record(&self, call: Call) -> nix::Result<()> {
        let failure = self
            .failures
            .lock()
            .unwrap()
            .iter()
            .find(|(m, _)| m(&call))
            .map(|f| f.1);
        self.calls.lock().unwrap().push(call);
        failure.map_or(Ok(()), Err)
    }
}

impl Syscall for RecordingSyscall {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        self.record(Call::Mount {
            source: source.map(Path::to_path_buf),
            target: target.to_path_buf(),
            fstype: fstype.map(str::to_owned),
            flags,
            data: data.map(str::to_owned),
        })
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        Ok(self.record(Call::CreateDirAll(path.to_path_buf()))?)
    }

    fn chdir(&self, path: &Path) -> nix::Result<()> {
        self.record(Call::Chdir(path.to_path_buf()))
    }

    fn chroot(&self, path: &Path) -> nix::Result<()> {
        self.record(Call::Chroot(path.to_path_buf()))
    }

    fn execve(&self, path: &Path, argv: &[CString], env: &[CString]) -> Errno {
        let (path, argv, env) = (path.to_path_buf(), argv.to_vec(), env.to_vec());
        self.record(Call::Execve { path, argv, env })
            .err()
            .unwrap_or(Errno::ENOSYS)
    }

    fn finit_module(&self, path: &Path) -> nix::Result<()> {
        self.record(Call::FinitModule(path.to_path_buf()))
    }

    fn sethostname(&self, name: &str) -> nix::Result<()> {
        self.record(Call::SetHostname(name.to_owned()))?;
        *self.hostname.lock().unwrap() = name.to_owned();
        Ok(())
    }

    fn gethostname(&self) -> nix::Result<String> {
        Ok(self.hostname.lock().unwrap().clone())
    }

    fn interface_addresses(&self) -> nix::Result<Vec<String>> {
        Ok(vec!["lo 127.0.0.1/8".to_owned(), "lo ::1/128".to_owned()])
    }

    fn set_nofile_limit(&self, limit: u64) -> nix::Result<()> {
        self.record(Call::SetNofileLimit(limit))
    }

    fn set_cad_enabled(&self, enabled: bool) -> nix::Result<()> {
        self.record(Call::SetCadEnabled(enabled))
    }

    fn sync(&self) {
        let _ = self.record(Call::Sync);
    }

    fn reboot(&self, mode: RebootMode) -> Errno {
        self.record(Call::Reboot(mode))
            .err()
            .unwrap_or(Errno::ENOSYS)
    }

    fn wait_any(&self) -> nix::Result<WaitStatus> {
        self.record(Call::WaitAny)?;
        self.waits
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Err(Errno::ECHILD))
    }

    fn unmount(&self, target: &Path, flags: MntFlags) -> nix::Result<()> {
        self.record(Call::Unmount(target.to_path_buf(), flags))
    }

    fn kill_all(&self, signal: Signal) -> nix::Result<()> {
        self.record(Call::KillAll(signal))
    }

    fn reread_partitions(&self, disk: &Path) -> nix::Result<()> {
        self.record(Call::RereadPartitions(disk.to_path_buf()))
    }

    fn run_tool(&self, binary: &Path, args: &[&OsStr]) -> io::Result<Output> {
        let args = args.iter().map(|a| a.to_os_string()).collect();
        self.record(Call::RunTool {
            binary: binary.to_path_buf(),
            args,
        })?;
        let code = self.tool_exits.lock().unwrap().pop_front().unwrap_or(0);
        Ok(Output {
            // wait(2) status: the exit code sits in the second byte.
            status: ExitStatus::from_raw(code << 8),
            stdout: Vec::new(),
            stderr: Vec::new(),
        })
    }
}
