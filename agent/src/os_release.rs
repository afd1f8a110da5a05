//! The agent's one reader of os-release(5): the `os-release` crate, the same one the
//! image builder's tests parse its stamped file back with, behind two guards.
//!
//! The crate parses `KEY=value` lines and strips one pair of enclosing quotes from the
//! fields it names (`NAME`, `VERSION`, `ID`, ...); every other key lands in `extra` with
//! its quotes. It does not undo backslash escapes, so `PRETTY_NAME="a \"b\""` reads as
//! `a \"b\"`; the builder escapes only `\`, `"`, `$` and `` ` ``, and none of the values
//! the agent acts on (`VERSION`, from the Cargo version and `git describe`) contain them.
//!
//! The guards: comment lines are dropped (the crate would file `# A=b` under the key
//! `# A`), and so is a line whose value is a lone quote, on which the crate's unquoting
//! slices `[1..0]` and panics. The file is part of the image, but PID 1 must not panic
//! on any bytes, and the fuzz target `os_release` checks that it does not.

use std::collections::HashMap;

pub use os_release::OsRelease;

/// Parses os-release(5) text; lines that do not parse are skipped and the last
/// assignment of a key wins.
pub fn parse(text: &str) -> OsRelease {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter(|line| {
            let value = line.split_once('=').map_or("", |(_, value)| value.trim());
            value != "\"" && value != "'"
        })
        .map(str::to_owned)
        .collect()
}

/// Every assignment of `release`, with one pair of enclosing quotes removed from the
/// values the crate leaves quoted; keys that os-release(5) would not allow are left out.
pub fn fields(release: &OsRelease) -> HashMap<String, String> {
    let named = [
        ("NAME", &release.name),
        ("VERSION", &release.version),
        ("ID", &release.id),
        ("ID_LIKE", &release.id_like),
        ("PRETTY_NAME", &release.pretty_name),
        ("VERSION_ID", &release.version_id),
        ("HOME_URL", &release.home_url),
        ("SUPPORT_URL", &release.support_url),
        ("BUG_REPORT_URL", &release.bug_report_url),
        ("PRIVACY_POLICY_URL", &release.privacy_policy_url),
        ("VERSION_CODENAME", &release.version_codename),
    ];
    let named = named
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(key, value)| (key.to_owned(), value.clone()));
    let extra = release
        .extra
        .iter()
        .filter(|(key, _)| {
            !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
        .map(|(key, value)| (key.clone(), unquote(value.trim()).to_owned()));
    named.chain(extra).collect()
}

/// What the crate does to the fields it names.
fn unquote(value: &str) -> &str {
    ['"', '\'']
        .into_iter()
        .find_map(|quote| value.strip_prefix(quote)?.strip_suffix(quote))
        .unwrap_or(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_unquoted_and_escapes_kept() {
        let release = parse("NAME=cairn\nVERSION=\"1.2 \\\"beta\\\"\"\nID='x'\nVERSION_ID=1.2\n");
        assert_eq!(release.name, "cairn");
        assert_eq!(release.version, "1.2 \\\"beta\\\"");
        assert_eq!(release.id, "x");
        assert_eq!(release.version_id, "1.2");
    }

    #[test]
    fn fields_hold_every_key_unquoted() {
        let release = parse(
            "# comment\n# A=b\nNAME=cairn\nIMAGE_ID=\"cairn-node\"\nBUILD_ID='x'\n\nbad line\n=x\n",
        );
        let fields = fields(&release);
        assert_eq!(fields["NAME"], "cairn");
        assert_eq!(fields["IMAGE_ID"], "cairn-node");
        assert_eq!(fields["BUILD_ID"], "x");
        assert_eq!(fields.len(), 3, "{fields:?}");
    }

    #[test]
    fn a_lone_quote_is_skipped_not_a_panic() {
        let release = parse("VERSION=1\nVERSION=\"\nNAME='\nID=\"\"\nX=\"\n");
        assert_eq!(release.version, "1");
        assert_eq!(release.name, "");
        assert_eq!(fields(&release).get("X"), None);
    }

    #[test]
    fn the_last_assignment_wins() {
        assert_eq!(parse("VERSION=1\nVERSION=2\n").version, "2");
    }

    #[test]
    fn the_image_fixture_parses() {
        let text = include_str!("../testdata/node/etc/os-release");
        let release = parse(text);
        assert_eq!(release.version, "0.1.0");
        assert_eq!(fields(&release)["BUILD_ID"], "fixture");
    }
}
