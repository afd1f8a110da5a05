//! What the debug service needs from the supervisor: the status of every component and
//! a way to signal one.
//!
//! The server depends on this small trait rather than on the supervisor itself, so its
//! tests run against a fake; it reports the supervisor's own status types.

use std::fmt;

use cairn_api::validate::DebugSignal;
use nix::errno::Errno;
use nix::sys::signal::Signal;

pub use crate::supervisor::{
    LastExit, ServiceState as ComponentState, ServiceStatus as ComponentStatus,
};

/// Why a signal was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignalError {
    #[error("unknown component {0}")]
    Unknown(String),
    #[error("component {0} has no running process")]
    NotRunning(String),
    #[error("kill({pid}, {signal}) for component {component} failed")]
    Kill {
        component: String,
        pid: u32,
        signal: DebugSignal,
        #[source]
        errno: Errno,
    },
}

/// The supervisor, as seen by the debug service.
pub trait ComponentSource: Send + Sync + fmt::Debug {
    /// Every supervised component, in the supervisor's order.
    fn list(&self) -> Vec<ComponentStatus>;

    /// Sends `signal` to the component's process and returns its pid.
    ///
    /// The default looks the pid up in [`ComponentSource::list`] and calls kill(2). A
    /// supervisor that can signal under its own lock (so the pid cannot be reaped and
    /// reused in between) should override it.
    fn signal(&self, component: &str, signal: DebugSignal) -> Result<u32, SignalError> {
        let status = self
            .list()
            .into_iter()
            .find(|c| c.name == component)
            .ok_or_else(|| SignalError::Unknown(component.to_owned()))?;
        let pid = status
            .pid
            .filter(|&pid| pid > 1)
            .ok_or_else(|| SignalError::NotRunning(component.to_owned()))?;
        kill(pid, signal).map_err(|errno| match errno {
            Errno::ESRCH => SignalError::NotRunning(component.to_owned()),
            errno => SignalError::Kill {
                component: component.to_owned(),
                pid,
                signal,
                errno,
            },
        })?;
        Ok(pid)
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

/// A node without a supervisor yet: no components besides the agent.
#[derive(Debug, Default)]
pub struct NoComponents;

impl ComponentSource for NoComponents {
    fn list(&self) -> Vec<ComponentStatus> {
        Vec::new()
    }
}
