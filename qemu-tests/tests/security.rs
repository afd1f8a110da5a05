//! Boot-level tests of the node's security defaults (SECURITY.md names the test that
//! proves each one): private keys are mode 0600 and owned by root; etcd listens on
//! loopback only and refuses clients without a certificate; nothing but the
//! apiserver, the kubelet, cluster DNS and (debug images) the debug service listens
//! beyond loopback; the kubelet's API refuses anonymous requests. Plus one bad-input test:
//! a malformed `ip=` on the kernel command line gives a console message and a node on
//! loopback only (its addresses and routes as the kernel reports them), not a panic.
//!
//! The Kubernetes tests share the file's node (`common/kubernetes.rs`) and look at it
//! from outside the agent: `kubectl exec` into a toolbox pod in `kube-system` (exempt
//! from Pod Security, so it may use the host's network and read-only hostPath volumes),
//! `kubectl port-forward` through that host-network pod to reach etcd's loopback-only
//! ports from the host, the launcher's forward of the kubelet's port, and rustls
//! clients that trust only the cluster CA. Every wait has a deadline (the agent's
//! WaitCondition, `kubectl wait`, a port-forward's first lines); none sleeps. A
//! failure carries the conditions, component logs and console tail.
//!
//! Proven elsewhere: the apiserver refuses anonymous requests, Pod Security rejects a
//! privileged pod and debug kubeconfigs expire (kubernetes_builtin.rs); the production
//! image has no debug listener (debug_service.rs).
//!
//! All `#[ignore]`d: `make test` runs them with `--ignored`.

#[allow(dead_code)]
mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use cairn_dbg::commands::kubeconfig::rewrite_server;
use cairn_dbg::commands::kubectl;
use cairn_qemu::command::{APISERVER_PORT, DEBUG_PORT, KUBELET_PORT};
use cairn_qemu::node::error_chain;
use cairn_qemu::{ExitAction, Node, Stop};
use common::kubernetes::{describe, locate_kubectl, Session, CALL_TIMEOUT, KUBECTL_TIMEOUT};
use rustls::client::ResolvesClientCert;
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use x509_parser::prelude::*;

/// etcd, the control plane, the kubelet and node registration under TCG.
const NODE_READY_TIMEOUT: Duration = Duration::from_secs(300);
/// Scheduling, the pod sandbox (7-11 s under TCG for the first) and the container.
const POD_TIMEOUT: Duration = Duration::from_secs(180);
/// kubectl port-forward prints its local ports once the apiserver accepted the stream.
const PORT_FORWARD_TIMEOUT: Duration = Duration::from_secs(30);
/// A clean stop of a node that never started its control plane.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
const NAMESPACE: &str = "kube-system";
const TOOLBOX: &str = "localhost/cairn/toolbox:1";
/// The host-network pod the tests look at the node through.
const INSPECTOR: &str = "security-inspector";
/// The cluster administrator `dbg kubectl` acts as.
const ADMIN_USER: &str = "cairn-debug";
const ADMIN_GROUPS: &[&str] = &["system:masters"];
/// Where a pod's or a listener's trouble shows first.
const REPORTED: &[&str] = &["kubelet", "containerd", "etcd", "kube-apiserver"];

const ETCD_CLIENT_PORT: u16 = 2379;
const ETCD_PEER_PORT: u16 = 2380;
/// The only ports that may listen beyond loopback (TCP; cluster DNS also serves UDP).
const EXPOSED_PORTS: &[u16] = &[
    APISERVER_PORT,
    KUBELET_PORT,
    DEBUG_PORT,
    cairn_api::names::port::DNS,
];

/// Every private key the node writes (agent/src/pki, the identity step) and the
/// kubeconfigs that embed one (agent/src/kubernetes).
const KEY_FILES: &[&str] = &[
    "/var/lib/cairn/identity/node.key",
    "/var/lib/cairn/pki/ca.key",
    "/var/lib/cairn/pki/service-account.key",
    "/var/lib/cairn/pki/etcd-server.key",
    "/var/lib/cairn/pki/etcd-client.key",
    "/var/lib/cairn/pki/kube-apiserver.key",
    "/var/lib/cairn/pki/apiserver-kubelet-client.key",
    "/var/lib/cairn/pki/kubelet-server.key",
    "/var/lib/cairn/pki/kubelet-client.key",
    "/var/lib/cairn/pki/controller-manager.key",
    "/var/lib/cairn/pki/scheduler.key",
    "/var/lib/cairn/pki/agent.key",
    "/etc/kubernetes/controller-manager.kubeconfig",
    "/etc/kubernetes/scheduler.kubeconfig",
    "/etc/kubernetes/kubelet.kubeconfig",
];
/// Directories holding keys: no access for group or others.
const KEY_DIRS: &[&str] = &["/var/lib/cairn/identity", "/var/lib/cairn/pki"];

