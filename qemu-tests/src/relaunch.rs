//! Starting a node's QEMU again after its guest rebooted.
//!
//! QEMU runs with `-action reboot=shutdown`, so a guest reboot ends it, and the launcher
//! starts a fresh QEMU with the same command line, disks and host ports. Under TCG this
//! is ~25 s faster than resetting the machine in place (docs/interfaces.md "Reboots").
//! The command line is kept in the state dir (`launch.json`), with where in the console
//! log the running QEMU's output starts: the console log is appended to, so waits see
//! one boot after the other.
//!
//! A QEMU that ended is started again only when it exited normally, nobody asked the
//! node to stop, and what it printed says the guest rebooted: the agent's last
//! `CAIRN_EXIT` line says `reboot`, or there is none and the kernel panicked (the
//! image boots with `panic=-1`, which reboots). A power-off, a killed QEMU or one that
//! failed ends the node.
//!
//! Attached nodes ([`crate::node::Node`]) relaunch from a thread of the launcher;
//! detached ones from a watcher process ([`crate::watch`]).

use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use serde::{Deserialize, Serialize};

use crate::command::QemuCommand;
use crate::console::{self, ExitAction};
use crate::process::{ProcessError, QemuProcess, SpawnMode};
use crate::state::{write_atomic, StateDir, StateError};

