//! `cairn-qemu watch` (hidden): the watcher of a detached node, started by `run
//! --detach` and `cluster start` ([`cairn_qemu::watch`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use cairn_qemu::{watch, StateDir};
use clap::Args;

use super::CommandError;

/// Arguments of `watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// State directory of the node to watch.
    #[arg(long)]
    state_dir: PathBuf,
}

pub fn run(args: WatchArgs) -> Result<ExitCode, CommandError> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).map_err(CommandError::Signals)?;
    }
    let state = StateDir::new(&args.state_dir);
    tracing::info!(state_dir = %args.state_dir.display(), "watching the node");
    watch::run(&state, &stop).map_err(|e| CommandError::Watch(args.state_dir.clone(), e))?;
    Ok(ExitCode::SUCCESS)
}

/// Starts the watcher of the detached node in `state`: this same binary, `watch`.
/// Without it a guest reboot ends the node, so a failure is said, not fatal.
pub fn start_watcher(state: &StateDir) {
    let started = std::env::current_exe()
        .map_err(|e| cairn_qemu::watch::WatchError::Spawn(PathBuf::from("/proc/self/exe"), e))
        .and_then(|exe| watch::spawn(&exe, state));
    match started {
        Ok(pid) => tracing::debug!(pid, "watcher started"),
        Err(err) => tracing::warn!(
            error = %cairn_api::error_chain(&err),
            "no watcher: a guest reboot will end this node (`cairn-qemu stop`, then start it again)"
        ),
    }
}
