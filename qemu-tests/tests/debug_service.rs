//! Boot-level tests of the NodeDebugService: boot the debug image, then look at the node
//! only through the API (`cairn-api`'s client over the launcher's forward to guest port
//! 7837). Every wait is a call with a deadline (WaitCondition, a followed log stream);
//! nothing sleeps for a fixed time or reads the console (only connecting retries, since
//! the service may come up a moment after `CAIRN_READY`). On failure the message carries the conditions, components and the
//! containerd log fetched from the node, plus the console tail.
//!
//! The tests share one node. The one that kills containerd takes [`EXCLUSIVE`] for
//! writing; the others hold it for reading, so they never see containerd mid-restart.
//! The production-image test boots its own node from `CAIRN_PRODUCTION_IMAGE_DIR`
//! (default `build/production`).
//!
//! All `#[ignore]`d: `make test` runs them with `--ignored`.

// Shared with boot.rs, which uses the parts this file does not.
#[allow(dead_code)]
mod common;

use std::fmt::Display;
use std::path::PathBuf;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use cairn_api::v1::{
    get_logs_response::Kind, ComponentState, Condition, GetLogsRequest, GetProcessStatsRequest,
    ListComponentsRequest, ListConditionsRequest, LogEntry, LogStream, SignalComponentRequest,
    WaitConditionRequest,
};
use cairn_api::{Client, ConnectError};
use cairn_qemu::accel::{self, AccelChoice};
use cairn_qemu::node::error_chain;
use cairn_qemu::{Image, Node, NodeConfig};
use common::{shared, Shared};
use tonic::Code;

/// The conditions a node with containerd reaches, in boot order (docs/interfaces.md).
const BOOT_CONDITIONS: [&str; 5] = ["mounts", "modules", "identity", "network", "containerd"];
/// How long a boot condition may take after `CAIRN_READY` (TCG on a small CI host).
const CONDITION_TIMEOUT: Duration = Duration::from_secs(180);
/// How long the debug service may take to answer after `CAIRN_READY`.
const CONNECT_DEADLINE: Duration = Duration::from_secs(60);
/// Deadline of a single call that should answer at once.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// A followed stream must deliver a new line within this.
const FOLLOW_LATENCY: Duration = Duration::from_secs(1);
/// The supervisor's back-off plus containerd's start under TCG.
const RESTART_TIMEOUT: Duration = Duration::from_secs(120);
/// The only string of the server that every build of it must contain: the gRPC path.
const SERVICE_NAME: &[u8] = b"cairn.debug.v1.NodeDebugService";

/// Held for reading by the tests that only look, for writing by the one that kills.
static EXCLUSIVE: RwLock<()> = RwLock::new(());

fn looking() -> RwLockReadGuard<'static, ()> {
    EXCLUSIVE
        .read()
        .unwrap_or_else(|poison| poison.into_inner())
}

fn killing() -> RwLockWriteGuard<'static, ()> {
    EXCLUSIVE
        .write()
        .unwrap_or_else(|poison| poison.into_inner())
}

/// A connected client to the shared node, and the runtime to drive it.
struct Session {
    shared: &'static Shared,
    runtime: tokio::runtime::Runtime,
    client: Client,
}

impl Session {
    fn open() -> Self {
        let shared = shared();
        let endpoint = {
            let node = shared.node.lock().unwrap_or_else(|p| p.into_inner());
            node.debug_endpoint().map(str::to_owned)
        };
        let Some(endpoint) = endpoint else {
            shared.fail("the launcher forwarded no host port to the debug service")
        };
        let runtime = runtime();
        let client = runtime
            .block_on(cairn_api::connect_within(&endpoint, CONNECT_DEADLINE))
            .unwrap_or_else(|err| shared.fail(error_chain(&err)));
        Session {
            shared,
            runtime,
            client,
        }
    }

    /// Panics with `message`, what the node reports about itself, and the console tail.
    fn fail(&self, message: impl Display) -> ! {
        let report = self.runtime.block_on(report(self.client.clone()));
        self.shared.fail(format!("{message}\n{report}"))
    }

