//! `CreateJoinToken`: a bootstrap token stored in the cluster, with what the joining
//! machine needs beside it ([`crate::kubernetes::join_token`]).

use cairn_api::v1::{CreateJoinTokenRequest, CreateJoinTokenResponse};
use cairn_api::validate;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use time::OffsetDateTime;

use super::error::RpcError;
use super::ApiState;
use crate::kubernetes::client::{self, LOCAL_APISERVER};
use crate::kubernetes::join_token::{self, JoinToken};

pub async fn create(
    state: &ApiState,
    request: CreateJoinTokenRequest,
) -> Result<CreateJoinTokenResponse, RpcError> {
    let ttl = validate::validity(request.ttl_seconds)?;
    let pki = state.pki.as_deref().ok_or(RpcError::PkiNotReady)?;
    let address = state.node_ip.ok_or(RpcError::NoNodeAddress)?;
    // The reconciler's bootstrap bindings let a token create its CSR; a token handed
    // out before them would fail its first uses, and the kubelet backs off for long.
    match state.conditions.get(crate::reconciler::CONDITION) {
        Some(bindings) if bindings.value => {}
        Some(bindings) => return Err(RpcError::JoinBindingsMissing(bindings.reason)),
        None => return Err(RpcError::JoinBindingsMissing("not reported yet".to_owned())),
    }
    let ca_hash = join_token::ca_hash(pki.ca_pem()).map_err(RpcError::CaHash)?;
    let now = OffsetDateTime::now_utc();
    let ttl = time::Duration::seconds(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));
    let token = JoinToken::generate(now + ttl).map_err(RpcError::Random)?;
    let client = client::client(pki.dir(), LOCAL_APISERVER)
        .map_err(|err| RpcError::JoinTokenSecret(cairn_api::error_chain(&err)))?;
    let secrets: Api<Secret> = Api::namespaced(client, join_token::NAMESPACE);
    secrets
        .create(&PostParams::default(), &token.secret_object())
        .await
        .map_err(|err| RpcError::JoinTokenSecret(cairn_api::error_chain(&err)))?;
    tracing::info!(
        "join token {} created; it authenticates until {}",
        token.id,
        token.expires
    );
    Ok(CreateJoinTokenResponse {
        token: token.token(),
        ca_hash,
        api: format!("{address}:{}", cairn_api::names::port::APISERVER),
        expires_unix_seconds: token.expires.unix_timestamp(),
    })
}
