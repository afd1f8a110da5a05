//! `cairn-qemu cluster start --workers 2` as a user runs it (docs/interfaces.md
//! "Clusters (launcher)"): the built launcher boots a control-plane node and two
//! workers on their own segment; every node's `node-ready` turns true (read with `dbg
//! --node`, which finds each node by its directory); the control plane lists three
//! Ready Nodes, each named after its node's key at its recorded address; `cluster stop`
//! stops them all. Three TCG guests on the host's two CPUs: slow, so not in `make
//! test` but in `make test-cluster`, which CI runs while its time budget allows.

#[allow(dead_code)]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Seconds each node may take to reach `node-ready` once the launcher returned.
const NODE_READY_SECONDS: &str = "600";

/// Stops the cluster whatever the test's outcome.
struct Cluster {
    dir: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = launcher(&self.dir, &["cluster", "stop", "--dir"]);
    }
}

/// The launcher binary with `args`, then the cluster directory.
fn launcher(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn-qemu"))
        .args(args)
        .arg(dir)
        .output()
        .expect("the launcher runs")
}

fn dbg(dir: &Path, args: &[&str]) -> Output {
    Command::new(common::dbg::binary())
        .env("CAIRN_CLUSTER_DIR", dir)
        .env_remove("CAIRN_STATE_DIR")
        .env_remove("CAIRN_DEBUG_ENDPOINT")
        .args(args)
        .output()
        .expect("dbg runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
#[ignore = "boots three QEMU guests; run with `make test-cluster`"]
fn three_nodes_from_cluster_start_are_ready_and_stop_together() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("boot/cluster-three");
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => panic!("cannot clear {}: {err}", dir.display()),
    }
    let cluster = Cluster { dir: dir.clone() };
    let image_dir = common::image_dir();
    let started = Command::new(env!("CARGO_BIN_EXE_cairn-qemu"))
        .args(["cluster", "start", "--workers", "2", "--image-dir"])
        .arg(&image_dir)
        .arg("--dir")
        .arg(&dir)
        .output()
        .expect("the launcher runs");
    assert!(
        started.status.success(),
        "cluster start: {}",
        text(&started)
    );

    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cluster.json")).unwrap()).unwrap();
    let nodes = record["nodes"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = nodes.iter().filter_map(|n| n["name"].as_str()).collect();
    assert_eq!(
        names,
        ["control-plane", "worker-1", "worker-2"],
        "{record:#}"
    );
    for node in &nodes {
        let name = node["name"].as_str().unwrap_or_default();
        let ready = dbg(
            &dir,
            &[
                "--node",
                name,
                "conditions",
                "--wait",
                "node-ready",
                "--timeout",
                NODE_READY_SECONDS,
            ],
        );
        if !ready.status.success() {
            let conditions = dbg(&dir, &["--node", name, "conditions"]);
            panic!(
                "{name} is not ready: {}\n{}",
                text(&ready),
                text(&conditions)
            );
        }
    }
    let listed = dbg(
        &dir,
        &[
            "--node",
            "control-plane",
            "kubectl",
            "get",
            "nodes",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} \
             {.status.addresses[?(@.type==\"InternalIP\")].address} \
             {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
        ],
    );
    assert!(
        listed.status.success(),
        "kubectl get nodes: {}",
        text(&listed)
    );
    let mut seen: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    seen.sort();
    let mut expected: Vec<String> = nodes
        .iter()
        .map(|n| {
            let id = n["node_id"].as_str().unwrap_or("(no node id recorded)");
            let address = n["address"].as_str().unwrap_or_default();
            let ip = address.split('/').next().unwrap_or_default();
            format!("cairn-{id} {ip} True")
        })
        .collect();
    expected.sort();
    assert_eq!(seen, expected, "the control plane's Nodes");

    let stopped = launcher(&dir, &["cluster", "stop", "--dir"]);
    assert!(stopped.status.success(), "cluster stop: {}", text(&stopped));
    for name in names {
        let state = cairn_qemu::StateDir::new(&dir.join(name));
        assert_eq!(
            state.running_pid().ok().flatten(),
            None,
            "{name} still runs"
        );
    }
    drop(cluster);
}
