//! Boot timeline: when each condition first became true (seconds since kernel start,
//! CLOCK_BOOTTIME in the guest), over several fresh boots, against the floor (the same
//! kernel booting an `/init` that powers off at once, see [`crate::floor`]) measured
//! in the same run, boot for boot alternately so both see the same host load. `mounts`
//! is the first thing PID 1 does after leaving the initramfs root, so it stands for
//! "kernel -> PID 1". Writes `boot-timeline.{md,json,svg}`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_api::names::{condition, service};
use cairn_api::v1::{ListConditionsRequest, WaitConditionRequest};
use cairn_qemu::{Accel, Image};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::first_pod;
use crate::floor::{self, FloorBoot};
use crate::node::{self, Bench};
use crate::report::{self, Machine};
use crate::stats::Summary;
use crate::svg;

pub const NAME: &str = "boot-timeline";
/// How long one boot may take to reach the final condition under TCG.
const UNTIL_TIMEOUT: Duration = Duration::from_secs(600);
/// The milestones, in boot order: (row label, timeline key).
pub const MILESTONES: [(&str, &str); 8] = [
    ("kernel -> PID 1", condition::MOUNTS),
    ("-> containerd", service::CONTAINERD),
    ("-> etcd", service::ETCD),
    ("-> kube-apiserver", service::KUBE_APISERVER),
    ("-> kube-proxy", service::KUBE_PROXY),
    ("-> cluster-dns", service::CLUSTER_DNS),
    ("-> node Ready", condition::NODE_READY),
    ("-> first pod Running", "first-pod-running"),
];
pub const FLOOR_INIT: &str = "floor: kernel -> /init";
pub const FLOOR_EXIT: &str = "floor: QEMU start -> exit (host clock)";
pub const READY_HOST: &str = "QEMU start -> CAIRN_READY (host clock)";
/// The first pod alone, from `kubectl create` (host clock, a duration).
pub const POD_ALONE: &str = "first-pod: create -> running";

#[derive(Debug, Serialize, Deserialize)]
pub struct Results {
    pub machine: Machine,
    pub until: String,
    pub runs: Vec<AccelRun>,
}

/// Every boot under one accelerator.
#[derive(Debug, Serialize, Deserialize)]
pub struct AccelRun {
    pub accel: String,
    /// Per boot: condition -> seconds since kernel start it first became true.
    pub boots: Vec<BTreeMap<String, f64>>,
    /// Host seconds from starting QEMU to `CAIRN_READY`, per boot.
    pub ready_host_s: Vec<f64>,
    pub floor: Vec<FloorBoot>,
    /// Over `boots`, plus [`READY_HOST`], [`FLOOR_INIT`] and [`FLOOR_EXIT`].
    pub summary: BTreeMap<String, Summary>,
}

pub fn run(bench: &Bench, boots: usize, until: &str, first_pod: bool) -> Result<PathBuf, Error> {
    let accels = bench.accels()?;
    let floor_image = floor::build(&bench.image()?, &bench.work)?;
    let mut runs = Vec::new();
    for accel in &accels.list {
        runs.push(run_accel(
            bench,
            &floor_image,
            *accel,
            boots,
            until,
            first_pod,
        )?);
    }
    let accel_names: Vec<String> = runs.iter().map(|r| r.accel.clone()).collect();
    let mut machine = Machine::describe(&accel_names.join(", "));
    if let Some(probe) = accels.probe {
        machine = machine.with_probe(probe);
    }
    let results = Results {
        machine,
        until: until.to_owned(),
        runs,
    };
    let svg_path = bench.results.join(format!("{NAME}.svg"));
    fs::create_dir_all(&bench.results).map_err(Error::write(&bench.results))?;
    fs::write(&svg_path, svg::render(&chart(&results))).map_err(Error::write(&svg_path))?;
    report::write(&bench.results, NAME, &markdown(&results), &results)
}

fn run_accel(
    bench: &Bench,
    floor_image: &Image,
    accel: Accel,
    boots: usize,
    until: &str,
    first_pod: bool,
) -> Result<AccelRun, Error> {
    let runtime = node::runtime()?;
    let floor_state = Path::new("target/bench/floor");
    let mut run = AccelRun {
        accel: accel.to_string(),
        boots: Vec::new(),
        ready_host_s: Vec::new(),
        floor: Vec::new(),
        summary: BTreeMap::new(),
    };
    for i in 1..=boots {
        eprintln!("cairn-bench: {accel} boot {i}/{boots}: floor, then the node");
        run.floor
            .push(floor::boot_once(floor_image, accel, floor_state)?);
        let (timeline, ready_host_s) =
            runtime.block_on(one_boot(bench, accel, until, first_pod))?;
        run.boots.push(timeline);
        run.ready_host_s.push(ready_host_s);
    }
    run.summary = summarize(&run);
    Ok(run)
}

