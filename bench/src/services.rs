//! Services: once the node is Ready, how long a new ClusterIP Service takes from
//! `kubectl apply` to the first request a pod gets answered through it by name (the
//! apiserver, the EndpointSlice controller, kube-proxy's sync and CoreDNS's watch all
//! lie on that path), repeated for several Services. The client is a toolbox pod that
//! retries `wget http://NAME/` until it is answered; the time includes one
//! `kubectl exec`, so the same exec running `true` is measured too and reported
//! beside it. Host clock. Writes `services.{md,json}`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cairn_api::names::{condition, service};
use cairn_api::v1::WaitConditionRequest;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::first_pod::Admin;
use crate::node::{self, Bench};
use crate::report::{self, Machine};
use crate::stats::Summary;

pub const NAME: &str = "services";
const UNTIL_TIMEOUT: Duration = Duration::from_secs(600);
/// Scheduling and starting the backend and the client under TCG.
const POD_TIMEOUT: &str = "--timeout=300s";
const NAMESPACE: &str = "bench-services";
/// How long the client retries one new Service (seconds, inside the pod).
const FIRST_REQUEST_TIMEOUT: u32 = 120;

#[derive(Debug, Serialize, Deserialize)]
pub struct Results {
    pub machine: Machine,
    /// Seconds from `kubectl apply` of a Service to the first answered request, per
    /// Service.
    pub create_to_first_request_s: Vec<f64>,
    pub create_to_first_request: Option<Summary>,
    /// Seconds of `kubectl exec client -- true`, the part of each figure that is exec.
    pub exec_baseline_s: Vec<f64>,
    pub exec_baseline: Option<Summary>,
}

pub fn run(bench: &Bench, services: usize) -> Result<PathBuf, Error> {
    let accel = bench.single_accel()?;
    node::runtime()?.block_on(async {
        let mut booted = bench.boot(NAME, accel).await?;
        for name in [
            condition::NODE_READY,
            service::KUBE_PROXY,
            service::CLUSTER_DNS,
        ] {
            let wait = WaitConditionRequest {
                name: name.to_owned(),
                timeout_ms: UNTIL_TIMEOUT.as_millis() as u32,
            };
            let call = booted.client.wait_condition(wait);
            node::call(
                NAME,
                "WaitCondition",
                UNTIL_TIMEOUT + node::WAIT_MARGIN,
                call,
            )
            .await?;
        }
        let admin = Admin::new(&mut booted).await?;
        admin.apply(&setup()).await?;
        let ns = ["-n", NAMESPACE];
        let rollout = ["rollout", "status", "deployment/backend", POD_TIMEOUT];
        admin.run(&[&rollout[..], &ns[..]].concat()).await?;
        let ready = ["wait", "--for=condition=Ready", "pod/client", POD_TIMEOUT];
        admin.run(&[&ready[..], &ns[..]].concat()).await?;

        let mut exec_baseline_s = Vec::new();
        for _ in 0..services {
            let started = Instant::now();
            admin
                .run(&["exec", "client", "-n", NAMESPACE, "--", "true"])
                .await?;
            exec_baseline_s.push(started.elapsed().as_secs_f64());
        }
        let mut create_to_first_request_s = Vec::new();
        for index in 0..services {
            let name = format!("svc-{index}");
            let started = Instant::now();
            admin.apply(&service_manifest(&name)).await?;
            let script = format!(
                "timeout {FIRST_REQUEST_TIMEOUT} sh -c \
                 'until timeout 5 wget -q -O /dev/null http://{name}/; do :; done'"
            );
            admin
                .run(&["exec", "client", "-n", NAMESPACE, "--", "sh", "-c", &script])
                .await?;
            let took = started.elapsed().as_secs_f64();
            eprintln!("cairn-bench: services: {name} answered {took:.2}s after apply");
            create_to_first_request_s.push(took);
        }
        let results = Results {
            machine: Machine::describe(&accel.to_string()),
            create_to_first_request: Summary::of(&create_to_first_request_s),
            create_to_first_request_s,
            exec_baseline: Summary::of(&exec_baseline_s),
            exec_baseline_s,
        };
        report::write(&bench.results, NAME, &markdown(&results), &results)
    })
}

/// The namespace, a one-replica busybox httpd Deployment (`app: backend`) and an idle
/// client pod.
fn setup() -> String {
    format!(
        "apiVersion: v1
kind: Namespace
metadata: {{ name: {NAMESPACE} }}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{ name: backend, namespace: {NAMESPACE} }}
spec:
  selector: {{ matchLabels: {{ app: backend }} }}
  template:
    metadata: {{ labels: {{ app: backend }} }}
    spec:
      containers:
      - name: httpd
        image: localhost/cairn/toolbox:1
        imagePullPolicy: Never
        command: [sh, -c, 'mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www']
---
apiVersion: v1
kind: Pod
metadata: {{ name: client, namespace: {NAMESPACE} }}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: localhost/cairn/toolbox:1
    imagePullPolicy: Never
    command: [sleep, '86400']
"
    )
}

fn service_manifest(name: &str) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata: {{ name: {name}, namespace: {NAMESPACE} }}
spec:
  selector: {{ app: backend }}
  ports: [{{ port: 80 }}]
"
    )
}

pub fn markdown(results: &Results) -> String {
    report::page(
        "Services: a new Service answers",
        &results.machine,
        &body(results),
    )
}

/// The figures, for this page and RESULTS.md.
pub fn body(results: &Results) -> String {
    let mut body = String::from(
        "A new ClusterIP Service, from `kubectl apply` to the first request a pod \
         gets answered through it by name (host clock, seconds). Each figure includes \
         one `kubectl exec`; the exec alone is the second row.\n\n\
         | | count | median | min | max |\n| --- | ---: | ---: | ---: | ---: |\n",
    );
    for (label, summary) in [
        (
            "apply -> first answered request",
            &results.create_to_first_request,
        ),
        ("`kubectl exec client -- true`", &results.exec_baseline),
    ] {
        match summary {
            Some(s) => {
                let _ = writeln!(
                    body,
                    "| {label} | {} | {:.2} | {:.2} | {:.2} |",
                    s.count, s.median, s.min, s.max
                );
            }
            None => {
                let _ = writeln!(body, "| {label} | 0 | n/a | | |");
            }
        }
    }
    body
}
