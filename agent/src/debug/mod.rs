//! The NodeDebugService server (feature `debug-service`; debug images only).
//!
//! gRPC over plain HTTP/2 on [`DEBUG_ADDR`] (port 7837, docs/interfaces.md), which the
//! launcher forwards to 127.0.0.1 on the host. It is a read-mostly window onto the
//! agent's registries — log buffers, conditions, the supervisor's service status —
//! plus debug-only actions: signalling a service, which the boot tests use to make the
//! supervisor prove its restarts; rebooting or powering off the node; and issuing
//! short-lived debug kubeconfigs signed by the cluster CA (see [`kubeconfig`]); and
//! loading container images from an archive the client streams, and listing them (see
//! [`images`]; issue 14 moves loading to an authenticated owner API). The protocol lives
//! in `cairn-api`.
//!
//! Names: the protocol (and docs/interfaces.md) says *component* for anything with a
//! log and a status: every supervised process, plus `agent`, PID 1 itself. Inside the
//! agent a supervised process is a *service* ([`crate::supervisor::ServiceSpec`],
//! [`ServiceStatus`], [`SignalError`]), so a wire component is a service's name or
//! `agent`. ListComponents reports the services and the agent; SignalComponent signals
//! a service; `component` fields and the messages clients see keep the protocol's word.
//!
//! The service has no authentication of its own, so it must not be reachable from
//! workloads: connections from the pod network ([`crate::containerd::cni::POD_SUBNET`])
//! are closed as soon as they are accepted. Pods reach the node's address through the
//! CNI bridge with their own source address; the launcher's forward arrives from
//! QEMU's user-network gateway and local clients from loopback.
//!
//! The agent is PID 1 and the requests are untrusted, so: every field is validated
//! (`cairn_api::validate`) and answered with INVALID_ARGUMENT, never a panic; request
//! messages are capped at [`MAX_REQUEST`]; followed log streams are capped in number and
//! own no task, so a disconnect frees them (see [`logs`]); HTTP/2 keepalives drop dead
//! clients; and client mistakes are logged at `debug` at most, so nobody can flood the
//! agent's log. A production image is built without the feature: the code, the
//! dependencies and the listener are simply not in it.

mod build_info;
mod error;
mod images;
mod kubeconfig;
mod logs;
mod process_stats;
mod service;
pub mod services;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use cairn_api::v1::node_debug_service_server::NodeDebugServiceServer;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;

pub use error::RpcError;
pub use service::DebugService;
pub use services::{LastExit, NoServices, ServiceSource, ServiceState, ServiceStatus, SignalError};

use crate::conditions::Conditions;
use crate::logbuf::Logs;
use crate::pid1::PowerRequester;
use crate::pki::Pki;
use crate::Paths;

/// Where the service listens on a node: every interface, port 7837.
pub const DEBUG_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(
    Ipv4Addr::UNSPECIFIED,
    cairn_api::DEBUG_PORT,
));
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

/// What the service reads: handles to the agent's registries (all cheap clones).
#[derive(Debug, Clone)]
pub struct DebugState {
    /// The conditions registry.
    pub conditions: Conditions,
    /// Every component's log buffer (`agent` included).
    pub logs: Logs,
    /// The supervisor.
    pub services: Arc<dyn ServiceSource>,
    /// Where `/etc/os-release` and `/etc/cairn/build.json` are.
    pub paths: Paths,
    /// The cluster PKI, to sign debug kubeconfigs; `None` until (or unless) it exists,
    /// and GetDebugKubeconfig then answers FAILED_PRECONDITION.
    pub pki: Option<Arc<Pki>>,
    /// Asks PID 1 to reboot or power off (Shutdown).
    pub power: PowerRequester,
}

/// Why the server stopped.
#[derive(Debug, thiserror::Error)]
pub enum DebugError {
    #[error("cannot listen on {0}")]
    Bind(SocketAddr, #[source] io::Error),
    #[error("debug service on {0} failed")]
    Serve(SocketAddr, #[source] tonic::transport::Error),
}

/// Serves the NodeDebugService on `addr` ([`DEBUG_ADDR`] on a node) until the runtime
/// ends. Returns only on failure; spawn it on the agent's runtime.
pub async fn serve(addr: SocketAddr, state: DebugState) -> Result<(), DebugError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| DebugError::Bind(addr, e))?;
    serve_on(listener, state, std::future::pending()).await
}

/// Serves on an already bound `listener` until `shutdown` completes (tests bind
/// 127.0.0.1:0 and stop the server at the end).
pub async fn serve_on(
    listener: TcpListener,
    state: DebugState,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), DebugError> {
    let addr = listener
        .local_addr()
        .map_err(|e| DebugError::Bind(DEBUG_ADDR, e))?;
    let build_info = build_info::read(&state.paths);
    let service = NodeDebugServiceServer::new(DebugService::new(state, build_info))
        .max_decoding_message_size(MAX_REQUEST)
        .max_encoding_message_size(MAX_RESPONSE);
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(KEEPALIVE));
    let incoming = tokio_stream::StreamExt::filter(incoming, |accepted| match accepted {
        Ok(stream) => stream.peer_addr().is_ok_and(|peer| !from_pods(peer.ip())),
        Err(_) => true,
    });
    tracing::info!("debug service listening on {addr}");
    Server::builder()
        .max_concurrent_streams(MAX_STREAMS)
        .http2_keepalive_interval(Some(KEEPALIVE))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| DebugError::Serve(addr, e))
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
