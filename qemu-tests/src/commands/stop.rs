//! `cairn-qemu stop`: stop the node recorded in a state dir; no node is not an error.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cairn_qemu::image::DEFAULT_STATE_DIR;
use cairn_qemu::stop::{stop_recorded, RecordedStop};
use cairn_qemu::StateDir;
use clap::Args;

use super::{dir_or_default, display_path, CommandError};

/// Arguments of `stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// State directory of the node.
    #[arg(long, env = "CAIRN_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Seconds the guest gets to end after ctrl-alt-delete before QEMU is killed.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

pub fn run(args: StopArgs) -> Result<ExitCode, CommandError> {
    let dir = dir_or_default(args.state_dir, DEFAULT_STATE_DIR);
    let state = StateDir::new(&dir);
    let outcome = stop_recorded(&state, Duration::from_secs(args.timeout))
        .map_err(|e| CommandError::Stop(dir.clone(), e))?;
    let dir = display_path(&dir);
    match outcome {
        RecordedStop::NotRunning => println!("no node running in {dir}"),
        RecordedStop::Clean(pid) => println!("stopped the node in {dir} (qemu pid {pid})"),
        RecordedStop::Forced { pid, why } => {
            println!("killed the node in {dir} (qemu pid {pid}): {why}")
        }
    }
    Ok(ExitCode::SUCCESS)
}
