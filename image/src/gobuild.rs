//! `go` components: binaries built by `third_party/build.sh` (containerd, runc, the
//! CNI plugins) from the pinned Go modules under `third_party/`.
//!
//! The script owns the Go build (flags, reproducibility, skipping when its inputs are
//! unchanged); the builder only runs it once per image build, into `<cache>/go-out`,
//! and takes the files it names from there.

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum GoError {
    #[error("cannot run {}", script.display())]
    Spawn {
        script: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} failed with {status} (see its output above)", script.display())]
    Failed {
        script: PathBuf,
        status: std::process::ExitStatus,
    },
}

/// The build script, relative to the workspace root.
pub const BUILD_SCRIPT: &str = "third_party/build.sh";

/// Runs the Go build for the workspace at `workspace` into `out` and returns `out`.
pub fn build(workspace: &Path, out: &Path) -> Result<PathBuf, GoError> {
    let script = workspace.join(BUILD_SCRIPT);
    let status = Command::new("bash")
        .arg(&script)
        .arg(out)
        .current_dir(workspace)
        // Progress lines go to our stderr, keeping stdout for the image digest.
        .stdout(std::process::Stdio::from(std::io::stderr()))
        .status()
        .map_err(|source| GoError::Spawn {
            script: script.clone(),
            source,
        })?;
    if !status.success() {
        return Err(GoError::Failed { script, status });
    }
    Ok(out.to_owned())
}
