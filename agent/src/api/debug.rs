//! The NodeDebugService listener (feature `debug-service`; debug images only).
//!
//! gRPC over plain HTTP/2 on [`DEBUG_ADDR`] (port 7837, docs/interfaces.md), which the
//! launcher forwards to 127.0.0.1 on the host. It has no authentication of its own,
//! which is why it exists only on debug images: a production image is built without the
//! feature, so this code and the listener are simply not in it.

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

use cairn_api::v1::node_debug_service_server::{NodeDebugService, NodeDebugServiceServer};
use cairn_api::v1::{
    BuildInfo, Condition, CreateJoinTokenRequest, CreateJoinTokenResponse, GetBuildInfoRequest,
    GetDebugKubeconfigRequest, GetDebugKubeconfigResponse, GetLogsRequest, GetProcessStatsRequest,
    GetProcessStatsResponse, ListComponentsRequest, ListComponentsResponse, ListConditionsRequest,
    ListConditionsResponse, ListImagesRequest, ListImagesResponse, LoadImageRequest,
    LoadImageResponse, RunContainerRequest, RunContainerResponse, ShutdownRequest,
    ShutdownResponse, SignalComponentRequest, SignalComponentResponse, WaitConditionRequest,
};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic::{Request, Response, Status};

use super::logs::LogStreamBox;
use super::{from_pods, Handlers};
use super::{KEEPALIVE, KEEPALIVE_TIMEOUT, MAX_REQUEST, MAX_RESPONSE, MAX_STREAMS};

/// Where the service listens on a node: every interface, port 7837.
pub const DEBUG_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(
    Ipv4Addr::UNSPECIFIED,
    cairn_api::DEBUG_PORT,
));

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
pub async fn serve(addr: SocketAddr, handlers: Arc<Handlers>) -> Result<(), DebugError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| DebugError::Bind(addr, e))?;
    serve_on(listener, handlers, std::future::pending()).await
}

/// Serves on an already bound `listener` until `shutdown` completes (tests bind
/// 127.0.0.1:0 and stop the server at the end).
pub async fn serve_on(
    listener: TcpListener,
    handlers: Arc<Handlers>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), DebugError> {
    let addr = listener
        .local_addr()
        .map_err(|e| DebugError::Bind(DEBUG_ADDR, e))?;
    let service = NodeDebugServiceServer::new(Debug(handlers))
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

/// The NodeDebugService over the shared handlers.
#[derive(Debug)]
struct Debug(Arc<Handlers>);

const CLIENT: &str = "debug client";

#[tonic::async_trait]
impl NodeDebugService for Debug {
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

    async fn signal_component(
        &self,
        request: Request<SignalComponentRequest>,
    ) -> Result<Response<SignalComponentResponse>, Status> {
        Ok(Response::new(
            self.0.signal_component(&request.into_inner())?,
        ))
    }

    async fn get_debug_kubeconfig(
        &self,
        request: Request<GetDebugKubeconfigRequest>,
    ) -> Result<Response<GetDebugKubeconfigResponse>, Status> {
        let request = request.into_inner();
        Ok(Response::new(self.0.kubeconfig(
            &request.user,
            &request.groups,
            request.validity_seconds,
        )?))
    }

    async fn run_container(
        &self,
        request: Request<RunContainerRequest>,
    ) -> Result<Response<RunContainerResponse>, Status> {
        Ok(Response::new(self.0.run(request.into_inner()).await?))
    }

    async fn shutdown(
        &self,
        request: Request<ShutdownRequest>,
    ) -> Result<Response<ShutdownResponse>, Status> {
        Ok(Response::new(self.0.shutdown(request.into_inner(), CLIENT)))
    }

    async fn get_process_stats(
        &self,
        _request: Request<GetProcessStatsRequest>,
    ) -> Result<Response<GetProcessStatsResponse>, Status> {
        Ok(Response::new(self.0.get_process_stats()))
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
