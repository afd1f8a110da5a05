//! Join tokens are single-use (docs/interfaces.md "Join tokens"): on a control-plane
//! node this task deletes a bootstrap token's Secret once a node joined with it.
//!
//! Upstream, a bootstrap token authenticates until it expires, however often it is
//! used. A token has served its purpose when a kubelet client CSR that it made
//! (`spec.username` = `system:bootstrap:<id>`) has been issued and the Node the request
//! names (CN `system:node:<n>`) has registered: the kubelet then talks with its own
//! certificate. Not earlier: the kubelet waits for its certificate with the token, and
//! would be stuck on 401 if it went sooner. Once the Secret is gone the apiserver
//! refuses the token, and a worker given it says so in `joined`.
//!
//! Polls like the serving-CSR approver, on the same client.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{Node, Secret};
use kube::api::{DeleteParams, ListParams};
use kube::Api;

use cairn_api::error_chain;

use super::csr_approver::{Request, NODE_PREFIX};
use super::join_token;

/// The signer of kubelet client certificates.
pub const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
const PERIOD: Duration = Duration::from_secs(3);
const BOOTSTRAP_PREFIX: &str = "system:bootstrap:";

/// A token that has joined a node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Spent {
    pub token_id: String,
    pub node: String,
}

/// The tokens in `csrs` whose issued client certificate's Node is among `nodes`.
pub fn spent(csrs: &[CertificateSigningRequest], nodes: &[Node]) -> Vec<Spent> {
    let registered: BTreeSet<&str> = nodes
        .iter()
        .filter_map(|n| n.metadata.name.as_deref())
        .collect();
    let mut spent = BTreeSet::new();
    for csr in csrs {
        let spec = &csr.spec;
        let Some(token_id) = token_id(csr) else {
            continue;
        };
        let issued = csr
            .status
            .as_ref()
            .is_some_and(|s| s.certificate.as_ref().is_some_and(|c| !c.0.is_empty()));
        if spec.signer_name != CLIENT_SIGNER || !issued {
            continue;
        }
        let Ok(request) = Request::parse(&spec.request.0) else {
            continue;
        };
        let node = request
            .common_name
            .as_deref()
            .and_then(|cn| cn.strip_prefix(NODE_PREFIX));
        if let Some(node) = node.filter(|n| registered.contains(n)) {
            spent.insert(Spent {
                token_id: token_id.to_owned(),
                node: node.to_owned(),
            });
        }
    }
    spent.into_iter().collect()
}

/// The id of the bootstrap token that made `csr`, if one did.
fn token_id(csr: &CertificateSigningRequest) -> Option<&str> {
    (csr.spec.username.as_deref())?.strip_prefix(BOOTSTRAP_PREFIX)
}

/// Deletes spent tokens' Secrets for good; spawn once the apiserver is ready.
pub async fn run(client: kube::Client) {
    let requests: Api<CertificateSigningRequest> = Api::all(client.clone());
    let nodes: Api<Node> = Api::all(client.clone());
    let secrets: Api<Secret> = Api::namespaced(client, join_token::NAMESPACE);
    let issued_by_tokens =
        ListParams::default().fields(&format!("spec.signerName={CLIENT_SIGNER}"));
    // Tokens already deleted: their CSRs stay listed for an hour.
    let mut done = BTreeSet::new();
    loop {
        tokio::time::sleep(PERIOD).await;
        let csrs = match requests.list(&issued_by_tokens).await {
            Ok(list) => list.items,
            Err(err) => {
                tracing::debug!("join tokens: cannot list CSRs: {}", error_chain(&err));
                continue;
            }
        };
        let from_tokens = (csrs.iter().filter_map(token_id)).any(|id| !done.contains(id));
        if !from_tokens {
            continue;
        }
        let nodes = match nodes.list(&ListParams::default()).await {
            Ok(list) => list.items,
            Err(err) => {
                tracing::debug!("join tokens: cannot list Nodes: {}", error_chain(&err));
                continue;
            }
        };
        for Spent { token_id, node } in spent(&csrs, &nodes) {
            if done.contains(&token_id) {
                continue;
            }
            let name = join_token::secret_name(&token_id);
            match secrets.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {
                    tracing::info!(
                        "join token {token_id} joined node {node}: deleted (single use)"
                    );
                    done.insert(token_id);
                }
                Err(kube::Error::Api(status)) if status.is_not_found() => {
                    done.insert(token_id);
                }
                Err(err) => tracing::warn!(
                    "join token {token_id} joined node {node} but was not deleted: {}",
                    error_chain(&err)
                ),
            }
        }
    }
}

#[cfg(test)]
#[path = "spent_tokens_tests.rs"]
mod tests;
