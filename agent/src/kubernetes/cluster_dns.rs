//! Cluster DNS: CoreDNS (third_party/coredns) as a supervised node service, behind the
//! `kube-dns` Service at [`SERVICE_IP`] that every pod's resolv.conf names.
//!
//! Why a node service and not a `kube-system` Deployment (docs/architecture.md has the
//! whole argument): it starts with the node instead of after the scheduler and the
//! image pull, its log is one more buffer in the debug service, it needs no container
//! image of its own, and a single node gains nothing from moving it between machines.
//! kubectl users still find what they expect: the reconciler owns the `kube-dns`
//! Service (no selector) and its EndpointSlice, which names the node's address, so
//! kube-proxy forwards 10.96.0.10:53 to CoreDNS on the node. The reconciler also owns
//! the read-only ClusterRole CoreDNS's `kubernetes` plugin needs, bound to this
//! service's client certificate (the `cluster-dns` leaf).
//!
//! The Corefile is written at every boot. Names outside `cluster.local` go to the
//! node's own resolvers (`/etc/resolv.conf`, from `ip=`); a node without any answers
//! only cluster names (SERVFAIL for the rest, at once). The `loop` plugin is left out:
//! on detecting a loop it stops the server, which under a supervisor is a crash loop
//! of a node service; our resolv.conf comes from the command line, not from a
//! resolver that could point back at us.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec as KubeServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};

use super::{apiserver, dns_upstream, probe, Files, Node, CLUSTER_DOMAIN};
use crate::reconciler::{declare, metadata, Declared, RBAC_GROUP};
use crate::supervisor::{Readiness, ServiceSpec};
use crate::Paths;

pub const SERVICE: &str = cairn_api::names::service::CLUSTER_DNS;
pub const BINARY: &str = "/usr/bin/coredns";
pub const COREFILE: &str = "cluster-dns.Corefile";
pub const KUBECONFIG: &str = "cluster-dns.kubeconfig";
pub const LEAF: &str = "cluster-dns";
pub const USER: &str = "cairn:cluster-dns";
pub const PORT: u16 = cairn_api::names::port::DNS;
/// The `kube-dns` Service's address: the tenth of the Service CIDR, as kubeadm picks.
pub const SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
pub const SERVICE_NAME: &str = "kube-dns";
pub const NAMESPACE: &str = "kube-system";
/// CoreDNS's `ready` plugin: 200 once every plugin (the Kubernetes watch) is ready.
pub const READY_URL: &str = "http://127.0.0.1:8181";
pub const METRICS_ADDRESS: &str = "127.0.0.1:9153";
/// Where the node's resolvers are listed (the `forward` upstreams).
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Ready when CoreDNS's `ready` plugin says so; the reason then also names any
/// upstream resolver that does not answer ([`dns_upstream`]).
pub fn service(paths: &Paths, files: &Files) -> ServiceSpec {
    let args = ["-conf".to_owned(), files.config(COREFILE)];
    let ready = probe::get(
        probe::Access::Insecure(files.pki_dir().to_owned()),
        READY_URL,
        "/ready",
        probe::any_body,
    );
    let readiness = Readiness::new(dns_upstream::probe(ready, paths.resolve(RESOLV_CONF)))
        .interval(Duration::from_secs(1))
        .timeout(dns_upstream::CHECK_TIME + Duration::from_secs(3));
    ServiceSpec::new(SERVICE, paths.resolve(BINARY))
        .args(args)
        .depends_on(apiserver::SERVICE)
        .readiness(readiness)
}

