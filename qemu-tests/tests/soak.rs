//! Restart soak (`make soak`): a node running a Deployment, a completed Job and a pod
//! with volumes goes through [`CYCLES`] restarts in turn: a reboot through the debug
//! service, ctrl-alt-delete, and a clean stop and start of QEMU on the same disk. Each
//! cycle must reach `node-ready` within [`NODE_READY_BUDGET`] and have every workload
//! back within [`WORKLOADS_BUDGET`] after that:
//! - the Deployment's pod runs a new container (started in this boot) and is Ready;
//! - the Job is still complete, with one success, and has not run again;
//! - the volumes pod runs a new container and is Ready, and reads its configMap and
//!   secret back through its emptyDir (written by this boot's container).
//!
//! A failing cycle fails the test through the session: the message carries the
//! conditions, the components' log tails and the console tail. The launcher keeps
//! the previous consoles of a stopped and started QEMU (`console.log.1`, ...) in the
//! state directory. The times of every cycle are printed at the end and at a failure.
//!
//! `#[ignore]`d and slow (about 2 minutes per cycle under TCG): `make soak` runs it,
//! and CI runs it only while enough of its time budget is left.

#[allow(dead_code)]
mod common;

use std::fmt::Write as _;
use std::thread;
use std::time::{Duration, Instant};

use common::kubernetes::{Session, KUBECTL_TIMEOUT};
use common::restart::{
    build_info, call_shutdown, press_ctrl_alt_delete, ready_container, restart_qemu,
    wait_next_boot, QemuStop, POLL,
};

/// Restarts in one run (`CAIRN_SOAK_CYCLES` overrides it).
const CYCLES: usize = 10;
/// From the restart request to `node-ready` (the budget under TCG, with a
/// margin for a loaded CI host).
const NODE_READY_BUDGET: Duration = Duration::from_secs(300);
/// From `node-ready` to every workload back.
const WORKLOADS_BUDGET: Duration = Duration::from_secs(240);
const NAMESPACE: &str = "default";
const WEB: &str = "soak-web";
const JOB: &str = "soak-job";
const VOLUMES: &str = "soak-volumes";
/// What the volumes pod reads back: the configMap's value, then the secret's.
const SEEN: &str = "from-config from-secret";
const REPORTED: &[&str] = &[
    "agent",
    "kubelet",
    "containerd",
    "kube-apiserver",
    "etcd",
    "controller-manager",
];

