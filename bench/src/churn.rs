//! Rebuild churn: the Cargo builds of `make test`, `make lint`, `make image`,
//! `make production-image`, `make run` and `make bench`, run in that order, then again,
//! then in reverse order. Only the first pass may compile anything: a crate compiled
//! again later was rebuilt although its sources, features and flags had not changed
//! (Cargo's own `Compiling`/`Checking` lines are counted).
//!
//! The steps are the commands those targets run, stopped short of running tests or
//! booting (`cargo test --no-run`, `cargo build` for `cargo run`); the image steps are
//! the make targets themselves, into their own directories. Keep the list in step with
//! the Makefile.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::measure;
use crate::node::Bench;
use crate::report::{self, Machine};

pub const NAME: &str = "churn";
const IMAGE_DIR: &str = "target/bench/churn-image";
const PRODUCTION_DIR: &str = "target/bench/churn-production";

/// One step: the make target it stands for and the command it runs.
struct Step {
    target: &'static str,
    argv: Vec<String>,
}

fn steps(config: &Path) -> Vec<Step> {
    let cargo = |args: &str| {
        std::iter::once("cargo")
            .chain(args.split_whitespace())
            .map(str::to_owned)
            .collect()
    };
    let make = |target: &str, var: &str, dir: &str| {
        vec![
            "make".to_owned(),
            "-s".to_owned(),
            target.to_owned(),
            format!("CONFIG={}", config.display()),
            format!("{var}={dir}"),
        ]
    };
    vec![
        Step {
            target: "make test (unit)",
            argv: cargo("test --workspace --all-features --locked --no-run"),
        },
        Step {
            target: "make lint (clippy)",
            argv: cargo("clippy --workspace --all-targets --locked -- -D warnings"),
        },
        Step {
            target: "make lint (clippy, all features)",
            argv: cargo("clippy --workspace --all-targets --all-features --locked -- -D warnings"),
        },
        // `make image` runs the builder with `cargo run --quiet`, which hides its own
        // `Compiling` lines: the builder's build is counted on its own first.
        Step {
            target: "make image (builder)",
            argv: cargo("build --release --locked -p cairn-image"),
        },
        Step {
            target: "make image",
            argv: make("image", "IMAGE_DIR", IMAGE_DIR),
        },
        Step {
            target: "make production-image",
            argv: make("production-image", "PRODUCTION_DIR", PRODUCTION_DIR),
        },
        Step {
            target: "make test (dbg)",
            argv: cargo("build --release --locked -p cairn-dbg"),
        },
        Step {
            target: "make test (boot tests)",
            argv: cargo("test --release --locked -p cairn-image -p cairn-qemu --no-run"),
        },
        Step {
            target: "make run (launcher)",
            argv: cargo("build --release --locked -p cairn-qemu"),
        },
        Step {
            target: "make bench (cairn-bench)",
            argv: cargo("build --release --locked -p cairn-bench"),
        },
    ]
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepResult {
    pub target: String,
    pub wall_s: f64,
    /// Crates Cargo compiled or checked, by name and version, in its order.
    pub compiled: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Results {
    pub machine: Machine,
    /// Pass 1 (brings everything up to date), pass 2 (same order), pass 3 (reverse).
    pub passes: Vec<Vec<StepResult>>,
}

impl Results {
    /// Crates compiled after the first pass: none when there is no churn.
    pub fn churn(&self) -> Vec<(String, String)> {
        self.passes
            .iter()
            .skip(1)
            .flatten()
            .flat_map(|s| s.compiled.iter().map(|c| (s.target.clone(), c.clone())))
            .collect()
    }
}

/// Runs the three passes and writes the results; with `check`, fails when a pass after
/// the first compiled anything.
pub fn run(bench: &Bench, check: bool) -> Result<PathBuf, Error> {
    let steps = steps(&bench.config);
    let mut passes = Vec::new();
    for (pass, reverse) in [(1, false), (2, false), (3, true)] {
        let order: Vec<&Step> = if reverse {
            steps.iter().rev().collect()
        } else {
            steps.iter().collect()
        };
        let mut results = Vec::new();
        for step in order {
            eprintln!("cairn-bench: churn pass {pass}: {}", step.target);
            results.push(run_step(step)?);
        }
        passes.push(results);
    }
    let results = Results {
        machine: Machine::describe("none"),
        passes,
    };
    let path = report::write(&bench.results, NAME, &markdown(&results), &results)?;
    let churn = results.churn();
    if check && !churn.is_empty() {
        let list: Vec<String> = churn.iter().map(|(t, c)| format!("{c} ({t})")).collect();
        return Err(Error::Unmeasurable(format!(
            "rebuilt after the first pass although nothing changed: {}",
            list.join(", ")
        )));
    }
    Ok(path)
}

fn run_step(step: &Step) -> Result<StepResult, Error> {
    let mut command = Command::new(&step.argv[0]);
    command
        .args(&step.argv[1..])
        // Not the calling make's flags (`make bench IMAGE_DIR=…`).
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL");
    let started = std::time::Instant::now();
    let output = measure::run(&mut command, step.target)?;
    Ok(StepResult {
        target: step.target.to_owned(),
        wall_s: started.elapsed().as_secs_f64(),
        compiled: compiled(&String::from_utf8_lossy(&output.stderr)),
    })
}

/// The crates in Cargo's `Compiling x v1` / `Checking x v1` lines.
fn compiled(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let rest = line
                .strip_prefix("Compiling ")
                .or_else(|| line.strip_prefix("Checking "))?;
            let mut words = rest.split_whitespace();
            Some(format!("{} {}", words.next()?, words.next()?))
        })
        .collect()
}

pub fn markdown(results: &Results) -> String {
    report::page(
        "Rebuild churn across make targets",
        &results.machine,
        &body(results),
    )
}

/// The figures, for this page and RESULTS.md.
pub fn body(results: &Results) -> String {
    let mut body = String::from(
        "The Cargo builds of `make test`, `make lint`, `make image`, `make production-image`, \
         `make run` and `make bench` (stopped short of running tests or booting), run three \
         times: in order, in order again, and in reverse. Only the first pass may compile: \
         a crate compiled in pass 2 or 3 was rebuilt although nothing changed. \
         `make test-churn` fails when one is.\n\n\
         | step | pass 1 s | compiled | pass 2 s | compiled | pass 3 s | compiled |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let find = |pass: &[StepResult], target: &str| {
        pass.iter()
            .find(|s| s.target == target)
            .map(|s| (s.wall_s, s.compiled.len()))
    };
    if let Some(first) = results.passes.first() {
        for step in first {
            let _ = write!(body, "| {} ", step.target);
            for pass in &results.passes {
                match find(pass, &step.target) {
                    Some((wall, n)) => {
                        let _ = write!(body, "| {wall:.1} | {n} ");
                    }
                    None => body.push_str("| | "),
                }
            }
            body.push_str("|\n");
        }
    }
    let churn = results.churn();
    if churn.is_empty() {
        body.push_str("\nNo crate was compiled after the first pass.\n");
    } else {
        body.push_str("\nCompiled after the first pass (churn):\n\n");
        for (target, krate) in churn {
            let _ = writeln!(body, "- {krate} in {target}");
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_crates_cargo_compiles_or_checks() {
        let stderr = "   Compiling libc v0.2.191\n\
                      \x20   Checking cairn-agent v0.1.0 (/w/agent)\n\
                      warning: unused\n\
                      \x20   Finished `release` profile [optimized] target(s) in 0.3s\n";
        assert_eq!(compiled(stderr), ["libc v0.2.191", "cairn-agent v0.1.0"]);
    }
}
