//! `dbg conditions [NAME...]` and `dbg conditions --wait NAME [--timeout S] [--progress]`.

use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;

use cairn_api::v1::{Condition, ListConditionsRequest, WaitConditionRequest};

use super::{boot_time, table, Context};
use crate::DbgError;

/// Extra time for the answer to a wait to travel back before `dbg` gives up itself.
const WAIT_SLACK: Duration = Duration::from_secs(5);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only these conditions [default: all].
    #[arg(conflicts_with = "wait")]
    pub names: Vec<String>,
    /// Wait until this condition is true; exit non-zero with its reason on timeout.
    #[arg(long, value_name = "NAME")]
    pub wait: Option<String>,
    /// Seconds to wait (at most one hour).
    #[arg(long, value_name = "S", default_value_t = 60.0, value_parser = wait_seconds, requires = "wait")]
    pub timeout: f64,
    /// While waiting, print each condition as it turns true (to stderr).
    #[arg(long, requires = "wait")]
    pub progress: bool,
}

/// How often `--progress` lists the conditions.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

fn wait_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && (0.0..=3600.0).contains(&s) => Ok(s),
        _ => Err(format!("{text:?} is not a number of seconds in [0, 3600]")),
    }
}

pub async fn run(args: Args, ctx: Context, out: &mut dyn Write) -> Result<(), DbgError> {
    let mut client = ctx.client.clone();
    let conditions = match args.wait {
        Some(name) => {
            let timeout = Duration::from_secs_f64(args.timeout);
            let request = WaitConditionRequest {
                name,
                timeout_ms: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
            };
            let wait = client.wait_condition(request);
            let wait = ctx.call("WaitCondition", timeout + WAIT_SLACK, wait);
            let condition = match args.progress {
                false => wait.await?,
                true => {
                    let mut shown = BTreeSet::new();
                    let condition = tokio::select! {
                        condition = wait => condition,
                        never = report_progress(&ctx, &mut shown) => match never {},
                    };
                    // What turned true since the last look, the awaited one included.
                    print_progress(&ctx, &mut shown).await;
                    condition?
                }
            };
            vec![condition]
        }
        None => {
            let request = ListConditionsRequest { names: args.names };
            let list = client.list_conditions(request);
            ctx.call("ListConditions", ctx.call_timeout, list)
                .await?
                .conditions
        }
    };
    table(out, &rows(&conditions)).map_err(DbgError::Output)
}

/// Lists the conditions every [`PROGRESS_EVERY`] and prints each one that turned
/// true since the last list, with when and why; forever (the caller's wait ends it).
/// A list that fails is skipped: the wait itself reports an unreachable node.
async fn report_progress(ctx: &Context, shown: &mut BTreeSet<String>) -> std::convert::Infallible {
    loop {
        print_progress(ctx, shown).await;
        tokio::time::sleep(PROGRESS_EVERY).await;
    }
}

/// One look: prints the conditions that turned true and are not in `shown` yet.
async fn print_progress(ctx: &Context, shown: &mut BTreeSet<String>) {
    let mut client = ctx.client.clone();
    let list = client.list_conditions(ListConditionsRequest::default());
    if let Ok(list) = ctx.call("ListConditions", ctx.call_timeout, list).await {
        for line in newly_true(&list.conditions, shown) {
            eprintln!("{line}");
        }
    }
}

/// One line per condition in `conditions` that is true and not in `shown` yet, in
/// the order they turned true; adds them to `shown`.
fn newly_true(conditions: &[Condition], shown: &mut BTreeSet<String>) -> Vec<String> {
    let mut new: Vec<&Condition> = conditions
        .iter()
        .filter(|c| c.status && c.first_true_boot_ns.is_some() && !shown.contains(&c.name))
        .collect();
    new.sort_by_key(|c| c.first_true_boot_ns);
    new.into_iter()
        .map(|c| {
            shown.insert(c.name.clone());
            let at = boot_time(c.first_true_boot_ns.unwrap_or_default());
            format!("{}s  {}: {}", at.trim(), c.name, c.reason)
        })
        .collect()
}

