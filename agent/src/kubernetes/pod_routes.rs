//! The `pod-routes` condition and task: on a node with a cluster network, routes to
//! every other Node's pod CIDR via its cluster address (docs/architecture.md "Pod
//! network"; the netlink part is [`crate::network::pod_routes`]).
//!
//! The controller-manager gives each Node a /24 of the pod network (`spec.podCIDR`);
//! the Node reports its cluster address as its InternalIP. This task lists the Nodes
//! every few seconds with the node's own eyes (a control plane: the agent's client; a
//! worker: the kubelet's credentials, which the Node authorizer lets list Nodes) and
//! makes the agent's routes exactly the wanted ones. Polling like `node-ready`: no
//! watch to re-establish, and a Node that comes or goes is routed within [`PERIOD`].
//! While the apiserver cannot be reached the routes stay as they are.
//!
//! The condition also carries the boot step that prepared the pod network (forwarding
//! and the masquerade rule, [`crate::containerd::cni::prepare_pod_network`]): false
//! with its reason if that failed, whatever the routes.

use std::net::Ipv4Addr;
use std::time::Duration;

use cairn_api::error_chain;
use cairn_api::node_config::{overlaps, parse_cidr};
use k8s_openapi::api::core::v1::Node;
use kube::api::ListParams;
use kube::Api;

use super::node_ready::Source;
use crate::conditions::Conditions;
use crate::network::pod_routes::{self, PodRoute};

pub const CONDITION: &str = cairn_api::names::condition::POD_ROUTES;
pub const PERIOD: Duration = Duration::from_secs(3);

/// The node's cluster network: its NIC and its address with prefix.
#[derive(Debug, Clone)]
pub struct ClusterNic {
    pub device: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
}

/// What the boot knows of the pod network: the cluster NIC (none on a node without
/// `[cluster]`) and the outcome of the step that prepared forwarding and masquerade.
#[derive(Debug, Clone)]
pub struct PodNetwork {
    pub nic: Option<ClusterNic>,
    pub prepared: Result<String, String>,
}

/// One other Node's route, or why it has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Planned {
    Route { node: String, route: PodRoute },
    Skipped { node: String, why: String },
}

/// The routes wanted from `nodes` for the node `own` on `nic`'s network. Nodes without
/// a pod CIDR yet are left out silently (the controller-manager has not got to them);
/// ones that cannot be routed are named with the reason.
pub fn plan(nodes: &[Node], own: &str, nic: &ClusterNic) -> Vec<Planned> {
    let pod_network =
        parse_cidr(cairn_api::names::network::POD_CIDR).expect("POD_CIDR is an IPv4 CIDR");
    let mut planned = Vec::new();
    for node in nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        let Some(pod_cidr) = node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()) else {
            continue;
        };
        if name == own {
            continue;
        }
        let skip = |why: String| Planned::Skipped {
            node: name.clone(),
            why,
        };
        let cidr = match parse_cidr(pod_cidr) {
            Ok(cidr) if is_network(cidr) && contains(pod_network, cidr) => cidr,
            _ => {
                planned.push(skip(format!(
                    "pod CIDR {pod_cidr} is not a network within {}",
                    cairn_api::names::network::POD_CIDR
                )));
                continue;
            }
        };
        let internal = internal_ips(node);
        let on_segment = internal
            .iter()
            .find(|ip| overlaps((**ip, 32), (nic.address, nic.prefix)));
        match on_segment {
            Some(&via) if via != nic.address => planned.push(Planned::Route {
                node: name,
                route: PodRoute {
                    cidr: cidr.0,
                    prefix: cidr.1,
                    via,
                },
            }),
            Some(_) => planned.push(skip(format!("reports this node's address {}", nic.address))),
            None => planned.push(skip(format!(
                "no InternalIP on the cluster network {}/{} (reports {})",
                nic.address,
                nic.prefix,
                if internal.is_empty() {
                    "none".to_owned()
                } else {
                    internal
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ))),
        }
    }
    planned
}

