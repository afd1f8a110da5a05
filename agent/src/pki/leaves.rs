//! The leaf certificates of a node, as a table: who each one names and what it may do.

use std::net::{IpAddr, Ipv4Addr};

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyUsagePurpose};
use time::OffsetDateTime;

use super::{base_params, sans, NodeSubject, LEAF_VALIDITY};

/// What a certificate is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
    /// etcd peers and servers present one certificate both ways.
    ServerAndClient,
}

/// Subject names: the common name may use `{node}` for the Kubernetes node name.
#[derive(Debug, Clone, Copy)]
pub struct Leaf {
    /// File stem in the PKI directory: `<name>.crt`, `<name>.key`.
    pub name: &'static str,
    pub common_name: &'static str,
    pub organization: Option<&'static str>,
    pub usage: Usage,
    /// Which names and addresses go into the SAN.
    pub sans: Sans,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sans {
    None,
    /// localhost and 127.0.0.1 (etcd listens on loopback only).
    Loopback,
    /// The node name, localhost, loopback and the node IP.
    Node,
    /// Everything a client may call the apiserver by.
    ApiServer,
}

/// The identities Kubernetes RBAC and the Node authorizer expect (kubeadm's names
/// where Kubernetes defines none).
pub const LEAVES: &[Leaf] = &[
    leaf(
        "etcd-server",
        "etcd",
        None,
        Usage::ServerAndClient,
        Sans::Loopback,
    ),
    leaf(
        "etcd-client",
        "kube-apiserver-etcd-client",
        None,
        Usage::Client,
        Sans::None,
    ),
    leaf(
        "kube-apiserver",
        "kube-apiserver",
        None,
        Usage::Server,
        Sans::ApiServer,
    ),
    // Authorised on the kubelet API by the reconciler's binding to
    // system:kubelet-api-admin (what `kubectl logs` and `exec` go through).
    leaf(
        "apiserver-kubelet-client",
        "kube-apiserver-kubelet-client",
        None,
        Usage::Client,
        Sans::None,
    ),
    leaf("kubelet-server", "{node}", None, Usage::Server, Sans::Node),
    leaf(
        "kubelet-client",
        "system:node:{node}",
        Some("system:nodes"),
        Usage::Client,
        Sans::None,
    ),
    leaf(
        "controller-manager",
        "system:kube-controller-manager",
        None,
        Usage::Client,
        Sans::None,
    ),
    leaf(
        "scheduler",
        "system:kube-scheduler",
        None,
        Usage::Client,
        Sans::None,
    ),
    // Bound to system:node-proxier by Kubernetes' bootstrap policy.
    leaf(
        "kube-proxy",
        "system:kube-proxy",
        None,
        Usage::Client,
        Sans::None,
    ),
    // CoreDNS's watch of Services and endpoints (the reconciler's ClusterRole).
    leaf(
        "cluster-dns",
        "cairn:cluster-dns",
        None,
        Usage::Client,
        Sans::None,
    ),
    // The agent's own client (reconciler, debug credentials' checks): cluster admin.
    leaf(
        "agent",
        "cairn:agent",
        Some("system:masters"),
        Usage::Client,
        Sans::None,
    ),
];

const fn leaf(
    name: &'static str,
    common_name: &'static str,
    organization: Option<&'static str>,
    usage: Usage,
    sans: Sans,
) -> Leaf {
    Leaf {
        name,
        common_name,
        organization,
        usage,
        sans,
    }
}

impl Leaf {
    /// The subject CN with the node name filled in.
    pub fn subject(&self, node: &NodeSubject) -> String {
        self.common_name.replace("{node}", &node.node_name)
    }

    pub(super) fn params(&self, node: &NodeSubject, now: OffsetDateTime) -> CertificateParams {
        let mut params = base_params(&self.subject(node), now, LEAF_VALIDITY);
        if let Some(org) = self.organization {
            params
                .distinguished_name
                .push(DnType::OrganizationName, org);
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match self.usage {
            Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Usage::ServerAndClient => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        };
        params.subject_alt_names = self.san_entries(node);
        params
    }

    fn san_entries(&self, node: &NodeSubject) -> Vec<rcgen::SanType> {
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let mut ips = vec![loopback];
        ips.extend(node.node_ip);
        match self.sans {
            Sans::None => Vec::new(),
            Sans::Loopback => sans(&["localhost"], &[loopback]),
            Sans::Node => sans(&[&node.node_name, "localhost"], &ips),
            Sans::ApiServer => {
                ips.push(node.service_ip);
                let names = [
                    "kubernetes",
                    "kubernetes.default",
                    "kubernetes.default.svc",
                    "kubernetes.default.svc.cluster.local",
                    "localhost",
                    node.node_name.as_str(),
                ];
                sans(&names, &ips)
            }
        }
    }
}
