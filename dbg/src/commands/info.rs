//! `dbg info [--os-release]`.

use std::io::Write;

use cairn_api::v1::{BuildInfo, GetBuildInfoRequest};

use super::{table, Context};
use crate::DbgError;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the node's whole /etc/os-release instead of the summary.
    #[arg(long)]
    pub os_release: bool,
}

pub async fn run(args: Args, ctx: Context, out: &mut dyn Write) -> Result<(), DbgError> {
    let mut client = ctx.client.clone();
    let info = ctx
        .call(
            "GetBuildInfo",
            ctx.call_timeout,
            client.get_build_info(GetBuildInfoRequest {}),
        )
        .await?;
    if args.os_release {
        return out
            .write_all(info.os_release.as_bytes())
            .map_err(DbgError::Output);
    }
    table(out, &summary(&info)).map_err(DbgError::Output)
}

/// `key: value` rows; missing values show as `-`.
pub fn summary(info: &BuildInfo) -> Vec<Vec<String>> {
    let field = |key: &str| info.os_release_fields.get(key).cloned();
    let or_dash = |value: Option<String>| {
        value
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "-".into())
    };
    [
        ("os:", field("PRETTY_NAME").or_else(|| field("NAME"))),
        ("version:", field("VERSION")),
        ("build:", field("BUILD_ID")),
        ("image:", field("IMAGE_VERSION")),
        ("content digest:", Some(info.content_digest.clone())),
        ("agent:", Some(info.agent_version.clone())),
    ]
    .into_iter()
    .map(|(key, value)| vec![key.to_owned(), or_dash(value)])
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_prefers_pretty_name_and_dashes_missing_fields() {
        let info = BuildInfo {
            os_release_fields: [
                ("NAME".to_owned(), "cairn".to_owned()),
                ("PRETTY_NAME".to_owned(), "cairn node".to_owned()),
                ("VERSION".to_owned(), "0.1.0".to_owned()),
            ]
            .into(),
            agent_version: "0.1.0".into(),
            ..BuildInfo::default()
        };
        let rows = summary(&info);
        assert_eq!(rows[0], ["os:", "cairn node"]);
        assert_eq!(rows[2], ["build:", "-"]);
        assert_eq!(rows[4], ["content digest:", "-"]);
        assert_eq!(rows[5], ["agent:", "0.1.0"]);
    }
}
