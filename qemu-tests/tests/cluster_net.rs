//! Two nodes on one cluster segment (docs/interfaces.md "Cluster network"): each boots
//! with a second NIC on the same loopback multicast segment and a `[cluster]` address
//! in its node config. Checked from outside: the ready line lists `eth1` with that
//! address; the Node's InternalIP is the cluster address (what the apiserver
//! advertises and the kubelet registers); and a host-network pod on node A reaches
//! node B's services over the segment: B's cluster DNS answers a query sent to B's
//! address (only B listens there), and B's apiserver answers a plain-HTTP request on
//! 6443 with Go's "HTTP request to an HTTPS server" reply. The two nodes are
//! independent control planes (no joining yet); they share only the wire.

#[allow(dead_code)]
mod common;

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use cairn_api::node_config::Cluster as ClusterSettings;
use cairn_qemu::node::error_chain;
use cairn_qemu::{ClusterNic, Mac, Node};
use common::kubernetes::{Cluster, Session, SERVICE_ACCOUNT_TIMEOUT};

const A_ADDRESS: &str = "192.168.100.10";
const B_ADDRESS: &str = "192.168.100.11";
const PREFIX: u8 = 24;
/// Two TCG guests share the host's two CPUs: each boots at about half speed.
const READY_TIMEOUT: Duration = Duration::from_secs(240);
const NODE_READY: Duration = Duration::from_secs(400);
const POD_DONE: Duration = Duration::from_secs(240);

struct Pair {
    a: Cluster,
    b: Cluster,
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
    let start = |name: &str, address: &str, mac: [u8; 6]| -> Result<Node, String> {
        let mut config = common::fresh_config(name);
        config.settings = Some(cairn_qemu::config::Settings {
            cluster: Some(ClusterSettings {
                address: format!("{address}/{PREFIX}"),
                device: ClusterSettings::DEFAULT_DEVICE.to_owned(),
            }),
            ..Default::default()
        });
        config.cluster_nic = Some(ClusterNic {
            segment,
            mac: Mac(mac),
        });
        Node::start(&config).map_err(|e| format!("{name}: {}", error_chain(&e)))
    };
    let a = start(
        "cluster-net-a",
        A_ADDRESS,
        [0x52, 0x54, 0x00, 0xca, 0x00, 0x0a],
    )?;
    let b = start(
        "cluster-net-b",
        B_ADDRESS,
        [0x52, 0x54, 0x00, 0xca, 0x00, 0x0b],
    )?;
    Ok(Pair {
        a: ready(a)?,
        b: ready(b)?,
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
fn two_nodes_on_one_segment_reach_each_other_at_their_cluster_addresses() {
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
    for (session, address) in [(&a, A_ADDRESS), (&b, B_ADDRESS)] {
        session.wait_true("node-ready", NODE_READY);
        let internal = session.kubectl_ok(&[
            "get",
            "nodes",
            "-o",
            "jsonpath={.items[0].status.addresses[?(@.type==\"InternalIP\")].address}",
        ]);
        if internal.trim() != address {
            session.fail(format!(
                "the Node's InternalIP is {internal:?}, not {address}"
            ));
        }
    }
    b.wait_true("cluster-dns", NODE_READY);

    a.wait_for_default_service_account("kube-system");
    let probe = format!(
        "nslookup kubernetes.default.svc.cluster.local {B_ADDRESS}; \
         printf 'GET /readyz HTTP/1.0\\r\\n\\r\\n' | nc -w 10 {B_ADDRESS} 6443; echo; echo done"
    );
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: segment-probe\n  namespace: kube-system\n\
         spec:\n  hostNetwork: true\n  restartPolicy: Never\n  containers:\n  - name: probe\n    \
         image: localhost/cairn/toolbox:1\n    command: [\"sh\", \"-c\", {probe:?}]\n"
    );
    a.kubectl_ok_within(&["apply", "-f", "-"], &manifest, SERVICE_ACCOUNT_TIMEOUT);
    let done = a.kubectl_within(
        &[
            "wait",
            "-n",
            "kube-system",
            "--for=jsonpath={.status.phase}=Succeeded",
            "pod/segment-probe",
            &format!("--timeout={}s", POD_DONE.as_secs()),
        ],
        "",
        POD_DONE + Duration::from_secs(30),
    );
    let logs = a.kubectl(&["logs", "-n", "kube-system", "segment-probe"], "");
    let output = String::from_utf8_lossy(&logs.stdout).into_owned();
    if !done.status.success() || !output.contains("done") {
        a.fail(format!(
            "the probe pod did not finish: {}\n{output}",
            common::kubernetes::describe(&done)
        ));
    }
    let answered = common::kubernetes::nslookup_addresses(&output);
    if !answered.contains("10.96.0.1") {
        a.fail(format!(
            "B's cluster DNS at {B_ADDRESS} did not answer over the segment:\n{output}"
        ));
    }
    if !output.contains("Client sent an HTTP request to an HTTPS server") {
        a.fail(format!(
            "B's apiserver at {B_ADDRESS}:6443 did not answer over the segment:\n{output}"
        ));
    }
}
