//! Incremental rebuild: wall and CPU time of `make image` as a person runs it, when
//! nothing changed and when only the agent changed, with each Cargo profile an image
//! is built with (`IMAGE_PROFILE`: `dev-image` while developing, `release` for CI and
//! benchmarks). "Only the agent changed" is a one-line edit: a function whose body
//! differs at every run is appended to the agent's `src/lib.rs`, and the file's
//! contents are put back after the run (with a new mtime, so the next build compiles
//! them again). A mere `touch` would not do: an incremental build finds nothing changed
//! and reuses everything. Cargo recompiles the agent crate, and the builder assembles
//! the image again. Each run writes into its own image directory (not `build/image`),
//! after one untimed run per profile that brings every cache up to date.
//!
//! The checkout may be shared with people editing it: a run counts only if the image's
//! sources (HEAD, and the status and diff of what `make image` reads) were the same
//! before it as at the last build and after it; otherwise the build is redone untimed
//! and the run repeated, and the report says how many were.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::measure::{self, Timed};
use crate::node::Bench;
use crate::report::{self, Machine};
use crate::stats::Summary;

pub const NAME: &str = "rebuild";
/// The file edited to make "the agent changed".
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

/// The Cargo profiles measured, as the Makefile's `IMAGE_PROFILE` names them: the
/// default of `make image`, then the one of CI and the benchmarks.
pub const PROFILES: [&str; 2] = ["dev-image", "release"];

#[derive(Debug, Serialize, Deserialize)]
pub struct Results {
    pub machine: Machine,
    pub profiles: Vec<ProfileResults>,
    /// Runs thrown away because someone changed the sources before or during them.
    #[serde(default)]
    pub disturbed_runs: usize,
}

/// The runs with one Cargo profile.
#[derive(Debug, Serialize, Deserialize)]
pub struct ProfileResults {
    pub profile: String,
    pub nothing_changed: Vec<Timed>,
    pub agent_changed: Vec<Timed>,
    pub nothing_changed_wall: Option<Summary>,
    pub agent_changed_wall: Option<Summary>,
    /// Every run with nothing changed since the sources last changed produced the same
    /// image digest.
    pub same_image: bool,
}

pub fn run(bench: &Bench, runs: usize) -> Result<PathBuf, Error> {
    let mut profiles = Vec::new();
    let mut disturbed_runs = 0;
    for profile in PROFILES {
        let mut rebuilder = Rebuilder::new(&bench.config, Path::new(OUT_DIR), profile)?;
        let mut nothing_changed = Vec::new();
        for i in 1..=runs {
            eprintln!("cairn-bench: rebuild ({profile}) {i}/{runs}: nothing changed");
            nothing_changed.push(rebuilder.timed(None)?);
        }
        let same_image = rebuilder.digests.windows(2).all(|w| w[0] == w[1]);
        let mut agent_changed = Vec::new();
        for i in 1..=runs {
            eprintln!("cairn-bench: rebuild ({profile}) {i}/{runs}: the agent changed");
            agent_changed.push(rebuilder.timed(Some(i))?);
        }
        let wall = |runs: &[Timed]| Summary::of(&runs.iter().map(|t| t.wall_s).collect::<Vec<_>>());
        disturbed_runs += rebuilder.disturbed;
        profiles.push(ProfileResults {
            profile: profile.to_owned(),
            nothing_changed_wall: wall(&nothing_changed),
            agent_changed_wall: wall(&agent_changed),
            nothing_changed,
            agent_changed,
            same_image,
        });
    }
    let results = Results {
        machine: Machine::describe("none"),
        profiles,
        disturbed_runs,
    };
    report::write(&bench.results, NAME, &markdown(&results), &results)
}

/// Runs `make image` again and again, timing a run only while the sources it builds
/// from stay as they were (others may be editing the same checkout).
#[derive(Debug)]
struct Rebuilder<'a> {
    config: &'a Path,
    out: &'a Path,
    profile: &'a str,
    /// [`source_state`] at the last build.
    built_from: String,
    /// Image digests since `built_from` last changed.
    digests: Vec<String>,
    disturbed: usize,
}

impl<'a> Rebuilder<'a> {
    /// Brings every cache up to date with one untimed build.
    fn new(config: &'a Path, out: &'a Path, profile: &'a str) -> Result<Self, Error> {
        let mut rebuilder = Rebuilder {
            config,
            out,
            profile,
            built_from: String::new(),
            digests: Vec::new(),
            disturbed: 0,
        };
        rebuilder.catch_up(source_state()?)?;
        Ok(rebuilder)
    }

    fn catch_up(&mut self, state: String) -> Result<(), Error> {
        make_image(self.config, self.out, self.profile)?;
        self.built_from = state;
        self.digests = vec![image_digest(self.out)?];
        Ok(())
    }