/// The Kubernetes tests share the file's node (read); the bad-input test boots a node
/// of its own and runs alone (write), so two guests never compete for the CPUs.
static NODES: RwLock<()> = RwLock::new(());

fn shared_node() -> RwLockReadGuard<'static, ()> {
    NODES.read().unwrap_or_else(PoisonError::into_inner)
}

fn own_node() -> RwLockWriteGuard<'static, ()> {
    NODES.write().unwrap_or_else(PoisonError::into_inner)
}

/// A session on the file's node once it is Ready and pods are admitted in
/// `kube-system`; the first test waits, the others share the outcome.
///
/// Each call connects anew after the shared waits: a session's connection is only
/// driven while it makes a call, and one left idle through a long wait in another
/// thread is closed by the debug service's HTTP/2 keepalive.
fn session() -> Session {
    static NODE_READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = NODE_READY.get_or_init(|| {
        let waiting = Session::open().reporting(REPORTED);
        (waiting.try_wait_true("node-ready", NODE_READY_TIMEOUT)).map(|_| ())
    });
    let session = Session::open().reporting(REPORTED);
    if let Err(err) = ready {
        session.fail(err);
    }
    session.wait_for_default_service_account(NAMESPACE);
    session
}

/// A session once the inspector pod runs (created by the first caller).
fn inspected() -> Session {
    static CREATED: OnceLock<()> = OnceLock::new();
    CREATED.get_or_init(|| create_inspector(&session()));
    session()
}

/// The inspector: the host's network namespace, the node's state and config
/// directories mounted read-only, and nothing to do but be exec'd into.
fn inspector_manifest() -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {INSPECTOR}
  namespace: {NAMESPACE}
spec:
  hostNetwork: true
  restartPolicy: Never
  # sleep as PID 1 ignores SIGTERM; don't hold up a deletion for 30 s.
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {TOOLBOX}
    imagePullPolicy: Never
    command: [\"sleep\", \"100000\"]
    volumeMounts:
    - {{ name: state, mountPath: /host/var/lib/cairn, readOnly: true }}
    - {{ name: config, mountPath: /host/etc/kubernetes, readOnly: true }}
  volumes:
  - name: state
    hostPath: {{ path: /var/lib/cairn, type: Directory }}
  - name: config
    hostPath: {{ path: /etc/kubernetes, type: Directory }}
"
    )
}

/// Creates the inspector and waits until it runs.
fn create_inspector(session: &Session) {
    session.kubectl_ok_within(
        &["apply", "-f", "-"],
        &inspector_manifest(),
        KUBECTL_TIMEOUT,
    );
    let timeout = format!("--timeout={}s", POD_TIMEOUT.as_secs());
    let target = format!("pod/{INSPECTOR}");
    let args = [
        "wait",
        "--for=condition=Ready",
        &target,
        "-n",
        NAMESPACE,
        &timeout,
    ];
    let output = session.kubectl_within(&args, "", POD_TIMEOUT + KUBECTL_TIMEOUT);
    if !output.status.success() {
        fail_inspector(
            session,
            format!("the inspector pod did not start: {}", describe(&output)),
        );
    }
}

/// Fails with `message` and what `kubectl describe` says about the inspector.
fn fail_inspector(session: &Session, message: impl std::fmt::Display) -> ! {
    let described = session.kubectl(&["describe", "pod", INSPECTOR, "-n", NAMESPACE], "");
    session.fail(format!(
        "{message}\n--- kubectl describe pod {INSPECTOR} ---\n{}",
        describe(&described)
    ))
}

