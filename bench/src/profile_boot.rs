//! Boot profile (`make profile-boot`): where the control plane's start-up time goes
//! under the accelerator in use, before anything is cut. One fresh boot with
//! `cairn.profile=boot` on the kernel command line (the agent's `profile` module), then:
//!
//! - each service's Go package initialisation (`GODEBUG=inittrace=1`): total clock
//!   time and the slowest packages, and how long after its start the service printed
//!   its first line of its own;
//! - kube-apiserver's `/readyz?verbose` checks, each timed to its first pass from
//!   inside the guest (the agent's log), counted from the apiserver's start;
//! - the longest silences in the apiserver's log (what it was doing is the line
//!   after the gap);
//! - kube-apiserver's CPU profile from its start to ready, read from the data disk
//!   after the node stops (`debugfs`) and summarised with `go tool pprof` (flat and
//!   cumulative tops); the profile itself is kept beside the results.
//!
//! Writes `boot-profile.{md,json}` and `boot-profile.kube-apiserver.pprof`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cairn_api::names::profile::{CPU_PROFILE, PARAMETER};
use cairn_api::names::{condition, service};
use cairn_api::v1::{get_logs_response::Kind, GetLogsRequest, ListConditionsRequest, LogStream};
use cairn_qemu::Accel;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::measure;
use crate::node::{self, Bench};
use crate::report::{self, Machine};

pub const NAME: &str = "boot-profile";
/// The data partition's offset in the data disk (the agent partitions from 1 MiB).
const PARTITION_OFFSET: u64 = 1 << 20;
const UNTIL_TIMEOUT: Duration = Duration::from_secs(600);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// Rows in each top list.
const TOP: usize = 12;
const PPROF_NODES: usize = 30;

