//! Connecting to a node's NodeDebugService.
//!
//! A person's first command against a node that is not up must fail in seconds and say
//! where it looked, so [`connect`] bounds the whole connection and names the endpoint in
//! every error. A TCP connection alone proves little: QEMU's user network accepts a
//! forwarded connection even when nothing listens in the guest (then drops it), and
//! tonic finishes the HTTP/2 handshake lazily. So `connect` ends with one cheap call
//! (`GetBuildInfo`, answered from memory) under the same deadline.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::v1::node_debug_service_client::NodeDebugServiceClient;
use crate::v1::GetBuildInfoRequest;

/// A connected NodeDebugService client.
pub type Client = NodeDebugServiceClient<Channel>;

/// Why no client could be had.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The endpoint is not a URI tonic accepts.
    #[error("invalid debug endpoint {0:?}")]
    InvalidEndpoint(String, #[source] tonic::transport::Error),
    /// Connecting failed.
    #[error("cannot reach the node's debug service at {0}")]
    Unreachable(String, #[source] tonic::transport::Error),
    /// The connection opened but the first call failed (nothing serves behind it).
    #[error("the node's debug service at {0} does not answer")]
    NoAnswer(String, #[source] tonic::Status),
    /// Connecting took longer than the timeout.
    #[error("no answer from the node's debug service at {0} within {1:?}")]
    Timeout(String, Duration),
}

/// `endpoint` with `http://` added when it has no scheme (`127.0.0.1:7837` works too).
pub fn normalize_endpoint(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("http://{endpoint}")
    }
}

/// Connects to the NodeDebugService at `endpoint` (`http://host:port` or `host:port`),
/// giving up after `timeout`.
pub async fn connect(endpoint: &str, timeout: Duration) -> Result<Client, ConnectError> {
    let uri = normalize_endpoint(endpoint);
    let target = Endpoint::from_shared(uri.clone())
        .map_err(|e| ConnectError::InvalidEndpoint(uri.clone(), e))?
        .connect_timeout(timeout)
        .tcp_nodelay(true);
    match tokio::time::timeout(timeout, connect_and_probe(&uri, target)).await {
        Ok(result) => result,
        Err(_elapsed) => Err(ConnectError::Timeout(uri, timeout)),
    }
}

/// [`connect`], retried every 250 ms until `within` has passed: the service comes up a
/// moment after the node reports ready, so a caller that just booted a node waits
/// here instead of sleeping. Returns the last error at the deadline.
pub async fn connect_within(endpoint: &str, within: Duration) -> Result<Client, ConnectError> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match connect(endpoint, left.min(Duration::from_secs(5))).await {
            Ok(client) => return Ok(client),
            Err(err) if left <= Duration::from_millis(250) => return Err(err),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

async fn connect_and_probe(uri: &str, target: Endpoint) -> Result<Client, ConnectError> {
    let channel = target
        .connect()
        .await
        .map_err(|e| ConnectError::Unreachable(uri.to_owned(), e))?;
    // Log lines are at most a few KiB; 16 MiB bounds a broken or hostile server.
    let mut client = NodeDebugServiceClient::new(channel).max_decoding_message_size(16 << 20);
    client
        .get_build_info(GetBuildInfoRequest {})
        .await
        .map_err(|status| ConnectError::NoAnswer(uri.to_owned(), status))?;
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn endpoints_without_a_scheme_get_http() {
        assert_eq!(
            normalize_endpoint("127.0.0.1:7837"),
            "http://127.0.0.1:7837"
        );
        assert_eq!(normalize_endpoint("http://[::1]:1"), "http://[::1]:1");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn an_unreachable_endpoint_fails_fast_and_is_named() {
        // A port that was free a moment ago: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let endpoint = format!("127.0.0.1:{port}");
        let started = Instant::now();
        let err = connect(&endpoint, Duration::from_secs(3))
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(3), "{err}");
        assert!(
            matches!(
                err,
                ConnectError::Unreachable(..) | ConnectError::NoAnswer(..)
            ),
            "{err}"
        );
        assert!(err.to_string().contains(&endpoint), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_silent_server_times_out() {
        // Accepts TCP but never speaks HTTP/2, like a forward into a guest that hangs.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let hold = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
            drop(socket);
        });
        let err = connect(&endpoint, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(err, ConnectError::Timeout(..)), "{err}");
        assert!(err.to_string().contains(&endpoint), "{err}");
        hold.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_server_that_hangs_up_gives_no_answer() {
        // What QEMU's user network does when nothing listens in the guest.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let hang_up = tokio::spawn(async move {
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                drop(socket);
            }
        });
        let err = connect(&endpoint, Duration::from_secs(3))
            .await
            .unwrap_err();
        assert!(matches!(err, ConnectError::NoAnswer(..)), "{err}");
        assert!(err.to_string().contains(&endpoint), "{err}");
        hang_up.abort();
    }

    #[test]
    fn a_malformed_endpoint_is_named() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = runtime
            .block_on(connect("http://bad host", Duration::from_secs(1)))
            .unwrap_err();
        assert!(matches!(err, ConnectError::InvalidEndpoint(..)), "{err}");
        assert!(err.to_string().contains("bad host"), "{err}");
    }
}