/// Runs `script` under `sh -c` in the inspector (see [`inspected`]); its stdout.
fn inspect(session: &Session, script: &str) -> String {
    let args = ["exec", "-n", NAMESPACE, INSPECTOR, "--", "sh", "-c", script];
    let output = session.kubectl(&args, "");
    if !output.status.success() {
        fail_inspector(session, format!("kubectl exec: {}", describe(&output)));
    }
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Lists every file that holds a private key — by name, or by a PEM private key in
/// it (etcd's data left out: it holds none of the node's keys, and is large) — and
/// the key directories: `<kind> <octal mode> <uid> <gid> <path>` per line.
const KEY_MODES_SCRIPT: &str = "cd /host || exit 1
{
  find var/lib/cairn etc/kubernetes -type f \\( -name '*.key' -o -name '*.kubeconfig' \\)
  find var/lib/cairn etc/kubernetes -path var/lib/cairn/etcd -prune -o -type f -print |
    xargs -r grep -l 'PRIVATE KEY'
} | sort -u | while read -r f; do stat -c 'file %a %u %g /%n' \"$f\"; done
for d in var/lib/cairn/identity var/lib/cairn/pki; do
  stat -c 'dir %a %u %g /%n' \"$d\" 2>/dev/null || echo \"missing - - - /$d\"
done";

/// One line of [`KEY_MODES_SCRIPT`]'s output.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stat {
    kind: String,
    mode: u32,
    uid: String,
    gid: String,
    path: String,
}

fn parse_stats(text: &str) -> Vec<Stat> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.splitn(5, ' ');
            let kind = fields.next()?.to_owned();
            let mode = u32::from_str_radix(fields.next()?, 8).unwrap_or(u32::MAX);
            let uid = fields.next()?.to_owned();
            let gid = fields.next()?.to_owned();
            let path = fields.next()?.to_owned();
            Some(Stat {
                kind,
                mode,
                uid,
                gid,
                path,
            })
        })
        .collect()
}

/// What is wrong with the keys and key directories `stats` describes.
fn key_problems(stats: &[Stat]) -> Vec<String> {
    let mut problems = Vec::new();
    for expected in KEY_FILES.iter().chain(KEY_DIRS) {
        if !stats
            .iter()
            .any(|s| s.path == *expected && s.kind != "missing")
        {
            problems.push(format!("{expected} does not exist"));
        }
    }
    for stat in stats {
        let root = stat.uid == "0" && stat.gid == "0";
        let ok = match stat.kind.as_str() {
            "file" => root && stat.mode == 0o600,
            "dir" => root && stat.mode & 0o077 == 0,
            _ => true,
        };
        if !ok {
            problems.push(format!(
                "{} {} is mode {:o}, owner {}:{} (want {} and 0:0)",
                stat.kind,
                stat.path,
                stat.mode,
                stat.uid,
                stat.gid,
                if stat.kind == "file" { "0600" } else { "0700" }
            ));
        }
    }
    problems
}

#[test]
#[ignore = "boots a node; run by `make test`"]
fn key_files_are_0600_and_owned_by_root() {
    let _node = shared_node();
    let session = inspected();
    let text = inspect(&session, KEY_MODES_SCRIPT);
    let problems = key_problems(&parse_stats(&text));
    if !problems.is_empty() {
        session.fail(format!(
            "private keys are not private:\n{}\n--- what the node has ---\n{text}",
            problems.join("\n")
        ));
    }
}

/// Listening TCP sockets in a `/proc/net/tcp` or `/proc/net/tcp6` text (proc(5)):
/// state `0A`; addresses are hex of the kernel's in-memory words, so each 32-bit group
/// is in host (little-endian) byte order, the port in plain hex.
fn listeners(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, state) = (fields.get(1)?, fields.get(3)?);
            if *state != "0A" {
                return None;
            }
            let (address, port) = local.split_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            let mut bytes = Vec::with_capacity(16);
            for group in address.as_bytes().chunks(8) {
                let word = u32::from_str_radix(std::str::from_utf8(group).ok()?, 16).ok()?;
                bytes.extend_from_slice(&word.to_le_bytes());
            }
            let ip = match bytes.len() {
                4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?)),
                16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
                _ => return None,
            };
            Some(SocketAddr::new(ip, port))
        })
        .collect()
}

