//! Debug API latency on one node: a 1000-line tail of a component's log, and the delay
//! from a line being written to its arrival on a followed stream.
//!
//! Lines are produced through the API itself: every SignalComponent SIGCONT to
//! containerd (harmless to a running process) makes the agent log one line, so 1000
//! calls fill the agent's buffer past 1000 lines and each follow round has a line whose
//! cause the client controls. The follow delay therefore includes one request's round
//! trip through QEMU's port forward.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cairn_api::v1::{
    get_logs_response::Kind, GetLogsRequest, SignalComponentRequest, WaitConditionRequest,
};
use cairn_api::Client;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::node::{self, Bench};
use crate::report::{self, Machine};
use crate::stats::Summary;

const TAIL: u32 = 1000;
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Serialize, Deserialize)]
pub struct Results {
    pub machine: Machine,
    pub tail_lines: u32,
    /// Milliseconds per GetLogs call returning the last 1000 lines (request to last line).
    pub tail_ms: Vec<f64>,
    /// Milliseconds from sending the request that writes a line to receiving that line.
    pub follow_ms: Vec<f64>,
    pub tail: Option<Summary>,
    pub follow: Option<Summary>,
}

pub const NAME: &str = "debug-api";

pub fn run(bench: &Bench, rounds: usize) -> Result<PathBuf, Error> {
    let accel = bench.single_accel()?;
    node::runtime()?.block_on(async {
        let booted = bench.boot(NAME, accel).await?;
        let mut client = booted.client.clone();
        let wait = WaitConditionRequest {
            name: "containerd".into(),
            timeout_ms: 300_000,
        };
        let limit = Duration::from_millis(u64::from(wait.timeout_ms)) + node::WAIT_MARGIN;
        node::call(NAME, "WaitCondition", limit, client.wait_condition(wait)).await?;
        for _ in 0..TAIL {
            poke(&mut client).await?;
        }
        let mut tail_ms = Vec::new();
        let mut follow_ms = Vec::new();
        for _ in 0..rounds {
            tail_ms.push(tail_once(&mut client).await?);
            follow_ms.push(follow_once(&mut client).await?);
        }
        let results = Results {
            machine: Machine::describe(&accel.to_string()),
            tail_lines: TAIL,
            tail: Summary::of(&tail_ms),
            follow: Summary::of(&follow_ms),
            tail_ms,
            follow_ms,
        };
        report::write(&bench.results, NAME, &markdown(&results), &results)
    })
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

async fn tail_once(client: &mut Client) -> Result<f64, Error> {
    let started = Instant::now();
    let request = GetLogsRequest {
        component: "agent".into(),
        tail_lines: Some(TAIL),
        follow: false,
    };
    let lines = tokio::time::timeout(node::CALL_TIMEOUT, async {
        let mut stream = client.get_logs(request).await?.into_inner();
        let mut lines = 0;
        while let Some(message) = stream.message().await? {
            lines += usize::from(matches!(message.kind, Some(Kind::Entry(_))));
        }
        Ok(lines)
    })
    .await
    .map_err(|_| {
        Error::Unmeasurable(format!(
            "no whole GetLogs tail within {:?}",
            node::CALL_TIMEOUT
        ))
    })?
    .map_err(Error::api(NAME, "GetLogs"))?;
    if lines != TAIL as usize {
        return Err(Error::Unmeasurable(format!(
            "GetLogs: asked for {TAIL} lines of `agent`, got {lines}"
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
    let mut text = String::from("Milliseconds, over the host's forwarded port.\n\n");
    text.push_str(
        "| measurement | median | p95 | min | max |\n| --- | ---: | ---: | ---: | ---: |\n",
    );
    let rows = [
        (
            format!("GetLogs tail of {} lines", results.tail_lines),
            results.tail,
        ),
        (
            "line written -> arrives on a followed stream".to_owned(),
            results.follow,
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
