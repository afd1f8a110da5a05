//! What the debug service needs from the supervisor: the status of every service and a
//! way to signal one.
//!
//! The server depends on this small trait rather than on the supervisor itself, so its
//! tests run against a fake; it reports the supervisor's own status and error types.

use std::fmt;

use cairn_api::validate::DebugSignal;
use nix::errno::Errno;
use nix::sys::signal::Signal;

use crate::supervisor::Supervisor;
pub use crate::supervisor::{LastExit, ServiceState, ServiceStatus, SignalError};

/// The supervisor, as seen by the debug service.
pub trait ServiceSource: Send + Sync + fmt::Debug {
    /// Every supervised service, in the supervisor's order.
    fn list(&self) -> Vec<ServiceStatus>;

    /// Sends `signal` to the service's process and returns its pid.
    ///
    /// The default looks the pid up in [`ServiceSource::list`] and calls kill(2). A
    /// supervisor that can signal under its own lock (so the pid cannot be reaped and
    /// reused in between) should override it.
    fn signal(&self, service: &str, signal: DebugSignal) -> Result<u32, SignalError> {
        let status = self
            .list()
            .into_iter()
            .find(|s| s.name == service)
            .ok_or_else(|| SignalError::Unknown(service.to_owned()))?;
        let pid = status
            .pid
            .filter(|&pid| pid > 1)
            .ok_or_else(|| SignalError::NotRunning(service.to_owned()))?;
        kill(pid, signal).map_err(|errno| match errno {
            Errno::ESRCH => SignalError::NotRunning(service.to_owned()),
            errno => SignalError::Kill {
                service: service.to_owned(),
                pid,
                signal: to_nix(signal),
                errno,
            },
        })?;
        Ok(pid)
    }
}

impl ServiceSource for Supervisor {
    fn list(&self) -> Vec<ServiceStatus> {
        self.status()
    }

    fn signal(&self, service: &str, signal: DebugSignal) -> Result<u32, SignalError> {
        Supervisor::signal(self, service, to_nix(signal))
    }
}

/// kill(2) with one of the allowed signals.
pub fn kill(pid: u32, signal: DebugSignal) -> Result<(), Errno> {
    let pid = i32::try_from(pid).map_err(|_| Errno::ESRCH)?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), to_nix(signal))
}

/// The allowlisted signal as nix knows it.
pub fn to_nix(signal: DebugSignal) -> Signal {
    match signal {
        DebugSignal::Term => Signal::SIGTERM,
        DebugSignal::Kill => Signal::SIGKILL,
        DebugSignal::Int => Signal::SIGINT,
        DebugSignal::Hup => Signal::SIGHUP,
        DebugSignal::Quit => Signal::SIGQUIT,
        DebugSignal::Usr1 => Signal::SIGUSR1,
        DebugSignal::Usr2 => Signal::SIGUSR2,
        DebugSignal::Stop => Signal::SIGSTOP,
        DebugSignal::Cont => Signal::SIGCONT,
    }
}

/// A node without a supervisor yet: no services, only the agent.
#[derive(Debug, Default)]
pub struct NoServices;

impl ServiceSource for NoServices {
    fn list(&self) -> Vec<ServiceStatus> {
        Vec::new()
    }
}
