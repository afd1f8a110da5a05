//! Boot step: leave the initramfs root.
//!
//! The kernel unpacks the initramfs into *rootfs*, the namespace's root mount, which can
//! never be unmounted or pivoted away from. runc's pivot_root(2) therefore fails with
//! EINVAL for every container ("pivot_root .: invalid argument", measured here).
//! Three ways out were measured (docs/architecture.md); this module takes option (c):
//!
//! 1. bind-mount `/` onto a directory inside it (mount(2) `MS_BIND`),
//! 2. chdir(2) into that directory and move the bind mount over `/` (`MS_MOVE`, i.e.
//!    `mount --move . /`),
//! 3. chroot(2) into `.` and chdir(2) to `/`,
//! 4. re-exec `/init` with the same argv plus the marker [`MARKER_ENV`], so the new
//!    process starts with its root, cwd and memory mappings all on the moved mount.
//!
//! Why not the alternatives: copying the root into a fresh tmpfs and switch_root (the
//! seed's way, option b) costs 1.6-2.4 s under TCG and briefly doubles memory; this
//! costs ~0.25 s and copies nothing. runc `NoPivotRoot` (option a) falls back to
//! chroot(2), which containers can escape more easily. Never combine this with
//! switch_root: switch_root deletes the old root's files, which are the same files.
//!
//! The resulting `/` is still backed by the same tmpfs (rootfs is a tmpfs), but it is an
//! ordinary bind mount stacked on rootfs rather than the namespace's root mount, so
//! pivot_root(2) inside a container works with no runtime configuration change.
//!
//! The kernel passes unknown `key=value` command-line words to init as environment
//! (kernel-parameters.txt, "init="), so `CAIRN_ROOT_MOVED=1` could come from the
//! command line. The marker therefore only counts together with [`MARKER_FILE`], which
//! the first run writes just before the re-exec and which no command line can create.

use std::convert::Infallible;
use std::ffi::{CString, NulError, OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;

use crate::syscall::Syscall;
use crate::Paths;

/// Environment variable set on the re-exec.
pub const MARKER_ENV: &str = "CAIRN_ROOT_MOVED";
/// File (in the root) written just before the re-exec; proves the marker is ours.
pub const MARKER_FILE: &str = "/.cairn-root-moved";
/// Directory inside the initramfs root that `/` is bind-mounted onto.
pub const BIND_DIR: &str = "/.cairn-root";
/// The agent's path in the image (docs/interfaces.md).
pub const INIT: &str = "/init";

#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error("failed to write the root-move marker {}", .0.display())]
    WriteMarker(PathBuf, #[source] io::Error),
    #[error("failed to create {}", .0.display())]
    CreateDir(PathBuf, #[source] io::Error),
    #[error("failed to bind-mount {} onto {}", .0.display(), .1.display())]
    Bind(PathBuf, PathBuf, #[source] Errno),
    #[error("failed to change directory to {}", .0.display())]
    Chdir(PathBuf, #[source] Errno),
    #[error("failed to move the bind mount over {}", .0.display())]
    Move(PathBuf, #[source] Errno),
    #[error("failed to chroot into the moved root")]
    Chroot(#[source] Errno),
    #[error("argument or environment entry for the re-exec contains a nul byte")]
    Nul(#[from] NulError),
    #[error("failed to re-exec {INIT}")]
    Exec(#[source] Errno),
}

/// Where this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootState {
    /// Still on rootfs: the first run.
    Initramfs,
    /// On the moved root: the re-exec'd run.
    Moved,
}

/// Decides from the marker variable's value and the marker file which run this is.
pub fn root_state(paths: &Paths, marker: Option<&OsStr>) -> RootState {
    let Some(marker) = marker else {
        return RootState::Initramfs;
    };
    if marker == "1" && paths.resolve(MARKER_FILE).is_file() {
        return RootState::Moved;
    }
    tracing::warn!("ignoring {MARKER_ENV} without {MARKER_FILE} (from the kernel command line?)");
    RootState::Initramfs
}

/// Moves the root and re-execs `/init`; returns only on failure.
pub fn move_root_and_reexec(
    sys: &dyn Syscall,
    paths: &Paths,
    argv: impl IntoIterator<Item = OsString>,
    env: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Infallible, RootError> {
    // Convert first: after the move a failure would leave a half-switched root.
    let argv = argv
        .into_iter()
        .map(cstring)
        .collect::<Result<Vec<_>, _>>()?;
    let env = reexec_env(env)?;
    let marker = paths.resolve(MARKER_FILE);
    std::fs::write(&marker, b"").map_err(|e| RootError::WriteMarker(marker, e))?;
    move_root(sys, paths)?;
    tracing::debug!("root moved; re-executing {INIT}");
    Err(RootError::Exec(sys.execve(Path::new(INIT), &argv, &env)))
}

/// The mount(2)/chroot(2) sequence itself.
fn move_root(sys: &dyn Syscall, paths: &Paths) -> Result<(), RootError> {
    let root = paths.root();
    let bind_dir = paths.resolve(BIND_DIR);
    sys.create_dir_all(&bind_dir)
        .map_err(|e| RootError::CreateDir(bind_dir.clone(), e))?;
    sys.mount(Some(root), &bind_dir, None, MsFlags::MS_BIND, None)
        .map_err(|e| RootError::Bind(root.to_owned(), bind_dir.clone(), e))?;
    sys.chdir(&bind_dir)
        .map_err(|e| RootError::Chdir(bind_dir.clone(), e))?;
    sys.mount(Some(Path::new(".")), root, None, MsFlags::MS_MOVE, None)
        .map_err(|e| RootError::Move(root.to_owned(), e))?;
    sys.chroot(Path::new(".")).map_err(RootError::Chroot)?;
    let slash = Path::new("/");
    sys.chdir(slash)
        .map_err(|e| RootError::Chdir(slash.to_owned(), e))
}

/// Second run: drop the first run's leftovers so the root looks as the builder made it.
pub fn clean_up(paths: &Paths) {
    for (path, result) in [
        (
            MARKER_FILE,
            std::fs::remove_file(paths.resolve(MARKER_FILE)),
        ),
        (BIND_DIR, std::fs::remove_dir(paths.resolve(BIND_DIR))),
    ] {
        if let Err(err) = result {
            tracing::warn!("failed to remove {path}: {err}");
        }
    }
}

/// The environment for the re-exec: ours, minus any marker the kernel passed, plus ours.
pub fn reexec_env(
    env: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Vec<CString>, NulError> {
    let mut out = Vec::new();
    for (key, value) in env.into_iter().filter(|(key, _)| key != MARKER_ENV) {
        let mut entry = key.into_vec();
        entry.push(b'=');
        entry.extend_from_slice(value.as_bytes());
        out.push(CString::new(entry)?);
    }
    out.push(CString::new(format!("{MARKER_ENV}=1"))?);
    Ok(out)
}

fn cstring(arg: OsString) -> Result<CString, NulError> {
    CString::new(arg.into_vec())
}

#[cfg(test)]
#[path = "rootfs_tests.rs"]
mod tests;