    fn check(&self, condition: bool, message: impl Display) {
        if !condition {
            self.fail(message);
        }
    }

    fn wait_condition(&self, name: &str, timeout: Duration) -> Condition {
        let request = WaitConditionRequest {
            name: name.to_owned(),
            timeout_ms: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
        };
        let mut client = self.client.clone();
        let call = client.wait_condition(request);
        match self.call(timeout + CALL_TIMEOUT, call) {
            Ok(condition) => condition,
            Err(status) => self.fail(format!("condition {name}: {status}")),
        }
    }

    /// Every entry of `component`'s log that `tail` selects (no follow).
    fn logs(&self, component: &str, tail: Option<u32>) -> Result<Vec<LogEntry>, tonic::Status> {
        let request = GetLogsRequest {
            component: component.to_owned(),
            tail_lines: tail,
            follow: false,
        };
        let mut client = self.client.clone();
        self.runtime.block_on(async {
            let collect = async {
                let mut stream = client.get_logs(request).await?.into_inner();
                let mut entries = Vec::new();
                while let Some(message) = stream.message().await? {
                    match message.kind {
                        Some(Kind::Entry(entry)) => entries.push(entry),
                        other => {
                            return Err(tonic::Status::internal(format!(
                                "unexpected {other:?} in an unfollowed log"
                            )))
                        }
                    }
                }
                Ok(entries)
            };
            tokio::time::timeout(CALL_TIMEOUT, collect)
                .await
                .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("GetLogs timed out")))
        })
    }

    fn components(&self) -> Vec<cairn_api::v1::Component> {
        let mut client = self.client.clone();
        let call = client.list_components(ListComponentsRequest {});
        match self.call(CALL_TIMEOUT, call) {
            Ok(list) => list.components,
            Err(status) => self.fail(format!("ListComponents: {status}")),
        }
    }

    fn component(&self, name: &str) -> cairn_api::v1::Component {
        let components = self.components();
        match components.into_iter().find(|c| c.name == name) {
            Some(component) => component,
            None => self.fail(format!("ListComponents has no {name}")),
        }
    }

    fn signal(&self, component: &str, signal: &str) -> u32 {
        let request = SignalComponentRequest {
            component: component.to_owned(),
            signal: signal.to_owned(),
        };
        let mut client = self.client.clone();
        let call = client.signal_component(request);
        match self.call(CALL_TIMEOUT, call) {
            Ok(reply) => reply.pid,
            Err(status) => self.fail(format!("SignalComponent {component} {signal}: {status}")),
        }
    }

    /// Reads `follow` (containerd's log, followed from before the kill) until a line
    /// from the service itself arrives while ListComponents shows a new process with a
    /// higher restart count; fails at [`RESTART_TIMEOUT`].
    fn wait_for_restart(
        &self,
        old: &cairn_api::v1::Component,
        mut follow: tonic::Streaming<cairn_api::v1::GetLogsResponse>,
    ) -> cairn_api::v1::Component {
        let deadline = tokio::time::Instant::now() + RESTART_TIMEOUT;
        loop {
            // The timer must be made inside the runtime, hence the async block.
            let next = self
                .runtime
                .block_on(async { tokio::time::timeout_at(deadline, follow.message()).await });
            let message = match next {
                Ok(Ok(Some(message))) => message,
                Ok(Ok(None)) => self.fail("the followed containerd log ended"),
                Ok(Err(status)) => self.fail(format!("following containerd: {status}")),
                Err(_) => self.fail(format!(
                    "containerd wrote nothing within {RESTART_TIMEOUT:?} of the kill: {:?}",
                    self.component("containerd")
                )),
            };
            let Some(Kind::Entry(entry)) = message.kind else {
                continue;
            };
            if entry.stream() == LogStream::Agent {
                continue;
            }
            let now = self.component("containerd");
            if now.restart_count > old.restart_count && now.pid.is_some_and(|p| Some(p) != old.pid)
            {
                return now;
            }
        }
    }

    fn call<T>(
        &self,
        timeout: Duration,
        call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, tonic::Status> {
        self.runtime.block_on(async {
            match tokio::time::timeout(timeout, call).await {
                Ok(result) => result.map(tonic::Response::into_inner),
                Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                    "no answer within {timeout:?}"
                ))),
            }
        })
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Conditions, components and the containerd log tail, for failure messages.
async fn report(mut client: Client) -> String {
    let mut text = String::from("--- node report (debug API) ---\n");
    let conditions = client.list_conditions(ListConditionsRequest::default());
    match tokio::time::timeout(CALL_TIMEOUT, conditions).await {
        Ok(Ok(list)) => {
            for c in list.into_inner().conditions {
                text += &format!("condition {} = {} ({})\n", c.name, c.status, c.reason);
            }
        }
        Ok(Err(status)) => text += &format!("ListConditions failed: {status}\n"),
        Err(_) => text += "ListConditions timed out\n",
    }
    let components = client.list_components(ListComponentsRequest {});
    match tokio::time::timeout(CALL_TIMEOUT, components).await {
        Ok(Ok(list)) => {
            for c in list.into_inner().components {
                text += &format!(
                    "component {} state {:?} pid {:?} restarts {} {}\n",
                    c.name,
                    c.state(),
                    c.pid,
                    c.restart_count,
                    c.detail
                );
            }
        }
        Ok(Err(status)) => text += &format!("ListComponents failed: {status}\n"),
        Err(_) => text += "ListComponents timed out\n",
    }
    let request = GetLogsRequest {
        component: "containerd".into(),
        tail_lines: Some(30),
        follow: false,
    };
    let logs = async {
        let mut stream = client.get_logs(request).await?.into_inner();
        let mut lines = String::new();
        while let Some(message) = stream.message().await? {
            if let Some(Kind::Entry(entry)) = message.kind {
                lines += &format!("containerd: {}\n", entry.text);
            }
        }
        Ok::<_, tonic::Status>(lines)
    };
    match tokio::time::timeout(CALL_TIMEOUT, logs).await {
        Ok(Ok(lines)) => text += &lines,
        Ok(Err(status)) => text += &format!("containerd logs: {status}\n"),
        Err(_) => text += "containerd logs timed out\n",
    }
    text
}

