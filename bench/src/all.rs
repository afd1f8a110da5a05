//! `cairn-bench all`, what `make bench` runs: every benchmark in turn, then
//! RESULTS.md. A benchmark that cannot measure is reported and skipped, so one
//! failure does not cost the other figures; the run then ends with an error naming
//! it. Order: the host-only benchmarks first (they use both cores), then the boots.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{chain, Error};
use crate::node::Bench;
use crate::{
    assembly, churn, cluster, debug_api, footprint, go_build, image_size, images, rebuild,
    recovery, services, summary, timeline,
};

/// The knobs `make bench` passes (`BENCH_*`).
#[derive(Debug, Clone)]
pub struct Options {
    pub boots: usize,
    pub until: String,
    pub assembly_runs: usize,
    pub rebuild_runs: usize,
    pub soak: Duration,
    pub debug_rounds: usize,
    pub go_cold: bool,
}

type Step<'a> = (&'static str, Box<dyn Fn() -> Result<PathBuf, Error> + 'a>);

pub fn run(bench: &Bench, options: &Options) -> Result<PathBuf, Error> {
    let steps: Vec<Step> = vec![
        (image_size::NAME, Box::new(|| image_size::run(bench))),
        (
            assembly::NAME,
            Box::new(|| assembly::run(bench, options.assembly_runs)),
        ),
        (churn::NAME, Box::new(|| churn::run(bench, false))),
        (
            rebuild::NAME,
            Box::new(|| rebuild::run(bench, options.rebuild_runs)),
        ),
        (
            go_build::NAME,
            Box::new(|| go_build::run(bench, options.go_cold)),
        ),
        (
            timeline::NAME,
            Box::new(|| timeline::run(bench, options.boots, &options.until, true)),
        ),
        (
            debug_api::NAME,
            Box::new(|| debug_api::run(bench, options.debug_rounds)),
        ),
        (
            footprint::NAME,
            Box::new(|| footprint::run(bench, options.soak)),
        ),
        (recovery::NAME, Box::new(|| recovery::run(bench))),
        (services::NAME, Box::new(|| services::run(bench, 5))),
        (images::NAME, Box::new(|| images::run(bench, 3, 100))),
        (
            cluster::NAME,
            Box::new(|| cluster::run(bench, &[1, 2], Duration::from_secs(120))),
        ),
    ];
    let mut failures = Vec::new();
    for (name, step) in steps {
        eprintln!("cairn-bench: == {name} ==");
        match step() {
            Ok(path) => eprintln!("cairn-bench: {name}: {}", path.display()),
            Err(err) => {
                let text = chain(&err);
                eprintln!("cairn-bench: {name} could not be measured: {text}");
                failures.push((name.to_owned(), text));
            }
        }
    }
    let path = summary::write(&bench.results, &failures)?;
    if failures.is_empty() {
        return Ok(path);
    }
    let names: Vec<&str> = failures.iter().map(|(n, _)| n.as_str()).collect();
    Err(Error::Unmeasurable(format!(
        "could not measure {} (see {})",
        names.join(", "),
        path.display()
    )))
}
