//! The node's services, as the supervisor receives them at boot. Each component module
//! (containerd, and etcd, the control plane and the kubelet in [`kubernetes`])
//! contributes its [`ServiceSpec`]s here; the order does not matter, the supervisor
//! sorts by dependencies.

use crate::kubernetes::{self, Node};
use crate::supervisor::ServiceSpec;
use crate::{containerd, Paths};

/// Every service the node runs.
pub fn services(paths: &Paths, node: &Node) -> Vec<ServiceSpec> {
    let mut specs = vec![containerd::service(paths)];
    specs.extend(kubernetes::services(paths, node));
    specs
}
