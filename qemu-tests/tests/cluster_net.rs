//! Two nodes on one cluster segment (docs/interfaces.md "Cluster network" and
//! "Workers"): each boots with a second NIC on the same loopback multicast segment and
//! a `[cluster]` address in its node config. Node A is a control-plane node; node B a
//! worker that joins it with a join token from A (`CreateJoinToken`, what `dbg
//! join-token` asks for). Checked from outside: the ready lines list `eth1` with each
//! address; B's `joined` says it pinned A's CA and A accepted the token; B's kubelet got
//! its client certificate by CSR with the token; both Nodes are Ready with their
//! cluster addresses as InternalIP, B's named after B's key; a pod on B resolves a
//! cluster name through A's cluster DNS, across the segment, and its log comes back
//! through B's kubelet, whose serving certificate A's agent approved. A third node, C,
//! given a wrong token secret, never joins, and its `joined` says A refused the token.
//! B's token is spent once B registered: its Secret is gone and the apiserver refuses
//! it. The pod network spans both nodes: each Node has a pod CIDR of its own, a
//! Deployment spread over A and B answers a client pod on each node through its
//! Service's DNS name, each replica seeing the client's own pod address, and a pod on
//! B is still a pod at A's address (A's debug port closes on it).
//! Last, B loses power: its Node leaves Ready and a replica that tolerates that for
//! 10 s is rescheduled on A; powered on, B rejoins offline, as the same Node, with no
//! new client CSR.
//!
//! Node A also shows what a join token is made of (docs/interfaces.md "Join tokens"):
//! a bootstrap-token Secret that authenticates as `system:bootstrap:<id>`, its CA hash
//! pins A's cluster CA, and with it a kubelet-client CSR is approved and signed by that
//! CA; a token that expired authenticates no more (401).

#[allow(dead_code)]
mod common;

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use rustls_pki_types::pem::PemObject as _;
use sha2::Digest as _;

use cairn_api::node_config::{Cluster as ClusterSettings, Join, Role};
use cairn_qemu::node::error_chain;
use cairn_qemu::{ClusterNic, ForwardRequest, Mac, Node, NodeConfig};
use common::kubernetes::{Cluster, Session, KUBECTL_TIMEOUT, SERVICE_ACCOUNT_TIMEOUT};

const A_ADDRESS: &str = "192.168.100.10";
const B_ADDRESS: &str = "192.168.100.11";
const C_ADDRESS: &str = "192.168.100.12";
const PREFIX: u8 = 24;
const WRONG_SECRET: &str = "0000000000000000";
/// Two TCG guests share the host's two CPUs: each boots at about half speed.
const READY_TIMEOUT: Duration = Duration::from_secs(240);
const NODE_READY: Duration = Duration::from_secs(400);
const POD_DONE: Duration = Duration::from_secs(240);
/// Four pods over two nodes, and routes and kube-proxy following them.
const SPREAD_TIMEOUT: Duration = Duration::from_secs(240);
const TOOLBOX: &str = "localhost/cairn/toolbox:1";

struct Pair {
    /// The control-plane node.
    a: Cluster,
    /// A worker that joined A with [`Pair::join`].
    b: Cluster,
    join: Join,
    /// How B was started, to power it on again.
    b_config: NodeConfig,
    /// A worker given A's CA hash and token id but a wrong secret.
    c: Cluster,
}

/// The pair, booted side by side on first use.
fn pair() -> &'static Pair {
    static PAIR: OnceLock<Result<Pair, String>> = OnceLock::new();
    match PAIR.get_or_init(boot_pair) {
        Ok(pair) => pair,
        Err(err) => panic!("the nodes did not boot: {err}"),
    }
}

