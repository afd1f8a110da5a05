//! `cairn-qemu cluster start` as a user runs it (docs/interfaces.md "Clusters
//! (launcher)"), with the built launcher and `dbg --node` (which finds each node by its
//! directory):
//! - three debug-image nodes (`--workers 2`) on their own segment: every `node-ready`
//!   turns true, the control plane lists three Ready Nodes, each named after its node's
//!   key at its recorded address, and both join tokens are spent; `cluster stop` stops
//!   them all; a second `cluster start` brings the same three back with no new token
//!   (the workers rejoin with the client certificates on their disks: a token asked for
//!   them would stay unused, and listed, for an hour);
//! - a production control plane and worker, given the test's owner CA: the launcher
//!   asks for the join token through the control plane's node API as the owner, and
//!   both Nodes turn Ready (read through the node API too).
//!
//! Several TCG guests on the host's two CPUs: slow, so not in `make test` (which skips
//! every test named `from_cluster_start`) but in `make test-cluster`, one test at a
//! time, which CI runs while its time budget allows.

#[allow(dead_code)]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Seconds each node may take to reach `node-ready` once the launcher returned.
const NODE_READY_SECONDS: &str = "600";
/// From every node Ready to the control plane deleting the tokens they joined with.
const TOKENS_SPENT: Duration = Duration::from_secs(120);

/// A cluster directory of the test's, stopped whatever the test's outcome.
struct Cluster {
    dir: PathBuf,
    /// The owner directory the launcher and `dbg` use (empty: no owner).
    owner_dir: PathBuf,
}

