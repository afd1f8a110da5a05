//! Footprint: resident memory and CPU time of the agent (PID 1) and of every
//! supervised component, right after the node turned Ready and again after an idle
//! soak (`--soak-seconds`; an hour is the figure, ten minutes the default of
//! `make bench`), from the debug service's `GetProcessStats` (read from /proc in the
//! guest), sampled once a minute in between. CPU during the soak is the difference of
//! the two readings over the soak's length, as a share of one core; a component whose
//! pid changed was restarted, and its soak CPU is not computed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cairn_api::v1::{GetProcessStatsRequest, GetProcessStatsResponse};
use cairn_api::Client;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::node::{self, Bench};
use crate::report::{self, Machine};

pub const NAME: &str = "footprint";
const UNTIL: &str = cairn_api::names::condition::NODE_READY;
const UNTIL_TIMEOUT: Duration = Duration::from_secs(600);
const SAMPLE_EVERY: Duration = Duration::from_secs(60);

/// One process at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Process {
    pub component: String,
    pub pid: u32,
    pub rss_bytes: u64,
    pub user_cpu_s: f64,
    pub system_cpu_s: f64,
}

impl Process {
    pub fn cpu_s(&self) -> f64 {
        self.user_cpu_s + self.system_cpu_s
    }
}

/// Every process and the node's memory at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Host seconds since the node was seen Ready.
    pub at_s: f64,
    pub processes: Vec<Process>,
    pub memory_total_bytes: u64,
    pub memory_available_bytes: u64,
}

impl Snapshot {
    fn from_reply(at_s: f64, reply: GetProcessStatsResponse) -> Self {
        let ns = |v: u64| v as f64 / 1e9;
        Snapshot {
            at_s,
            processes: reply
                .processes
                .into_iter()
                .map(|p| Process {
                    component: p.component,
                    pid: p.pid,
                    rss_bytes: p.rss_bytes,
                    user_cpu_s: ns(p.user_cpu_ns),
                    system_cpu_s: ns(p.system_cpu_ns),
                })
                .collect(),
            memory_total_bytes: reply.memory_total_bytes,
            memory_available_bytes: reply.memory_available_bytes,
        }
    }

    pub fn process(&self, component: &str) -> Option<&Process> {
        self.processes.iter().find(|p| p.component == component)
    }

    pub fn memory_used_bytes(&self) -> u64 {
        self.memory_total_bytes
            .saturating_sub(self.memory_available_bytes)
    }
}

/// One component over the soak.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Footprint {
    pub component: String,
    pub rss_after_boot_bytes: Option<u64>,
    pub rss_after_soak_bytes: Option<u64>,
    /// CPU seconds from the process's start to Ready.
    pub cpu_at_boot_s: Option<f64>,
    pub cpu_during_soak_s: Option<f64>,
    /// `cpu_during_soak_s` over the soak's seconds, in percent of one core.
    pub soak_cpu_percent: Option<f64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Results {
    pub machine: Machine,
    pub soak_seconds: u64,
    pub after_boot: Snapshot,
    pub after_soak: Snapshot,
    pub samples: Vec<Snapshot>,
    /// The agent first, then the components by name.
    pub footprints: Vec<Footprint>,
}

pub fn run(bench: &Bench, soak: Duration) -> Result<PathBuf, Error> {
    let accel = bench.single_accel()?;
    node::runtime()?.block_on(async {
        let mut booted = bench.boot(NAME, accel).await?;
        booted.wait_true(UNTIL, UNTIL_TIMEOUT).await?;
        let mut client = booted.client.clone();
        let ready = Instant::now();
        let after_boot = snapshot(NAME, &mut client, ready).await?;
        let samples = soak_samples(&mut client, ready, soak).await?;
        let after_soak = snapshot(NAME, &mut client, ready).await?;
        let results = Results {
            machine: Machine::describe(&accel.to_string()),
            soak_seconds: soak.as_secs(),
            footprints: compare(&after_boot, &after_soak),
            after_boot,
            after_soak,
            samples,
        };
        report::write(&bench.results, NAME, &markdown(&results), &results)
    })
}

/// Node `node`'s processes now, `at_s` counted from `ready`.
pub async fn snapshot(node: &str, client: &mut Client, ready: Instant) -> Result<Snapshot, Error> {
    let request = client.get_process_stats(GetProcessStatsRequest::default());
    let reply = node::call(node, "GetProcessStats", node::CALL_TIMEOUT, request).await?;
    Ok(Snapshot::from_reply(ready.elapsed().as_secs_f64(), reply))
}

/// Idles for `soak`, reading the stats every [`SAMPLE_EVERY`].
async fn soak_samples(
    client: &mut Client,
    ready: Instant,
    soak: Duration,
) -> Result<Vec<Snapshot>, Error> {
    eprintln!("cairn-bench: footprint: idle soak of {}s", soak.as_secs());
    let end = tokio::time::Instant::now() + soak;
    let mut samples = Vec::new();
    loop {
        let next = (tokio::time::Instant::now() + SAMPLE_EVERY).min(end);
        tokio::time::sleep_until(next).await;
        if next >= end {
            return Ok(samples);
        }
        samples.push(snapshot(NAME, client, ready).await?);
    }
}

