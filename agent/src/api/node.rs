//! The owner's node API: NodeService over TLS 1.3 with client certificates, on every
//! image (docs/interfaces.md "Node API").
//!
//! The node presents a certificate its cluster CA issues at each boot for its node name
//! and addresses, and sends the CA along, so a client that has never seen the node can
//! pin it (trust on first use, as `dbg` does) and every later connection verifies it.
//! Clients must present a certificate issued by the pinned owner CA ([`super::owner`]);
//! anything else — no certificate, a self-signed one, another CA's, an expired one —
//! ends in the handshake, before any call is read. Each refusal is logged with the
//! peer's address and the reason, at most one line a second (a count of the ones left
//! out follows), so an operator sees who knocked and nobody can flood the log.
//! Handshakes run beside the accept loop with a deadline and a cap on how many are in
//! flight, so a peer that connects and says nothing holds up nobody.

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use cairn_api::node::v1::node_service_server::{NodeService, NodeServiceServer};
use cairn_api::node::v1::GetKubeconfigRequest;
use cairn_api::v1::{
    BuildInfo, Condition, CreateJoinTokenRequest, CreateJoinTokenResponse, GetBuildInfoRequest,
    GetDebugKubeconfigResponse, GetLogsRequest, GetProcessStatsRequest, GetProcessStatsResponse,
    ListComponentsRequest, ListComponentsResponse, ListConditionsRequest, ListConditionsResponse,
    ListImagesRequest, ListImagesResponse, LoadImageRequest, LoadImageResponse, ShutdownRequest,
    ShutdownResponse, WaitConditionRequest,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::Connected;
use tonic::transport::Server;
use tonic::{Request, Response, Status};

use super::logs::LogStreamBox;
use super::{from_pods, Handlers};
use super::{KEEPALIVE, KEEPALIVE_TIMEOUT, MAX_REQUEST, MAX_RESPONSE, MAX_STREAMS};

/// Where the node API listens: every interface, port 7838.
pub const NODE_API_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(
    Ipv4Addr::UNSPECIFIED,
    cairn_api::names::port::NODE_API,
));
/// The owner's Kubernetes identity (GetKubeconfig): user `cairn:owner` in
/// `system:masters`. The owner's credential is the one that must work when the cluster
/// is broken (RBAC objects deleted, the reconciler failing), as Talos's admin
/// kubeconfig does; a group bound by a reconciled ClusterRoleBinding would not, and
/// would not work until the reconciler first ran. The certificate is short-lived and
/// names the owner, so the audit trail tells owner requests apart.
/// A worker's node-local CA, which signs its node API certificate (a control-plane
/// node's comes from the cluster CA).
pub const LOCAL_CA_DIR: &str = "/var/lib/cairn/node-api-ca";
pub const OWNER_USER: &str = "cairn:owner";
pub const OWNER_GROUP: &str = "system:masters";
/// How long the node API's serving certificate is valid; a new one is issued at
/// every boot.
pub const SERVING_VALIDITY: time::Duration = time::Duration::days(365);
/// A TLS handshake must finish within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in flight at once; more connections wait to be accepted.
const MAX_HANDSHAKES: usize = 32;

/// Why the node API does not serve.
#[derive(Debug, thiserror::Error)]
pub enum NodeApiError {
    #[error("the node API's TLS settings")]
    Tls(#[source] rustls::Error),
    #[error("the owner CA certificate")]
    OwnerCa(#[source] rustls::server::VerifierBuilderError),
    #[error("the {0} is not PEM")]
    Pem(&'static str, #[source] rustls::pki_types::pem::Error),
    #[error("cannot listen on {0}")]
    Bind(SocketAddr, #[source] io::Error),
    #[error("node API on {0} failed")]
    Serve(SocketAddr, #[source] tonic::transport::Error),
}

/// The server's TLS: TLS 1.3 only, HTTP/2, `chain_pem` (the node API certificate, then
/// the cluster CA) with `key_pem`, client certificates from `owner_ca_pem` required.
pub fn tls_config(
    chain_pem: &str,
    key_pem: &str,
    owner_ca_pem: &str,
) -> Result<Arc<ServerConfig>, NodeApiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(owner_ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| NodeApiError::Pem("owner CA", e))?;
        roots.add(cert).map_err(NodeApiError::Tls)?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(NodeApiError::OwnerCa)?;
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| NodeApiError::Pem("serving certificate", e))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| NodeApiError::Pem("serving key", e))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(NodeApiError::Tls)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(NodeApiError::Tls)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Binds [`NODE_API_ADDR`] (or `addr`), so the caller can say it serves only once it
/// does.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, NodeApiError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| NodeApiError::Bind(addr, e))
}

/// Serves NodeService on `listener` with `tls` until `shutdown` completes.
pub async fn serve_on(
    listener: TcpListener,
    handlers: Arc<Handlers>,
    tls: Arc<ServerConfig>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), NodeApiError> {
    let addr = listener
        .local_addr()
        .map_err(|e| NodeApiError::Bind(NODE_API_ADDR, e))?;
    let (sender, receiver) = tokio::sync::mpsc::channel(MAX_HANDSHAKES);
    let acceptor = tokio::spawn(accept(listener, TlsAcceptor::from(tls), sender));
    let service = NodeServiceServer::new(Node(handlers))
        .max_decoding_message_size(MAX_REQUEST)
        .max_encoding_message_size(MAX_RESPONSE);
    tracing::info!("node API listening on {addr}");
    let served = Server::builder()
        .max_concurrent_streams(MAX_STREAMS)
        .http2_keepalive_interval(Some(KEEPALIVE))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .add_service(service)
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
            shutdown,
        )
        .await
        .map_err(|e| NodeApiError::Serve(addr, e));
    acceptor.abort();
    served
}

/// Accepts connections and hands each finished handshake to the server.
async fn accept(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    connections: tokio::sync::mpsc::Sender<Result<TlsConnection, io::Error>>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    let refusals = Arc::new(Refusals::default());
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of descriptors, mostly: let some close before trying again.
                tracing::debug!("node API: accept: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if from_pods(peer.ip()) {
            tracing::debug!("node API: closed a connection from the pod network ({peer})");
            continue;
        }
        let _ = tcp.set_nodelay(true);
        let (acceptor, connections) = (acceptor.clone(), connections.clone());
        let refusals = refusals.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = connections.send(Ok(TlsConnection { stream, peer })).await;
                }
                Ok(Err(err)) => refusals.report(peer, &err.to_string()),
                Err(_) => refusals.report(peer, "no TLS handshake within 10 s"),
            }
        });
    }
}

