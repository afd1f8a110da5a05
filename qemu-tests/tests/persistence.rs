//! Boot-level tests of persistence: the node keeps its identity, certificates and
//! cluster across a reboot through the debug service, a reboot through ctrl-alt-delete
//! and a hard power-off (QEMU killed), and comes back Ready with its Deployment's pod
//! running again each time.
//!
//! One node for the file, one test: the steps depend on each other (each boot must
//! find what the one before left on the data disk), so they run in order. The node
//! starts from a blank data disk, so the first boot also proves the disk is
//! partitioned and formatted. The time from each request to Ready is printed: the
//! bound this test records (the benchmark measures it properly, bench/).
//!
//! `#[ignore]`d: `make test` runs it with `--ignored`.

#[allow(dead_code)]
mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::kubernetes::{Session, KUBECTL_TIMEOUT, NODE_PORT};
use common::restart::{
    build_info, call_shutdown, press_ctrl_alt_delete, ready_container, restart_qemu,
    wait_next_boot, QemuStop, POLL,
};

/// etcd, the control plane, the kubelet and node registration under TCG.
const NODE_READY_TIMEOUT: Duration = Duration::from_secs(300);
/// From node Ready to the Deployment's pod running again in this boot.
const POD_TIMEOUT: Duration = Duration::from_secs(240);
const DEPLOYMENT: &str = "survivor";
const NAMESPACE: &str = "default";
/// From the pod Ready to its Service answering (kube-proxy's and CoreDNS's first sync).
const SERVICE_TIMEOUT: Duration = Duration::from_secs(120);
const REPORTED: &[&str] = &[
    "agent",
    "kubelet",
    "containerd",
    "kube-apiserver",
    "etcd",
    "kube-proxy",
    "cluster-dns",
];

/// What must be the same after every boot.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Persistent {
    node_id: String,
    machine_id: String,
    cluster_ca: String,
    node_uid: String,
    deployment_uid: String,
}

