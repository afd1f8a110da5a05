//! What the supervisor reports per service, for the debug service and tests.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::reaper::ExitStatus;

/// Where a service is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum ServiceState {
    /// Waiting for these dependency conditions to become true.
    WaitingForDependencies { missing: Vec<String> },
    /// Being spawned.
    Starting,
    /// Spawned; its readiness probe has not passed (yet, or any more).
    Running,
    /// Running and its probe passes (or it has none).
    Ready,
    /// Exited; restarts at `until` (since kernel start, CLOCK_BOOTTIME).
    Backoff { until: Duration },
    /// Will not be started again: its binary is missing or not executable.
    Failed { reason: String },
    /// Being stopped by the supervisor.
    Stopping,
    /// Stopped by the supervisor (shutdown).
    Stopped,
}

impl fmt::Display for ServiceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceState::WaitingForDependencies { missing } => {
                write!(f, "waiting for {}", missing.join(", "))
            }
            ServiceState::Starting => f.write_str("starting"),
            ServiceState::Running => f.write_str("running"),
            ServiceState::Ready => f.write_str("ready"),
            ServiceState::Backoff { until } => {
                write!(f, "backing off until {:.3}s", until.as_secs_f64())
            }
            ServiceState::Failed { reason } => write!(f, "failed: {reason}"),
            ServiceState::Stopping => f.write_str("stopping"),
            ServiceState::Stopped => f.write_str("stopped"),
        }
    }
}

/// How the last run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LastExit {
    /// exit(2) with this code.
    Code(i32),
    /// Killed by this signal number.
    Signal(i32),
}

impl From<ExitStatus> for LastExit {
    fn from(status: ExitStatus) -> Self {
        match status {
            ExitStatus::Exited(code) => LastExit::Code(code),
            ExitStatus::Signaled(signal) => LastExit::Signal(signal as i32),
        }
    }
}

impl fmt::Display for LastExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LastExit::Code(code) => write!(f, "exit code {code}"),
            LastExit::Signal(signal) => match nix::sys::signal::Signal::try_from(*signal) {
                Ok(signal) => write!(f, "killed by {signal}"),
                Err(_) => write!(f, "killed by signal {signal}"),
            },
        }
    }
}

/// One service's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceStatus {
    pub name: String,
    #[serde(flatten)]
    pub state: ServiceState,
    /// Since kernel start, when `state` was entered.
    pub since: Duration,
    /// The running process (also its process group and session).
    pub pid: Option<u32>,
    /// Times the service was started again after an exit.
    pub restarts: u32,
    pub last_exit: Option<LastExit>,
    /// Since kernel start, when the current (or, between runs, the last) process was
    /// spawned: with `exited`, the restart gap a back-off really left.
    pub started: Option<Duration>,
    /// Since kernel start, when the supervisor learnt of `last_exit`.
    pub exited: Option<Duration>,
}
