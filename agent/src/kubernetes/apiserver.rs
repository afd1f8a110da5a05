//! kube-apiserver: the only control-plane listener beyond loopback (6443, every
//! address). Anonymous requests are refused, authorization is Node + RBAC, and Pod
//! Security admission enforces the reconciler's defaults through an admission config
//! file ([`admission_config`]).

use std::time::Duration;

use super::client::LOCAL_APISERVER;
use super::probe::{self, Access};
use super::{etcd, Files, Node, PKI_CONDITION, SERVICE_CIDR};
use crate::supervisor::{Readiness, ServiceSpec};
use crate::Paths;

pub const SERVICE: &str = cairn_api::names::service::KUBE_APISERVER;
pub const PORT: u16 = cairn_api::names::port::APISERVER;
/// The AdmissionConfiguration file in the config dir.
pub const ADMISSION_CONFIG: &str = "admission.json";
/// Bound service-account tokens name this issuer (and audience).
pub const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Admission plugins beyond the default set (PodSecurity is on by default):
/// NodeRestriction limits each kubelet to its own Node and pods.
pub const EXTRA_ADMISSION_PLUGINS: &str = "NodeRestriction";

pub fn service(paths: &Paths, files: &Files, node: &Node) -> ServiceSpec {
    let mut args = vec![
        "kube-apiserver".to_owned(),
        format!("--etcd-servers={}", etcd::CLIENT_URL),
        format!("--etcd-cafile={}", files.ca()),
        format!("--etcd-certfile={}", files.cert("etcd-client")),
        format!("--etcd-keyfile={}", files.key("etcd-client")),
        "--bind-address=0.0.0.0".to_owned(),
        format!("--secure-port={PORT}"),
        format!("--tls-cert-file={}", files.cert("kube-apiserver")),
        format!("--tls-private-key-file={}", files.key("kube-apiserver")),
        "--tls-min-version=VersionTLS13".to_owned(),
        format!("--client-ca-file={}", files.ca()),
        "--anonymous-auth=false".to_owned(),
        // Join tokens (`join_token`): Secrets of type bootstrap.kubernetes.io/token in
        // kube-system authenticate until they expire.
        "--enable-bootstrap-token-auth=true".to_owned(),
        "--authorization-mode=Node,RBAC".to_owned(),
        format!(
            "--kubelet-client-certificate={}",
            files.cert("apiserver-kubelet-client")
        ),
        format!(
            "--kubelet-client-key={}",
            files.key("apiserver-kubelet-client")
        ),
        format!("--kubelet-certificate-authority={}", files.ca()),
        "--kubelet-preferred-address-types=InternalIP,Hostname".to_owned(),
        format!(
            "--service-account-key-file={}",
            files.pki_file("service-account.pub")
        ),
        format!(
            "--service-account-signing-key-file={}",
            files.pki_file("service-account.key")
        ),
        format!("--service-account-issuer={SERVICE_ACCOUNT_ISSUER}"),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        format!("--enable-admission-plugins={EXTRA_ADMISSION_PLUGINS}"),
        format!(
            "--admission-control-config-file={}",
            files.config(ADMISSION_CONFIG)
        ),
        // Validation refuses privileged containers before Pod Security sees them
        // otherwise; Pod Security (baseline) is what decides, per namespace.
        "--allow-privileged=true".to_owned(),
        "--profiling=false".to_owned(),
    ];
    // The apiserver refuses to advertise 127.0.0.1; without an address it would
    // guess one, so it waits for the network instead (dependency below).
    if let Some(ip) = node.ip {
        args.push(format!("--advertise-address={ip}"));
    }
    let probe = probe::get(
        Access::Agent(files.pki_dir().to_owned()),
        LOCAL_APISERVER,
        "/readyz",
        probe::any_body,
    );
    ServiceSpec::new(SERVICE, paths.resolve(super::KUBE))
        .args(args)
        .depends_on(PKI_CONDITION)
        .depends_on(crate::network::CONDITION)
        .depends_on(etcd::SERVICE)
        .readiness(
            Readiness::new(probe)
                .interval(Duration::from_secs(1))
                .timeout(Duration::from_secs(5)),
        )
}

/// The `--admission-control-config-file` content: the reconciler's Pod Security
/// defaults, so the apiserver and the namespace labels agree.
pub fn admission_config() -> String {
    crate::reconciler::pod_security_admission_config()
}
