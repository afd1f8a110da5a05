//! Stopping a node recorded in a state dir by another launcher (`cairn-qemu stop`).
//!
//! The node is not our child, so "ended" means its pid no longer names a live QEMU with
//! this state dir's QMP socket (see [`crate::state`]). Stopping is idempotent: no running
//! node is not an error.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::node::error_chain;
use crate::process::{kill_group, wait_until, ProcessError};
use crate::qmp::Qmp;
use crate::state::{is_our_qemu, StateDir, StateError};
use crate::watch::{self, WatchError};

/// How long a SIGKILLed QEMU may take to disappear.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// Timeout of each QMP read and write.
const QMP_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    /// The state dir could not be read or cleared.
    #[error(transparent)]
    State(#[from] StateError),
    /// Killing QEMU failed.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// The watcher could not be ended.
    #[error(transparent)]
    Watch(#[from] WatchError),
    /// QEMU survived SIGKILL.
    #[error("qemu (pid {0}) is still running {KILL_GRACE:?} after SIGKILL")]
    Unkillable(u32),
}

/// How a recorded node was stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordedStop {
    /// No node was running from the state dir.
    NotRunning,
    /// QEMU ended after ctrl-alt-delete.
    Clean(u32),
    /// QEMU was killed.
    Forced {
        /// Its pid.
        pid: u32,
        /// Why the clean stop did not work.
        why: String,
    },
}

/// Stops the node recorded in `state`: ends its watcher ([`crate::watch`]), then
/// ctrl-alt-delete (the agent reboots cleanly, which ends QEMU), up to `timeout` for
/// QEMU to end, then SIGKILL to its process group. Clears the pid files, records and
/// socket.
pub fn stop_recorded(state: &StateDir, timeout: Duration) -> Result<RecordedStop, StopError> {
    // First the watcher, so that it does not start QEMU again after the clean reboot.
    if let Some(watcher) = watch::end(state)? {
        tracing::debug!(pid = watcher, "watcher ended");
    }
    let Some(pid) = state.running_pid()? else {
        state.clear()?;
        return Ok(RecordedStop::NotRunning);
    };
    let socket = state.qmp_socket();
    let clean = Qmp::connect(&socket, QMP_TIMEOUT).and_then(|mut qmp| qmp.request_stop());
    let outcome = match clean {
        Ok(()) if wait_gone(state, pid, timeout) => RecordedStop::Clean(pid),
        Ok(()) => force(
            state,
            pid,
            format!("qemu still running {timeout:?} after ctrl-alt-delete"),
        )?,
        Err(err) => force(state, pid, error_chain(&err))?,
    };
    state.clear()?;
    Ok(outcome)
}

fn force(state: &StateDir, pid: u32, why: String) -> Result<RecordedStop, StopError> {
    tracing::warn!(pid, %why, "killing qemu");
    kill_group(pid, Signal::SIGKILL)?;
    if !wait_gone(state, pid, KILL_GRACE) {
        return Err(StopError::Unkillable(pid));
    }
    Ok(RecordedStop::Forced { pid, why })
}

fn wait_gone(state: &StateDir, pid: u32, timeout: Duration) -> bool {
    wait_until(timeout, || {
        !is_our_qemu(std::path::Path::new("/proc"), pid, &state.qmp_socket())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopping_an_empty_state_dir_is_fine_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        assert_eq!(
            stop_recorded(&state, Duration::ZERO).unwrap(),
            RecordedStop::NotRunning
        );
        std::fs::write(state.pid_file(), "1\n").unwrap();
        assert_eq!(
            stop_recorded(&state, Duration::ZERO).unwrap(),
            RecordedStop::NotRunning
        );
        assert!(!state.pid_file().exists());
    }
}
