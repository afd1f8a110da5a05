//! Boot step: the `CAIRN_READY` line (docs/interfaces.md), printed once when boot is done.
//!
//! Every value is read back from where the rest of the system reads it — the
//! machine-id file, the kernel's hostname, `/proc/modules`, the interfaces' addresses
//! (getifaddrs(3)) and `/proc/net/route` — so the line proves the steps took effect
//! rather than repeating what the agent meant to do.

use std::io;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use nix::errno::Errno;
use serde::Serialize;

use crate::identity::Identity;
use crate::modules::loaded_module_names;
use crate::os_release;
use crate::syscall::Syscall;
use crate::Paths;

#[derive(Debug, thiserror::Error)]
pub enum ReadyError {
    #[error("failed to read {}", .0.display())]
    Read(PathBuf, #[source] io::Error),
    #[error("failed to read the hostname")]
    Hostname(#[source] Errno),
    #[error("failed to list the interfaces' addresses")]
    Addresses(#[source] Errno),
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
    /// `<interface> <address>/<prefix>`, every address the kernel has, IPv4 and IPv6.
    pub addresses: Vec<String>,
    /// IPv4 routes of the main table: `default via <gw> dev <if>`, `<net>/<len> dev <if>`.
    pub routes: Vec<String>,
    /// The management APIs this boot serves ([`cairn_api::names::api`]): `debug` on a
    /// debug image, `node` when the node has an owner. Empty: nobody can operate it.
    pub apis: Vec<String>,
}

impl ReadyReport {
    /// Reads the report's values back from the system under `paths`.
    pub fn gather(
        sys: &dyn Syscall,
        paths: &Paths,
        identity: &Identity,
        apis: &[&str],
    ) -> Result<Self, ReadyError> {
        let os_release = read(paths.os_release())?;
        let version = os_release::parse(&os_release).version;
        if version.is_empty() {
            tracing::warn!("os-release has no VERSION");
        }
        let machine_id = read(paths.machine_id())?.trim_end().to_owned();
        Ok(Self {
            node_id: identity.node_id().to_owned(),
            public_key: identity.public_key_hex(),
            version,
            machine_id,
            hostname: sys.gethostname().map_err(ReadyError::Hostname)?,
            modules: loaded_module_names(&read_proc_modules(paths)?),
            os_release,
            addresses: sys.interface_addresses().map_err(ReadyError::Addresses)?,
            routes: ipv4_routes(&read(paths.proc_net_route())?),
            apis: apis.iter().map(|api| (*api).to_owned()).collect(),
        })
    }

    /// `CAIRN_READY {json}\n`; serde_json escapes newlines, so it is one line.
    pub fn line(&self) -> String {
        let json = serde_json::to_string(self).expect("ready report serializes");
        format!("CAIRN_READY {json}\n")
    }
}

/// The routes of `/proc/net/route` (proc(5)): a header line, then per route the
/// interface, destination, gateway, flags, ..., mask. The kernel prints each address's
/// network-order bytes as one host-order hex word. Lines that do not parse are skipped.
pub fn ipv4_routes(text: &str) -> Vec<String> {
    let word = |hex: &str| {
        let host_order = u32::from_str_radix(hex, 16).ok()?;
        Some(Ipv4Addr::from(host_order.to_ne_bytes()))
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (interface, destination, gateway, mask) = (
                fields.first()?,
                word(fields.get(1)?)?,
                word(fields.get(2)?)?,
                word(fields.get(7)?)?,
            );
            let via = match gateway.is_unspecified() {
                true => String::new(),
                false => format!(" via {gateway}"),
            };
            let prefix = u32::from(mask).count_ones();
            Some(match (destination.is_unspecified(), prefix) {
                (true, 0) => format!("default{via} dev {interface}"),
                _ => format!("{destination}/{prefix}{via} dev {interface}"),
            })
        })
        .collect()
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

#[cfg(test)]
#[path = "ready_tests.rs"]
mod tests;
