//! Which node `dbg` talks to.
//!
//! An explicit endpoint wins (flag or `CAIRN_DEBUG_ENDPOINT`, merged by clap). Without
//! one, `dbg` looks for the node that `make run`/`make start` records: `node.json` in
//! `CAIRN_STATE_DIR` (the launcher's own variable) if set, else `build/node/
//! node.json` in the current directory or an ancestor (the launcher's state directory,
//! qemu-tests `state.rs`), and uses its `debug_endpoint`, or else the host port it
//! forwards to guest port 7837. Failing that, `http://127.0.0.1:7837`.

use std::fs;
use std::path::{Path, PathBuf};

use cairn_api::DEBUG_PORT;

use crate::commands::kubeconfig::APISERVER_PORT;
use serde::Deserialize;

/// Where `make run` keeps the node's state, relative to the workspace.
pub const NODE_RECORD: &str = "build/node/node.json";
/// The launcher's state directory variable (`cairn-qemu run --state-dir`).
pub const STATE_DIR_ENV: &str = "CAIRN_STATE_DIR";
const RECORD_FILE: &str = "node.json";
/// The last resort.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:7837";

/// The part of the launcher's `node.json` that `dbg` needs.
#[derive(Debug, Deserialize)]
struct NodeRecord {
    #[serde(default)]
    debug_endpoint: Option<String>,
    #[serde(default)]
    api_endpoint: Option<String>,
    #[serde(default)]
    node_api_endpoint: Option<String>,
    #[serde(default)]
    forwards: Vec<Forward>,
    /// `CAIRN_READY`'s `apis`; absent in records of older launchers and agents.
    #[serde(default)]
    apis: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct Forward {
    host: u16,
    guest: u16,
}

/// The endpoint to use: `explicit`, else the recorded node's, else the default.
pub fn resolve(explicit: Option<&str>) -> String {
    if let Some(endpoint) = explicit.filter(|e| !e.is_empty()) {
        return endpoint.to_owned();
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    find_record(&cwd)
        .and_then(|path| from_record(&path))
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned())
}

/// `$CAIRN_STATE_DIR/node.json` if the variable is set, else `build/node/node.json`
/// in `start` or its nearest ancestor that has one.
pub fn find_record(start: &Path) -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(STATE_DIR_ENV).filter(|d| !d.is_empty()) {
        return Some(Path::new(&dir).join(RECORD_FILE));
    }
    start
        .ancestors()
        .map(|dir| dir.join(NODE_RECORD))
        .find(|path| path.is_file())
}

/// Where `cairn-qemu cluster start` puts a cluster, below the workspace root.
pub const CLUSTER_DIR: &str = "build/cluster";
/// Overrides [`CLUSTER_DIR`] (the launcher reads it too).
pub const CLUSTER_DIR_ENV: &str = "CAIRN_CLUSTER_DIR";

/// The state directory of the cluster node `name`: a directory of the cluster
/// (`$CAIRN_CLUSTER_DIR`, else `build/cluster` in `start` or above) holding a node
/// record, or the one whose node is `name` (`cairn-<node id>` or the id).
pub fn cluster_node_dir(start: &Path, name: &str) -> Result<PathBuf, crate::DbgError> {
    let cluster = match std::env::var_os(CLUSTER_DIR_ENV).filter(|d| !d.is_empty()) {
        Some(dir) => Some(PathBuf::from(dir)),
        None => (start.ancestors())
            .map(|dir| dir.join(CLUSTER_DIR))
            .find(|dir| dir.is_dir()),
    };
    let missing = |dir: Option<PathBuf>| crate::DbgError::NoClusterNode {
        name: name.to_owned(),
        dir,
    };
    let Some(cluster) = cluster else {
        return Err(missing(None));
    };
    let direct = cluster.join(name);
    if !name.contains('/') && direct.join(RECORD_FILE).is_file() {
        return Ok(direct);
    }
    let entries = std::fs::read_dir(&cluster).map_err(|_| missing(Some(cluster.clone())))?;
    for entry in entries.flatten() {
        let record = entry.path().join(RECORD_FILE);
        let node_id = (std::fs::read_to_string(&record).ok())
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|v| v["node_id"].as_str().map(str::to_owned));
        if node_id.is_some_and(|id| name == id || name == format!("cairn-{id}")) {
            return Ok(entry.path());
        }
    }
    Err(missing(Some(cluster)))
}

