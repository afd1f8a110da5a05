//! Clusters: what `make cluster` costs and what a second machine gives.
//!
//! - For each worker count (1 and 2 by default): a new cluster directory, then
//!   `cairn-qemu cluster start --workers N` (what `make cluster` runs) timed on the host
//!   clock from its call until the control plane lists N+1 Nodes, all Ready. The
//!   launcher's own return (every agent printed `CAIRN_READY`, the workers booted one
//!   after the other with their join tokens) is reported beside it.
//! - On the first cluster, once Ready, each node's footprint from its debug service
//!   (`GetProcessStats`): right after Ready and after an idle soak, the RSS of the agent
//!   and each component, the node's memory in use, and CPU over the soak. Pods are not
//!   components: the measurement runs before any pod of the benchmark exists.
//! - Then pod-to-pod TCP from a client pod on the control-plane node to a server pod on
//!   the same node (its bridge) and to one on the worker (routed over the cluster
//!   segment by `pod-routes`, no overlay): `fixtures/net-probe.rs` (std only, compiled
//!   here statically, copied in with `kubectl cp`) times 64-byte round trips on one
//!   connection on the pod's clock, and bulk sends. The same between two host-network
//!   pods (a privileged namespace) gives the floor: the cluster segment alone, a QEMU
//!   socket netdev on a multicast group, with no bridge or route of ours on the path.
//!
//! Two or three TCG guests share the host's two CPUs, so every figure here includes
//! that contention (stated in the report). Writes `cluster.{md,json}`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cairn_api::Client;
use cairn_qemu::{Accel, StateDir};
use serde::{Deserialize, Serialize};
use tokio::process::Command;

use crate::error::Error;
use crate::first_pod::Admin;
use crate::footprint::{self, Footprint, Snapshot};
use crate::node::{self, Bench};
use crate::report::{self, Machine};
use crate::stats::Summary;

pub const NAME: &str = "cluster";
/// The launcher's directory names (qemu-tests/src/commands/cluster.rs).
const CONTROL_PLANE: &str = "control-plane";
const RECORD: &str = "cluster.json";
/// From the launcher's return to every Node Ready: kubelets, registration and the
/// CNI on each of up to three TCG guests sharing two CPUs.
const ALL_READY_TIMEOUT: Duration = Duration::from_secs(900);
const POLL: Duration = Duration::from_secs(1);
const NAMESPACE: &str = "bench-cluster";
const POD_TIMEOUT: &str = "--timeout=300s";
const PORT: &str = "5201";
const PROBE: &str = include_str!("../fixtures/net-probe.rs");
/// Round trips per path (the first [`WARM_UP`] are dropped: ARP, route and
/// conntrack entries are made on the first packets).
const ROUND_TRIPS: usize = 2000;
const WARM_UP: usize = 20;
/// Bulk sends per path, and MB (10^6 bytes) each.
const SENDS: usize = 3;
const SEND_MB: u64 = 64;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    pub machine: Machine,
    pub starts: Vec<ClusterStart>,
    /// The first cluster's nodes, the control plane first.
    pub footprints: Vec<NodeFootprint>,
    pub soak_seconds: u64,
    /// Same node first, then across the cluster segment.
    pub paths: Vec<PodPath>,
}

