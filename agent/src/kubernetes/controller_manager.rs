//! kube-controller-manager: on loopback (10257), one instance, so no leader election.
//! Controllers use per-controller service-account credentials, signed with the key the
//! apiserver verifies.
//!
//! For machines that join ([`super::join_token`]): it signs approved CSRs with the
//! cluster CA (`csrsigning`; the built-in approver approves kubelet client CSRs that
//! RBAC allows), deletes expired bootstrap tokens (`tokencleaner`, off by default
//! upstream), and gives every Node a /24 of the pod network (`nodeipam`).

use super::probe;
use super::{apiserver, Files, SERVICE_CIDR};
use crate::supervisor::ServiceSpec;
use crate::Paths;

pub const SERVICE: &str = cairn_api::names::service::CONTROLLER_MANAGER;
pub const KUBECONFIG: &str = "controller-manager.kubeconfig";
pub const LEAF: &str = "controller-manager";
pub const USER: &str = "system:kube-controller-manager";
pub const HEALTH_URL: &str = "https://127.0.0.1:10257";
/// Each Node's share of the pod network: a /24 (254 pods, above the kubelet's 110).
pub const NODE_CIDR_MASK: u8 = 24;

pub fn service(paths: &Paths, files: &Files) -> ServiceSpec {
    let kubeconfig = files.config(KUBECONFIG);
    let args = [
        "kube-controller-manager".to_owned(),
        format!("--kubeconfig={kubeconfig}"),
        // Delegated authn/authz of its own endpoint (only /healthz is used, which is
        // always allowed); without them it logs warnings at every start.
        format!("--authentication-kubeconfig={kubeconfig}"),
        format!("--authorization-kubeconfig={kubeconfig}"),
        "--bind-address=127.0.0.1".to_owned(),
        "--secure-port=10257".to_owned(),
        format!(
            "--service-account-private-key-file={}",
            files.pki_file("service-account.key")
        ),
        format!("--root-ca-file={}", files.ca()),
        "--use-service-account-credentials=true".to_owned(),
        "--controllers=*,tokencleaner".to_owned(),
        format!("--cluster-signing-cert-file={}", files.ca()),
        format!("--cluster-signing-key-file={}", files.pki_file("ca.key")),
        "--allocate-node-cidrs=true".to_owned(),
        format!("--cluster-cidr={}", cairn_api::names::network::POD_CIDR),
        format!("--node-cidr-mask-size={NODE_CIDR_MASK}"),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        "--cluster-name=cairn".to_owned(),
        "--leader-elect=false".to_owned(),
        "--profiling=false".to_owned(),
    ];
    ServiceSpec::new(SERVICE, paths.resolve(super::KUBE))
        .args(args)
        .depends_on(apiserver::SERVICE)
        .readiness(probe::healthz(files.pki_dir(), HEALTH_URL))
}
