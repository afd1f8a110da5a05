//! Result files: `<name>.md` for people, `<name>.json` with the raw figures, and the
//! machine they were measured on; plus the number formats every report shares.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Where and when a measurement ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub cpu: String,
    pub cpus: usize,
    pub memory_gib: u64,
    /// The host kernel (`uname -r`).
    #[serde(default)]
    pub kernel: String,
    pub qemu: String,
    pub accel: String,
    /// `/proc/loadavg`'s 1, 5 and 15 minute figures when the figures were written:
    /// other work on a shared host slows TCG guests and builds alike.
    #[serde(default)]
    pub load_average: String,
    /// Why the launcher's probe chose the accelerator, when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accel_probe: Option<String>,
    pub date: String,
}

impl Machine {
    pub fn describe(accel: &str) -> Self {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Machine {
            cpu: cpu_model(&cpuinfo),
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
            memory_gib: mem_total_kib(&meminfo) / (1024 * 1024),
            kernel: first_line("uname", &["-r"]),
            qemu: first_line("qemu-system-x86_64", &["--version"]),
            accel: accel.to_owned(),
            load_average: load_average(&fs::read_to_string("/proc/loadavg").unwrap_or_default()),
            accel_probe: None,
            date: first_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        }
    }

    /// The same machine with the accelerator probe's verdict.
    pub fn with_probe(mut self, reason: String) -> Self {
        self.accel_probe = Some(reason);
        self
    }

    pub fn markdown(&self) -> String {
        format!(
            "Measured {} on {} ({} CPUs, {} GiB, Linux {}), {}, accel {}; host load average \
             {} at the end.\n",
            self.date,
            self.cpu,
            self.cpus,
            self.memory_gib,
            self.kernel,
            self.qemu,
            self.accel,
            self.load_average
        )
    }
}

fn cpu_model(cpuinfo: &str) -> String {
    cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']))
        })
        .unwrap_or("unknown")
        .to_owned()
}

fn mem_total_kib(meminfo: &str) -> u64 {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or(0)
}

/// The first three fields of `/proc/loadavg` (proc(5)).
fn load_average(loadavg: &str) -> String {
    loadavg
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
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
    fs::create_dir_all(dir).map_err(Error::write(dir))?;
    let md = dir.join(format!("{name}.md"));
    fs::write(&md, markdown).map_err(Error::write(&md))?;
    let json = dir.join(format!("{name}.json"));
    let text = serde_json::to_string_pretty(raw).map_err(|e| Error::Json(json.clone(), e))?;
    fs::write(&json, text + "\n").map_err(Error::write(&json))?;
    Ok(md)
}

/// Reads `<dir>/<name>.json`; `None` when that benchmark has not written one.
pub fn load<T: DeserializeOwned>(dir: &Path, name: &str) -> Result<Option<T>, Error> {
    let path = dir.join(format!("{name}.json"));
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(Error::Read(path, err)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::Json(path, e))
}

/// Megabytes (10^6 bytes), the unit the peers publish in.
/// A benchmark's own page: its title, the machine it ran on, its figures.
pub fn page(title: &str, machine: &Machine, body: &str) -> String {
    format!("# {title}\n\n{}\n{body}", machine.markdown())
}

pub fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// `ours / theirs` as `0.42×`; `n/a` when either side is missing or zero.
pub fn ratio(ours: Option<f64>, theirs: Option<f64>) -> String {
    match (ours, theirs) {
        (Some(a), Some(b)) if a > 0.0 && b > 0.0 => format!("{:.2}×", a / b),
        _ => "n/a".to_owned(),
    }
}

/// A figure with `digits` decimals, or `n/a`.
pub fn num(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.digits$}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_ours_over_theirs() {
        assert_eq!(ratio(Some(1.0), Some(4.0)), "0.25×");
        assert_eq!(ratio(Some(3.0), Some(2.0)), "1.50×");
        assert_eq!(ratio(None, Some(2.0)), "n/a");
        assert_eq!(ratio(Some(1.0), Some(0.0)), "n/a");
    }

    #[test]
    fn numbers_and_megabytes() {
        assert_eq!(num(Some(1.23456), 2), "1.23");
        assert_eq!(num(None, 1), "n/a");
        assert_eq!(mb(55_500_000), 55.5);
    }

    #[test]
    fn machine_facts_are_parsed() {
        let cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t: x\n";
        assert_eq!(cpu_model(cpuinfo), "AMD EPYC 7B13");
        assert_eq!(cpu_model(""), "unknown");
        assert_eq!(mem_total_kib("MemTotal:       24683112 kB\n"), 24_683_112);
        assert_eq!(
            load_average("2.13 2.60 2.84 3/411 18907\n"),
            "2.13 2.60 2.84"
        );
    }

    #[test]
    fn results_round_trip_and_missing_ones_are_none() {
        let dir = tempfile::tempdir().unwrap();
        let machine = Machine::describe("tcg");
        write(dir.path(), "m", "# m\n", &machine).unwrap();
        let back: Machine = load(dir.path(), "m").unwrap().unwrap();
        assert_eq!(back.accel, "tcg");
        assert!(load::<Machine>(dir.path(), "absent").unwrap().is_none());
    }
}
