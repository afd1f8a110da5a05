//! Services: once the node is Ready, how long a new ClusterIP Service takes from
//! `kubectl apply` to the first request a pod gets answered through it by name (the
//! apiserver, the EndpointSlice controller, kube-proxy's sync and CoreDNS's watch all
//! lie on that path), repeated for several Services. The client is a toolbox pod that
//! retries `wget http://NAME/` until it is answered; the time includes one
//! `kubectl exec`, so the same exec running `true` is measured too and reported
//! beside it. Host clock.
//!
//! Then DNS latency from that pod: `fixtures/dns-probe.rs` (std only, compiled here
//! statically and copied in with `kubectl cp`, since busybox has no sub-second clock)
//! sends [`DNS_QUERIES`] queries one at a time to the `kube-dns` Service for a cluster
//! name and for a name outside the cluster, timing each on the pod's clock. Here the
//! outside name is NXDOMAIN (no internet), and the resolver behind QEMU's user network
//! sends it without an SOA record, which CoreDNS's cache does not keep (a denial
//! without an SOA is not cacheable): every query of it is forwarded. That resolver also
//! drops one query after every 50 it gets within a second from one client (measured
//! from the host itself, with no node involved: docs/architecture.md "Cluster DNS"),
//! so back-to-back queries of an outside name see a 2 s timeout about every 51st; the
//! outside name is therefore also measured at 25 ms between queries (40 a second).
//! Writes `services.{md,json}`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cairn_api::names::{condition, service};
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
/// Queries per name, and the names with the gap between two queries (ms): a
/// Service's, and one outside the cluster both back to back and paced below the rate
/// at which the resolver behind this host starts dropping queries (see the module doc).
const DNS_QUERIES: usize = 1000;
const DNS_NAMES: [(&str, &str, u64); 3] = [
    ("cluster name", "kubernetes.default.svc.cluster.local", 0),
    (
        "outside name (NXDOMAIN, forwarded), back to back",
        "cairn-bench.invalid",
        0,
    ),
    (
        "outside name (NXDOMAIN, forwarded), 25 ms apart",
        "cairn-bench.invalid",
        25,
    ),
];
const DNS_SERVER: &str = "10.96.0.10";
const PROBE: &str = include_str!("../fixtures/dns-probe.rs");

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
    /// Per name queried from the pod: microsecond quantiles and failures.
    pub dns: Vec<DnsLatency>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DnsLatency {
    pub what: String,
    pub name: String,
    pub queries: usize,
    /// Answered queries' round trips, microseconds (nearest rank).
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
    pub max_us: Option<u64>,
    /// Queries with no answer within 2 s.
    pub timeouts: usize,
    /// RCODE -> answers with it.
    pub rcodes: std::collections::BTreeMap<u8, usize>,
}

impl DnsLatency {
    /// From the probe's output lines (`MICROS RCODE` or `timeout`).
    pub fn parse(what: &str, name: &str, output: &str) -> Self {
        let mut micros = Vec::new();
        let mut timeouts = 0;
        let mut rcodes = std::collections::BTreeMap::new();
        for line in output.lines() {
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("timeout"), _) => timeouts += 1,
                (Some(us), Some(rcode)) => {
                    if let (Ok(us), Ok(rcode)) = (us.parse::<u64>(), rcode.parse::<u8>()) {
                        micros.push(us);
                        *rcodes.entry(rcode).or_insert(0) += 1;
                    }
                }
                _ => {}
            }
        }
        micros.sort_unstable();
        let rank = |q: f64| {
            (!micros.is_empty()).then(|| micros[((micros.len() - 1) as f64 * q).round() as usize])
        };
        DnsLatency {
            what: what.to_owned(),
            name: name.to_owned(),
            queries: micros.len() + timeouts,
            p50_us: rank(0.5),
            p99_us: rank(0.99),
            max_us: micros.last().copied(),
            timeouts,
            rcodes,
        }
    }
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
            booted.wait_true(name, UNTIL_TIMEOUT).await?;
        }
        let admin = Admin::new(&mut booted).await?;
        admin.namespace(NAMESPACE, "", POD_TIMEOUT).await?;
        let ns = ["-n", NAMESPACE];
        admin.apply(&setup()).await?;
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
        let dns = dns_latency(bench, &admin).await?;
        let results = Results {
            machine: Machine::describe(&accel.to_string()),
            dns,
            create_to_first_request: Summary::of(&create_to_first_request_s),
            create_to_first_request_s,
            exec_baseline: Summary::of(&exec_baseline_s),
            exec_baseline_s,
        };
        report::write(&bench.results, NAME, &markdown(&results), &results)
    })
}

