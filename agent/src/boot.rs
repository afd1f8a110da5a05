//! The boot sequence: [`run`] and its steps, in order.

use std::convert::Infallible;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use time::OffsetDateTime;

use cairn_api::names::condition;
use cairn_api::node_config::{Cluster, NodeConfig, Role};

use crate::api::owner::Offered;
use crate::conditions::Conditions;
use crate::identity::{self, DiskKey, EphemeralKey, Identity, IdentityError, KeySource};
use crate::kubernetes::pod_routes::{ClusterNic, PodNetwork};
use crate::kubernetes::{self, Node};
use crate::logbuf::Logs;
use crate::modules::{self, ModuleError};
use crate::mounts::{self, MountError, MOUNTS};
use crate::pid1::{self, LoopError, Pid1, PowerRequester, ShutdownRequest};
use crate::pki::{self, NodeSubject, Pki};
use crate::ready::{ReadyError, ReadyReport};
use crate::reaper::Reaper;
use crate::rootfs::{self, RootError, RootState};
use crate::storage::{self, Storage, StorageError};
use crate::supervisor::{Supervisor, SupervisorError};
use crate::syscall::Syscall;
use crate::{console, containerd, network, node_config, services, Paths};

/// RLIMIT_NOFILE for the agent and everything it starts (containerd, etcd and the
/// kubelet each want far more than the kernel's default 1024). Equal to the default
/// fs.nr_open, the most setrlimit(2) allows without raising that sysctl.
pub const NOFILE_LIMIT: u64 = 1 << 20;

