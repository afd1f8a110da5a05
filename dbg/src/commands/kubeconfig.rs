//! `dbg kubeconfig [--user U] [--group G]... [--validity S] [--server URL]`.
//!
//! Asks the node for a short-lived kubeconfig (GetDebugKubeconfig of the debug service,
//! for any user and groups; GetKubeconfig of the node API, for the owner) and points it at the
//! host's forward of the apiserver: the node writes its own loopback address
//! (`https://127.0.0.1:6443`), which means nothing on the host. The forward comes from
//! `--server`/`CAIRN_API_ENDPOINT`, else the node record (`build/node/node.json`:
//! `api_endpoint`, else the host port forwarded to guest port 6443). The apiserver's
//! certificate names 127.0.0.1, so TLS verification still passes through the forward.

use std::io::Write;

use cairn_api::v1::{GetDebugKubeconfigRequest, GetDebugKubeconfigResponse};
use cairn_api::NodeClient;

use super::Context;
pub use crate::endpoint::api_from_record;
use crate::endpoint::find_record;
use crate::DbgError;

/// The apiserver's port inside the node (docs/interfaces.md).
pub const APISERVER_PORT: u16 = cairn_api::names::port::APISERVER;
/// The user a debug kubeconfig names unless told otherwise.
pub const DEFAULT_USER: &str = "cairn-debug";
/// The groups unless told otherwise: cluster administrators.
pub const DEFAULT_GROUPS: &[&str] = &["system:masters"];

/// Who the credentials are for and where they point (shared with `dbg kubectl`).
#[derive(Debug, Clone, clap::Args)]
pub struct Credentials {
    /// Kubernetes user name (the certificate's CN).
    #[arg(long, default_value = DEFAULT_USER)]
    pub user: String,
    /// A group of the user (the certificate's O); repeat for several
    /// [default: system:masters].
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
    /// Seconds the certificate is valid, 60 to 86400 [default: 3600, the node's].
    #[arg(long, value_name = "SECONDS")]
    pub validity: Option<u32>,
    /// The apiserver as reached from here, e.g. https://127.0.0.1:40443
    /// [default: the node record's forward of port 6443].
    #[arg(long, env = "CAIRN_API_ENDPOINT")]
    pub server: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub credentials: Credentials,
}

pub async fn run(args: Args, ctx: Context, out: &mut dyn Write) -> Result<(), DbgError> {
    let text = fetch(&args.credentials, &ctx).await?;
    out.write_all(text.as_bytes()).map_err(DbgError::Output)
}

/// The kubeconfig text, already pointing at the host-side apiserver endpoint.
pub async fn fetch(credentials: &Credentials, ctx: &Context) -> Result<String, DbgError> {
    // Resolve first: without a way to the apiserver the credentials are useless.
    let server = api_server(credentials.server.as_deref())?;
    let mut client = ctx.client.clone();
    let owner = matches!(client, NodeClient::Owner(_));
    if owner && (credentials.user != DEFAULT_USER || !credentials.groups.is_empty()) {
        return Err(DbgError::OwnerIdentityOnly);
    }
    let call = match owner {
        true => "GetKubeconfig",
        false => "GetDebugKubeconfig",
    };
    let response: GetDebugKubeconfigResponse = ctx
        .call(
            call,
            ctx.call_timeout,
            client.kubeconfig(request(credentials)),
        )
        .await?;
    Ok(rewrite_server(&response.kubeconfig, &server))
}

/// The request for `credentials`, with the default groups if none were given.
pub fn request(credentials: &Credentials) -> GetDebugKubeconfigRequest {
    let groups = if credentials.groups.is_empty() {
        DEFAULT_GROUPS.iter().map(|g| (*g).to_owned()).collect()
    } else {
        credentials.groups.clone()
    };
    GetDebugKubeconfigRequest {
        user: credentials.user.clone(),
        groups,
        validity_seconds: credentials.validity,
    }
}