#[test]
#[ignore = "boots QEMU; run with `make test`"]
fn every_condition_up_to_containerd_becomes_true() {
    let _look = looking();
    let session = Session::open();
    for name in BOOT_CONDITIONS {
        let condition = session.wait_condition(name, CONDITION_TIMEOUT);
        session.check(
            condition.status && condition.first_true_boot_ns.is_some(),
            format!("{name} returned without being true: {condition:?}"),
        );
    }
}

#[test]
#[ignore = "boots QEMU; run with `make test`"]
fn containerd_logs_keep_the_order_containerd_wrote_them_in() {
    let _look = looking();
    let session = Session::open();
    session.wait_condition("containerd", CONDITION_TIMEOUT);
    let entries = session
        .logs("containerd", None)
        .unwrap_or_else(|status| session.fail(format!("logs containerd: {status}")));
    let stamped: Vec<(Timestamp, &LogEntry)> = entries
        .iter()
        .filter_map(|e| logrus_time(&e.text).map(|t| (t, e)))
        .collect();
    session.check(
        stamped.len() >= 2,
        format!(
            "containerd's log has {} lines, {} with a time=\"...\" field",
            entries.len(),
            stamped.len()
        ),
    );
    for pair in entries.windows(2) {
        session.check(
            pair[1].seq == pair[0].seq + 1 && pair[1].boot_time_ns >= pair[0].boot_time_ns,
            format!("entries out of order: {:?} then {:?}", pair[0], pair[1]),
        );
    }
    // logrus takes the time before it takes its output lock, so lines of two goroutines
    // logging at once may be written in the other order than their times say (seen
    // under TCG: 24 ms). Lines of one goroutine cannot: containerd loads its plugins one
    // after the other, so its "loading plugin" lines are in time order as written, and
    // a buffer that reordered lines would show it there.
    let plugins: Vec<&(Timestamp, &LogEntry)> = (stamped.iter())
        .filter(|(_, e)| e.text.contains("msg=\"loading plugin\""))
        .collect();
    session.check(
        plugins.len() >= 10,
        format!(
            "only {} \"loading plugin\" lines in containerd's log",
            plugins.len()
        ),
    );
    for pair in plugins.windows(2) {
        session.check(
            pair[1].0 >= pair[0].0,
            format!(
                "containerd's plugin loading lines are out of their time order:\n{}\n{}",
                pair[0].1.text, pair[1].1.text
            ),
        );
    }
}

