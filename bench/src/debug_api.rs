//! Debug API latency on one node: a 1000-line tail of a component's log, the delay
//! from a line being written to its arrival on a followed stream, and what the owner's
//! node API (mTLS) costs against the debug service's plain HTTP/2: a new connection up
//! to its first answer, and the same tail.
//!
//! Lines are produced through the API itself: every SignalComponent SIGCONT to
//! containerd (harmless to a running process) makes the agent log one line, so 1000
//! calls fill the agent's buffer past 1000 lines and each follow round has a line whose
//! cause the client controls. The follow delay therefore includes one request's round
//! trip through QEMU's port forward.
//!
//! The node is booted with a throwaway owner CA (`dbg owner init` into a temporary
//! directory) in its per-node config, so it serves the node API beside the debug
//! service. A connection is made as `dbg` makes it: [`cairn_api::connect`] (TCP, HTTP/2,
//! GetBuildInfo) for the debug service, [`connect_owner`] (TCP, TLS 1.3 with the owner's
//! client certificate, HTTP/2, GetBuildInfo) for the node API, trusting the cluster CA
//! that the first connection was shown and pinned. The tails go over one long-lived
//! connection of each kind.

use std::fmt::Write as _;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cairn_api::names::{condition, service};
use cairn_api::node_config::{NodeConfig as Settings, Owner};
use cairn_api::owner_client::{
    connect_owner, connect_owner_within, OwnerConnectError, OwnerConnection, OwnerIdentity,
    ServerTrust,
};
use cairn_api::v1::{
    get_logs_response::Kind, GetLogsRequest, GetLogsResponse, SignalComponentRequest,
    WaitConditionRequest,
};
use cairn_api::Client;
use serde::{Deserialize, Serialize};
use tonic::codec::Streaming;

use crate::error::{self, Error};
use crate::node::{self, Bench};
use crate::report::{self, Machine};
use crate::stats::Summary;

const TAIL: u32 = 1000;
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server-side WaitCondition may wait for containerd and the node API.
const WAIT_TIMEOUT_MS: u32 = 300_000;
/// The node API answers a moment after its condition turns true; retries end here.
const NODE_API_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Serialize, Deserialize)]
pub struct Results {
    pub machine: Machine,
    pub tail_lines: u32,
    /// Milliseconds per GetLogs call returning the last 1000 lines (request to last line).
    pub tail_ms: Vec<f64>,
    /// Milliseconds from sending the request that writes a line to receiving that line.
    pub follow_ms: Vec<f64>,
    /// Milliseconds per new connection to the debug service up to its first answer:
    /// TCP, HTTP/2, GetBuildInfo ([`cairn_api::connect`]).
    #[serde(default)]
    pub connect_plain_ms: Vec<f64>,
    /// Milliseconds per new connection to the node API up to its first answer: TCP,
    /// TLS 1.3 with the owner's client certificate, HTTP/2, GetBuildInfo
    /// ([`connect_owner`], the node's CA pinned).
    #[serde(default)]
    pub connect_mtls_ms: Vec<f64>,
    /// [`Results::tail_ms`] over the node API's mTLS connection.
    #[serde(default)]
    pub tail_mtls_ms: Vec<f64>,
    pub tail: Option<Summary>,
    pub follow: Option<Summary>,
    #[serde(default)]
    pub connect_plain: Option<Summary>,
    #[serde(default)]
    pub connect_mtls: Option<Summary>,
    #[serde(default)]
    pub tail_mtls: Option<Summary>,
}

pub const NAME: &str = "debug-api";