/// Loopback, also as an IPv4-mapped IPv6 address.
fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// The node's listening TCP sockets, seen from the host network namespace; fails
/// unless the apiserver is among them beyond loopback, which shows the snapshot is the
/// node's and not a pod's own namespace.
fn node_listeners(session: &Session) -> (Vec<SocketAddr>, String) {
    let text = inspect(session, "cat /proc/net/tcp /proc/net/tcp6");
    let found = listeners(&text);
    let apiserver = found
        .iter()
        .any(|a| a.port() == APISERVER_PORT && !is_loopback(a.ip()));
    if !apiserver {
        session.fail(format!(
            "no apiserver listener in the host network namespace: {found:?}\n{text}"
        ));
    }
    (found, text)
}

#[test]
#[ignore = "boots a node; run by `make test`"]
fn etcd_listens_on_loopback_only() {
    let _node = shared_node();
    let session = inspected();
    session.wait_true("etcd", NODE_READY_TIMEOUT);
    let (found, _) = node_listeners(&session);
    for port in [ETCD_CLIENT_PORT, ETCD_PEER_PORT] {
        let on: Vec<&SocketAddr> = found.iter().filter(|a| a.port() == port).collect();
        if on.is_empty() || on.iter().any(|a| !is_loopback(a.ip())) {
            session.fail(format!(
                "etcd port {port} listens on {on:?}, want loopback only (all: {found:?})"
            ));
        }
    }
}

#[test]
#[ignore = "boots a node; run by `make test`"]
fn only_the_apiserver_kubelet_dns_and_debug_service_listen_beyond_loopback() {
    let _node = shared_node();
    let session = inspected();
    let (found, text) = node_listeners(&session);
    let exposed: BTreeSet<u16> = (found.iter())
        .filter(|a| !is_loopback(a.ip()))
        .map(SocketAddr::port)
        .collect();
    let unexpected: Vec<u16> = (exposed.iter().copied())
        .filter(|port| !EXPOSED_PORTS.contains(port))
        .collect();
    if !unexpected.is_empty() || !exposed.contains(&KUBELET_PORT) {
        session.fail(format!(
            "ports beyond loopback: {exposed:?}; want the kubelet's and nothing but \
             {EXPOSED_PORTS:?}\n{text}"
        ));
    }
}

#[test]
#[ignore = "boots a node; run by `make test`"]
fn etcd_refuses_clients_without_a_certificate() {
    let _node = shared_node();
    let session = inspected();
    session.wait_true("etcd", NODE_READY_TIMEOUT);
    let admin = Admin::new(&session);
    for port in [ETCD_CLIENT_PORT, ETCD_PEER_PORT] {
        // A forward per probe: etcd dropping the connection may end kubectl's.
        let forward = PortForward::start(&admin, INSPECTOR, port)
            .unwrap_or_else(|e| fail_inspector(&session, e));
        let probe = https_get(forward.local, &admin.ca, None, "/health")
            .unwrap_or_else(|e| session.fail(format!("etcd port {port}: {e}")));
        // The peer is etcd: its certificate, issued by the cluster CA, names it.
        if !probe.server_subject.contains("CN=etcd") {
            session.fail(format!("port {port} is not etcd's: {probe:?}"));
        }
        if !probe.client_certificate_requested {
            session.fail(format!(
                "etcd port {port} did not ask for a client certificate"
            ));
        }
        match &probe.reply {
            Reply::Status(code, head) => session.fail(format!(
                "etcd port {port} answered {code} to a client without a certificate:\n{head}"
            )),
            Reply::Refused(why) => {
                eprintln!("etcd port {port} refused a client without a certificate: {why}")
            }
        }
    }
}

