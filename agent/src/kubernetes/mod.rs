//! Kubernetes on the node: etcd, the control plane and the kubelet as supervised
//! services, plus the tasks that follow the cluster once it answers (`node-ready`, the
//! reconciler).
//!
//! Everything runs from one multiplexer binary, [`KUBE`] (`/usr/bin/kube <component>
//! FLAGS…`, third_party/kubernetes). One file per component: each renders its config
//! files ([`write_configs`] writes them all, after the PKI step and before the
//! supervisor starts anything) and builds its [`ServiceSpec`] with a readiness probe
//! that asks the component itself over its health endpoint ([`probe`]). Specs only name
//! files, so [`services`] needs no PKI object: if the PKI step failed, every component
//! waits on the false `pki` condition and says so.
//!
//! Start order comes from the dependencies: `pki` and `network` -> etcd ->
//! kube-apiserver -> controller-manager, scheduler; containerd + images +
//! kube-apiserver -> kubelet. Credentials are the PKI leaves (`pki/leaves.rs`); every
//! listener is TLS 1.3 with client-certificate authentication against the cluster CA,
//! and only the apiserver (6443) and the kubelet (10250) listen beyond loopback.

pub mod apiserver;
pub mod client;
pub mod cluster_dns;
pub mod controller_manager;
pub mod csr_approver;
pub mod dns_upstream;
pub mod etcd;
pub mod join;
pub mod join_token;
pub mod kubeconfig;
pub mod kubelet;
pub mod node_ready;
pub mod pod_routes;
pub mod probe;
pub mod proxy;
pub mod scheduler;
pub mod spent_tokens;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use cairn_api::node_config::Role;

use crate::conditions::Conditions;
use crate::pki::Pki;
use crate::supervisor::ServiceSpec;
use crate::{containerd, Paths};

/// The multiplexer; the first argument picks the component.
pub const KUBE: &str = "/usr/bin/kube";
/// The node's state: PKI, etcd data (persistent once the data disk exists).
pub const STATE_DIR: &str = "/var/lib/cairn";
/// Where [`crate::pki::ensure`] keeps the CA and the leaves.
pub const PKI_DIR: &str = "/var/lib/cairn/pki";
/// Config files and kubeconfigs, rewritten at every boot.
pub const CONFIG_DIR: &str = "/etc/kubernetes";
/// The Service CIDR; its first address is the `kubernetes` Service, its tenth the
/// cluster DNS ([`cluster_dns::SERVICE_IP`]).
pub const SERVICE_CIDR: &str = cairn_api::names::network::SERVICE_CIDR;
pub const SERVICE_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 96, 0, 1));
pub const CLUSTER_DOMAIN: &str = "cluster.local";
/// The PKI step's condition.
pub const PKI_CONDITION: &str = cairn_api::names::condition::PKI;

/// What the components need to know about the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Kubernetes node name (from the identity).
    pub name: String,
    /// The node's Kubernetes address: the cluster NIC's with `[cluster]` in the node
    /// config, else the one from `ip=`; `None` without network (the apiserver then
    /// waits).
    pub ip: Option<Ipv4Addr>,
    /// The address from `ip=` when it is not [`Node::ip`] (a cluster NIC exists): the
    /// host's port forwards arrive there, so NodePorts listen on it too.
    pub uplink: Option<Ipv4Addr>,
}

