//! `dbg components`.

use std::io::Write;

use cairn_api::v1::{exit_info::How, Component, ComponentState, ListComponentsRequest};

use super::{table, Context};
use crate::DbgError;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args, ctx: Context, out: &mut dyn Write) -> Result<(), DbgError> {
    let mut client = ctx.client.clone();
    let response = ctx
        .call(
            "ListComponents",
            ctx.call_timeout,
            client.list_components(ListComponentsRequest {}),
        )
        .await?;
    table(out, &rows(&response.components)).map_err(DbgError::Output)
}

/// The header and one row per component.
pub fn rows(components: &[Component]) -> Vec<Vec<String>> {
    let header = ["NAME", "STATE", "PID", "RESTARTS", "LAST EXIT", "DETAIL"];
    let mut rows = vec![header.map(str::to_owned).to_vec()];
    rows.extend(components.iter().map(|c| {
        vec![
            c.name.clone(),
            state(c.state()).to_owned(),
            c.pid.map_or_else(|| "-".to_owned(), |pid| pid.to_string()),
            c.restart_count.to_string(),
            c.last_exit.as_ref().map_or_else(|| "-".to_owned(), exit),
            c.detail.clone(),
        ]
    }));
    rows
}

fn state(state: ComponentState) -> &'static str {
    match state {
        ComponentState::Unspecified => "unknown",
        ComponentState::Waiting => "waiting",
        ComponentState::Starting => "starting",
        ComponentState::Running => "running",
        ComponentState::Ready => "ready",
        ComponentState::Backoff => "backoff",
        ComponentState::Failed => "failed",
        ComponentState::Stopping => "stopping",
        ComponentState::Stopped => "stopped",
    }
}

fn exit(info: &cairn_api::v1::ExitInfo) -> String {
    match (&info.how, info.signal_name.as_str()) {
        (Some(How::Code(code)), _) => format!("code {code}"),
        (Some(How::Signal(number)), "") => format!("signal {number}"),
        (Some(How::Signal(_)), name) => name.to_owned(),
        (None, _) => "-".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_api::v1::ExitInfo;

    #[test]
    fn rows_show_state_pid_restarts_and_exit() {
        let components = [
            Component {
                name: "agent".into(),
                state: ComponentState::Ready.into(),
                pid: Some(1),
                ..Component::default()
            },
            Component {
                name: "containerd".into(),
                state: ComponentState::Backoff.into(),
                detail: "restarts at 12.000s".into(),
                restart_count: 2,
                last_exit: Some(ExitInfo {
                    how: Some(How::Signal(9)),
                    signal_name: "SIGKILL".into(),
                    ..ExitInfo::default()
                }),
                ..Component::default()
            },
        ];
        let rows = rows(&components);
        assert_eq!(rows[1], ["agent", "ready", "1", "0", "-", ""]);
        assert_eq!(
            rows[2],
            [
                "containerd",
                "backoff",
                "-",
                "2",
                "SIGKILL",
                "restarts at 12.000s"
            ]
        );
    }
}
