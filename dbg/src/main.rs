//! `dbg`: parse the arguments, run the command, turn the outcome into an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cairn_dbg::Cli::parse();
    match cairn_dbg::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if !err.is_reported() {
                eprintln!("dbg: {}", cairn_api::error_chain(&err));
            }
            ExitCode::from(err.exit_code())
        }
    }
}
