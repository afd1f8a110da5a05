//! The owner's node API on the production image, from outside: `dbg owner init`, a
//! node booted with the owner CA in its per-node config, the built `dbg` talking to it
//! with mTLS, certificates the node must refuse, debug-only calls that must be absent,
//! an owner that stays pinned across a reboot whose config names another, and a
//! hand-over to that other owner signed by the first.
//!
//! One production node with a data disk, in its own state dir; the owner credentials in
//! a directory the test owns (`CAIRN_OWNER_DIR`), never the user's.

// Uses only the failure report and the dbg binary lookup.
#[allow(dead_code)]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use cairn_api::names::condition;
use cairn_api::node_config::{NodeConfig as Settings, Owner};
use cairn_api::owner_client::{
    connect_owner, connect_owner_within, OwnerConnectError, OwnerIdentity, ServerTrust,
};
use cairn_api::v1::node_debug_service_client::NodeDebugServiceClient;
use cairn_api::v1::{ListConditionsRequest, SignalComponentRequest};
use cairn_qemu::accel::{self, AccelChoice};
use cairn_qemu::node::error_chain;
use cairn_qemu::{DataDisk, Image, Node, NodeConfig};

const CONNECT: Duration = Duration::from_secs(20);
/// From `CAIRN_READY` to the node API listening.
const API_UP: Duration = Duration::from_secs(60);
/// Kubernetes on a fresh production node under TCG.
const NODE_READY: &str = "300";

fn production_image() -> Image {
    let dir = std::env::var_os("CAIRN_PRODUCTION_IMAGE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../build/production"));
    Image::open(&dir).unwrap_or_else(|err| {
        panic!(
            "no production image in {}: {} (make production-image)",
            dir.display(),
            error_chain(&err)
        )
    })
}

fn scratch(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
}

/// Runs the built `dbg` with the node's state dir and the test's owner dir.
fn dbg(state: &Path, owner_dir: &Path, args: &[&str]) -> Output {
    let output = Command::new(common::dbg::binary())
        .args(args)
        .env("CAIRN_STATE_DIR", state)
        .env("CAIRN_OWNER_DIR", owner_dir)
        .env_remove("CAIRN_DEBUG_ENDPOINT")
        .env_remove("CAIRN_NODE_API_ENDPOINT")
        .env_remove("CAIRN_API_ENDPOINT")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| panic!("cannot run dbg: {err}"));
    output
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn owner_settings(owner_dir: &Path) -> Settings {
    let ca = std::fs::read_to_string(owner_dir.join("ca.crt")).unwrap();
    Settings {
        owner: Some(Owner {
            ca,
            handover_signature: None,
        }),
        ..Settings::default()
    }
}

