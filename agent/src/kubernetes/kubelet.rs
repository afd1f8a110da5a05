//! The kubelet: containerd's CRI, cgroupfs (no systemd on the node), x509 and webhook
//! authentication with anonymous access off, webhook authorization, TLS 1.3 on its
//! API (10250) with the `kubelet-server` leaf. Its identity is `system:node:<name>`
//! (the `kubelet-client` leaf), so the Node authorizer and NodeRestriction apply.
//!
//! Sized for a small VM: 200m CPU and 300Mi reserved for the system (the seed's
//! numbers), hard eviction at 100Mi free memory and 5 % free disk. Image garbage
//! collection uses upstream's thresholds (collect unused images from 85 % disk use
//! down to 80 %, none younger than 2 minutes, no age limit): pulled and loaded images
//! can come back the way they came, and the preloaded ones, which cannot, are pinned
//! (`io.cri-containerd.pinned`), which the kubelet never collects.

use serde_json::json;

use super::probe;
use super::{cluster_dns, join, Files, Node, CLUSTER_DOMAIN, PKI_CONDITION};
use crate::containerd;
use crate::supervisor::ServiceSpec;
use crate::Paths;
use cairn_api::node_config::Role;

pub const SERVICE: &str = cairn_api::names::service::KUBELET;
pub const CONFIG: &str = "kubelet.json";
pub const KUBECONFIG: &str = "kubelet.kubeconfig";
pub const LEAF: &str = "kubelet-client";
pub const SERVING_LEAF: &str = "kubelet-server";
pub const ROOT_DIR: &str = "/var/lib/kubelet";
/// The kubelet's plain-HTTP healthz listener (loopback only).
pub const HEALTH_URL: &str = "http://127.0.0.1:10248";

pub fn service(paths: &Paths, files: &Files, node: &Node, role: Role) -> ServiceSpec {
    let mut args = vec![
        "kubelet".to_owned(),
        format!("--config={}", files.config(CONFIG)),
        format!("--root-dir={}", paths.resolve(ROOT_DIR).display()),
        format!("--hostname-override={}", node.name),
    ];
    // A worker's kubelet bootstraps its client certificate with the join token and
    // keeps it (and the kubeconfig naming it) on the data disk.
    let (kubeconfig, credentials, readiness) = match role {
        Role::ControlPlane => {
            let readiness = probe::healthz(files.pki_dir(), HEALTH_URL);
            (files.config(KUBECONFIG), PKI_CONDITION, readiness)
        }
        Role::Worker => {
            args.push(format!(
                "--bootstrap-kubeconfig={}",
                files.config(join::BOOTSTRAP_KUBECONFIG)
            ));
            args.push(format!(
                "--cert-dir={}",
                paths.resolve(join::CERT_DIR).display()
            ));
            let kubeconfig = paths.resolve(join::KUBELET_KUBECONFIG);
            // Ready once it also holds its client certificate (it serves healthz
            // while it still bootstraps in the background).
            let certificate = paths.resolve(join::CERT_DIR).join(join::CLIENT_CERT);
            let readiness = probe::healthz_with(files.pki_dir(), HEALTH_URL, certificate);
            (kubeconfig.display().to_string(), join::CONDITION, readiness)
        }
    };
    args.push(format!("--kubeconfig={kubeconfig}"));
    if let Some(ip) = node.ip {
        args.push(format!("--node-ip={ip}"));
    }
    ServiceSpec::new(SERVICE, paths.resolve(super::KUBE))
        .args(args)
        // CNI plugins exec iptables from /usr/sbin; the kubelet itself looks for
        // mount helpers and iptables on PATH.
        .env("PATH", containerd::PATH)
        .depends_on(containerd::SERVICE)
        .depends_on(containerd::IMAGES_CONDITION)
        // Not on kube-apiserver: the kubelet is built to start before its apiserver
        // (it retries registration), and its own start (Go init, runtime and cgroup
        // setup: several seconds under TCG) then overlaps the apiserver's, which
        // leaves most of the second vCPU idle (`make profile-boot`). Its requests need
        // no RBAC role: the Node authorizer admits a kubelet's own objects.
        .depends_on(credentials)
        .depends_on(crate::network::CONDITION)
        .readiness(readiness)
}

/// The KubeletConfiguration (JSON, which the kubelet reads like YAML). A control-plane
/// node's kubelet serves with the `kubelet-server` leaf; a worker's asks for its
/// serving certificate by CSR (`serverTLSBootstrap`) and renews its client certificate
/// as it nears expiry (`rotateCertificates`). Both trust client certificates of the
/// cluster CA (on a worker, the one its join pinned).
pub fn config(files: &Files, role: Role) -> String {
    let mut config = json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "containerRuntimeEndpoint": super::containerd_endpoint(),
        "cgroupDriver": "cgroupfs",
        "failSwapOn": false,
        "authentication": {
            "anonymous": { "enabled": false },
            "webhook": { "enabled": true },
            "x509": { "clientCAFile": files.ca() },
        },
        "authorization": { "mode": "Webhook" },
        "tlsMinVersion": "VersionTLS13",
        "rotateCertificates": role == Role::Worker,
        "serverTLSBootstrap": role == Role::Worker,
        // Pods with dnsPolicy Default get the node's resolvers; ClusterFirst pods
        // (the default) get the cluster DNS Service and the search path of their
        // namespace.
        "resolvConf": cluster_dns::RESOLV_CONF,
        "clusterDNS": [cluster_dns::SERVICE_IP.to_string()],
        "clusterDomain": CLUSTER_DOMAIN,
        "protectKernelDefaults": false,
        // The seed's setting: nothing in the node relies on the KUBE-* util chains.
        "makeIPTablesUtilChains": false,
        "systemReserved": { "cpu": "200m", "memory": "300Mi" },
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "5%",
            "nodefs.inodesFree": "5%",
            "imagefs.available": "5%",
        },
        // Volume usage (statfs or a walk, never du) every 10 s instead of every minute:
        // cheap on a node this size, and fresh figures in the stats summary.
        "volumeStatsAggPeriod": "10s",
        "imageGCHighThresholdPercent": 85,
        "imageGCLowThresholdPercent": 80,
        "imageMinimumGCAge": "2m",
        "imageMaximumGCAge": "0s",
        "readOnlyPort": 0,
    });
    if role == Role::ControlPlane {
        config["tlsCertFile"] = files.cert(SERVING_LEAF).into();
        config["tlsPrivateKeyFile"] = files.key(SERVING_LEAF).into();
    }
    let mut text = serde_json::to_string_pretty(&config).unwrap_or_default();
    text.push('\n');
    text
}