#[test]
#[ignore = "boots QEMU; run with `make test`"]
fn tails_have_exactly_the_requested_length() {
    let _look = looking();
    let session = Session::open();
    session.wait_condition("containerd", CONDITION_TIMEOUT);
    let all = session
        .logs("containerd", None)
        .unwrap_or_else(|status| session.fail(format!("logs containerd: {status}")));
    session.check(
        all.len() >= 10,
        format!("containerd has only {} log lines", all.len()),
    );
    for n in [0, 1, 10] {
        let tail = session
            .logs("containerd", Some(n))
            .unwrap_or_else(|status| session.fail(format!("logs containerd -n {n}: {status}")));
        session.check(
            tail.len() == n as usize,
            format!("-n {n} returned {} lines", tail.len()),
        );
    }
}

#[test]
#[ignore = "boots QEMU; run with `make test`"]
fn unknown_names_are_not_found() {
    let _look = looking();
    let session = Session::open();
    let status = session
        .logs("no-such-component", None)
        .map(|entries| session.fail(format!("got {} lines", entries.len())))
        .unwrap_err();
    session.check(
        status.code() == Code::NotFound && status.message().contains("no-such-component"),
        format!("logs of an unknown component: {status}"),
    );
    let mut client = session.client.clone();
    let wait = client.wait_condition(WaitConditionRequest {
        name: "no-such-condition".into(),
        timeout_ms: 0,
    });
    let status = session.call(CALL_TIMEOUT, wait).unwrap_err();
    session.check(
        status.code() == Code::NotFound && status.message().contains("no-such-condition"),
        format!("wait for an unknown condition: {status}"),
    );
}

#[test]
#[ignore = "boots QEMU; run with `make test`"]
fn a_followed_log_delivers_a_new_line_within_a_second() {
    let _look = looking();
    let session = Session::open();
    session.wait_condition("containerd", CONDITION_TIMEOUT);
    let mut client = session.client.clone();
    let request = GetLogsRequest {
        component: "agent".into(),
        tail_lines: Some(0),
        follow: true,
    };
    let mut stream = session
        .call(CALL_TIMEOUT, client.get_logs(request))
        .unwrap_or_else(|status| session.fail(format!("follow agent: {status}")));
    // SIGCONT leaves a running containerd alone; the agent logs that it sent it.
    let pid = session.signal("containerd", "SIGCONT");
    let sent = Instant::now();
    let found = session.runtime.block_on(async {
        let wanted = async {
            while let Some(message) = stream.message().await? {
                if let Some(Kind::Entry(entry)) = message.kind {
                    if entry.text.contains("SIGCONT") {
                        return Ok(Some(entry));
                    }
                }
            }
            Ok::<_, tonic::Status>(None)
        };
        tokio::time::timeout(FOLLOW_LATENCY, wanted).await
    });
    let elapsed = sent.elapsed();
    match found {
        Ok(Ok(Some(_))) => {}
        Ok(Ok(None)) => session.fail("the followed stream ended"),
        Ok(Err(status)) => session.fail(format!("the followed stream failed: {status}")),
        Err(_) => session.fail(format!(
            "no agent log line about SIGCONT to pid {pid} within {elapsed:?}"
        )),
    }
}

