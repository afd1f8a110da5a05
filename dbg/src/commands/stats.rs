//! `dbg stats`: memory and CPU time of the agent and of each component's process.

use std::io::Write;

use cairn_api::v1::{GetProcessStatsRequest, GetProcessStatsResponse};

use super::{table, Context};
use crate::DbgError;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args, ctx: Context, out: &mut dyn Write) -> Result<(), DbgError> {
    let mut client = ctx.client.clone();
    let stats = ctx
        .call(
            "GetProcessStats",
            ctx.call_timeout,
            client.get_process_stats(GetProcessStatsRequest {}),
        )
        .await?;
    table(out, &rows(&stats)).map_err(DbgError::Output)
}

/// A header, one row per process, then the node's memory.
pub fn rows(stats: &GetProcessStatsResponse) -> Vec<Vec<String>> {
    let mib = |bytes: u64| format!("{:.1}", bytes as f64 / f64::from(1 << 20));
    let secs = |ns: u64| format!("{:.2}", ns as f64 / 1e9);
    let mut rows = vec![[
        "COMPONENT",
        "PID",
        "RSS MiB",
        "USER s",
        "SYSTEM s",
        "CGROUP",
    ]
    .map(str::to_owned)
    .to_vec()];
    rows.extend(stats.processes.iter().map(|p| {
        vec![
            p.component.clone(),
            p.pid.to_string(),
            mib(p.rss_bytes),
            secs(p.user_cpu_ns),
            secs(p.system_cpu_ns),
            p.cgroup.clone(),
        ]
    }));
    rows.push(vec![
        "node".to_owned(),
        "-".to_owned(),
        format!(
            "{} of {} available",
            mib(stats.memory_available_bytes),
            mib(stats.memory_total_bytes)
        ),
        String::new(),
        String::new(),
        String::new(),
    ]);
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_api::v1::ProcessStats;

    #[test]
    fn rows_show_mib_and_seconds() {
        let stats = GetProcessStatsResponse {
            processes: vec![ProcessStats {
                component: "agent".into(),
                pid: 1,
                rss_bytes: 12 << 20,
                user_cpu_ns: 1_500_000_000,
                system_cpu_ns: 250_000_000,
                start_boot_ns: 0,
                cgroup: "/".into(),
            }],
            memory_total_bytes: 2048 << 20,
            memory_available_bytes: 1024 << 20,
        };
        let rows = rows(&stats);
        assert_eq!(rows[1], ["agent", "1", "12.0", "1.50", "0.25", "/"]);
        assert_eq!(rows[2][2], "1024.0 of 2048.0 available");
    }
}
