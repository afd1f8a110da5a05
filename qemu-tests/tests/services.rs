//! Boot-level tests of Services and cluster DNS, as a new user tries them: a
//! Deployment of three busybox `httpd` replicas behind a ClusterIP Service answers by
//! its short name (the pod's search path) and by its full name, every replica in turn,
//! and only the remaining one after a scale-down; a headless Service resolves to the
//! pod addresses; `kubernetes.default.svc.cluster.local` is 10.96.0.1 and reaches the
//! apiserver's port; a name outside the cluster gets an answer, not a timeout; and a
//! NodePort answers from the host through the launcher's forward. kube-proxy and
//! CoreDNS killed with SIGKILL go false, come back true, and a Service keeps answering
//! meanwhile. A
//! node of its own whose only upstream resolver never answers keeps `cluster-dns`
//! ready, with that resolver named in the reason and no restart.
//!
//! One node for the file (`common/kubernetes.rs`); each test works in a namespace of
//! its own, so they share it. Clients are toolbox pods: busybox `wget` and `nslookup`
//! resolve through the pod's `/etc/resolv.conf`, which the kubelet writes from its
//! `clusterDNS`. Every wait has a deadline (`kubectl wait`, `kubectl rollout status`,
//! or a bounded poll where Kubernetes offers no watch for the awaited state: kube-proxy
//! programming a rule, a request answered by one replica).
//!
//! All `#[ignore]`d: `make test` runs them with `--ignored`.

#[allow(dead_code)]
mod common;

use std::collections::BTreeSet;
use std::sync::{OnceLock, RwLock, RwLockReadGuard};
use std::thread;
use std::time::{Duration, Instant};

use cairn_api::v1::{ListComponentsRequest, ListConditionsRequest, WaitConditionRequest};
use cairn_qemu::node::error_chain;
use cairn_qemu::Node;
use common::kubernetes::{
    describe, nslookup_addresses, Session, CALL_TIMEOUT, KUBECTL_TIMEOUT, NODE_PORT,
};
use serde_json::Value;

const NODE_READY_TIMEOUT: Duration = Duration::from_secs(300);
/// Scheduling, sandboxes and containers of a few pods at once under TCG.
const POD_TIMEOUT: Duration = Duration::from_secs(240);
/// From a change in the cluster (a Service, a scale-down) to the node's rules
/// following it: the EndpointSlice controller, then kube-proxy's next sync.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(90);
/// Between two tries of something that has no watch.
const RETRY: Duration = Duration::from_secs(1);
const TOOLBOX: &str = "localhost/cairn/toolbox:1";
const REPORTED: &[&str] = &["kube-proxy", "cluster-dns", "kubelet", "agent"];
/// How many requests the client makes to see every replica: with three endpoints
/// picked at random, all three answer in 40 requests but for a chance of 3·(2/3)^40.
const REQUESTS: usize = 40;

/// The restart test takes it to write while it kills kube-proxy and CoreDNS; the
/// others read it, so none of their lookups meets a DNS server that is down. The
/// silent-upstream test takes it to write too: its node of its own would compete
/// with the file's node for the CPUs.
static SERVICES_UP: RwLock<()> = RwLock::new(());

fn services_up() -> RwLockReadGuard<'static, ()> {
    SERVICES_UP.read().unwrap_or_else(|p| p.into_inner())
}

/// A session once the node is Ready and the Service proxy and cluster DNS are.
fn session() -> Session {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let session = Session::open().reporting(REPORTED);
    let ready = READY.get_or_init(|| {
        for name in ["node-ready", "kube-proxy", "cluster-dns"] {
            session.try_wait_true(name, NODE_READY_TIMEOUT)?;
        }
        Ok(())
    });
    if let Err(err) = ready {
        session.fail(err);
    }
    session
}

/// `text` as a YAML double-quoted scalar (JSON string syntax is one).
fn quoted(text: &str) -> String {
    Value::from(text).to_string()
}

/// A namespace, and its `default` service account for the pods.
fn namespace(session: &Session, name: &str) {
    let manifest = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n");
    apply(session, &manifest);
    session.wait_for_default_service_account(name);
}