/// Per component (the agent first): memory at both ends, CPU over the soak.
pub fn compare(before: &Snapshot, after: &Snapshot) -> Vec<Footprint> {
    let mut names: BTreeMap<&str, ()> = BTreeMap::new();
    for p in before.processes.iter().chain(&after.processes) {
        names.insert(&p.component, ());
    }
    let seconds = after.at_s - before.at_s;
    let mut list: Vec<Footprint> = names
        .keys()
        .map(|name| {
            let (b, a) = (before.process(name), after.process(name));
            let during = match (b, a) {
                (Some(b), Some(a)) if a.pid == b.pid => Some(a.cpu_s() - b.cpu_s()),
                _ => None,
            };
            Footprint {
                component: (*name).to_owned(),
                rss_after_boot_bytes: b.map(|p| p.rss_bytes),
                rss_after_soak_bytes: a.map(|p| p.rss_bytes),
                cpu_at_boot_s: b.map(Process::cpu_s),
                cpu_during_soak_s: during,
                soak_cpu_percent: during
                    .filter(|_| seconds > 0.0)
                    .map(|cpu| cpu / seconds * 100.0),
            }
        })
        .collect();
    list.sort_by_key(|f| (f.component != "agent", f.component.clone()));
    list
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or_else(
        || "n/a".to_owned(),
        |b| format!("{:.1}", b as f64 / 1048576.0),
    )
}

pub fn markdown(results: &Results) -> String {
    report::page(
        "Footprint: agent and components",
        &results.machine,
        &body(results),
    )
}

/// The figures without title and machine, for RESULTS.md too.
pub fn body(results: &Results) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "Read with `GetProcessStats` when the node turned Ready, and again after an idle \
         soak of {} s (samples every {} s in `footprint.json`). RSS in MiB; CPU in \
         seconds (user + system); soak CPU as a share of one core. Node memory in use \
         (MemTotal - MemAvailable): {} MiB after boot, {} MiB after the soak, of {} MiB.\n",
        results.soak_seconds,
        SAMPLE_EVERY.as_secs(),
        mib(Some(results.after_boot.memory_used_bytes())),
        mib(Some(results.after_soak.memory_used_bytes())),
        mib(Some(results.after_soak.memory_total_bytes)),
    );
    text.push_str(
        "| process | RSS after boot | RSS after soak | CPU s to Ready | CPU s in soak | soak CPU % |\n\
         | --- | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for f in &results.footprints {
        let _ = writeln!(
            text,
            "| {} | {} | {} | {} | {} | {} |",
            f.component,
            mib(f.rss_after_boot_bytes),
            mib(f.rss_after_soak_bytes),
            report::num(f.cpu_at_boot_s, 2),
            f.cpu_during_soak_s
                .map_or_else(|| "restarted".to_owned(), |c| format!("{c:.2}")),
            report::num(f.soak_cpu_percent, 2),
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(at_s: f64, agent: (u32, u64, f64), etcd: (u32, u64, f64)) -> Snapshot {
        let process = |component: &str, (pid, rss, cpu): (u32, u64, f64)| Process {
            component: component.into(),
            pid,
            rss_bytes: rss,
            user_cpu_s: cpu * 0.75,
            system_cpu_s: cpu * 0.25,
        };
        Snapshot {
            at_s,
            processes: vec![process("etcd", etcd), process("agent", agent)],
            memory_total_bytes: 2 << 30,
            memory_available_bytes: 1 << 30,
        }
    }

    #[test]
    fn soak_cpu_is_the_difference_over_the_soak() {
        let before = snapshot(0.0, (1, 20 << 20, 4.0), (300, 60 << 20, 10.0));
        let after = snapshot(600.0, (1, 22 << 20, 10.0), (300, 70 << 20, 40.0));
        let list = compare(&before, &after);
        assert_eq!(list[0].component, "agent");
        assert_eq!(list[0].cpu_during_soak_s, Some(6.0));
        assert_eq!(list[0].soak_cpu_percent, Some(1.0));
        assert_eq!(list[1].rss_after_soak_bytes, Some(70 << 20));
        assert_eq!(list[1].soak_cpu_percent, Some(5.0));
    }

    #[test]
    fn a_restarted_component_has_no_soak_cpu() {
        let before = snapshot(0.0, (1, 1, 1.0), (300, 1, 10.0));
        let after = snapshot(60.0, (1, 1, 2.0), (301, 1, 1.0));
        let etcd = &compare(&before, &after)[1];
        assert_eq!(etcd.cpu_during_soak_s, None);
        let results = Results {
            machine: Machine::describe("tcg"),
            soak_seconds: 60,
            footprints: compare(&before, &after),
            after_boot: before,
            after_soak: after,
            samples: Vec::new(),
        };
        let text = markdown(&results);
        assert!(
            text.contains("| etcd | 0.0 | 0.0 | 10.00 | restarted | n/a |"),
            "{text}"
        );
        assert!(text.contains("1024.0 MiB after boot"), "{text}");
    }
}