fn deployment() -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {DEPLOYMENT}
  namespace: {NAMESPACE}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: {DEPLOYMENT}}}
  template:
    metadata:
      labels: {{app: {DEPLOYMENT}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: localhost/cairn/toolbox:1
        imagePullPolicy: Never
        command: [\"sh\", \"-c\", \"mkdir -p /www && echo {DEPLOYMENT} > /www/index.html && exec httpd -f -p 80 -h /www\"]
---
apiVersion: v1
kind: Service
metadata:
  name: {DEPLOYMENT}
  namespace: {NAMESPACE}
spec:
  type: NodePort
  selector: {{app: {DEPLOYMENT}}}
  ports:
  - port: 80
    nodePort: {NODE_PORT}
"
    )
}

#[test]
#[ignore = "boots QEMU; run with `make test`"]
fn the_node_survives_reboots_and_a_power_cut() {
    let session = Session::open().reporting(REPORTED);
    wait_ready(&session);
    let storage = session.condition("storage");
    if !storage.0 || !storage.1.contains("formatted this boot") {
        session.fail(format!(
            "first boot did not format the data disk: {storage:?}"
        ));
    }
    session.wait_for_default_service_account(NAMESPACE);
    session.kubectl_ok_within(&["apply", "-f", "-"], &deployment(), KUBECTL_TIMEOUT);
    let mut container = wait_pod_running(&session, None);
    check_service(&session, "the first boot");
    let before = persistent(&session);
    let mut boot_id = build_info(&session).boot_id;

    // 1. Reboot through the debug service.
    let started = Instant::now();
    call_shutdown(&session);
    boot_id = wait_next_boot(&session, 2, &boot_id);
    wait_ready(&session);
    eprintln!(
        "reboot (debug service) -> node Ready: {:.1?}",
        started.elapsed()
    );
    check_same(&session, &before, "a reboot through the debug service");
    container = wait_pod_running(&session, Some(&container));
    check_service(&session, "a reboot through the debug service");
    // A clean shutdown leaves a clean file system: e2fsck -p says "clean".
    let storage = session.condition("storage");
    if !storage.0 || storage.1.contains("formatted") || !storage.1.contains("clean,") {
        session.fail(format!(
            "the reboot did not leave a cleanly unmounted disk: {storage:?}"
        ));
    }

    // 2. Reboot through ctrl-alt-delete.
    let started = Instant::now();
    press_ctrl_alt_delete(&session);
    wait_next_boot(&session, 3, &boot_id);
    wait_ready(&session);
    eprintln!(
        "reboot (ctrl-alt-delete) -> node Ready: {:.1?}",
        started.elapsed()
    );
    check_same(&session, &before, "a reboot through ctrl-alt-delete");
    container = wait_pod_running(&session, Some(&container));
    check_service(&session, "a reboot through ctrl-alt-delete");

    // 3. Hard power-off: QEMU killed, then the same state dir and disk booted again.
    let started = Instant::now();
    restart_qemu(&session, QemuStop::Kill);
    wait_ready(&session);
    eprintln!("power cut -> node Ready: {:.1?}", started.elapsed());
    check_same(&session, &before, "a hard power-off");
    wait_pod_running(&session, Some(&container));
    check_service(&session, "a hard power-off");
}

/// The Deployment's Service answers in this boot: its name resolves to its ClusterIP
/// through cluster DNS (asked from the pod itself), and its NodePort returns the page
/// on the host, both within [`SERVICE_TIMEOUT`].
fn check_service(session: &Session, after_what: &str) {
    let cluster_ip = session.kubectl_ok(&[
        "get",
        "service",
        DEPLOYMENT,
        "-n",
        NAMESPACE,
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    let host_port = (session.cluster.host_port(NODE_PORT))
        .unwrap_or_else(|| session.fail(format!("guest port {NODE_PORT} is not forwarded")));
    let target = format!("deployment/{DEPLOYMENT}");
    let deadline = Instant::now() + SERVICE_TIMEOUT;
    loop {
        let lookup = session.kubectl(
            &[
                "exec", &target, "-n", NAMESPACE, "--", "nslookup", "-type=a", DEPLOYMENT,
            ],
            "",
        );
        let lookup = String::from_utf8_lossy(&lookup.stdout).into_owned();
        let resolved = common::kubernetes::nslookup_addresses(&lookup).contains(&cluster_ip);
        let page = common::kubernetes::http_get(host_port);
        if resolved && page.as_deref().map(str::trim) == Ok(DEPLOYMENT) {
            return;
        }
        if Instant::now() >= deadline {
            session.fail(format!(
                "after {after_what} the {DEPLOYMENT} Service does not answer within \
                 {SERVICE_TIMEOUT:?}: nslookup {DEPLOYMENT} (want {cluster_ip}):\n{lookup}\n\
                 NodePort {NODE_PORT} on host port {host_port}: {page:?}"
            ));
        }
        thread::sleep(POLL);
    }
}

fn wait_ready(session: &Session) {
    session.wait_true("node-ready", NODE_READY_TIMEOUT);
}

fn persistent(session: &Session) -> Persistent {
    let info = build_info(session);
    let (kubeconfig, _) = session.kubeconfig("persistence", &["system:masters"], None);
    let cluster_ca = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("certificate-authority-data:"))
        .map(|ca| ca.trim().to_owned())
        .unwrap_or_else(|| session.fail("the debug kubeconfig names no CA"));
    let uid = |kind: &str, name: &str| {
        let mut args = vec!["get", kind, name, "-o", "jsonpath={.metadata.uid}"];
        if kind != "node" {
            args.extend(["-n", NAMESPACE]);
        }
        session.kubectl_ok(&args)
    };
    let node_name = format!("cairn-{}", info.node_id);
    Persistent {
        machine_id: info.node_id.clone(),
        node_uid: uid("node", &node_name),
        deployment_uid: uid("deployment", DEPLOYMENT),
        cluster_ca,
        node_id: session
            .cluster
            .node
            .lock()
            .unwrap()
            .record()
            .node_id
            .clone()
            .unwrap_or_default(),
    }
}

fn check_same(session: &Session, before: &Persistent, after_what: &str) {
    let now = persistent(session);
    if &now != before {
        session.fail(format!(
            "after {after_what} the node is not the same:\nbefore {before:#?}\nafter {now:#?}"
        ));
    }
}

/// Waits until the Deployment's pod runs a container other than `previous` (a new
/// one in this boot) and is Ready; returns its container ID.
fn wait_pod_running(session: &Session, previous: Option<&str>) -> String {
    let deadline = Instant::now() + POD_TIMEOUT;
    loop {
        let (running, out) = ready_container(session, NAMESPACE, DEPLOYMENT, previous);
        if let Some(id) = running {
            return id;
        }
        if Instant::now() >= deadline {
            let selector = format!("app={DEPLOYMENT}");
            let pods = session.kubectl(&["describe", "pods", "-n", NAMESPACE, "-l", &selector], "");
            session.fail(format!(
                "the {DEPLOYMENT} pod did not run again (previous container {previous:?}); last: \
                 {out}\n{}",
                common::kubernetes::describe(&pods)
            ));
        }
        thread::sleep(POLL * 2);
    }
}
