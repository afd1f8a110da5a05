//! Building `cargo` components: binaries of this workspace.
//!
//! The builder asks Cargo itself (`--message-format=json`) where the executable
//! landed instead of guessing the target directory, so `CARGO_TARGET_DIR` and
//! profiles work as they do for a person running cargo by hand.

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

/// Builds `source` in release mode from the workspace at `workspace` and returns the
/// path of the executable.
pub fn build(workspace: &Path, source: &CargoSource) -> Result<PathBuf, CargoError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace)
        .args([
            "build",
            "--release",
            "--locked",
            "--message-format=json-render-diagnostics",
        ])
        .args(["--package", &source.package, "--bin", &source.bin])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if source.static_link {
        // glibc's static libc (`+crt-static`); there is no musl target on the build
        // hosts. A separate target directory subtree keeps the dynamic builds cached.
        command
            .args(["--target", STATIC_TARGET])
            .env_remove("RUSTFLAGS")
            .env("CARGO_ENCODED_RUSTFLAGS", "-Ctarget-feature=+crt-static");
    }
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
