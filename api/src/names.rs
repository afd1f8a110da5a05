//! The node's vocabulary, defined once: the conditions the agent publishes (in boot
//! order), the services it supervises, and the well-known ports. The agent sets and
//! serves these names; `dbg`, the launcher, the boot tests and the benchmarks ask for
//! them. docs/interfaces.md describes each; agent/src/boot.rs is the order.

/// Condition names.
pub mod condition {
    pub const MOUNTS: &str = "mounts";
    pub const MODULES: &str = "modules";
    /// The per-node config was read (or none was given); false names what was wrong.
    pub const NODE_CONFIG: &str = "node-config";
    pub const STORAGE: &str = "storage";
    pub const IDENTITY: &str = "identity";
    pub const NETWORK: &str = "network";
    pub const PKI: &str = "pki";
    /// Preloaded images imported into containerd.
    pub const IMAGES: &str = "images";
    /// The reconciler's objects (RBAC, Pod Security) are in place.
    pub const BUILTIN_OBJECTS: &str = "builtin-objects";
    /// The Node object reports Ready.
    pub const NODE_READY: &str = "node-ready";
    /// A worker holds the cluster CA (pinned by its join credential) and a
    /// bootstrap token the control plane accepted, or a client certificate from an
    /// earlier join.
    pub const JOINED: &str = "joined";
    /// Forwarding and the pods' masquerade rule are in place, and a route to every
    /// other Node's pod CIDR via its cluster address.
    pub const POD_ROUTES: &str = "pod-routes";
    /// The owner's node API serves. Not in [`BOOT_ORDER`]: a node with no owner never
    /// serves it, and the condition's reason says so.
    pub const NODE_API: &str = "node-api";

    /// Every condition a control-plane node sets, in the order a boot makes them true:
    /// the boot steps, then each service (a service's condition has its name) and the
    /// steps that follow them.
    pub const BOOT_ORDER: [&str; 19] = [
        MOUNTS,
        MODULES,
        NODE_CONFIG,
        STORAGE,
        IDENTITY,
        NETWORK,
        PKI,
        super::service::CONTAINERD,
        IMAGES,
        super::service::ETCD,
        super::service::KUBE_APISERVER,
        super::service::CONTROLLER_MANAGER,
        super::service::SCHEDULER,
        BUILTIN_OBJECTS,
        POD_ROUTES,
        super::service::KUBE_PROXY,
        super::service::CLUSTER_DNS,
        super::service::KUBELET,
        NODE_READY,
    ];

    /// Every condition a worker sets, in boot order: no etcd or control plane, and
    /// `pki` is the node-local CA of its node API; the cluster's CA comes with `joined`.
    pub const WORKER_BOOT_ORDER: [&str; 14] = [
        MOUNTS,
        MODULES,
        NODE_CONFIG,
        STORAGE,
        IDENTITY,
        NETWORK,
        PKI,
        JOINED,
        super::service::CONTAINERD,
        IMAGES,
        super::service::KUBELET,
        POD_ROUTES,
        super::service::KUBE_PROXY,
        NODE_READY,
    ];
}

/// Supervised services; each also names its condition and its log.
pub mod service {
    pub const CONTAINERD: &str = "containerd";
    pub const ETCD: &str = "etcd";
    pub const KUBE_APISERVER: &str = "kube-apiserver";
    pub const CONTROLLER_MANAGER: &str = "controller-manager";
    pub const SCHEDULER: &str = "scheduler";
    pub const KUBELET: &str = "kubelet";
    /// kube-proxy (Service routing, nftables mode).
    pub const KUBE_PROXY: &str = "kube-proxy";
    /// CoreDNS serving `cluster.local` behind the `kube-dns` Service.
    pub const CLUSTER_DNS: &str = "cluster-dns";
    /// The agent's own log (it is listed with the services but not supervised).
    pub const AGENT: &str = "agent";

    /// Every supervised service, in start order.
    pub const ALL: [&str; 8] = [
        CONTAINERD,
        ETCD,
        KUBE_APISERVER,
        CONTROLLER_MANAGER,
        SCHEDULER,
        KUBE_PROXY,
        CLUSTER_DNS,
        KUBELET,
    ];

    /// The services of a worker, in start order.
    pub const WORKER: [&str; 3] = [CONTAINERD, KUBELET, KUBE_PROXY];
}

/// The management APIs a boot serves, as `CAIRN_READY`'s `apis` lists them.
pub mod api {
    /// The NodeDebugService (debug images only, plain HTTP/2).
    pub const DEBUG: &str = "debug";
    /// The owner's node API (mTLS; every image whose node has an owner).
    pub const NODE: &str = "node";
}

/// The networks inside every node; a cluster network ([`crate::node_config::Cluster`])
/// must not overlap them.
pub mod network {
    /// Services' virtual addresses; the first is the `kubernetes` Service.
    pub const SERVICE_CIDR: &str = "10.96.0.0/12";
    /// Pods' addresses (the CNI bridge's subnet).
    pub const POD_CIDR: &str = "10.88.0.0/16";
}

/// Ports the node listens on beyond loopback.
pub mod port {
    /// The NodeDebugService (debug images only).
    pub const DEBUG: u16 = 7837;
    /// The owner's node API (NodeService, mTLS; every image).
    pub const NODE_API: u16 = 7838;
    /// kube-apiserver (HTTPS).
    pub const APISERVER: u16 = 6443;
    /// The kubelet API (HTTPS, client certificates only).
    pub const KUBELET: u16 = 10250;
    /// Cluster DNS (UDP and TCP) on the node's address, behind the `kube-dns` Service.
    pub const DNS: u16 = 53;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_listed_once() {
        let mut names = condition::BOOT_ORDER.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), condition::BOOT_ORDER.len());
        for service in service::ALL {
            assert!(condition::BOOT_ORDER.contains(&service), "{service}");
        }
        for service in service::WORKER {
            assert!(condition::WORKER_BOOT_ORDER.contains(&service), "{service}");
            assert!(service::ALL.contains(&service), "{service}");
        }
    }
}

/// The boot profile (`make profile-boot`; the agent's `profile` module).
pub mod profile {
    /// The kernel command-line parameter that makes a debug image profile its boot.
    pub const PARAMETER: &str = "cairn.profile=boot";
    /// Where kube-apiserver's CPU profile goes, on the data disk's `/var`.
    pub const CPU_PROFILE: &str = "/var/lib/cairn/profile/kube-apiserver.cpu.pprof";
}