/// Why the boot could not continue; the binary prints the chain and powers off.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("cannot leave the initramfs root")]
    Root(#[from] RootError),
    #[error("cannot mount the pseudo file systems")]
    Mounts(#[from] MountError),
    #[error("cannot load kernel modules")]
    Modules(#[from] ModuleError),
    #[error("cannot prepare storage")]
    Storage(#[from] StorageError),
    #[error("cannot establish the node identity")]
    Identity(#[from] IdentityError),
    #[error("cannot start the services")]
    Services(#[from] SupervisorError),
    #[error("cannot report readiness")]
    Ready(#[from] ReadyError),
    #[error("main loop failed")]
    Loop(#[from] LoopError),
}

/// Whether the node may act as the node its data disk says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trust {
    /// The stored key (or one created on a blank disk, or an ephemeral node's key).
    Established,
    /// The stored key is unreadable; the node runs under a stand-in key for its names
    /// only, and nothing that would bind that key to the disk's cluster data starts.
    KeyUnreadable,
}

/// How long the runtime's leftover tasks (log readers, debug connections) get to end
/// once the services have stopped.
const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(1);

/// Boots the node and serves as PID 1 until a power request arrives, which it returns
/// after stopping the services. On the first run (still on rootfs) it does not return:
/// it re-execs `/init`. `logs` already holds the agent's own log (see `main`).
pub fn run(sys: Arc<dyn Syscall>, paths: &Paths, logs: Logs) -> Result<ShutdownRequest, BootError> {
    let boot = Boot {
        sys: &*sys,
        paths,
        conditions: Conditions::new(),
        logs,
    };
    boot.leave_initramfs_root()?;
    let system_cgroup = boot.mount_filesystems()?;
    boot.raise_limits();
    boot.load_modules()?;
    let settings = boot.read_node_config();
    let pod_network = boot.prepare_pod_network(&settings);
    let storage = boot.prepare_storage()?;
    let (identity, trust) = boot.establish_identity(&storage)?;
    // The synchronous steps are done; the rest shares one runtime with the PID 1 loop.
    let runtime = pid1::runtime()?;
    let request = runtime.block_on(boot.serve(
        sys.clone(),
        &identity,
        trust,
        &settings,
        pod_network,
        system_cgroup.as_deref(),
    ));
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    request
}

struct Boot<'a> {
    sys: &'a dyn Syscall,
    paths: &'a Paths,
    conditions: Conditions,
    logs: Logs,
}

impl Boot<'_> {
    /// First, before any mount: mounts made on rootfs would not follow the moved root,
    /// and the re-exec would have to repeat them. See [`rootfs`] for the choice.
    fn leave_initramfs_root(&self) -> Result<(), BootError> {
        let marker = std::env::var_os(rootfs::MARKER_ENV);
        match rootfs::root_state(self.paths, marker.as_deref()) {
            RootState::Moved => {
                rootfs::clean_up(self.paths);
                tracing::info!("running on the moved root");
                Ok(())
            }
            RootState::Initramfs => {
                let (argv, env) = (std::env::args_os(), std::env::vars_os());
                let never: Infallible =
                    rootfs::move_root_and_reexec(self.sys, self.paths, argv, env)?;
                match never {}
            }
        }
    }

    /// Second: everything after this reads /proc or /sys or writes /run. Returns the
    /// services' parent cgroup, `None` if it could not be made (the services then run
    /// in the root cgroup, unaccounted but working).
    fn mount_filesystems(&self) -> Result<Option<PathBuf>, BootError> {
        mounts::mount_all(self.sys, self.paths, MOUNTS)?;
        let mut reason = format!("mounted {} file systems", MOUNTS.len());
        // Not fatal: without delegated controllers only the kubelet fails, visibly.
        match mounts::enable_controllers(self.paths) {
            Ok(enabled) => reason.push_str(&format!("; cgroup controllers {}", enabled.join(" "))),
            Err(err) => tracing::warn!("cannot enable cgroup controllers for children: {err}"),
        }
        let system_cgroup = match mounts::create_system_cgroup(self.paths) {
            Ok(dir) => {
                reason.push_str(&format!("; services run below {}", mounts::SYSTEM_CGROUP));
                Some(dir)
            }
            Err(err) => {
                tracing::warn!("cannot create {}: {err}", mounts::SYSTEM_CGROUP);
                None
            }
        };
        tracing::info!("{reason}");
        self.conditions.set(condition::MOUNTS, true, reason);
        Ok(system_cgroup)
    }

    /// Before any child exists, because children inherit limits (getrlimit(2)). Not
    /// fatal: a node with the default limit boots, its services just hit it sooner.
    fn raise_limits(&self) {
        if let Err(errno) = self.sys.set_nofile_limit(NOFILE_LIMIT) {
            tracing::warn!("failed to raise RLIMIT_NOFILE to {NOFILE_LIMIT}: {errno}");
        }
    }

    /// After the mounts (the kernel may call out to /sys and /dev for devices the
    /// modules bring up) and before anything needs a virtio device, overlay or netfilter.
    fn load_modules(&self) -> Result<(), BootError> {
        let summary = modules::load_listed(self.sys, self.paths)?;
        let reason = format!(
            "loaded {} kernel modules ({} already loaded)",
            summary.loaded, summary.already_loaded
        );
        tracing::info!("{reason}");
        self.conditions.set(condition::MODULES, true, reason);
        Ok(())
    }

    /// After the modules (netfilter) and the node config (the cluster network), before
    /// any child: forwarding and the pods' masquerade rule, which must hold before the
    /// first pod sends a packet. Not fatal: the outcome goes into `pod-routes`.
    fn prepare_pod_network(&self, settings: &node_config::Loaded) -> Result<String, String> {
        let cluster = settings.config.cluster.as_ref();
        let network = cluster.and_then(|c| c.address().ok());
        let prepared = containerd::cni::prepare_pod_network(self.sys, self.paths, network);
        match &prepared {
            Ok(done) => tracing::info!("pod network: {done}"),
            Err(reason) => tracing::error!("pod network: {reason}"),
        }
        prepared
    }

    /// After the modules (`qemu_fw_cfg` shows the launcher's item in sysfs) and before
    /// anything configured by it. Never fatal: see [`node_config`].
    fn read_node_config(&self) -> node_config::Loaded {
        let loaded = node_config::load(self.paths);
        match loaded.ok {
            true => tracing::info!("node config: {}", loaded.reason),
            false => tracing::error!("node config: {}", loaded.reason),
        }
        self.conditions
            .set(condition::NODE_CONFIG, loaded.ok, loaded.reason.clone());
        loaded
    }

    /// After the modules (virtio_blk) and before identity, whose key lives on the
    /// disk. Never fatal for want of a disk: the node then runs ephemeral and says so.
    fn prepare_storage(&self) -> Result<Storage, BootError> {
        let storage = storage::prepare(self.sys, self.paths)?;
        let reason = storage.reason();
        match storage.is_persistent() {
            true => tracing::info!("storage: {reason}"),
            false => tracing::warn!("storage: {reason}"),
        }
        self.conditions
            .set(condition::STORAGE, storage.is_persistent(), reason);
        Ok(storage)
    }

    /// After storage (the key is on the data disk) and module loading (virtio-rng,
    /// when listed, feeds the CRNG a new key needs); before anything that names the
    /// node. A damaged key file is left for a person: a new key would make this a new
    /// node over the old node's etcd data and certificates. The node boots far enough
    /// to be looked at (network, debug service) under a stand-in key, `identity` is
    /// false and says why, and Kubernetes does not start.
    fn establish_identity(&self, storage: &Storage) -> Result<(Identity, Trust), BootError> {
        let disk_key = DiskKey {
            path: self.paths.resolve(identity::KEY_FILE),
        };
        let source: &dyn KeySource = match storage.is_persistent() {
            true => &disk_key,
            false => &EphemeralKey,
        };
        let identity = match identity::establish(self.sys, self.paths, source) {
            Ok(identity) => identity,
            Err(err @ (IdentityError::KeyLength(..) | IdentityError::ReadKey(..))) => {
                let reason = format!(
                    "{}; Kubernetes not started: a new key would make this a new node over \
                     the stored cluster data (repair the file, or remove it for a new \
                     identity, and reboot)",
                    cairn_api::error_chain(&err)
                );
                tracing::error!("identity: {reason}");
                let stand_in = identity::establish(self.sys, self.paths, &EphemeralKey)?;
                self.conditions.set(condition::IDENTITY, false, reason);
                return Ok((stand_in, Trust::KeyUnreadable));
            }
            Err(err) => return Err(err.into()),
        };
        let persistence = match storage.is_persistent() {
            true => "key on the data disk",
            false => "ephemeral key",
        };
        let reason = format!(
            "node {} ({}), {persistence}",
            identity.node_id(),
            identity.node_name()
        );
        tracing::info!("{reason}");
        self.conditions.set(condition::IDENTITY, true, reason);
        Ok((identity, Trust::Established))
    }

    /// The asynchronous part of the boot, then the PID 1 loop until a power request;
    /// the services are stopped before it returns, whatever ended the loop.
    async fn serve(
        &self,
        sys: Arc<dyn Syscall>,
        identity: &Identity,
        trust: Trust,
        settings: &node_config::Loaded,
        prepared: Result<String, String>,
        system_cgroup: Option<&Path>,
    ) -> Result<ShutdownRequest, BootError> {
        let reaper = Arc::new(Mutex::new(Reaper::default()));
        let mut pid1 = Pid1::start(sys, reaper.clone())?;
        let node = self.configure_network(identity, settings).await;
        let supervisor = Supervisor::new(reaper, self.conditions.clone(), self.logs.clone());
        let config = &settings.config;
        let role = config
            .cluster
            .as_ref()
            .map_or(Role::ControlPlane, |c| c.role);
        let pod_network = PodNetwork {
            nic: cluster_nic(config.cluster.as_ref(), &node),
            prepared,
        };
        // The cluster's PKI (a control-plane node's), and the CA that signs the node
        // API's certificate: the cluster CA, or a worker's node-local one.
        let (pki, api_ca) = match (trust, role) {
            (Trust::Established, Role::ControlPlane) => {
                let pki = self.create_pki(&node);
                let have_pki = pki.is_some();
                self.start_services(&supervisor, &node, role, have_pki, config, system_cgroup)?;
                self.follow(&node, role, have_pki, pod_network, config);
                (pki.clone(), pki)
            }
            (Trust::Established, Role::Worker) => {
                let local = self.create_node_local_ca();
                self.start_services(&supervisor, &node, role, false, config, system_cgroup)?;
                self.follow(&node, role, false, pod_network, config);
                (None, local)
            }
            (Trust::KeyUnreadable, _) => {
                self.hold_services();
                (None, None)
            }
        };
        let apis = self.start_apis(&supervisor, &node, pki, api_ca, pid1.requester(), settings);
        self.announce_ready(identity, &apis)?;
        let request = pid1.shutdown_request().await;
        tracing::info!("stopping services");
        let started = std::time::Instant::now();
        supervisor.stop_all().await;
        tracing::info!("services stopped in {:.1?}", started.elapsed());
        self.release_storage().await;
        tracing::info!("shutdown took {:.1?}", started.elapsed());
        Ok(request?)
    }

    /// Last, after the services: what they left running (containers, shims) ends, and
    /// everything on the data disk is unmounted, so the next boot's check is clean.
    async fn release_storage(&self) {
        let left = storage::release::end_processes(self.sys, self.paths).await;
        let problems = storage::release::unmount_below(self.sys, self.paths, storage::MOUNT_POINT);
        match (left, problems.is_empty()) {
            (0, true) => tracing::info!(
                "storage: all processes ended, {} unmounted",
                storage::MOUNT_POINT
            ),
            _ => tracing::warn!("storage: {left} processes left; {}", problems.join("; ")),
        }
    }

    /// After identity (`/etc/hosts` names the node) and before any service: etcd, the
    /// apiserver and containerd's CRI need the address, `localhost` and DNS. Never
    /// fatal: a node without network still boots, and `network` says why.
    async fn configure_network(&self, identity: &Identity, settings: &node_config::Loaded) -> Node {
        let name = identity.node_name();
        let cluster = settings.config.cluster.as_ref();
        let config = network::configure(
            self.paths,
            &name,
            &self.conditions,
            network::DEVICE_WAIT,
            cluster,
        )
        .await;
        Node {
            name,
            ip: config.as_ref().map(network::Configured::node_ip),
            uplink: (config.as_ref())
                .filter(|c| c.cluster.is_some())
                .map(|c| c.uplink.address),
        }
    }

    /// After the network (the apiserver's and kubelet's certificates name the node IP)
    /// and before the services that read the certificates and the kubeconfigs written
    /// from them. Not fatal: without a PKI the Kubernetes services wait on the false
    /// `pki` condition, which says why, and the rest of the node still boots.
    fn create_pki(&self, node: &Node) -> Option<Arc<Pki>> {
        let subject = NodeSubject {
            node_name: node.name.clone(),
            node_ip: node.ip.map(IpAddr::V4),
            service_ip: kubernetes::SERVICE_IP,
        };
        let dir = self.paths.resolve(kubernetes::PKI_DIR);
        let created = pki::ensure(&dir, &subject, OffsetDateTime::now_utc())
            .map_err(|err| cairn_api::error_chain(&err))
            .and_then(|pki| {
                kubernetes::write_configs(self.paths, &pki, node)
                    .map(|()| pki)
                    .map_err(|err| cairn_api::error_chain(&err))
            });
        match created {
            Ok(pki) => {
                let reason = format!(
                    "CA and {} certificates for {} in {}; kubeconfigs written",
                    pki::LEAVES.len(),
                    node.name,
                    dir.display()
                );
                tracing::info!("{reason}");
                self.conditions.set(kubernetes::PKI_CONDITION, true, reason);
                Some(Arc::new(pki))
            }
            Err(reason) => {
                tracing::error!("pki: {reason}");
                self.conditions
                    .set(kubernetes::PKI_CONDITION, false, reason);
                None
            }
        }
    }

    /// A worker's instead of [`Boot::create_pki`]: it holds no cluster CA key, so its
    /// node API's certificate comes from a CA of its own, kept on the data disk (the
    /// owner's clients pin it). The cluster CA comes with joining (`joined`). Not
    /// fatal: without it only the node API is missing, and `pki` says why.
    fn create_node_local_ca(&self) -> Option<Arc<Pki>> {
        let dir = self.paths.resolve(crate::api::node::LOCAL_CA_DIR);
        match pki::ensure_ca(&dir, OffsetDateTime::now_utc()) {
            Ok(ca) => {
                let reason = format!(
                    "worker: node-local CA for the node API in {}; the cluster's CA comes \
                     with joining",
                    dir.display()
                );
                tracing::info!("{reason}");
                self.conditions.set(kubernetes::PKI_CONDITION, true, reason);
                Some(Arc::new(ca))
            }
            Err(err) => {
                let reason = cairn_api::error_chain(&err);
                tracing::error!("pki: {reason}");
                self.conditions
                    .set(kubernetes::PKI_CONDITION, false, reason);
                None
            }
        }
    }

    /// After the network and the PKI, which most services depend on through their
    /// conditions; each service still waits for its own dependencies in its own task,
    /// so this returns at once and a slow or broken service holds up nothing else.
    fn start_services(
        &self,
        supervisor: &Supervisor,
        node: &Node,
        role: Role,
        have_pki: bool,
        settings: &NodeConfig,
        system_cgroup: Option<&Path>,
    ) -> Result<(), BootError> {
        // Config files first: the services read them as they start. Not fatal: the
        // service then fails visibly in its condition and log, the rest still boots.
        if let Err(err) = containerd::write_config(self.paths, settings) {
            let reason = cairn_api::error_chain(&err);
            tracing::error!("containerd config: {reason}");
            self.conditions.set(containerd::SERVICE, false, reason);
        }
        if role == Role::Worker {
            if let Err(err) = kubernetes::write_worker_configs(self.paths, node) {
                let reason = cairn_api::error_chain(&err);
                tracing::error!("kubelet config: {reason}");
                self.conditions
                    .set(kubernetes::kubelet::SERVICE, false, reason);
            }
        }
        let mut specs = services::services(self.paths, node, role, system_cgroup);
        let profiled = cfg!(feature = "debug-service") && crate::profile::requested(self.paths);
        if profiled {
            tracing::info!(
                "profile: this boot profiles itself ({})",
                crate::profile::PARAMETER
            );
            specs = crate::profile::instrument(self.paths, specs);
        }
        let count = specs.len();
        supervisor.start(specs)?;
        if profiled && have_pki {
            crate::profile::spawn(self.paths, &self.conditions, supervisor);
        }
        tracing::info!("supervising {count} services");
        // Post-ready steps run beside the services and set their own conditions.
        tokio::spawn(containerd::import_when_ready(
            self.conditions.clone(),
            self.paths.clone(),
        ));
        Ok(())
    }

    /// Beside the services: the tasks that follow the cluster and set their own
    /// conditions (joining, `node-ready`, `pod-routes`, the reconciler).
    fn follow(
        &self,
        node: &Node,
        role: Role,
        have_pki: bool,
        pod_network: PodNetwork,
        settings: &NodeConfig,
    ) {
        match role {
            Role::ControlPlane if have_pki => {
                kubernetes::spawn_followers(self.paths, node, pod_network, &self.conditions);
            }
            Role::ControlPlane => {}
            Role::Worker => {
                let join = settings.cluster.as_ref().and_then(|c| c.join.clone());
                kubernetes::spawn_worker_followers(
                    self.paths,
                    node,
                    join,
                    pod_network,
                    &self.conditions,
                );
            }
        }
    }

    /// Instead of the PKI and the services when the node key is unreadable: the PKI
    /// would issue certificates for the stand-in name over the stored CA's cluster.
    /// Their conditions say why they are absent, so a wait on them fails with a reason.
    fn hold_services(&self) {
        let reason = "not started: the node key is unreadable (see identity)";
        tracing::warn!("pki and services {reason}");
        self.conditions
            .set(kubernetes::PKI_CONDITION, false, reason.to_owned());
        for name in cairn_api::names::service::ALL {
            self.conditions.set(name, false, reason.to_owned());
        }
        self.conditions
            .set(condition::POD_ROUTES, false, reason.to_owned());
    }

    /// After the supervisor exists, so every component it reports is registered;
    /// before the ready line, so a launcher that sees the line can connect. The owner's
    /// node API on every image (if the node has an owner), the debug service on debug
    /// images (feature `debug-service`); both over the same handlers. Returns the
    /// APIs started, for the ready line.
    fn start_apis(
        &self,
        supervisor: &Supervisor,
        node: &Node,
        pki: Option<Arc<Pki>>,
        api_ca: Option<Arc<Pki>>,
        power: PowerRequester,
        settings: &node_config::Loaded,
    ) -> Vec<&'static str> {
        let mut apis = Vec::new();
        let handlers = crate::api::handlers(crate::api::ApiState {
            conditions: self.conditions.clone(),
            logs: self.logs.clone(),
            services: Arc::new(supervisor.clone()),
            paths: self.paths.clone(),
            pki,
            power,
            node_ip: node.ip,
        });
        #[cfg(feature = "debug-service")]
        {
            let handlers = handlers.clone();
            tokio::spawn(async move {
                let addr = crate::api::debug::DEBUG_ADDR;
                if let Err(err) = crate::api::debug::serve(addr, handlers).await {
                    tracing::error!("debug service: {}", cairn_api::error_chain(&err));
                }
            });
            apis.push(cairn_api::names::api::DEBUG);
        }
        let offered = match (&settings.config.owner, settings.node_ignored) {
            (Some(owner), _) => Offered::Owner(owner),
            (None, false) => Offered::Nothing,
            (None, true) => Offered::ConfigIgnored,
        };
        let (ca_pem, owner) = match crate::api::owner::settle(self.paths, offered) {
            crate::api::owner::Decision::Serve { ca_pem, reason } => (ca_pem, reason),
            crate::api::owner::Decision::Off { reason } => {
                tracing::info!("node API: {reason}");
                self.conditions.set(condition::NODE_API, false, reason);
                return apis;
            }
        };
        let Some(pki) = api_ca else {
            let reason = format!("{owner}; no CA to issue its certificate (see pki)");
            self.conditions.set(condition::NODE_API, false, reason);
            return apis;
        };
        let conditions = self.conditions.clone();
        let (name, ip) = (node.name.clone(), node.ip);
        tokio::spawn(async move {
            match start_node_api(&pki, &name, ip, &ca_pem, handlers).await {
                Ok(serve) => {
                    let reason = format!(
                        "serving on port {}; {owner}",
                        crate::api::node::NODE_API_ADDR.port()
                    );
                    tracing::info!("node API: {reason}");
                    conditions.set(condition::NODE_API, true, reason);
                    if let Err(err) = serve.await {
                        let reason = cairn_api::error_chain(&err);
                        tracing::error!("node API: {reason}");
                        conditions.set(condition::NODE_API, false, reason);
                    }
                }
                Err(err) => {
                    let reason = format!("{owner}; {}", cairn_api::error_chain(&err));
                    tracing::error!("node API: {reason}");
                    conditions.set(condition::NODE_API, false, reason);
                }
            }
        });
        apis.push(cairn_api::names::api::NODE);
        apis
    }

    /// Last before the main loop: the launcher treats the line as "boot complete".
    /// Services may still be starting; their conditions say when they are ready.
    fn announce_ready(&self, identity: &Identity, apis: &[&str]) -> Result<(), BootError> {
        let report = ReadyReport::gather(self.sys, self.paths, identity, apis)?;
        console::write_line(&mut io::stderr(), &report.line());
        Ok(())
    }
}

/// Issues the node API's certificate and binds its port; the future serves.
async fn start_node_api(
    pki: &Pki,
    node_name: &str,
    node_ip: Option<std::net::Ipv4Addr>,
    owner_ca_pem: &str,
    handlers: Arc<crate::api::Handlers>,
) -> Result<
    impl std::future::Future<Output = Result<(), crate::api::node::NodeApiError>>,
    StartNodeApiError,
> {
    use crate::api::node;
    let mut ips = vec![IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)];
    ips.extend(node_ip.map(IpAddr::V4));
    let now = OffsetDateTime::now_utc();
    let issued = pki
        .issue_server(
            node_name,
            &[node_name, "localhost"],
            &ips,
            now,
            node::SERVING_VALIDITY,
        )
        .map_err(StartNodeApiError::Certificate)?;
    let chain = format!("{}{}", issued.cert_pem, pki.ca_pem());
    let tls = node::tls_config(&chain, &issued.key_pem, owner_ca_pem)?;
    let listener = node::bind(node::NODE_API_ADDR).await?;
    Ok(node::serve_on(
        listener,
        handlers,
        tls,
        std::future::pending(),
    ))
}

/// Why the node API could not start.
#[derive(Debug, thiserror::Error)]
enum StartNodeApiError {
    #[error("cannot issue the node API certificate")]
    Certificate(#[source] pki::PkiError),
    #[error(transparent)]
    Api(#[from] crate::api::node::NodeApiError),
}

/// The cluster NIC the network step set up, if any: where other nodes' pods are
/// routed.
fn cluster_nic(cluster: Option<&Cluster>, node: &Node) -> Option<ClusterNic> {
    let cluster = cluster?;
    // The step set the cluster NIC up only if the node's address is the cluster one.
    node.uplink?;
    let (address, prefix) = cluster.address().ok()?;
    Some(ClusterNic {
        device: cluster.device.clone(),
        address,
        prefix,
    })
}
