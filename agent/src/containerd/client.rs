//! Connections to containerd's socket and the calls every user of it shares.

use std::path::Path;
use std::time::Duration;

use containerd_client::services::v1::version_client::VersionClient;
use containerd_client::tonic::metadata::MetadataValue;
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{Request, Status};

/// How long one connection attempt may take: the socket is local, so anything longer
/// means containerd is wedged.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {socket}")]
    Connect {
        socket: String,
        #[source]
        source: containerd_client::tonic::transport::Error,
    },
    #[error("timed out connecting to {socket}")]
    ConnectTimeout { socket: String },
    #[error("{call} failed")]
    Call {
        call: &'static str,
        #[source]
        source: Status,
    },
}

/// A channel to the containerd (and CRI) gRPC server at `socket`.
pub async fn connect(socket: &Path) -> Result<Channel, ClientError> {
    let name = socket.display().to_string();
    match tokio::time::timeout(CONNECT_TIMEOUT, containerd_client::connect(socket)).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(source)) => Err(ClientError::Connect {
            socket: name,
            source,
        }),
        Err(_) => Err(ClientError::ConnectTimeout { socket: name }),
    }
}

/// containerd's version, from its Version service: the readiness probe's real API call.
pub async fn version(socket: &Path) -> Result<String, ClientError> {
    let channel = connect(socket).await?;
    let reply = VersionClient::new(channel)
        .version(())
        .await
        .map_err(|source| ClientError::Call {
            call: "Version",
            source,
        })?;
    Ok(reply.into_inner().version)
}

/// `message` with containerd's namespace header and, when given, a lease header
/// (containerd `pkg/namespaces/grpc.go`, `core/leases/grpc.go`).
pub fn request<T>(message: T, namespace: &str, lease: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    let metadata = request.metadata_mut();
    if let Ok(value) = MetadataValue::try_from(namespace) {
        metadata.insert("containerd-namespace", value);
    }
    if let Some(value) = lease.and_then(|l| MetadataValue::try_from(l).ok()) {
        metadata.insert("containerd-lease", value);
    }
    request
}