#[test]
#[ignore = "boots a node; run by `make test`"]
fn the_kubelet_api_refuses_anonymous_requests() {
    let _node = shared_node();
    let session = session();
    let admin = Admin::new(&session);
    // The launcher forwards the kubelet's port to the host's loopback, as it does the
    // apiserver's.
    let forwarded = {
        let node = (session.cluster.node.lock()).unwrap_or_else(PoisonError::into_inner);
        (node.record().forwards.iter())
            .find(|f| f.guest == KUBELET_PORT)
            .map(|f| SocketAddr::from((Ipv4Addr::LOCALHOST, f.host)))
    };
    let Some(address) = forwarded else {
        session.fail(format!(
            "the launcher forwarded no host port to guest port {KUBELET_PORT}"
        ))
    };
    let anonymous = https_get(address, &admin.ca, None, "/pods")
        .unwrap_or_else(|e| session.fail(format!("kubelet at {address}: {e}")));
    let node_id = &session.cluster.ready.node_id;
    if !anonymous.server_subject.contains(node_id.as_str()) {
        session.fail(format!(
            "{address} is not this node's kubelet: {anonymous:?}"
        ));
    }
    if !matches!(anonymous.reply, Reply::Status(401, _)) {
        session.fail(format!(
            "an anonymous GET /pods got {:?}, want 401",
            anonymous.reply
        ));
    }
    // The same request with the cluster administrator's certificate is served, so
    // the 401 is about the missing identity and nothing else.
    let identity = (admin.cert.as_slice(), admin.key.as_slice());
    let authenticated = https_get(address, &admin.ca, Some(identity), "/pods")
        .unwrap_or_else(|e| session.fail(format!("kubelet at {address}: {e}")));
    match &authenticated.reply {
        Reply::Status(200, head) if head.contains("PodList") => {}
        other => session.fail(format!("an administrator's GET /pods got {other:?}")),
    }
}

/// A cluster-admin debug kubeconfig (what `dbg kubectl` uses) and the PEM pieces in it.
struct Admin {
    kubeconfig: tempfile::NamedTempFile,
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl Admin {
    fn new(session: &Session) -> Self {
        let (text, _) = session.kubeconfig(ADMIN_USER, ADMIN_GROUPS, None);
        let data = |key| kubeconfig_data(&text, key).unwrap_or_else(|e| session.fail(e));
        let (ca, cert, key) = (
            data("certificate-authority-data"),
            data("client-certificate-data"),
            data("client-key-data"),
        );
        let text = rewrite_server(&text, &session.cluster.api_endpoint);
        let kubeconfig = tempfile::Builder::new()
            .prefix("cairn-kubeconfig-")
            .tempfile()
            .unwrap_or_else(|e| session.fail(format!("temp kubeconfig: {e}")));
        std::fs::write(kubeconfig.path(), text).unwrap_or_else(|e| session.fail(e));
        Admin {
            kubeconfig,
            ca,
            cert,
            key,
        }
    }
}

/// The base64 `*-data` field `key` of a kubeconfig, decoded.
fn kubeconfig_data(text: &str, key: &str) -> Result<Vec<u8>, String> {
    let line = (text.lines().map(str::trim))
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
        .ok_or_else(|| format!("no {key} in the kubeconfig"))?;
    (STANDARD.decode(line.trim_matches('"'))).map_err(|e| format!("{key}: {e}"))
}

/// `kubectl port-forward` from a free port on the host's loopback to a port of a
/// pod in [`NAMESPACE`]; killed when dropped.
struct PortForward {
    child: Child,
    local: SocketAddr,
    /// Keeps kubectl's stdout drained (it reports every connection).
    _lines: Receiver<std::io::Result<String>>,
}

impl PortForward {
    fn start(admin: &Admin, pod: &str, port: u16) -> Result<Self, String> {
        let kubectl = locate_kubectl()?;
        let args: Vec<std::ffi::OsString> = [
            "port-forward",
            "-n",
            NAMESPACE,
            "--address=127.0.0.1",
            &format!("pod/{pod}"),
            &format!(":{port}"),
        ]
        .iter()
        .map(Into::into)
        .collect();
        let line = kubectl::command_line(&kubectl, admin.kubeconfig.path(), &args);
        let mut child = Command::new(&kubectl.program)
            .args(&line)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run kubectl port-forward: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        match Self::await_local(&lines, port) {
            Ok(local) => Ok(PortForward {
                child,
                local,
                _lines: lines,
            }),
            Err(why) => {
                let _ = child.kill();
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                let _ = child.wait();
                Err(format!(
                    "kubectl port-forward {pod} :{port}: {why}\n{stderr}"
                ))
            }
        }
    }

