//! Boot-level tests of pods on the node: the node becomes Ready; a pod from the
//! preloaded toolbox image runs and its output is in `kubectl logs`; `kubectl exec`
//! returns a command's output, stdin and exit code; a pod with secret, configMap,
//! emptyDir (and the projected service-account token) volumes reads them all, on an
//! image with no `mount` binary (the kubelet's syscall mounter); and the kubelet's
//! stats summary, read through the apiserver's node proxy, reports those volumes'
//! usage (the metrics patch). The built `dbg` binary itself reads the node's logs and
//! conditions and runs kubectl, with exact output and exit codes. The toolbox image is a
//! whole busybox: every applet of its binary linked, `kubectl cp` (tar) works both ways
//! and `/tmp` takes writes.
//!
//! One node for the file (`common/kubernetes.rs`): the tests use pods of their own
//! names and never change the node, so they share it. Every wait has a deadline: the
//! agent's WaitCondition for `node-ready`, `kubectl wait` for pods, and a bounded poll
//! for the stats summary, which the kubelet recomputes on a period and offers no watch
//! for. On failure the message carries `kubectl describe` of the pod, the conditions,
//! the kubelet's, containerd's and the apiserver's log tails and the console tail.
//!
//! All `#[ignore]`d: `make test` runs them with `--ignored`.

#[allow(dead_code)]
mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use common::kubernetes::{describe, Session, KUBECTL_TIMEOUT};
use serde_json::Value;

/// etcd, the control plane, the kubelet and node registration under TCG.
const NODE_READY_TIMEOUT: Duration = Duration::from_secs(300);
/// Scheduling, the first pod sandbox (bridge + iptables rules: 7-11 s under TCG) and
/// the container, with margin.
const POD_TIMEOUT: Duration = Duration::from_secs(180);
/// The kubelet computes volume stats every `volumeStatsAggPeriod` (1 min by default)
/// and picks up a new pod on the next pass.
const STATS_TIMEOUT: Duration = Duration::from_secs(180);
/// Between two reads of the stats summary.
const STATS_POLL_INTERVAL: Duration = Duration::from_secs(2);
const NAMESPACE: &str = "default";
const TOOLBOX: &str = "localhost/cairn/toolbox:1";
/// Where a pod's trouble shows first.
const REPORTED: &[&str] = &["kubelet", "containerd", "kube-apiserver", "scheduler"];
/// What the volumes pod writes to its emptyDir, so its usage cannot be a rounding error.
const BLOB_BYTES: u64 = 1 << 20;

/// A session on the file's node once the node is Ready and pods are admitted. The
/// first test waits for `node-ready`; the others share its outcome, so a node that
/// never gets Ready costs one deadline, not one per test.
fn session() -> Session {
    static NODE_READY: OnceLock<Result<(), String>> = OnceLock::new();
    let session = Session::open().reporting(REPORTED);
    let ready = NODE_READY
        .get_or_init(|| (session.try_wait_true("node-ready", NODE_READY_TIMEOUT)).map(|_| ()));
    if let Err(err) = ready {
        session.fail(err);
    }
    session.wait_for_default_service_account(NAMESPACE);
    session
}

/// `text` as a YAML double-quoted scalar (JSON string syntax is one).
fn quoted(text: &str) -> String {
    Value::from(text).to_string()
}

/// A toolbox pod running `script` under `sh -c`, never restarted. `extra` is more
/// of the container's fields and `volumes` the pod's volume list, both already indented.
fn toolbox_pod(name: &str, script: &str, extra: &str, volumes: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {NAMESPACE}
spec:
  restartPolicy: Never
  # sleep as PID 1 ignores SIGTERM; don't hold up a deletion for 30 s.
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {TOOLBOX}
    imagePullPolicy: Never
    command: [\"sh\", \"-c\", {script}]
{extra}{volumes}",
        script = quoted(script),
    )
}

/// Creates (or keeps) the objects in `manifest`.
fn apply(session: &Session, manifest: &str) {
    session.kubectl_ok_within(&["apply", "-f", "-"], manifest, KUBECTL_TIMEOUT);
}

