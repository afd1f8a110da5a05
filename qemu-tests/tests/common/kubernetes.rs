//! Harness of the Kubernetes boot tests: one node per test file with the apiserver
//! forwarded (the launcher's default), a debug-API session with deadlines, and kubectl
//! run the way `dbg kubectl` runs it.
//!
//! kubectl is the project-built one, found as `dbg kubectl` finds it (`CAIRN_KUBECTL`,
//! else `$CAIRN_CACHE/go-out/bin/kube kubectl`), with a fresh cluster-admin debug
//! kubeconfig (GetDebugKubeconfig) pointed at the host's forward of port 6443. Every
//! kubectl run has a deadline and is killed when it passes; waits use the agent's
//! WaitCondition or `kubectl wait`, never a fixed sleep. A failure message carries the
//! conditions, the tails of the components' logs fetched through the debug API, and
//! the console tail.

use std::ffi::OsString;
use std::fmt::Display;
use std::process::{Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use cairn_api::v1::{
    Component, Condition, GetDebugKubeconfigRequest, ListComponentsRequest, ListConditionsRequest,
    SignalComponentRequest, WaitConditionRequest,
};
use cairn_api::Client;
use cairn_dbg::commands::kubeconfig::rewrite_server;
use cairn_dbg::commands::kubectl::{self, Kubectl};
use cairn_qemu::node::{error_chain, TAIL_LINES};
use cairn_qemu::{Node, ReadyInfo};
use tokio::io::AsyncWriteExt;

/// etcd, the control plane, the kubelet and node registration under TCG on a small
/// CI host.
pub const CONTROL_PLANE_TIMEOUT: Duration = Duration::from_secs(600);
/// How long the debug service may take to answer after `CAIRN_READY`.
const CONNECT_DEADLINE: Duration = Duration::from_secs(60);
/// Deadline of a debug call that should answer at once.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// Deadline of a kubectl run that does not wait for anything itself.
pub const KUBECTL_TIMEOUT: Duration = Duration::from_secs(60);
/// The controller-manager creates a namespace's `default` service account, which
/// admission requires of every pod, shortly after it starts.
pub const SERVICE_ACCOUNT_TIMEOUT: Duration = Duration::from_secs(120);
/// Components whose log tails a failure report carries unless told otherwise.
pub const REPORTED: &[&str] = &["agent", "kube-apiserver", "kubelet", "containerd"];
/// Lines of each component's log in a failure report.
const LOG_TAIL: u32 = 30;
/// The cluster administrator `dbg kubectl` acts as.
const ADMIN_USER: &str = "cairn-debug";
const ADMIN_GROUPS: &[&str] = &["system:masters"];

/// The node of a test file, booted once, with the apiserver forwarded.
pub struct Cluster {
    pub node: Mutex<Node>,
    pub ready: ReadyInfo,
    pub debug_endpoint: String,
    pub api_endpoint: String,
}

/// Boots the test file's node on first use (state dir named after the test crate);
/// every later caller gets the same node or the same boot failure.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
    match CLUSTER.get_or_init(boot) {
        Ok(cluster) => cluster,
        Err(err) => panic!("the node did not boot: {err}"),
    }
}

/// The NodePort every Kubernetes test node has forwarded to a free host port
/// ([`Cluster::host_port`]), as `make start` forwards it to host port 30080.
pub const NODE_PORT: u16 = 30080;

impl Cluster {
    /// The host port forwarded to guest port `guest`, if any.
    pub fn host_port(&self, guest: u16) -> Option<u16> {
        let node = self.node.lock().unwrap_or_else(|p| p.into_inner());
        let forwards = &node.record().forwards;
        forwards.iter().find(|f| f.guest == guest).map(|f| f.host)
    }
}

/// The per-node config the file's node boots with, if the file sets one.
static SETTINGS: OnceLock<cairn_qemu::config::Settings> = OnceLock::new();

/// Gives the file's node a per-node config; call before the first [`Session::open`]
/// (the node boots once, on first use). Panics if the node was already configured.
pub fn configure(settings: cairn_qemu::config::Settings) {
    if SETTINGS.set(settings).is_err() {
        panic!("the node's config is set once, before it boots");
    }
}

fn boot() -> Result<Cluster, String> {
    boot_cluster(env!("CARGO_CRATE_NAME"), SETTINGS.get().cloned())
}