/// The probe compiled, copied into the client pod and run for each name.
async fn dns_latency(bench: &Bench, admin: &Admin) -> Result<Vec<DnsLatency>, Error> {
    let dir = bench.work.join("dns-probe");
    std::fs::create_dir_all(&dir).map_err(Error::write(&dir))?;
    let probe = crate::floor::compile_static(&dir, "dns-probe", PROBE)?;
    let target = format!("{NAMESPACE}/client:/tmp/dns-probe");
    admin
        .run(&["cp", &probe.display().to_string(), &target])
        .await?;
    let exec = ["exec", "client", "-n", NAMESPACE, "--"];
    admin
        .run(&[&exec[..], &["chmod", "755", "/tmp/dns-probe"]].concat())
        .await?;
    let mut list = Vec::new();
    for (what, name, gap_ms) in DNS_NAMES {
        let (count, gap) = (DNS_QUERIES.to_string(), gap_ms.to_string());
        let probe = ["/tmp/dns-probe", DNS_SERVER, &count, name, &gap];
        let output = admin.run(&[&exec[..], &probe[..]].concat()).await?;
        let latency = DnsLatency::parse(what, name, &output);
        eprintln!(
            "cairn-bench: services: DNS {name}: p50 {:?} us, p99 {:?} us, {} timeouts",
            latency.p50_us, latency.p99_us, latency.timeouts
        );
        list.push(latency);
    }
    Ok(list)
}

/// A one-replica busybox httpd Deployment (`app: backend`) and an idle client pod.
fn setup() -> String {
    format!(
        "apiVersion: apps/v1
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
    body.push_str(&format!(
        "\nDNS from the pod to the `kube-dns` Service ({DNS_SERVER}), {DNS_QUERIES} \
         queries per name one at a time, round trip on the pod's clock, microseconds.\n\n\
         | name | queries | p50 | p99 | max | timeouts | answers by RCODE |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | --- |\n"
    ));
    for d in &results.dns {
        let us = |v: Option<u64>| v.map_or_else(|| "n/a".to_owned(), |v| v.to_string());
        let rcodes: Vec<String> = d.rcodes.iter().map(|(r, n)| format!("{r}: {n}")).collect();
        let _ = writeln!(
            body,
            "| {} `{}` | {} | {} | {} | {} | {} | {} |",
            d.what,
            d.name,
            d.queries,
            us(d.p50_us),
            us(d.p99_us),
            us(d.max_us),
            d.timeouts,
            rcodes.join(", ")
        );
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_output_gives_quantiles_timeouts_and_rcodes() {
        let mut text: String = (1..=100).map(|us| format!("{us} 0\n")).collect();
        text.push_str("timeout\n7 3\ngarbage\n");
        let d = DnsLatency::parse("x", "n", &text);
        assert_eq!(d.queries, 102);
        assert_eq!(d.timeouts, 1);
        assert_eq!(d.p50_us, Some(50));
        assert_eq!(d.p99_us, Some(99));
        assert_eq!(d.max_us, Some(100));
        assert_eq!(d.rcodes.get(&0), Some(&100));
        assert_eq!(d.rcodes.get(&3), Some(&1));
        assert_eq!(DnsLatency::parse("x", "n", "").p50_us, None);
    }
}
