//! GetProcessStats: memory and CPU of the agent and of each component's process, read
//! from proc(5) at call time. Units are converted here (pages and clock ticks are the
//! kernel's), so clients get bytes and nanoseconds.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use cairn_api::v1::{GetProcessStatsResponse, ProcessStats};

use crate::Paths;

/// USER_HZ: the unit of the times in /proc/<pid>/stat. 100 on every architecture
/// Linux runs on today (proc(5); sysconf(_SC_CLK_TCK)).
const TICKS_PER_SECOND: u64 = 100;
const NS_PER_TICK: u64 = 1_000_000_000 / TICKS_PER_SECOND;

/// One process to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub component: String,
    pub pid: u32,
}

/// Why a process could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("cannot read {}", .0.display())]
    Read(PathBuf, #[source] io::Error),
    #[error("{} is malformed: {why}", .0.display(), why = .1)]
    Malformed(PathBuf, &'static str),
}

/// Stats of every target still alive, plus the node's memory totals. A process that
/// exited between listing and reading is left out, not an error.
pub fn collect(paths: &Paths, targets: &[Target]) -> GetProcessStatsResponse {
    let proc = paths.resolve("/proc");
    let processes = targets
        .iter()
        .filter_map(|target| match read_process(&proc, target) {
            Ok(stats) => Some(stats),
            Err(err) => {
                tracing::debug!("process stats: {}", cairn_api::error_chain(&err));
                None
            }
        })
        .collect();
    let meminfo = fs::read_to_string(proc.join("meminfo")).unwrap_or_default();
    GetProcessStatsResponse {
        processes,
        memory_total_bytes: meminfo_bytes(&meminfo, "MemTotal").unwrap_or_default(),
        memory_available_bytes: meminfo_bytes(&meminfo, "MemAvailable").unwrap_or_default(),
    }
}

fn read_process(proc: &Path, target: &Target) -> Result<ProcessStats, StatsError> {
    let dir = proc.join(target.pid.to_string());
    let stat_path = dir.join("stat");
    let stat =
        fs::read_to_string(&stat_path).map_err(|e| StatsError::Read(stat_path.clone(), e))?;
    let times = parse_stat(&stat).ok_or(StatsError::Malformed(stat_path, "too few fields"))?;
    let status_path = dir.join("status");
    let status =
        fs::read_to_string(&status_path).map_err(|e| StatsError::Read(status_path.clone(), e))?;
    // Kernel threads and zombies have no VmRSS line: they use no user memory.
    let rss_bytes = meminfo_bytes(&status, "VmRSS").unwrap_or_default();
    let cgroup = fs::read_to_string(dir.join("cgroup")).unwrap_or_default();
    Ok(ProcessStats {
        cgroup: unified_cgroup(&cgroup).unwrap_or_default().to_owned(),
        component: target.component.clone(),
        pid: target.pid,
        rss_bytes,
        user_cpu_ns: times.user_ticks * NS_PER_TICK,
        system_cpu_ns: times.system_ticks * NS_PER_TICK,
        start_boot_ns: times.start_ticks * NS_PER_TICK,
    })
}

/// The fields of /proc/<pid>/stat this service reports, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatTimes {
    pub user_ticks: u64,
    pub system_ticks: u64,
    pub start_ticks: u64,
}

/// proc(5) stat: `pid (comm) state ...`; comm may hold spaces and parentheses, so the
/// fields are counted from the last `)`. utime, stime and starttime are fields 14, 15
/// and 22 (1-based), i.e. 11, 12 and 19 after the state field at index 0.
pub fn parse_stat(stat: &str) -> Option<StatTimes> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |index: usize| fields.get(index)?.parse::<u64>().ok();
    Some(StatTimes {
        user_ticks: field(11)?,
        system_ticks: field(12)?,
        start_ticks: field(19)?,
    })
}

/// The cgroup v2 path in /proc/<pid>/cgroup: the `0::PATH` line (cgroups(7)).
pub fn unified_cgroup(text: &str) -> Option<&str> {
    text.lines().find_map(|line| line.strip_prefix("0::"))
}

/// A `Key:   1234 kB` line of /proc/meminfo or /proc/<pid>/status, in bytes.
pub fn meminfo_bytes(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if name != key {
            return None;
        }
        let kib = value
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse::<u64>()
            .ok()?;
        kib.checked_mul(1024)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "1 (cairn agent) S 0 1 1 0 -1 4194560 3360 0 42 0 57 31 0 0 20 0 4 0 12 \
                        37900288 3379 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0";

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        assert_eq!(
            parse_stat(STAT),
            Some(StatTimes {
                user_ticks: 57,
                system_ticks: 31,
                start_ticks: 12
            })
        );
        assert_eq!(parse_stat("1 (x) S 0"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn the_cgroup_is_the_unified_hierarchy_line() {
        assert_eq!(unified_cgroup("0::/system/etcd\n"), Some("/system/etcd"));
        assert_eq!(unified_cgroup("1:name=x:/a\n0::/\n"), Some("/"));
        assert_eq!(unified_cgroup("1:cpu:/a\n"), None);
    }

    #[test]
    fn kib_lines_become_bytes() {
        let status = "Name:\tcairn-agent\nVmRSS:\t   13508 kB\nThreads:\t4\n";
        assert_eq!(meminfo_bytes(status, "VmRSS"), Some(13508 * 1024));
        assert_eq!(meminfo_bytes(status, "VmSwap"), None);
        assert_eq!(meminfo_bytes("MemTotal: x kB", "MemTotal"), None);
    }

    #[test]
    fn collects_live_targets_and_skips_gone_ones() {
        let root = tempfile::tempdir().unwrap();
        let proc = root.path().join("proc");
        fs::create_dir_all(proc.join("1")).unwrap();
        fs::write(proc.join("1/stat"), STAT).unwrap();
        fs::write(proc.join("1/status"), "VmRSS:\t2 kB\n").unwrap();
        fs::write(proc.join("meminfo"), "MemTotal: 4 kB\nMemAvailable: 3 kB\n").unwrap();
        let targets = [
            Target {
                component: "agent".into(),
                pid: 1,
            },
            Target {
                component: "etcd".into(),
                pid: 99,
            },
        ];
        let stats = collect(&Paths::under_root(root.path()), &targets);
        assert_eq!(stats.processes.len(), 1);
        let agent = &stats.processes[0];
        assert_eq!((agent.component.as_str(), agent.rss_bytes), ("agent", 2048));
        assert_eq!(agent.user_cpu_ns, 570_000_000);
        assert_eq!(agent.start_boot_ns, 120_000_000);
        assert_eq!(stats.memory_total_bytes, 4096);
        assert_eq!(stats.memory_available_bytes, 3072);
    }
}