fn boot_pair() -> Result<Pair, String> {
    // A group and port of this run's own: other runs on the host stay off the segment.
    let port = 40_000 + (std::process::id() % 20_000) as u16;
    let segment = ClusterNic::parse_segment(&format!("239.255.77.1:{port}"))?;
    let start = |name: &str,
                 cluster: ClusterSettings,
                 mac: [u8; 6]|
     -> Result<(Node, NodeConfig), String> {
        let mut config = common::fresh_config(name);
        config.settings = Some(cairn_qemu::config::Settings {
            cluster: Some(cluster),
            ..Default::default()
        });
        config.cluster_nic = Some(ClusterNic {
            segment,
            mac: Mac(mac),
        });
        let node = Node::start(&config).map_err(|e| format!("{name}: {}", error_chain(&e)))?;
        Ok((node, config))
    };
    let settings = |address: &str| ClusterSettings {
        address: format!("{address}/{PREFIX}"),
        device: ClusterSettings::DEFAULT_DEVICE.to_owned(),
        role: Role::ControlPlane,
        join: None,
    };
    let (a, _) = start(
        "cluster-net-a",
        settings(A_ADDRESS),
        [0x52, 0x54, 0x00, 0xca, 0x00, 0x0a],
    )?;
    let a = ready(a)?;
    // The worker's credential, as `dbg join-token` gets it (the debug surface here).
    let join = cairn_qemu::join::join_credential(&a.debug_endpoint, NODE_READY)?;
    let (b, b_config) = start(
        "cluster-net-b",
        ClusterSettings {
            role: Role::Worker,
            join: Some(join.clone()),
            ..settings(B_ADDRESS)
        },
        [0x52, 0x54, 0x00, 0xca, 0x00, 0x0b],
    )?;
    let (id, _) = join.token.split_once('.').ok_or("a token without a dot")?;
    let (c, _) = start(
        "cluster-net-c",
        ClusterSettings {
            role: Role::Worker,
            join: Some(Join {
                token: format!("{id}.{WRONG_SECRET}"),
                ..join.clone()
            }),
            ..settings(C_ADDRESS)
        },
        [0x52, 0x54, 0x00, 0xca, 0x00, 0x0c],
    )?;
    Ok(Pair {
        a,
        b: ready(b)?,
        b_config,
        c: ready(c)?,
        join,
    })
}

fn ready(mut node: Node) -> Result<Cluster, String> {
    let ready = node
        .wait_ready(READY_TIMEOUT)
        .map_err(|e| error_chain(&e))?;
    Ok(Cluster {
        debug_endpoint: node.debug_endpoint().ok_or("no debug forward")?.to_owned(),
        api_endpoint: node
            .api_endpoint()
            .ok_or("no apiserver forward")?
            .to_owned(),
        node: Mutex::new(node),
        ready,
    })
}