fn apply(session: &Session, manifest: &str) {
    session.kubectl_ok_within(&["apply", "-f", "-"], manifest, KUBECTL_TIMEOUT);
}

/// A Deployment `name` of `replicas` busybox httpd pods (label `app: NAME`) serving
/// their own hostname on port 80. The preStop pause keeps a terminating replica
/// serving until kube-proxy has dropped it (what any real web server does).
fn web_deployment(ns: &str, name: &str, replicas: u32) -> String {
    let script = "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www";
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {ns}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{ app: {name} }}
  template:
    metadata:
      labels: {{ app: {name} }}
    spec:
      terminationGracePeriodSeconds: 15
      containers:
      - name: httpd
        image: {TOOLBOX}
        imagePullPolicy: Never
        command: [\"sh\", \"-c\", {script}]
        ports: [{{ containerPort: 80 }}]
        readinessProbe:
          tcpSocket: {{ port: 80 }}
          periodSeconds: 2
        lifecycle:
          preStop:
            exec: {{ command: [\"sleep\", \"10\"] }}
",
        script = quoted(script),
    )
}

/// A Service `name` for the pods labelled `app: APP`, port 80; `extra` is more of
/// its spec, already indented.
fn service(ns: &str, name: &str, app: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: {ns}
spec:
  selector: {{ app: {app} }}
  ports:
  - port: 80
    targetPort: 80
{extra}"
    )
}

/// A toolbox pod `client` that idles, for `kubectl exec`.
fn client_pod(ns: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: client
  namespace: {ns}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {TOOLBOX}
    imagePullPolicy: Never
    command: [\"sleep\", \"86400\"]
"
    )
}

fn wait_pod_ready(session: &Session, ns: &str, pod: &str) {
    let timeout = format!("--timeout={}s", POD_TIMEOUT.as_secs());
    let target = format!("pod/{pod}");
    let args = ["wait", "--for=condition=Ready", &target, "-n", ns, &timeout];
    let output = session.kubectl_within(&args, "", POD_TIMEOUT + KUBECTL_TIMEOUT);
    if !output.status.success() {
        let described = session.kubectl(&["describe", "pod", pod, "-n", ns], "");
        session.fail(format!(
            "pod {ns}/{pod} not Ready: {}\n--- describe ---\n{}",
            describe(&output),
            describe(&described)
        ));
    }
}

fn wait_rollout(session: &Session, ns: &str, deployment: &str) {
    let timeout = format!("--timeout={}s", POD_TIMEOUT.as_secs());
    let target = format!("deployment/{deployment}");
    let args = ["rollout", "status", &target, "-n", ns, &timeout];
    let output = session.kubectl_within(&args, "", POD_TIMEOUT + KUBECTL_TIMEOUT);
    if !output.status.success() {
        let described = session.kubectl(&["describe", "pods", "-n", ns], "");
        session.fail(format!(
            "deployment {ns}/{deployment} not rolled out: {}\n--- describe ---\n{}",
            describe(&output),
            describe(&described)
        ));
    }
}

/// `sh -c script` in the client pod; its stdout, whatever the exit code.
fn in_client(session: &Session, ns: &str, script: &str) -> String {
    let args = ["exec", "client", "-n", ns, "--", "sh", "-c", script];
    let output = session.kubectl_within(&args, "", KUBECTL_TIMEOUT * 2);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The pods labelled `app: APP` that are not being deleted: name -> pod IP.
fn live_pods(session: &Session, ns: &str, app: &str) -> Vec<(String, String)> {
    let selector = format!("app={app}");
    let text = session.kubectl_ok(&["get", "pods", "-n", ns, "-l", &selector, "-o", "json"]);
    let list: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| session.fail(format!("kubectl get pods: {e}: {text}")));
    let items = list["items"].as_array().cloned().unwrap_or_default();
    items
        .iter()
        .filter(|pod| pod["metadata"]["deletionTimestamp"].is_null())
        .map(|pod| {
            let name = pod["metadata"]["name"].as_str().unwrap_or_default();
            let ip = pod["status"]["podIP"].as_str().unwrap_or_default();
            (name.to_owned(), ip.to_owned())
        })
        .collect()
}

/// `count` requests to `url` from the client, one per line: the body, or `FAIL`.
/// Bounded by `timeout`, not wget's `-T`, which crashes this busybox's wget.
fn fetch_many(session: &Session, ns: &str, url: &str, count: usize) -> Vec<String> {
    let script =
        format!("for i in $(seq {count}); do timeout 10 wget -q -O - {url} || echo FAIL; done");
    let out = in_client(session, ns, &script);
    out.lines().map(str::to_owned).collect()
}

/// The A records `nslookup NAME` reports (busybox's format: `Address: IP` lines after
/// the `Name:` line; the server's own address comes before it).
fn resolve(session: &Session, ns: &str, name: &str) -> (BTreeSet<String>, String) {
    let out = in_client(session, ns, &format!("nslookup -type=a {name} 2>&1"));
    (nslookup_addresses(&out), out)
}

#[test]
#[ignore = "boots QEMU; run with `make test`"]
fn a_deployment_behind_a_service_answers_by_name_from_every_replica() {
    let _up = services_up();
    let session = session();
    let ns = "svc-web";
    namespace(&session, ns);
    apply(&session, &web_deployment(ns, "web", 3));
    apply(&session, &service(ns, "web", "web", ""));
    apply(
        &session,
        &service(ns, "web-headless", "web", "  clusterIP: None\n"),
    );
    apply(&session, &client_pod(ns));
    wait_rollout(&session, ns, "web");
    wait_pod_ready(&session, ns, "client");
    let pods = live_pods(&session, ns, "web");
    let names: BTreeSet<String> = pods.iter().map(|(name, _)| name.clone()).collect();
    if names.len() != 3 {
        session.fail(format!("expected 3 web pods, found {pods:?}"));
    }

    // The search path (svc-web.svc.cluster.local first) makes `web` the Service.
    let short = fetch_many(&session, ns, "http://web/", REQUESTS);
    let answered: BTreeSet<String> = short.iter().cloned().collect();
    if short.len() != REQUESTS || answered != names {
        session.fail(format!(
            "{REQUESTS} requests to http://web/ should be answered by every replica \
             {names:?} and nothing else; got {short:?}"
        ));
    }
    let full = fetch_many(&session, ns, "http://web.svc-web.svc.cluster.local/", 3);
    if full.len() != 3 || !full.iter().all(|body| names.contains(body)) {
        session.fail(format!("the full name did not reach a replica: {full:?}"));
    }

    // Headless: the name is the pods' addresses, no virtual IP.
    let ips: BTreeSet<String> = pods.iter().map(|(_, ip)| ip.clone()).collect();
    let (resolved, out) = resolve(&session, ns, "web-headless");
    if resolved != ips {
        session.fail(format!(
            "web-headless should resolve to the pod IPs {ips:?}; nslookup said:\n{out}"
        ));
    }

    // Scale down: requests keep succeeding, and soon only the remaining replica answers.
    session.kubectl_ok(&["scale", "deployment/web", "-n", ns, "--replicas=1"]);
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    let mut last;
    loop {
        let remaining: BTreeSet<String> = live_pods(&session, ns, "web")
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        last = fetch_many(&session, ns, "http://web/", 10);
        if last.len() != 10 || last.iter().any(|body| !names.contains(body)) {
            session.fail(format!(
                "a request failed while scaling down to one replica: {last:?}"
            ));
        }
        let answered: BTreeSet<String> = last.iter().cloned().collect();
        if remaining.len() == 1 && answered == remaining {
            break;
        }
        if Instant::now() >= deadline {
            session.fail(format!(
                "after scaling to 1 ({remaining:?} left), requests were still answered \
                 by {answered:?} after {CONVERGE_TIMEOUT:?}"
            ));
        }
        thread::sleep(RETRY);
    }
}

#[test]
#[ignore = "boots QEMU; run with `make test`"]
fn the_kubernetes_service_resolves_and_reaches_the_apiserver() {
    let _up = services_up();
    let session = session();
    let ns = "svc-dns";
    namespace(&session, ns);
    apply(&session, &client_pod(ns));
    wait_pod_ready(&session, ns, "client");
    let (resolved, out) = resolve(&session, ns, "kubernetes.default.svc.cluster.local");
    if resolved != BTreeSet::from(["10.96.0.1".to_owned()]) {
        session.fail(format!(
            "kubernetes.default.svc.cluster.local should be 10.96.0.1:\n{out}"
        ));
    }
    // The toolbox has no TLS 1.3 client; a plain HTTP request to the apiserver's TLS
    // port gets Go's own answer to that mistake, which only an HTTPS server of Go's
    // net/http (the apiserver, behind 10.96.0.1:443) gives.
    let reply = in_client(
        &session,
        ns,
        "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 10 kubernetes.default.svc 443",
    );
    if !reply.contains("Client sent an HTTP request to an HTTPS server") {
        session.fail(format!(
            "kubernetes.default.svc:443 did not answer as the apiserver: {reply:?}"
        ));
    }
}

#[test]
#[ignore = "boots QEMU; run with `make test`"]
fn a_name_outside_the_cluster_gets_an_answer_not_a_timeout() {
    let _up = services_up();
    let session = session();
    let ns = "svc-external";
    namespace(&session, ns);
    apply(&session, &client_pod(ns));
    wait_pod_ready(&session, ns, "client");
    // One try with a 2 s timeout: a timeout says "no servers could be reached".
    let name = "cairn-test.invalid";
    let out = in_client(
        &session,
        ns,
        &format!("nslookup -type=a -timeout=2 -retry=1 {name} 2>&1"),
    );
    let nxdomain = out.contains(&format!("can't find {name}: NXDOMAIN"));
    if !nxdomain && nslookup_addresses(&out).is_empty() {
        session.fail(format!(
            "{name} got neither NXDOMAIN nor an address within 2 s:\n{out}"
        ));
    }
}

#[test]
#[ignore = "boots QEMU; run with `make test`"]
fn a_node_port_answers_from_the_host() {
    let _up = services_up();
    let session = session();
    let ns = "svc-nodeport";
    namespace(&session, ns);
    apply(&session, &web_deployment(ns, "hello", 1));
    let extra = format!("  type: NodePort\n  ports:\n  - port: 80\n    nodePort: {NODE_PORT}\n");
    let manifest = format!(
        "apiVersion: v1
kind: Service
metadata:
  name: hello
  namespace: {ns}
spec:
  selector: {{ app: hello }}
{extra}"
    );
    apply(&session, &manifest);
    wait_rollout(&session, ns, "hello");
    let pods = live_pods(&session, ns, "hello");
    let [(pod, _)] = pods.as_slice() else {
        session.fail(format!("expected one hello pod, found {pods:?}"));
    };
    let host_port = (session.cluster.host_port(NODE_PORT))
        .unwrap_or_else(|| session.fail(format!("guest port {NODE_PORT} is not forwarded")));
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        match common::kubernetes::http_get(host_port) {
            Ok(body) if body.trim() == pod => return,
            Ok(body) => session.fail(format!("the NodePort answered {body:?}, not {pod}")),
            Err(err) if Instant::now() >= deadline => session.fail(format!(
                "127.0.0.1:{host_port} (NodePort {NODE_PORT}) did not answer within \
                 {CONVERGE_TIMEOUT:?}: {err}"
            )),
            Err(_) => thread::sleep(RETRY),
        }
    }
}

