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
use super::{apiserver, join, kubelet, Files, Node};
use crate::containerd::{self, cni};
use crate::supervisor::ServiceSpec;
use crate::Paths;
use cairn_api::node_config::Role;

pub const SERVICE: &str = cairn_api::names::service::KUBE_PROXY;
pub const CONFIG: &str = "kube-proxy.json";
pub const KUBECONFIG: &str = "kube-proxy.kubeconfig";
pub const LEAF: &str = "kube-proxy";
pub const USER: &str = "system:kube-proxy";
/// Plain-HTTP healthz (loopback only); 200 once the first rule sync is done.
pub const HEALTH_URL: &str = "http://127.0.0.1:10256";
pub const METRICS_ADDRESS: &str = "127.0.0.1:10249";

pub fn service(paths: &Paths, files: &Files, role: Role) -> ServiceSpec {
    let args = [
        "kube-proxy".to_owned(),
        format!("--config={}", files.config(CONFIG)),
    ];
    // A worker's kube-proxy uses the kubelet's credentials, which exist once the
    // kubelet is up (it writes them after its TLS bootstrap).
    let after = match role {
        Role::ControlPlane => apiserver::SERVICE,
        Role::Worker => kubelet::SERVICE,
    };
    ServiceSpec::new(SERVICE, paths.resolve(super::KUBE))
        .args(args)
        // knftables execs `nft` from PATH.
        .env("PATH", containerd::PATH)
        .depends_on(after)
        .readiness(probe::healthz(files.pki_dir(), HEALTH_URL))
}

/// The kubeconfig kube-proxy reads: its own leaf's on a control-plane node; on a
/// worker, which holds no CA key to issue one, the kubelet's (`system:node:<name>`,
/// which the control plane binds to `system:node-proxier`).
fn kubeconfig(paths: &Paths, files: &Files, role: Role) -> String {
    match role {
        Role::ControlPlane => files.config(KUBECONFIG),
        Role::Worker => paths
            .resolve(join::KUBELET_KUBECONFIG)
            .display()
            .to_string(),
    }
}

/// `primary`, and the `ip=` address when the node's address is the cluster NIC's.
fn node_port_addresses(node: &Node) -> Vec<String> {
    let mut addresses = vec!["primary".to_owned()];
    addresses.extend(node.uplink.map(|ip| format!("{ip}/32")));
    addresses
}

/// The KubeProxyConfiguration (JSON, which kube-proxy reads like YAML).
pub fn config(paths: &Paths, files: &Files, node: &Node, role: Role) -> String {
    let config = json!({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "nftables",
        "clientConnection": { "kubeconfig": kubeconfig(paths, files, role) },
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
