//! Step 7: the main loop of PID 1 — reap children, wait for a power request.
//!
//! It runs on a tokio runtime (started here, after the re-exec, so no threads or
//! signal handlers exist when the root moves) because later steps add a supervisor and
//! a gRPC server to the same loop. The runtime is single-threaded for now.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use nix::sys::signal::Signal;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::power::{action_for_signal, PowerAction, POWER_SIGNALS};
use crate::reaper::Reaper;
use crate::syscall::Syscall;

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

/// Runs the loop until a power request arrives.
pub fn serve(
    sys: Arc<dyn Syscall>,
    reaper: Arc<Mutex<Reaper>>,
) -> Result<ShutdownRequest, LoopError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(LoopError::Runtime)?
        .block_on(main_loop(sys, reaper))
}

async fn main_loop(
    sys: Arc<dyn Syscall>,
    reaper: Arc<Mutex<Reaper>>,
) -> Result<ShutdownRequest, LoopError> {
    let mut children =
        signal(SignalKind::child()).map_err(|e| LoopError::Signal(Signal::SIGCHLD, e))?;
    let mut requests = power_requests()?;
    // Only now that SIGINT has a handler: from here ctrl-alt-del arrives as SIGINT
    // (reboot(2), LINUX_REBOOT_CMD_CAD_OFF) instead of an immediate kernel restart.
    // Not fatal: without it ctrl-alt-del still stops the node, only less cleanly.
    if let Err(errno) = sys.set_cad_enabled(false) {
        tracing::warn!("failed to disable the kernel's ctrl-alt-del reboot: {errno}");
    }
    // Children may have exited before the SIGCHLD handler existed.
    reap(&*sys, &reaper);
    loop {
        tokio::select! {
            Some(signal) = requests.recv() => {
                if let Some(action) = action_for_signal(signal) {
                    tracing::info!("{signal} received: {action}");
                    return Ok(ShutdownRequest { action, signal });
                }
            }
            Some(()) = children.recv() => reap(&*sys, &reaper),
            else => return Err(LoopError::SignalsClosed),
        }
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