impl Cluster {
    /// Clears `name`'s cluster and owner directories under the target's scratch space.
    fn new(name: &str) -> Self {
        let scratch = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("boot");
        let cluster = Cluster {
            dir: scratch.join(name),
            owner_dir: scratch.join(format!("{name}-owner")),
        };
        for dir in [&cluster.dir, &cluster.owner_dir] {
            match std::fs::remove_dir_all(dir) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => panic!("cannot clear {}: {err}", dir.display()),
            }
        }
        cluster
    }

    /// The launcher binary with `args`, then `--dir` and the cluster directory.
    fn launcher(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_cairn-qemu"))
            .args(args)
            .arg("--dir")
            .arg(&self.dir)
            .env("CAIRN_OWNER_DIR", &self.owner_dir)
            .output()
            .expect("the launcher runs")
    }

    fn dbg(&self, args: &[&str]) -> Output {
        Command::new(common::dbg::binary())
            .env("CAIRN_CLUSTER_DIR", &self.dir)
            .env("CAIRN_OWNER_DIR", &self.owner_dir)
            .env_remove("CAIRN_STATE_DIR")
            .env_remove("CAIRN_DEBUG_ENDPOINT")
            .env_remove("CAIRN_NODE_API_ENDPOINT")
            .args(args)
            .output()
            .expect("dbg runs")
    }

    /// `cluster start --workers N` of `image_dir`; its stdout.
    fn start(&self, image_dir: &Path, workers: &str) -> String {
        let image = image_dir.display().to_string();
        let started = self.launcher(&[
            "cluster",
            "start",
            "--workers",
            workers,
            "--image-dir",
            &image,
        ]);
        assert!(
            started.status.success(),
            "cluster start: {}",
            text(&started)
        );
        String::from_utf8_lossy(&started.stdout).into_owned()
    }

    /// The nodes `cluster.json` records.
    fn nodes(&self) -> Vec<serde_json::Value> {
        let path = self.dir.join("cluster.json");
        let record: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        record["nodes"].as_array().cloned().unwrap_or_default()
    }

    fn names(&self) -> Vec<String> {
        (self.nodes().iter())
            .filter_map(|n| n["name"].as_str().map(str::to_owned))
            .collect()
    }

    /// Waits for every recorded node's `node-ready`.
    fn wait_ready(&self) {
        for name in self.names() {
            let ready = self.dbg(&[
                "--node",
                &name,
                "conditions",
                "--wait",
                "node-ready",
                "--timeout",
                NODE_READY_SECONDS,
            ]);
            if !ready.status.success() {
                let conditions = self.dbg(&["--node", &name, "conditions"]);
                panic!(
                    "{name} is not ready: {}\n{}",
                    text(&ready),
                    text(&conditions)
                );
            }
        }
    }

    /// `dbg --node control-plane kubectl ARGS`, which must succeed; its stdout.
    fn kubectl(&self, args: &[&str]) -> String {
        let output = self.dbg(&[&["--node", "control-plane", "kubectl"][..], args].concat());
        assert!(
            output.status.success(),
            "kubectl {args:?}: {}",
            text(&output)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Asserts that the control plane lists exactly the recorded nodes, each Ready at
    /// its cluster address under the name its key gives.
    fn assert_nodes_listed_ready(&self) {
        let listed = self.kubectl(&[
            "get",
            "nodes",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} \
             {.status.addresses[?(@.type==\"InternalIP\")].address} \
             {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
        ]);
        let mut seen: Vec<String> = listed.lines().map(str::to_owned).collect();
        seen.sort();
        let mut expected: Vec<String> = (self.nodes().iter())
            .map(|n| {
                let id = n["node_id"].as_str().unwrap_or("(no node id recorded)");
                let address = n["address"].as_str().unwrap_or_default();
                let ip = address.split('/').next().unwrap_or_default();
                format!("cairn-{id} {ip} True")
            })
            .collect();
        expected.sort();
        assert_eq!(seen, expected, "the control plane's Nodes");
    }

    /// The bootstrap-token Secrets in the cluster (`secret/bootstrap-token-<id>`).
    fn token_secrets(&self) -> Vec<String> {
        self.kubectl(&[
            "get",
            "secrets",
            "-n",
            "kube-system",
            "--field-selector",
            "type=bootstrap.kubernetes.io/token",
            "-o",
            "name",
        ])
        .lines()
        .map(str::to_owned)
        .collect()
    }

    /// `cluster stop`, then no node's QEMU and no node's watcher (which would start its
    /// QEMU again after a guest reboot) runs.
    fn stop(&self) {
        let watchers: Vec<(String, Option<u32>)> = (self.names().into_iter())
            .map(|name| {
                let state = cairn_qemu::StateDir::new(&self.dir.join(&name));
                (name, cairn_qemu::watch::running(&state))
            })
            .collect();
        let stopped = self.launcher(&["cluster", "stop"]);
        assert!(stopped.status.success(), "cluster stop: {}", text(&stopped));
        for (name, watcher) in watchers {
            let dir = self.dir.join(&name);
            let state = cairn_qemu::StateDir::new(&dir);
            assert_eq!(
                state.running_pid().ok().flatten(),
                None,
                "{name} still runs"
            );
            let Some(watcher) = watcher else {
                panic!("{name} ran without a watcher (see watch.log in its state dir)");
            };
            assert!(
                !cairn_qemu::watch::is_watcher(std::path::Path::new("/proc"), watcher, &dir),
                "{name}'s watcher (pid {watcher}) still runs"
            );
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.launcher(&["cluster", "stop"]);
    }
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
#[ignore = "boots three QEMU guests twice; run with `make test-cluster`"]
fn three_nodes_from_cluster_start_are_ready_stop_together_and_rejoin_without_tokens() {
    let cluster = Cluster::new("cluster-three");
    let image_dir = common::image_dir();
    cluster.start(&image_dir, "2");
    assert_eq!(
        cluster.names(),
        ["control-plane", "worker-1", "worker-2"],
        "{:#?}",
        cluster.nodes()
    );
    cluster.wait_ready();
    cluster.assert_nodes_listed_ready();
    // Each worker's token is deleted once its Node registered.
    let deadline = Instant::now() + TOKENS_SPENT;
    loop {
        let left = cluster.token_secrets();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tokens not spent {TOKENS_SPENT:?} after every node was Ready: {left:?}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    cluster.stop();

    // The same cluster again: the workers rejoin offline, and no token is made.
    let again = cluster.start(&image_dir, "2");
    cluster.wait_ready();
    cluster.assert_nodes_listed_ready();
    assert_eq!(
        cluster.token_secrets(),
        Vec::<String>::new(),
        "join tokens made for workers that rejoin; the launcher said:\n{again}"
    );
    cluster.stop();
}

#[test]
#[ignore = "boots two production QEMU guests; run with `make test-cluster`"]
fn production_nodes_from_cluster_start_join_through_the_owner_api() {
    let cluster = Cluster::new("cluster-production");
    let init = Command::new(common::dbg::binary())
        .args(["owner", "init"])
        .env("CAIRN_OWNER_DIR", &cluster.owner_dir)
        .output()
        .expect("dbg runs");
    assert!(init.status.success(), "dbg owner init: {}", text(&init));
    let image_dir = std::env::var_os("CAIRN_PRODUCTION_IMAGE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../build/production"));
    cluster.start(&image_dir, "1");
    for name in cluster.names() {
        let record = cairn_qemu::StateDir::new(&cluster.dir.join(&name)).record_file();
        assert_eq!(
            cairn_dbg::endpoint::apis_from_record(&record),
            Some(vec![cairn_api::names::api::NODE.to_owned()]),
            "{name} serves only the owner's node API"
        );
    }
    cluster.wait_ready();
    cluster.assert_nodes_listed_ready();
    cluster.stop();
}