#[test]
#[ignore = "boots QEMU; run with `make test`"]
fn killed_containerd_is_restarted_and_keeps_its_earlier_lines() {
    let _kill = killing();
    let session = Session::open();
    let before = session.wait_condition("containerd", CONDITION_TIMEOUT);
    let old = session.component("containerd");
    let Some(old_pid) = old.pid else {
        session.fail(format!("containerd is true but has no pid: {old:?}"))
    };
    let earlier = session
        .logs("containerd", Some(5))
        .unwrap_or_else(|status| session.fail(format!("logs containerd: {status}")));
    session.check(!earlier.is_empty(), "containerd has no log lines yet");

    // Followed from before the kill: the new process's first line is the cue to look.
    let mut client = session.client.clone();
    let request = GetLogsRequest {
        component: "containerd".into(),
        tail_lines: Some(0),
        follow: true,
    };
    let follow = session
        .call(CALL_TIMEOUT, client.get_logs(request))
        .unwrap_or_else(|status| session.fail(format!("follow containerd: {status}")));
    let killed = session.signal("containerd", "SIGKILL");
    session.check(
        killed == old_pid,
        format!("SIGKILL went to pid {killed}, containerd was {old_pid}"),
    );

    let restarted = session.wait_for_restart(&old, follow);
    session.check(
        restarted.state() != ComponentState::Failed,
        format!("containerd failed after the kill: {restarted:?}"),
    );

    let after = session.wait_condition("containerd", CONDITION_TIMEOUT);
    session.check(
        after.last_change_boot_ns > before.last_change_boot_ns,
        format!("the containerd condition never changed: before {before:?}, after {after:?}"),
    );

    let now = session
        .logs("containerd", None)
        .unwrap_or_else(|status| session.fail(format!("logs containerd: {status}")));
    for line in &earlier {
        session.check(
            now.iter().any(|e| e.seq == line.seq && e.text == line.text),
            format!(
                "line {} ({:?}) is gone after the restart",
                line.seq, line.text
            ),
        );
    }
}

/// The agent stays in the root cgroup and every component it starts runs in its own
/// cgroup below `/system`, as the kernel reports it in /proc/<pid>/cgroup.
#[test]
#[ignore = "boots QEMU; run with `make test`"]
fn each_component_runs_in_its_own_system_cgroup() {
    let _look = looking();
    let session = Session::open();
    session.wait_condition("containerd", CONDITION_TIMEOUT);
    let mut client = session.client.clone();
    let call = client.get_process_stats(GetProcessStatsRequest {});
    let stats = match session.call(CALL_TIMEOUT, call) {
        Ok(stats) => stats,
        Err(status) => session.fail(format!("GetProcessStats: {status}")),
    };
    let placed: Vec<(String, String)> = (stats.processes.iter())
        .map(|p| (p.component.clone(), p.cgroup.clone()))
        .collect();
    let expected: Vec<(String, String)> = (stats.processes.iter())
        .map(|p| match p.component.as_str() {
            "agent" => ("agent".to_owned(), "/".to_owned()),
            name => (name.to_owned(), format!("/system/{name}")),
        })
        .collect();
    session.check(
        placed.iter().any(|(name, _)| name == "containerd"),
        format!("GetProcessStats lists no containerd: {placed:?}"),
    );
    session.check(
        placed == expected,
        format!("processes and their cgroups: {placed:?}, expected {expected:?}"),
    );
}

#[test]
#[ignore = "boots QEMU; run with `make test`"]
fn the_debug_image_contains_the_service() {
    let init = image_init(&common::image());
    assert!(
        contains(&init, SERVICE_NAME),
        "the debug image's /init has no NodeDebugService (built without `debug-service`?)"
    );
}