#[derive(Debug, Serialize, Deserialize)]
pub struct Results {
    pub machine: Machine,
    /// Condition -> seconds since kernel start it first became true.
    pub timeline: BTreeMap<String, f64>,
    pub services: Vec<ServiceProfile>,
    /// `/readyz?verbose` check -> seconds after the apiserver started it first passed.
    pub readyz: Vec<(String, f64)>,
    /// The longest silences in the apiserver's log: (seconds after its start the
    /// silence began, its length, the line that ended it).
    pub apiserver_gaps: Vec<(f64, f64, String)>,
    /// `go tool pprof -top` of the apiserver's CPU profile, flat and cumulative.
    pub pprof_flat: String,
    pub pprof_cum: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ServiceProfile {
    pub name: String,
    /// Seconds since kernel start the agent started it (the last start before ready).
    pub started_s: Option<f64>,
    /// Seconds from its start to its condition turning true.
    pub start_to_ready_s: Option<f64>,
    /// Seconds from its start to its first output line that is not an init trace.
    pub start_to_first_line_s: Option<f64>,
    /// Sum of the package initialisers' clock time, milliseconds.
    pub init_ms: f64,
    pub init_packages: usize,
    /// The slowest initialisers: (package, ms).
    pub slowest_inits: Vec<(String, f64)>,
}

/// One line of a component's log, as the profile needs it.
#[derive(Debug, Clone)]
struct Line {
    at_s: f64,
    agent: bool,
    text: String,
}

pub fn run(bench: &Bench) -> Result<PathBuf, Error> {
    let accel = bench.single_accel()?;
    let runtime = node::runtime()?;
    let name = "profile";
    let (timeline, logs, disk) = runtime.block_on(profiled_boot(bench, accel, name))?;
    let pprof = bench.results.join(format!("{NAME}.kube-apiserver.pprof"));
    std::fs::create_dir_all(&bench.results).map_err(Error::write(&bench.results))?;
    extract(&disk, &pprof)?;
    let go = std::env::var_os("GO")
        .map(PathBuf::from)
        .unwrap_or_else(|| "go".into());
    let top = |cum: bool| -> Result<String, Error> {
        let mut command = Command::new(&go);
        command.args(["tool", "pprof", "-top"]);
        if cum {
            command.arg("-cum");
        }
        command.arg(format!("-nodecount={PPROF_NODES}")).arg(&pprof);
        let output = measure::run(&mut command, "go tool pprof")?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let apiserver = logs
        .get(service::KUBE_APISERVER)
        .cloned()
        .unwrap_or_default();
    let apiserver_start = last_start(&apiserver);
    let results = Results {
        machine: Machine::describe(&accel.to_string()),
        services: logs
            .iter()
            .filter(|(name, _)| *name != service::AGENT)
            .map(|(name, lines)| service_profile(name, lines, &timeline))
            .collect(),
        readyz: readyz_times(
            logs.get(service::AGENT)
                .map(Vec::as_slice)
                .unwrap_or_default(),
            apiserver_start.unwrap_or_default(),
        ),
        apiserver_gaps: gaps(&apiserver, apiserver_start.unwrap_or_default()),
        timeline,
        pprof_flat: top(false)?,
        pprof_cum: top(true)?,
    };
    report::write(&bench.results, NAME, &markdown(&results), &results)
}

/// Boots, waits for `node-ready`, takes the conditions and every log, stops the node
/// cleanly (so the profile is on the disk); the data disk's path.
async fn profiled_boot(
    bench: &Bench,
    accel: Accel,
    name: &str,
) -> Result<(BTreeMap<String, f64>, BTreeMap<String, Vec<Line>>, PathBuf), Error> {
    let mut booted = bench
        .boot_with(name, accel, &[PARAMETER.to_owned()])
        .await?;
    booted
        .wait_true(condition::NODE_READY, UNTIL_TIMEOUT)
        .await?;
    eprintln!(
        "cairn-bench: node-ready {:.1}s after QEMU started; reading logs",
        booted.started.elapsed().as_secs_f64()
    );
    // The profile ends when the apiserver is ready, well before node-ready; its
    // "written" line says the file is complete.
    wait_for_line(
        &mut booted.client,
        name,
        service::KUBE_APISERVER,
        "CPU profile of",
    )
    .await?;
    let request = booted
        .client
        .list_conditions(ListConditionsRequest::default());
    let listed = node::call(name, "ListConditions", node::CALL_TIMEOUT, request).await?;
    let timeline = listed
        .conditions
        .into_iter()
        .filter_map(|c| Some((c.name, c.first_true_boot_ns? as f64 / 1e9)))
        .collect();
    let mut logs = BTreeMap::new();
    for component in service::ALL.iter().chain([&service::AGENT]) {
        logs.insert(
            (*component).to_owned(),
            read_log(&mut booted.client, name, component).await?,
        );
    }
    let disk = node::state_dir(name).join(cairn_qemu::config::DataDisk::FILE_NAME);
    booted.node.stop(STOP_TIMEOUT).map_err(Error::node(name))?;
    Ok((timeline, logs, disk))
}

async fn read_log(
    client: &mut cairn_api::Client,
    node: &str,
    component: &str,
) -> Result<Vec<Line>, Error> {
    let request = GetLogsRequest {
        component: component.to_owned(),
        tail_lines: None,
        follow: false,
    };
    let mut lines = Vec::new();
    let read = async {
        let mut stream = client.get_logs(request).await?.into_inner();
        while let Some(message) = stream.message().await? {
            if let Some(Kind::Entry(entry)) = message.kind {
                lines.push(Line {
                    at_s: entry.boot_time_ns as f64 / 1e9,
                    agent: entry.stream == LogStream::Agent as i32,
                    text: entry.text,
                });
            }
        }
        Ok(())
    };
    tokio::time::timeout(node::CALL_TIMEOUT, read)
        .await
        .map_err(|_| {
            Error::Unmeasurable(format!(
                "no whole log of {component} within {:?}",
                node::CALL_TIMEOUT
            ))
        })?
        .map_err(Error::api(node, "GetLogs"))?;
    Ok(lines)
}

async fn wait_for_line(
    client: &mut cairn_api::Client,
    node: &str,
    component: &str,
    needle: &str,
) -> Result<(), Error> {
    let deadline = tokio::time::Instant::now() + UNTIL_TIMEOUT;
    loop {
        let lines = read_log(client, node, component).await?;
        if lines.iter().any(|l| l.text.contains(needle)) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(Error::Unmeasurable(format!(
                "{component} never logged `{needle}` (is this a debug image built with the profile support?)"
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Copies the profile out of the stopped node's data disk with `debugfs` (e2fsprogs;
/// no mount, no root).
fn extract(disk: &Path, to: &Path) -> Result<(), Error> {
    let _ = std::fs::remove_file(to);
    let image = format!("{}?offset={PARTITION_OFFSET}", disk.display());
    // The data partition is mounted on /var in the guest.
    let in_partition = CPU_PROFILE.strip_prefix("/var").unwrap_or(CPU_PROFILE);
    let request = format!("dump {in_partition} {}", to.display());
    measure::run(
        Command::new("debugfs").args(["-R", &request, &image]),
        "debugfs (copying the CPU profile off the data disk)",
    )?;
    match std::fs::metadata(to) {
        Ok(meta) if meta.len() > 0 => Ok(()),
        _ => Err(Error::Unmeasurable(format!(
            "no CPU profile at {CPU_PROFILE} on {}",
            disk.display()
        ))),
    }
}

/// When the agent last started the component (its `started ... (pid N)` line).
fn last_start(lines: &[Line]) -> Option<f64> {
    lines
        .iter()
        .filter(|l| l.agent && l.text.starts_with("started "))
        .map(|l| l.at_s)
        .next_back()
}

fn service_profile(name: &str, lines: &[Line], timeline: &BTreeMap<String, f64>) -> ServiceProfile {
    let started = last_start(lines);
    let own = lines
        .iter()
        .filter(|l| !l.agent && started.is_some_and(|s| l.at_s >= s));
    let mut inits: Vec<(String, f64)> = own.clone().filter_map(|l| init_trace(&l.text)).collect();
    let first_line = own
        .clone()
        .find(|l| init_trace(&l.text).is_none())
        .map(|l| l.at_s);
    let init_ms = inits.iter().map(|(_, ms)| ms).sum();
    let init_packages = inits.len();
    inits.sort_by(|a, b| b.1.total_cmp(&a.1));
    inits.truncate(TOP);
    ServiceProfile {
        name: name.to_owned(),
        started_s: started,
        start_to_ready_s: started.zip(timeline.get(name)).map(|(s, r)| r - s),
        start_to_first_line_s: started.zip(first_line).map(|(s, f)| f - s),
        init_ms,
        init_packages,
        slowest_inits: inits,
    }
}

/// `init PKG @T ms, C ms clock, B bytes, A allocs` -> (PKG, C).
fn init_trace(text: &str) -> Option<(String, f64)> {
    let rest = text.strip_prefix("init ")?;
    let (package, rest) = rest.split_once(" @")?;
    let clock = rest.split(", ").nth(1)?.strip_suffix(" ms clock")?;
    Some((package.to_owned(), clock.parse().ok()?))
}

/// The agent's `profile: readyz CHECK ok at T s` lines, as seconds after `start`.
fn readyz_times(agent: &[Line], start: f64) -> Vec<(String, f64)> {
    agent
        .iter()
        .filter_map(|l| {
            let rest = l.text.split_once("profile: readyz ")?.1;
            let (check, at) = rest.split_once(" ok at ")?;
            let at: f64 = at.strip_suffix(" s")?.parse().ok()?;
            Some((check.to_owned(), at - start))
        })
        .collect()
}

/// The [`TOP`] longest silences in a component's own output after `start`.
fn gaps(lines: &[Line], start: f64) -> Vec<(f64, f64, String)> {
    let own: Vec<&Line> = lines
        .iter()
        .filter(|l| !l.agent && l.at_s >= start && init_trace(&l.text).is_none())
        .collect();
    let mut gaps: Vec<(f64, f64, String)> = own
        .windows(2)
        .map(|w| (w[0].at_s - start, w[1].at_s - w[0].at_s, w[1].text.clone()))
        .collect();
    gaps.sort_by(|a, b| b.1.total_cmp(&a.1));
    gaps.truncate(TOP);
    gaps.sort_by(|a, b| a.0.total_cmp(&b.0));
    gaps
}

pub fn markdown(results: &Results) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "One fresh boot with `{PARAMETER}`, until `node-ready`. Times in seconds; the \
         profiling itself (init traces, a CPU profile, `/readyz?verbose` every 250 ms) \
         slows the boot a little, so compare figures within this page, and boots with \
         the boot-timeline benchmark.\n"
    );
    text.push_str("## Services\n\nStarted: seconds since kernel start. Go init: the package initialisers' total clock time before `main`.\n\n");
    text.push_str("| service | started | start -> first line | start -> ready | Go init (ms) | packages | slowest initialisers (ms) |\n| --- | ---: | ---: | ---: | ---: | ---: | --- |\n");
    let mut services: Vec<&ServiceProfile> = results.services.iter().collect();
    services.sort_by(|a, b| {
        a.started_s
            .unwrap_or(f64::MAX)
            .total_cmp(&b.started_s.unwrap_or(f64::MAX))
    });
    for s in services {
        let slowest: Vec<String> = s
            .slowest_inits
            .iter()
            .take(4)
            .map(|(p, ms)| format!("{p} {ms:.0}"))
            .collect();
        let _ = writeln!(
            text,
            "| {} | {} | {} | {} | {:.0} | {} | {} |",
            s.name,
            report::num(s.started_s, 2),
            report::num(s.start_to_first_line_s, 2),
            report::num(s.start_to_ready_s, 2),
            s.init_ms,
            s.init_packages,
            slowest.join(", ")
        );
    }
    text.push_str("\n## kube-apiserver `/readyz` checks\n\nSeconds after the apiserver started when each check first passed (polled from the agent every 250 ms).\n\n| check | passed at |\n| --- | ---: |\n");
    let mut readyz = results.readyz.clone();
    readyz.sort_by(|a, b| a.1.total_cmp(&b.1));
    for (check, at) in &readyz {
        let _ = writeln!(text, "| {check} | {at:.2} |");
    }
    text.push_str("\n## kube-apiserver's longest silences\n\nSeconds after its start; the line that ended the silence says what it had been doing.\n\n| from | silent for | next line |\n| --- | ---: | --- |\n");
    for (from, length, line) in &results.apiserver_gaps {
        let line: String = line.chars().take(160).collect();
        let _ = writeln!(
            text,
            "| {from:.2} | {length:.2} | `{}` |",
            line.replace('|', "\\|").replace('`', "'")
        );
    }
    let _ = writeln!(
        text,
        "\n## kube-apiserver CPU profile, start to ready\n\n\
         `go tool pprof -top` of [{NAME}.kube-apiserver.pprof]({NAME}.kube-apiserver.pprof).\n\n\
         ### By own time\n\n```\n{}```\n\n### Cumulative\n\n```\n{}```",
        results.pprof_flat, results.pprof_cum
    );
    let mut timeline: Vec<(&String, &f64)> = results.timeline.iter().collect();
    timeline.sort_by(|a, b| a.1.total_cmp(b.1));
    text.push_str("\n## Conditions\n\n| condition | first true |\n| --- | ---: |\n");
    for (name, at) in timeline {
        let _ = writeln!(text, "| {name} | {at:.2} |");
    }
    report::page("Boot profile", &results.machine, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_init_trace_line_gives_its_package_and_clock_time() {
        assert_eq!(
            init_trace("init k8s.io/api/core/v1 @312 ms, 4.5 ms clock, 1200 bytes, 30 allocs"),
            Some(("k8s.io/api/core/v1".to_owned(), 4.5))
        );
        assert_eq!(
            init_trace("I1206 16:17:27 server.go:151] Version: v1.37.2"),
            None
        );
    }

    #[test]
    fn readyz_checks_are_timed_from_the_apiserver_start() {
        let agent = [Line {
            at_s: 30.0,
            agent: false,
            text: "INFO cairn_agent::profile: profile: readyz poststarthook/rbac/bootstrap-roles ok at 31.50 s".to_owned(),
        }];
        assert_eq!(
            readyz_times(&agent, 11.5),
            [("poststarthook/rbac/bootstrap-roles".to_owned(), 20.0)]
        );
    }

    #[test]
    fn the_longest_silences_are_listed_in_time_order() {
        let line = |at_s: f64, text: &str| Line {
            at_s,
            agent: false,
            text: text.to_owned(),
        };
        let lines = [
            line(10.0, "a"),
            line(11.0, "b"),
            line(15.0, "c"),
            line(15.5, "d"),
            line(18.0, "e"),
        ];
        let found: Vec<(f64, f64)> = gaps(&lines, 10.0)
            .into_iter()
            .map(|(at, gap, _)| (at, gap))
            .collect();
        assert_eq!(found, [(0.0, 1.0), (1.0, 4.0), (5.0, 0.5), (5.5, 2.5)]);
        assert_eq!(gaps(&lines, 10.0)[1].2, "c");
    }
}
