//! The watcher of a detached node: a small process (`cairn-qemu watch`) that starts the
//! node's QEMU again after each guest reboot ([`crate::relaunch`]), since the launcher
//! that started it has returned.
//!
//! `run --detach` and `cluster start` start one per node once it is ready; it runs in a
//! session of its own, records its pid in `watch.pid` and logs to `watch.log` in the
//! state dir. It polls the recorded QEMU; when that is gone it relaunches it if the
//! guest rebooted, else it ends (the node powered off, was killed or stopped).
//! `cairn-qemu stop` ends the watcher first (SIGTERM; it finishes a relaunch it has
//! begun, so the pid it leaves in `qemu.pid` is the running QEMU's), then stops QEMU.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::process::{
    kill_group, spawn_detached, wait_until, ProcessError, QemuProcess, SpawnMode,
};
use crate::relaunch::{self, RelaunchError};
use crate::state::{live_cmdline, remove_if_exists, write_atomic, StateDir, StateError};

/// The watcher's pid file in the state dir.
pub const PID_FILE: &str = "watch.pid";
/// The watcher's log in the state dir.
pub const LOG_FILE: &str = "watch.log";
/// The watcher's subcommand of `cairn-qemu`.
pub const SUBCOMMAND: &str = "watch";
/// How often the watcher looks at QEMU.
const POLL: Duration = Duration::from_millis(100);
/// How long a watcher may take to end after SIGTERM before it is killed.
const TERM_GRACE: Duration = Duration::from_secs(5);

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The state dir could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// The node's QEMU could not be started again.
    #[error(transparent)]
    Relaunch(#[from] RelaunchError),
    /// The watcher process could not be started.
    #[error("cannot start the watcher {0}")]
    Spawn(PathBuf, #[source] io::Error),
    /// Signalling the watcher failed.
    #[error(transparent)]
    Signal(#[from] ProcessError),
    /// The watcher survived SIGKILL.
    #[error("the watcher (pid {0}) is still running after SIGKILL")]
    Unkillable(u32),
}

/// Starts `exe watch --state-dir STATE` in a session of its own and records its pid.
pub fn spawn(exe: &Path, state: &StateDir) -> Result<u32, WatchError> {
    let root = std::path::absolute(state.root()).unwrap_or_else(|_| state.root().to_owned());
    let log_path = state.root().join(LOG_FILE);
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| StateError::Write(log_path, e))?;
    let mut command = Command::new(exe);
    command
        .arg(SUBCOMMAND)
        .arg("--state-dir")
        .arg(&root)
        .stdin(Stdio::null())
        .stdout(
            log.try_clone()
                .map_err(|e| WatchError::Spawn(exe.to_owned(), e))?,
        )
        .stderr(log);
    let child = spawn_detached(command).map_err(|e| WatchError::Spawn(exe.to_owned(), e))?;
    let pid = child.id();
    let path = state.root().join(PID_FILE);
    write_atomic(&path, format!("{pid}\n").as_bytes())?;
    Ok(pid)
}

/// The watcher's loop: until `stop` is set or the node ends for good.
pub fn run(state: &StateDir, stop: &AtomicBool) -> Result<(), WatchError> {
    // The QEMU this watcher started, to reap it (the first one is the launcher's).
    let mut own: Option<QemuProcess> = None;
    loop {
        if stop.load(Ordering::SeqCst) {
            tracing::info!("asked to stop; qemu is left as it is");
            return Ok(());
        }
        if state.running_pid()?.is_some() {
            thread::sleep(POLL);
            continue;
        }
        let status = match own.as_mut() {
            Some(process) => process.try_wait().map_err(RelaunchError::from)?,
            None => None,
        };
        if stop.load(Ordering::SeqCst) || !relaunch::wanted(state, status)? {
            tracing::info!(
                ?status,
                "qemu ended and the guest did not reboot; watch ends"
            );
            return Ok(());
        }
        let mut process = relaunch::relaunch(state, SpawnMode::Detached)?;
        process.disarm();
        own = Some(process);
    }
}

/// Ends the watcher recorded in `state`, if one runs: SIGTERM, then SIGKILL after a
/// grace period. Returns its pid if there was one.
pub fn end(state: &StateDir) -> Result<Option<u32>, WatchError> {
    let pid_file = state.root().join(PID_FILE);
    let Some(pid) = running(state) else {
        remove_if_exists(&pid_file)?;
        return Ok(None);
    };
    // The watcher leads a session, hence a process group, of its own; each QEMU it
    // started has its own session too, so these signals reach only the watcher.
    let gone = || !is_watcher(Path::new("/proc"), pid, state.root());
    kill_group(pid, Signal::SIGTERM)?;
    if !wait_until(TERM_GRACE, gone) {
        tracing::warn!(pid, "watcher still running after SIGTERM; killing it");
        kill_group(pid, Signal::SIGKILL)?;
        if !wait_until(TERM_GRACE, gone) {
            return Err(WatchError::Unkillable(pid));
        }
    }
    remove_if_exists(&pid_file)?;
    Ok(Some(pid))
}

/// The recorded watcher's pid while that process is alive and watches `state`.
pub fn running(state: &StateDir) -> Option<u32> {
    let text = fs::read_to_string(state.root().join(PID_FILE)).ok()?;
    let pid = text.trim().parse::<u32>().ok()?;
    is_watcher(Path::new("/proc"), pid, state.root()).then_some(pid)
}

/// Whether `pid` under `proc_root` is alive (not a zombie) and is a watcher of `root`:
/// its arguments hold [`SUBCOMMAND`] and `root` made absolute, as [`spawn`] passes it.
pub fn is_watcher(proc_root: &Path, pid: u32, root: &Path) -> bool {
    let Some(cmdline) = live_cmdline(proc_root, pid) else {
        return false;
    };
    let absolute = std::path::absolute(root).unwrap_or_else(|_| root.to_owned());
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    args.contains(&SUBCOMMAND.as_bytes()) && args.contains(&absolute.as_os_str().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watcher_is_known_by_its_subcommand_and_state_dir() {
        let proc_root = tempfile::tempdir().unwrap();
        let process = |pid: u32, state: char, args: &[&str]| {
            let dir = proc_root.path().join(pid.to_string());
            fs::create_dir_all(&dir).unwrap();
            fs::write(
                dir.join("stat"),
                format!("{pid} (cairn-qemu) {state} 1 2 3"),
            )
            .unwrap();
            fs::write(dir.join("cmdline"), args.join("\0") + "\0").unwrap();
        };
        let root = Path::new("/nodes/a");
        process(10, 'S', &["cairn-qemu", "watch", "--state-dir", "/nodes/a"]);
        process(11, 'Z', &["cairn-qemu", "watch", "--state-dir", "/nodes/a"]);
        process(
            12,
            'S',
            &["cairn-qemu", "watch", "--state-dir", "/nodes/ab"],
        );
        // QEMU names a path under the state dir, never the dir itself as an argument.
        process(
            13,
            'S',
            &["qemu", "-chardev", "socket,path=/nodes/a/qmp.sock"],
        );
        process(14, 'S', &["cairn-qemu", "run", "--state-dir", "/nodes/a"]);
        assert!(is_watcher(proc_root.path(), 10, root));
        for pid in [11, 12, 13, 14, 15] {
            assert!(!is_watcher(proc_root.path(), pid, root), "pid {pid}");
        }
    }

    #[test]
    fn ending_no_watcher_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        fs::write(dir.path().join(PID_FILE), "1\n").unwrap();
        assert_eq!(end(&state).unwrap(), None);
        assert!(!dir.path().join(PID_FILE).exists());
    }
}