/// Waits for `pod` to reach `condition` (a `kubectl wait --for` value).
fn wait_pod(session: &Session, pod: &str, condition: &str) {
    let timeout = format!("--timeout={}s", POD_TIMEOUT.as_secs());
    let target = format!("pod/{pod}");
    let args = ["wait", condition, &target, "-n", NAMESPACE, &timeout];
    let output = session.kubectl_within(&args, "", POD_TIMEOUT + KUBECTL_TIMEOUT);
    if !output.status.success() {
        fail_pod(
            session,
            pod,
            format!("pod {pod} did not reach {condition}: {}", describe(&output)),
        );
    }
}

/// Fails with `message` and what `kubectl describe` says about `pod` (its events too).
fn fail_pod(session: &Session, pod: &str, message: impl std::fmt::Display) -> ! {
    let described = session.kubectl(&["describe", "pod", pod, "-n", NAMESPACE], "");
    session.fail(format!(
        "{message}\n--- kubectl describe pod {pod} ---\n{}",
        describe(&described)
    ))
}

fn pod_field(session: &Session, pod: &str, jsonpath: &str) -> String {
    let output = format!("jsonpath={jsonpath}");
    session.kubectl_ok(&["get", "pod", pod, "-n", NAMESPACE, "-o", &output])
}

fn pod_logs(session: &Session, pod: &str) -> String {
    session.kubectl_ok(&["logs", pod, "-n", NAMESPACE])
}

/// The node's name as the apiserver knows it (the only node).
fn node_name(session: &Session) -> String {
    let names = session.kubectl_ok(&["get", "nodes", "-o", "jsonpath={.items[*].metadata.name}"]);
    let names: Vec<&str> = names.split_whitespace().collect();
    match names.as_slice() {
        [name] => (*name).to_owned(),
        other => session.fail(format!("expected one node, found {other:?}")),
    }
}

#[test]
#[ignore = "boots a node; run by `make test`"]
fn the_node_becomes_ready() {
    let session = session();
    let name = node_name(&session);
    // The node name = node ID rule.
    let node_id = &session.cluster.ready.node_id;
    if !name.contains(node_id.as_str()) {
        session.fail(format!("node {name} does not carry the node ID {node_id}"));
    }
    let ready = session.kubectl_ok(&[
        "get",
        "node",
        &name,
        "-o",
        r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#,
    ]);
    assert_eq!(ready, "True", "node {name} is not Ready");
}

#[test]
#[ignore = "boots a node; run by `make test`"]
fn a_pod_runs_and_its_output_is_in_the_logs() {
    let session = session();
    let pod = "echo-marker";
    // Computed in the container, so the log cannot be an echo of the manifest.
    apply(
        &session,
        &toolbox_pod(pod, "echo marker-$((40 + 2))", "", ""),
    );
    wait_pod(
        &session,
        pod,
        "--for=jsonpath={.status.containerStatuses[0].state.terminated}",
    );
    let code = pod_field(
        &session,
        pod,
        "{.status.containerStatuses[0].state.terminated.exitCode}",
    );
    if code != "0" {
        fail_pod(&session, pod, format!("the container exited with {code}"));
    }
    // The kubelet reports the container's end before it moves the pod's phase on.
    wait_pod(&session, pod, "--for=jsonpath={.status.phase}=Succeeded");
    let logs = pod_logs(&session, pod);
    assert_eq!(logs, "marker-42\n", "kubectl logs {pod}");
}

#[test]
#[ignore = "boots a node; run by `make test`"]
fn exec_returns_output_stdin_and_exit_code() {
    let session = session();
    let pod = "exec-target";
    apply(&session, &toolbox_pod(pod, "exec sleep 100000", "", ""));
    wait_pod(&session, pod, "--for=condition=Ready");
    let exec = |extra: &[&str], command: &[&str], stdin: &str| {
        let mut args = vec!["exec"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[pod, "-n", NAMESPACE, "--"]);
        args.extend_from_slice(command);
        session.kubectl(&args, stdin)
    };
    let output = exec(
        &[],
        &["sh", "-c", "echo exec-$((6 * 7)) in $(hostname)"],
        "",
    );
    if !output.status.success() {
        fail_pod(
            &session,
            pod,
            format!("kubectl exec: {}", describe(&output)),
        );
    }
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("exec-42 in {pod}\n")
    );
    let output = exec(&["-i"], &["cat"], "through stdin\n");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "through stdin\n",
        "kubectl exec -i: {}",
        describe(&output)
    );
    // kubectl exits with the command's status.
    let output = exec(&[], &["sh", "-c", "exit 7"], "");
    assert_eq!(output.status.code(), Some(7), "{}", describe(&output));
}

