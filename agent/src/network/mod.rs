//! Boot step: the node's network, from the kernel command line (docs/interfaces.md).
//!
//! `lo` always comes up. The device named by `ip=` (virtio-net, whose driver the
//! module step loaded; the device may still be probing) gets the static address,
//! comes up, and gets a default route via the gateway — all by rtnetlink(7), no `ip`
//! binary. `/etc/hosts` and `/etc/resolv.conf` are written either way. A missing or
//! malformed `ip=` is not fatal: the node boots with loopback only and the `network`
//! condition says why.
//!
//! A node config with `[cluster]` adds the cluster NIC (default `eth1`): its address,
//! the link up, and the on-link route the kernel adds with the address; no gateway. That
//! address is then the node's Kubernetes address ([`Configured::node_ip`]) and the one
//! `/etc/hosts` gives the node name, while `ip=`'s device keeps the default route and
//! the host's port forwards. A cluster NIC that cannot be set up fails the step like a
//! bad `ip=`: the node must not take its place under another address.

pub mod files;
pub mod ipconfig;
pub mod pod_routes;

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use cairn_api::node_config::{overlaps, Cluster};
use nix::net::if_::if_nametoindex;
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};
use tokio::time::Instant;

pub use ipconfig::{parse, IpConfig, ParseError};

use crate::conditions::Conditions;
use crate::Paths;