/// One `cluster start`, host seconds from its call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterStart {
    pub workers: usize,
    /// The launcher returned: every node's agent printed `CAIRN_READY`.
    pub launcher_s: f64,
    /// The control plane listed every node, each Ready.
    pub all_ready_s: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeFootprint {
    /// The node's directory in the cluster (`control-plane`, `worker-1`).
    pub node: String,
    pub after_ready: Snapshot,
    pub after_soak: Snapshot,
    pub components: Vec<Footprint>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodPath {
    pub what: String,
    /// Round trips of one 64-byte message, microseconds (nearest rank).
    pub rtt_us: Option<Summary>,
    /// Each bulk send, MB/s (10^6 bytes).
    pub throughput_mb_s: Vec<f64>,
    pub throughput: Option<Summary>,
}

pub fn run(bench: &Bench, workers: &[usize], soak: Duration) -> Result<PathBuf, Error> {
    let accel = bench.single_accel()?;
    let launcher = sibling("cairn-qemu")?;
    let probe = {
        let dir = bench.work.join("net-probe");
        std::fs::create_dir_all(&dir).map_err(Error::write(&dir))?;
        crate::floor::compile_static(&dir, "net-probe", PROBE)?
    };
    node::runtime()?.block_on(async {
        let mut starts = Vec::new();
        let mut footprints = Vec::new();
        let mut paths = Vec::new();
        for (index, &count) in workers.iter().enumerate() {
            let cluster = Cluster::start(bench, &launcher, accel, count).await?;
            let mut control = cluster.connect(CONTROL_PLANE).await?;
            let admin = Admin::connect(
                CONTROL_PLANE,
                &mut control,
                &cluster.api_endpoint(CONTROL_PLANE)?,
            )
            .await?;
            let all_ready_s = all_ready(&admin, count + 1, cluster.started).await?;
            eprintln!(
                "cairn-bench: cluster: 1+{count}: launcher returned after {:.1}s, all Nodes \
                 Ready after {all_ready_s:.1}s",
                cluster.launcher_s
            );
            starts.push(ClusterStart {
                workers: count,
                launcher_s: cluster.launcher_s,
                all_ready_s,
            });
            if index == 0 {
                footprints = soaked_footprints(&cluster, control, soak).await?;
                paths = pod_paths(&cluster, &admin, &probe).await?;
            }
        }
        let results = Results {
            machine: Machine::describe(&accel.to_string()),
            starts,
            footprints,
            soak_seconds: soak.as_secs(),
            paths,
        };
        report::write(&bench.results, NAME, &markdown(&results), &results)
    })
}

/// A program built beside this one (`cargo build --release -p cairn-qemu`).
fn sibling(name: &str) -> Result<PathBuf, Error> {
    let exe = std::env::current_exe().map_err(Error::read("the running executable"))?;
    let path = exe.with_file_name(name);
    if path.is_file() {
        return Ok(path);
    }
    Err(Error::Unmeasurable(format!(
        "{} is missing: build it first (cargo build --release --locked -p cairn-qemu; \
         `make bench` does)",
        path.display()
    )))
}

/// A started cluster, stopped when dropped.
struct Cluster {
    dir: PathBuf,
    launcher: PathBuf,
    started: Instant,
    launcher_s: f64,
}

impl Cluster {
    /// A new cluster of one control plane and `workers` workers under
    /// `target/bench/cluster-<workers>` (cleared first: new nodes, new disks).
    async fn start(
        bench: &Bench,
        launcher: &Path,
        accel: Accel,
        workers: usize,
    ) -> Result<Self, Error> {
        let dir = std::path::absolute(node::state_dir(&format!("{NAME}-{workers}")))
            .map_err(Error::write("target/bench"))?;
        match std::fs::remove_dir_all(&dir) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::Write(dir, err))
            }
            _ => {}
        }
        let started = Instant::now();
        let mut cluster = Cluster {
            dir: dir.clone(),
            launcher: launcher.to_owned(),
            started,
            launcher_s: 0.0,
        };
        let output = Command::new(launcher)
            .args(["cluster", "start", "--workers", &workers.to_string()])
            .arg("--dir")
            .arg(&dir)
            .arg("--image-dir")
            .arg(&bench.image_dir)
            .args(["--accel", &accel.to_string()])
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|source| Error::Spawn {
                program: launcher.display().to_string(),
                source,
            })?;
        if !output.status.success() {
            return Err(Error::Failed {
                what: format!("cairn-qemu cluster start --workers {workers}"),
                status: output.status,
                tail: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        cluster.launcher_s = started.elapsed().as_secs_f64();
        Ok(cluster)
    }

    fn record(&self, node: &str) -> PathBuf {
        StateDir::new(&self.dir.join(node)).record_file()
    }

    async fn connect(&self, node: &str) -> Result<Client, Error> {
        let endpoint = cairn_dbg::endpoint::from_record(&self.record(node)).ok_or_else(|| {
            Error::Unmeasurable(format!("node `{node}` recorded no debug service"))
        })?;
        cairn_api::connect_within(&endpoint, node::CONNECT_TIMEOUT)
            .await
            .map_err(|e| Error::Connect(node.to_owned(), Box::new(e)))
    }

    fn api_endpoint(&self, node: &str) -> Result<String, Error> {
        cairn_dbg::endpoint::api_from_record(&self.record(node)).ok_or_else(|| {
            Error::Unmeasurable(format!("node `{node}` recorded no apiserver forward"))
        })
    }

    /// The Kubernetes name of the node in directory `node` (`cairn-<node id>`).
    fn node_name(&self, node: &str) -> Result<String, Error> {
        let path = self.dir.join(RECORD);
        let text = std::fs::read_to_string(&path).map_err(Error::read(&path))?;
        let record: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::Json(path.clone(), e))?;
        record["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|entry| entry["name"] == node)
            .and_then(|entry| entry["node_id"].as_str())
            .map(|id| format!("cairn-{id}"))
            .ok_or_else(|| {
                Error::Unmeasurable(format!("{} has no node id for `{node}`", path.display()))
            })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new(&self.launcher)
            .args(["cluster", "stop", "--dir"])
            .arg(&self.dir)
            .output();
    }
}

/// Host seconds since `started` when the control plane lists `nodes` Nodes, each
/// with condition Ready True.
async fn all_ready(admin: &Admin, nodes: usize, started: Instant) -> Result<f64, Error> {
    let deadline = Instant::now() + ALL_READY_TIMEOUT;
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        match admin.run(&["get", "nodes", "-o", "json"]).await {
            Ok(text) => {
                let ready = ready_nodes(&text);
                if ready == nodes {
                    return Ok(started.elapsed().as_secs_f64());
                }
                last = format!("{ready} of {nodes} Nodes Ready");
            }
            Err(err) => last = crate::error::chain(&err),
        }
        tokio::time::sleep(POLL).await;
    }
    Err(Error::Unmeasurable(format!(
        "not every Node was Ready within {ALL_READY_TIMEOUT:?}: {last}"
    )))
}

