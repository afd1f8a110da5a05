//! etcd: the cluster's store, on loopback only. Clients (the apiserver, the agent's
//! probe) authenticate with certificates signed by the cluster CA; the peer port is
//! TLS too, though a single member never uses it.

use std::time::Duration;

use super::probe::{self, Access};
use super::{Files, Node, PKI_CONDITION};
use crate::supervisor::{Readiness, ServiceSpec};
use crate::Paths;

pub const SERVICE: &str = cairn_api::names::service::ETCD;
pub const CLIENT_URL: &str = "https://127.0.0.1:2379";
pub const PEER_URL: &str = "https://127.0.0.1:2380";
/// Its serving (and peer) certificate.
pub const LEAF: &str = "etcd-server";

pub fn service(paths: &Paths, files: &Files, node: &Node) -> ServiceSpec {
    let (cert, key, ca) = (files.cert(LEAF), files.key(LEAF), files.ca());
    let args = [
        "etcd".to_owned(),
        format!("--name={}", node.name),
        format!("--data-dir={}", files.state("etcd")),
        format!("--listen-client-urls={CLIENT_URL}"),
        format!("--advertise-client-urls={CLIENT_URL}"),
        format!("--listen-peer-urls={PEER_URL}"),
        format!("--initial-advertise-peer-urls={PEER_URL}"),
        format!("--initial-cluster={}={PEER_URL}", node.name),
        "--initial-cluster-state=new".to_owned(),
        format!("--cert-file={cert}"),
        format!("--key-file={key}"),
        "--client-cert-auth=true".to_owned(),
        format!("--trusted-ca-file={ca}"),
        format!("--peer-cert-file={cert}"),
        format!("--peer-key-file={key}"),
        "--peer-client-cert-auth=true".to_owned(),
        format!("--peer-trusted-ca-file={ca}"),
        // ed25519 certificates: TLS 1.3 is what Go and rustls agree on best.
        "--tls-min-version=TLS1.3".to_owned(),
        "--log-level=warn".to_owned(),
    ];
    let probe = probe::get(
        Access::Agent(files.pki_dir().to_owned()),
        CLIENT_URL,
        "/health",
        healthy,
    );
    ServiceSpec::new(SERVICE, paths.resolve(super::KUBE))
        .args(args)
        .depends_on(PKI_CONDITION)
        .depends_on(crate::network::CONDITION)
        .readiness(
            Readiness::new(probe)
                .interval(Duration::from_millis(500))
                .timeout(Duration::from_secs(3)),
        )
}

/// etcd's `/health` body: `{"health":"true","reason":""}`.
pub fn healthy(body: &str) -> Result<(), String> {
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("/health: {e}: {body}"))?;
    match value.get("health").and_then(|h| h.as_str()) {
        Some("true") => Ok(()),
        _ => Err(format!("/health: {}", body.trim())),
    }
}
