//! Building `cargo` components: binaries of this workspace.
//!
//! The builder asks Cargo itself (`--message-format=json`) where the executable
//! landed instead of guessing the target directory, so `CARGO_TARGET_DIR` and
//! profiles work as they do for a person running cargo by hand.
//!
//! Paths end up in a release binary even with symbols stripped: panic locations name
//! the source file, absolute for crates from the registry (`$CARGO_HOME/registry/src/…`)
//! and for code generated into the target directory (`OUT_DIR`). The builder remaps
//! those prefixes to fixed names, so two checkouts at different paths with different
//! Cargo homes and target directories build the same bytes (`make test-repro` proves
//! it). The workspace's own path is not remapped: Cargo names workspace members'
//! sources relative to the workspace root, so it never reaches the binary, and a flag
//! naming it would make the flags differ per checkout. Cargo keeps one copy of each
//! dependency per target directory whatever the flags (they are not in its artifact
//! names), so checkouts sharing the cache directory would rebuild every dependency
//! over each other's at each image build.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

use crate::config::CargoSource;

#[derive(Debug, thiserror::Error)]
pub enum CargoError {
    #[error("cannot run cargo to build `{package}`")]
    Spawn {
        package: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cargo failed to build binary `{bin}` of package `{package}` (see its output above)")]
    Failed { package: String, bin: String },
    #[error("cargo built `{package}` but reported no executable named `{bin}`")]
    NoExecutable { package: String, bin: String },
}

#[derive(Deserialize)]
struct Message {
    reason: String,
    target: Option<Target>,
    executable: Option<PathBuf>,
}

#[derive(Deserialize)]
struct Target {
    name: String,
}

/// The target named explicitly for static builds: with `--target`, Cargo applies
/// `RUSTFLAGS` only to the target's artifacts, not to build scripts and proc macros
/// (which must stay dynamic host programs). The image is x86_64 throughout.
pub const STATIC_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Cargo's profile for images that are benchmarked, tested in CI and shipped.
pub const RELEASE_PROFILE: &str = "release";

/// Builds `source` with Cargo profile `profile` (`release`, or `dev-image` from the
/// workspace's Cargo.toml for quick rebuilds while developing) from the workspace at
/// `workspace` and returns the path of the executable.
pub fn build(workspace: &Path, source: &CargoSource, profile: &str) -> Result<PathBuf, CargoError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace)
        .args([
            "build",
            "--profile",
            profile,
            "--locked",
            "--message-format=json-render-diagnostics",
        ])
        .args(["--package", &source.package, "--bin", &source.bin])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut rustflags = remap_flags(workspace);
    if source.static_link {
        // glibc's static libc (`+crt-static`); there is no musl target on the build
        // hosts. A separate target directory subtree keeps the dynamic builds cached.
        command.args(["--target", STATIC_TARGET]);
        rustflags.push("-Ctarget-feature=+crt-static".to_owned());
    }
    // With `--target` Cargo applies these to the target's artifacts only; without it
    // also to build scripts, which is harmless: a remap changes no code.
    command
        .env_remove("RUSTFLAGS")
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags.join("\x1f"));
    if !source.features.is_empty() {
        command.args(["--features", &source.features.join(",")]);
    }
    let spawn_error = |source_err| CargoError::Spawn {
        package: source.package.clone(),
        source: source_err,
    };
    let mut child = command.spawn().map_err(spawn_error)?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let executable = find_executable(std::io::BufReader::new(stdout), &source.bin);
    let status = child.wait().map_err(spawn_error)?;
    if !status.success() {
        return Err(CargoError::Failed {
            package: source.package.clone(),
            bin: source.bin.clone(),
        });
    }
    executable.ok_or_else(|| CargoError::NoExecutable {
        package: source.package.clone(),
        bin: source.bin.clone(),
    })
}

/// `--remap-path-prefix` for every machine-specific directory a build reads sources
/// from by absolute path: the Cargo home's registry and git checkouts and the target
/// directory (generated code). The same for every checkout sharing those caches.
fn remap_flags(workspace: &Path) -> Vec<String> {
    let var = |name| std::env::var_os(name).map(PathBuf::from);
    let cargo_home = var("CARGO_HOME").or_else(|| var("HOME").map(|h| h.join(".cargo")));
    remap_flags_for(workspace, cargo_home, var("CARGO_TARGET_DIR"))
}

fn remap_flags_for(
    workspace: &Path,
    cargo_home: Option<PathBuf>,
    target: Option<PathBuf>,
) -> Vec<String> {
    // Relative ones are relative to where cargo runs: the workspace.
    let target = workspace.join(target.unwrap_or_else(|| "target".into()));
    let mut pairs = Vec::new();
    if let Some(cargo_home) = cargo_home {
        pairs.push((cargo_home.join("registry/src"), "/cargo/registry/src"));
        pairs.push((cargo_home.join("git/checkouts"), "/cargo/git/checkouts"));
    }
    pairs.push((target, "/target"));
    pairs
        .into_iter()
        .map(|(from, to)| format!("--remap-path-prefix={}={to}", from.display()))
        .collect()
}

/// The last `compiler-artifact` executable for target `bin` in cargo's JSON stream.
fn find_executable(stream: impl BufRead, bin: &str) -> Option<PathBuf> {
    let mut found = None;
    for line in stream.lines().map_while(Result::ok) {
        let Ok(message) = serde_json::from_str::<Message>(&line) else {
            continue;
        };
        let is_bin = message.target.as_ref().is_some_and(|t| t.name == bin);
        if message.reason == "compiler-artifact" && is_bin && message.executable.is_some() {
            found = message.executable;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaps_every_machine_specific_source_prefix() {
        let flags = remap_flags_for(
            Path::new("/home/me/src/cairn"),
            Some("/home/me/.cargo".into()),
            Some("build/target".into()),
        );
        assert_eq!(
            flags,
            [
                "--remap-path-prefix=/home/me/.cargo/registry/src=/cargo/registry/src",
                "--remap-path-prefix=/home/me/.cargo/git/checkouts=/cargo/git/checkouts",
                "--remap-path-prefix=/home/me/src/cairn/build/target=/target",
            ]
        );
        // A shared target directory: the same flags from any checkout.
        let shared = |workspace| remap_flags_for(Path::new(workspace), None, Some("/t".into()));
        assert_eq!(shared("/w"), ["--remap-path-prefix=/t=/target"]);
        assert_eq!(shared("/w"), shared("/elsewhere/w"));
    }

    #[test]
    fn finds_the_named_executable() {
        let stream = concat!(
            "{\"reason\":\"compiler-artifact\",\"target\":{\"name\":\"libc\"},\"executable\":null}\n",
            "not json\n",
            "{\"reason\":\"compiler-artifact\",\"target\":{\"name\":\"cairn-agent\"},",
            "\"executable\":\"/t/release/cairn-agent\"}\n",
            "{\"reason\":\"build-finished\",\"success\":true}\n",
        );
        let found = find_executable(stream.as_bytes(), "cairn-agent");
        assert_eq!(found, Some(PathBuf::from("/t/release/cairn-agent")));
        assert_eq!(find_executable(stream.as_bytes(), "other"), None);
    }
}
