//! Starting one run of a service: the command line, the spawn under the reaper's lock,
//! and the tasks that copy its stdout and stderr into its log buffer.

use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};

use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::unix::pipe;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::spec::{ServiceSpec, DEFAULT_PATH};
use crate::logbuf::{LineSplitter, LogBuffer, Stream, MAX_LINE};
use crate::reaper::{ExitStatus, Reaper};

/// Spawns a child and registers for its exit in one step, so that whoever reaps
/// children cannot take the exit before it is claimed (see [`crate::reaper`]).
pub trait ChildWatcher: Send + Sync + fmt::Debug {
    fn spawn_watched(
        &self,
        command: &mut Command,
    ) -> io::Result<(Child, oneshot::Receiver<ExitStatus>)>;
}

/// PID 1's reaper: spawn and watch while holding its lock, so its `waitpid(-1)` runs
/// either before the child exists or after the watch is registered.
impl ChildWatcher for Mutex<Reaper> {
    fn spawn_watched(
        &self,
        command: &mut Command,
    ) -> io::Result<(Child, oneshot::Receiver<ExitStatus>)> {
        let mut reaper = self.lock().unwrap_or_else(PoisonError::into_inner);
        let child = command.spawn()?;
        let exit = reaper.watch(pid_of(&child));
        Ok((child, exit))
    }
}

pub(super) fn pid_of(child: &Child) -> Pid {
    // Pids fit in i32 (pid_t); std hands them out as u32.
    Pid::from_raw(child.id() as i32)
}

/// Why a binary cannot be started at all; such a service is marked failed, not retried
/// (the image is immutable, so the binary will not appear later).
pub(super) fn check_executable(binary: &Path) -> Result<(), String> {
    let metadata = std::fs::metadata(binary)
        .map_err(|e| format!("binary {} is missing: {e}", binary.display()))?;
    if !metadata.is_file() {
        return Err(format!("binary {} is not a file", binary.display()));
    }
    if metadata.permissions().mode() & 0o111 == 0 {
        return Err(format!("binary {} is not executable", binary.display()));
    }
    Ok(())
}

/// The command for one run: clean environment, own session, stdout and stderr piped,
/// stdin from /dev/null.
pub(super) fn command(spec: &ServiceSpec) -> Command {
    let mut command = Command::new(&spec.binary);
    command
        .args(&spec.args)
        .env_clear()
        .current_dir(spec.working_dir.as_deref().unwrap_or(Path::new("/")))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if !spec.env.iter().any(|(key, _)| key == "PATH") {
        command.env("PATH", DEFAULT_PATH);
    }
    command.envs(spec.env.iter().map(|(k, v)| (k, v)));
    // SAFETY: the closure runs between fork and exec and only calls setsid(2), which is
    // async-signal-safe (signal-safety(7)); it allocates nothing and takes no locks.
    // Its own session makes the service a process group the supervisor can kill whole,
    // and detaches it from the console's job control.
    unsafe {
        command.pre_exec(|| nix::unistd::setsid().map(drop).map_err(io::Error::from));
    }
    command
}

/// Starts copying the child's stdout and stderr into `log`, one task per pipe; each
/// task ends at end of file (when every holder of the pipe's write end has exited).
pub(super) fn capture_output(child: &mut Child, log: &LogBuffer) -> Vec<JoinHandle<()>> {
    let pipes: [(Option<OwnedFd>, Stream); 2] = [
        (child.stdout.take().map(OwnedFd::from), Stream::Stdout),
        (child.stderr.take().map(OwnedFd::from), Stream::Stderr),
    ];
    let mut tasks = Vec::new();
    for (fd, stream) in pipes {
        let Some(fd) = fd else { continue };
        match pipe::Receiver::from_owned_fd(fd) {
            Ok(receiver) => tasks.push(tokio::spawn(copy_lines(receiver, stream, log.clone()))),
            Err(err) => {
                log.push(Stream::Agent, &format!("cannot read {stream}: {err}"));
            }
        }
    }
    tasks
}

async fn copy_lines(mut pipe: impl AsyncRead + Unpin, stream: Stream, log: LogBuffer) {
    let mut splitter = LineSplitter::new(MAX_LINE);
    let mut buf = vec![0; 16 << 10];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => splitter.feed(&buf[..n], |line| {
                log.push(stream, &line);
            }),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => {
                log.push(Stream::Agent, &format!("reading {stream} failed: {err}"));
                break;
            }
        }
    }
    if let Some(line) = splitter.finish() {
        log.push(stream, &line);
    }
}
