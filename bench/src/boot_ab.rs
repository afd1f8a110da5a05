//! Boot A/B: two images booted in alternation, A then B, then B then A, and so on.
//! Host drift and neighbours' load then hit both alike. The figures are the
//! conditions' first-true times (seconds since kernel start, guest clock) per image
//! and, per condition, the differences B − A within each round. This is for judging
//! a start-time cut before it is kept (docs/architecture.md, "Where a boot's time
//! goes"): build the variant into its own image directory, then
//! `cairn-bench --image-dir build/image boot-ab --against build/image-variant`.
//! Writes `boot-ab.{md,json}`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use cairn_qemu::Accel;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::node::{self, Bench};
use crate::report::{self, Machine};
use crate::stats::Summary;
use crate::timeline;

pub const NAME: &str = "boot-ab";

#[derive(Debug, Serialize, Deserialize)]
pub struct Results {
    pub machine: Machine,
    pub until: String,
    pub a: Side,
    pub b: Side,
    /// Per condition: B − A within each round.
    pub differences: BTreeMap<String, Summary>,
}

/// One image's boots.
#[derive(Debug, Serialize, Deserialize)]
pub struct Side {
    pub image_dir: String,
    /// Per boot, in round order: condition -> seconds since kernel start.
    pub boots: Vec<BTreeMap<String, f64>>,
    pub summary: BTreeMap<String, Summary>,
}

/// Boots `bench`'s image (A) and `against` (B) `rounds` times each, alternating which
/// goes first, under the first accelerator `bench` measures with (TCG unless KVM was
/// asked for).
pub fn run(bench: &Bench, against: &Path, rounds: usize, until: &str) -> Result<PathBuf, Error> {
    let other = Bench {
        image_dir: against.to_owned(),
        config: bench.config.clone(),
        results: bench.results.clone(),
        work: bench.work.clone(),
        accel: bench.accel,
    };
    // Both must be release images that open, before any boot.
    bench.image()?;
    other.image()?;
    let accel = bench.accels()?.list.first().copied().unwrap_or(Accel::Tcg);
    let runtime = node::runtime()?;
    let mut a = Vec::new();
    let mut b = Vec::new();
    for round in 0..rounds {
        let b_first = round % 2 == 1;
        for is_b in [b_first, !b_first] {
            let (side, label) = if is_b { (&other, "B") } else { (bench, "A") };
            eprintln!("cairn-bench: {NAME}: round {}/{rounds}: {label}", round + 1);
            let (boot, _ready_host_s) =
                runtime.block_on(timeline::one_boot(side, accel, until, false))?;
            if is_b { &mut b } else { &mut a }.push(boot);
        }
    }
    let results = Results {
        machine: Machine::describe(&accel.to_string()),
        until: until.to_owned(),
        differences: differences(&a, &b),
        a: side(&bench.image_dir, a),
        b: side(against, b),
    };
    report::write(&bench.results, NAME, &markdown(&results), &results)
}

fn side(image_dir: &Path, boots: Vec<BTreeMap<String, f64>>) -> Side {
    let mut samples: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for boot in &boots {
        for (name, seconds) in boot {
            samples.entry(name.clone()).or_default().push(*seconds);
        }
    }
    Side {
        image_dir: image_dir.display().to_string(),
        summary: (samples.into_iter())
            .filter_map(|(name, values)| Some((name, Summary::of(&values)?)))
            .collect(),
        boots,
    }
}

/// Per condition, B − A of each round where both boots reached it.
fn differences(
    a: &[BTreeMap<String, f64>],
    b: &[BTreeMap<String, f64>],
) -> BTreeMap<String, Summary> {
    let mut samples: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (a, b) in a.iter().zip(b) {
        for (name, a_seconds) in a {
            if let Some(b_seconds) = b.get(name) {
                samples
                    .entry(name.clone())
                    .or_default()
                    .push(b_seconds - a_seconds);
            }
        }
    }
    (samples.into_iter())
        .filter_map(|(name, values)| Some((name, Summary::of(&values)?)))
        .collect()
}

pub fn markdown(results: &Results) -> String {
    let mut text = report::page("Boot A/B", &results.machine, "");
    let _ = writeln!(
        text,
        "A: `{}`, B: `{}`; {} boots each until `{}`, alternating which boots first. \
         Seconds since kernel start (guest clock); B − A is taken within each round, \
         negative when B is faster.\n",
        results.a.image_dir,
        results.b.image_dir,
        results.a.boots.len(),
        results.until
    );
    text.push_str(
        "| condition | A median | B median | B − A median | B − A min | B − A max |\n\
         | --- | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let mut rows: Vec<(&String, &Summary)> = results.a.summary.iter().collect();
    rows.sort_by(|x, y| x.1.median.total_cmp(&y.1.median));
    for (name, a) in rows {
        let (Some(b), Some(d)) = (results.b.summary.get(name), results.differences.get(name))
        else {
            continue;
        };
        let _ = writeln!(
            text,
            "| {name} | {:.2} | {:.2} | {:+.2} | {:+.2} | {:+.2} |",
            a.median, b.median, d.median, d.min, d.max
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boot(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn differences_are_taken_within_each_round() {
        let a = [
            boot(&[("etcd", 10.0), ("node-ready", 40.0)]),
            boot(&[("etcd", 12.0), ("node-ready", 50.0)]),
        ];
        // The second round is slower for both; the pairs still say B saves 3-5 s.
        let b = [
            boot(&[("etcd", 10.5), ("node-ready", 35.0)]),
            boot(&[("node-ready", 47.0)]),
        ];
        let d = differences(&a, &b);
        assert_eq!(d["node-ready"].min, -5.0);
        assert_eq!(d["node-ready"].max, -3.0);
        assert_eq!(d["etcd"].count, 1, "only rounds where both reached it");
        let results = Results {
            machine: Machine::describe("tcg"),
            until: "node-ready".to_owned(),
            differences: d,
            a: side(Path::new("build/image"), a.to_vec()),
            b: side(Path::new("build/image-b"), b.to_vec()),
        };
        let md = markdown(&results);
        assert!(
            md.contains("| node-ready | 50.00 | 47.00 | -3.00 | -5.00 | -3.00 |"),
            "{md}"
        );
        assert!(
            md.contains("| etcd | 12.00 | 10.50 | +0.50 | +0.50 | +0.50 |"),
            "{md}"
        );
    }
}