/// `explicit`, else the recorded node's apiserver forward.
pub fn api_server(explicit: Option<&str>) -> Result<String, DbgError> {
    if let Some(server) = explicit.filter(|s| !s.is_empty()) {
        return Ok(server.to_owned());
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    let record = find_record(&cwd);
    record
        .as_deref()
        .and_then(api_from_record)
        .ok_or_else(|| DbgError::NoApiEndpoint {
            record: record.map(|p| p.display().to_string()),
        })
}

/// `kubeconfig` with every cluster's `server:` replaced by `server` (JSON-quoted, which
/// YAML reads as a double-quoted scalar).
pub fn rewrite_server(kubeconfig: &str, server: &str) -> String {
    let quoted = serde_json::Value::from(server).to_string();
    let mut out = String::with_capacity(kubeconfig.len());
    for line in kubeconfig.split_inclusive('\n') {
        let body = line.trim_start();
        if body.starts_with("server:") {
            let indent = &line[..line.len() - body.len()];
            let newline = if line.ends_with('\n') { "\n" } else { "" };
            out.push_str(&format!("{indent}server: {quoted}{newline}"));
        } else {
            out.push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use std::fs;

    const NODE_KUBECONFIG: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: \"cairn\"\n  cluster:\n    server: \"https://127.0.0.1:6443\"\n    certificate-authority-data: Q0E=\nusers: []\n";

    #[test]
    fn the_server_is_rewritten_and_nothing_else() {
        let text = rewrite_server(NODE_KUBECONFIG, "https://127.0.0.1:40443");
        assert_eq!(
            text,
            NODE_KUBECONFIG.replace("https://127.0.0.1:6443", "https://127.0.0.1:40443")
        );
        let odd = rewrite_server("  server: x", "https://h:1/\"p\"");
        assert_eq!(odd, "  server: \"https://h:1/\\\"p\\\"\"");
    }

    #[test]
    fn the_api_endpoint_comes_from_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.json");
        let forwards = r#"{"forwards":[{"host":40002,"guest":7837},{"host":40443,"guest":6443}]}"#;
        fs::write(&path, forwards).unwrap();
        assert_eq!(
            api_from_record(&path).as_deref(),
            Some("https://127.0.0.1:40443")
        );
        let explicit =
            r#"{"forwards":[{"host":40443,"guest":6443}],"api_endpoint":"https://127.0.0.1:9"}"#;
        fs::write(&path, explicit).unwrap();
        assert_eq!(
            api_from_record(&path).as_deref(),
            Some("https://127.0.0.1:9")
        );
        fs::write(&path, r#"{"forwards":[{"host":40002,"guest":7837}]}"#).unwrap();
        assert_eq!(api_from_record(&path), None);
        assert_eq!(api_server(Some("https://h:1")).unwrap(), "https://h:1");
    }

    #[test]
    fn flags_become_the_request_with_default_groups() {
        let cli = crate::Cli::try_parse_from(["dbg", "kubeconfig"]).unwrap();
        let crate::Command::Kubeconfig(args) = cli.command else {
            panic!("not kubeconfig")
        };
        let req = request(&args.credentials);
        assert_eq!(req.user, "cairn-debug");
        assert_eq!(req.groups, ["system:masters"]);
        assert_eq!(req.validity_seconds, None);

        let cli = crate::Cli::try_parse_from([
            "dbg",
            "kubeconfig",
            "--user",
            "alice",
            "--group",
            "dev",
            "--group",
            "ops",
            "--validity",
            "60",
            "--server",
            "https://127.0.0.1:1",
        ])
        .unwrap();
        let crate::Command::Kubeconfig(args) = cli.command else {
            panic!("not kubeconfig")
        };
        let req = request(&args.credentials);
        assert_eq!((req.user.as_str(), req.groups.len()), ("alice", 2));
        assert_eq!(req.validity_seconds, Some(60));
        assert_eq!(
            args.credentials.server.as_deref(),
            Some("https://127.0.0.1:1")
        );
    }
}
