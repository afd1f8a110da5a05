//! `dbg`: the host-side CLI of a cairn node's NodeDebugService.
//!
//! Each subcommand is one file under [`commands`]: it builds a request, calls the
//! service through `cairn_api::connect`, and formats the answer with a pure function
//! that the unit tests check. The endpoint comes from `--endpoint`, else
//! `CAIRN_DEBUG_ENDPOINT`, else the node that `make run`/`make start` recorded in
//! `build/node/node.json` (its host port forwarded to guest port 7837), else
//! `http://127.0.0.1:7837` ([`endpoint`]). Every call has a deadline, so a missing node
//! costs seconds, and the exit code says what went wrong ([`DbgError::exit_code`]).

pub mod commands;
pub mod endpoint;

use std::io;
use std::time::Duration;

use clap::Parser;
use tonic::Code;

pub use commands::Command;

/// Exit code when the node could not be reached.
pub const EXIT_UNREACHABLE: u8 = 3;
/// gRPC errors exit with this plus the status code (NOT_FOUND = 5 gives 15,
/// DEADLINE_EXCEEDED = 4 gives 14, INVALID_ARGUMENT = 3 gives 13).
pub const EXIT_GRPC_BASE: u8 = 10;

/// Reads a cairn node's logs, components, conditions and build info; loads and lists its
/// container images.
#[derive(Debug, Parser)]
#[command(name = "dbg", version)]
pub struct Cli {
    /// NodeDebugService endpoint, e.g. http://127.0.0.1:40123 [default: the node in
    /// build/node/node.json, else http://127.0.0.1:7837]
    #[arg(long, global = true, env = "CAIRN_DEBUG_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Seconds to keep trying to reach the node (one just started may not listen yet).
    #[arg(long, global = true, default_value_t = 5.0, value_parser = seconds)]
    pub connect_timeout: f64,
    #[command(subcommand)]
    pub command: Command,
}

/// Parses a positive, finite number of seconds.
pub fn seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 => Ok(s),
        _ => Err(format!("{text:?} is not a number of seconds in (0, 86400]")),
    }
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum DbgError {
    #[error("cannot start the async runtime")]
    Runtime(#[source] io::Error),
    #[error(transparent)]
    Connect(#[from] cairn_api::ConnectError),
    #[error("{call} at {endpoint} failed: {}: {}", .status.code(), .status.message())]
    Call {
        call: &'static str,
        endpoint: String,
        status: tonic::Status,
    },
    #[error("{call} at {endpoint} did not answer within {timeout:?}")]
    CallTimeout {
        call: &'static str,
        endpoint: String,
        timeout: Duration,
    },
    #[error("cannot write the output")]
    Output(#[source] io::Error),
    #[error("no apiserver endpoint: pass --server or set CAIRN_API_ENDPOINT{}", match record {
        Some(path) => format!(" ({path} forwards no port to guest port 6443)"),
        None => " (no build/node/node.json here or above; is a node running?)".to_owned(),
    })]
    NoApiEndpoint { record: Option<String> },
    #[error("no kubectl at {}{}", path.display(), if *from_env {
        " (named by CAIRN_KUBECTL)"
    } else {
        "; run `make image` to build it, or set CAIRN_KUBECTL"
    })]
    NoKubectl {
        path: std::path::PathBuf,
        from_env: bool,
    },
    #[error("cannot write the kubeconfig to a temporary file")]
    TempFile(#[source] io::Error),
    #[error("cannot run {}", path.display())]
    RunKubectl {
        path: std::path::PathBuf,
        #[source]
        source: io::Error,
    },
    /// A signal came before kubectl started; `dbg` ends as if it had killed it.
    #[error("stopped by {0} before kubectl started")]
    Stopped(nix::sys::signal::Signal),
    /// kubectl ran and failed; it has said why, so `dbg` only passes the status on.
    #[error("kubectl exited with status {0}")]
    KubectlExit(u8),
    #[error("cannot read image archive {}", path.display())]
    ReadArchive {
        path: std::path::PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a file", .0.display())]
    NotAnArchive(std::path::PathBuf),
    #[error("{} is {size} bytes, more than the {} a node loads", path.display(), cairn_api::validate::MAX_ARCHIVE_BYTES)]
    ArchiveTooLarge { path: std::path::PathBuf, size: u64 },
    #[error("cannot load {} into the node at {endpoint}: {}: {}", path.display(), .status.code(), .status.message())]
    Load {
        path: std::path::PathBuf,
        endpoint: String,
        status: tonic::Status,
    },
}

impl DbgError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            DbgError::Runtime(_)
            | DbgError::Output(_)
            | DbgError::NoApiEndpoint { .. }
            | DbgError::NoKubectl { .. }
            | DbgError::TempFile(_)
            | DbgError::RunKubectl { .. }
            | DbgError::ReadArchive { .. }
            | DbgError::NotAnArchive(_)
            | DbgError::ArchiveTooLarge { .. } => 1,
            DbgError::KubectlExit(code) => *code,
            DbgError::Stopped(signal) => u8::try_from(128 + *signal as i32).unwrap_or(1),
            DbgError::Connect(_) | DbgError::CallTimeout { .. } => EXIT_UNREACHABLE,
            DbgError::Call { status, .. } | DbgError::Load { status, .. } => {
                grpc_exit_code(status.code())
            }
        }
    }

    /// Whether the error has been reported already (kubectl printed its own).
    pub fn is_reported(&self) -> bool {
        matches!(self, DbgError::KubectlExit(_))
    }
}

/// `EXIT_GRPC_BASE + code`; UNAVAILABLE (the connection broke) counts as unreachable.
pub fn grpc_exit_code(code: Code) -> u8 {
    match code {
        Code::Unavailable => EXIT_UNREACHABLE,
        code => EXIT_GRPC_BASE + code as u8,
    }
}

/// Runs the command on a small runtime of its own.
pub fn run(cli: Cli) -> Result<(), DbgError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DbgError::Runtime)?;
    let endpoint = endpoint::resolve(cli.endpoint.as_deref());
    let connect_timeout = Duration::from_secs_f64(cli.connect_timeout);
    runtime.block_on(async {
        let client = cairn_api::connect_within(&endpoint, connect_timeout).await?;
        let ctx = commands::Context {
            client,
            endpoint,
            call_timeout: connect_timeout.max(Duration::from_secs(10)),
        };
        cli.command.run(ctx, &mut io::stdout().lock()).await
    })
}

/// The commands' and `main`'s one formatter of an error and its causes.
pub use cairn_api::error_chain;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_become_distinct_exit_codes() {
        assert_eq!(grpc_exit_code(Code::NotFound), 15);
        assert_eq!(grpc_exit_code(Code::DeadlineExceeded), 14);
        assert_eq!(grpc_exit_code(Code::InvalidArgument), 13);
        assert_eq!(grpc_exit_code(Code::Unavailable), EXIT_UNREACHABLE);
    }

    #[test]
    fn global_flags_parse_anywhere() {
        let cli = Cli::try_parse_from(["dbg", "components", "--endpoint", "h:1"]).unwrap();
        assert_eq!(cli.endpoint.as_deref(), Some("h:1"));
        assert_eq!(cli.connect_timeout, 5.0);
        assert!(Cli::try_parse_from(["dbg", "--connect-timeout", "0", "info"]).is_err());
        assert!(Cli::try_parse_from(["dbg", "--connect-timeout", "nan", "info"]).is_err());
        assert!(Cli::try_parse_from(["dbg"]).is_err());
    }
}
