//! `go` components: binaries built by `third_party/build.sh` (containerd, runc, the
//! CNI plugins) from the pinned Go modules under `third_party/`.
//!
//! The script owns the Go build (flags, reproducibility, skipping when its inputs are
//! unchanged); the builder only runs it once per image build, into `<cache>/go-out`,
//! and takes the files it names from there. Two image builds at once (two checkouts,
//! `make image` and `make production-image` in parallel) share that directory, so the
//! script runs under an exclusive lock on `<out>/.lock`: the second waits for the
//! first, then finds everything up to date.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::fcntl::{Flock, FlockArg};

#[derive(Debug, thiserror::Error)]
pub enum GoError {
    #[error("cannot run {}", script.display())]
    Spawn {
        script: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot lock {}", .0.display())]
    Lock(PathBuf, #[source] std::io::Error),
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
    let _lock = lock(out)?;
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

/// Blocks until this process holds the output directory's lock; released on drop.
fn lock(out: &Path) -> Result<Flock<File>, GoError> {
    let path = out.join(".lock");
    let fail = |e: std::io::Error| GoError::Lock(path.clone(), e);
    fs::create_dir_all(out).map_err(fail)?;
    let file = File::create(&path).map_err(fail)?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(held) => Ok(held),
        Err((file, _busy)) => {
            eprintln!(
                "cairn-image: waiting for another Go build in {}",
                out.display()
            );
            Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| fail(errno.into()))
        }
    }
}