/// `dbg ARGS` that must exit with `code`; its stdout and stderr.
fn dbg_exits(session: &Session, tmp: &Path, args: &[&str], code: i32) -> (String, String) {
    common::dbg::exits(session, tmp, args, code)
}

/// Whether `line` is one `dbg logs` line: `<seconds>.<micros> <stream> <text>`.
fn is_log_line(line: &str) -> bool {
    let mut fields = line.split_whitespace();
    let time_ok = fields
        .next()
        .and_then(|t| t.split_once('.'))
        .is_some_and(|(s, us)| {
            s.chars().all(|c| c.is_ascii_digit())
                && us.len() == 6
                && us.chars().all(|c| c.is_ascii_digit())
        });
    time_ok && matches!(fields.next(), Some("stdout" | "stderr" | "agent"))
}

/// The cells of a `dbg conditions` row (its reason may hold spaces: left out).
fn condition_row(line: &str) -> Vec<&str> {
    line.split_whitespace().take(2).collect()
}

#[test]
#[ignore = "boots a node; run by `make test`"]
fn the_dbg_binary_reads_logs_and_conditions_and_runs_kubectl() {
    let session = session();
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let tmp = tmp.path();

    let (logs, _) = dbg_exits(&session, tmp, &["logs", "kubelet", "-n", "5"], 0);
    let lines: Vec<&str> = logs.lines().collect();
    assert_eq!(lines.len(), 5, "dbg logs kubelet -n 5 printed {logs:?}");
    assert!(
        lines.iter().all(|l| is_log_line(l)),
        "not dbg log lines: {logs:?}"
    );
    let (raw, _) = dbg_exits(&session, tmp, &["logs", "kubelet", "-n", "3", "--raw"], 0);
    assert_eq!(
        raw.lines().count(),
        3,
        "dbg logs kubelet -n 3 --raw printed {raw:?}"
    );
    // NOT_FOUND is exit code 10 + 5.
    let (out, err) = dbg_exits(&session, tmp, &["logs", "no-such-component", "-n", "1"], 15);
    assert_eq!(out, "");
    assert!(
        err.contains("unknown component no-such-component"),
        "dbg logs of an unknown component said {err:?}"
    );

    let (all, _) = dbg_exits(&session, tmp, &["conditions"], 0);
    let header = all.lines().next().unwrap_or_default();
    assert_eq!(condition_row(header), ["NAME", "STATUS"], "{all}");
    let rows: Vec<Vec<&str>> = all.lines().skip(1).map(condition_row).collect();
    assert!(rows.contains(&vec!["node-ready", "true"]), "{all}");
    let (one, _) = dbg_exits(&session, tmp, &["conditions", "node-ready"], 0);
    let rows: Vec<Vec<&str>> = one.lines().skip(1).map(condition_row).collect();
    assert_eq!(rows, [["node-ready", "true"]], "{one}");
    let wait = ["conditions", "--wait", "node-ready", "--timeout", "10"];
    let (waited, _) = dbg_exits(&session, tmp, &wait, 0);
    let rows: Vec<Vec<&str>> = waited.lines().skip(1).map(condition_row).collect();
    assert_eq!(rows, [["node-ready", "true"]], "{waited}");
    let wait = [
        "conditions",
        "--wait",
        "no-such-condition",
        "--timeout",
        "1",
    ];
    let (_, err) = dbg_exits(&session, tmp, &wait, 15);
    assert!(
        err.contains("condition no-such-condition does not exist"),
        "dbg conditions --wait on an unknown condition said {err:?}"
    );

    let node = node_name(&session);
    let (nodes, _) = dbg_exits(&session, tmp, &["kubectl", "get", "nodes", "-o", "name"], 0);
    assert_eq!(nodes, format!("node/{node}\n"));
    // kubectl's own status and message come through.
    let missing = ["kubectl", "get", "pod", "no-such-pod", "-n", NAMESPACE];
    let (_, err) = dbg_exits(&session, tmp, &missing, 1);
    assert!(err.contains("\"no-such-pod\" not found"), "{err}");
    let left: Vec<_> = std::fs::read_dir(tmp)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert_eq!(
        left,
        Vec::<PathBuf>::new(),
        "dbg kubectl left credentials behind"
    );
}