#[test]
#[ignore = "boots QEMU; run with `make test`"]
fn services_keep_answering_while_the_proxy_and_dns_restart() {
    let session = session();
    let ns = "svc-restart";
    namespace(&session, ns);
    apply(&session, &web_deployment(ns, "steady", 1));
    apply(&session, &service(ns, "steady", "steady", ""));
    apply(&session, &client_pod(ns));
    wait_rollout(&session, ns, "steady");
    wait_pod_ready(&session, ns, "client");
    let pods = live_pods(&session, ns, "steady");
    let [(pod, _)] = pods.as_slice() else {
        session.fail(format!("expected one steady pod, found {pods:?}"));
    };
    let cluster_ip = session.kubectl_ok(&[
        "get",
        "service",
        "steady",
        "-n",
        ns,
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    let by_ip = format!("http://{cluster_ip}/");
    let by_name = "http://steady/";
    // The Service answers before (kube-proxy has programmed it) ...
    wait_answers(&session, ns, by_name, pod);
    let _turn = SERVICES_UP.write().unwrap_or_else(|p| p.into_inner());
    for component in ["kube-proxy", "cluster-dns"] {
        let before = restarts(&session, component);
        session.signal(component, "SIGKILL");
        // The condition goes false with the process (the supervisor sees the exit at
        // once; the restart waits its back-off, then the new process must pass its
        // probe: more than a second here), then true again below.
        wait_false(&session, component);
        // ... and by its address right after kube-proxy dies: the rules stay in the
        // kernel, nothing removes them with the process.
        if component == "kube-proxy" {
            let answers = fetch_many(&session, ns, &by_ip, 3);
            if answers.iter().any(|body| body != pod) {
                session.fail(format!(
                    "{by_ip} stopped answering with kube-proxy killed: {answers:?}"
                ));
            }
        }
        wait_restarted(&session, component, before);
        session.wait_true(component, NODE_READY_TIMEOUT);
        wait_answers(&session, ns, by_name, pod);
    }
}

/// Polls `url` from the client until `pod` answers it, within [`CONVERGE_TIMEOUT`].
fn wait_answers(session: &Session, ns: &str, url: &str, pod: &str) {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        let answers = fetch_many(session, ns, url, 1);
        if answers.first().map(String::as_str) == Some(pod) {
            return;
        }
        if Instant::now() >= deadline {
            session.fail(format!(
                "{url} was not answered by {pod} within {CONVERGE_TIMEOUT:?}: {answers:?}"
            ));
        }
        thread::sleep(RETRY);
    }
}

/// Polls condition `component` until it is false, within [`CONVERGE_TIMEOUT`].
fn wait_false(session: &Session, component: &str) {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        let (status, reason) = session.condition(component);
        if !status {
            return;
        }
        if Instant::now() >= deadline {
            session.fail(format!(
                "{component} stayed true for {CONVERGE_TIMEOUT:?} after SIGKILL: {reason}"
            ));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// How often the supervisor has restarted `component`.
fn restarts(session: &Session, component: &str) -> u32 {
    session.component(component).restart_count
}

/// Waits until the supervisor has restarted `component` after `before` restarts.
fn wait_restarted(session: &Session, component: &str, before: u32) {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    while restarts(session, component) <= before {
        if Instant::now() >= deadline {
            session.fail(format!(
                "{component} was not restarted within {CONVERGE_TIMEOUT:?}"
            ));
        }
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
#[ignore = "boots QEMU; run with `make test`"]
fn an_sctp_service_leaves_the_proxy_ready_and_the_other_services_programmed() {
    let _up = services_up();
    let session = session();
    let ns = "svc-sctp";
    namespace(&session, ns);
    apply(&session, &web_deployment(ns, "web", 1));
    apply(&session, &client_pod(ns));
    wait_rollout(&session, ns, "web");
    wait_pod_ready(&session, ns, "client");
    let proxy = session.component("kube-proxy");
    // kube-proxy writes the whole ruleset in one nft transaction: a rule it cannot
    // write would fail every Service's update, not only this one's.
    let sctp = "apiVersion: v1
kind: Service
metadata:
  name: sctp
  namespace: svc-sctp
spec:
  selector: { app: web }
  ports:
  - { port: 9999, protocol: SCTP }
";
    apply(&session, sctp);
    // A Service created after it is programmed and answers.
    apply(&session, &service(ns, "after", "web", ""));
    let pods = live_pods(&session, ns, "web");
    let [(pod, _)] = pods.as_slice() else {
        session.fail(format!("expected one web pod, found {pods:?}"));
    };
    wait_answers(&session, ns, "http://after/", pod);
    let (ready, reason) = session.condition("kube-proxy");
    let now = session.component("kube-proxy");
    if !ready || now.restart_count != proxy.restart_count {
        session.fail(format!(
            "kube-proxy after the SCTP Service: ready {ready} ({reason}), restarts {} -> {}",
            proxy.restart_count, now.restart_count
        ));
    }
    let log = session.log_tail("kube-proxy", 500).unwrap_or_default();
    if let Some(line) = log
        .iter()
        .find(|line| line.to_lowercase().contains("sync failed"))
    {
        session.fail(format!(
            "kube-proxy failed a sync after the SCTP Service: {line}"
        ));
    }
}

/// The launcher's `ip=` with the name server moved to an address nothing answers
/// from: 10.0.2.99 is no host on QEMU's user network. The agent takes the last `ip=`.
const SILENT_UPSTREAM_IP: &str = "ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off:10.0.2.99";
const SILENT_UPSTREAM_NOTE: &str = "upstream resolver 10.0.2.99:53 does not answer \
    (2 queries, 1s each): names outside the cluster fail";

#[test]
#[ignore = "boots QEMU; run with `make test`"]
fn an_upstream_resolver_that_never_answers_is_named_in_the_cluster_dns_reason() {
    let _turn = SERVICES_UP.write().unwrap_or_else(|p| p.into_inner());
    let mut config = common::fresh_config("services-silent-upstream");
    config.extra_cmdline.push(SILENT_UPSTREAM_IP.to_owned());
    config.api_forward = false;
    let mut node = Node::start(&config).unwrap_or_else(|err| panic!("{}", error_chain(&err)));
    node.wait_ready(common::READY_TIMEOUT)
        .unwrap_or_else(|err| common::fail(&node, error_chain(&err)));
    let endpoint = (node.debug_endpoint())
        .unwrap_or_else(|| common::fail(&node, "no debug forward"))
        .to_owned();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let checked = runtime.block_on(async {
        let mut client = cairn_api::connect_within(&endpoint, CALL_TIMEOUT)
            .await
            .map_err(|err| error_chain(&err))?;
        let request = WaitConditionRequest {
            name: "cluster-dns".to_owned(),
            timeout_ms: NODE_READY_TIMEOUT.as_millis() as u32,
        };
        let wait = client.wait_condition(request);
        (tokio::time::timeout(NODE_READY_TIMEOUT + CALL_TIMEOUT, wait).await)
            .map_err(|_| "cluster-dns: WaitCondition did not answer".to_owned())?
            .map_err(|status| format!("cluster-dns never turned true: {status}"))?;
        // The probe that turned it true checked the upstream too, so the note is
        // there from the first true; read the reason and the process it names now.
        let conditions = client
            .list_conditions(ListConditionsRequest {
                names: vec!["cluster-dns".to_owned()],
            })
            .await
            .map_err(|status| status.to_string())?
            .into_inner()
            .conditions;
        let components = client
            .list_components(ListComponentsRequest {})
            .await
            .map_err(|status| status.to_string())?
            .into_inner()
            .components;
        let dns = (components.iter())
            .find(|c| c.name == "cluster-dns")
            .ok_or("no component cluster-dns")?;
        let reason = conditions.first().map(|c| (c.status, c.reason.clone()));
        let pid = dns.pid.unwrap_or_default();
        let want = (true, format!("ready (pid {pid}); {SILENT_UPSTREAM_NOTE}"));
        if reason.as_ref() != Some(&want) {
            return Err(format!("cluster-dns is {reason:?}, want {want:?}"));
        }
        // Ready, not crash-looping on the bad upstream.
        if dns.restart_count != 0 {
            return Err(format!("cluster-dns restarted {} times", dns.restart_count));
        }
        Ok::<(), String>(())
    });
    if let Err(err) = checked {
        common::fail(&node, err);
    }
}
