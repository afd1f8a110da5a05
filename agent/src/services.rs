//! The node's services, as the supervisor receives them at boot. Each component module
//! (containerd, and etcd, the control plane and the kubelet in [`kubernetes`])
//! contributes its [`ServiceSpec`]s here; the order does not matter, the supervisor
//! sorts by dependencies.

use std::path::Path;

use cairn_api::node_config::Role;

use crate::kubernetes::{self, Node};
use crate::supervisor::ServiceSpec;
use crate::{containerd, Paths};

/// Every service the node runs, each in its own cgroup below `cgroup_parent` (named
/// after the service) when there is one.
pub fn services(
    paths: &Paths,
    node: &Node,
    role: Role,
    cgroup_parent: Option<&Path>,
) -> Vec<ServiceSpec> {
    let mut specs = vec![containerd::service(paths)];
    specs.extend(kubernetes::services(paths, node, role));
    if let Some(parent) = cgroup_parent {
        for spec in &mut specs {
            spec.cgroup = Some(parent.join(&spec.name));
        }
    }
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
            uplink: None,
        };
        let names = |role| -> Vec<String> {
            services(&Paths::under_root("/"), &node, role, None)
                .into_iter()
                .map(|spec| spec.name)
                .collect()
        };
        assert_eq!(names(Role::ControlPlane), cairn_api::names::service::ALL);
        assert_eq!(names(Role::Worker), cairn_api::names::service::WORKER);
    }

    #[test]
    fn each_service_runs_in_a_cgroup_named_after_it() {
        let node = Node {
            name: "cairn-test".to_owned(),
            ip: None,
            uplink: None,
        };
        let parent = Path::new("/sys/fs/cgroup/system");
        for spec in services(&Paths::under_root("/"), &node, Role::Worker, Some(parent)) {
            assert_eq!(spec.cgroup, Some(parent.join(&spec.name)), "{}", spec.name);
        }
        let unplaced = services(&Paths::under_root("/"), &node, Role::ControlPlane, None);
        assert!(unplaced.iter().all(|spec| spec.cgroup.is_none()));
    }
}