/// Boots a node in state dir `name` (a blank data disk) as [`cluster`] boots the
/// file's: for a test that needs a node of its own, e.g. one it leaves under disk
/// pressure. Keep it in a `static` and open sessions on it with [`Session::open_on`].
pub fn boot_cluster(
    name: &str,
    settings: Option<cairn_qemu::config::Settings>,
) -> Result<Cluster, String> {
    let mut config = super::fresh_config(name);
    config.settings = settings;
    config.forwards.push(cairn_qemu::ForwardRequest {
        host: None,
        guest: NODE_PORT,
    });
    let mut node = Node::start(&config).map_err(|e| error_chain(&e))?;
    let ready = node
        .wait_ready(super::READY_TIMEOUT)
        .map_err(|e| error_chain(&e))?;
    let debug_endpoint = node.debug_endpoint().ok_or("no debug forward")?.to_owned();
    let api_endpoint = node
        .api_endpoint()
        .ok_or("no apiserver forward")?
        .to_owned();
    Ok(Cluster {
        node: Mutex::new(node),
        ready,
        debug_endpoint,
        api_endpoint,
    })
}

/// A connected debug client to the node and the runtime that drives it.
pub struct Session {
    pub cluster: &'static Cluster,
    pub runtime: tokio::runtime::Runtime,
    pub client: Client,
    reported: &'static [&'static str],
}

impl Session {
    /// Connects to the file's node (booting it on first use).
    pub fn open() -> Self {
        Self::open_on(cluster())
    }