fn identity(owner_dir: &Path) -> OwnerIdentity {
    let credentials = cairn_dbg::owner::load(owner_dir).unwrap();
    OwnerIdentity {
        cert_pem: credentials.cert_pem,
        key_pem: credentials.key_pem,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn start(image: &Image, state: &Path, settings: Settings) -> Node {
    let accel = accel::resolve(AccelChoice::Auto, &image.kernel);
    let mut config = NodeConfig::new(image.clone(), accel, state);
    config.data_disk = Some(DataDisk::in_state_dir(state));
    config.settings = Some(settings);
    let mut node = Node::start(&config).unwrap_or_else(|err| panic!("{}", error_chain(&err)));
    node.wait_ready(common::READY_TIMEOUT)
        .unwrap_or_else(|err| common::fail(&node, error_chain(&err)));
    node
}

#[test]
#[ignore = "boots QEMU; run with `make test`"]
fn the_owner_operates_a_production_node_and_nobody_else_can() {
    let image = production_image();
    let owner_dir = scratch("owner-api/owner");
    let stranger_dir = scratch("owner-api/stranger");
    let state = scratch("boot/owner-api");
    for dir in [&owner_dir, &stranger_dir] {
        let _ = std::fs::remove_dir_all(dir);
    }
    let _ = std::fs::remove_file(DataDisk::in_state_dir(&state).path);

    // `dbg owner init`: creates, then refuses to overwrite without --force.
    let init = dbg(&state, &owner_dir, &["owner", "init"]);
    assert!(init.status.success(), "{}", text(&init));
    let ca_before = std::fs::read(owner_dir.join("ca.crt")).unwrap();
    let again = dbg(&state, &owner_dir, &["owner", "init"]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(text(&again).contains("--force"), "{}", text(&again));
    assert_eq!(std::fs::read(owner_dir.join("ca.crt")).unwrap(), ca_before);
    let stranger = dbg(&state, &stranger_dir, &["owner", "init"]);
    assert!(stranger.status.success(), "{}", text(&stranger));

    let mut node = start(&image, &state, owner_settings(&owner_dir));
    let pin = node.state().node_api_ca();
    assert!(
        !pin.exists(),
        "a pin from an earlier data disk is still there"
    );

    // The owner, through the built dbg with no endpoint flags: the node record says
    // where the node API is, and the first call pins the node's CA.
    let wait = dbg(
        &state,
        &owner_dir,
        &[
            "--connect-timeout",
            "60",
            "conditions",
            "--wait",
            "node-ready",
            "--timeout",
            NODE_READY,
        ],
    );
    if !wait.status.success() {
        common::fail(
            &node,
            format!("dbg conditions --wait node-ready: {}", text(&wait)),
        );
    }
    if !pin.is_file() {
        common::fail(&node, "the first connection pinned no node CA");
    }
    let logs = dbg(&state, &owner_dir, &["logs", "kubelet", "-n", "20"]);
    if !logs.status.success() || logs.stdout.is_empty() {
        common::fail(&node, format!("dbg logs kubelet: {}", text(&logs)));
    }
    let listed = dbg(&state, &owner_dir, &["conditions"]);
    let listed_text = String::from_utf8_lossy(&listed.stdout).into_owned();
    if !listed.status.success() || !listed_text.contains(condition::NODE_API) {
        common::fail(&node, format!("dbg conditions: {}", text(&listed)));
    }
    let nodes = dbg(
        &state,
        &owner_dir,
        &["kubectl", "get", "nodes", "-o", "name"],
    );
    let nodes_text = String::from_utf8_lossy(&nodes.stdout).into_owned();
    if !nodes.status.success() || !nodes_text.starts_with("node/cairn-") {
        common::fail(&node, format!("dbg kubectl get nodes: {}", text(&nodes)));
    }
    let whoami = dbg(
        &state,
        &owner_dir,
        &[
            "kubectl",
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    );
    if String::from_utf8_lossy(&whoami.stdout) != "cairn:owner" {
        common::fail(&node, format!("kubectl auth whoami: {}", text(&whoami)));
    }
    // A debug identity is not on offer.
    let as_debug = dbg(
        &state,
        &owner_dir,
        &["kubeconfig", "--group", "system:masters"],
    );
    if as_debug.status.code() != Some(1) {
        common::fail(
            &node,
            format!("dbg kubeconfig --group: {}", text(&as_debug)),
        );
    }

    let endpoint = node
        .node_api_endpoint()
        .expect("a node API forward")
        .to_owned();
    let pinned = ServerTrust::Pinned(std::fs::read_to_string(&pin).unwrap());
    let runtime = runtime();

    // Debug-only calls are not served over the node API's connection.
    let connection = runtime
        .block_on(connect_owner(
            &endpoint,
            &identity(&owner_dir),
            &pinned,
            CONNECT,
        ))
        .unwrap_or_else(|err| common::fail(&node, error_chain(&err)));
    let signal = runtime.block_on(async {
        NodeDebugServiceClient::new(connection.channel.clone())
            .signal_component(SignalComponentRequest {
                component: "kubelet".into(),
                signal: "SIGTERM".into(),
            })
            .await
    });
    match signal {
        Err(status) if status.code() == tonic::Code::Unimplemented => {}
        other => common::fail(
            &node,
            format!("SignalComponent over the node API: {other:?}"),
        ),
    }

    // Strangers are refused in the handshake, each reported as the node's refusal.
    let refused = |who: &str, identity: OwnerIdentity, node: &Node| match runtime.block_on(
        connect_owner(&endpoint_of(node), &identity, &pinned, CONNECT),
    ) {
        Err(OwnerConnectError::Refused(..)) => {}
        Err(err) => common::fail(node, format!("{who}: not a refusal: {}", error_chain(&err))),
        Ok(_) => common::fail(node, format!("{who}: the node API let it in")),
    };
    match without_a_certificate(&endpoint, &std::fs::read_to_string(&pin).unwrap()) {
        Ok(alert) if alert.contains("CertificateRequired") => {}
        other => common::fail(&node, format!("a client with no certificate: {other:?}")),
    }
    refused("another owner CA", identity(&stranger_dir), &node);
    refused("a self-signed certificate", self_signed(), &node);
    refused("an expired owner certificate", expired(&owner_dir), &node);
    let stranger_dbg = dbg(&state, &stranger_dir, &["--owner", "conditions"]);
    if stranger_dbg.status.code() != Some(cairn_dbg::EXIT_REFUSED as i32) {
        common::fail(&node, format!("dbg as a stranger: {}", text(&stranger_dbg)));
    }

    pods_cannot_use_the_node_api(&node, &state, &owner_dir);

    // Reboot with the stranger's CA in the node config: the pinned owner stays.
    node.stop(Duration::from_secs(120))
        .unwrap_or_else(|err| common::fail(&node, error_chain(&err)));
    let mut node = start(&image, &state, owner_settings(&stranger_dir));
    let reason = node_api_reason(&runtime, &node, &identity(&owner_dir), &pinned);
    let fingerprint = |dir: &Path| {
        let pem = std::fs::read_to_string(dir.join("ca.crt")).unwrap();
        cairn_dbg::owner::fingerprint(&pem).unwrap()
    };
    let (owner_fp, stranger_fp) = (fingerprint(&owner_dir), fingerprint(&stranger_dir));
    if !reason.contains(&stranger_fp) || !reason.contains("ignored") {
        common::fail(
            &node,
            format!("node-api reason does not report the other CA: {reason}"),
        );
    }
    refused("the new config's owner", identity(&stranger_dir), &node);

    // The owner hands the node over: `dbg owner hand-over` signs the stranger's CA with
    // the owner CA's key, and a boot with that config pins the stranger's CA; the old
    // owner is refused from then on.
    let handover = dbg(
        &state,
        &owner_dir,
        &[
            "owner",
            "hand-over",
            &stranger_dir.join("ca.crt").to_string_lossy(),
        ],
    );
    if !handover.status.success() {
        common::fail(&node, format!("dbg owner hand-over: {}", text(&handover)));
    }
    let settings = Settings::parse(&String::from_utf8_lossy(&handover.stdout))
        .unwrap_or_else(|err| common::fail(&node, format!("the hand-over config: {err}")));
    node.stop(Duration::from_secs(120))
        .unwrap_or_else(|err| common::fail(&node, error_chain(&err)));
    let node = start(&image, &state, settings);
    let reason = node_api_reason(&runtime, &node, &identity(&stranger_dir), &pinned);
    let expected = format!(
        "owner CA {stranger_fp} pinned at this boot, handed over by the owner CA {owner_fp}"
    );
    if !reason.ends_with(&expected) {
        common::fail(
            &node,
            format!("node-api reason {reason:?}, not {expected:?}"),
        );
    }
    refused(
        "the owner who handed the node over",
        identity(&owner_dir),
        &node,
    );
}

/// The `node-api` condition's reason, asked over the node API as `identity`. The API
/// starts beside `CAIRN_READY`, not before it (until it listens, QEMU's port forward
/// accepts and then resets the connection), so the connection is retried for up to
/// [`API_UP`]; a refusal fails at once.
fn node_api_reason(
    runtime: &tokio::runtime::Runtime,
    node: &Node,
    identity: &OwnerIdentity,
    pinned: &ServerTrust,
) -> String {
    let reason = runtime.block_on(async {
        let mut connection =
            connect_owner_within(&endpoint_of(node), identity, pinned, API_UP).await?;
        let listed = connection
            .client
            .list_conditions(ListConditionsRequest {
                names: vec![condition::NODE_API.into()],
            })
            .await
            .map_err(|status| OwnerConnectError::NoAnswer(String::new(), status))?;
        Ok::<_, OwnerConnectError>(listed.into_inner().conditions[0].reason.clone())
    });
    reason.unwrap_or_else(|err| {
        common::fail(
            node,
            format!(
                "the node-api reason over the node API: {}",
                error_chain(&err)
            ),
        )
    })
}

/// A pod on the pod network is closed at accept; a host-network pod (kube-system, the
/// only namespace allowed one) reaches the TLS layer and is refused there. The pods
/// have no TLS client (busybox's wget crashes on https), so each sends bytes that are
/// not TLS: what proves the point is the agent's log, with the refusal of the node's
/// own address and none from the pod network. That a real TLS 1.3 client without the
/// owner's key is refused, whatever its address, the host-side checks above prove.
fn pods_cannot_use_the_node_api(node: &Node, state: &Path, owner_dir: &Path) {
    let ip = dbg(
        state,
        owner_dir,
        &[
            "kubectl",
            "get",
            "nodes",
            "-o",
            "jsonpath={.items[0].status.addresses[?(@.type==\"InternalIP\")].address}",
        ],
    );
    let node_ip = String::from_utf8_lossy(&ip.stdout).trim().to_owned();
    if !ip.status.success() || node_ip.parse::<std::net::Ipv4Addr>().is_err() {
        common::fail(node, format!("the node's InternalIP: {}", text(&ip)));
    }
    let pod = |namespace: &str, name: &str, host_network: bool| {
        let probe = format!("echo hello | nc -w 5 {node_ip} 7838 >/dev/null; echo exit=$?");
        [
            "apiVersion: v1".to_owned(),
            "kind: Pod".to_owned(),
            "metadata:".to_owned(),
            format!("  name: {name}"),
            format!("  namespace: {namespace}"),
            "spec:".to_owned(),
            format!("  hostNetwork: {host_network}"),
            "  restartPolicy: Never".to_owned(),
            "  containers:".to_owned(),
            "  - name: probe".to_owned(),
            "    image: localhost/cairn/toolbox:1".to_owned(),
            format!("    command: [\"sh\", \"-c\", {probe:?}]"),
            String::new(),
        ]
        .join("\n")
    };
    let pods = [
        ("default", "node-api-from-pod-network", false),
        ("kube-system", "node-api-from-host-network", true),
    ];
    let manifest: Vec<String> = pods
        .iter()
        .map(|(ns, name, host)| pod(ns, name, *host))
        .collect();
    let file = scratch("owner-api/pods.yaml");
    std::fs::write(&file, manifest.join("---\n")).unwrap();
    // Pods need their namespace's default service account, which the controller-manager
    // creates a moment after it starts.
    for (namespace, _, _) in pods {
        let created = dbg(
            state,
            owner_dir,
            &[
                "kubectl",
                "wait",
                "-n",
                namespace,
                "--for=create",
                "serviceaccount/default",
                "--timeout=120s",
            ],
        );
        if !created.status.success() {
            common::fail(
                node,
                format!("serviceaccount {namespace}/default: {}", text(&created)),
            );
        }
    }
    let applied = dbg(
        state,
        owner_dir,
        &["kubectl", "apply", "-f", file.to_str().unwrap()],
    );
    if !applied.status.success() {
        common::fail(node, format!("kubectl apply: {}", text(&applied)));
    }
    let mut outputs = Vec::new();
    for (namespace, name, _) in pods {
        let done = dbg(
            state,
            owner_dir,
            &[
                "kubectl",
                "wait",
                "-n",
                namespace,
                "--for=jsonpath={.status.phase}=Succeeded",
                &format!("pod/{name}"),
                "--timeout=240s",
            ],
        );
        let logs = dbg(
            state,
            owner_dir,
            &["kubectl", "logs", "-n", namespace, name],
        );
        let output = String::from_utf8_lossy(&logs.stdout).into_owned();
        outputs.push(format!("{name}: {}", output.trim()));
        if !done.status.success() || !output.contains("exit=") {
            common::fail(
                node,
                format!("pod {name}: {}\n{}", text(&done), text(&logs)),
            );
        }
    }
    let agent = dbg(state, owner_dir, &["logs", "agent"]);
    let log = String::from_utf8_lossy(&agent.stdout).into_owned();
    let refused_from = |prefix: &str| {
        log.lines()
            .any(|line| line.contains(&format!("node API: refused the TLS handshake of {prefix}")))
    };
    let api_lines: Vec<&str> = log.lines().filter(|l| l.contains("node API")).collect();
    if !refused_from(&format!("{node_ip}:")) {
        common::fail(
            node,
            format!(
                "no refusal of the host-network pod ({node_ip}) in the agent log; its node API \
                 lines:\n{}\npods:\n{}",
                api_lines.join("\n"),
                outputs.join("\n")
            ),
        );
    }
    if refused_from("10.88.") {
        common::fail(node, "a pod-network connection reached the TLS handshake");
    }
}

fn endpoint_of(node: &Node) -> String {
    node.node_api_endpoint()
        .expect("a node API forward")
        .to_owned()
}

/// A TLS 1.3 client that presents no certificate at all, trusting the node's CA: the
/// node's verdict arrives as an alert on the first read after the handshake. `Ok` is
/// that read's error; `Err` says how the node failed to refuse.
fn without_a_certificate(endpoint: &str, node_ca_pem: &str) -> Result<String, String> {
    use rustls_pki_types::pem::PemObject;
    use std::io::{Read, Write};
    let mut roots = rustls::RootCertStore::empty();
    let ca = rustls_pki_types::CertificateDer::from_pem_slice(node_ca_pem.as_bytes())
        .map_err(|err| format!("the node CA pin: {err}"))?;
    roots
        .add(ca)
        .map_err(|err| format!("the node CA pin: {err}"))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|err| err.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let address = endpoint.trim_start_matches("https://");
    let tcp = std::net::TcpStream::connect(address).map_err(|err| format!("{address}: {err}"))?;
    tcp.set_read_timeout(Some(CONNECT))
        .map_err(|err| err.to_string())?;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(std::sync::Arc::new(config), name)
        .map_err(|err| err.to_string())?;
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    let _ = tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    let mut buf = [0u8; 64];
    match tls.read(&mut buf) {
        Err(err) => Ok(err.to_string()),
        Ok(0) => Err("the node closed the connection without an alert".to_owned()),
        Ok(n) => Err(format!("the node answered {n} bytes")),
    }
}

fn self_signed() -> OwnerIdentity {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let params = rcgen::CertificateParams::new(vec!["owner".to_owned()]).unwrap();
    OwnerIdentity {
        cert_pem: params.self_signed(&key).unwrap().pem(),
        key_pem: key.serialize_pem(),
    }
}

/// A certificate from the right owner CA that expired an hour ago.
fn expired(owner_dir: &Path) -> OwnerIdentity {
    let ca_key = std::fs::read_to_string(owner_dir.join("ca.key")).unwrap();
    let ca_cert = std::fs::read_to_string(owner_dir.join("ca.crt")).unwrap();
    let issuer =
        rcgen::Issuer::from_ca_cert_pem(&ca_cert, rcgen::KeyPair::from_pem(&ca_key).unwrap())
            .unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "cairn owner");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(2);
    params.not_after = now - time::Duration::hours(1);
    OwnerIdentity {
        cert_pem: params.signed_by(&key, &issuer).unwrap().pem(),
        key_pem: key.serialize_pem(),
    }
}