#[derive(Debug, thiserror::Error)]
pub enum KubernetesError {
    #[error("cannot create {}", .0.display())]
    CreateDir(PathBuf, #[source] std::io::Error),
    #[error("cannot read {}", .0.display())]
    Read(PathBuf, #[source] std::io::Error),
    #[error("cannot write {}", .0.display())]
    Write(PathBuf, #[source] std::io::Error),
}

/// Where the components' files are, under a [`Paths`] root.
#[derive(Debug, Clone)]
pub struct Files {
    pki: PathBuf,
    config: PathBuf,
    state: PathBuf,
}

impl Files {
    pub fn new(paths: &Paths) -> Self {
        Self {
            pki: paths.resolve(PKI_DIR),
            config: paths.resolve(CONFIG_DIR),
            state: paths.resolve(STATE_DIR),
        }
    }

    pub fn pki_dir(&self) -> &Path {
        &self.pki
    }

    pub fn ca(&self) -> String {
        self.pki_file("ca.crt")
    }

    pub fn cert(&self, leaf: &str) -> String {
        self.pki_file(&format!("{leaf}.crt"))
    }

    pub fn key(&self, leaf: &str) -> String {
        self.pki_file(&format!("{leaf}.key"))
    }

    /// A file in [`CONFIG_DIR`].
    pub fn config(&self, name: &str) -> String {
        self.config.join(name).display().to_string()
    }

    /// A directory in [`STATE_DIR`].
    pub fn state(&self, name: &str) -> String {
        self.state.join(name).display().to_string()
    }

    /// A file in the PKI directory.
    pub fn pki_file(&self, name: &str) -> String {
        self.pki.join(name).display().to_string()
    }
}

/// Every Kubernetes service of a node in `role`: a worker runs only the kubelet and
/// kube-proxy.
pub fn services(paths: &Paths, node: &Node, role: Role) -> Vec<ServiceSpec> {
    let files = Files::new(paths);
    match role {
        Role::ControlPlane => vec![
            etcd::service(paths, &files, node),
            apiserver::service(paths, &files, node),
            controller_manager::service(paths, &files),
            scheduler::service(paths, &files),
            proxy::service(paths, &files, role),
            cluster_dns::service(paths, &files),
            kubelet::service(paths, &files, node, role),
        ],
        Role::Worker => vec![
            kubelet::service(paths, &files, node, role),
            proxy::service(paths, &files, role),
        ],
    }
}

/// A worker's config files: the kubelet's and kube-proxy's; their credentials come
/// from joining ([`join`]). Run before the supervisor starts.
pub fn write_worker_configs(paths: &Paths, node: &Node) -> Result<(), KubernetesError> {
    let files = Files::new(paths);
    create_dir(Path::new(&files.config("")))?;
    write_file(
        &files.config(kubelet::CONFIG),
        &kubelet::config(&files, Role::Worker),
        0o644,
    )?;
    write_file(
        &files.config(proxy::CONFIG),
        &proxy::config(paths, &files, node, Role::Worker),
        0o644,
    )
}

/// Writes every component's config files and kubeconfigs (the latter hold private
/// keys: mode 0600). Run after the PKI exists and before the supervisor starts.
pub fn write_configs(paths: &Paths, pki: &Pki, node: &Node) -> Result<(), KubernetesError> {
    let files = Files::new(paths);
    create_dir(Path::new(&files.config("")))?;
    write_file(
        &files.config(apiserver::ADMISSION_CONFIG),
        &apiserver::admission_config(),
        0o644,
    )?;
    for (file, leaf, user) in [
        (
            controller_manager::KUBECONFIG,
            controller_manager::LEAF,
            controller_manager::USER,
        ),
        (scheduler::KUBECONFIG, scheduler::LEAF, scheduler::USER),
        (proxy::KUBECONFIG, proxy::LEAF, proxy::USER),
        (
            cluster_dns::KUBECONFIG,
            cluster_dns::LEAF,
            cluster_dns::USER,
        ),
        (
            kubelet::KUBECONFIG,
            kubelet::LEAF,
            &format!("system:node:{}", node.name),
        ),
    ] {
        let cert = read(Path::new(&files.cert(leaf)))?;
        let key = read(Path::new(&files.key(leaf)))?;
        let text = kubeconfig::render(client::LOCAL_APISERVER, pki.ca_pem(), &cert, &key, user);
        write_file(&files.config(file), &text, 0o600)?;
    }
    // The kubelet also reads /etc/passwd (its user-namespace mappings); the image
    // ships Debian's base-passwd for it (image/cairn.toml).
    write_file(
        &files.config(kubelet::CONFIG),
        &kubelet::config(&files, Role::ControlPlane),
        0o644,
    )?;
    write_file(
        &files.config(proxy::CONFIG),
        &proxy::config(paths, &files, node, Role::ControlPlane),
        0o644,
    )?;
    // The network step wrote resolv.conf before this; no name server there means
    // CoreDNS answers cluster names only.
    let resolv_conf = paths.resolve(cluster_dns::RESOLV_CONF);
    let upstream = std::fs::read_to_string(&resolv_conf)
        .map(|text| cluster_dns::has_nameserver(&text))
        .unwrap_or(false);
    write_file(
        &files.config(cluster_dns::COREFILE),
        &cluster_dns::corefile(&files, node, upstream),
        0o644,
    )
}

/// The tasks that follow the cluster: `node-ready` from the Node object, the routes
/// to other nodes' pods, and the reconciler and the serving-CSR approver once the
/// apiserver is ready. Spawn once, after the PKI step succeeded.
pub fn spawn_followers(
    paths: &Paths,
    node: &Node,
    pod_network: pod_routes::PodNetwork,
    conditions: &Conditions,
) {
    let pki_dir = Files::new(paths).pki_dir().to_owned();
    let source = node_ready::Source::Agent(pki_dir.clone());
    tokio::spawn(pod_routes::run(
        source.clone(),
        node.name.clone(),
        pod_network,
        conditions.clone(),
    ));
    tokio::spawn(node_ready::run(
        source,
        node.name.clone(),
        conditions.clone(),
    ));
    tokio::spawn(reconcile_when_ready(
        pki_dir,
        node.clone(),
        conditions.clone(),
    ));
}

/// A worker's tasks: joining the cluster (`joined`, which the kubelet waits for), then
/// `node-ready` from its Node object and the routes to other nodes' pods, read with
/// the kubelet's credentials.
pub fn spawn_worker_followers(
    paths: &Paths,
    node: &Node,
    join: Option<cairn_api::node_config::Join>,
    pod_network: pod_routes::PodNetwork,
    conditions: &Conditions,
) {
    let source = node_ready::Source::Kubelet(paths.resolve(join::KUBELET_KUBECONFIG));
    tokio::spawn(join::run(
        paths.clone(),
        join,
        node.name.clone(),
        conditions.clone(),
    ));
    tokio::spawn(pod_routes::run(
        source.clone(),
        node.name.clone(),
        pod_network,
        conditions.clone(),
    ));
    tokio::spawn(node_ready::run(
        source,
        node.name.clone(),
        conditions.clone(),
    ));
}

/// Every object the reconciler keeps for this node: the built-in ones and the
/// cluster DNS Service with its endpoints.
pub fn declared_objects(node: &Node) -> Vec<crate::reconciler::Declared> {
    let mut objects = crate::reconciler::builtin_objects();
    objects.extend(cluster_dns::objects(node));
    objects
}

/// Waits for `kube-apiserver`, then runs the reconciler, the serving-CSR approver and
/// the deletion of spent join tokens for good, on one client.
async fn reconcile_when_ready(pki_dir: PathBuf, node: Node, conditions: Conditions) {
    use crate::reconciler;
    conditions.set(reconciler::CONDITION, false, "waiting for kube-apiserver");
    conditions.wait_true(apiserver::SERVICE).await;
    match client::client(&pki_dir, client::LOCAL_APISERVER) {
        Ok(client) => {
            tokio::spawn(csr_approver::run(client.clone()));
            tokio::spawn(spent_tokens::run(client.clone()));
            reconciler::run(client, conditions, declared_objects(&node)).await
        }
        Err(err) => {
            let reason = cairn_api::error_chain(&err);
            tracing::error!("reconciler: {reason}");
            conditions.set(reconciler::CONDITION, false, reason);
        }
    }
}

/// The kubelet also needs containerd's socket path; kept here so the components only
/// depend on this module.
pub(crate) fn containerd_endpoint() -> String {
    format!("unix://{}", containerd::SOCKET)
}

fn create_dir(dir: &Path) -> Result<(), KubernetesError> {
    std::fs::create_dir_all(dir).map_err(|e| KubernetesError::CreateDir(dir.to_owned(), e))
}

fn read(path: &Path) -> Result<String, KubernetesError> {
    std::fs::read_to_string(path).map_err(|e| KubernetesError::Read(path.to_owned(), e))
}

fn write_file(path: &str, text: &str, mode: u32) -> Result<(), KubernetesError> {
    let path = Path::new(path);
    crate::atomic_write::write_atomic(path, text.as_bytes(), mode)
        .map_err(|e| KubernetesError::Write(path.to_owned(), e))
}

#[cfg(test)]
mod tests;