pub fn run(bench: &Bench, rounds: usize) -> Result<PathBuf, Error> {
    let accel = bench.single_accel()?;
    // Removed when dropped, after the node is.
    let owner_dir = tempfile::tempdir().map_err(Error::write(std::env::temp_dir()))?;
    let (owner_ca, identity) = owner(owner_dir.path())?;
    let settings = Settings {
        owner: Some(Owner {
            ca: owner_ca,
            handover_signature: None,
        }),
        ..Default::default()
    };
    node::runtime()?.block_on(async {
        let booted = bench
            .boot_with_settings(NAME, accel, &[], Some(settings))
            .await?;
        let mut client = booted.client.clone();
        wait(&mut client, service::CONTAINERD).await?;
        wait(&mut client, condition::NODE_API).await?;
        let debug_endpoint = booted
            .node
            .debug_endpoint()
            .ok_or_else(|| Error::Unmeasurable(format!("node `{NAME}` has no debug forward")))?
            .to_owned();
        let node_api = booted
            .node
            .node_api_endpoint()
            .ok_or_else(|| Error::Unmeasurable(format!("node `{NAME}` has no node API forward")))?
            .to_owned();
        let mut owner = first_owner_connection(&node_api, &identity).await?;
        let pinned = ServerTrust::Pinned(owner.server_ca_pem.clone());
        for _ in 0..TAIL {
            poke(&mut client).await?;
        }
        let mut tail_ms = Vec::new();
        let mut follow_ms = Vec::new();
        let mut tail_mtls_ms = Vec::new();
        let mut connect_plain_ms = Vec::new();
        let mut connect_mtls_ms = Vec::new();
        // Interleaved, so a slow spell of the host weighs on every figure alike.
        for _ in 0..rounds {
            tail_ms.push(tail_once("GetLogs", client.get_logs(tail_request())).await?);
            let request = owner.client.get_logs(tail_request());
            tail_mtls_ms.push(tail_once("GetLogs (mTLS)", request).await?);
            follow_ms.push(follow_once(&mut client).await?);
            connect_plain_ms.push(connect_plain(&debug_endpoint).await?);
            connect_mtls_ms.push(connect_mtls(&node_api, &identity, &pinned).await?);
        }
        let results = Results {
            machine: Machine::describe(&accel.to_string()),
            tail_lines: TAIL,
            tail: Summary::of(&tail_ms),
            follow: Summary::of(&follow_ms),
            connect_plain: Summary::of(&connect_plain_ms),
            connect_mtls: Summary::of(&connect_mtls_ms),
            tail_mtls: Summary::of(&tail_mtls_ms),
            tail_ms,
            follow_ms,
            connect_plain_ms,
            connect_mtls_ms,
            tail_mtls_ms,
        };
        report::write(&bench.results, NAME, &markdown(&results), &results)
    })
}

/// New owner credentials in `dir`: the owner CA (PEM) for the node, and the client
/// identity to present to it.
fn owner(dir: &Path) -> Result<(String, OwnerIdentity), Error> {
    let unusable = |err: cairn_dbg::owner::OwnerError| {
        Error::Unmeasurable(format!(
            "owner credentials in {}: {}",
            dir.display(),
            error::chain(&err)
        ))
    };
    cairn_dbg::owner::init(dir, false).map_err(unusable)?;
    let credentials = cairn_dbg::owner::load(dir).map_err(unusable)?;
    let identity = OwnerIdentity {
        cert_pem: credentials.cert_pem,
        key_pem: credentials.key_pem,
    };
    Ok((credentials.ca_pem, identity))
}

/// Waits until condition `name` is true.
async fn wait(client: &mut Client, name: &str) -> Result<(), Error> {
    let wait = WaitConditionRequest {
        name: name.into(),
        timeout_ms: WAIT_TIMEOUT_MS,
    };
    let limit = Duration::from_millis(u64::from(wait.timeout_ms)) + node::WAIT_MARGIN;
    node::call(NAME, "WaitCondition", limit, client.wait_condition(wait)).await?;
    Ok(())
}

/// The first connection to the node API, trusting the CA the node shows (to be pinned
/// for the others); retried while the node API does not answer yet.
async fn first_owner_connection(
    endpoint: &str,
    identity: &OwnerIdentity,
) -> Result<OwnerConnection, Error> {
    let trust = ServerTrust::FirstUse;
    let connection = connect_owner_within(endpoint, identity, &trust, NODE_API_TIMEOUT)
        .await
        .map_err(|err| owner_error(&err))?;
    if connection.server_ca_pem.is_empty() {
        return Err(Error::Unmeasurable(format!(
            "the node API at {endpoint} showed no CA to pin"
        )));
    }
    Ok(connection)
}

fn owner_error(err: &OwnerConnectError) -> Error {
    Error::Unmeasurable(format!("node `{NAME}`'s node API: {}", error::chain(err)))
}

/// Milliseconds for a new debug service connection and its first call.
async fn connect_plain(endpoint: &str) -> Result<f64, Error> {
    let started = Instant::now();
    let client = cairn_api::connect(endpoint, node::CALL_TIMEOUT)
        .await
        .map_err(|e| Error::Connect(NAME.to_owned(), Box::new(e)))?;
    let elapsed = started.elapsed();
    drop(client);
    Ok(elapsed.as_secs_f64() * 1e3)
}

/// Milliseconds for a new node API (mTLS) connection and its first call.
async fn connect_mtls(
    endpoint: &str,
    identity: &OwnerIdentity,
    trust: &ServerTrust,
) -> Result<f64, Error> {
    let started = Instant::now();
    let connection = connect_owner(endpoint, identity, trust, node::CALL_TIMEOUT)
        .await
        .map_err(|e| owner_error(&e))?;
    let elapsed = started.elapsed();
    drop(connection);
    Ok(elapsed.as_secs_f64() * 1e3)
}

