//! The node's gRPC surfaces, served from one set of handlers ([`Handlers`]):
//!
//! - the owner's **node API** (NodeService, package `cairn.node.v1`; [`node`]): every
//!   image, TCP port 7838, TLS 1.3 with client certificates from the owner CA the node
//!   has pinned ([`owner`]). Logs, components, conditions, build info,
//!   process stats, reboot/power-off, an owner kubeconfig, image loading and listing.
//! - the **NodeDebugService** (package `cairn.debug.v1`; [`debug`]): debug images only
//!   (feature `debug-service`), plain HTTP/2 on port 7837, no authentication. Everything
//!   the node API serves, plus what only a debug image may offer: signalling a
//!   component (the boot tests make the supervisor prove its restarts), running a
//!   container, and kubeconfigs for any identity the caller names.
//!
//! Both read the agent's registries — log buffers, conditions, the supervisor's service
//! status — through [`ApiState`]. The protocols live in `cairn-api`.
//!
//! Names: the protocol (and docs/interfaces.md) says *component* for anything with a
//! log and a status: every supervised process, plus `agent`, PID 1 itself. Inside the
//! agent a supervised process is a *service* ([`crate::supervisor::ServiceSpec`],
//! [`ServiceStatus`], [`SignalError`]), so a wire component is a service's name or
//! `agent`. ListComponents reports the services and the agent; SignalComponent signals
//! a service; `component` fields and the messages clients see keep the protocol's word.
//!
//! Neither listener is for workloads: connections from the pod network
//! ([`crate::containerd::cni::POD_SUBNET`]) are closed as soon as they are accepted.
//! Pods reach the node's address through the CNI bridge with their own source address;
//! the launcher's forward arrives from QEMU's user-network gateway and local clients
//! from loopback. (A hostNetwork pod has the node's addresses: the node API's client
//! certificates are what keep it out.)
//!
//! The agent is PID 1 and the requests are untrusted, so: every field is validated
//! (`cairn_api::validate`) and answered with INVALID_ARGUMENT, never a panic; request
//! messages are capped at [`MAX_REQUEST`]; followed log streams are capped in number and
//! own no task, so a disconnect frees them (see [`logs`]); HTTP/2 keepalives drop dead
//! clients; and client mistakes are logged at `debug` at most, so nobody can flood the
//! agent's log.

mod build_info;
#[cfg(feature = "debug-service")]
pub mod debug;
mod error;
mod images;
mod join;
mod kubeconfig;
mod logs;
pub mod node;
pub mod owner;
mod process_stats;
mod service;
pub mod services;

#[cfg(test)]
mod node_tests;
#[cfg(all(test, feature = "debug-service"))]
mod tests;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

pub use error::RpcError;
pub use service::Handlers;
pub use services::{LastExit, NoServices, ServiceSource, ServiceState, ServiceStatus, SignalError};

use crate::conditions::Conditions;
use crate::logbuf::Logs;
use crate::pid1::PowerRequester;
use crate::pki::Pki;
use crate::Paths;

/// Largest request message: a LoadImage data message (at most
/// `cairn_api::validate::MAX_LOAD_CHUNK`) with room for its framing; other requests are
/// a few dozen bytes.
pub const MAX_REQUEST: usize = cairn_api::validate::MAX_LOAD_CHUNK + (4 << 10);
/// Largest response message: a log line (16 KiB) or the build info with some room.
pub const MAX_RESPONSE: usize = 4 << 20;
/// Concurrent calls per connection.
const MAX_STREAMS: u32 = 64;
/// Ping idle connections this often; drop them when a ping goes unanswered this long.
const KEEPALIVE: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the handlers read: handles to the agent's registries (all cheap clones).
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The conditions registry.
    pub conditions: Conditions,
    /// Every component's log buffer (`agent` included).
    pub logs: Logs,
    /// The supervisor.
    pub services: Arc<dyn ServiceSource>,
    /// Where `/etc/os-release` and `/etc/cairn/build.json` are.
    pub paths: Paths,
    /// The cluster PKI, to sign kubeconfigs; `None` until (or unless) it exists, and
    /// kubeconfig calls then answer FAILED_PRECONDITION.
    pub pki: Option<Arc<Pki>>,
    /// Asks PID 1 to reboot or power off (Shutdown).
    pub power: PowerRequester,
    /// The node's Kubernetes address, which join tokens name; `None` without network.
    pub node_ip: Option<std::net::Ipv4Addr>,
}

/// The handlers over `state`, with the build info read once; both surfaces share them.
pub fn handlers(state: ApiState) -> Arc<Handlers> {
    let build_info = build_info::read(&state.paths);
    Arc::new(Handlers::new(state, build_info))
}

/// True for an address in the pod network (IPv4 CIDR [`crate::containerd::cni::POD_SUBNET`]).
pub fn from_pods(peer: std::net::IpAddr) -> bool {
    let (network, prefix) = crate::containerd::cni::POD_SUBNET
        .split_once('/')
        .expect("POD_SUBNET is a CIDR");
    let network: Ipv4Addr = network.parse().expect("POD_SUBNET is IPv4");
    let prefix: u32 = prefix.parse().expect("POD_SUBNET has a prefix length");
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    let peer = match peer {
        std::net::IpAddr::V4(v4) => v4,
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4,
            None => return false,
        },
    };
    u32::from(peer) & mask == u32::from(network) & mask
}
