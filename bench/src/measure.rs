//! Timing a program: wall time on the host clock and CPU time (user + system) of the
//! program and every descendant it waited for, from `getrusage(RUSAGE_CHILDREN)`
//! before and after (getrusage(2)). The benchmark process runs one measured program
//! at a time and waits for it, so the difference is that program's alone.
//!
//! "Cold" runs start with the page cache dropped (`/proc/sys/vm/drop_caches`, see
//! proc_sys_vm(5)), so every input is read from disk again; that needs root, and a
//! run that could not drop it says so instead of pretending.

use std::fs;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use nix::sys::resource::{getrusage, UsageWho};
use nix::sys::time::TimeValLike;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Lines of a failed program's output quoted in the error.
const TAIL_LINES: usize = 30;
const DROP_CACHES: &str = "/proc/sys/vm/drop_caches";

/// One measured run, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Timed {
    pub wall_s: f64,
    pub cpu_s: f64,
}

/// Runs `command` to completion with its output captured, and times it. `what` names
/// it in errors; a non-zero exit is an error quoting the output's tail.
pub fn timed(command: &mut Command, what: &str) -> Result<Timed, Error> {
    let cpu_before = children_cpu_s();
    let started = Instant::now();
    run(command, what)?;
    Ok(Timed {
        wall_s: started.elapsed().as_secs_f64(),
        cpu_s: children_cpu_s() - cpu_before,
    })
}

/// Runs `command` untimed, failing like [`timed`].
pub fn run(command: &mut Command, what: &str) -> Result<Output, Error> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            program: what.to_owned(),
            source,
        })?;
    check(what, &output)?;
    Ok(output)
}

fn check(what: &str, output: &Output) -> Result<(), Error> {
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Err(Error::Failed {
        what: what.to_owned(),
        status: output.status,
        tail: tail(&text, TAIL_LINES),
    })
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// CPU seconds of every waited-for descendant so far; 0 if getrusage fails (it cannot
/// for RUSAGE_CHILDREN), which shows as an obviously wrong figure, not an error.
fn children_cpu_s() -> f64 {
    getrusage(UsageWho::RUSAGE_CHILDREN).map_or(0.0, |usage| {
        (usage.user_time().num_microseconds() + usage.system_time().num_microseconds()) as f64 / 1e6
    })
}

/// Writes dirty pages back and drops the page cache, dentries and inodes. `false` when
/// this process may not (not root, or a read-only /proc).
pub fn drop_caches() -> bool {
    nix::unistd::sync();
    fs::write(DROP_CACHES, "3\n").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_is_timed_and_its_cpu_counted() {
        let timed = timed(
            Command::new("sh").args(["-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"]),
            "a busy loop",
        )
        .unwrap();
        assert!(timed.wall_s > 0.0);
        assert!(timed.cpu_s > 0.0, "{timed:?}");
    }

    #[test]
    fn a_failing_child_is_an_error_with_its_output() {
        let err = timed(
            Command::new("sh").args(["-c", "echo first; echo last >&2; exit 3"]),
            "the failing tool",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("the failing tool failed"), "{text}");
        assert!(text.contains("first\nlast"), "{text}");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }
}