/// A toolbox pod that only sleeps, for `kubectl exec` and `kubectl cp`, created once.
fn idle_toolbox_pod(session: &Session) -> &'static str {
    static CREATED: OnceLock<()> = OnceLock::new();
    let pod = "toolbox-idle";
    CREATED.get_or_init(|| {
        apply(session, &toolbox_pod(pod, "exec sleep 100000", "", ""));
        wait_pod(session, pod, "--for=condition=Ready");
    });
    pod
}

/// `sh -c SCRIPT` in `pod`, which must succeed; its stdout.
fn exec_ok(session: &Session, pod: &str, script: &str) -> String {
    let output = session.kubectl(
        &["exec", pod, "-n", NAMESPACE, "--", "sh", "-c", script],
        "",
    );
    if !output.status.success() {
        fail_pod(
            session,
            pod,
            format!("kubectl exec {script:?}: {}", describe(&output)),
        );
    }
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
#[ignore = "boots a node; run by `make test`"]
fn kubectl_cp_copies_both_ways_and_tmp_takes_writes() {
    let session = session();
    let pod = idle_toolbox_pod(&session);
    let written = exec_ok(
        &session,
        pod,
        "echo tmp-$((6 * 7)) > /tmp/probe && cat /tmp/probe && stat -c %a /tmp",
    );
    assert_eq!(written, "tmp-42\n1777\n", "a write to /tmp in the toolbox");

    let dir = tempfile::tempdir().expect("a temporary directory");
    let local = dir.path().join("to-pod.txt");
    let content = "copied into the pod\nsecond line\n";
    std::fs::write(&local, content).expect("a local file");
    let remote = format!("{NAMESPACE}/{pod}:/tmp/from-host.txt");
    let local_arg = local.to_str().expect("a UTF-8 path");
    session.kubectl_ok(&["cp", local_arg, &remote]);
    assert_eq!(exec_ok(&session, pod, "cat /tmp/from-host.txt"), content);

    let back = dir.path().join("from-pod.txt");
    let remote = format!("{NAMESPACE}/{pod}:/tmp/probe");
    session.kubectl_ok(&["cp", &remote, back.to_str().expect("a UTF-8 path")]);
    let copied = std::fs::read_to_string(&back).unwrap_or_default();
    assert_eq!(copied, "tmp-42\n", "kubectl cp out of the pod");
}

/// `ls -l /bin`: the names of the symlinks to `busybox`, and every other entry's name.
fn bin_entries(listing: &str) -> (BTreeSet<String>, Vec<String>) {
    let (mut links, mut others) = (BTreeSet::new(), Vec::new());
    for line in listing.lines().filter(|l| !l.starts_with("total ")) {
        let (left, target) = line
            .split_once(" -> ")
            .map_or((line, None), |(l, t)| (l, Some(t)));
        let name = left
            .split_whitespace()
            .last()
            .unwrap_or_default()
            .to_owned();
        if target == Some("busybox") {
            links.insert(name);
        } else {
            others.push(name);
        }
    }
    (links, others)
}

#[test]
#[ignore = "boots a node; run by `make test`"]
fn the_toolbox_links_every_applet_of_its_busybox() {
    let session = session();
    let pod = idle_toolbox_pod(&session);
    // Against the shipped binary's own list: a link for each applet, nothing else.
    let applets: BTreeSet<String> = exec_ok(&session, pod, "busybox --list")
        .lines()
        .filter(|a| *a != "busybox")
        .map(str::to_owned)
        .collect();
    assert!(applets.len() > 200, "busybox --list: {applets:?}");
    let (links, others) = bin_entries(&exec_ok(&session, pod, "ls -l /bin"));
    let missing: Vec<_> = applets.difference(&links).collect();
    let extra: Vec<_> = links.difference(&applets).collect();
    assert_eq!(
        (missing, extra),
        (vec![], vec![]),
        "/bin against busybox --list"
    );
    assert_eq!(
        others,
        ["busybox"],
        "/bin holds more than busybox and its links"
    );
}

/// The secret, configMap and volumes pod, created once for the tests that read it.
fn volumes_pod(session: &Session) -> &'static str {
    static CREATED: OnceLock<()> = OnceLock::new();
    let pod = "volumes";
    CREATED.get_or_init(|| {
        apply(session, &volumes_manifest(pod));
        // Ready only once the script has written everything (the readiness probe).
        wait_pod(session, pod, "--for=condition=Ready");
    });
    pod
}

