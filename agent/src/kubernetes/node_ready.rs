//! The `node-ready` condition: the Node object's `Ready` condition, read through the
//! agent's client once a second until it is true, then every five seconds (the kubelet
//! posts it every ten). Polling rather than a watch: one small GET now and then is
//! nothing for a local apiserver, and there is no watch to re-establish after the
//! apiserver restarts.
//!
//! The Node object outlives a boot (it is in etcd, on the data disk), and with it the
//! Ready condition the kubelet posted before the reboot. So only a condition the
//! kubelet posted during this boot counts: its heartbeat must not be older than the
//! moment this follower started.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Api;

use crate::conditions::Conditions;
use cairn_api::error_chain;

pub const CONDITION: &str = cairn_api::names::condition::NODE_READY;
const PERIOD: Duration = Duration::from_secs(1);
/// Between two reads while the node is Ready.
const STEADY: Duration = Duration::from_secs(5);

/// Whose eyes the Node is read with.
#[derive(Debug, Clone)]
pub enum Source {
    /// The agent's client to the local apiserver (PKI directory); a control-plane node.
    Agent(PathBuf),
    /// The kubelet's kubeconfig, to its control plane; a worker, which has no client
    /// of its own. Read once the kubelet is ready (it writes the file before).
    Kubelet(PathBuf),
}

impl Source {
    /// The condition to wait for before asking.
    pub(super) fn gate(&self) -> &'static str {
        match self {
            Source::Agent(_) => super::apiserver::SERVICE,
            Source::Kubelet(_) => super::kubelet::SERVICE,
        }
    }

    pub(super) async fn client(&self) -> Result<kube::Client, String> {
        match self {
            Source::Agent(pki_dir) => {
                super::client::client(pki_dir, super::client::LOCAL_APISERVER)
                    .map_err(|err| error_chain(&err))
            }
            Source::Kubelet(kubeconfig) => super::client::kubelet_client(kubeconfig).await,
        }
    }
}

/// Follows the Node `node_name` for good; spawn once after the PKI step.
pub async fn run(source: Source, node_name: String, conditions: Conditions) {
    let gate = source.gate();
    conditions.set(CONDITION, false, format!("waiting for {gate}"));
    let boot_started = unix_now();
    let mut nodes: Option<Api<Node>> = None;
    let mut next = Duration::ZERO;
    loop {
        tokio::time::sleep(next).await;
        conditions.wait_true(gate).await;
        next = PERIOD;
        if nodes.is_none() {
            match source.client().await {
                Ok(client) => nodes = Some(Api::all(client)),
                Err(reason) => {
                    tracing::error!("node-ready: {reason}");
                    conditions.set(CONDITION, false, reason);
                    continue;
                }
            }
        }
        let Some(api) = &nodes else { continue };
        let (ready, reason) = match api.get_opt(&node_name).await {
            Ok(Some(node)) => readiness(&node, boot_started),
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
        next = if ready { STEADY } else { PERIOD };
    }
}

/// The Node's `Ready` condition as (status is True, its message), if the kubelet
/// posted it at or after `posted_since` (Unix seconds).
pub fn readiness(node: &Node, posted_since: i64) -> (bool, String) {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    let Some(c) = ready else {
        return (false, "the node reports no Ready condition yet".to_owned());
    };
    let heartbeat = c.last_heartbeat_time.as_ref().map(|t| t.0.as_second());
    if heartbeat.is_none_or(|posted| posted < posted_since) {
        return (
            false,
            "the Ready condition is from an earlier boot; waiting for the kubelet".to_owned(),
        );
    }
    let message = c.message.clone().unwrap_or_default();
    let reason = c.reason.clone().unwrap_or_default();
    (c.status == "True", format!("{reason}: {message}"))
}

fn unix_now() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
