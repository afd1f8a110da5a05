//! The PID 1 duties that run for the node's whole life: reap every child, and turn the
//! power signals (and power requests from the debug service) into a shutdown request.
//!
//! Both run on the agent's tokio runtime, started here after the re-exec (so no threads
//! or signal handlers exist when the root moves), together with the supervisor's
//! service tasks and the debug server. Two worker threads: the node has few CPUs, and a
//! slow task (a netlink call, a probe) must not hold up the reaper on a single thread.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use nix::sys::signal::Signal;
use tokio::runtime::Runtime;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::power::{action_for_signal, PowerAction, POWER_SIGNALS};
use crate::reaper::Reaper;
use crate::syscall::Syscall;

/// Worker threads of the agent's runtime.
pub const WORKERS: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    #[error("failed to start the async runtime")]
    Runtime(#[source] io::Error),
    #[error("failed to handle {0}")]
    Signal(Signal, #[source] io::Error),
    #[error("signal streams closed")]
    SignalsClosed,
}

/// A shutdown somebody asked for: by signal, or through the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownRequest {
    pub action: PowerAction,
    /// Who asked, for the `CAIRN_EXIT` line: the signal's name, or the API call.
    pub origin: String,
}

/// A handle that asks PID 1 to shut down, for callers other than signals.
#[derive(Debug, Clone)]
pub struct PowerRequester(mpsc::Sender<ShutdownRequest>);

impl PowerRequester {
    /// A requester and the receiving end, for callers that are not PID 1 (tests).
    pub fn channel() -> (Self, mpsc::Receiver<ShutdownRequest>) {
        let (sender, receiver) = mpsc::channel(REQUEST_QUEUE);
        (Self(sender), receiver)
    }

    /// Queues the request; the first request wins, later ones are ignored.
    pub fn request(&self, action: PowerAction, origin: impl Into<String>) {
        let request = ShutdownRequest {
            action,
            origin: origin.into(),
        };
        // Full or closed: a shutdown is already under way.
        let _ = self.0.try_send(request);
    }
}

/// The agent's runtime.
pub fn runtime() -> Result<Runtime, LoopError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .thread_name("cairn-agent")
        .enable_all()
        .build()
        .map_err(LoopError::Runtime)
}

/// The running PID 1 duties; [`Pid1::shutdown_request`] waits for the end.
#[derive(Debug)]
pub struct Pid1 {
    requests: mpsc::Receiver<ShutdownRequest>,
    requester: PowerRequester,
}

impl Pid1 {
    /// Installs the SIGCHLD and power-signal handlers and starts the reaper task. Call
    /// it inside the runtime before anything spawns a child.
    pub fn start(sys: Arc<dyn Syscall>, reaper: Arc<Mutex<Reaper>>) -> Result<Self, LoopError> {
        let mut children =
            signal(SignalKind::child()).map_err(|e| LoopError::Signal(Signal::SIGCHLD, e))?;
        let (sender, requests) = mpsc::channel(REQUEST_QUEUE);
        forward_power_signals(&sender)?;
        // Only now that SIGINT has a handler: from here ctrl-alt-del arrives as SIGINT
        // (reboot(2), LINUX_REBOOT_CMD_CAD_OFF) instead of an immediate kernel restart.
        // Not fatal: without it ctrl-alt-del still stops the node, only less cleanly.
        if let Err(errno) = sys.set_cad_enabled(false) {
            tracing::warn!("failed to disable the kernel's ctrl-alt-del reboot: {errno}");
        }
        tokio::spawn(async move {
            // Children may have exited before the SIGCHLD handler existed.
            reap(&*sys, &reaper);
            while children.recv().await.is_some() {
                reap(&*sys, &reaper);
            }
            tracing::error!("SIGCHLD stream ended: orphans are no longer reaped");
        });
        Ok(Self {
            requests,
            requester: PowerRequester(sender),
        })
    }

    /// A handle for the debug service's Shutdown call.
    pub fn requester(&self) -> PowerRequester {
        self.requester.clone()
    }

    /// Waits for a power request.
    pub async fn shutdown_request(&mut self) -> Result<ShutdownRequest, LoopError> {
        let request = self.requests.recv().await.ok_or(LoopError::SignalsClosed)?;
        tracing::info!("{} requested: {}", request.origin, request.action);
        Ok(request)
    }
}

/// Room for one request per power signal plus the API's.
const REQUEST_QUEUE: usize = POWER_SIGNALS.len() + 1;

/// A forwarding task per power signal, turning each into a [`ShutdownRequest`].
fn forward_power_signals(sender: &mpsc::Sender<ShutdownRequest>) -> Result<(), LoopError> {
    for sig in POWER_SIGNALS {
        let mut stream =
            signal(SignalKind::from_raw(sig as i32)).map_err(|e| LoopError::Signal(sig, e))?;
        let action = action_for_signal(sig).expect("power signals have actions");
        let requester = PowerRequester(sender.clone());
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                requester.request(action, sig.as_str());
            }
        });
    }
    Ok(())
}

fn reap(sys: &dyn Syscall, reaper: &Mutex<Reaper>) {
    // A panic elsewhere while holding the lock powers the node off; the data stays usable.
    let mut reaper = reaper.lock().unwrap_or_else(PoisonError::into_inner);
    reaper.reap(sys);
}