/// Makes the agent log one line.
async fn poke(client: &mut Client) -> Result<(), Error> {
    let request = SignalComponentRequest {
        component: "containerd".into(),
        signal: "SIGCONT".into(),
    };
    let request = client.signal_component(request);
    node::call(NAME, "SignalComponent", node::CALL_TIMEOUT, request).await?;
    Ok(())
}

/// The last 1000 lines of the agent's log.
fn tail_request() -> GetLogsRequest {
    GetLogsRequest {
        component: "agent".into(),
        tail_lines: Some(TAIL),
        follow: false,
    }
}

/// Milliseconds from sending `request` (a GetLogs tail, over either API) to its last
/// line; `call` names it in errors.
async fn tail_once(
    call: &'static str,
    request: impl Future<Output = Result<tonic::Response<Streaming<GetLogsResponse>>, tonic::Status>>,
) -> Result<f64, Error> {
    let started = Instant::now();
    let lines = tokio::time::timeout(node::CALL_TIMEOUT, async {
        let mut stream = request.await?.into_inner();
        let mut lines = 0;
        while let Some(message) = stream.message().await? {
            lines += usize::from(matches!(message.kind, Some(Kind::Entry(_))));
        }
        Ok(lines)
    })
    .await
    .map_err(|_| {
        Error::Unmeasurable(format!(
            "no whole {call} tail within {:?}",
            node::CALL_TIMEOUT
        ))
    })?
    .map_err(Error::api(NAME, call))?;
    if lines != TAIL as usize {
        return Err(Error::Unmeasurable(format!(
            "{call}: asked for {TAIL} lines of `agent`, got {lines}"
        )));
    }
    Ok(started.elapsed().as_secs_f64() * 1e3)
}

async fn follow_once(client: &mut Client) -> Result<f64, Error> {
    let request = GetLogsRequest {
        component: "agent".into(),
        tail_lines: Some(0),
        follow: true,
    };
    let request = client.get_logs(request);
    let mut stream = node::call(NAME, "GetLogs", node::CALL_TIMEOUT, request).await?;
    let started = Instant::now();
    poke(&mut client.clone()).await?;
    let arrived = tokio::time::timeout(FOLLOW_TIMEOUT, async {
        while let Some(message) = stream.message().await? {
            if let Some(Kind::Entry(entry)) = message.kind {
                if entry.text.contains("SIGCONT") {
                    return Ok(started.elapsed());
                }
            }
        }
        Err(tonic::Status::unavailable("the followed stream ended"))
    })
    .await
    .map_err(|_| {
        Error::Unmeasurable(format!(
            "no followed line arrived within {FOLLOW_TIMEOUT:?}"
        ))
    })?
    .map_err(Error::api(NAME, "GetLogs (follow)"))?;
    Ok(arrived.as_secs_f64() * 1e3)
}

pub fn markdown(results: &Results) -> String {
    report::page("Debug API latency", &results.machine, &body(results))
}

/// The figures without title and machine, for RESULTS.md too.
pub fn body(results: &Results) -> String {
    let mut text = String::from(
        "Milliseconds, over the host's forwarded port. Plain is the debug service (HTTP/2 \
         without TLS); mTLS is the owner's node API (TLS 1.3, the owner's ed25519 client \
         certificate, the node's CA pinned). A connect is a new TCP connection through \
         QEMU's port forward, the handshakes and one GetBuildInfo; tails reuse one \
         connection.\n\n",
    );
    text.push_str(
        "| measurement | median | p95 | min | max |\n| --- | ---: | ---: | ---: | ---: |\n",
    );
    let rows = [
        (
            format!("GetLogs tail of {} lines", results.tail_lines),
            results.tail,
        ),
        (
            format!("GetLogs tail of {} lines over mTLS", results.tail_lines),
            results.tail_mtls,
        ),
        (
            "line written -> arrives on a followed stream".to_owned(),
            results.follow,
        ),
        (
            "connect + first call, plain HTTP/2".to_owned(),
            results.connect_plain,
        ),
        (
            "connect + first call, mTLS (TLS 1.3, client certificate)".to_owned(),
            results.connect_mtls,
        ),
    ];
    for (name, summary) in rows {
        if let Some(s) = summary {
            let _ = writeln!(
                text,
                "| {name} | {:.1} | {:.1} | {:.1} | {:.1} |",
                s.median, s.p95, s.min, s.max
            );
        }
    }
    text
}