/// Logs refused handshakes, at most one line a second.
#[derive(Debug, Default)]
struct Refusals(std::sync::Mutex<RefusalLog>);

#[derive(Debug, Default)]
struct RefusalLog {
    last: Option<std::time::Instant>,
    left_out: u64,
}

impl Refusals {
    fn report(&self, peer: SocketAddr, why: &str) {
        let Ok(mut log) = self.0.lock() else {
            return;
        };
        let now = std::time::Instant::now();
        if log
            .last
            .is_some_and(|last| now.duration_since(last) < Duration::from_secs(1))
        {
            log.left_out += 1;
            return;
        }
        let left_out = std::mem::take(&mut log.left_out);
        log.last = Some(now);
        let more = match left_out {
            0 => String::new(),
            n => format!(" ({n} more refused since the last line)"),
        };
        tracing::info!("node API: refused the TLS handshake of {peer}: {why}{more}");
    }
}

/// An accepted connection whose client proved it holds an owner certificate.
#[derive(Debug)]
struct TlsConnection {
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    peer: SocketAddr,
}

impl Connected for TlsConnection {
    type ConnectInfo = SocketAddr;

    fn connect_info(&self) -> SocketAddr {
        self.peer
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// NodeService over the shared handlers.
#[derive(Debug)]
struct Node(Arc<Handlers>);

const CLIENT: &str = "node API owner";

#[tonic::async_trait]
impl NodeService for Node {
    type GetLogsStream = LogStreamBox;

    async fn get_logs(
        &self,
        request: Request<GetLogsRequest>,
    ) -> Result<Response<Self::GetLogsStream>, Status> {
        Ok(Response::new(self.0.get_logs(request.into_inner())?))
    }

    async fn list_components(
        &self,
        _request: Request<ListComponentsRequest>,
    ) -> Result<Response<ListComponentsResponse>, Status> {
        Ok(Response::new(self.0.list_components()))
    }

    async fn list_conditions(
        &self,
        request: Request<ListConditionsRequest>,
    ) -> Result<Response<ListConditionsResponse>, Status> {
        Ok(Response::new(
            self.0.list_conditions_response(request.into_inner())?,
        ))
    }

    async fn wait_condition(
        &self,
        request: Request<WaitConditionRequest>,
    ) -> Result<Response<Condition>, Status> {
        Ok(Response::new(self.0.wait(request.into_inner()).await?))
    }

    async fn get_build_info(
        &self,
        _request: Request<GetBuildInfoRequest>,
    ) -> Result<Response<BuildInfo>, Status> {
        Ok(Response::new(self.0.build_info()))
    }

    async fn get_process_stats(
        &self,
        _request: Request<GetProcessStatsRequest>,
    ) -> Result<Response<GetProcessStatsResponse>, Status> {
        Ok(Response::new(self.0.get_process_stats()))
    }

    async fn shutdown(
        &self,
        request: Request<ShutdownRequest>,
    ) -> Result<Response<ShutdownResponse>, Status> {
        Ok(Response::new(self.0.shutdown(request.into_inner(), CLIENT)))
    }

    async fn get_kubeconfig(
        &self,
        request: Request<GetKubeconfigRequest>,
    ) -> Result<Response<GetDebugKubeconfigResponse>, Status> {
        let validity = request.into_inner().validity_seconds;
        let groups = [OWNER_GROUP.to_owned()];
        Ok(Response::new(
            self.0.kubeconfig(OWNER_USER, &groups, validity)?,
        ))
    }

    async fn load_image(
        &self,
        request: Request<tonic::Streaming<LoadImageRequest>>,
    ) -> Result<Response<LoadImageResponse>, Status> {
        Ok(Response::new(
            self.0.load_image(request.into_inner()).await?,
        ))
    }

    async fn list_images(
        &self,
        _request: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        Ok(Response::new(self.0.list_images().await?))
    }

    async fn create_join_token(
        &self,
        request: Request<CreateJoinTokenRequest>,
    ) -> Result<Response<CreateJoinTokenResponse>, Status> {
        let response = self.0.create_join_token(request.into_inner()).await?;
        Ok(Response::new(response))
    }
}
