//! kube-scheduler: on loopback (10259), one instance, no leader election.

use super::probe;
use super::{apiserver, Files};
use crate::supervisor::ServiceSpec;
use crate::Paths;

pub const SERVICE: &str = cairn_api::names::service::SCHEDULER;
pub const KUBECONFIG: &str = "scheduler.kubeconfig";
pub const LEAF: &str = "scheduler";
pub const USER: &str = "system:kube-scheduler";
pub const HEALTH_URL: &str = "https://127.0.0.1:10259";

pub fn service(paths: &Paths, files: &Files) -> ServiceSpec {
    let kubeconfig = files.config(KUBECONFIG);
    let args = [
        "kube-scheduler".to_owned(),
        format!("--kubeconfig={kubeconfig}"),
        format!("--authentication-kubeconfig={kubeconfig}"),
        format!("--authorization-kubeconfig={kubeconfig}"),
        "--bind-address=127.0.0.1".to_owned(),
        "--secure-port=10259".to_owned(),
        "--leader-elect=false".to_owned(),
        "--profiling=false".to_owned(),
    ];
    ServiceSpec::new(SERVICE, paths.resolve(super::KUBE))
        .args(args)
        .depends_on(apiserver::SERVICE)
        .readiness(probe::healthz(files.pki_dir(), HEALTH_URL))
}
