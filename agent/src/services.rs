//! The node's services, as the supervisor receives them at boot. Each component module
//! (containerd, later etcd and the Kubernetes components) contributes its
//! [`ServiceSpec`]s here; the order does not matter, the supervisor sorts by
//! dependencies.

use crate::containerd;
use crate::identity::Identity;
use crate::supervisor::ServiceSpec;
use crate::Paths;

/// Every service the node runs.
pub fn services(paths: &Paths, identity: &Identity) -> Vec<ServiceSpec> {
    let _ = identity;
    vec![containerd::service(paths)]
}
