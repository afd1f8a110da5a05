//! `dbg join-token [--ttl 1h]`: a credential for another machine to join the node's
//! cluster (docs/interfaces.md "Join tokens"): a Kubernetes bootstrap token, the
//! cluster CA's public-key hash and the API address, printed as TOML `key = value`
//! lines.

use std::io::Write;

use cairn_api::v1::{CreateJoinTokenRequest, CreateJoinTokenResponse};

use super::Context;
use crate::DbgError;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How long the token authenticates: seconds, or a number with s, m or h
    /// (60 s to 24 h).
    #[arg(long, default_value = "1h", value_parser = ttl_seconds)]
    pub ttl: u32,
}

pub async fn run(args: Args, ctx: Context, out: &mut dyn Write) -> Result<(), DbgError> {
    let mut client = ctx.client.clone();
    let request = CreateJoinTokenRequest {
        ttl_seconds: Some(args.ttl),
    };
    let created = ctx
        .call(
            "CreateJoinToken",
            ctx.call_timeout,
            client.create_join_token(request),
        )
        .await?;
    out.write_all(render(&created).as_bytes())
        .map_err(DbgError::Output)
}

/// `90`, `90s`, `30m` or `1h` as seconds.
pub fn ttl_seconds(text: &str) -> Result<u32, String> {
    let (number, unit) = match text.char_indices().last() {
        Some((i, 's')) => (&text[..i], 1),
        Some((i, 'm')) => (&text[..i], 60),
        Some((i, 'h')) => (&text[..i], 3600),
        _ => (text, 1),
    };
    let form = || format!("{text:?} is not a duration (seconds, or a number with s, m or h)");
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(form());
    }
    number
        .parse::<u32>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(form)
}

fn render(created: &CreateJoinTokenResponse) -> String {
    let expires = time::OffsetDateTime::from_unix_timestamp(created.expires_unix_seconds)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| created.expires_unix_seconds.to_string());
    format!(
        "# Join credential for this node's cluster; it authenticates until {expires}.\n\
         api = {:?}\ntoken = {:?}\nca_hash = {:?}\nexpires = {expires}\n",
        created.api, created.token, created.ca_hash
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_take_a_unit() {
        assert_eq!(ttl_seconds("90"), Ok(90));
        assert_eq!(ttl_seconds("90s"), Ok(90));
        assert_eq!(ttl_seconds("30m"), Ok(1800));
        assert_eq!(ttl_seconds("1h"), Ok(3600));
        for bad in ["", "h", "1d", "-5", "1.5h", "99999999999"] {
            assert!(ttl_seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_credential_is_toml_values() {
        let text = render(&CreateJoinTokenResponse {
            token: "abcdef.0123456789abcdef".into(),
            ca_hash: "sha256:00".into(),
            api: "192.168.100.10:6443".into(),
            expires_unix_seconds: 1_800_000_000,
        });
        assert_eq!(
            text,
            "# Join credential for this node's cluster; it authenticates until \
             2027-01-15T08:00:00Z.\napi = \"192.168.100.10:6443\"\n\
             token = \"abcdef.0123456789abcdef\"\nca_hash = \"sha256:00\"\n\
             expires = 2027-01-15T08:00:00Z\n"
        );
        let parsed: toml::Table = text.parse().unwrap();
        assert_eq!(parsed["token"].as_str(), Some("abcdef.0123456789abcdef"));
    }
}