#[test]
#[ignore = "boots QEMU; run with `make test`"]
fn a_worker_joins_over_the_segment_and_is_a_ready_node_named_by_its_key() {
    let pair = pair();
    for (cluster, address) in [(&pair.a, A_ADDRESS), (&pair.b, B_ADDRESS)] {
        let expected = format!("eth1 {address}/{PREFIX}");
        if !cluster.ready.addresses.contains(&expected) {
            Session::open_on(cluster).fail(format!(
                "CAIRN_READY addresses {:?} lack {expected:?}",
                cluster.ready.addresses
            ));
        }
    }
    let (a, b) = (Session::open_on(&pair.a), Session::open_on(&pair.b));
    let b = b.reporting(&["agent", "kubelet", "kube-proxy"]);
    let id = pair.join.token.split('.').next().unwrap_or_default();

    // B pinned A's CA and A accepted its token; B's kubelet bootstrapped from there.
    let joined = b.wait_true("joined", NODE_READY);
    let accepted = format!(
        "cluster CA {} pinned; join token accepted by https://{A_ADDRESS}:6443 as \
         system:bootstrap:{id}; the kubelet requests its client certificate",
        pair.join.ca_hash
    );
    if joined.reason != accepted {
        b.fail(format!("joined: {:?}, not {accepted:?}", joined.reason));
    }
    b.wait_true("node-ready", NODE_READY);
    let b_name = format!("cairn-{}", pair.b.ready.node_id);
    the_token_is_spent(&a, &pair.join.token, &b_name);
    for (session, name, address) in [
        (&a, format!("cairn-{}", pair.a.ready.node_id), A_ADDRESS),
        (&a, b_name.clone(), B_ADDRESS),
    ] {
        let node = session.kubectl_ok(&[
            "get",
            "node",
            &name,
            "-o",
            "jsonpath={.status.addresses[?(@.type==\"InternalIP\")].address} \
             {.status.conditions[?(@.type==\"Ready\")].status}",
        ]);
        if node.trim() != format!("{address} True") {
            session.fail(format!(
                "Node {name}: InternalIP and Ready are {node:?}, not {address} True"
            ));
        }
    }
    // As a node, B may read only what its pods need (Node authorizer, NodeRestriction):
    // not a Secret no pod of its uses.
    let forbidden = a.kubectl(
        &[
            "get",
            "secret",
            "-n",
            "kube-system",
            &format!("bootstrap-token-{id}"),
            &format!("--as=system:node:{b_name}"),
            "--as-group=system:nodes",
        ],
        "",
    );
    let refusal = String::from_utf8_lossy(&forbidden.stderr);
    if forbidden.status.success() || !refusal.contains("Forbidden") {
        a.fail(format!(
            "B read a Secret bound to none of its pods: {}",
            common::kubernetes::describe(&forbidden)
        ));
    }
    // B's client certificate came by CSR with the token, approved for B's name.
    let csrs = signed_by(&a, CLIENT_SIGNER);
    let client_csr =
        (csrs.iter()).find(|csr| csr["spec"]["username"] == format!("system:bootstrap:{id}"));
    let approved = client_csr.is_some_and(|csr| {
        (csr["status"]["conditions"].as_array().into_iter().flatten())
            .any(|c| c["type"] == "Approved" && c["status"] == "True")
            && csr["status"]["certificate"].is_string()
    });
    if !approved {
        a.fail(format!(
            "no approved, issued client CSR from the token: {csrs:#?}"
        ));
    }

    // A pod on B resolves a cluster name: B's kube-proxy sends the query for the DNS
    // Service to A's cluster DNS, across the segment, and the answer comes back.
    a.wait_for_default_service_account("kube-system");
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: worker-probe\n  namespace: kube-system\n\
         spec:\n  nodeName: {b_name}\n  restartPolicy: Never\n  containers:\n  - name: probe\n    \
         image: localhost/cairn/toolbox:1\n    command: [\"sh\", \"-c\", \
         \"nslookup kubernetes.default.svc.cluster.local | grep -w 10.96.0.1\"]\n"
    );
    a.kubectl_ok_within(&["apply", "-f", "-"], &manifest, SERVICE_ACCOUNT_TIMEOUT);
    let done = a.kubectl_within(
        &[
            "wait",
            "-n",
            "kube-system",
            "--for=jsonpath={.status.phase}=Succeeded",
            "pod/worker-probe",
            &format!("--timeout={}s", POD_DONE.as_secs()),
        ],
        "",
        POD_DONE + Duration::from_secs(30),
    );
    if !done.status.success() {
        let pod = a.kubectl(
            &["get", "-n", "kube-system", "pod/worker-probe", "-o", "yaml"],
            "",
        );
        b.fail(format!(
            "the pod on B did not resolve kubernetes.default through A's cluster DNS: {}\n{}",
            common::kubernetes::describe(&done),
            String::from_utf8_lossy(&pod.stdout)
        ));
    }
    // Its log comes through A's apiserver from B's kubelet, whose serving certificate
    // A's agent approved for B's name and address.
    let logs = a.kubectl(&["logs", "-n", "kube-system", "worker-probe"], "");
    let output = String::from_utf8_lossy(&logs.stdout);
    if !logs.status.success() || !output.contains("10.96.0.1") {
        b.fail(format!(
            "kubectl logs of the pod on B: {}",
            common::kubernetes::describe(&logs)
        ));
    }
    let csrs = signed_by(&a, "kubernetes.io/kubelet-serving");
    let serving =
        (csrs.iter()).find(|csr| csr["spec"]["username"] == format!("system:node:{b_name}"));
    let approved_by_agent = serving.is_some_and(|csr| {
        (csr["status"]["conditions"].as_array().into_iter().flatten()).any(|c| {
            c["type"] == "Approved"
                && c["reason"] == "CairnNodeServing"
                && c["message"]
                    == format!(
                        "node {b_name}: names [\"{b_name}\"] and addresses [\"{B_ADDRESS}\"] are \
                         its own"
                    )
        })
    });
    if !approved_by_agent {
        a.fail(format!(
            "B's serving CSR was not approved by A's agent: {csrs:#?}"
        ));
    }

    pods_spread_over_both_nodes_reach_each_other(&a, &b, &b_name);

    // B loses power: its Node goes NotReady, and a pod that tolerates an unreachable
    // node for 10 s is rescheduled on A. Powered on, B rejoins offline with the client
    // certificate on its data disk, as the same Node, and asks for no new client
    // certificate.
    let client_csrs = || signed_by(&a, CLIENT_SIGNER).len();
    let before = client_csrs();
    a_pod_moves_off_a_powered_off_worker(&a, pair, &b_name);
    common::restart::wait_debug_service(&b, "");
    let joined = b.wait_true("joined", NODE_READY);
    let earlier =
        format!("joined earlier as system:node:{b_name}; client certificate valid until ");
    if !joined.reason.starts_with(&earlier) {
        b.fail(format!("joined after the power cut: {:?}", joined.reason));
    }
    b.wait_true("node-ready", NODE_READY);
    let after = client_csrs();
    if after != before {
        a.fail(format!(
            "B's power cycle made client CSRs: {before} before, {after} after"
        ));
    }
}

/// How long a powered-off worker's Node may take to leave Ready: the
/// controller-manager's `--node-monitor-grace-period` (50 s), with room for TCG.
const NOT_READY_WITHIN: Duration = Duration::from_secs(120);

/// Runs a one-replica Deployment that prefers B and tolerates an unreachable or
/// not-ready node for 10 s, cuts B's power (SIGKILL of its QEMU), waits for B's Node
/// to leave Ready and for the replica to run on A, then starts B's QEMU again on the
/// same disk and host ports and waits for its agent.
fn a_pod_moves_off_a_powered_off_worker(a: &Session, pair: &Pair, b_name: &str) {
    let ns = "spread";
    let toleration = |key: &str| {
        format!(
            "      - {{ key: node.kubernetes.io/{key}, operator: Exists, effect: NoExecute, \
             tolerationSeconds: 10 }}\n"
        )
    };
    let manifest = format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{ name: moved, namespace: {ns} }}