/// The endpoint a node record forwards to the debug port, if any.
pub fn from_record(path: &Path) -> Option<String> {
    recorded(path, |r| r.debug_endpoint, "http", DEBUG_PORT)
}

/// The node API endpoint a node record gives: `node_api_endpoint`, else the forward
/// of guest port 7838.
pub fn node_api_from_record(path: &Path) -> Option<String> {
    recorded(
        path,
        |r| r.node_api_endpoint,
        "https",
        cairn_api::names::port::NODE_API,
    )
}

/// The management APIs the recorded node said it serves (`None`: not recorded).
pub fn apis_from_record(path: &Path) -> Option<Vec<String>> {
    let record: NodeRecord = serde_json::from_slice(&fs::read(path).ok()?).ok()?;
    record.apis
}

/// The apiserver endpoint a node record gives: `api_endpoint`, else the forward of
/// guest port 6443.
pub fn api_from_record(path: &Path) -> Option<String> {
    recorded(path, |r| r.api_endpoint, "https", APISERVER_PORT)
}

/// The endpoint `field` records, else `scheme://127.0.0.1:<host port>` of the forward
/// to `guest` (records of older launchers have only the forwards).
fn recorded(
    path: &Path,
    field: fn(NodeRecord) -> Option<String>,
    scheme: &str,
    guest: u16,
) -> Option<String> {
    let record: NodeRecord = serde_json::from_slice(&fs::read(path).ok()?).ok()?;
    let host = record
        .forwards
        .iter()
        .find(|f| f.guest == guest)
        .map(|f| f.host);
    field(record)
        .filter(|e| !e.is_empty())
        .or_else(|| host.map(|port| format!("{scheme}://127.0.0.1:{port}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_nodes_are_found_by_directory_or_node_name() {
        let root = tempfile::tempdir().unwrap();
        let cluster = root.path().join(CLUSTER_DIR);
        for (dir, id) in [("control-plane", "aa"), ("worker-1", "bb")] {
            std::fs::create_dir_all(cluster.join(dir)).unwrap();
            let record = format!("{{\"node_id\": \"{id}\", \"forwards\": []}}");
            std::fs::write(cluster.join(dir).join(RECORD_FILE), record).unwrap();
        }
        let below = root.path().join("agent/src");
        std::fs::create_dir_all(&below).unwrap();
        let found = |name: &str| cluster_node_dir(&below, name).map_err(|e| e.to_string());
        assert_eq!(found("worker-1"), Ok(cluster.join("worker-1")));
        assert_eq!(found("cairn-aa"), Ok(cluster.join("control-plane")));
        assert_eq!(found("bb"), Ok(cluster.join("worker-1")));
        let err = found("worker-2").unwrap_err();
        assert!(
            err.starts_with("no node \"worker-2\" in the cluster "),
            "{err}"
        );
        let nowhere = tempfile::tempdir().unwrap();
        let err = cluster_node_dir(nowhere.path(), "worker-1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`make cluster` makes one"), "{err}");
    }

    #[test]
    fn explicit_endpoints_win() {
        assert_eq!(resolve(Some("http://h:1")), "http://h:1");
    }

    #[test]
    fn the_recorded_node_is_found_from_a_subdirectory() {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join(NODE_RECORD);
        fs::create_dir_all(record.parent().unwrap()).unwrap();
        fs::write(
            &record,
            r#"{"pid":1,"accel":"tcg","forwards":[{"host":40001,"guest":6443},
                {"host":40002,"guest":7837}],"console_log":"c","qmp_socket":"q","node_id":null}"#,
        )
        .unwrap();
        let sub = dir.path().join("agent/src");
        fs::create_dir_all(&sub).unwrap();
        let found = find_record(&sub).unwrap();
        assert_eq!(found, record);
        assert_eq!(
            from_record(&found).as_deref(),
            Some("http://127.0.0.1:40002")
        );
    }

    #[test]
    fn records_without_a_debug_forward_give_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.json");
        fs::write(&path, r#"{"forwards":[]}"#).unwrap();
        assert_eq!(from_record(&path), None);
        fs::write(
            &path,
            r#"{"forwards":[],"debug_endpoint":"http://127.0.0.1:9"}"#,
        )
        .unwrap();
        assert_eq!(from_record(&path).as_deref(), Some("http://127.0.0.1:9"));
        fs::write(&path, "garbage").unwrap();
        assert_eq!(from_record(&path), None);
    }
}
