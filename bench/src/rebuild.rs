//! Incremental rebuild: wall and CPU time of `make image` as a person runs it, when
//! nothing changed and when only the agent changed. "Only the agent changed" is made
//! by touching the agent's `src/lib.rs` (its mtime, never its contents, so the tree
//! stays as it was): Cargo then recompiles the agent crate, and the builder assembles
//! the image again. Each run writes into its own image directory (not `build/image`),
//! after one untimed run that brings every cache up to date.
//!
//! The checkout may be shared with people editing it: a run counts only if the image's
//! sources (HEAD, and the status and diff of what `make image` reads) were the same
//! before it as at the last build and after it; otherwise the build is redone untimed
//! and the run repeated, and the report says how many were.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::measure::{self, Timed};
use crate::node::Bench;
use crate::report::{self, Machine};
use crate::stats::Summary;

pub const NAME: &str = "rebuild";
/// The file touched to make "the agent changed".
const AGENT_SOURCE: &str = "agent/src/lib.rs";
const OUT_DIR: &str = "target/bench/rebuild-image";

/// What `make image` builds from: a change there between or during runs is not what is
/// measured.
const SOURCES: [&str; 10] = [
    "agent",
    "api",
    "image",
    "initramfs",
    "images",
    "third_party",
    "scripts",
    "Cargo.toml",
    "Cargo.lock",
    "Makefile",
];
/// Attempts at one timed run while the sources keep changing under it.
const MAX_ATTEMPTS: usize = 4;

#[derive(Debug, Serialize, Deserialize)]
pub struct Results {
    pub machine: Machine,
    pub nothing_changed: Vec<Timed>,
    pub agent_changed: Vec<Timed>,
    pub nothing_changed_wall: Option<Summary>,
    pub agent_changed_wall: Option<Summary>,
    /// Every run since the sources last changed produced the same image digest.
    pub same_image: bool,
    /// Runs thrown away because someone changed the sources before or during them.
    #[serde(default)]
    pub disturbed_runs: usize,
}

pub fn run(bench: &Bench, runs: usize) -> Result<PathBuf, Error> {
    let mut rebuilder = Rebuilder::new(&bench.config, Path::new(OUT_DIR))?;
    let mut nothing_changed = Vec::new();
    for i in 1..=runs {
        eprintln!("cairn-bench: rebuild {i}/{runs}: nothing changed");
        nothing_changed.push(rebuilder.timed(false)?);
    }
    let mut agent_changed = Vec::new();
    for i in 1..=runs {
        eprintln!("cairn-bench: rebuild {i}/{runs}: the agent changed");
        agent_changed.push(rebuilder.timed(true)?);
    }
    let wall = |runs: &[Timed]| Summary::of(&runs.iter().map(|t| t.wall_s).collect::<Vec<_>>());
    let results = Results {
        machine: Machine::describe("none"),
        nothing_changed_wall: wall(&nothing_changed),
        agent_changed_wall: wall(&agent_changed),
        nothing_changed,
        agent_changed,
        same_image: rebuilder.digests.windows(2).all(|w| w[0] == w[1]),
        disturbed_runs: rebuilder.disturbed,
    };
    report::write(&bench.results, NAME, &markdown(&results), &results)
}

/// Runs `make image` again and again, timing a run only while the sources it builds
/// from stay as they were (others may be editing the same checkout).
#[derive(Debug)]
struct Rebuilder<'a> {
    config: &'a Path,
    out: &'a Path,
    /// [`source_state`] at the last build.
    built_from: String,
    /// Image digests since `built_from` last changed.
    digests: Vec<String>,
    disturbed: usize,
}

impl<'a> Rebuilder<'a> {
    /// Brings every cache up to date with one untimed build.
    fn new(config: &'a Path, out: &'a Path) -> Result<Self, Error> {
        let mut rebuilder = Rebuilder {
            config,
            out,
            built_from: String::new(),
            digests: Vec::new(),
            disturbed: 0,
        };
        rebuilder.catch_up(source_state()?)?;
        Ok(rebuilder)
    }

    fn catch_up(&mut self, state: String) -> Result<(), Error> {
        make_image(self.config, self.out)?;
        self.built_from = state;
        self.digests = vec![image_digest(self.out)?];
        Ok(())
    }

    /// One timed `make image`, after touching the agent if asked to.
    fn timed(&mut self, touch_agent: bool) -> Result<Timed, Error> {
        for _ in 0..MAX_ATTEMPTS {
            let before = source_state()?;
            if before != self.built_from {
                self.disturbed += 1;
                self.catch_up(before)?;
                continue;
            }
            if touch_agent {
                touch(Path::new(AGENT_SOURCE))?;
            }
            let timed = make_image(self.config, self.out)?;
            if source_state()? == before {
                self.digests.push(image_digest(self.out)?);
                return Ok(timed);
            }
            self.disturbed += 1;
        }
        Err(Error::Unmeasurable(format!(
            "the image's sources changed during each of {MAX_ATTEMPTS} attempts at a run"
        )))
    }
}