    /// One timed `make image`, with the agent edited for run `edit` if given.
    fn timed(&mut self, edit: Option<usize>) -> Result<Timed, Error> {
        for _ in 0..MAX_ATTEMPTS {
            let before = source_state()?;
            if before != self.built_from {
                self.disturbed += 1;
                self.catch_up(before)?;
                continue;
            }
            let timed = match edit {
                Some(run) => {
                    let _edited = Edited::append(Path::new(AGENT_SOURCE), &probe(run))?;
                    make_image(self.config, self.out, self.profile)?
                }
                None => make_image(self.config, self.out, self.profile)?,
            };
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
/// not passed down, so this one builds exactly `config` into `out` with `profile`.
fn make_image(config: &Path, out: &Path, profile: &str) -> Result<Timed, Error> {
    let mut command = Command::new("make");
    command
        .args(["-s", "image"])
        .arg(format!("CONFIG={}", config.display()))
        .arg(format!("IMAGE_DIR={}", out.display()))
        .arg(format!("IMAGE_PROFILE={profile}"))
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL");
    measure::timed(&mut command, "make image")
}

/// The one-line change of run `run`: a function only this run's body has.
fn probe(run: usize) -> String {
    format!("\n/// Appended by the rebuild benchmark, removed after its run.\npub fn rebuild_probe() -> usize {{\n    {run}\n}}\n")
}

/// A file with text appended; its contents are put back on drop (with a new mtime, so
/// that Cargo compiles them again rather than keep what it built from the edit).
#[derive(Debug)]
struct Edited<'a> {
    path: &'a Path,
    original: Vec<u8>,
}

impl<'a> Edited<'a> {
    fn append(path: &'a Path, text: &str) -> Result<Self, Error> {
        let original = fs::read(path).map_err(Error::read(path))?;
        let mut edited = original.clone();
        edited.extend_from_slice(text.as_bytes());
        fs::write(path, edited).map_err(Error::write(path))?;
        Ok(Edited { path, original })
    }
}

impl Drop for Edited<'_> {
    fn drop(&mut self) {
        if let Err(err) = fs::write(self.path, &self.original) {
            eprintln!(
                "cairn-bench: cannot restore {} after the rebuild benchmark's edit: {err}",
                self.path.display()
            );
        }
    }
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
        "Seconds of `make image IMAGE_PROFILE=<profile>` (host set-up check, Cargo, the \
         Go build's stamps, Debian cache look-ups, assembly), after one untimed run. \
         *Only the agent changed*: a one-line function appended to `agent/src/lib.rs`, \
         its body different at every run, so Cargo recompiles the agent crate and \
         relinks it. `dev-image` is what `make image` builds by default; `release` is \
         what CI, the benchmarks and shipped images use.\n\n\
         | profile | change | wall s (median) | min | max | CPU s (median) |\n\
         | --- | --- | ---: | ---: | ---: | ---: |\n",
    );
    for p in &results.profiles {
        for (name, runs, wall) in [
            ("nothing", &p.nothing_changed, p.nothing_changed_wall),
            ("only the agent", &p.agent_changed, p.agent_changed_wall),
        ] {
            let cpu = Summary::of(&runs.iter().map(|t| t.cpu_s).collect::<Vec<_>>());
            if let (Some(w), Some(c)) = (wall, cpu) {
                let _ = writeln!(
                    text,
                    "| {} | {name} | {:.1} | {:.1} | {:.1} | {:.1} |",
                    p.profile, w.median, w.min, w.max, c.median
                );
            }
        }
    }
    let same: Vec<String> = results
        .profiles
        .iter()
        .map(|p| format!("{} {}", p.profile, if p.same_image { "yes" } else { "no" }))
        .collect();
    let _ = writeln!(
        text,
        "\nEvery run with nothing changed produced the same image digest: {}. Runs \
         repeated because the checkout's image sources changed before or during them: {}.",
        same.join(", "),
        results.disturbed_runs
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edit_is_put_back_with_a_new_mtime() {
        use std::time::SystemTime;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lib.rs");
        fs::write(&path, "fn main() {}\n").unwrap();
        let old = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        {
            let _edited = Edited::append(&path, &probe(7)).unwrap();
            let text = fs::read_to_string(&path).unwrap();
            assert!(text.starts_with("fn main() {}\n"), "{text}");
            assert!(
                text.contains("pub fn rebuild_probe() -> usize {\n    7\n}"),
                "{text}"
            );
        }
        assert_eq!(fs::read_to_string(&path).unwrap(), "fn main() {}\n");
        assert!(fs::metadata(&path).unwrap().modified().unwrap() > old);
    }

    #[test]
    fn the_table_has_both_changes_per_profile() {
        let timed = |w| Timed {
            wall_s: w,
            cpu_s: w / 2.0,
        };
        let profile = |name: &str, agent| ProfileResults {
            profile: name.into(),
            nothing_changed: vec![timed(4.0)],
            agent_changed: vec![timed(agent)],
            nothing_changed_wall: Summary::of(&[4.0]),
            agent_changed_wall: Summary::of(&[agent]),
            same_image: name == "release",
        };
        let results = Results {
            machine: Machine::describe("none"),
            profiles: vec![profile("dev-image", 10.0), profile("release", 60.0)],
            disturbed_runs: 1,
        };
        let text = markdown(&results);
        assert!(
            text.contains("| dev-image | nothing | 4.0 | 4.0 | 4.0 | 2.0 |"),
            "{text}"
        );
        assert!(text.contains("| dev-image | only the agent | 10.0 | 10.0 | 10.0 | 5.0 |"));
        assert!(text.contains("| release | only the agent | 60.0 | 60.0 | 60.0 | 30.0 |"));
        assert!(text.contains("same image digest: dev-image no, release yes"));
        assert!(text.contains("changed before or during them: 1."));
    }
}