/// The reason of a true condition: what is routed, what is not.
pub fn describe(planned: &[Planned], prepared: &str) -> String {
    let routes: Vec<String> = planned
        .iter()
        .filter_map(|p| match p {
            Planned::Route { node, route } => Some(format!("{route} ({node})")),
            Planned::Skipped { .. } => None,
        })
        .collect();
    let mut text = match routes.len() {
        0 => "no other node has a pod CIDR".to_owned(),
        n => format!("routes to other nodes' pods ({n}): {}", routes.join(", ")),
    };
    for p in planned {
        if let Planned::Skipped { node, why } = p {
            text.push_str(&format!("; not routed: {node} {why}"));
        }
    }
    text.push_str(&format!("; {prepared}"));
    text
}

/// No host bits set: a route's destination.
fn is_network((ip, prefix): (Ipv4Addr, u8)) -> bool {
    prefix == 32 || u32::from(ip) & (u32::MAX >> prefix) == 0
}

fn contains(outer: (Ipv4Addr, u8), inner: (Ipv4Addr, u8)) -> bool {
    inner.1 >= outer.1 && overlaps(outer, inner)
}

fn internal_ips(node: &Node) -> Vec<Ipv4Addr> {
    let addresses = node.status.as_ref().and_then(|s| s.addresses.as_ref());
    addresses
        .into_iter()
        .flatten()
        .filter(|a| a.type_ == "InternalIP")
        .filter_map(|a| a.address.parse().ok())
        .collect()
}

/// Follows the Nodes for good. Without a cluster NIC there is nothing to route to.
pub async fn run(source: Source, node_name: String, network: PodNetwork, conditions: Conditions) {
    let PodNetwork { nic, prepared } = network;
    let prepared = match prepared {
        Ok(prepared) => prepared,
        Err(reason) => {
            tracing::error!("pod-routes: {reason}");
            conditions.set(CONDITION, false, reason);
            return;
        }
    };
    let Some(nic) = nic else {
        conditions.set(
            CONDITION,
            true,
            format!("no cluster network: no other nodes to route to; {prepared}"),
        );
        return;
    };
    let gate = source.gate();
    conditions.set(CONDITION, false, format!("waiting for {gate}"));
    let mut nodes: Option<Api<Node>> = None;
    let mut last = String::new();
    loop {
        conditions.wait_true(gate).await;
        if nodes.is_none() {
            match source.client().await {
                Ok(client) => nodes = Some(Api::all(client)),
                Err(reason) => {
                    tracing::error!("pod-routes: {reason}");
                    conditions.set(CONDITION, false, reason);
                    tokio::time::sleep(PERIOD).await;
                    continue;
                }
            }
        }
        let Some(api) = &nodes else { continue };
        match api.list(&ListParams::default()).await {
            Ok(list) => {
                let planned = plan(&list.items, &node_name, &nic);
                let wanted: Vec<PodRoute> = planned
                    .iter()
                    .filter_map(|p| match p {
                        Planned::Route { route, .. } => Some(*route),
                        Planned::Skipped { .. } => None,
                    })
                    .collect();
                match pod_routes::sync(&nic.device, &wanted).await {
                    Ok(changes) => {
                        for route in &changes.added {
                            tracing::info!("pod-routes: added {route} dev {}", nic.device);
                        }
                        for route in &changes.removed {
                            tracing::info!("pod-routes: removed {route}");
                        }
                        let reason = describe(&planned, &prepared);
                        if reason != last {
                            tracing::info!("pod-routes: {reason}");
                            last.clone_from(&reason);
                        }
                        conditions.set(CONDITION, true, reason);
                    }
                    Err(err) => {
                        let reason = error_chain(&err);
                        tracing::error!("pod-routes: {reason}");
                        conditions.set(CONDITION, false, reason);
                    }
                }
            }
            // The routes stay; a condition already true stays so (an apiserver restart
            // changes no route).
            Err(err) => {
                let reason = format!("cannot list Nodes: {}", error_chain(&err));
                tracing::debug!("pod-routes: {reason}");
                if conditions.get(CONDITION).is_none_or(|c| !c.value) {
                    conditions.set(CONDITION, false, reason);
                }
            }
        }
        tokio::time::sleep(PERIOD).await;
    }
}

#[cfg(test)]
#[path = "pod_routes_tests.rs"]
mod tests;
