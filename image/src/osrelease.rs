//! Build identity and the stamped `/etc/os-release`.
//!
//! The version fields come from the Cargo version and `git describe`, and the fixed
//! timestamp from `SOURCE_DATE_EPOCH` (reproducible-builds.org) or the last commit, so
//! the same checkout always stamps the same bytes. Values are quoted and escaped as
//! os-release(5) requires.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use crate::config::OsReleaseConfig;

/// What identifies one build of the image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BuildInfo {
    /// `VERSION_ID`: the Cargo version, e.g. `0.1.0`.
    pub version_id: String,
    /// `VERSION` and `IMAGE_VERSION`: e.g. `0.1.0-g3f2a9c1b2d4e` or `0.1.0-g3f2a9c1b2d4e-dirty`.
    pub version: String,
    /// `BUILD_ID`: the commit (with `-dirty` for uncommitted changes), or `unknown`.
    pub build_id: String,
    /// Timestamp for every file in the image.
    pub source_date_epoch: u64,
    /// The Cargo profile the image's own binaries were built with (`release`, or
    /// `dev-image` for quick rebuilds while developing).
    pub cargo_profile: String,
}

impl BuildInfo {
    /// Derives the build identity of the checkout at `repo`.
    ///
    /// Outside a git checkout the Cargo version alone is used and the epoch is 0
    /// unless `SOURCE_DATE_EPOCH` says otherwise.
    pub fn detect(repo: &Path, source_date_epoch: Option<u64>, cargo_profile: &str) -> Self {
        let version_id = env!("CARGO_PKG_VERSION").to_owned();
        let describe = git(repo, &["describe", "--always", "--dirty", "--abbrev=12"]);
        let (version, build_id) = match describe {
            Some(d) => match d
                .strip_prefix('v')
                .filter(|t| t.starts_with(|c: char| c.is_ascii_digit()))
            {
                Some(tagged) => (tagged.to_owned(), d.clone()),
                None => (format!("{version_id}-g{d}"), d),
            },
            None => (version_id.clone(), "unknown".to_owned()),
        };
        let epoch = source_date_epoch
            .or_else(|| git(repo, &["log", "-1", "--format=%ct"])?.parse().ok())
            .unwrap_or(0);
        Self {
            version_id,
            version,
            build_id,
            source_date_epoch: epoch,
            cargo_profile: cargo_profile.to_owned(),
        }
    }
}

fn git(repo: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}

/// Renders `/etc/os-release` for this build.
pub fn render(config: &OsReleaseConfig, build: &BuildInfo) -> String {
    let fields = [
        ("NAME", config.name.as_str()),
        ("ID", &config.id),
        ("PRETTY_NAME", &config.pretty_name),
        ("VERSION", &build.version),
        ("VERSION_ID", &build.version_id),
        ("BUILD_ID", &build.build_id),
        ("IMAGE_ID", &config.image_id),
        ("IMAGE_VERSION", &build.version),
        ("HOME_URL", &config.home_url),
    ];
    let mut text = String::new();
    for (key, value) in fields {
        let _ = writeln!(text, "{key}=\"{}\"", escape(value));
    }
    text
}

/// os-release(5): inside double quotes, `\`, `"`, `$` and `` ` `` are backslash-escaped.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | '"' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> OsReleaseConfig {
        OsReleaseConfig {
            name: "cairn".into(),
            id: "cairn".into(),
            pretty_name: "cairn \"node\" $HOME".into(),
            image_id: "cairn-node".into(),
            home_url: "https://example.invalid/cairn".into(),
        }
    }

    fn build() -> BuildInfo {
        BuildInfo {
            version_id: "0.1.0".into(),
            version: "0.1.0-gabcdef012345".into(),
            build_id: "abcdef012345".into(),
            source_date_epoch: 1,
            cargo_profile: "release".into(),
        }
    }

    #[test]
    fn parses_back_with_the_os_release_crate() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), render(&config(), &build())).unwrap();
        let parsed = os_release::OsRelease::new_from(file.path()).unwrap();
        assert_eq!(parsed.name, "cairn");
        assert_eq!(parsed.id, "cairn");
        assert_eq!(parsed.version, "0.1.0-gabcdef012345");
        assert_eq!(parsed.version_id, "0.1.0");
        assert_eq!(parsed.home_url, "https://example.invalid/cairn");
        // The crate unquotes only the fields it knows; the rest keep their quotes.
        let extra = |key: &str| parsed.extra[key].trim_matches('"').to_owned();
        assert_eq!(extra("BUILD_ID"), "abcdef012345");
        assert_eq!(extra("IMAGE_ID"), "cairn-node");
        assert_eq!(extra("IMAGE_VERSION"), "0.1.0-gabcdef012345");
    }

    #[test]
    fn special_characters_are_escaped() {
        let text = render(&config(), &build());
        assert!(
            text.contains(r#"PRETTY_NAME="cairn \"node\" \$HOME""#),
            "{text}"
        );
    }

    #[test]
    fn every_line_is_quoted_key_value() {
        for line in render(&config(), &build()).lines() {
            let (key, value) = line.split_once('=').unwrap();
            assert!(key.chars().all(|c| c.is_ascii_uppercase() || c == '_'));
            assert!(value.starts_with('"') && value.ends_with('"'));
        }
    }

    #[test]
    fn outside_git_uses_the_cargo_version() {
        let dir = tempfile::tempdir().unwrap();
        let info = BuildInfo::detect(dir.path(), Some(42), "release");
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(info.build_id, "unknown");
        assert_eq!(info.source_date_epoch, 42);
    }
}
