//! The subcommands, one per file. Each has an `Args` struct for clap, a `run` that makes
//! the call, and pure formatting functions the tests check.

pub mod components;
pub mod conditions;
pub mod images;
pub mod info;
pub mod join_token;
pub mod kubeconfig;
pub mod kubectl;
pub mod load_image;
pub mod logs;
pub mod owner;
pub mod reboot;
pub mod stats;

use std::future::Future;
use std::io::Write;
use std::time::Duration;

use cairn_api::NodeClient;

use crate::DbgError;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print a component's log (`agent` is the agent's own).
    Logs(logs::Args),
    /// List the components with their state, pid and restart count.
    Components(components::Args),
    /// List the conditions, or wait for one to become true.
    Conditions(conditions::Args),
    /// Print the node's os-release, image digest and agent version.
    Info(info::Args),
    /// Print a short-lived kubeconfig for the node's apiserver (default: cluster admin).
    Kubeconfig(kubeconfig::Args),
    /// Run kubectl against the node with fresh debug credentials; exits with its status.
    Kubectl(kubectl::Args),
    /// Reboot the node cleanly (or power it off with --power-off).
    Reboot(reboot::Args),
    /// Print memory and CPU use of the agent and of each component.
    Stats(stats::Args),
    /// Load container images from an OCI image layout or `docker save` archive.
    LoadImage(load_image::Args),
    /// List the node's container images: reference, digest, size, pinned.
    Images(images::Args),
    /// Create a credential for another machine to join the node's cluster.
    JoinToken(join_token::Args),
    /// The owner credentials on this host (`dbg owner init`).
    #[command(subcommand)]
    Owner(owner::Args),
}

impl Command {
    pub async fn run(self, ctx: Context, out: &mut dyn Write) -> Result<(), DbgError> {
        match self {
            Command::Logs(args) => logs::run(args, ctx, out).await,
            Command::Components(args) => components::run(args, ctx, out).await,
            Command::Conditions(args) => conditions::run(args, ctx, out).await,
            Command::Info(args) => info::run(args, ctx, out).await,
            Command::Kubeconfig(args) => kubeconfig::run(args, ctx, out).await,
            Command::Kubectl(args) => kubectl::run(args, ctx, out).await,
            Command::Reboot(args) => reboot::run(args, ctx, out).await,
            Command::Stats(args) => stats::run(args, ctx, out).await,
            Command::LoadImage(args) => load_image::run(args, ctx, out).await,
            Command::Images(args) => images::run(args, ctx, out).await,
            Command::JoinToken(args) => join_token::run(args, ctx, out).await,
            Command::Owner(args) => owner::run(&args, None, out),
        }
    }
}

/// A connected client and how to report its calls.
#[derive(Debug)]
pub struct Context {
    pub client: NodeClient,
    pub endpoint: String,
    /// Deadline of a call that should answer at once.
    pub call_timeout: Duration,
}

impl Context {
    /// Awaits `call` (named `name` in errors) for at most `timeout`.
    pub async fn call<T>(
        &self,
        name: &'static str,
        timeout: Duration,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, DbgError> {
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(self.failed(name, status)),
            Err(_elapsed) => Err(DbgError::CallTimeout {
                call: name,
                endpoint: self.endpoint.clone(),
                timeout,
            }),
        }
    }

    pub fn failed(&self, name: &'static str, status: tonic::Status) -> DbgError {
        DbgError::Call {
            call: name,
            endpoint: self.endpoint.clone(),
            status,
        }
    }
}

/// Nanoseconds since boot as `seconds.micros`, right-aligned like dmesg.
pub fn boot_time(ns: u64) -> String {
    format!(
        "{:>6}.{:06}",
        ns / 1_000_000_000,
        ns % 1_000_000_000 / 1_000
    )
}

/// Writes `rows` as left-aligned columns (the last column unpadded).
pub fn table(out: &mut dyn Write, rows: &[Vec<String>]) -> std::io::Result<()> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_times_read_as_seconds_and_micros() {
        assert_eq!(boot_time(0), "     0.000000");
        assert_eq!(boot_time(12_345_678_901), "    12.345678");
    }

    #[test]
    fn tables_align_columns() {
        let mut out = Vec::new();
        let rows = vec![
            vec!["NAME".into(), "STATE".into(), "DETAIL".into()],
            vec!["containerd".into(), "ready".into(), String::new()],
        ];
        table(&mut out, &rows).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "NAME        STATE  DETAIL\ncontainerd  ready\n"
        );
    }
}
