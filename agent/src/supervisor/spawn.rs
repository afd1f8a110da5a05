//! Starting one run of a service: the command line, the spawn under the reaper's lock,
//! and the tasks that copy its stdout and stderr into its log buffer.

use std::ffi::{CStr, CString};
use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
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
/// stdin from /dev/null, and the spec's cgroup (created here if missing) joined
/// before exec, so that nothing the service starts runs outside it. Fails only when
/// that cgroup cannot be created.
pub(super) fn command(spec: &ServiceSpec) -> io::Result<Command> {
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
    if let Some(dir) = &spec.cgroup {
        let procs = cgroup_procs(dir)?;
        // SAFETY: between fork and exec the closure only calls open(2), write(2) and
        // close(2), all async-signal-safe; the path was allocated before the fork.
        // Writing "0" to cgroup.procs moves the writing process (cgroups(7)).
        unsafe {
            command.pre_exec(move || join_cgroup(&procs));
        }
    }
    Ok(command)
}

/// `dir/cgroup.procs` as a C string, after creating `dir` if it is missing. Checked
/// here, where the error can name the cgroup: between fork and exec it cannot.
fn cgroup_procs(dir: &Path) -> io::Result<CString> {
    match std::fs::create_dir(dir) {
        Err(err) if err.kind() != io::ErrorKind::AlreadyExists => {
            return Err(io::Error::new(
                err.kind(),
                format!("cannot create cgroup {}: {err}", dir.display()),
            ));
        }
        _ => {}
    }
    let procs = dir.join("cgroup.procs");
    if !procs.exists() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} is not a cgroup: it has no cgroup.procs", dir.display()),
        ));
    }
    CString::new(procs.into_os_string().into_vec())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "cgroup path holds a NUL byte"))
}

fn join_cgroup(procs: &CStr) -> io::Result<()> {
    let fd = nix::fcntl::open(procs, OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty())?;
    nix::unistd::write(&fd, b"0")?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn in_cgroup(name: &str, dir: &Path) -> ServiceSpec {
        ServiceSpec {
            cgroup: Some(dir.to_owned()),
            ..ServiceSpec::new(name, "/bin/true")
        }
    }

    /// A plain directory stands in for the cgroup: what the child writes to its
    /// cgroup.procs before exec stays there to be read.
    #[test]
    fn each_run_joins_its_cgroup_before_exec() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("system/etcd");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cgroup.procs"), "").unwrap();
        let spec = in_cgroup("etcd", &dir);
        let status = command(&spec).unwrap().status().unwrap();
        assert!(status.success());
        assert_eq!(
            std::fs::read_to_string(dir.join("cgroup.procs")).unwrap(),
            "0"
        );
    }

    /// A missing cgroup is created; one that cannot be joined stops the run before
    /// exec instead of letting the service run outside it, with an error naming it
    /// where it can.
    #[test]
    fn a_cgroup_that_cannot_be_joined_stops_the_run() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("kubelet");
        let spec = in_cgroup("kubelet", &dir);
        // Created, but a plain directory has no cgroup.procs to write to.
        let err = command(&spec).unwrap_err();
        assert!(dir.is_dir());
        let expected = format!("{} is not a cgroup: it has no cgroup.procs", dir.display());
        assert_eq!(err.to_string(), expected);

        // The write itself failing (here: cgroup.procs is a directory) stops the run
        // between fork and exec.
        std::fs::create_dir(dir.join("cgroup.procs")).unwrap();
        let err = command(&spec).unwrap().status().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(nix::libc::EISDIR), "{err}");

        let spec = in_cgroup("kubelet", &root.path().join("a/b"));
        let err = command(&spec).unwrap_err();
        assert!(
            err.to_string().starts_with("cannot create cgroup "),
            "{err}"
        );
    }
}