pub(crate) async fn one_boot(
    bench: &Bench,
    accel: Accel,
    until: &str,
    first_pod: bool,
) -> Result<(BTreeMap<String, f64>, f64), Error> {
    let mut booted = bench.boot("timeline", accel).await?;
    let wait = WaitConditionRequest {
        name: until.to_owned(),
        timeout_ms: UNTIL_TIMEOUT.as_millis() as u32,
    };
    let limit = UNTIL_TIMEOUT + node::WAIT_MARGIN;
    let name = booted.name.clone();
    node::call(
        &name,
        "WaitCondition",
        limit,
        booted.client.wait_condition(wait),
    )
    .await?;
    // Measured first, so the pod is created right after `until` is seen; conditions
    // that turn true later (the controller-manager's can follow node-ready) are still
    // read afterwards.
    eprintln!(
        "cairn-bench: `{until}` {:.1}s after QEMU started",
        booted.started.elapsed().as_secs_f64()
    );
    let took = match first_pod {
        true => Some(first_pod::create_to_running(&mut booted).await?),
        false => None,
    };
    if let Some(pod) = took {
        eprintln!(
            "cairn-bench: first pod Running {:.1}s after `{until}`",
            pod.since_call
        );
    }
    let request = booted
        .client
        .list_conditions(ListConditionsRequest::default());
    let listed = node::call(&name, "ListConditions", node::CALL_TIMEOUT, request).await?;
    let mut timeline: BTreeMap<String, f64> = listed
        .conditions
        .into_iter()
        .filter_map(|c| Some((c.name, c.first_true_boot_ns? as f64 / 1e9)))
        .collect();
    if let Some(pod) = took {
        // Host seconds since `until` was seen, added to that condition's guest time.
        let base = timeline.get(until).copied().unwrap_or_default();
        timeline.insert("first-pod-running".to_owned(), base + pod.since_call);
        timeline.insert(POD_ALONE.to_owned(), pod.create_to_running);
    }
    Ok((timeline, booted.ready_host_s))
}

/// Median and spread of every condition, of the host-clock figures and of the floor.
pub fn summarize(run: &AccelRun) -> BTreeMap<String, Summary> {
    let mut samples: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for boot in &run.boots {
        for (name, seconds) in boot {
            samples.entry(name.clone()).or_default().push(*seconds);
        }
    }
    samples.insert(READY_HOST.to_owned(), run.ready_host_s.clone());
    samples.insert(
        FLOOR_INIT.to_owned(),
        run.floor
            .iter()
            .filter_map(|f| f.kernel_to_init_s)
            .collect(),
    );
    samples.insert(
        FLOOR_EXIT.to_owned(),
        run.floor.iter().map(|f| f.qemu_start_to_exit_s).collect(),
    );
    samples
        .into_iter()
        .filter_map(|(name, values)| Some((name, Summary::of(&values)?)))
        .collect()
}

