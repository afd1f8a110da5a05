//! Power requests and the one way the agent ends: sync, `CAIRN_EXIT`, reboot(2).
//!
//! PID 1 must never exit: the kernel would panic with "Attempted to kill init!"
//! (init(1), kernel/exit.c). So a requested shutdown, a fatal boot error and a panic all
//! end in [`shut_down`], which syncs (sync(2)), prints the `CAIRN_EXIT` line the
//! launcher waits for (docs/interfaces.md) and calls reboot(2).

use std::io::{self, Write};

use nix::errno::Errno;
use nix::sys::reboot::RebootMode;
use nix::sys::signal::Signal;
use serde::Serialize;

use crate::console;
use crate::syscall::{LinuxSyscall, Syscall};

/// `code` after a fatal boot error.
pub const FATAL_CODE: i32 = 1;
/// `code` after a panic (the exit code Rust itself uses for one).
pub const PANIC_CODE: i32 = 101;

/// What reboot(2) is asked to do; serialized as in the `CAIRN_EXIT` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerAction {
    PowerOff,
    Reboot,
}

impl PowerAction {
    fn mode(self) -> RebootMode {
        match self {
            PowerAction::PowerOff => RebootMode::RB_POWER_OFF,
            PowerAction::Reboot => RebootMode::RB_AUTOBOOT,
        }
    }
}

impl std::fmt::Display for PowerAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PowerAction::PowerOff => "power off",
            PowerAction::Reboot => "reboot",
        })
    }
}

/// The signals that request a shutdown (docs/interfaces.md "Power requests").
pub const POWER_SIGNALS: [Signal; 3] = [Signal::SIGTERM, Signal::SIGUSR2, Signal::SIGINT];

/// SIGTERM/SIGUSR2 power off; SIGINT, which ctrl-alt-del becomes once the kernel's own
/// CAD reboot is disabled (reboot(2) `LINUX_REBOOT_CMD_CAD_OFF`), reboots.
pub fn action_for_signal(signal: Signal) -> Option<PowerAction> {
    match signal {
        Signal::SIGTERM | Signal::SIGUSR2 => Some(PowerAction::PowerOff),
        Signal::SIGINT => Some(PowerAction::Reboot),
        _ => None,
    }
}

/// The `CAIRN_EXIT` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExitReport {
    pub action: PowerAction,
    pub code: i32,
    pub reason: String,
}

impl ExitReport {
    /// A shutdown somebody asked for.
    pub fn requested(action: PowerAction, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self {
            action,
            code: 0,
            reason,
        }
    }

    /// The agent cannot go on: power off with a non-zero code.
    pub fn failed(code: i32, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self {
            action: PowerAction::PowerOff,
            code,
            reason,
        }
    }

    /// `CAIRN_EXIT {json}\n`.
    pub fn line(&self) -> String {
        let json = serde_json::to_string(self).expect("exit report serializes");
        format!("CAIRN_EXIT {json}\n")
    }
}

/// Syncs, announces `report` on `out` and calls reboot(2). Returns only if reboot(2)
/// fails (e.g. without CAP_SYS_BOOT), with its error.
pub fn shut_down(sys: &dyn Syscall, report: &ExitReport, out: &mut dyn Write) -> Errno {
    // Flush dirty pages first: reboot(2) itself does not sync.
    sys.sync();
    console::write_line(out, &report.line());
    sys.reboot(report.action.mode())
}

/// Installed first thing in `main`: a panic anywhere, on any thread, tells the console
/// and powers the node off instead of unwinding into a dead PID 1.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = panic_message(info);
        let stderr = &mut io::stderr();
        console::write_line(stderr, &format!("{}panic: {message}\n", console::PREFIX));
        let report = ExitReport::failed(PANIC_CODE, format!("panic: {message}"));
        let errno = shut_down(&LinuxSyscall, &report, stderr);
        console::write_line(stderr, &format!("{}reboot(2): {errno}\n", console::PREFIX));
        std::process::exit(PANIC_CODE);
    }));
}

fn panic_message(info: &std::panic::PanicHookInfo<'_>) -> String {
    let payload = info.payload();
    let text = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(non-string payload)");
    match info.location() {
        Some(location) => format!("{text} at {location}"),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::fake::{Call, RecordingSyscall};

    #[test]
    fn signals_map_to_actions() {
        assert_eq!(
            action_for_signal(Signal::SIGTERM),
            Some(PowerAction::PowerOff)
        );
        assert_eq!(
            action_for_signal(Signal::SIGUSR2),
            Some(PowerAction::PowerOff)
        );
        assert_eq!(action_for_signal(Signal::SIGINT), Some(PowerAction::Reboot));
        assert_eq!(action_for_signal(Signal::SIGHUP), None);
        assert!(POWER_SIGNALS
            .iter()
            .all(|s| action_for_signal(*s).is_some()));
    }

    #[test]
    fn exit_line_is_keyword_and_json() {
        let report = ExitReport::requested(PowerAction::PowerOff, "SIGTERM");
        assert_eq!(
            report.line(),
            "CAIRN_EXIT {\"action\":\"poweroff\",\"code\":0,\"reason\":\"SIGTERM\"}\n"
        );
        let report = ExitReport::failed(FATAL_CODE, "boot");
        assert!(report.line().contains("\"code\":1"));
    }

    #[test]
    fn shut_down_syncs_then_announces_then_reboots() {
        let sys = RecordingSyscall::new();
        let mut out = Vec::new();
        let report = ExitReport::requested(PowerAction::Reboot, "SIGINT");
        shut_down(&sys, &report, &mut out);
        assert_eq!(
            sys.calls(),
            [Call::Sync, Call::Reboot(RebootMode::RB_AUTOBOOT)]
        );
        assert_eq!(String::from_utf8(out).unwrap(), report.line());
    }
}
