//! Result files: `<name>.md` for people, `<name>.json` with the raw figures, and the
//! machine they were measured on.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::node::Error;

/// Where and when a measurement ran.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cpus: usize,
    pub memory_gib: u64,
    pub qemu: String,
    pub accel: String,
    pub date: String,
}

impl Machine {
    pub fn describe(accel: &str) -> Self {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']))
            })
            .unwrap_or("unknown")
            .to_owned();
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let kib: u64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
            .unwrap_or(0);
        Machine {
            cpu,
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
            memory_gib: kib / (1024 * 1024),
            qemu: first_line("qemu-system-x86_64", &["--version"]),
            accel: accel.to_owned(),
            date: first_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        }
    }

    pub fn markdown(&self) -> String {
        format!(
            "Measured {} on {} ({} CPUs, {} GiB), {}, accel {}.\n",
            self.date, self.cpu, self.cpus, self.memory_gib, self.qemu, self.accel
        )
    }
}

fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Writes `<dir>/<name>.md` and `<dir>/<name>.json`; returns the Markdown path.
pub fn write(
    dir: &Path,
    name: &str,
    markdown: &str,
    raw: &impl Serialize,
) -> Result<PathBuf, Error> {
    fs::create_dir_all(dir)?;
    let md = dir.join(format!("{name}.md"));
    fs::write(&md, markdown)?;
    fs::write(
        dir.join(format!("{name}.json")),
        serde_json::to_string_pretty(raw)? + "\n",
    )?;
    Ok(md)
}
