//! The agent's [`Supervisor`] as the debug service's [`ComponentSource`].

use cairn_api::validate::DebugSignal;
use nix::errno::Errno;

use super::components::{to_nix, ComponentSource, ComponentStatus, SignalError};
use crate::supervisor::{self, Supervisor};

impl ComponentSource for Supervisor {
    fn list(&self) -> Vec<ComponentStatus> {
        self.status()
    }

    fn signal(&self, component: &str, signal: DebugSignal) -> Result<u32, SignalError> {
        Supervisor::signal(self, component, to_nix(signal)).map_err(|err| match err {
            supervisor::SignalError::UnknownService(name) => SignalError::Unknown(name),
            supervisor::SignalError::NotRunning(name) => SignalError::NotRunning(name),
            // Exited between the status read and kill(2): as good as not running.
            supervisor::SignalError::Kill(name, _, Errno::ESRCH) => SignalError::NotRunning(name),
            supervisor::SignalError::Kill(name, _, errno) => SignalError::Kill {
                pid: self.service(&name).and_then(|s| s.pid).unwrap_or_default(),
                component: name,
                signal,
                errno,
            },
        })
    }
}
