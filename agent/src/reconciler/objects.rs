//! The declared built-in objects: what the node needs in its own cluster.

use std::collections::BTreeMap;

use ::kube::core::ApiResource;
use ::kube::Resource;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use serde_json::Value;

use super::pod_security;

/// The label every managed object carries, so anyone can list what the agent owns
/// (the seed's reconciler once looped forever on objects that lacked its label).
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "cairn");
/// The user of the apiserver's kubelet client certificate (`apiserver-kubelet-client`
/// leaf in [`crate::pki::LEAVES`]).
pub const APISERVER_KUBELET_CLIENT: &str = "kube-apiserver-kubelet-client";
/// Name of the binding that lets the apiserver use the kubelet API.
pub const KUBELET_API_BINDING: &str = "cairn:apiserver-kubelet-client";
pub(crate) const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// One object as the agent wants it: the fields it owns, nothing else.
#[derive(Debug, Clone, PartialEq)]
pub struct Declared {
    /// Kind, group, version and plural, for the API path.
    pub resource: ApiResource,
    /// `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    pub name: String,
    /// The server-side apply body (apiVersion, kind, metadata and the owned fields).
    pub body: Value,
}

impl Declared {
    /// `ClusterRoleBinding cairn:apiserver-kubelet-client`, for logs and conditions.
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.resource.kind, self.name),
            None => format!("{} {}", self.resource.kind, self.name),
        }
    }
}

/// Every built-in object, in the order they are applied.
pub fn builtin_objects() -> Vec<Declared> {
    let mut objects = vec![kubelet_api_binding(), default_namespace_pod_security()];
    objects.extend(
        JOIN_BINDINGS
            .iter()
            .map(|(name, kind, subject, role)| cluster_role_binding(name, kind, subject, role)),
    );
    objects
}

/// What a joining kubelet needs (kubelet TLS bootstrapping, kubeadm's three bindings
/// under cairn names): with a join token it may create its client CSR and have the
/// controller-manager's approver approve it; once a node, it may renew its own; and
/// what a worker's kube-proxy needs on the same credentials. The
/// ClusterRoles are Kubernetes' own. Only [`WORKER_GROUP`] (cairn's join tokens), not
/// every `system:bootstrappers` token, gets the first two.
pub const JOIN_BINDINGS: &[(&str, &str, &str, &str)] = &[
    (
        "cairn:kubelet-bootstrap",
        "Group",
        WORKER_GROUP,
        "system:node-bootstrapper",
    ),
    (
        "cairn:node-autoapprove-bootstrap",
        "Group",
        WORKER_GROUP,
        "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
    ),
    (
        "cairn:node-autoapprove-certificate-rotation",
        "Group",
        "system:nodes",
        "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
    ),
    // A worker's kube-proxy runs on its kubelet's credentials (it holds no CA key to
    // issue a `system:kube-proxy` certificate): nodes may read what kube-proxy reads.
    (
        "cairn:node-proxier",
        "Group",
        "system:nodes",
        "system:node-proxier",
    ),
];
const WORKER_GROUP: &str = crate::kubernetes::join_token::WORKER_GROUP;

fn cluster_role_binding(name: &str, kind: &str, subject: &str, role: &str) -> Declared {
    declare(ClusterRoleBinding {
        metadata: metadata(name, BTreeMap::new()),
        role_ref: RoleRef {
            api_group: Some(RBAC_GROUP.into()),
            kind: "ClusterRole".into(),
            name: role.into(),
        },
        subjects: Some(vec![Subject {
            api_group: Some(RBAC_GROUP.into()),
            kind: kind.into(),
            name: subject.into(),
            namespace: None,
        }]),
    })
}

/// `kubectl logs`, `exec` and `port-forward` go through the apiserver to the kubelet
/// API, which authorises the apiserver's client certificate by RBAC (webhook authz):
/// the built-in ClusterRole `system:kubelet-api-admin` grants exactly that API.
fn kubelet_api_binding() -> Declared {
    cluster_role_binding(
        KUBELET_API_BINDING,
        "User",
        APISERVER_KUBELET_CLIENT,
        "system:kubelet-api-admin",
    )
}

/// The admission config already defaults every namespace to baseline; labelling
/// `default` explicitly makes the policy visible (`kubectl get ns --show-labels`) and
/// lets the reconciler restore it when someone relaxes it.
fn default_namespace_pod_security() -> Declared {
    declare(Namespace {
        metadata: metadata("default", pod_security::namespace_labels()),
        ..Namespace::default()
    })
}

pub(crate) fn metadata(name: &str, mut labels: BTreeMap<String, String>) -> ObjectMeta {
    labels.insert(MANAGED_BY.0.into(), MANAGED_BY.1.into());
    ObjectMeta {
        name: Some(name.into()),
        labels: Some(labels),
        ..ObjectMeta::default()
    }
}

pub(crate) fn declare<K>(object: K) -> Declared
where
    K: Resource<DynamicType = ()> + Serialize,
{
    let name = object.meta().name.clone().unwrap_or_default();
    let namespace = object.meta().namespace.clone();
    // k8s-openapi types serialise to plain JSON maps (with apiVersion and kind);
    // failing would be a bug in the type, caught by the unit tests.
    let body = serde_json::to_value(&object).unwrap_or(Value::Null);
    Declared {
        resource: ApiResource::erase::<K>(&()),
        namespace,
        name,
        body,
    }
}