/// Rows sorted by median: the guest-clock conditions first, then the host-clock ones.
fn sorted_rows(summary: &BTreeMap<String, Summary>) -> Vec<(&String, &Summary)> {
    let host_clock = |name: &str| [READY_HOST, FLOOR_EXIT, POD_ALONE].contains(&name);
    let mut rows: Vec<_> = summary.iter().collect();
    rows.sort_by(|a, b| {
        (host_clock(a.0), a.1.median)
            .partial_cmp(&(host_clock(b.0), b.1.median))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    rows
}

pub fn markdown(results: &Results) -> String {
    let mut text = String::from("# Boot timeline\n\n");
    text.push_str(&results.machine.markdown());
    if let Some(probe) = &results.machine.accel_probe {
        let _ = writeln!(text, "Accelerator probe: {probe}.");
    }
    let _ = writeln!(
        text,
        "\nEach boot runs until `{}`. Seconds since kernel start (guest clock) when each \
         condition first became true; rows marked *host clock* count from starting QEMU. \
         The floor is the same kernel and machine booting a one-file initramfs whose \
         `/init` powers off at once, booted alternately with the node. \
         `first-pod-running` is the time of `{}` plus the host-side seconds from seeing it \
         to the first pod's Ready condition (waiting for the `default` service account, \
         then creating the pod); `first-pod: create -> running` is the pod alone. \
         Chart: [boot-timeline.svg](boot-timeline.svg).\n",
        results.until, results.until
    );
    for run in &results.runs {
        let _ = writeln!(text, "## {} ({} boots)\n", run.accel, run.boots.len());
        text.push_str("| condition | median | min | max |\n| --- | ---: | ---: | ---: |\n");
        for (name, s) in sorted_rows(&run.summary) {
            let _ = writeln!(
                text,
                "| {name} | {:.2} | {:.2} | {:.2} |",
                s.median, s.min, s.max
            );
        }
        text.push('\n');
    }
    text
}

/// The milestones per accelerator against the floor, for RESULTS.md.
pub fn milestones(results: &Results) -> String {
    let mut text = String::new();
    for run in &results.runs {
        let _ = writeln!(
            text,
            "{} boots under {}, until `{}`; seconds since kernel start.\n\n\
             | milestone | median | min | max |\n| --- | ---: | ---: | ---: |",
            run.boots.len(),
            run.accel,
            results.until
        );
        let rows = MILESTONES.iter().map(|(label, key)| (*label, *key)).chain([
            (FLOOR_INIT, FLOOR_INIT),
            (READY_HOST, READY_HOST),
            (FLOOR_EXIT, FLOOR_EXIT),
        ]);
        for (label, key) in rows {
            match run.summary.get(key) {
                Some(s) => {
                    let _ = writeln!(
                        text,
                        "| {label} | {:.2} | {:.2} | {:.2} |",
                        s.median, s.min, s.max
                    );
                }
                None => {
                    let _ = writeln!(text, "| {label} | n/a | | |");
                }
            }
        }
        text.push('\n');
    }
    text
}

fn chart(results: &Results) -> svg::Chart {
    const COLORS: [(&str, &str); 2] = [("#1f77b4", "#9e9e9e"), ("#2ca02c", "#c7c7c7")];
    let several = results.runs.len() > 1;
    let mut series = Vec::new();
    let mut bars = Vec::new();
    for (i, run) in results.runs.iter().enumerate() {
        let (node_color, floor_color) = COLORS[i % COLORS.len()];
        let (node_series, floor_series) = (series.len(), series.len() + 1);
        series.push(svg::Series {
            name: format!("cairn node ({})", run.accel),
            color: node_color,
        });
        series.push(svg::Series {
            name: format!("floor ({})", run.accel),
            color: floor_color,
        });
        for (name, s) in sorted_rows(&run.summary) {
            let is_floor = name.starts_with("floor:");
            bars.push(svg::Bar {
                label: match several {
                    true => format!("{}: {name}", run.accel),
                    false => name.clone(),
                },
                series: if is_floor { floor_series } else { node_series },
                median: s.median,
                min: s.min,
                max: s.max,
            });
        }
    }
    let boots = results.runs.first().map_or(0, |r| r.boots.len());
    svg::Chart {
        title: format!("cairn boot timeline (until {})", results.until),
        note: format!(
            "{} boots per accelerator, {}; {} ({} CPUs), {}",
            boots,
            results.machine.accel,
            results.machine.cpu,
            results.machine.cpus,
            results.machine.date
        ),
        unit: "seconds since kernel start (host-clock rows: since QEMU start)",
        series,
        bars,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> AccelRun {
        let boot = |mounts: f64, ready: f64| {
            BTreeMap::from([
                ("mounts".to_owned(), mounts),
                ("node-ready".to_owned(), ready),
            ])
        };
        let floor = |exit: f64, init: Option<f64>| FloorBoot {
            qemu_start_to_exit_s: exit,
            kernel_to_init_s: init,
        };
        let mut run = AccelRun {
            accel: "tcg".into(),
            boots: vec![boot(2.0, 20.0), boot(2.4, 22.0), boot(2.2, 21.0)],
            ready_host_s: vec![9.0, 10.0, 11.0],
            floor: vec![
                floor(3.0, Some(1.1)),
                floor(3.2, None),
                floor(3.1, Some(1.0)),
            ],
            summary: BTreeMap::new(),
        };
        run.summary = summarize(&run);
        run
    }

    #[test]
    fn conditions_host_figures_and_floor_are_summarized() {
        let run = run();
        assert_eq!(run.summary["mounts"].median, 2.2);
        assert_eq!(run.summary["node-ready"].max, 22.0);
        assert_eq!(run.summary[READY_HOST].median, 10.0);
        assert_eq!(run.summary[FLOOR_EXIT].median, 3.1);
        // A floor boot whose console lacked the line counts only where it has data.
        assert_eq!(run.summary[FLOOR_INIT].count, 2);
    }

    #[test]
    fn guest_clock_rows_come_first_by_median() {
        let run = run();
        let names: Vec<&str> = sorted_rows(&run.summary)
            .into_iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(
            names,
            [FLOOR_INIT, "mounts", "node-ready", FLOOR_EXIT, READY_HOST]
        );
    }

    #[test]
    fn the_chart_has_a_bar_per_row_and_floor_rows_in_the_floor_colour() {
        let results = Results {
            machine: Machine::describe("tcg"),
            until: "node-ready".into(),
            runs: vec![run()],
        };
        let chart = chart(&results);
        assert_eq!(chart.bars.len(), 5);
        let floor = chart.bars.iter().find(|b| b.label == FLOOR_INIT).unwrap();
        assert_eq!(chart.series[floor.series].name, "floor (tcg)");
        let text = markdown(&results);
        assert!(text.contains("| mounts | 2.20 | 2.00 | 2.40 |"), "{text}");
    }
}
