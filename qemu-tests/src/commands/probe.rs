//! `cairn-qemu probe`: run the KVM probe and say what `--accel auto` would use.

use std::path::PathBuf;
use std::process::ExitCode;

use cairn_qemu::accel::{self, PROBE_TIMEOUT};
use cairn_qemu::image::{ImageError, DEFAULT_IMAGE_DIR};
use clap::Args;

use super::{dir_or_default, CommandError};

/// Arguments of `probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Image directory whose `vmlinuz` boots in the probe.
    #[arg(long, env = "CAIRN_IMAGE_DIR")]
    image_dir: Option<PathBuf>,
    /// Probe with this kernel instead of the image's.
    #[arg(long)]
    kernel: Option<PathBuf>,
}

pub fn run(args: ProbeArgs) -> Result<ExitCode, CommandError> {
    let kernel = args
        .kernel
        .unwrap_or_else(|| dir_or_default(args.image_dir, DEFAULT_IMAGE_DIR).join("vmlinuz"));
    if !kernel.exists() {
        return Err(ImageError::Missing(kernel).into());
    }
    let probe = accel::probe(&kernel, PROBE_TIMEOUT);
    println!(
        "auto picks {}: {} (probe took {:.1}s)",
        probe.accel,
        probe.reason,
        probe.elapsed.as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
