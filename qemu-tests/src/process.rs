//! The QEMU process: spawning, waiting with a deadline, and killing its process group.
//!
//! QEMU always runs in a process group of its own, so a terminal's Ctrl-C reaches only the
//! launcher (which then stops the guest cleanly) and a kill reaches everything QEMU
//! started. Two modes:
//! - attached: the launcher owns QEMU. [`QemuProcess`]'s `Drop` kills the group, and
//!   `PR_SET_PDEATHSIG` kills QEMU if the launcher dies without dropping it (a panicking
//!   test, SIGKILL). The parent-death signal fires when the *thread* that forked exits,
//!   so attached QEMUs are forked by one keeper thread that lives as long as the process
//!   (see prctl(2), `PR_SET_PDEATHSIG`).
//! - detached: QEMU gets its own session (setsid(2)) and outlives the launcher.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::command::QemuCommand;

/// How often waits poll the process and the console log.
pub const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// QEMU's stderr log could not be created.
    #[error("cannot create qemu log {0}")]
    Log(PathBuf, #[source] io::Error),
    /// QEMU could not be started.
    #[error("cannot start {0}")]
    Spawn(PathBuf, #[source] io::Error),
    /// Waiting for QEMU failed.
    #[error("cannot wait for qemu (pid {0})")]
    Wait(u32, #[source] io::Error),
    /// Signalling QEMU's process group failed.
    #[error("cannot send {signal} to qemu process group {pid}")]
    Signal {
        /// The process group.
        pid: u32,
        /// The signal.
        signal: Signal,
        /// The error.
        #[source]
        source: nix::Error,
    },
}

/// Whether QEMU belongs to the launcher or outlives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnMode {
    /// Killed when the handle drops or the launcher process dies.
    Attached,
    /// In a session of its own; survives the launcher.
    Detached,
}

/// A running (or finished) QEMU.
#[derive(Debug)]
pub struct QemuProcess {
    child: Child,
    pid: u32,
    status: Option<ExitStatus>,
    armed: bool,
}

impl QemuProcess {
    /// Starts `qemu` with stdin and stdout on /dev/null and stderr appended to `stderr_log`.
    pub fn spawn(
        qemu: &QemuCommand,
        stderr_log: &Path,
        mode: SpawnMode,
    ) -> Result<Self, ProcessError> {
        let log = open_log(stderr_log)?;
        let mut command = qemu.to_command();
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        tracing::debug!(?command, ?mode, "starting qemu");
        let child = match mode {
            SpawnMode::Attached => spawn_attached(command),
            SpawnMode::Detached => spawn_detached(command),
        }
        .map_err(|e| ProcessError::Spawn(qemu.binary.clone(), e))?;
        let pid = child.id();
        Ok(QemuProcess {
            child,
            pid,
            status: None,
            armed: true,
        })
    }

    /// QEMU's pid, which is also its process group id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The exit status if QEMU has ended.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, ProcessError> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .map_err(|e| ProcessError::Wait(self.pid, e))?;
        }
        Ok(self.status)
    }

    /// Waits up to `timeout` for QEMU to end; `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, ProcessError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// SIGKILLs the process group and reaps QEMU.
    pub fn kill(&mut self) -> Result<ExitStatus, ProcessError> {
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        kill_group(self.pid, Signal::SIGKILL)?;
        let status = self
            .child
            .wait()
            .map_err(|e| ProcessError::Wait(self.pid, e))?;
        self.status = Some(status);
        Ok(status)
    }

    /// Gives up ownership: dropping the handle no longer kills QEMU (detached nodes).
    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for QemuProcess {
    fn drop(&mut self) {
        if self.armed {
            if let Err(err) = self.kill() {
                tracing::warn!(pid = self.pid, error = %err, "cannot kill qemu");
            }
        }
    }
}

/// Sends `signal` to the process group `pid`; a group that is already gone is fine.
pub fn kill_group(pid: u32, signal: Signal) -> Result<(), ProcessError> {
    let group = Pid::from_raw(i32::try_from(pid).expect("pids fit in i32"));
    match killpg(group, signal) {
        Ok(()) | Err(nix::Error::ESRCH) => Ok(()),
        Err(source) => Err(ProcessError::Signal {
            pid,
            signal,
            source,
        }),
    }
}

/// Polls `done` every [`POLL_INTERVAL`] until it holds (true) or `timeout` has passed
/// (false).
pub(crate) fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL_INTERVAL);
    }
}

fn open_log(path: &Path) -> Result<File, ProcessError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| ProcessError::Log(path.to_owned(), e))
}

/// Spawns `command` in a process group of its own, killed (SIGKILL) when this process
/// dies: QEMU in attached mode, and the test registry, which a test's `static` never
/// drops.
pub(crate) fn spawn_attached(mut command: std::process::Command) -> io::Result<Child> {
    let launcher = nix::unistd::getpid();
    command.process_group(0);
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe calls are sound (another thread may have held the allocator's
    // lock at fork time). It calls only prctl(2) and getppid(2), both async-signal-safe,
    // and touches no locks. Its errors are raw errnos: `From<Errno> for io::Error` and
    // `from_raw_os_error` store the number inline and allocate nothing. std then writes
    // that errno to the parent over its close-on-exec pipe and calls _exit(2), so a
    // message would never have reached the parent anyway.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            // The launcher may have died before prctl took effect: ESRCH, "no such
            // process", is what the (absent) parent would read.
            if nix::unistd::getppid() != launcher {
                return Err(io::Error::from(nix::errno::Errno::ESRCH));
            }
            Ok(())
        });
    }
    on_keeper_thread(Box::new(move || command.spawn()))
}

/// Spawns `command` in a session of its own (setsid(2)): it outlives this process.
pub(crate) fn spawn_detached(mut command: std::process::Command) -> io::Result<Child> {
    // SAFETY: the closure runs between fork and exec and calls only setsid(2), which is
    // async-signal-safe; it touches no locks, and its error (an errno converted by
    // `From<Errno> for io::Error`) is stored inline, so it allocates nothing.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid()?;
            Ok(())
        });
    }
    command.spawn()
}

type SpawnJob = Box<dyn FnOnce() -> io::Result<Child> + Send>;
type SpawnRequest = (SpawnJob, mpsc::Sender<io::Result<Child>>);

/// Runs `job` on the keeper thread, which never exits before the process does.
fn on_keeper_thread(job: SpawnJob) -> io::Result<Child> {
    static KEEPER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    let keeper = KEEPER.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<SpawnRequest>();
        thread::Builder::new()
            .name("qemu-keeper".to_owned())
            .spawn(move || {
                for (job, reply) in receiver {
                    // A requester that gave up must not leave an unowned QEMU behind.
                    if let Err(mpsc::SendError(Ok(mut child))) = reply.send(job()) {
                        let _ = child.kill();
                        let _ = child.wait();
                    }
                }
            })
            .expect("cannot start the qemu keeper thread");
        sender
    });
    let (reply, result) = mpsc::channel();
    let gone = || io::Error::other("qemu keeper thread is gone");
    keeper.send((job, reply)).map_err(|_| gone())?;
    result.recv().map_err(|_| gone())?
}
