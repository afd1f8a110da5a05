//! The agent's [`Supervisor`] as the debug service's [`ComponentSource`].

use cairn_api::validate::DebugSignal;
use nix::errno::Errno;

use super::components::{
    to_nix, ComponentSource, ComponentState, ComponentStatus, LastExit, SignalError,
};
use crate::supervisor::{self, ServiceState, ServiceStatus, Supervisor};

impl ComponentSource for Supervisor {
    fn list(&self) -> Vec<ComponentStatus> {
        self.status().into_iter().map(component).collect()
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

fn component(status: ServiceStatus) -> ComponentStatus {
    ComponentStatus {
        state: state(status.state),
        name: status.name,
        since: status.since,
        pid: status.pid,
        restarts: status.restarts,
        last_exit: status.last_exit.map(|exit| match exit {
            supervisor::LastExit::Code(code) => LastExit::Code(code),
            supervisor::LastExit::Signal(signal) => LastExit::Signal(signal),
        }),
    }
}

fn state(state: ServiceState) -> ComponentState {
    match state {
        ServiceState::WaitingForDependencies { missing } => ComponentState::Waiting { missing },
        ServiceState::Starting => ComponentState::Starting,
        ServiceState::Running => ComponentState::Running,
        ServiceState::Ready => ComponentState::Ready,
        ServiceState::Backoff { until } => ComponentState::Backoff { until },
        ServiceState::Failed { reason } => ComponentState::Failed { reason },
        ServiceState::Stopping => ComponentState::Stopping,
        ServiceState::Stopped => ComponentState::Stopped,
    }
}