    /// The local address from kubectl's `Forwarding from 127.0.0.1:PORT -> port`.
    fn await_local(
        lines: &Receiver<std::io::Result<String>>,
        port: u16,
    ) -> Result<SocketAddr, String> {
        let deadline = Instant::now() + PORT_FORWARD_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(Ok(line)) => {
                    if let Some(local) = forwarded_from(&line, port) {
                        return Ok(local);
                    }
                }
                Ok(Err(e)) => return Err(format!("reading its output: {e}")),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("no forward after {PORT_FORWARD_TIMEOUT:?}"))
                }
                Err(RecvTimeoutError::Disconnected) => return Err("it exited".to_owned()),
            }
        }
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `Forwarding from 127.0.0.1:41234 -> 2379` -> 127.0.0.1:41234, for `port`.
fn forwarded_from(line: &str, port: u16) -> Option<SocketAddr> {
    let rest = line.trim().strip_prefix("Forwarding from ")?;
    let (local, remote) = rest.split_once(" -> ")?;
    let local: SocketAddr = local.parse().ok()?;
    (remote.trim() == port.to_string() && local.is_ipv4()).then_some(local)
}

/// What an HTTPS server did with one GET.
#[derive(Debug)]
enum Reply {
    /// It answered: the status and the head of the response.
    Status(u16, String),
    /// It ended the connection (a TLS alert, a reset, EOF) without an HTTP answer.
    Refused(String),
}

#[derive(Debug)]
struct Probe {
    /// The server certificate's subject (verified against the cluster CA).
    server_subject: String,
    /// The server sent a CertificateRequest.
    client_certificate_requested: bool,
    reply: Reply,
}

/// A client identity that records whether the server asked for one, and has none.
#[derive(Debug, Default)]
struct NoCertificate(AtomicBool);

impl ResolvesClientCert for NoCertificate {
    fn resolve(
        &self,
        _issuers: &[&[u8]],
        _schemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.0.store(true, Ordering::SeqCst);
        None
    }

    fn has_certs(&self) -> bool {
        false
    }
}

/// `GET path` over TLS to `address`, trusting only `ca_pem`, as `127.0.0.1` (which
/// every node certificate names), with the client identity `(cert PEM, key PEM)` or
/// none. Err only if no TLS session with a server the CA vouches for came about.
fn https_get(
    address: SocketAddr,
    ca_pem: &[u8],
    identity: Option<(&[u8], &[u8])>,
    path: &str,
) -> Result<Probe, String> {
    let roots = common::ca_roots(ca_pem)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let no_certificate = Arc::new(NoCertificate::default());
    let config = match identity {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("client certificate: {e}"))?;
            let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("client key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client identity: {e}"))?
        }
        None => builder.with_client_cert_resolver(no_certificate.clone()),
    };
    let name = ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
    let connection =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect_timeout(&address, CALL_TIMEOUT)
        .map_err(|e| format!("connect {address}: {e}"))?;
    for timeout in [
        tcp.set_read_timeout(Some(CALL_TIMEOUT)),
        tcp.set_write_timeout(Some(CALL_TIMEOUT)),
    ] {
        timeout.map_err(|e| e.to_string())?;
    }
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    // The client's side of a TLS 1.3 handshake ends before the server has checked
    // the client's (empty) certificate: a refusal shows up on the first read.
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .map_err(|e| format!("TLS handshake with {address}: {e}"))?;
    }
    let server_subject = match tls.conn.peer_certificates().and_then(|c| c.first()) {
        Some(der) => X509Certificate::from_der(der)
            .map(|(_, cert)| cert.subject().to_string())
            .map_err(|e| format!("the server certificate: {e}"))?,
        None => return Err("no server certificate".to_owned()),
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let reply = match exchange(&mut tls, &request) {
        Ok(head) => parse_status(&head),
        Err(why) => Reply::Refused(why),
    };
    Ok(Probe {
        server_subject,
        client_certificate_requested: no_certificate.0.load(Ordering::SeqCst),
        reply,
    })
}

/// Writes `request` and reads the reply's first few KiB (until EOF or enough).
fn exchange(stream: &mut impl ReadWrite, request: &str) -> Result<String, String> {
    stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.flush())
        .map_err(|e| format!("write: {e}"))?;
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    while head.len() < 16 * 1024 {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buffer[..n]),
            Err(e) if head.is_empty() => return Err(format!("read: {e}")),
            Err(_) => break,
        }
    }
    if head.is_empty() {
        return Err("closed without a reply".to_owned());
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// `HTTP/1.1 401 Unauthorized ...` -> 401; anything else is no HTTP answer.
fn parse_status(head: &str) -> Reply {
    let code = head
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok());
    match code {
        Some(code) => Reply::Status(code, head.to_owned()),
        None => Reply::Refused(format!("not an HTTP reply: {head:?}")),
    }
}

