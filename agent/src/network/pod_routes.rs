//! Routes to other nodes' pod CIDRs, each via that node's cluster address: the
//! host-gateway pod network (docs/architecture.md "Pod network"). Nodes on one L2
//! segment need no overlay: a packet for a pod on node B leaves node A by the cluster
//! NIC towards B's address, and B's bridge delivers it.
//!
//! The agent owns exactly the routes it marks with its own routing protocol number
//! ([`PROTOCOL`], `ip route show proto 202`): [`sync`] adds or replaces the wanted ones
//! and removes any other route so marked, so a Node that left takes its route with it
//! and nobody else's routes are touched.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;

use futures_util::TryStreamExt;
use nix::net::if_::if_nametoindex;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol,
};
use rtnetlink::{Handle, RouteMessageBuilder};

use super::{netlink, NetworkError};

/// The `rtm_protocol` of the agent's routes (a number no routing daemon the kernel
/// headers name uses).
pub const PROTOCOL: u8 = 202;

/// One route: `cidr/prefix via gateway`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PodRoute {
    pub cidr: Ipv4Addr,
    pub prefix: u8,
    pub via: Ipv4Addr,
}

impl fmt::Display for PodRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} via {}", self.cidr, self.prefix, self.via)
    }
}

/// What [`sync`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<PodRoute>,
    pub removed: Vec<PodRoute>,
}

/// Makes the agent's routes exactly `wanted`, out of `device`.
pub async fn sync(device: &str, wanted: &[PodRoute]) -> Result<Changes, NetworkError> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(NetworkError::Socket)?;
    let connection = tokio::spawn(connection);
    let result = sync_with(&handle, device, wanted).await;
    connection.abort();
    result
}

async fn sync_with(
    handle: &Handle,
    device: &str,
    wanted: &[PodRoute],
) -> Result<Changes, NetworkError> {
    let index = if_nametoindex(device)
        .map_err(|_| NetworkError::NoDevice(device.to_owned(), std::time::Duration::ZERO))?;
    let present = ours(handle).await?;
    let wanted: BTreeSet<PodRoute> = wanted.iter().copied().collect();
    let mut changes = Changes::default();
    for (route, message) in present.iter() {
        if !wanted.contains(route) {
            handle
                .route()
                .del(message.clone())
                .execute()
                .await
                .map_err(|e| netlink(format!("remove the route {route}"), e))?;
            changes.removed.push(*route);
        }
    }
    for route in wanted {
        if present.iter().any(|(have, _)| *have == route) {
            continue;
        }
        let message = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(route.cidr, route.prefix)
            .gateway(route.via)
            .output_interface(index)
            .protocol(RouteProtocol::Other(PROTOCOL))
            .build();
        handle
            .route()
            .add(message)
            .replace()
            .execute()
            .await
            .map_err(|e| netlink(format!("add the route {route} dev {device}"), e))?;
        changes.added.push(route);
    }
    Ok(changes)
}

/// The main table's IPv4 routes marked [`PROTOCOL`].
async fn ours(handle: &Handle) -> Result<Vec<(PodRoute, RouteMessage)>, NetworkError> {
    let query = RouteMessageBuilder::<Ipv4Addr>::new().build();
    let mut routes = handle.route().get(query).execute();
    let mut found = Vec::new();
    while let Some(message) = routes
        .try_next()
        .await
        .map_err(|e| netlink("list the routes".to_owned(), e))?
    {
        let header = &message.header;
        if header.protocol != RouteProtocol::Other(PROTOCOL)
            || header.table != RouteHeader::RT_TABLE_MAIN
        {
            continue;
        }
        if let Some(route) = gateway_route(&message) {
            found.push((route, message));
        }
    }
    Ok(found)
}

/// An IPv4 route's destination and gateway, if it has both.
pub(super) fn gateway_route(message: &RouteMessage) -> Option<PodRoute> {
    let (mut cidr, mut via) = (None, None);
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Destination(RouteAddress::Inet(a)) => cidr = Some(*a),
            RouteAttribute::Gateway(RouteAddress::Inet(a)) => via = Some(*a),
            _ => {}
        }
    }
    Some(PodRoute {
        cidr: cidr?,
        prefix: message.header.destination_prefix_length,
        via: via?,
    })
}
