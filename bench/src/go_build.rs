//! Build time of the Go components (`third_party/build.sh`): warm (inputs unchanged:
//! every family is skipped), relink (a fresh output directory, Go's build cache warm)
//! and, with `--cold`, an empty Go build cache as on a new machine (the module cache
//! stays: downloads are not what is measured). Kubernetes dominates every figure.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::measure;
use crate::node::Bench;
use crate::report::{self, Machine};

pub const NAME: &str = "go-build";

#[derive(Debug, Serialize, Deserialize)]
pub struct Results {
    pub machine: Machine,
    /// Seconds.
    pub warm_skip: f64,
    pub relink: f64,
    pub cold: Option<f64>,
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
    let scratch = tempfile::tempdir().map_err(Error::write("a temporary directory"))?;
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
    report::write(&bench.results, NAME, &markdown(&results), &results)
}

fn time(script: &Path, out: &Path, gocache: Option<&Path>) -> Result<f64, Error> {
    let mut command = Command::new("bash");
    command.arg(script).arg(out);
    if let Some(cache) = gocache {
        command.env("GOCACHE", cache);
    }
    let what = format!("{} {}", script.display(), out.display());
    Ok(measure::timed(&mut command, &what)?.wall_s)
}

fn markdown(results: &Results) -> String {
    let mut text = String::from("# Go components build time\n\n");
    text.push_str(&results.machine.markdown());
    text.push('\n');
    text.push_str(&body(results));
    text
}

/// The figures without title and machine, for RESULTS.md too.
pub fn body(results: &Results) -> String {
    let mut text = String::from("| build | seconds |\n| --- | ---: |\n");
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
