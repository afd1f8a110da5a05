//! `dbg`: the host-side CLI of a cairn node: its debug service (debug images) and its
//! owner's node API (mTLS, every image).
//!
//! Each subcommand is one file under [`commands`]: it builds a request, calls the node
//! through a `cairn_api::NodeClient` of either surface, and formats the answer with a
//! pure function that the unit tests check. Which surface and endpoint: [`connect`];
//! the debug endpoint comes from `--endpoint`, else `CAIRN_DEBUG_ENDPOINT`, else the
//! node that `make run`/`make start` recorded in `build/node/node.json` (its host port
//! forwarded to guest port 7837), else `http://127.0.0.1:7837` ([`endpoint`]).
//! `dbg owner init` makes the owner credentials ([`owner`]). Every call has a deadline, so a missing node
//! costs seconds, and the exit code says what went wrong ([`DbgError::exit_code`]).

pub mod commands;
pub mod connect;
pub mod endpoint;
pub mod owner;

use std::io;
use std::time::Duration;

use clap::Parser;
use tonic::Code;

pub use commands::Command;

/// Exit code when the node could not be reached.
pub const EXIT_UNREACHABLE: u8 = 3;
/// Exit code when the node API and `dbg` did not accept each other's certificates.
pub const EXIT_REFUSED: u8 = 4;
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
    /// Talk to the owner's node API (mTLS with the owner certificate), not the debug
    /// service [default: the debug service if it answers, else the node API when owner
    /// credentials exist].
    #[arg(long, global = true)]
    pub owner: bool,
    /// Node API endpoint, e.g. https://127.0.0.1:40124 (implies --owner) [default: the
    /// node in build/node/node.json].
    #[arg(long, global = true, env = "CAIRN_NODE_API_ENDPOINT")]
    pub node_api: Option<String>,
    /// Directory of the owner credentials [default: $CAIRN_OWNER_DIR, else
    /// $XDG_CONFIG_HOME/cairn/owner, else ~/.config/cairn/owner].
    #[arg(long, global = true, env = "CAIRN_OWNER_DIR")]
    pub owner_dir: Option<std::path::PathBuf>,
    /// A node of the cluster `cairn-qemu cluster start` made: its directory name
    /// (`control-plane`, `worker-1`, ...) or Kubernetes name (`cairn-<node id>`), in
    /// $CAIRN_CLUSTER_DIR, else build/cluster here or above.
    #[arg(long, global = true, value_name = "NAME")]
    pub node: Option<String>,
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
    #[error(transparent)]
    OwnerConnect(#[from] cairn_api::owner_client::OwnerConnectError),
    #[error(transparent)]
    Owner(#[from] owner::OwnerError),
    #[error("cannot keep the node's CA pin {}", .0.display())]
    Pin(std::path::PathBuf, #[source] io::Error),
    #[error("no node API endpoint: pass --node-api or set CAIRN_NODE_API_ENDPOINT{}", match record {
        Some(path) => format!(" ({path} forwards no port to guest port 7838)"),
        None => " (no build/node/node.json here or above; is a node running?)".to_owned(),
    })]
    NoNodeApiEndpoint { record: Option<String> },
    #[error(
        "the node recorded in {record} serves no management API: it is a production image \
             and has no owner. `dbg owner init`, then stop and start it: the launcher gives it \
             the owner CA, which it pins"
    )]
    NoApi { record: String },
    #[error(
        "the node recorded in {record} serves only the owner's node API (a production \
             image), and dbg has no owner credentials"
    )]
    OwnerOnly {
        record: String,
        #[source]
        source: owner::OwnerError,
    },
    #[error("the node API issues kubeconfigs for the owner only (user cairn:owner in system:masters); --user and --group need a debug image's debug service")]
    OwnerIdentityOnly,
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
    #[error("no node {name:?} in the cluster {}{}", dir.as_ref().map_or("(no build/cluster here or above; `make cluster` makes one)".to_owned(), |d| d.display().to_string()), if dir.is_some() { " (its directories and node names are the choices)" } else { "" })]
    NoClusterNode {
        name: String,
        dir: Option<std::path::PathBuf>,
    },
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
            | DbgError::ArchiveTooLarge { .. }
            | DbgError::Owner(_)
            | DbgError::Pin(..)
            | DbgError::NoNodeApiEndpoint { .. }
            | DbgError::NoApi { .. }
            | DbgError::OwnerOnly { .. }
            | DbgError::OwnerIdentityOnly
            | DbgError::NoClusterNode { .. } => 1,
            DbgError::OwnerConnect(err) => {
                use cairn_api::owner_client::OwnerConnectError as E;
                match err {
                    E::Refused(..) | E::ServerCertificate(..) => EXIT_REFUSED,
                    E::Unreachable(..) | E::NoAnswer(..) | E::Timeout(..) => EXIT_UNREACHABLE,
                    E::InvalidEndpoint(_) | E::Identity(..) | E::PinnedCa(_) | E::Tls(_) => 1,
                }
            }
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
    // Before any thread exists: the node's state dir is found through the variable the
    // launcher's own commands read, and kubectl's environment inherits it.
    if let Some(name) = &cli.node {
        let cwd = std::env::current_dir().unwrap_or_default();
        let dir = endpoint::cluster_node_dir(&cwd, name)?;
        std::env::set_var(endpoint::STATE_DIR_ENV, dir);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DbgError::Runtime)?;
    // Commands that need no node.
    if let Command::Owner(args) = &cli.command {
        return commands::owner::run(args, cli.owner_dir.as_deref(), &mut io::stdout().lock());
    }
    let connect_timeout = Duration::from_secs_f64(cli.connect_timeout);
    runtime.block_on(async {
        let connected = connect::connect(&cli, connect_timeout).await?;
        let ctx = commands::Context {
            client: connected.client,
            endpoint: connected.endpoint,
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