fn volumes_manifest(pod: &str) -> String {
    let script = format!(
        "cat /etc/secret/token; echo
cat /etc/config/greeting; echo
echo emptydir-value > /scratch/note && cat /scratch/note
test -s /var/run/secrets/kubernetes.io/serviceaccount/token && echo projected-token
head -c {BLOB_BYTES} /dev/zero > /scratch/blob
touch /scratch/done
exec sleep 100000"
    );
    let extra = "    readinessProbe:
      exec:
        command: [\"cat\", \"/scratch/done\"]
      periodSeconds: 1
    volumeMounts:
    - { name: secret, mountPath: /etc/secret, readOnly: true }
    - { name: config, mountPath: /etc/config, readOnly: true }
    - { name: scratch, mountPath: /scratch }
";
    let volumes = "  volumes:
  - name: secret
    secret: { secretName: volume-secret }
  - name: config
    configMap: { name: volume-config }
  - name: scratch
    emptyDir: {}
";
    format!(
        "apiVersion: v1
kind: Secret
metadata: {{ name: volume-secret, namespace: {NAMESPACE} }}
stringData: {{ token: secret-value }}
---
apiVersion: v1
kind: ConfigMap
metadata: {{ name: volume-config, namespace: {NAMESPACE} }}
data: {{ greeting: configmap-value }}
---
{}",
        toolbox_pod(pod, &script, extra, volumes)
    )
}

/// Paths in the built image's manifest named like a mount helper.
fn mount_binaries(manifest: &Value) -> Vec<String> {
    let files = manifest["files"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    files
        .iter()
        .filter_map(|file| file["path"].as_str())
        .filter(|path| {
            let name = path.rsplit('/').next().unwrap_or(path);
            ["mount", "umount"]
                .iter()
                .any(|tool| name == *tool || name.starts_with(&format!("{tool}.")))
        })
        .map(str::to_owned)
        .collect()
}

#[test]
#[ignore = "boots a node; run by `make test`"]
fn secret_configmap_and_emptydir_volumes_mount_without_a_mount_binary() {
    let path = common::image_dir().join("manifest.json");
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let manifest: Value = serde_json::from_slice(&text).expect("manifest.json is JSON");
    assert!(
        manifest["files"].as_array().is_some_and(|f| !f.is_empty()),
        "no file list in {}",
        path.display()
    );
    assert_eq!(mount_binaries(&manifest), Vec::<String>::new());

    let session = session();
    let pod = volumes_pod(&session);
    let logs = pod_logs(&session, pod);
    let expected = "secret-value\nconfigmap-value\nemptydir-value\nprojected-token\n";
    if logs != expected {
        fail_pod(
            &session,
            pod,
            format!("the volumes pod wrote {logs:?}, expected {expected:?}"),
        );
    }
}

/// `pod`'s volumes in a stats summary: name -> usedBytes, for those that have it.
fn volume_usage(summary: &Value, pod: &str) -> Vec<(String, u64)> {
    let pods = summary["pods"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let Some(entry) = pods
        .iter()
        .find(|p| p["podRef"]["name"] == pod && p["podRef"]["namespace"] == NAMESPACE)
    else {
        return Vec::new();
    };
    let volumes = entry["volume"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    volumes
        .iter()
        .filter_map(|v| Some((v["name"].as_str()?.to_owned(), v["usedBytes"].as_u64()?)))
        .collect()
}

/// Whether `usage` covers every volume of the volumes pod, the emptyDir with its blob.
fn usage_complete(usage: &[(String, u64)]) -> bool {
    let used = |name: &str| usage.iter().find(|(n, _)| n == name).map(|(_, b)| *b);
    let projected = usage.iter().any(|(n, _)| n.starts_with("kube-api-access-"));
    used("secret").is_some()
        && used("config").is_some()
        && used("scratch").is_some_and(|bytes| bytes >= BLOB_BYTES)
        && projected
}

/// Every volume of the volumes pod is measured and reported, the emptyDir with its
/// blob. This passes with or without patch 0002: the patch changes how a secret,
/// projected or downwardAPI volume is measured (one statfs instead of a walk), not the
/// figure, and its header says why no test can tell the two apart.
#[test]
#[ignore = "boots a node; run by `make test`"]
fn the_stats_summary_reports_volume_usage() {
    let session = session();
    let pod = volumes_pod(&session);
    let path = format!("/api/v1/nodes/{}/proxy/stats/summary", node_name(&session));
    let deadline = Instant::now() + STATS_TIMEOUT;
    let last = loop {
        let text = session.kubectl_ok(&["get", "--raw", &path]);
        let summary: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| session.fail(format!("{path} is not JSON: {e}\n{text}")));
        let usage = volume_usage(&summary, pod);
        if usage_complete(&usage) {
            return;
        }
        if Instant::now() >= deadline {
            break usage;
        }
        thread::sleep(STATS_POLL_INTERVAL);
    };
    fail_pod(
        &session,
        pod,
        format!(
            "after {STATS_TIMEOUT:?} the stats summary reports {last:?} for pod {pod} \
             (want secret, config, kube-api-access-*, and scratch >= {BLOB_BYTES} bytes)"
        ),
    )
}

#[test]
fn pod_manifests_quote_scripts_stats_are_read_by_name_and_dbg_lines_parse() {
    let manifest = toolbox_pod("p", "echo \"a\"\ncat x", "", "");
    assert!(
        manifest.contains(r#"command: ["sh", "-c", "echo \"a\"\ncat x"]"#),
        "{manifest}"
    );
    let volumes = volumes_manifest("v");
    assert_eq!(volumes.matches("\n---\n").count(), 2);
    assert!(volumes.contains("    volumeMounts:\n    - { name: secret"));
    assert!(volumes.contains("\n  volumes:\n  - name: secret\n"));

    let summary = serde_json::json!({"pods": [
        {"podRef": {"name": "v", "namespace": "other"}, "volume": [{"name": "x", "usedBytes": 1}]},
        {"podRef": {"name": "v", "namespace": NAMESPACE}, "volume": [
            {"name": "secret", "usedBytes": 8192},
            {"name": "config", "usedBytes": 4096},
            {"name": "kube-api-access-abcde", "usedBytes": 12288},
            {"name": "scratch", "usedBytes": BLOB_BYTES + 4096},
            {"name": "pending"}
        ]}
    ]});
    assert!(is_log_line("     3.500000 stderr I1206 kubelet.go:1] x"));
    assert!(is_log_line("12.000001 agent  started"));
    assert!(!is_log_line("I1206 kubelet.go:1] x"));
    assert!(!is_log_line("3.5 stdout x"));
    assert_eq!(
        condition_row("node-ready  true  9.1s  node x is Ready"),
        ["node-ready", "true"]
    );
    let listing = "total 1\n-rwxr-xr-x 1 0 0 9 Jan  1  1970 busybox\n\
        lrwxrwxrwx 1 0 0 7 Jan  1  1970 [ -> busybox\nlrwxrwxrwx 1 0 0 3 Jan  1  1970 x -> y\n";
    let (links, others) = bin_entries(listing);
    assert_eq!(links.into_iter().collect::<Vec<_>>(), ["["]);
    assert_eq!(others, ["busybox", "x"]);

    let usage = volume_usage(&summary, "v");
    assert_eq!(usage.len(), 4);
    assert!(usage_complete(&usage));
    assert!(!usage_complete(&usage[..3]));
    assert!(volume_usage(&summary, "absent").is_empty());

    let manifest = serde_json::json!({"files": [
        {"path": "/usr/bin/kube"}, {"path": "/bin/mountpoint"}, {"path": "/sbin/mount.nfs"},
        {"path": "/bin/umount"}
    ]});
    assert_eq!(
        mount_binaries(&manifest),
        ["/sbin/mount.nfs", "/bin/umount"]
    );
}
