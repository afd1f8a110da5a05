//! Foreground supervision: echo the console, notice readiness, turn signals into a clean
//! stop, and report how the guest ended.
//!
//! The launcher's SIGINT/SIGTERM arrive as a flag (set by the binary's signal handler).
//! The first one presses ctrl-alt-delete and gives the guest `stop_timeout` to end; a
//! second one, or the deadline, kills QEMU's process group. Readiness has a deadline too,
//! so an unattended run (CI) never hangs on a guest that stopped making progress.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::console::{self, ConsoleError, ConsoleReader, ReadyInfo};
use crate::node::{error_chain, Exited, Node, NodeError, TAIL_LINES};
use crate::process::POLL_INTERVAL;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// Managing QEMU failed.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The console could not be read or parsed.
    #[error("cannot follow the console")]
    Console(#[from] ConsoleError),
    /// Echoing the console failed.
    #[error("cannot write the console to the output")]
    Output(#[source] io::Error),
    /// The guest did not print `CAIRN_READY` in time; QEMU was killed.
    #[error("no CAIRN_READY line within {timeout:?}; qemu killed\n--- console tail ---\n{tail}")]
    NotReady {
        /// The readiness deadline.
        timeout: Duration,
        /// The console tail.
        tail: String,
    },
}

/// Deadlines of a foreground run.
#[derive(Debug, Clone, Copy)]
pub struct AttachOptions {
    /// How long the guest may take to print `CAIRN_READY`.
    pub ready_timeout: Duration,
    /// How long the guest may take to end after ctrl-alt-delete.
    pub stop_timeout: Duration,
}

/// Runs `node` to its end, echoing the console to `out`. `on_ready` is called once, when
/// `CAIRN_READY` appears; `stop` is the signal flag (cleared when consumed).
pub fn supervise(
    node: &mut Node,
    options: AttachOptions,
    stop: &AtomicBool,
    out: &mut dyn Write,
    mut on_ready: impl FnMut(&Node, &ReadyInfo),
) -> Result<Exited, AttachError> {
    let ready_deadline = Instant::now() + options.ready_timeout;
    let mut echo = ConsoleReader::new(node.console_log());
    let mut lines = ConsoleReader::new(node.console_log());
    let mut ready = false;
    let mut stop_deadline: Option<Instant> = None;
    loop {
        let status = node.try_wait()?;
        let bytes = echo.new_bytes()?;
        out.write_all(&bytes)
            .and_then(|()| out.flush())
            .map_err(AttachError::Output)?;
        if status.is_some() {
            return Ok(node.wait_exit(Duration::ZERO)?);
        }
        if !ready {
            if let Some(info) = find_ready(&mut lines)? {
                ready = true;
                node.record_ready(&info)?;
                on_ready(node, &info);
            } else if Instant::now() >= ready_deadline {
                node.kill()?;
                let tail = node.console_tail(TAIL_LINES);
                return Err(AttachError::NotReady {
                    timeout: options.ready_timeout,
                    tail,
                });
            }
        }
        if stop.swap(false, Ordering::SeqCst) {
            stop_deadline = handle_signal(node, stop_deadline, options.stop_timeout)?;
        }
        if stop_deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            tracing::warn!("guest still running after ctrl-alt-delete; killing qemu");
            node.kill()?;
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// First signal: request a clean stop and return its deadline. Later ones: kill.
fn handle_signal(
    node: &mut Node,
    stop_deadline: Option<Instant>,
    stop_timeout: Duration,
) -> Result<Option<Instant>, NodeError> {
    if stop_deadline.is_some() {
        tracing::warn!("second stop request; killing qemu");
        node.kill()?;
        return Ok(stop_deadline);
    }
    tracing::info!("stopping the guest (ctrl-alt-delete)");
    if let Err(err) = node.request_stop() {
        tracing::warn!(error = %error_chain(&err), "clean stop impossible; killing qemu");
        node.kill()?;
    }
    Ok(Some(Instant::now() + stop_timeout))
}

fn find_ready(lines: &mut ConsoleReader) -> Result<Option<ReadyInfo>, ConsoleError> {
    for line in lines.new_lines()? {
        if let Some(ready) = console::parse_ready(&line) {
            return ready.map(Some);
        }
    }
    Ok(None)
}
