//! Which Nodes get a route, from Node objects as the kubelet and the
//! controller-manager write them.

use k8s_openapi::api::core::v1::{NodeAddress, NodeSpec, NodeStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;

const OWN: &str = "cairn-00000000000000000000000000000001";
const WORKER: &str = "cairn-00000000000000000000000000000002";

fn node(name: &str, pod_cidr: Option<&str>, internal: &[&str]) -> Node {
    let mut addresses: Vec<NodeAddress> = internal
        .iter()
        .map(|ip| NodeAddress {
            type_: "InternalIP".to_owned(),
            address: (*ip).to_owned(),
        })
        .collect();
    addresses.push(NodeAddress {
        type_: "Hostname".to_owned(),
        address: name.to_owned(),
    });
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: pod_cidr.map(str::to_owned),
            ..NodeSpec::default()
        }),
        status: Some(NodeStatus {
            addresses: Some(addresses),
            ..NodeStatus::default()
        }),
    }
}

fn nic() -> ClusterNic {
    ClusterNic {
        device: "eth1".to_owned(),
        address: "192.168.100.10".parse().unwrap(),
        prefix: 24,
    }
}

fn route(node: &str, cidr: &str, via: &str) -> Planned {
    let (cidr, prefix) = parse_cidr(cidr).unwrap();
    Planned::Route {
        node: node.to_owned(),
        route: PodRoute {
            cidr,
            prefix,
            via: via.parse().unwrap(),
        },
    }
}

#[test]
fn every_other_node_is_routed_via_its_cluster_address() {
    let nodes = [
        node(OWN, Some("10.88.0.0/24"), &["192.168.100.10"]),
        node(WORKER, Some("10.88.1.0/24"), &["192.168.100.11"]),
        node(
            "third",
            Some("10.88.2.0/24"),
            &["10.0.2.15", "192.168.100.12"],
        ),
    ];
    assert_eq!(
        plan(&nodes, OWN, &nic()),
        [
            route(WORKER, "10.88.1.0/24", "192.168.100.11"),
            route("third", "10.88.2.0/24", "192.168.100.12"),
        ]
    );
}

#[test]
fn nodes_without_a_pod_cidr_yet_are_left_out_silently() {
    let nodes = [node(WORKER, None, &["192.168.100.11"])];
    assert_eq!(plan(&nodes, OWN, &nic()), []);
    assert_eq!(
        describe(&plan(&nodes, OWN, &nic()), "forwarding on"),
        "no other node has a pod CIDR; forwarding on"
    );
}

#[test]
fn nodes_that_cannot_be_routed_are_named_with_the_reason() {
    let nodes = [
        node("off-segment", Some("10.88.3.0/24"), &["10.0.2.15"]),
        node("foreign-cidr", Some("10.99.0.0/24"), &["192.168.100.13"]),
        node("host-bits", Some("10.88.4.7/24"), &["192.168.100.14"]),
        node("impostor", Some("10.88.5.0/24"), &["192.168.100.10"]),
        node(WORKER, Some("10.88.1.0/24"), &["192.168.100.11"]),
    ];
    let planned = plan(&nodes, OWN, &nic());
    assert_eq!(planned.len(), 5);
    assert_eq!(planned[4], route(WORKER, "10.88.1.0/24", "192.168.100.11"));
    assert_eq!(
        describe(&planned, "forwarding on"),
        "routes to other nodes' pods (1): 10.88.1.0/24 via 192.168.100.11 \
         (cairn-00000000000000000000000000000002); \
         not routed: off-segment no InternalIP on the cluster network 192.168.100.10/24 \
         (reports 10.0.2.15); \
         not routed: foreign-cidr pod CIDR 10.99.0.0/24 is not a network within 10.88.0.0/16; \
         not routed: host-bits pod CIDR 10.88.4.7/24 is not a network within 10.88.0.0/16; \
         not routed: impostor reports this node's address 192.168.100.10; forwarding on"
    );
}
