//! `CreateJoinToken`: a bootstrap token stored in the cluster, with what the joining
//! machine needs beside it ([`crate::kubernetes::join_token`]).

use std::time::Duration;

use cairn_api::v1::{CreateJoinTokenRequest, CreateJoinTokenResponse};
use cairn_api::validate;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
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
    let secrets: Api<Secret> = Api::namespaced(client.clone(), join_token::NAMESPACE);
    secrets
        .create(&PostParams::default(), &token.secret_object())
        .await
        .map_err(|err| RpcError::JoinTokenSecret(cairn_api::error_chain(&err)))?;
    // The apiserver's token authenticator reads Secrets from its informer cache, which
    // lags the write: a token used at once would be refused for a moment. Hand it out
    // once the apiserver accepts it.
    match accepted(client, &token.token()).await {
        Ok(()) => tracing::info!(
            "join token {} created; it authenticates until {}",
            token.id,
            token.expires
        ),
        Err(why) => tracing::warn!(
            "join token {} created (valid until {}), but {why}",
            token.id,
            token.expires
        ),
    }
    Ok(CreateJoinTokenResponse {
        token: token.token(),
        ca_hash,
        api: format!("{address}:{}", cairn_api::names::port::APISERVER),
        expires_unix_seconds: token.expires.unix_timestamp(),
    })
}

/// How long [`accepted`] waits for the apiserver to see a new token.
const ACCEPT_WITHIN: Duration = Duration::from_secs(15);

/// Waits until the apiserver authenticates `token` (a TokenReview runs the same
/// authenticators as a request carrying it), or says why it did not within
/// [`ACCEPT_WITHIN`].
async fn accepted(client: kube::Client, token: &str) -> Result<(), String> {
    let reviews: Api<TokenReview> = Api::all(client);
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: token.to_owned(),
            ..TokenReviewSpec::default()
        },
        ..TokenReview::default()
    };
    let deadline = tokio::time::Instant::now() + ACCEPT_WITHIN;
    loop {
        let last = match reviews.create(&PostParams::default(), &review).await {
            Ok(answer) => match answer.status {
                Some(status) if status.authenticated == Some(true) => return Ok(()),
                Some(status) => status
                    .error
                    .unwrap_or_else(|| "not authenticated".to_owned()),
                None => "no status in the TokenReview".to_owned(),
            },
            Err(err) => cairn_api::error_chain(&err),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "the apiserver did not accept it within {ACCEPT_WITHIN:?}: {last}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
