//! `/init`: panic hook, logging, [`cairn_agent::run`], then a deliberate power-off or
//! reboot — PID 1 never just exits.

use std::io;
use std::sync::Arc;

use cairn_agent::logbuf::{Limits, Logs, AGENT};
use cairn_agent::power::{self, ExitReport, FATAL_CODE};
use cairn_agent::syscall::LinuxSyscall;
use cairn_agent::{console, Paths};

fn main() {
    // Run anywhere else, the agent would move the host's root and power it off.
    if std::process::id() != 1 {
        eprintln!("cairn-agent is the init of a cairn node and only runs as PID 1");
        std::process::exit(2);
    }
    power::install_panic_hook();
    // The log registry exists before logging, so the agent's first line is kept too.
    let logs = Logs::new(Limits::default());
    console::init_logging(logs.buffer(AGENT));

    let sys = Arc::new(LinuxSyscall);
    let report = match cairn_agent::run(sys.clone(), &Paths::system(), logs) {
        Ok(request) => ExitReport::requested(request.action, request.origin),
        Err(err) => {
            let chain = cairn_api::error_chain(&err);
            tracing::error!("fatal: {chain}");
            ExitReport::failed(FATAL_CODE, chain)
        }
    };
    let errno = power::shut_down(&*sys, &report, &mut io::stderr());
    // Only reached if reboot(2) failed; exiting panics the kernel, which at least stops.
    tracing::error!("reboot(2) failed: {errno}");
    std::process::exit(report.code.max(FATAL_CODE));
}