/// HEAD, and the uncommitted state of [`SOURCES`] (status and diff).
fn source_state() -> Result<String, Error> {
    let mut state = String::new();
    for args in [
        &["rev-parse", "HEAD"][..],
        &["status", "--porcelain", "--"],
        &["diff", "HEAD", "--"],
    ] {
        let mut command = Command::new("git");
        command.args(args);
        if args[0] != "rev-parse" {
            command.args(SOURCES);
        }
        let output = measure::run(&mut command, "git (the image's source state)")?;
        state.push_str(&String::from_utf8_lossy(&output.stdout));
    }
    Ok(state)
}

/// `make image` into `out`; a calling make's flags (`make bench IMAGE_DIR=...`) are
/// not passed down, so this one builds exactly `config` into `out`.
fn make_image(config: &Path, out: &Path) -> Result<Timed, Error> {
    let mut command = Command::new("make");
    command
        .args(["-s", "image"])
        .arg(format!("CONFIG={}", config.display()))
        .arg(format!("IMAGE_DIR={}", out.display()))
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL");
    measure::timed(&mut command, "make image")
}

/// Sets `path`'s mtime to now without writing to it.
fn touch(path: &Path) -> Result<(), Error> {
    let file = fs::File::options()
        .write(true)
        .open(path)
        .map_err(Error::write(path))?;
    file.set_modified(SystemTime::now())
        .map_err(Error::write(path))
}

fn image_digest(out: &Path) -> Result<String, Error> {
    let path = out.join("manifest.json");
    let text = fs::read_to_string(&path).map_err(Error::read(&path))?;
    let manifest: cairn_image::manifest::Manifest =
        serde_json::from_str(&text).map_err(|e| Error::Json(path, e))?;
    Ok(manifest.image_digest)
}

pub fn markdown(results: &Results) -> String {
    report::page(
        "Incremental rebuild (`make image`)",
        &results.machine,
        &body(results),
    )
}

/// The figures without title and machine, for RESULTS.md too.
pub fn body(results: &Results) -> String {
    let mut text = String::from(
        "Seconds of `make image` (host set-up check, Cargo, the Go build's stamps, \
         Debian cache look-ups, assembly), after one untimed run. *Agent changed*: \
         `agent/src/lib.rs` touched (mtime only), so Cargo recompiles the agent crate and relinks it.\n\n\
         | change | wall s (median) | min | max | CPU s (median) |\n| --- | ---: | ---: | ---: | ---: |\n",
    );
    for (name, runs, wall) in [
        (
            "nothing",
            &results.nothing_changed,
            results.nothing_changed_wall,
        ),
        (
            "only the agent",
            &results.agent_changed,
            results.agent_changed_wall,
        ),
    ] {
        let cpu = Summary::of(&runs.iter().map(|t| t.cpu_s).collect::<Vec<_>>());
        if let (Some(w), Some(c)) = (wall, cpu) {
            let _ = writeln!(
                text,
                "| {name} | {:.1} | {:.1} | {:.1} | {:.1} |",
                w.median, w.min, w.max, c.median
            );
        }
    }
    let _ = writeln!(
        text,
        "\nEvery run produced the same image digest: {}. Runs repeated because the \
         checkout's image sources changed before or during them: {}.",
        if results.same_image { "yes" } else { "no" },
        results.disturbed_runs
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touching_changes_the_mtime_not_the_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("main.rs");
        fs::write(&path, "fn main() {}\n").unwrap();
        let old = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        touch(&path).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert!(meta.modified().unwrap() > old);
        assert_eq!(fs::read_to_string(&path).unwrap(), "fn main() {}\n");
    }

    #[test]
    fn the_table_has_both_changes() {
        let timed = |w| Timed {
            wall_s: w,
            cpu_s: w / 2.0,
        };
        let results = Results {
            machine: Machine::describe("none"),
            nothing_changed: vec![timed(4.0)],
            agent_changed: vec![timed(60.0)],
            nothing_changed_wall: Summary::of(&[4.0]),
            agent_changed_wall: Summary::of(&[60.0]),
            same_image: true,
            disturbed_runs: 1,
        };
        let text = markdown(&results);
        assert!(
            text.contains("| nothing | 4.0 | 4.0 | 4.0 | 2.0 |"),
            "{text}"
        );
        assert!(text.contains("| only the agent | 60.0 | 60.0 | 60.0 | 30.0 |"));
        assert!(text.contains("same image digest: yes"));
        assert!(text.contains("changed before or during them: 1."));
    }
}
