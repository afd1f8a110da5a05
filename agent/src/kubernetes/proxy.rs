//! kube-proxy: Service routing in nftables mode (upstream's recommended mode for new
//! clusters; it drives the kernel through `nft -f -`, shipped from Debian's nftables
//! package). Its identity is `system:kube-proxy` (the `kube-proxy` leaf), which
//! Kubernetes' bootstrap policy binds to `system:node-proxier`; healthz and metrics on
//! loopback only.
//!
//! NodePorts listen on the node's primary address (`nodePortAddresses: primary`, the
//! nftables default): not on 127.0.0.1, which nftables mode cannot serve. A node with a
//! cluster NIC has its primary address there, so the `ip=` address (where the host's
//! port forwards arrive) is listed too. Conntrack
//! sysctls are left as the kernel sets them (`maxPerCore: 0`): a VM this size has no
//! reason to grow the table at start.

use serde_json::json;

use super::probe;
use super::{apiserver, Files, Node};
use crate::containerd::{self, cni};
use crate::supervisor::ServiceSpec;
use crate::Paths;

pub const SERVICE: &str = cairn_api::names::service::KUBE_PROXY;
pub const CONFIG: &str = "kube-proxy.json";
pub const KUBECONFIG: &str = "kube-proxy.kubeconfig";
pub const LEAF: &str = "kube-proxy";
pub const USER: &str = "system:kube-proxy";
/// Plain-HTTP healthz (loopback only); 200 once the first rule sync is done.
pub const HEALTH_URL: &str = "http://127.0.0.1:10256";
pub const METRICS_ADDRESS: &str = "127.0.0.1:10249";

pub fn service(paths: &Paths, files: &Files) -> ServiceSpec {
    let args = [
        "kube-proxy".to_owned(),
        format!("--config={}", files.config(CONFIG)),
    ];
    ServiceSpec::new(SERVICE, paths.resolve(super::KUBE))
        .args(args)
        // knftables execs `nft` from PATH.
        .env("PATH", containerd::PATH)
        .depends_on(apiserver::SERVICE)
        .readiness(probe::healthz(files.pki_dir(), HEALTH_URL))
}

/// `primary`, and the `ip=` address when the node's address is the cluster NIC's.
fn node_port_addresses(node: &Node) -> Vec<String> {
    let mut addresses = vec!["primary".to_owned()];
    addresses.extend(node.uplink.map(|ip| format!("{ip}/32")));
    addresses
}

/// The KubeProxyConfiguration (JSON, which kube-proxy reads like YAML).
pub fn config(files: &Files, node: &Node) -> String {
    let config = json!({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "nftables",
        "clientConnection": { "kubeconfig": files.config(KUBECONFIG) },
        "hostnameOverride": node.name,
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": METRICS_ADDRESS,
        // Traffic from outside the pod network to a Service is masqueraded, so the
        // reply comes back through this node.
        "clusterCIDR": cni::POD_SUBNET,
        "detectLocalMode": "ClusterCIDR",
        "nodePortAddresses": node_port_addresses(node),
        "conntrack": { "maxPerCore": 0 },
    });
    let mut text = serde_json::to_string_pretty(&config).unwrap_or_default();
    text.push('\n');
    text
}
