//! Step 6: the `CAIRN_READY` line (docs/interfaces.md), printed once when boot is done.
//!
//! Every value is read back from where the rest of the system reads it — the
//! machine-id file, the kernel's hostname, `/proc/modules` — so the line proves the
//! steps took effect rather than repeating what the agent meant to do.

use std::io;
use std::path::PathBuf;

use nix::errno::Errno;
use serde::Serialize;

use crate::identity::Identity;
use crate::modules::loaded_module_names;
use crate::syscall::Syscall;
use crate::Paths;

#[derive(Debug, thiserror::Error)]
pub enum ReadyError {
    #[error("failed to read {}", .0.display())]
    Read(PathBuf, #[source] io::Error),
    #[error("failed to read the hostname")]
    Hostname(#[source] Errno),
}

/// The `CAIRN_READY` payload; field order is the documented one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadyReport {
    pub node_id: String,
    pub public_key: String,
    /// `VERSION` from os-release(5).
    pub version: String,
    pub machine_id: String,
    pub hostname: String,
    pub modules: Vec<String>,
    pub os_release: String,
}

impl ReadyReport {
    /// Reads the report's values back from the system under `paths`.
    pub fn gather(
        sys: &dyn Syscall,
        paths: &Paths,
        identity: &Identity,
    ) -> Result<Self, ReadyError> {
        let os_release = read(paths.os_release())?;
        let version = os_release_value(&os_release, "VERSION").unwrap_or_else(|| {
            tracing::warn!("os-release has no VERSION");
            String::new()
        });
        let machine_id = read(paths.machine_id())?.trim_end().to_owned();
        Ok(Self {
            node_id: identity.node_id().to_owned(),
            public_key: identity.public_key_hex(),
            version,
            machine_id,
            hostname: sys.gethostname().map_err(ReadyError::Hostname)?,
            modules: loaded_module_names(&read_proc_modules(paths)?),
            os_release,
        })
    }

    /// `CAIRN_READY {json}\n`; serde_json escapes newlines, so it is one line.
    pub fn line(&self) -> String {
        let json = serde_json::to_string(self).expect("ready report serializes");
        format!("CAIRN_READY {json}\n")
    }
}

/// A kernel built without module support (CONFIG_MODULES=n) has no /proc/modules.
fn read_proc_modules(paths: &Paths) -> Result<String, ReadyError> {
    match read(paths.proc_modules()) {
        Err(ReadyError::Read(_, err)) if err.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        result => result,
    }
}

fn read(path: PathBuf) -> Result<String, ReadyError> {
    std::fs::read_to_string(&path).map_err(|e| ReadyError::Read(path, e))
}

/// The value of `key` in os-release(5) text: `KEY=value`, optionally in single or double
/// quotes, with backslash escapes inside double quotes; the last assignment wins.
pub fn os_release_value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix(key)?.strip_prefix('='))
        .next_back()
        .map(unquote)
}

fn unquote(value: &str) -> String {
    if let Some(inner) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        return inner.to_owned();
    }
    let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
        return value.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' {
            chars.next().unwrap_or('\\')
        } else {
            c
        });
    }
    out
}

#[cfg(test)]
#[path = "ready_tests.rs"]
mod tests;
