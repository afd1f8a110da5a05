//! The subcommands, one per file, and what they share: the error type, its exit codes, and
//! where the image and state directories are by default.

pub mod cluster;
mod probe;
mod registry;
mod run;
mod stop;
mod watch;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cairn_qemu::attach::AttachError;
use cairn_qemu::image::{self, ImageError};
use cairn_qemu::node::NodeError;
use cairn_qemu::stop::StopError;
use clap::{Parser, Subcommand};

/// Boot cairn images under QEMU.
#[derive(Debug, Parser)]
#[command(name = "cairn-qemu", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Boot the image: console on stdout until the guest ends, or --detach once ready.
    Run(run::RunArgs),
    /// Stop the node recorded in a state dir (clean stop, then SIGKILL).
    Stop(stop::StopArgs),
    /// Show which accelerator `--accel auto` picks, and why.
    Probe(probe::ProbeArgs),
    /// Run an OCI registry on the host for nodes to pull from (TLS, basic auth).
    Registry(registry::RegistryArgs),
    /// A control-plane node and workers that join it, on one cluster segment.
    Cluster(cluster::ClusterArgs),
    /// Start a detached node's QEMU again after each guest reboot (run by `run
    /// --detach` and `cluster start`).
    #[command(hide = true)]
    Watch(watch::WatchArgs),
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode, CommandError> {
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Stop(args) => stop::run(args),
        Command::Probe(args) => probe::run(args),
        Command::Registry(args) => registry::run(args),
        Command::Cluster(args) => cluster::run(args),
        Command::Watch(args) => watch::run(args),
    }
}

/// Why a subcommand failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The image to boot is missing or unreadable.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// QEMU could not be started.
    #[error("cannot start the node")]
    Start(#[source] NodeError),
    /// The detached node did not become ready; it was killed.
    #[error("the node did not become ready")]
    NotReady(#[source] NodeError),
    /// A foreground run failed.
    #[error("the foreground run failed")]
    Attach(#[source] AttachError),
    /// Stopping a recorded node failed.
    #[error("cannot stop the node in {0}")]
    Stop(PathBuf, #[source] StopError),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers")]
    Signals(#[source] std::io::Error),
    /// The registry could not be started or configured.
    #[error("registry")]
    Registry(#[source] Box<cairn_qemu::registry::RegistryError>),
    /// The per-node config file is unreadable or invalid; nothing was started.
    #[error("node config {}: {problem}", .path.display())]
    NodeConfig { path: PathBuf, problem: String },
    /// `cluster start|stop` could not go on.
    #[error("cluster: {0}")]
    Cluster(String),
    /// The watcher of a detached node failed.
    #[error("watching the node in {0}")]
    Watch(PathBuf, #[source] cairn_qemu::watch::WatchError),
    /// The owner CA could not be read; nothing was started.
    #[error("owner CA (--no-owner starts the node without one)")]
    Owner(#[source] cairn_dbg::owner::OwnerError),
}

impl CommandError {
    /// 2 when the image, node config or owner CA is missing or bad (nothing was
    /// started), else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Image(_) | CommandError::NodeConfig { .. } | CommandError::Owner(_) => 2,
            CommandError::Start(_)
            | CommandError::NotReady(_)
            | CommandError::Attach(_)
            | CommandError::Stop(..)
            | CommandError::Signals(_)
            | CommandError::Registry(_)
            | CommandError::Cluster(_)
            | CommandError::Watch(..) => 1,
        }
    }
}

/// `dir` if given (flag or env var), else `default` under the workspace root.
fn dir_or_default(dir: Option<PathBuf>, default: &str) -> PathBuf {
    dir.unwrap_or_else(|| {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        image::workspace_root(&cwd).join(default)
    })
}

/// A path as the user will want to copy it: relative to the current directory if inside it.
fn display_path(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_owned())
        .display()
        .to_string()
}