/// Condition name (docs/interfaces.md).
pub const CONDITION: &str = cairn_api::names::condition::NETWORK;
/// How long the device named by `ip=` may take to appear after its driver loaded.
pub const DEVICE_WAIT: Duration = Duration::from_secs(10);
/// How often to look for it meanwhile.
const DEVICE_POLL: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("failed to read {}", .0.display())]
    Cmdline(PathBuf, #[source] io::Error),
    #[error("no ip= parameter on the kernel command line")]
    NoIpParameter,
    #[error("malformed ip= parameter")]
    Parse(#[from] ParseError),
    #[error("failed to open a netlink socket")]
    Socket(#[source] io::Error),
    #[error("network device {0} did not appear within {1:?}")]
    NoDevice(String, Duration),
    #[error("failed to {0}")]
    Netlink(String, #[source] rtnetlink::Error),
    #[error("failed to write {}", .0.display())]
    WriteFile(PathBuf, #[source] io::Error),
    #[error("cluster address {address}: {problem}")]
    ClusterAddress { address: String, problem: String },
}

/// What the step set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Configured {
    /// `ip=`'s device: the default route and the host's port forwards.
    pub uplink: IpConfig,
    /// The cluster NIC's address, with `[cluster]`.
    pub cluster: Option<Ipv4Addr>,
}

impl Configured {
    /// The node's Kubernetes address: the cluster address if there is one, else `ip=`'s.
    pub fn node_ip(&self) -> Ipv4Addr {
        self.cluster.unwrap_or(self.uplink.address)
    }
}

/// Configures the network (and the cluster NIC, with `cluster`) and sets the
/// `network` condition; never fails the boot. Returns what it set up, if anything.
pub async fn configure(
    paths: &Paths,
    node_name: &str,
    conditions: &Conditions,
    device_wait: Duration,
    cluster: Option<&Cluster>,
) -> Option<Configured> {
    let outcome = configure_inner(paths, device_wait, cluster).await;
    let (address, dns) = match &outcome {
        Ok(config) => (Some(config.node_ip()), config.uplink.dns.as_slice()),
        Err(_) => (None, &[][..]),
    };
    if dns.is_empty() {
        tracing::warn!("no DNS server on the kernel command line: empty /etc/resolv.conf");
    }
    let written = files::write(paths, node_name, address, dns)
        .map_err(|(path, err)| NetworkError::WriteFile(path, err));
    match outcome.and_then(|config| written.map(|()| config)) {
        Ok(config) => {
            let reason = describe_configured(&config, cluster);
            tracing::info!("network up: {reason}");
            conditions.set(CONDITION, true, reason);
            Some(config)
        }
        Err(err) => {
            let reason = cairn_api::error_chain(&err);
            tracing::error!("network: {reason}; continuing with loopback only");
            conditions.set(CONDITION, false, reason);
            None
        }
    }
}

async fn configure_inner(
    paths: &Paths,
    device_wait: Duration,
    cluster: Option<&Cluster>,
) -> Result<Configured, NetworkError> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(NetworkError::Socket)?;
    let connection = tokio::spawn(connection);
    let result = async {
        set_up(&handle, "lo").await?;
        let uplink = read_config(paths)?;
        apply(&handle, &uplink, device_wait).await?;
        let cluster = match cluster {
            Some(cluster) => Some(apply_cluster(&handle, cluster, &uplink, device_wait).await?),
            None => None,
        };
        Ok(Configured { uplink, cluster })
    }
    .await;
    connection.abort();
    result
}

/// The `ip=` configuration from `/proc/cmdline`.
fn read_config(paths: &Paths) -> Result<IpConfig, NetworkError> {
    let path = paths.resolve("/proc/cmdline");
    let cmdline = std::fs::read_to_string(&path).map_err(|err| NetworkError::Cmdline(path, err))?;
    let value = ipconfig::find(&cmdline).ok_or(NetworkError::NoIpParameter)?;
    Ok(ipconfig::parse(value)?)
}

async fn apply(handle: &Handle, config: &IpConfig, wait: Duration) -> Result<(), NetworkError> {
    let index = wait_for_device(&config.device, wait).await?;
    let address = format!("{}/{}", config.address, config.prefix);
    handle
        .address()
        .add(index, IpAddr::V4(config.address), config.prefix)
        .replace()
        .execute()
        .await
        .map_err(|e| netlink(format!("add {address} to {}", config.device), e))?;
    set_up(handle, &config.device).await?;
    if let Some(gateway) = config.gateway {
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(gateway)
            .output_interface(index)
            .build();
        handle
            .route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(|e| netlink(format!("add the default route via {gateway}"), e))?;
    }
    Ok(())
}

/// The cluster NIC: its address and the link up. The address must not share a network
/// with `ip=`'s (the node could not tell the two apart when routing).
async fn apply_cluster(
    handle: &Handle,
    cluster: &Cluster,
    uplink: &IpConfig,
    wait: Duration,
) -> Result<Ipv4Addr, NetworkError> {
    let problem = |problem: String| NetworkError::ClusterAddress {
        address: cluster.address.clone(),
        problem,
    };
    let (address, prefix) = cluster.address().map_err(problem)?;
    if cluster.device == uplink.device {
        return Err(problem(format!("{} is ip='s device", cluster.device)));
    }
    if overlaps((address, prefix), (uplink.address, uplink.prefix)) {
        return Err(problem(format!(
            "shares a network with ip='s {}/{}",
            uplink.address, uplink.prefix
        )));
    }
    let index = wait_for_device(&cluster.device, wait).await?;
    handle
        .address()
        .add(index, IpAddr::V4(address), prefix)
        .replace()
        .execute()
        .await
        .map_err(|e| netlink(format!("add {} to {}", cluster.address, cluster.device), e))?;
    set_up(handle, &cluster.device).await?;
    Ok(address)
}

async fn set_up(handle: &Handle, device: &str) -> Result<(), NetworkError> {
    let index = if_nametoindex(device)
        .map_err(|_| NetworkError::NoDevice(device.to_owned(), Duration::ZERO))?;
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(|e| netlink(format!("bring {device} up"), e))
}

/// Polls for the interface until `wait` has passed: its driver (a module) may still be
/// probing the PCI device when this step starts.
async fn wait_for_device(device: &str, wait: Duration) -> Result<u32, NetworkError> {
    let deadline = Instant::now() + wait;
    loop {
        if let Ok(index) = if_nametoindex(device) {
            return Ok(index);
        }
        if Instant::now() >= deadline {
            return Err(NetworkError::NoDevice(device.to_owned(), wait));
        }
        tokio::time::sleep(DEVICE_POLL).await;
    }
}

fn netlink(operation: String, err: rtnetlink::Error) -> NetworkError {
    NetworkError::Netlink(operation, err)
}

/// `eth0 10.0.2.15/24 via 10.0.2.2, dns 10.0.2.3`, then `; cluster eth1
/// 192.168.100.10/24` with a cluster NIC.
fn describe_configured(configured: &Configured, cluster: Option<&Cluster>) -> String {
    let mut text = describe(&configured.uplink);
    if let Some(cluster) = cluster.filter(|_| configured.cluster.is_some()) {
        text.push_str(&format!("; cluster {} {}", cluster.device, cluster.address));
    }
    text
}

/// `eth0 10.0.2.15/24 via 10.0.2.2, dns 10.0.2.3`.
pub fn describe(config: &IpConfig) -> String {
    let mut text = format!("{} {}/{}", config.device, config.address, config.prefix);
    if let Some(gateway) = config.gateway {
        text.push_str(&format!(" via {gateway}"));
    }
    if !config.dns.is_empty() {
        let dns: Vec<String> = config.dns.iter().map(ToString::to_string).collect();
        text.push_str(&format!(", dns {}", dns.join(" ")));
    }
    text
}

#[cfg(test)]
mod tests;