/// How many Nodes in a `kubectl get nodes -o json` list have Ready True.
fn ready_nodes(json: &str) -> usize {
    let list: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|node| {
            node["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
        .count()
}

/// Each node's processes right after Ready and after `soak` idle.
async fn soaked_footprints(
    cluster: &Cluster,
    control: Client,
    soak: Duration,
) -> Result<Vec<NodeFootprint>, Error> {
    let mut clients = vec![(CONTROL_PLANE.to_owned(), control)];
    let worker = "worker-1".to_owned();
    clients.push((worker.clone(), cluster.connect(&worker).await?));
    let ready = Instant::now();
    let mut before = Vec::new();
    for (node, client) in &mut clients {
        before.push(footprint::snapshot(node, client, ready).await?);
    }
    eprintln!("cairn-bench: cluster: idle for {soak:?}");
    tokio::time::sleep(soak).await;
    let mut list = Vec::new();
    for ((node, client), after_ready) in clients.iter_mut().zip(before) {
        let after_soak = footprint::snapshot(node, client, ready).await?;
        list.push(NodeFootprint {
            node: node.clone(),
            components: footprint::compare(&after_ready, &after_soak),
            after_ready,
            after_soak,
        });
    }
    Ok(list)
}

/// Servers on both nodes, a client on the control plane; round trips and bulk sends
/// to each server.
async fn pod_paths(cluster: &Cluster, admin: &Admin, probe: &Path) -> Result<Vec<PodPath>, Error> {
    let here = cluster.node_name(CONTROL_PLANE)?;
    let there = cluster.node_name("worker-1")?;
    let privileged = "pod-security.kubernetes.io/enforce: privileged";
    admin.namespace(NAMESPACE, privileged, POD_TIMEOUT).await?;
    let ns = ["-n", NAMESPACE];
    // The host-network pair (privileged namespace) measures the segment alone.
    let pods = [
        ("client", &here),
        ("server-here", &here),
        ("server-there", &there),
        ("client-host", &here),
        ("server-host", &there),
    ];
    for (pod, node) in pods {
        admin.apply(&pod_manifest(pod, node)).await?;
    }
    for (pod, _) in pods {
        let ready = [
            "wait",
            "--for=condition=Ready",
            &format!("pod/{pod}"),
            POD_TIMEOUT,
        ];
        admin.run(&[&ready[..], &ns[..]].concat()).await?;
        // Copied under a temporary name, then made executable and moved: the servers
        // start it as soon as /tmp/net-probe exists.
        let target = format!("{NAMESPACE}/{pod}:/tmp/net-probe.part");
        admin
            .run(&["cp", &probe.display().to_string(), &target])
            .await?;
        let install = "chmod 755 /tmp/net-probe.part && mv /tmp/net-probe.part /tmp/net-probe";
        admin
            .run(&["exec", pod, "-n", NAMESPACE, "--", "sh", "-c", install])
            .await?;
    }
    let mut paths = Vec::new();
    for (what, client, server) in [
        ("pod on the same node (bridge)", "client", "server-here"),
        (
            "pod on the other node (pod routes over the cluster segment)",
            "client",
            "server-there",
        ),
        (
            "node to node, host network (the cluster segment alone)",
            "client-host",
            "server-host",
        ),
    ] {
        let ip = admin
            .run(&[
                "get",
                "pod",
                server,
                "-n",
                NAMESPACE,
                "-o",
                "jsonpath={.status.podIP}",
            ])
            .await?;
        let exec = ["exec", client, "-n", NAMESPACE, "--", "/tmp/net-probe"];
        // The server may not be listening yet: retry the first connection.
        let wait = format!(
            "timeout 60 sh -c 'until /tmp/net-probe rtt {ip} {PORT} 1 >/dev/null 2>&1; do \
             sleep 1; done'"
        );
        admin
            .run(&["exec", client, "-n", NAMESPACE, "--", "sh", "-c", &wait])
            .await?;
        let rounds = ROUND_TRIPS.to_string();
        let output = admin
            .run(&[&exec[..], &["rtt", &ip, PORT, &rounds]].concat())
            .await?;
        let rtt_us = Summary::of(&round_trips(&output));
        let mut throughput_mb_s = Vec::new();
        for _ in 0..SENDS {
            let mb = SEND_MB.to_string();
            let output = admin
                .run(&[&exec[..], &["send", &ip, PORT, &mb]].concat())
                .await?;
            let rate = send_rate(&output)
                .ok_or_else(|| Error::Unmeasurable(format!("net-probe send printed {output:?}")))?;
            throughput_mb_s.push(rate);
        }
        eprintln!(
            "cairn-bench: cluster: {what}: rtt p50 {:?} us, {throughput_mb_s:.1?} MB/s",
            rtt_us.map(|s| s.median)
        );
        paths.push(PodPath {
            what: what.to_owned(),
            rtt_us,
            throughput: Summary::of(&throughput_mb_s),
            throughput_mb_s,
        });
    }
    Ok(paths)
}

/// A toolbox pod on `node` (by name, past the scheduler) that runs the probe's server
/// once it is copied in, or idles (a client); in the node's network namespace when its
/// name ends in `-host`.
fn pod_manifest(pod: &str, node: &str) -> String {
    let host_network = pod.ends_with("-host");
    let command = if pod.starts_with("client") {
        "exec sleep 86400".to_owned()
    } else {
        format!("until [ -x /tmp/net-probe ]; do sleep 1; done; exec /tmp/net-probe serve {PORT}")
    };
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{ name: {pod}, namespace: {NAMESPACE} }}
spec:
  nodeName: {node}
  hostNetwork: {host_network}
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: localhost/cairn/toolbox:1
    imagePullPolicy: Never
    command: [sh, -c, '{command}']
"
    )
}