/// The launch record's file name in the state dir.
pub const LAUNCH_FILE: &str = "launch.json";
/// The kernel's line when it panics; with `panic=-1` a reboot follows.
const KERNEL_PANIC: &str = "Kernel panic - not syncing";

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum RelaunchError {
    /// The launch record or node record could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// The launch record is not one.
    #[error("malformed launch record {0}")]
    Parse(PathBuf, #[source] serde_json::Error),
    /// No launch record: the node was not started by this launcher version.
    #[error("no launch record {0}: cannot start the node's qemu again")]
    Missing(PathBuf),
    /// The console log could not be read.
    #[error("cannot read console log {0}")]
    Console(PathBuf, #[source] io::Error),
    /// The new QEMU could not be started.
    #[error(transparent)]
    Process(#[from] ProcessError),
}

/// How the node's current QEMU was started (`launch.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Launch {
    /// Its command line; every relaunch uses it again.
    pub command: QemuCommand,
    /// Where its output starts in the console log.
    pub console_offset: u64,
    /// QEMUs started for this node so far, this one included.
    pub launches: u32,
}

impl Launch {
    /// The record of a node's first QEMU.
    pub fn first(command: QemuCommand) -> Self {
        Launch {
            command,
            console_offset: 0,
            launches: 1,
        }
    }

    /// Writes `launch.json` in `state`.
    pub fn write(&self, state: &StateDir) -> Result<(), RelaunchError> {
        let path = state.root().join(LAUNCH_FILE);
        let json = serde_json::to_vec_pretty(self).expect("a launch record serializes");
        Ok(write_atomic(&path, &json)?)
    }

    /// Reads `launch.json` from `state`.
    pub fn read(state: &StateDir) -> Result<Self, RelaunchError> {
        let path = state.root().join(LAUNCH_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(RelaunchError::Missing(path))
            }
            Err(err) => return Err(StateError::Read(path, err).into()),
        };
        serde_json::from_slice(&bytes).map_err(|e| RelaunchError::Parse(path, e))
    }
}

/// Whether the node's QEMU, which ended with `status` (`None`: not ours to wait for,
/// status unknown), should be started again: the guest rebooted.
pub fn wanted(state: &StateDir, status: Option<ExitStatus>) -> Result<bool, RelaunchError> {
    if status.is_some_and(|status| !status.success()) {
        return Ok(false);
    }
    let launch = Launch::read(state)?;
    let path = state.console_log();
    let text = read_from(&path, launch.console_offset)
        .map_err(|e| RelaunchError::Console(path.clone(), e))?;
    Ok(guest_rebooted(&text))
}

/// Whether console output says the guest rebooted: the agent's last `CAIRN_EXIT` says
/// `reboot`, or there is none and the kernel panicked.
pub fn guest_rebooted(console: &str) -> bool {
    let last_exit = console
        .lines()
        .rev()
        .find_map(|line| console::parse_exit(line.trim_end_matches('\r')));
    match last_exit {
        Some(Ok(exit)) => exit.action == ExitAction::Reboot,
        // A garbled report: the agent meant to end the boot; do not guess a reboot.
        Some(Err(_)) => false,
        None => console.contains(KERNEL_PANIC),
    }
}

/// Starts the node's QEMU again as `launch.json` says, and records the new pid in
/// `qemu.pid` and `node.json` and where its output starts in `launch.json`.
pub fn relaunch(state: &StateDir, mode: SpawnMode) -> Result<QemuProcess, RelaunchError> {
    let mut launch = Launch::read(state)?;
    let console = state.console_log();
    launch.console_offset = fs::metadata(&console)
        .map(|meta| meta.len())
        .map_err(|e| RelaunchError::Console(console.clone(), e))?;
    launch.launches += 1;
    let process = QemuProcess::spawn(&launch.command, &state.qemu_log(), mode)?;
    launch.write(state)?;
    if let Some(mut record) = state.read()? {
        record.pid = process.pid();
        state.write(&record)?;
    }
    tracing::info!(
        pid = process.pid(),
        launches = launch.launches,
        "the guest rebooted; qemu started again"
    );
    Ok(process)
}

fn read_from(path: &Path, offset: u64) -> io::Result<String> {
    let mut file = fs::File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Accel;

    const REBOOT: &str = r#"CAIRN_EXIT {"action":"reboot","code":0,"reason":"ctrl-alt-del"}"#;
    const POWEROFF: &str = r#"CAIRN_EXIT {"action":"poweroff","code":0,"reason":"Shutdown"}"#;

    #[test]
    fn only_a_reboot_or_a_kernel_panic_is_a_guest_reboot() {
        assert!(guest_rebooted(&format!(
            "boot\n{REBOOT}\r\n[ 9.1] reboot: Restarting system\n"
        )));
        assert!(!guest_rebooted(&format!(
            "boot\n{POWEROFF}\n[ 9.1] reboot: Power down\n"
        )));
        assert!(!guest_rebooted(
            "boot\nno report: qemu was killed or quit\n"
        ));
        assert!(guest_rebooted(
            "[ 3.0] Kernel panic - not syncing: Attempted to kill init!\n"
        ));
        // The last report counts: a power-off after a panic the agent survived.
        assert!(!guest_rebooted(&format!("{KERNEL_PANIC}: x\n{POWEROFF}\n")));
        assert!(!guest_rebooted("CAIRN_EXIT {\"action\":\n"), "malformed");
    }

    #[test]
    fn a_relaunch_looks_only_at_the_running_qemus_output() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let command = QemuCommand::new(Path::new("/k"), &state.console_log(), Accel::Tcg);
        let mut launch = Launch::first(command);
        launch.write(&state).unwrap();
        let first_boot = format!("boot 1\n{REBOOT}\n");
        fs::write(state.console_log(), &first_boot).unwrap();
        assert!(wanted(&state, None).unwrap());
        // The next QEMU's output starts after the first boot's reboot report.
        launch.console_offset = first_boot.len() as u64;
        launch.launches = 2;
        launch.write(&state).unwrap();
        assert_eq!(Launch::read(&state).unwrap(), launch);
        assert!(!wanted(&state, None).unwrap(), "boot 2 printed nothing yet");
        fs::write(
            state.console_log(),
            format!("{first_boot}boot 2\n{POWEROFF}\n"),
        )
        .unwrap();
        assert!(!wanted(&state, None).unwrap());
    }

    #[test]
    fn a_failed_qemu_is_not_started_again() {
        use std::os::unix::process::ExitStatusExt;
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let command = QemuCommand::new(Path::new("/k"), &state.console_log(), Accel::Tcg);
        Launch::first(command).write(&state).unwrap();
        fs::write(state.console_log(), format!("{REBOOT}\n")).unwrap();
        assert!(wanted(&state, Some(ExitStatus::from_raw(0))).unwrap());
        assert!(!wanted(&state, Some(ExitStatus::from_raw(1 << 8))).unwrap());
        assert!(
            !wanted(&state, Some(ExitStatus::from_raw(9))).unwrap(),
            "killed"
        );
    }

    #[test]
    fn a_missing_launch_record_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = wanted(&StateDir::new(dir.path()), None).unwrap_err();
        assert!(err.to_string().contains(LAUNCH_FILE), "{err}");
    }
}
