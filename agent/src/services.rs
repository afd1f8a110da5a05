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

#[cfg(test)]
mod tests {
    use super::*;

    /// The services the agent supervises are the ones every client knows by name.
    #[test]
    fn the_services_are_the_shared_vocabulary() {
        let node = Node {
            name: "cairn-test".to_owned(),
            ip: Some(std::net::Ipv4Addr::new(10, 0, 2, 15)),
        };
        let names: Vec<String> = services(&Paths::under_root("/"), &node)
            .into_iter()
            .map(|spec| spec.name)
            .collect();
        assert_eq!(names, cairn_api::names::service::ALL);
    }
}