/// The Corefile: `cluster.local` and reverse zones from the Kubernetes API, every
/// other name forwarded to the node's resolvers when it has any (`forward_upstream`).
pub fn corefile(files: &Files, node: &Node, forward_upstream: bool) -> String {
    let bind = node.ip.unwrap_or(Ipv4Addr::LOCALHOST);
    let kubeconfig = files.config(KUBECONFIG);
    let mut text = format!(
        "# Written by cairn-agent at every boot (agent/src/kubernetes/cluster_dns.rs).
.:{PORT} {{
    bind {bind}
    errors
    # Server failures only: with the pods' search path (ndots 5) every lookup of
    # a short name is several NXDOMAIN answers first, too many lines to keep.
    log . {{
        class error
    }}
    ready {ready}
    prometheus {METRICS_ADDRESS}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
",
        ready = READY_URL.trim_start_matches("http://"),
    );
    if forward_upstream {
        let _ = writeln!(text, "    forward . {RESOLV_CONF}");
    }
    // Denials are kept 5 s at most: a name asked for a moment before its Service
    // was created must not stay unknown for the full 30 s.
    text.push_str("    cache 30 {\n        denial 9984 5\n    }\n    loadbalance\n}\n");
    text
}

/// Whether resolv.conf `text` names at least one name server.
pub fn has_nameserver(text: &str) -> bool {
    text.lines()
        .any(|line| line.split_whitespace().next() == Some("nameserver"))
}

/// The objects the reconciler keeps for cluster DNS: CoreDNS's read access, the
/// `kube-dns` Service and, once the node has an address, the EndpointSlice that
/// points the Service at it.
pub fn objects(node: &Node) -> Vec<Declared> {
    let mut objects = vec![cluster_role(), cluster_role_binding(), kube_dns_service()];
    if let Some(ip) = node.ip {
        objects.push(endpoint_slice(node, ip));
    }
    objects
}

/// What the `kubernetes` plugin watches (upstream's `system:coredns` role).
fn cluster_role() -> Declared {
    let rule = |groups: &[&str], resources: &[&str]| PolicyRule {
        api_groups: Some(groups.iter().map(|g| (*g).to_owned()).collect()),
        resources: Some(resources.iter().map(|r| (*r).to_owned()).collect()),
        verbs: ["list", "watch"].map(str::to_owned).to_vec(),
        ..PolicyRule::default()
    };
    declare(ClusterRole {
        metadata: metadata(USER, BTreeMap::new()),
        rules: Some(vec![
            rule(&[""], &["endpoints", "services", "pods", "namespaces"]),
            rule(&["discovery.k8s.io"], &["endpointslices"]),
        ]),
        ..ClusterRole::default()
    })
}

fn cluster_role_binding() -> Declared {
    declare(ClusterRoleBinding {
        metadata: metadata(USER, BTreeMap::new()),
        role_ref: RoleRef {
            api_group: Some(RBAC_GROUP.into()),
            kind: "ClusterRole".into(),
            name: USER.into(),
        },
        subjects: Some(vec![Subject {
            api_group: Some(RBAC_GROUP.into()),
            kind: "User".into(),
            name: USER.into(),
            namespace: None,
        }]),
    })
}

fn dns_ports<T>(port: impl Fn(&str, &str) -> T) -> Vec<T> {
    vec![port("dns", "UDP"), port("dns-tcp", "TCP")]
}

/// `kube-system/kube-dns`, with kubeadm's labels, and no selector: its endpoints are
/// the node's, in [`endpoint_slice`].
fn kube_dns_service() -> Declared {
    let labels = BTreeMap::from([
        ("k8s-app".to_owned(), SERVICE_NAME.to_owned()),
        ("kubernetes.io/name".to_owned(), "CoreDNS".to_owned()),
    ]);
    let mut meta = metadata(SERVICE_NAME, labels);
    meta.namespace = Some(NAMESPACE.into());
    declare(Service {
        metadata: meta,
        spec: Some(KubeServiceSpec {
            cluster_ip: Some(SERVICE_IP.to_string()),
            ports: Some(dns_ports(|name, protocol| ServicePort {
                name: Some(name.into()),
                port: PORT.into(),
                protocol: Some(protocol.into()),
                ..ServicePort::default()
            })),
            ..KubeServiceSpec::default()
        }),
        ..Service::default()
    })
}

fn endpoint_slice(node: &Node, ip: Ipv4Addr) -> Declared {
    let labels = BTreeMap::from([
        (
            "kubernetes.io/service-name".to_owned(),
            SERVICE_NAME.to_owned(),
        ),
        // Not the EndpointSlice controller's name: it leaves this slice alone.
        (
            "endpointslice.kubernetes.io/managed-by".to_owned(),
            "cairn-agent".to_owned(),
        ),
    ]);
    let mut meta = metadata(&format!("{SERVICE_NAME}-node"), labels);
    meta.namespace = Some(NAMESPACE.into());
    declare(EndpointSlice {
        metadata: meta,
        address_type: "IPv4".into(),
        endpoints: Some(vec![Endpoint {
            addresses: vec![ip.to_string()],
            conditions: Some(EndpointConditions {
                ready: Some(true),
                ..EndpointConditions::default()
            }),
            node_name: Some(node.name.clone()),
            ..Endpoint::default()
        }]),
        ports: Some(dns_ports(|name, protocol| EndpointPort {
            name: Some(name.into()),
            port: Some(PORT.into()),
            protocol: Some(protocol.into()),
            ..EndpointPort::default()
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Node {
        Node {
            name: "cairn-ab".to_owned(),
            ip: Some(Ipv4Addr::new(10, 0, 2, 15)),
            uplink: None,
        }
    }

    #[test]
    fn the_corefile_serves_the_cluster_domain_on_the_node_address() {
        let files = Files::new(&Paths::under_root("/"));
        let text = corefile(&files, &node(), true);
        assert!(text.contains(".:53 {\n    bind 10.0.2.15\n"), "{text}");
        assert!(text.contains("kubernetes cluster.local in-addr.arpa ip6.arpa {"));
        assert!(text.contains("kubeconfig /etc/kubernetes/cluster-dns.kubeconfig"));
        assert!(text.contains("forward . /etc/resolv.conf\n"));
        assert!(!text.contains("loop"), "loop stops the server: {text}");
        assert!(
            text.contains("cache 30 {\n        denial 9984 5\n    }\n"),
            "{text}"
        );
        let without = corefile(&files, &node(), false);
        assert!(!without.contains("forward"), "{without}");
    }

    #[test]
    fn only_nameserver_lines_count() {
        assert!(has_nameserver("# x\nnameserver 10.0.2.3\n"));
        assert!(!has_nameserver("# written by cairn-agent\n"));
        assert!(!has_nameserver("# nameserver 1.1.1.1\nsearch x\n"));
    }

    #[test]
    fn the_service_is_kube_dns_and_its_slice_names_the_node() {
        let objects = objects(&node());
        let names: Vec<String> = objects.iter().map(Declared::describe).collect();
        assert_eq!(
            names,
            [
                "ClusterRole cairn:cluster-dns",
                "ClusterRoleBinding cairn:cluster-dns",
                "Service kube-system/kube-dns",
                "EndpointSlice kube-system/kube-dns-node",
            ]
        );
        assert_eq!(objects[2].body["spec"]["clusterIP"], "10.96.0.10");
        assert!(objects[2].body["spec"].get("selector").is_none());
        let slice = &objects[3].body;
        assert_eq!(slice["endpoints"][0]["addresses"][0], "10.0.2.15");
        assert_eq!(
            slice["metadata"]["labels"]["kubernetes.io/service-name"],
            "kube-dns"
        );
        assert_eq!(slice["ports"][0]["port"], 53);
        let no_ip = Node { ip: None, ..node() };
        assert_eq!(super::objects(&no_ip).len(), 3);
    }
}