/// A netmask with a hole: well-formed words, a value the agent must refuse.
const BAD_IP: &str = "ip=10.0.2.15::10.0.2.2:255.0.255.0::eth0:off:10.0.2.3";
const BAD_IP_MESSAGE: &str = "network: malformed ip= parameter: ip= field netmask \
    \"255.0.255.0\" is not a contiguous netmask; continuing with loopback only";

#[test]
#[ignore = "boots a node; run by `make test`"]
fn a_malformed_ip_parameter_leaves_the_node_on_loopback() {
    let _node = own_node();
    let mut config = common::fresh_config("security-bad-ip");
    // The launcher's own ip= comes first; the agent takes the last one.
    config.extra_cmdline = vec![BAD_IP.to_owned()];
    config.debug_forward = false;
    config.api_forward = false;
    let mut node = Node::start(&config).unwrap_or_else(|err| panic!("{}", error_chain(&err)));
    // CAIRN_READY comes after the network step: PID 1 went on past the bad input.
    let ready = node
        .wait_ready(common::READY_TIMEOUT)
        .unwrap_or_else(|err| common::fail(&node, error_chain(&err)));
    // What the kernel holds (CAIRN_READY reads it back: getifaddrs(3), /proc/net/route;
    // boot.rs's the_network_comes_from_the_ip_parameter sees eth0 there on a good boot):
    // addresses on `lo` alone, both of them, and no route at all.
    let off_loopback: Vec<&String> = (ready.addresses.iter())
        .filter(|a| !a.starts_with("lo "))
        .collect();
    if !off_loopback.is_empty() || !ready.addresses.iter().any(|a| a == "lo 127.0.0.1/8") {
        common::fail(
            &node,
            format!("addresses {:?}, want loopback only", ready.addresses),
        );
    }
    if !ready.routes.is_empty() {
        common::fail(&node, format!("routes {:?}, want none", ready.routes));
    }
    let console = std::fs::read_to_string(node.console_log())
        .unwrap_or_else(|err| common::fail(&node, format!("console log: {err}")));
    if !console.lines().any(|line| line.contains(BAD_IP_MESSAGE)) {
        common::fail(&node, format!("no console line saying `{BAD_IP_MESSAGE}`"));
    }
    if console.contains("panicked") {
        common::fail(&node, "the agent panicked");
    }
    // And it still does what PID 1 must: stop cleanly when asked.
    match node.stop(STOP_TIMEOUT) {
        Ok(Stop::Clean(exited)) => match exited.info {
            Some(info) if info.action == ExitAction::Reboot && info.code == 0 => {}
            other => common::fail(&node, format!("unexpected exit: {other:?}")),
        },
        Ok(Stop::Forced { why, .. }) => common::fail(&node, format!("had to be killed: {why}")),
        Err(err) => common::fail(&node, error_chain(&err)),
    }
}