    /// Connects to `cluster`, a node from [`boot_cluster`].
    pub fn open_on(cluster: &'static Cluster) -> Self {
        // One worker thread: the connection keeps answering the debug service's HTTP/2
        // keepalive pings between calls, which a current-thread runtime would not
        // drive while the test waits elsewhere.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let client = runtime.block_on(cairn_api::connect_within(
            &cluster.debug_endpoint,
            CONNECT_DEADLINE,
        ));
        let client = client
            .unwrap_or_else(|err| fail_with_console(cluster, error_chain(&err), "(not connected)"));
        Session {
            cluster,
            runtime,
            client,
            reported: REPORTED,
        }
    }

    /// The same session, reporting these components' logs on failure.
    pub fn reporting(mut self, components: &'static [&'static str]) -> Self {
        self.reported = components;
        self
    }

    /// Panics with `message`, the conditions, the reported components' log tails and
    /// the console tail.
    pub fn fail(&self, message: impl Display) -> ! {
        let mut report = self.conditions_report();
        for component in self.reported {
            let tail = match self.log_tail(component, LOG_TAIL) {
                Ok(lines) => lines.join("\n"),
                Err(err) => err,
            };
            report.push_str(&format!("\n--- {component} log (tail) ---\n{tail}"));
        }
        fail_with_console(self.cluster, message, &report)
    }

    fn conditions_report(&self) -> String {
        let mut client = self.client.clone();
        self.runtime.block_on(async {
            let call = client.list_conditions(ListConditionsRequest { names: vec![] });
            match tokio::time::timeout(CALL_TIMEOUT, call).await {
                Ok(Ok(list)) => (list.into_inner().conditions.iter())
                    .map(|c| format!("{} {} {}", c.name, c.status, c.reason))
                    .collect::<Vec<_>>()
                    .join("\n"),
                other => format!("cannot list conditions: {other:?}"),
            }
        })
    }

    /// The newest `lines` lines of `component`'s log buffer.
    pub fn log_tail(&self, component: &str, lines: u32) -> Result<Vec<String>, String> {
        super::log_lines(
            &self.runtime,
            &self.client,
            component,
            Some(lines),
            CALL_TIMEOUT,
        )
    }

    /// Condition `name`'s status and reason as the agent reports it now.
    pub fn condition(&self, name: &str) -> (bool, String) {
        let request = ListConditionsRequest {
            names: vec![name.to_owned()],
        };
        let mut client = self.client.clone();
        let call = client.list_conditions(request);
        match (self.runtime).block_on(async { tokio::time::timeout(CALL_TIMEOUT, call).await }) {
            Ok(Ok(list)) => (list.into_inner().conditions.first())
                .map(|c| (c.status, c.reason.clone()))
                .unwrap_or_else(|| self.fail(format!("no condition {name}"))),
            Ok(Err(status)) => self.fail(format!("ListConditions {name}: {status}")),
            Err(_) => self.fail(format!("ListConditions {name} did not answer")),
        }
    }

    /// Every supervised component as the agent reports it now.
    pub fn components(&self) -> Vec<Component> {
        let mut client = self.client.clone();
        let call = client.list_components(ListComponentsRequest {});
        match (self.runtime).block_on(async { tokio::time::timeout(CALL_TIMEOUT, call).await }) {
            Ok(Ok(list)) => list.into_inner().components,
            Ok(Err(status)) => self.fail(format!("ListComponents: {status}")),
            Err(_) => self.fail("ListComponents did not answer"),
        }
    }

    /// Component `name` as the agent reports it now.
    pub fn component(&self, name: &str) -> Component {
        (self.components().into_iter())
            .find(|c| c.name == name)
            .unwrap_or_else(|| self.fail(format!("no component {name}")))
    }

    /// Sends `signal` (e.g. `SIGKILL`) to component `name` through the debug service.
    pub fn signal(&self, name: &str, signal: &str) {
        let mut client = self.client.clone();
        let request = SignalComponentRequest {
            component: name.to_owned(),
            signal: signal.to_owned(),
        };
        let call = client.signal_component(request);
        match (self.runtime).block_on(async { tokio::time::timeout(CALL_TIMEOUT, call).await }) {
            Ok(Ok(_)) => {}
            Ok(Err(status)) => self.fail(format!("SignalComponent {name} {signal}: {status}")),
            Err(_) => self.fail(format!("SignalComponent {name} {signal} did not answer")),
        }
    }

    /// Waits (in the agent) for condition `name` to be true.
    pub fn wait_true(&self, name: &str, timeout: Duration) -> Condition {
        self.try_wait_true(name, timeout)
            .unwrap_or_else(|err| self.fail(err))
    }

    /// Waits (in the agent) for condition `name` to be true; why not, if it is not.
    pub fn try_wait_true(&self, name: &str, timeout: Duration) -> Result<Condition, String> {
        let request = WaitConditionRequest {
            name: name.to_owned(),
            timeout_ms: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
        };
        let mut client = self.client.clone();
        // Timers need the runtime: build them inside `block_on`.
        let result = self.runtime.block_on(async {
            tokio::time::timeout(timeout + CALL_TIMEOUT, client.wait_condition(request)).await
        });
        match result {
            Ok(Ok(condition)) => Ok(condition.into_inner()),
            Ok(Err(status)) => Err(format!("condition {name}: {status}")),
            Err(_) => Err(format!("WaitCondition {name} did not answer")),
        }
    }

    /// A debug kubeconfig (as GetDebugKubeconfig returns it) and its expiry.
    pub fn kubeconfig(&self, user: &str, groups: &[&str], validity: Option<u32>) -> (String, i64) {
        let request = GetDebugKubeconfigRequest {
            user: user.to_owned(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            validity_seconds: validity,
        };
        let mut client = self.client.clone();
        let call = client.get_debug_kubeconfig(request);
        match self
            .runtime
            .block_on(async { tokio::time::timeout(CALL_TIMEOUT, call).await })
        {
            Ok(Ok(response)) => {
                let response = response.into_inner();
                (response.kubeconfig, response.expires_unix_seconds)
            }
            Ok(Err(status)) => self.fail(format!("GetDebugKubeconfig: {status}")),
            Err(_) => self.fail("GetDebugKubeconfig did not answer"),
        }
    }

    /// Runs kubectl as cluster admin (what `dbg kubectl` does) with `stdin`, killed
    /// after [`KUBECTL_TIMEOUT`].
    /// Waits until pods can be admitted in `namespace`: its `default` service account
    /// exists.
    pub fn wait_for_default_service_account(&self, namespace: &str) {
        let timeout = format!("--timeout={}s", SERVICE_ACCOUNT_TIMEOUT.as_secs());
        self.kubectl_ok_within(
            &[
                "wait",
                "--for=create",
                "serviceaccount/default",
                "-n",
                namespace,
                &timeout,
            ],
            "",
            SERVICE_ACCOUNT_TIMEOUT + KUBECTL_TIMEOUT,
        );
    }

    pub fn kubectl(&self, args: &[&str], stdin: &str) -> Output {
        self.kubectl_within(args, stdin, KUBECTL_TIMEOUT)
    }

    /// Runs kubectl as cluster admin with `stdin`, killed after `deadline`.
    pub fn kubectl_within(&self, args: &[&str], stdin: &str, deadline: Duration) -> Output {
        let (text, _) = self.kubeconfig(ADMIN_USER, ADMIN_GROUPS, None);
        let text = rewrite_server(&text, &self.cluster.api_endpoint);
        self.kubectl_as(&text, args, stdin, deadline)
    }

    /// Runs kubectl with the kubeconfig `text` and `stdin`, killed after `deadline`.
    pub fn kubectl_as(&self, text: &str, args: &[&str], stdin: &str, deadline: Duration) -> Output {
        let file = tempfile::Builder::new()
            .prefix("cairn-kubeconfig-")
            .tempfile()
            .unwrap_or_else(|e| self.fail(format!("temp kubeconfig: {e}")));
        std::fs::write(file.path(), text).unwrap_or_else(|e| self.fail(e));
        let kubectl = locate_kubectl().unwrap_or_else(|e| self.fail(e));
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        let line = kubectl::command_line(&kubectl, file.path(), &args);
        let run = async {
            let mut child = tokio::process::Command::new(&kubectl.program)
                .args(&line)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()?;
            if let Some(mut input) = child.stdin.take() {
                input.write_all(stdin.as_bytes()).await?;
            }
            child.wait_with_output().await
        };
        match (self.runtime).block_on(async { tokio::time::timeout(deadline, run).await }) {
            Ok(Ok(output)) => output,
            Ok(Err(err)) => self.fail(format!("cannot run kubectl {args:?}: {err}")),
            Err(_) => self.fail(format!("kubectl {args:?} still running after {deadline:?}")),
        }
    }

    /// kubectl that must succeed; its stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        self.kubectl_ok_within(args, "", KUBECTL_TIMEOUT)
    }

    /// kubectl with `stdin` that must succeed within `deadline`; its stdout.
    pub fn kubectl_ok_within(&self, args: &[&str], stdin: &str, deadline: Duration) -> String {
        let output = self.kubectl_within(args, stdin, deadline);
        if !output.status.success() {
            self.fail(format!("kubectl {args:?} failed: {}", describe(&output)));
        }
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

/// The kubectl `dbg kubectl` would run.
pub fn locate_kubectl() -> Result<Kubectl, String> {
    let var = |name| std::env::var_os(name);
    kubectl::locate(
        var(kubectl::KUBECTL_ENV).as_deref(),
        var(kubectl::CACHE_ENV).as_deref(),
        var("HOME").as_deref(),
    )
    .map_err(|e| e.to_string())
}

/// A finished process's status, stdout and stderr.
pub fn describe(output: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn fail_with_console(cluster: &Cluster, message: impl Display, report: &str) -> ! {
    let node = cluster.node.lock().unwrap_or_else(|p| p.into_inner());
    panic!(
        "{message}\n--- conditions ---\n{report}\n--- console tail ({}) ---\n{}",
        node.console_log().display(),
        node.console_tail(TAIL_LINES)
    )
}

/// GET / on 127.0.0.1:`port` (a forwarded guest port); the body of a 200 answer.
pub fn http_get(port: u16) -> Result<String, String> {
    use std::io::{Read, Write};
    let timeout = Duration::from_secs(10);
    let address = (std::net::Ipv4Addr::LOCALHOST, port).into();
    let mut stream =
        std::net::TcpStream::connect_timeout(&address, timeout).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut reply = String::new();
    stream
        .read_to_string(&mut reply)
        .map_err(|e| e.to_string())?;
    match reply.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.") && head.contains(" 200 ") => {
            Ok(body.to_owned())
        }
        _ => Err(format!("no 200 answer: {reply:?}")),
    }
}

/// The addresses busybox `nslookup` printed for the name: the `Address:` lines after
/// its `Name:` line (the server's own address comes before it).
pub fn nslookup_addresses(output: &str) -> std::collections::BTreeSet<String> {
    output
        .lines()
        .skip_while(|line| !line.starts_with("Name:"))
        .filter_map(|line| line.strip_prefix("Address:"))
        .map(|ip| ip.trim().to_owned())
        .collect()
}