fn workloads() -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: {WEB}, namespace: {NAMESPACE}}}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: {WEB}}}
  template:
    metadata:
      labels: {{app: {WEB}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: localhost/cairn/toolbox:1
        imagePullPolicy: Never
        command: [\"sh\", \"-c\", \"mkdir -p /www && echo {WEB} > /www/index.html && exec httpd -f -p 80 -h /www\"]
---
apiVersion: batch/v1
kind: Job
metadata: {{name: {JOB}, namespace: {NAMESPACE}}}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: localhost/cairn/toolbox:1
        imagePullPolicy: Never
        command: [\"sh\", \"-c\", \"echo done\"]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: {VOLUMES}, namespace: {NAMESPACE}}}
data: {{value: from-config}}
---
apiVersion: v1
kind: Secret
metadata: {{name: {VOLUMES}, namespace: {NAMESPACE}}}
stringData: {{value: from-secret}}
---
apiVersion: v1
kind: Pod
metadata:
  name: {VOLUMES}
  namespace: {NAMESPACE}
  labels: {{app: {VOLUMES}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: localhost/cairn/toolbox:1
    imagePullPolicy: Never
    command: [\"sh\", \"-c\", \"echo $(cat /config/value) $(cat /secret/value) > /scratch/seen && exec sleep 1000000\"]
    volumeMounts:
    - {{name: config, mountPath: /config}}
    - {{name: secret, mountPath: /secret}}
    - {{name: scratch, mountPath: /scratch}}
  volumes:
  - name: config
    configMap: {{name: {VOLUMES}}}
  - name: secret
    secret: {{secretName: {VOLUMES}}}
  - name: scratch
    emptyDir: {{}}
"
    )
}

/// How a cycle restarts the node.
#[derive(Debug, Clone, Copy)]
enum Restart {
    DebugReboot,
    CtrlAltDelete,
    StopStart,
}

const ORDER: [Restart; 3] = [
    Restart::DebugReboot,
    Restart::CtrlAltDelete,
    Restart::StopStart,
];

/// One cycle's figures.
#[derive(Debug)]
struct Cycle {
    restart: Restart,
    node_ready: Duration,
    workloads: Duration,
}

/// The container IDs of this boot's workload pods.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Running {
    web: String,
    volumes: String,
}

#[test]
#[ignore = "restarts a node 10 times (about 20 minutes); run with `make soak`"]
fn every_restart_reaches_ready_with_all_workloads_back() {
    let cycles = std::env::var("CAIRN_SOAK_CYCLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(CYCLES);
    let session = Session::open().reporting(REPORTED);
    session.wait_true("node-ready", NODE_READY_BUDGET);
    session.wait_for_default_service_account(NAMESPACE);
    session.kubectl_ok_within(&["apply", "-f", "-"], &workloads(), KUBECTL_TIMEOUT);
    let job_pod = job_done(&session, WORKLOADS_BUDGET);
    let mut running = workloads_back(&session, None, WORKLOADS_BUDGET);
    let mut boot_id = build_info(&session).boot_id;
    // Boots in the node's console log: a guest reboot counts up (the fresh QEMU the
    // launcher starts appends to it), a stop and start begins a new log at 1.
    let mut qemu_boot = 1;
    let mut done: Vec<Cycle> = Vec::new();
    for n in 1..=cycles {
        let restart = ORDER[(n - 1) % ORDER.len()];
        eprintln!("soak: cycle {n}/{cycles}: {restart:?}");
        let started = Instant::now();
        boot_id = match restart {
            Restart::DebugReboot => {
                call_shutdown(&session);
                qemu_boot += 1;
                wait_next_boot(&session, qemu_boot, &boot_id)
            }
            Restart::CtrlAltDelete => {
                press_ctrl_alt_delete(&session);
                qemu_boot += 1;
                wait_next_boot(&session, qemu_boot, &boot_id)
            }
            Restart::StopStart => {
                qemu_boot = 1;
                restart_qemu(&session, QemuStop::Clean)
            }
        };
        let left = NODE_READY_BUDGET.saturating_sub(started.elapsed());
        if let Err(reason) = session.try_wait_true("node-ready", left) {
            session.fail(format!(
                "cycle {n} ({restart:?}): node-ready not within {NODE_READY_BUDGET:?} of \
                 the restart: {reason}\n{}",
                table(&done)
            ));
        }
        let node_ready = started.elapsed();
        let back = Instant::now();
        let now = workloads_back(&session, Some(&running), WORKLOADS_BUDGET);
        let again = job_done(&session, WORKLOADS_BUDGET);
        if again != job_pod {
            session.fail(format!(
                "cycle {n} ({restart:?}): the Job ran again: pod {again:?}, was {job_pod:?}"
            ));
        }
        running = now;
        done.push(Cycle {
            restart,
            node_ready,
            workloads: back.elapsed(),
        });
        eprintln!(
            "soak: cycle {n}: node-ready {:.1?} after the restart, workloads {:.1?} after that",
            node_ready,
            back.elapsed()
        );
    }
    eprintln!("{}", table(&done));
}

/// The cycles so far as a table (printed at the end, and in a failure's message).
fn table(cycles: &[Cycle]) -> String {
    let mut text = String::from("cycle  restart        node-ready  workloads\n");
    for (i, c) in cycles.iter().enumerate() {
        let _ = writeln!(
            text,
            "{:>5}  {:<13}  {:>9.1}s  {:>8.1}s",
            i + 1,
            format!("{:?}", c.restart),
            c.node_ready.as_secs_f64(),
            c.workloads.as_secs_f64()
        );
    }
    text
}

/// Waits until the Job is complete with exactly one success; returns the name of the
/// pod that ran it (the only one: a Job that ran again would have another).
fn job_done(session: &Session, budget: Duration) -> String {
    let deadline = Instant::now() + budget;
    let status = "jsonpath={.status.succeeded} {.status.failed} \
                  {.status.conditions[?(@.type==\"Complete\")].status}";
    let selector = format!("job-name={JOB}");
    loop {
        let job = session.kubectl_ok(&["get", "job", JOB, "-n", NAMESPACE, "-o", status]);
        let pods = session.kubectl_ok(&[
            "get",
            "pods",
            "-n",
            NAMESPACE,
            "-l",
            &selector,
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}{\"\\n\"}{end}",
        ]);
        let pods: Vec<&str> = pods.lines().filter(|l| !l.is_empty()).collect();
        if job.split_whitespace().collect::<Vec<_>>() == ["1", "True"] && pods.len() == 1 {
            return pods[0].to_owned();
        }
        if Instant::now() >= deadline {
            session.fail(format!(
                "the Job {JOB} is not complete with one success and one pod within \
                 {budget:?}: succeeded/failed/Complete {job:?}, pods {pods:?}"
            ));
        }
        thread::sleep(POLL * 2);
    }
}

/// Waits until the web and volumes pods each run a container other than the ones in
/// `previous` and are Ready, and the volumes pod read its configMap and secret in this
/// boot; returns the new container IDs.
fn workloads_back(session: &Session, previous: Option<&Running>, budget: Duration) -> Running {
    let deadline = Instant::now() + budget;
    loop {
        let (web, _) = ready_container(session, NAMESPACE, WEB, previous.map(|p| p.web.as_str()));
        let (volumes, _) = ready_container(
            session,
            NAMESPACE,
            VOLUMES,
            previous.map(|p| p.volumes.as_str()),
        );
        if let (Some(web), Some(volumes)) = (web, volumes) {
            let seen = session.kubectl(
                &[
                    "exec",
                    VOLUMES,
                    "-n",
                    NAMESPACE,
                    "--",
                    "cat",
                    "/scratch/seen",
                ],
                "",
            );
            let seen = String::from_utf8_lossy(&seen.stdout).trim().to_owned();
            if seen == SEEN {
                return Running { web, volumes };
            }
            if Instant::now() >= deadline {
                session.fail(format!(
                    "the {VOLUMES} pod runs again but reads {seen:?}, not {SEEN:?}"
                ));
            }
        }
        if Instant::now() >= deadline {
            let pods = session.kubectl(&["describe", "pods", "-n", NAMESPACE], "");
            session.fail(format!(
                "the workloads are not back within {budget:?} (previous containers \
                 {previous:?}):\n{}",
                common::kubernetes::describe(&pods)
            ));
        }
        thread::sleep(POLL * 2);
    }
}