/// The production image: built without the feature, so no server code and no listener;
/// and booted with a malformed node config (a bad owner CA PEM), which the node must
/// survive: it names the field, runs Kubernetes all the same, and having no owner
/// serves no node API. What proves the API is off is a refused connection from
/// outside; the field and Kubernetes running are read from the agent's console lines
/// (the node-config error and the apiserver's readiness probe passing), as a node
/// without an owner has no API to ask.
#[test]
#[ignore = "boots QEMU; run with `make test`"]
fn the_production_image_has_no_debug_listener() {
    let dir = production_image_dir();
    let image = Image::open(&dir).unwrap_or_else(|err| {
        panic!(
            "no production image in {}: {} (build it from image/production.toml)",
            dir.display(),
            error_chain(&err)
        )
    });
    let init = image_init(&image);
    assert!(
        !contains(&init, SERVICE_NAME),
        "the production image's /init contains the NodeDebugService"
    );

    let accel = accel::resolve(AccelChoice::Auto, &image.kernel);
    let state = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("boot/production");
    // The forward exists (as for any node), so a refusal is the guest's, not QEMU's.
    // No data disk: the node must say it runs ephemeral, and boot all the same.
    let mut config = NodeConfig::new(image, accel, &state);
    config.data_disk = None;
    config.raw_settings = Some("version = 1\n[owner]\nca = \"not a certificate\"\n".into());
    let mut node = Node::start(&config).unwrap_or_else(|err| panic!("{}", error_chain(&err)));
    let ready = node
        .wait_ready(common::READY_TIMEOUT)
        .unwrap_or_else(|err| common::fail(&node, error_chain(&err)));
    if ready.apis != Some(Vec::new()) {
        common::fail(&node, format!("CAIRN_READY apis {:?}, not []", ready.apis));
    }
    for (awaited, prefix, timeout) in [
        (
            "the node-config error naming the field",
            "node config: node config (firmware config item opt/cairn/node.toml) ignored: \
             field `owner.ca`",
            Duration::ZERO,
        ),
        (
            "the node API off because the config was ignored",
            "node API: no owner: the node config was ignored",
            Duration::from_secs(60),
        ),
        (
            "kube-apiserver ready",
            "kube-apiserver: ready (pid ",
            Duration::from_secs(300),
        ),
    ] {
        node.wait_for_line(awaited, |line| line.contains(prefix), timeout)
            .unwrap_or_else(|err| common::fail(&node, error_chain(&err)));
    }
    node.wait_for_line(
        "the console message that the node runs ephemeral",
        |line| line.contains("running ephemeral: no disk attached"),
        Duration::ZERO,
    )
    .unwrap_or_else(|err| common::fail(&node, error_chain(&err)));
    let Some(endpoint) = node.debug_endpoint().map(str::to_owned) else {
        common::fail(
            &node,
            "the launcher forwarded no host port to guest port 7837",
        )
    };
    let runtime = runtime();
    for _ in 0..3 {
        match runtime.block_on(cairn_api::connect(&endpoint, Duration::from_secs(5))) {
            Err(ConnectError::NoAnswer(..) | ConnectError::Unreachable(..)) => {}
            Err(err) => common::fail(&node, format!("unexpected: {}", error_chain(&err))),
            Ok(_) => common::fail(&node, format!("a production node answers at {endpoint}")),
        }
    }
    // `dbg` (as `make start` runs it) reads the recorded apis and says at once that
    // nobody can operate this node, instead of waiting for an answer.
    let owner_dir = state.join("no-owner");
    let wait = std::process::Command::new(common::dbg::binary())
        .args(["conditions", "--wait", "node-ready", "--timeout", "300"])
        .env("CAIRN_STATE_DIR", &state)
        .env(cairn_dbg::owner::OWNER_DIR_ENV, &owner_dir)
        .env_remove("CAIRN_DEBUG_ENDPOINT")
        .env_remove("CAIRN_NODE_API_ENDPOINT")
        .output()
        .unwrap_or_else(|err| panic!("cannot run dbg: {err}"));
    let said = String::from_utf8_lossy(&wait.stderr).into_owned();
    if wait.status.code() != Some(1) || !said.contains("serves no management API") {
        common::fail(
            &node,
            format!("dbg on a node without an API: {:?}: {said}", wait.status),
        );
    }
    // Booted with no owner: no node API either, and `node-api` would say why (the
    // owner_api.rs test reads the condition through the API of a node that has one).
    let Some(node_api) = node.node_api_endpoint().map(str::to_owned) else {
        common::fail(
            &node,
            "the launcher forwarded no host port to guest port 7838",
        )
    };
    let anyone = {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let params = rcgen::CertificateParams::new(vec!["anyone".to_owned()]).unwrap();
        cairn_api::owner_client::OwnerIdentity {
            cert_pem: params.self_signed(&key).unwrap().pem(),
            key_pem: key.serialize_pem(),
        }
    };
    let trust = cairn_api::owner_client::ServerTrust::FirstUse;
    let connect =
        cairn_api::owner_client::connect_owner(&node_api, &anyone, &trust, Duration::from_secs(5));
    match runtime.block_on(connect) {
        Err(cairn_api::owner_client::OwnerConnectError::Unreachable(..)) => {}
        Err(err) => common::fail(
            &node,
            format!("node API: unexpected: {}", error_chain(&err)),
        ),
        Ok(_) => common::fail(
            &node,
            format!("an ownerless node serves its node API at {node_api}"),
        ),
    }
}

