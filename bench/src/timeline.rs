//! Boot timeline: when each condition first became true (seconds since kernel start,
//! CLOCK_BOOTTIME in the guest), over several fresh boots. `mounts` is the first thing
//! PID 1 does after leaving the initramfs root, so it stands for "kernel -> PID 1".

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use cairn_api::v1::{ListConditionsRequest, WaitConditionRequest};
use serde::Serialize;

use crate::first_pod;
use crate::node::{Bench, Error};
use crate::report::{self, Machine};
use crate::stats::Summary;

/// How long one boot may take to reach the final condition under TCG.
const UNTIL_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Serialize)]
struct Results {
    machine: Machine,
    until: String,
    /// Per boot: condition -> seconds since kernel start it first became true.
    boots: Vec<BTreeMap<String, f64>>,
    summary: BTreeMap<String, Summary>,
}

pub fn run(bench: &Bench, boots: usize, until: &str, first_pod: bool) -> Result<PathBuf, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut timelines = Vec::new();
    let mut accel = String::new();
    for i in 1..=boots {
        eprintln!("cairn-bench: boot {i}/{boots}");
        let (timeline, used) = runtime.block_on(one_boot(bench, until, first_pod))?;
        timelines.push(timeline);
        accel = used;
    }
    let results = Results {
        machine: Machine::describe(&accel),
        until: until.to_owned(),
        summary: summarize(&timelines),
        boots: timelines,
    };
    report::write(
        &bench.results,
        "boot-timeline",
        &markdown(&results),
        &results,
    )
}

async fn one_boot(
    bench: &Bench,
    until: &str,
    first_pod: bool,
) -> Result<(BTreeMap<String, f64>, String), Error> {
    let mut booted = bench.boot("timeline").await?;
    let wait = WaitConditionRequest {
        name: until.to_owned(),
        timeout_ms: UNTIL_TIMEOUT.as_millis() as u32,
    };
    booted.client.wait_condition(wait).await?;
    // Measured first, so the pod is created right after `until` is seen; conditions
    // that turn true later (the controller-manager's can follow node-ready) are still
    // read afterwards.
    let took = match first_pod {
        true => Some(first_pod::create_to_running(&mut booted).await?),
        false => None,
    };
    let listed = booted
        .client
        .list_conditions(ListConditionsRequest::default())
        .await?
        .into_inner();
    let mut timeline: BTreeMap<String, f64> = listed
        .conditions
        .into_iter()
        .filter_map(|c| Some((c.name, c.first_true_boot_ns? as f64 / 1e9)))
        .collect();
    if let Some(pod) = took {
        // Host seconds since `until` was seen, added to that condition's guest time.
        let base = timeline.get(until).copied().unwrap_or_default();
        timeline.insert("first-pod-running".to_owned(), base + pod.since_call);
        timeline.insert(
            "first-pod: create -> running".to_owned(),
            pod.create_to_running,
        );
    }
    Ok((timeline, booted.accel.clone()))
}

fn summarize(boots: &[BTreeMap<String, f64>]) -> BTreeMap<String, Summary> {
    let mut samples: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for boot in boots {
        for (name, seconds) in boot {
            samples.entry(name.clone()).or_default().push(*seconds);
        }
    }
    samples
        .into_iter()
        .filter_map(|(name, values)| Some((name, Summary::of(&values)?)))
        .collect()
}

fn markdown(results: &Results) -> String {
    let mut text = String::from("# Boot timeline\n\n");
    text.push_str(&results.machine.markdown());
    let _ = writeln!(
        text,
        "{} boots, each until `{}`. Seconds since kernel start when each condition first \
         became true. `first-pod-running` (with --first-pod) is the time of `until` plus the \
         host-side seconds from seeing it to the first pod's Ready condition (waiting for \
         the `default` service account, then creating the pod); `first-pod: create -> \
         running` is the pod alone.\n",
        results.boots.len(),
        results.until
    );
    text.push_str("| condition | median | min | max |\n| --- | ---: | ---: | ---: |\n");
    let mut rows: Vec<_> = results.summary.iter().collect();
    rows.sort_by(|a, b| a.1.median.total_cmp(&b.1.median));
    for (name, s) in rows {
        let _ = writeln!(
            text,
            "| {name} | {:.2} | {:.2} | {:.2} |",
            s.median, s.min, s.max
        );
    }
    text
}
