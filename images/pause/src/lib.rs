//! The pause process of the `localhost/cairn/pause:1` sandbox image.
//!
//! Every pod sandbox runs one: it is PID 1 of the pod's PID namespace (when shared)
//! and keeps the pod's namespaces alive while containers come and go. It does what
//! Kubernetes' own `pause.c` does: sleep in signal wait, reap any child re-parented to
//! it (it is init of the namespace), and exit 0 on SIGINT or SIGTERM, the signals the
//! runtime stops a sandbox with. Built static (`+crt-static`) by the image builder,
//! since the image has no loader or libc.

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Serves until SIGINT or SIGTERM; returns the exit code.
pub fn run() -> i32 {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGCHLD] {
        set.add(signal);
    }
    // Blocked, so they queue for sigwait(3) instead of running default actions
    // (PID 1 of a namespace ignores unhandled signals from inside it anyway).
    if let Err(errno) = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None) {
        eprintln!("pause: cannot block signals: {errno}");
        return 1;
    }
    loop {
        match set.wait() {
            Ok(Signal::SIGCHLD) => reap_all(),
            Ok(Signal::SIGINT | Signal::SIGTERM) => return 0,
            Ok(_) => {}
            Err(errno) => {
                eprintln!("pause: sigwait failed: {errno}");
                return 1;
            }
        }
    }
}

/// Collects every exited child; one SIGCHLD may stand for several.
fn reap_all() {
    while let Ok(status) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}