fn production_image_dir() -> PathBuf {
    std::env::var_os("CAIRN_PRODUCTION_IMAGE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../build/production"))
}

/// The bytes of `/init` in `image`'s initramfs.
fn image_init(image: &Image) -> Vec<u8> {
    let bytes = std::fs::read(&image.initrd)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", image.initrd.display()));
    let entries = cairn_initramfs::read(&bytes)
        .unwrap_or_else(|err| panic!("{} does not parse: {err}", image.initrd.display()));
    entries
        .into_iter()
        .find(|e| e.path.trim_start_matches("./").trim_start_matches('/') == "init")
        .map(|e| e.data)
        .unwrap_or_else(|| panic!("{} has no /init", image.initrd.display()))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A logrus `time="2026-01-02T03:04:05.123456789Z"` field, comparable: date and time
/// fields, then nanoseconds (RFC 3339 fractions vary in length, so text order is wrong).
/// Nanoseconds since 1970 of a logrus `time="..."` field (UTC `Z` stamps, as
/// containerd writes them).
type Timestamp = i128;

fn logrus_time(line: &str) -> Option<Timestamp> {
    let start = line.find("time=\"")? + 6;
    let value = &line[start..start + line[start..].find('"')?];
    let (date, time) = value.split_once('T')?;
    let mut ymd = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (ymd.next()??, ymd.next()??, ymd.next()??);
    let clock = time.strip_suffix('Z')?;
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut parts = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (parts.next()??, parts.next()??, parts.next()??);
    let digits: String = fraction
        .chars()
        .chain("000000000".chars())
        .take(9)
        .collect();
    let nanos: i64 = digits.parse().ok()?;
    let seconds = days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(i128::from(seconds) * 1_000_000_000 + i128::from(nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[test]
fn logrus_times_compare_by_value() {
    let a = logrus_time(r#"time="2026-01-02T03:04:05.12Z" level=info"#).unwrap();
    let b = logrus_time(r#"time="2026-01-02T03:04:05.123456789Z" msg=x"#).unwrap();
    let c = logrus_time(r#"time="2026-01-02T03:04:06Z""#).unwrap();
    assert!(a < b && b < c, "{a:?} {b:?} {c:?}");
    assert_eq!(b - a, 3_456_789);
    let epoch = logrus_time(r#"time="1970-01-01T00:00:01Z""#).unwrap();
    assert_eq!(epoch, 1_000_000_000);
    assert_eq!(logrus_time("no time here"), None);
    assert_eq!(logrus_time(r#"time="garbage""#), None);
}
