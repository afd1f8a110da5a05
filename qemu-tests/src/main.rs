//! `cairn-qemu`: boot a cairn image under QEMU, stop it, or show which accelerator `auto`
//! picks. Parsing and dispatch live in [`commands`]; this file only starts logging and
//! turns the outcome into an exit code.

mod commands;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = commands::Cli::parse();
    init_tracing();
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", cairn_api::error_chain(&err));
            ExitCode::from(err.exit_code())
        }
    }
}

/// Logs go to stderr (stdout carries the guest console); `CAIRN_LOG` sets the filter.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}