#[test]
fn listeners_stats_and_forwards_parse() {
    // proc(5) examples: 127.0.0.1:2379, 0.0.0.0:6443, [::]:10250, [::ffff:127.0.0.1]:2380,
    // and an established connection that is not a listener.
    let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid
   0: 0100007F:094B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0
   1: 00000000:192B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0
   2: 0F02000A:192B 0202000A:D2F0 01 00000000:00000000 00:00000000 00000000     0
   3: 00000000000000000000000000000000:280A 00000000000000000000000000000000:0000 0A 0
   4: 0000000000000000FFFF00000100007F:094C 00000000000000000000000000000000:0000 0A 0
   5: 00000000000000000000000001000000:1A0B 00000000000000000000000000000000:0000 0A 0";
    let found = listeners(tcp);
    let expected: Vec<SocketAddr> = [
        "127.0.0.1:2379",
        "0.0.0.0:6443",
        "[::]:10250",
        "[::ffff:127.0.0.1]:2380",
        "[::1]:6667",
    ]
    .iter()
    .map(|a| a.parse().unwrap())
    .collect();
    assert_eq!(found, expected);
    let loopback: Vec<bool> = found.iter().map(|a| is_loopback(a.ip())).collect();
    assert_eq!(loopback, [true, false, false, true, true]);

    let stats = parse_stats(
        "file 600 0 0 /var/lib/cairn/pki/ca.key\nfile 644 0 0 /etc/kubernetes/x.kubeconfig\n\
         dir 755 0 0 /var/lib/cairn/pki\nmissing - - - /var/lib/cairn/identity\n",
    );
    assert_eq!(stats.len(), 4);
    let problems = key_problems(&stats);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("x.kubeconfig is mode 644")),
        "{problems:?}"
    );
    assert!(problems
        .iter()
        .any(|p| p.contains("dir /var/lib/cairn/pki is mode 755")));
    assert!(problems
        .iter()
        .any(|p| p == "/var/lib/cairn/identity does not exist"));
    assert!(problems
        .iter()
        .any(|p| p == "/var/lib/cairn/pki/agent.key does not exist"));
    assert!(
        !problems.iter().any(|p| p.contains("ca.key")),
        "{problems:?}"
    );

    assert_eq!(
        forwarded_from("Forwarding from 127.0.0.1:41234 -> 2379", 2379),
        Some("127.0.0.1:41234".parse().unwrap())
    );
    assert_eq!(
        forwarded_from("Forwarding from [::1]:41234 -> 2379", 2379),
        None
    );
    assert_eq!(
        forwarded_from("Forwarding from 127.0.0.1:1 -> 2380", 2379),
        None
    );
    assert!(matches!(
        parse_status("HTTP/1.1 401 Unauthorized\r\n"),
        Reply::Status(401, _)
    ));
    assert!(matches!(parse_status("\x15\x03\x03"), Reply::Refused(_)));
}

/// What a pod on the pod network gets back: the bytes the node's debug port answers
/// the HTTP/2 connection preface with, then the bytes the apiserver answers a plain
/// HTTP request with (Go's TLS server says 400 in plain HTTP), the proof that the node
/// is reachable at all (busybox's `nc` has no `-z`).
const DEBUG_FROM_POD_SCRIPT: &str = "printf 'PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n' | \
     nc -w 5 10.0.2.15 7837 | wc -c; printf 'GET / HTTP/1.0\\r\\n\\r\\n' | \
     nc -w 5 10.0.2.15 6443 | wc -c";

/// The debug service is unauthenticated, so workloads must not reach it: a pod (not
/// on the host network) connecting to the node's port 7837 is closed at once, with no
/// answer to the HTTP/2 preface, while the same pod does reach the apiserver.
#[test]
#[ignore = "boots QEMU; run with `make test`"]
fn pods_cannot_reach_the_debug_service() {
    let _node = shared_node();
    let session = session();
    let pod = "debug-port-probe";
    let manifest = format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {pod}
  namespace: default
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: {TOOLBOX}
    imagePullPolicy: Never
    command: [\"sh\", \"-c\", {script:?}]
",
        script = DEBUG_FROM_POD_SCRIPT
    );
    session.wait_for_default_service_account("default");
    session.kubectl_ok_within(&["apply", "-f", "-"], &manifest, KUBECTL_TIMEOUT);
    let timeout = format!("--timeout={}s", POD_TIMEOUT.as_secs());
    let target = format!("pod/{pod}");
    let wait = [
        "wait",
        "--for=jsonpath={.status.phase}=Succeeded",
        &target,
        "-n",
        "default",
        &timeout,
    ];
    let output = session.kubectl_within(&wait, "", POD_TIMEOUT + KUBECTL_TIMEOUT);
    if !output.status.success() {
        session.fail(format!(
            "the probe pod did not finish: {}",
            describe(&output)
        ));
    }
    let logs = session.kubectl_ok(&["logs", pod, "-n", "default"]);
    let counts: Vec<u64> = logs
        .split_whitespace()
        .filter_map(|word| word.parse().ok())
        .collect();
    if !matches!(counts[..], [0, apiserver] if apiserver > 0) {
        session.fail(format!(
            "expected no bytes from the debug port and an answer from the apiserver, \
             got {logs:?}"
        ));
    }
}