/// The probe's round trips in microseconds, after the warm-up.
fn round_trips(output: &str) -> Vec<f64> {
    let all: Vec<f64> = output
        .lines()
        .filter_map(|line| line.trim().parse::<f64>().ok())
        .collect();
    all.get(WARM_UP..).unwrap_or_default().to_vec()
}

/// MB/s from the probe's `BYTES MICROS`.
fn send_rate(output: &str) -> Option<f64> {
    let mut words = output.split_whitespace();
    let bytes: f64 = words.next()?.parse().ok()?;
    let micros: f64 = words.next()?.parse().ok()?;
    (micros > 0.0).then(|| bytes / micros)
}

pub fn markdown(results: &Results) -> String {
    report::page(
        "Clusters: start, footprint, pod network",
        &results.machine,
        &body(results),
    )
}

/// The figures, for this page and RESULTS.md.
pub fn body(results: &Results) -> String {
    let mut body = String::from(
        "`cairn-qemu cluster start --workers N` (what `make cluster` runs) on a new \
         cluster directory, host seconds from its call. All guests share the host's \
         CPUs under TCG.\n\n\
         | nodes | launcher returned (every agent ready) | every Node Ready |\n\
         | --- | ---: | ---: |\n",
    );
    for s in &results.starts {
        let _ = writeln!(
            body,
            "| 1 control plane + {} | {:.1} | {:.1} |",
            s.workers, s.launcher_s, s.all_ready_s
        );
    }
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let _ = write!(
        body,
        "\nEach node of the 1+1 cluster right after every Node was Ready and after \
         {} s idle (no pods of the benchmark yet): memory in use on the node (total \
         minus available), RSS (MiB) and CPU over the idle time (% of one core) of each \
         component.\n\n\
         | node | component | RSS after Ready | RSS after idle | idle CPU % |\n\
         | --- | --- | ---: | ---: | ---: |\n",
        results.soak_seconds
    );
    for node in &results.footprints {
        let _ = writeln!(
            body,
            "| {} | memory in use | {:.0} | {:.0} | |",
            node.node,
            mib(node.after_ready.memory_used_bytes()),
            mib(node.after_soak.memory_used_bytes())
        );
        let mut total_cpu = 0.0;
        for f in &node.components {
            total_cpu += f.soak_cpu_percent.unwrap_or(0.0);
            let _ = writeln!(
                body,
                "| {} | {} | {} | {} | {} |",
                node.node,
                f.component,
                f.rss_after_boot_bytes
                    .map_or("n/a".into(), |b| format!("{:.0}", mib(b))),
                f.rss_after_soak_bytes
                    .map_or("n/a".into(), |b| format!("{:.0}", mib(b))),
                report::num(f.soak_cpu_percent, 2)
            );
        }
        let _ = writeln!(
            body,
            "| {} | all components | | | {total_cpu:.2} |",
            node.node
        );
    }
    let _ = write!(
        body,
        "\nPod to pod over TCP, from a client pod on the control-plane node to a server \
         pod; the last row is the floor: both pods in their nodes' network namespaces, \
         the cluster segment (a QEMU socket netdev on a multicast group) alone. \
         {ROUND_TRIPS} round trips of a 64-byte message on one connection (the first \
         {WARM_UP} dropped; microseconds on the pod's clock) and {SENDS} sends of \
         {SEND_MB} MB (MB/s, until the server counted every byte).\n\n\
         | server pod | rtt p50 | rtt p95 | rtt max | throughput median | min | max |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n"
    );
    for p in &results.paths {
        let rtt = |f: fn(&Summary) -> f64| {
            p.rtt_us
                .as_ref()
                .map_or("n/a".into(), |s| format!("{:.0}", f(s)))
        };
        let rate = |f: fn(&Summary) -> f64| {
            p.throughput
                .as_ref()
                .map_or("n/a".into(), |s| format!("{:.1}", f(s)))
        };
        let _ = writeln!(
            body,
            "| {} | {} | {} | {} | {} | {} | {} |",
            p.what,
            rtt(|s| s.median),
            rtt(|s| s.p95),
            rtt(|s| s.max),
            rate(|s| s.median),
            rate(|s| s.min),
            rate(|s| s.max)
        );
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_nodes_with_ready_true_count() {
        let json = r#"{"items":[
            {"status":{"conditions":[{"type":"MemoryPressure","status":"False"},{"type":"Ready","status":"True"}]}},
            {"status":{"conditions":[{"type":"Ready","status":"False"}]}},
            {"status":{"conditions":[{"type":"Ready","status":"Unknown"}]}},
            {"status":{}}]}"#;
        assert_eq!(ready_nodes(json), 1);
        assert_eq!(ready_nodes("not json"), 0);
    }

    #[test]
    fn probe_output_gives_round_trips_after_the_warm_up_and_rates() {
        let text: String = (0..WARM_UP + 3).map(|i| format!("{i}\n")).collect();
        let expected: Vec<f64> = (WARM_UP..WARM_UP + 3).map(|i| i as f64).collect();
        assert_eq!(round_trips(&text), expected);
        assert!(round_trips("1\n2\n").is_empty());
        assert_eq!(send_rate("64000000 2000000\n"), Some(32.0));
        assert_eq!(send_rate("64000000 0"), None);
        assert_eq!(send_rate("garbage"), None);
    }
}
