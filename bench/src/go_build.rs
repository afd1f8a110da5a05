//! Build time of the Go components (`third_party/build.sh`): warm (inputs unchanged:
//! every family is skipped), relink (a fresh output directory, Go's build cache warm)
//! and, with `--cold`, an empty Go build cache as on a new machine (the module cache
//! stays: downloads are not what is measured). Kubernetes dominates every figure.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde::Serialize;

use crate::node::{Bench, Error};
use crate::report::{self, Machine};

#[derive(Debug, Serialize)]
struct Results {
    machine: Machine,
    /// Seconds.
    warm_skip: f64,
    relink: f64,
    cold: Option<f64>,
}

pub fn run(bench: &Bench, cold: bool) -> Result<PathBuf, Error> {
    let script = Path::new("third_party/build.sh");
    let default_out = std::env::var_os("CAIRN_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/cairn")
        })
        .join("go-out");
    time(script, &default_out, None)?; // make sure the default output is current
    let warm_skip = time(script, &default_out, None)?;
    let scratch = tempfile::tempdir()?;
    let relink = time(script, &scratch.path().join("out"), None)?;
    let cold = match cold {
        true => Some(time(
            script,
            &scratch.path().join("cold"),
            Some(&scratch.path().join("gocache")),
        )?),
        false => None,
    };
    let results = Results {
        machine: Machine::describe("none"),
        warm_skip,
        relink,
        cold,
    };
    report::write(&bench.results, "go-build", &markdown(&results), &results)
}

fn time(script: &Path, out: &Path, gocache: Option<&Path>) -> Result<f64, Error> {
    let mut command = Command::new("bash");
    command.arg(script).arg(out);
    if let Some(cache) = gocache {
        command.env("GOCACHE", cache);
    }
    let started = Instant::now();
    let status = command.status()?;
    if !status.success() {
        return Err(format!("{} {} failed: {status}", script.display(), out.display()).into());
    }
    Ok(started.elapsed().as_secs_f64())
}

fn markdown(results: &Results) -> String {
    let mut text = String::from("# Go components build time\n\n");
    text.push_str(&results.machine.markdown());
    text.push_str("\n| build | seconds |\n| --- | ---: |\n");
    let _ = writeln!(
        text,
        "| warm: inputs unchanged, every family skipped | {:.2} |",
        results.warm_skip
    );
    let _ = writeln!(
        text,
        "| relink: new output dir, Go build cache warm | {:.1} |",
        results.relink
    );
    match results.cold {
        Some(cold) => {
            let _ = writeln!(text, "| cold: empty Go build cache | {cold:.0} |");
        }
        None => text.push_str("| cold: empty Go build cache | not run (`--cold`) |\n"),
    }
    text
}