/// The header and one row per condition.
pub fn rows(conditions: &[Condition]) -> Vec<Vec<String>> {
    let mut rows = vec![["NAME", "STATUS", "FIRST TRUE", "REASON"]
        .map(str::to_owned)
        .to_vec()];
    rows.extend(conditions.iter().map(|c| {
        vec![
            c.name.clone(),
            if c.status { "true" } else { "false" }.to_owned(),
            c.first_true_boot_ns.map_or_else(
                || "-".to_owned(),
                |ns| boot_time(ns).trim().to_owned() + "s",
            ),
            c.reason.clone(),
        ]
    }));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        let cli = crate::Cli::try_parse_from(args)?;
        match cli.command {
            crate::Command::Conditions(args) => Ok(args),
            other => panic!("not conditions: {other:?}"),
        }
    }

    #[test]
    fn progress_lines_name_each_condition_once_in_the_order_it_turned_true() {
        let condition = |name: &str, status: bool, at_ms: Option<u64>| Condition {
            name: name.into(),
            status,
            reason: format!("{name} reason"),
            first_true_boot_ns: at_ms.map(|ms| ms * 1_000_000),
            ..Default::default()
        };
        let mut shown = BTreeSet::new();
        let first = [
            condition("etcd", true, Some(9_010)),
            condition("mounts", true, Some(4_200)),
            condition("kubelet", false, None),
        ];
        assert_eq!(
            newly_true(&first, &mut shown),
            [
                "4.200000s  mounts: mounts reason",
                "9.010000s  etcd: etcd reason"
            ]
        );
        let second = [
            condition("etcd", true, Some(9_010)),
            condition("mounts", true, Some(4_200)),
            condition("kubelet", true, Some(12_500)),
        ];
        assert_eq!(
            newly_true(&second, &mut shown),
            ["12.500000s  kubelet: kubelet reason"]
        );
        assert!(newly_true(&second, &mut shown).is_empty());
    }

    #[test]
    fn wait_and_timeout_parse() {
        let args = parse(&[
            "dbg",
            "conditions",
            "--wait",
            "containerd",
            "--timeout",
            "2.5",
        ])
        .unwrap();
        assert_eq!(
            (args.wait.as_deref(), args.timeout),
            (Some("containerd"), 2.5)
        );
        assert_eq!(parse(&["dbg", "conditions"]).unwrap().timeout, 60.0);
        assert_eq!(
            parse(&["dbg", "conditions", "a", "b"]).unwrap().names,
            ["a", "b"]
        );
        assert!(parse(&["dbg", "conditions", "--timeout", "3"]).is_err());
        assert!(parse(&["dbg", "conditions", "--wait", "x", "--timeout", "3601"]).is_err());
        assert!(parse(&["dbg", "conditions", "--wait", "x", "--timeout", "-1"]).is_err());
        assert!(parse(&["dbg", "conditions", "a", "--wait", "x"]).is_err());
    }

    #[test]
    fn rows_show_status_first_true_and_reason() {
        let conditions = [
            Condition {
                name: "mounts".into(),
                status: true,
                reason: "mounted 8 file systems".into(),
                first_true_boot_ns: Some(1_250_000_000),
                last_change_boot_ns: 1_250_000_000,
            },
            Condition {
                name: "containerd".into(),
                status: false,
                reason: "waiting for network".into(),
                first_true_boot_ns: None,
                last_change_boot_ns: 9,
            },
        ];
        let rows = rows(&conditions);
        assert_eq!(
            rows[1],
            ["mounts", "true", "1.250000s", "mounted 8 file systems"]
        );
        assert_eq!(rows[2], ["containerd", "false", "-", "waiting for network"]);
    }
}
