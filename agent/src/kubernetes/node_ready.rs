//! The `node-ready` condition: the Node object's `Ready` condition, read through the
//! agent's client once a second. Polling rather than a watch: one small GET per
//! second is nothing for a local apiserver, and there is no watch to re-establish
//! after the apiserver restarts.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Api;

use crate::conditions::Conditions;
use crate::console::error_chain;

pub const CONDITION: &str = "node-ready";
const PERIOD: Duration = Duration::from_secs(1);

/// Follows the Node `node_name` for good; spawn once after the PKI step.
pub async fn run(pki_dir: PathBuf, node_name: String, conditions: Conditions) {
    conditions.set(CONDITION, false, "waiting for kube-apiserver");
    let client = match crate::kube::client(&pki_dir, crate::kube::LOCAL_APISERVER) {
        Ok(client) => client,
        Err(err) => {
            let reason = error_chain(&err);
            tracing::error!("node-ready: {reason}");
            return conditions.set(CONDITION, false, reason);
        }
    };
    let nodes: Api<Node> = Api::all(client);
    let mut ticker = tokio::time::interval(PERIOD);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        conditions.wait_true(super::apiserver::SERVICE).await;
        let (ready, reason) = match nodes.get_opt(&node_name).await {
            Ok(Some(node)) => readiness(&node),
            Ok(None) => (false, format!("node {node_name} is not registered yet")),
            Err(err) => (
                false,
                format!("cannot read node {node_name}: {}", error_chain(&err)),
            ),
        };
        let changed = conditions.get(CONDITION).is_none_or(|c| c.value != ready);
        if changed {
            tracing::info!("node-ready: {ready} ({reason})");
        }
        conditions.set(CONDITION, ready, reason);
    }
}

/// The Node's `Ready` condition as (status is True, its message).
pub fn readiness(node: &Node) -> (bool, String) {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    match ready {
        Some(c) => {
            let message = c.message.clone().unwrap_or_default();
            let reason = c.reason.clone().unwrap_or_default();
            (c.status == "True", format!("{reason}: {message}"))
        }
        None => (false, "the node reports no Ready condition yet".to_owned()),
    }
}
