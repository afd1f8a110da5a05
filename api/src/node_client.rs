//! One client for both surfaces: the debug service (plain, debug images) and the
//! owner's node API (mTLS, every image). They share their messages, so a caller such as
//! `dbg` makes the same calls through either; what only one surface has is named so.

use tonic::codegen::tokio_stream::Stream;
use tonic::{Response, Status, Streaming};

use crate::node::v1::GetKubeconfigRequest;
use crate::owner_client::OwnerClient;
use crate::v1::*;
use crate::Client;

/// A connected client of one surface.
#[derive(Debug, Clone)]
pub enum NodeClient {
    /// The NodeDebugService.
    Debug(Client),
    /// The owner's NodeService.
    Owner(OwnerClient),
}

macro_rules! both {
    ($self:ident, $call:ident, $request:expr) => {
        match $self {
            NodeClient::Debug(client) => client.$call($request).await,
            NodeClient::Owner(client) => client.$call($request).await,
        }
    };
}

impl NodeClient {
    /// "debug service" or "node API", for messages.
    pub fn surface(&self) -> &'static str {
        match self {
            NodeClient::Debug(_) => "debug service",
            NodeClient::Owner(_) => "node API",
        }
    }

    pub async fn get_logs(
        &mut self,
        request: GetLogsRequest,
    ) -> Result<Response<Streaming<GetLogsResponse>>, Status> {
        both!(self, get_logs, request)
    }

    pub async fn list_components(
        &mut self,
        request: ListComponentsRequest,
    ) -> Result<Response<ListComponentsResponse>, Status> {
        both!(self, list_components, request)
    }

    pub async fn list_conditions(
        &mut self,
        request: ListConditionsRequest,
    ) -> Result<Response<ListConditionsResponse>, Status> {
        both!(self, list_conditions, request)
    }

    pub async fn wait_condition(
        &mut self,
        request: WaitConditionRequest,
    ) -> Result<Response<Condition>, Status> {
        both!(self, wait_condition, request)
    }

    pub async fn get_build_info(
        &mut self,
        request: GetBuildInfoRequest,
    ) -> Result<Response<BuildInfo>, Status> {
        both!(self, get_build_info, request)
    }

    pub async fn get_process_stats(
        &mut self,
        request: GetProcessStatsRequest,
    ) -> Result<Response<GetProcessStatsResponse>, Status> {
        both!(self, get_process_stats, request)
    }

    pub async fn shutdown(
        &mut self,
        request: ShutdownRequest,
    ) -> Result<Response<ShutdownResponse>, Status> {
        both!(self, shutdown, request)
    }

    pub async fn load_image(
        &mut self,
        requests: impl Stream<Item = LoadImageRequest> + Send + 'static,
    ) -> Result<Response<LoadImageResponse>, Status> {
        both!(self, load_image, requests)
    }

    pub async fn list_images(
        &mut self,
        request: ListImagesRequest,
    ) -> Result<Response<ListImagesResponse>, Status> {
        both!(self, list_images, request)
    }

    pub async fn create_join_token(
        &mut self,
        request: CreateJoinTokenRequest,
    ) -> Result<Response<CreateJoinTokenResponse>, Status> {
        both!(self, create_join_token, request)
    }

    /// A kubeconfig: for the identity `request` names from the debug service; from the
    /// node API always the owner's, so there only the validity is used.
    pub async fn kubeconfig(
        &mut self,
        request: GetDebugKubeconfigRequest,
    ) -> Result<Response<GetDebugKubeconfigResponse>, Status> {
        match self {
            NodeClient::Debug(client) => client.get_debug_kubeconfig(request).await,
            NodeClient::Owner(client) => {
                let request = GetKubeconfigRequest {
                    validity_seconds: request.validity_seconds,
                };
                client.get_kubeconfig(request).await
            }
        }
    }
}
