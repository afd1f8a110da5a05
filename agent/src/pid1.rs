//! The PID 1 duties that run for the node's whole life: reap every child, and turn the
//! power signals into a shutdown request.
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

/// A shutdown the host asked for, by signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownRequest {
    pub action: PowerAction,
    pub signal: Signal,
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
    requests: mpsc::Receiver<Signal>,
}

impl Pid1 {
    /// Installs the SIGCHLD and power-signal handlers and starts the reaper task. Call
    /// it inside the runtime before anything spawns a child.
    pub fn start(sys: Arc<dyn Syscall>, reaper: Arc<Mutex<Reaper>>) -> Result<Self, LoopError> {
        let mut children =
            signal(SignalKind::child()).map_err(|e| LoopError::Signal(Signal::SIGCHLD, e))?;
        let requests = power_requests()?;
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
        Ok(Self { requests })
    }

    /// Waits for a power request.
    pub async fn shutdown_request(&mut self) -> Result<ShutdownRequest, LoopError> {
        while let Some(signal) = self.requests.recv().await {
            if let Some(action) = action_for_signal(signal) {
                tracing::info!("{signal} received: {action}");
                return Ok(ShutdownRequest { action, signal });
            }
        }
        Err(LoopError::SignalsClosed)
    }
}

/// One stream of every power signal: a forwarding task per signal.
fn power_requests() -> Result<mpsc::Receiver<Signal>, LoopError> {
    let (sender, receiver) = mpsc::channel(POWER_SIGNALS.len());
    for sig in POWER_SIGNALS {
        let mut stream =
            signal(SignalKind::from_raw(sig as i32)).map_err(|e| LoopError::Signal(sig, e))?;
        let sender = sender.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if sender.send(sig).await.is_err() {
                    break;
                }
            }
        });
    }
    Ok(receiver)
}

fn reap(sys: &dyn Syscall, reaper: &Mutex<Reaper>) {
    // A panic elsewhere while holding the lock powers the node off; the data stays usable.
    let mut reaper = reaper.lock().unwrap_or_else(PoisonError::into_inner);
    reaper.reap(sys);
}