spec:
  replicas: 1
  selector: {{ matchLabels: {{ app: moved }} }}
  template:
    metadata: {{ labels: {{ app: moved }} }}
    spec:
      terminationGracePeriodSeconds: 1
      affinity:
        nodeAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 100
            preference:
              matchExpressions:
              - {{ key: kubernetes.io/hostname, operator: In, values: [{b_name}] }}
      tolerations:
{}{}      containers:
      - {{ name: main, image: {TOOLBOX}, imagePullPolicy: Never, command: [sleep, \"86400\"] }}
",
        toleration("unreachable"),
        toleration("not-ready"),
    );
    a.kubectl_ok_within(&["apply", "-f", "-"], &manifest, KUBECTL_TIMEOUT);
    let timeout = format!("--timeout={}s", SPREAD_TIMEOUT.as_secs());
    let args = ["rollout", "status", "deployment/moved", "-n", ns, &timeout];
    let done = a.kubectl_within(&args, "", SPREAD_TIMEOUT + KUBECTL_TIMEOUT);
    if !done.status.success() {
        a.fail(format!(
            "deployment moved: {}",
            common::kubernetes::describe(&done)
        ));
    }
    // Running and Ready replicas of `moved`, by node.
    let running_on = || {
        let listed = a.kubectl_ok(&[
            "get",
            "pods",
            "-n",
            ns,
            "-l",
            "app=moved",
            "-o",
            "jsonpath={range .items[*]}{.spec.nodeName} {.metadata.deletionTimestamp} \
             {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
        ]);
        (listed.lines())
            .filter_map(|line| {
                let words: Vec<&str> = line.split_whitespace().collect();
                // No deletion timestamp: name, then Ready.
                (words.len() == 2 && words[1] == "True").then(|| words[0].to_owned())
            })
            .collect::<Vec<_>>()
    };
    let placed = running_on();
    if placed != [b_name.to_owned()] {
        a.fail(format!("the replica that prefers B runs on {placed:?}"));
    }

    let forwards: Vec<ForwardRequest> = {
        let mut node = pair.b.node.lock().unwrap_or_else(|p| p.into_inner());
        let forwards = (node.record().forwards.iter())
            .map(|f| ForwardRequest {
                host: Some(f.host),
                guest: f.guest,
            })
            .collect();
        if let Err(err) = node.kill() {
            a.fail(format!("cannot cut B's power: {err}"));
        }
        forwards
    };
    let a_name = format!("cairn-{}", a.cluster.ready.node_id);
    let ready_status = || {
        a.kubectl_ok(&[
            "get",
            "node",
            b_name,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ])
    };
    let cut = std::time::Instant::now();
    loop {
        let status = ready_status();
        if status.trim() != "True" {
            eprintln!(
                "B's Node is Ready={status} {:.0?} after the power cut",
                cut.elapsed()
            );
            break;
        }
        if cut.elapsed() > NOT_READY_WITHIN {
            a.fail(format!(
                "B's Node is still Ready {NOT_READY_WITHIN:?} after its power cut"
            ));
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    loop {
        let placed = running_on();
        if placed == [a_name.clone()] {
            eprintln!(
                "the replica runs on A {:.0?} after the power cut",
                cut.elapsed()
            );
            break;
        }
        if cut.elapsed() > NOT_READY_WITHIN + SPREAD_TIMEOUT {
            let pods = a.kubectl(&["get", "pods", "-n", ns, "-o", "wide"], "");
            a.fail(format!(
                "the replica was not rescheduled on A: ready on {placed:?}\n{}",
                common::kubernetes::describe(&pods)
            ));
        }
        std::thread::sleep(Duration::from_secs(2));
    }

    let mut config = pair.b_config.clone();
    config.forwards = forwards;
    let mut restarted =
        Node::start(&config).unwrap_or_else(|e| a.fail(format!("B's power on: {e}")));
    if let Err(err) = restarted.wait_ready(READY_TIMEOUT) {
        a.fail(format!("no CAIRN_READY from B after its power on: {err}"));
    }
    let mut node = pair.b.node.lock().unwrap_or_else(|p| p.into_inner());
    // The old handle's QEMU is gone; detached, its drop leaves the new one's files.
    std::mem::replace(&mut *node, restarted).detach();
}

/// Join tokens are single-use: once B registered, A's agent deleted the token's
/// Secret, and the apiserver refuses the token.
fn the_token_is_spent(a: &Session, token: &str, b_name: &str) {
    let id = token.split('.').next().unwrap_or_default();
    let secret = format!("bootstrap-token-{id}");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let get = a.kubectl(&["get", "secret", "-n", "kube-system", &secret], "");
        if String::from_utf8_lossy(&get.stderr).contains("NotFound") {
            break;
        }
        if std::time::Instant::now() > deadline {
            a.fail(format!(
                "the Secret of the token B ({b_name}) joined with is still there a minute \
                 after B registered: {}",
                common::kubernetes::describe(&get)
            ));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let output = whoami(a, &token_kubeconfig(a, token));
    if output.status.success() || !String::from_utf8_lossy(&output.stderr).contains("Unauthorized")
    {
        a.fail(format!(
            "the spent token still authenticates: {}",
            common::kubernetes::describe(&output)
        ));
    }
}

/// The host-gateway pod network (docs/architecture.md "Pod network"): each Node has a
/// pod CIDR of its own and its pods' addresses come from it; each node's agent routes
/// the other's CIDR via its cluster address. A Deployment whose two replicas may not
/// share a node (required anti-affinity) spreads over A and B; a client pod on each
/// node asks the Service by its DNS name until both replicas answered, and each
/// replica reports the client's own pod address as the peer (no SNAT between pods,
/// also across the segment).
fn pods_spread_over_both_nodes_reach_each_other(a: &Session, b: &Session, b_name: &str) {
    let a_name = format!("cairn-{}", a.cluster.ready.node_id);
    let nodes = [a_name.clone(), b_name.to_owned()];
    let pod_cidrs: Vec<String> = (nodes.iter())
        .map(|n| a.kubectl_ok(&["get", "node", n, "-o", "jsonpath={.spec.podCIDR}"]))
        .collect();
    if pod_cidrs[0] == pod_cidrs[1] || pod_cidrs.iter().any(|c| !c.starts_with("10.88.")) {
        a.fail(format!("the Nodes' pod CIDRs are {pod_cidrs:?}"));
    }
    // Each agent routes the other node's CIDR via its address, and says so.
    for (session, peer, cidr, via) in [
        (a, b_name, &pod_cidrs[1], B_ADDRESS),
        (b, &a_name, &pod_cidrs[0], A_ADDRESS),
    ] {
        let expected = format!(
            "routes to other nodes' pods (1): {cidr} via {via} ({peer}); forwarding on; pod \
             traffic leaving 10.88.0.0/16 masqueraded but to the cluster network \
             192.168.100.0/24 (nft table ip cairn)"
        );
        let deadline = std::time::Instant::now() + SPREAD_TIMEOUT;
        loop {
            let (holds, reason) = session.condition("pod-routes");
            if holds && reason == expected {
                break;
            }
            if std::time::Instant::now() > deadline {
                session.fail(format!("pod-routes: {holds} {reason:?}, not {expected:?}"));
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    let ns = "spread";
    let manifest = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n");
    a.kubectl_ok_within(&["apply", "-f", "-"], &manifest, KUBECTL_TIMEOUT);
    a.wait_for_default_service_account(ns);
    // busybox httpd runs the CGI script with the peer's address in REMOTE_ADDR.
    let script = "mkdir -p /www/cgi-bin && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\n\
                  echo $(hostname) $REMOTE_ADDR\\n' > /www/cgi-bin/who && chmod +x /www/cgi-bin/who \
                  && exec httpd -f -p 80 -h /www";
    let script = serde_json::Value::from(script).to_string();
    let mut manifest = format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{ name: web, namespace: {ns} }}
spec:
  replicas: 2
  selector: {{ matchLabels: {{ app: web }} }}
  template:
    metadata: {{ labels: {{ app: web }} }}
    spec:
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector: {{ matchLabels: {{ app: web }} }}
            topologyKey: kubernetes.io/hostname
      containers:
      - name: httpd
        image: {TOOLBOX}
        imagePullPolicy: Never
        command: [\"sh\", \"-c\", {script}]
        readinessProbe: {{ tcpSocket: {{ port: 80 }}, periodSeconds: 2 }}
---
apiVersion: v1
kind: Service
metadata: {{ name: web, namespace: {ns} }}
spec:
  selector: {{ app: web }}
  ports: [{{ port: 80 }}]
"
    );
    for (client, node) in [("client-a", &nodes[0]), ("client-b", &nodes[1])] {
        manifest.push_str(&format!(
            "---
apiVersion: v1
kind: Pod
metadata: {{ name: {client}, namespace: {ns} }}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - {{ name: main, image: {TOOLBOX}, imagePullPolicy: Never, command: [sleep, \"86400\"] }}
"
        ));
    }
    a.kubectl_ok_within(&["apply", "-f", "-"], &manifest, KUBECTL_TIMEOUT);
    let timeout = format!("--timeout={}s", SPREAD_TIMEOUT.as_secs());
    for target in ["deployment/web", "pod/client-a", "pod/client-b"] {
        let args: Vec<&str> = match target.starts_with("deployment") {
            true => vec!["rollout", "status", target, "-n", ns, &timeout],
            false => vec!["wait", "--for=condition=Ready", target, "-n", ns, &timeout],
        };
        let done = a.kubectl_within(&args, "", SPREAD_TIMEOUT + KUBECTL_TIMEOUT);
        if !done.status.success() {
            let pods = a.kubectl(&["describe", "pods", "-n", ns], "");
            a.fail(format!(
                "{target} not ready: {}\n{}",
                common::kubernetes::describe(&done),
                common::kubernetes::describe(&pods)
            ));
        }
    }
    // name node podIP, one line per pod.
    let listed = a.kubectl_ok(&[
        "get",
        "pods",
        "-n",
        ns,
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.status.podIP}{\"\\n\"}{end}",
    ]);
    let pods: Vec<Vec<&str>> = listed.lines().map(|l| l.split(' ').collect()).collect();
    let pod_on = |prefix: &str, node: &str| {
        (pods.iter())
            .filter(|p| p.len() == 3 && p[0].starts_with(prefix) && p[1] == node)
            .map(|p| (p[0].to_owned(), p[2].to_owned()))
            .collect::<Vec<_>>()
    };
    let mut webs = Vec::new();
    for (node, cidr) in nodes.iter().zip(&pod_cidrs) {
        let on_node = pod_on("web-", node);
        let network = cidr.trim_end_matches(".0/24");
        let in_cidr = on_node.len() == 1 && on_node[0].1.starts_with(&format!("{network}."));
        if !in_cidr {
            a.fail(format!(
                "not one web replica on {node} with an address in {cidr}: {listed}"
            ));
        }
        webs.push(on_node[0].0.clone());
    }
    // Bounded by `timeout`: wget's own `-T` crashes this busybox's wget.
    let request = "for i in $(seq 40); do timeout 10 wget -q -O - \
                   http://web.spread.svc.cluster.local/cgi-bin/who; done | sort -u";
    for (client, node) in [("client-a", &nodes[0]), ("client-b", &nodes[1])] {
        let ip = &pod_on(client, node)[0].1;
        let expected: std::collections::BTreeSet<String> =
            // httpd accepts on a dual-stack socket: IPv4 peers are IPv4-mapped.
            webs.iter().map(|web| format!("{web} [::ffff:{ip}]")).collect();
        let deadline = std::time::Instant::now() + SPREAD_TIMEOUT;
        loop {
            let args = ["exec", client, "-n", ns, "--", "sh", "-c", request];
            let output = a.kubectl_within(&args, "", KUBECTL_TIMEOUT + Duration::from_secs(200));
            let seen: std::collections::BTreeSet<String> = String::from_utf8_lossy(&output.stdout)
                .lines()
                .map(str::to_owned)
                .collect();
            if seen == expected {
                break;
            }
            if std::time::Instant::now() > deadline {
                a.fail(format!(
                    "{client} on {node} saw {seen:?}, not {expected:?}: {}",
                    common::kubernetes::describe(&output)
                ));
            }
        }
    }
    // A pod on B stays a pod at A's address too: A's debug service closes its
    // connection unanswered (as for pods on A), while A's apiserver answers it.
    let probe = format!(
        "printf 'PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n' | nc -w 5 {A_ADDRESS} 7837 | wc -c; \
         printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {A_ADDRESS} 6443 | wc -c"
    );
    let args = ["exec", "client-b", "-n", ns, "--", "sh", "-c", &probe];
    let output = a.kubectl_within(&args, "", KUBECTL_TIMEOUT + Duration::from_secs(20));
    let text = String::from_utf8_lossy(&output.stdout);
    let counts: Vec<u64> = text
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    if !matches!(counts[..], [0, apiserver] if apiserver > 0) {
        a.fail(format!(
            "a pod on B got bytes from A's debug port or none from A's apiserver: {}",
            common::kubernetes::describe(&output)
        ));
    }
}

/// A kubeconfig for A's apiserver (through the host's forward) that authenticates
/// with the bootstrap token `token`.
fn token_kubeconfig(a: &Session, token: &str) -> String {
    let (admin, _) = a.kubeconfig("cairn-debug", &["system:masters"], None);
    let ca_line = admin
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("certificate-authority-data: "))
        .unwrap_or_else(|| a.fail("no CA in the debug kubeconfig"))
        .to_owned();
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: a\n  cluster:\n    server: {}\n    \
         {ca_line}\nusers:\n- name: joiner\n  user:\n    token: {token}\ncontexts:\n- name: a\n  \
         context:\n    cluster: a\n    user: joiner\ncurrent-context: a\n",
        a.cluster.api_endpoint
    )
}

/// `kubectl auth whoami` with `kubeconfig`: the user name on stdout.
fn whoami(a: &Session, kubeconfig: &str) -> std::process::Output {
    let args = [
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    ];
    a.kubectl_as(kubeconfig, &args, "", Duration::from_secs(60))
}

/// The signer of kubelet client certificates.
const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";

/// The CSRs `session`'s cluster holds for `signer`.
fn signed_by(session: &Session, signer: &str) -> Vec<serde_json::Value> {
    let list: serde_json::Value =
        serde_json::from_str(&session.kubectl_ok(&["get", "csr", "-o", "json"])).unwrap();
    let items = list["items"].as_array().cloned().unwrap_or_default();
    (items.into_iter())
        .filter(|csr| csr["spec"]["signerName"] == signer)
        .collect()
}

#[test]
#[ignore = "boots QEMU; run with `make test`"]
fn a_worker_with_a_wrong_token_never_joins_and_says_why() {
    let pair = pair();
    let c = Session::open_on(&pair.c).reporting(&["agent"]);
    let id = pair.join.token.split('.').next().unwrap_or_default();
    let refused = format!(
        "join token {id} refused by the API server at https://{A_ADDRESS}:6443 (wrong, \
         expired or already used)"
    );
    // The refusal is the condition's reason once A's apiserver has answered; until
    // then C may still be trying to reach it.
    let deadline = std::time::Instant::now() + NODE_READY;
    loop {
        let (joined, reason) = c.condition("joined");
        if joined {
            c.fail("C joined with a wrong token");
        }
        if reason == refused {
            break;
        }
        if std::time::Instant::now() > deadline {
            c.fail(format!("joined: {reason:?}, not {refused:?}"));
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    // Nothing of C reached A: no Node, no CSR.
    let a = Session::open_on(&pair.a);
    let c_name = format!("cairn-{}", pair.c.ready.node_id);
    let nodes = a.kubectl_ok(&["get", "nodes", "-o", "name"]);
    if nodes.contains(&c_name) {
        a.fail(format!("C is a Node of A's: {nodes}"));
    }
    let (kubelet, reason) = c.condition("kubelet");
    if kubelet {
        c.fail(format!("C's kubelet runs without joining: {reason}"));
    }
}

#[test]
#[ignore = "boots QEMU; run with `make test`"]
fn a_join_token_gets_a_kubelet_client_certificate_signed_by_the_cluster_ca() {
    use base64::Engine as _;
    use cairn_api::v1::CreateJoinTokenRequest;
    use x509_parser::prelude::{FromDer, X509Certificate};
    let a = Session::open_on(&pair().a);
    a.wait_true("node-ready", NODE_READY);
    let join_token = |ttl: u32| {
        let mut client = a.client.clone();
        let request = CreateJoinTokenRequest {
            ttl_seconds: Some(ttl),
        };
        (a.runtime.block_on(client.create_join_token(request)))
            .unwrap_or_else(|status| a.fail(format!("CreateJoinToken ({ttl} s): {status}")))
            .into_inner()
    };
    let created = join_token(600);
    if created.api != format!("{A_ADDRESS}:6443") {
        a.fail(format!("join token api {:?}", created.api));
    }
    let (id, _) = created
        .token
        .split_once('.')
        .unwrap_or_else(|| a.fail(format!("token {:?}", created.token)));

    // The CA hash is the SPKI hash of the CA the admin kubeconfig trusts.
    let (admin, _) = a.kubeconfig("cairn-debug", &["system:masters"], None);
    let ca_line = admin
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("certificate-authority-data: "))
        .unwrap_or_else(|| a.fail("no CA in the debug kubeconfig"));
    let ca_pem = ca_line
        .strip_prefix("certificate-authority-data: ")
        .and_then(|data| base64::engine::general_purpose::STANDARD.decode(data).ok())
        .unwrap_or_else(|| a.fail(format!("the kubeconfig's CA: {ca_line}")));
    let ca_der = rustls_pki_types::CertificateDer::from_pem_slice(&ca_pem)
        .unwrap_or_else(|err| a.fail(format!("the CA: {err}")));
    let (_, ca) = X509Certificate::from_der(ca_der.as_ref()).unwrap();
    let spki = sha2::Sha256::digest(ca.tbs_certificate.subject_pki.raw);
    if created.ca_hash != format!("sha256:{}", hex::encode(spki)) {
        a.fail(format!("ca_hash {} is not the CA's", created.ca_hash));
    }

    // The Secret, as the apiserver's bootstrap authenticator reads it.
    let secret: serde_json::Value = serde_json::from_str(&a.kubectl_ok(&[
        "get",
        "secret",
        "-n",
        "kube-system",
        &format!("bootstrap-token-{id}"),
        "-o",
        "json",
    ]))
    .unwrap();
    let field = |name: &str| {
        let encoded = secret["data"][name].as_str().unwrap_or_default();
        let bytes = base64::engine::general_purpose::STANDARD.decode(encoded);
        String::from_utf8(bytes.unwrap_or_default()).unwrap_or_default()
    };
    let expires = time::OffsetDateTime::from_unix_timestamp(created.expires_unix_seconds)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let fields = [
        ("token-id", id.to_owned()),
        ("expiration", expires),
        ("usage-bootstrap-authentication", "true".to_owned()),
        (
            "auth-extra-groups",
            "system:bootstrappers:cairn:worker".to_owned(),
        ),
    ];
    if secret["type"] != "bootstrap.kubernetes.io/token"
        || fields.iter().any(|(name, value)| field(name) != *value)
    {
        a.fail(format!("the token's Secret: {secret:#}"));
    }

    // The token authenticates as the bootstrap user.
    let as_token = token_kubeconfig(&a, &created.token);
    let whoami = |kubeconfig: &str| whoami(&a, kubeconfig);
    let first = whoami(&as_token);
    if String::from_utf8_lossy(&first.stdout) != format!("system:bootstrap:{id}") {
        a.fail(format!(
            "whoami with the token: {}",
            common::kubernetes::describe(&first)
        ));
    }

    // A kubelet's client CSR, made with the token: approved and signed by the CA.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "system:node:cairn-joiner");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    let request = params.serialize_request(&key).unwrap().pem().unwrap();
    let name = format!("join-test-{id}");
    let csr = format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  \
         name: {name}\nspec:\n  request: {}\n  signerName: \
         kubernetes.io/kube-apiserver-client-kubelet\n  expirationSeconds: 3600\n  usages:\n  \
         - digital signature\n  - client auth\n",
        base64::engine::general_purpose::STANDARD.encode(request)
    );
    let created_csr = a.kubectl_as(
        &as_token,
        &["create", "-f", "-"],
        &csr,
        Duration::from_secs(60),
    );
    if !created_csr.status.success() {
        a.fail(format!(
            "creating the CSR with the token: {}",
            common::kubernetes::describe(&created_csr)
        ));
    }
    a.kubectl_ok_within(
        &[
            "wait",
            "--for=jsonpath={.status.certificate}",
            &format!("csr/{name}"),
            "--timeout=120s",
        ],
        "",
        Duration::from_secs(150),
    );
    let issued: serde_json::Value =
        serde_json::from_str(&a.kubectl_ok(&["get", &format!("csr/{name}"), "-o", "json"]))
            .unwrap();
    let approved = issued["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Approved" && c["status"] == "True");
    let cert_pem = issued["status"]["certificate"]
        .as_str()
        .and_then(|data| base64::engine::general_purpose::STANDARD.decode(data).ok())
        .unwrap_or_default();
    let Ok(cert_der) = rustls_pki_types::CertificateDer::from_pem_slice(&cert_pem) else {
        a.fail(format!("no certificate in the CSR: {issued:#}"))
    };
    let (_, cert) = X509Certificate::from_der(cert_der.as_ref()).unwrap();
    let subject = cert.subject().to_string();
    let signed_by_ca = cert.verify_signature(Some(ca.public_key())).is_ok();
    if !approved || !signed_by_ca || !subject.contains("CN=system:node:cairn-joiner") {
        a.fail(format!(
            "CSR approved {approved}, signed by the cluster CA {signed_by_ca}, subject {subject}"
        ));
    }

    // A token authenticates until it expires, and not after.
    let short = join_token(60);
    let as_short = as_token.replace(&created.token, &short.token);
    let first = whoami(&as_short);
    if !first.status.success() {
        a.fail(format!(
            "the 60 s token before it expired: {}",
            common::kubernetes::describe(&first)
        ));
    }
    let expires = std::time::UNIX_EPOCH
        + Duration::from_secs(u64::try_from(short.expires_unix_seconds).unwrap_or(0));
    let deadline = expires + Duration::from_secs(60);
    loop {
        let output = whoami(&as_short);
        let refused = String::from_utf8_lossy(&output.stderr).contains("Unauthorized");
        let now = std::time::SystemTime::now();
        match (output.status.success(), refused) {
            // The guest's clock (which the apiserver reads) may run a little ahead.
            (false, true) if now + Duration::from_secs(5) >= expires => break,
            (false, true) => a.fail(format!(
                "the 60 s token was refused {:?} before it expired",
                expires.duration_since(now).unwrap_or_default()
            )),
            (false, false) => a.fail(format!(
                "the expired token failed otherwise: {}",
                common::kubernetes::describe(&output)
            )),
            (true, _) if now > deadline => {
                a.fail("the token still authenticates a minute after it expired")
            }
            // Still valid: ask again in a moment.
            (true, _) => std::thread::sleep(Duration::from_secs(2)),
        }
    }
}
