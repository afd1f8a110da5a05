//! The server over TCP on 127.0.0.1 with real registries and a fake supervisor, called
//! through the `cairn-api` client, as `dbg` and the boot tests call it.

use std::os::unix::process::ExitStatusExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_api::v1::{
    get_logs_response::Kind, ComponentState as Proto, GetDebugKubeconfigRequest, GetLogsRequest,
    GetLogsResponse, ListComponentsRequest, ListConditionsRequest, ListImagesRequest,
    LoadImageHeader, LoadImageRequest, LogStream, ShutdownRequest, SignalComponentRequest,
    WaitConditionRequest,
};
use cairn_api::Client;
use futures_util::StreamExt;
use tokio::sync::oneshot;
use tonic::Code;

use super::*;
use crate::logbuf::{Limits, Stream};

#[derive(Debug, Default)]
struct FakeSupervisor(Mutex<Vec<ServiceStatus>>);

impl ServiceSource for FakeSupervisor {
    fn list(&self) -> Vec<ServiceStatus> {
        self.0.lock().unwrap().clone()
    }
}

fn status(name: &str, state: ServiceState, pid: Option<u32>) -> ServiceStatus {
    ServiceStatus {
        name: name.to_owned(),
        state,
        since: Duration::from_secs(2),
        pid,
        restarts: 3,
        last_exit: Some(LastExit::Signal(9)),
        started: Some(Duration::from_secs(1)),
        exited: Some(Duration::from_millis(1500)),
    }
}

struct Harness {
    client: Client,
    conditions: Conditions,
    logs: Logs,
    supervisor: Arc<FakeSupervisor>,
    power: tokio::sync::mpsc::Receiver<crate::pid1::ShutdownRequest>,
    _root: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

async fn start() -> Harness {
    start_with(None).await
}

/// A node PKI in `dir`.
fn test_pki(dir: &std::path::Path) -> Arc<crate::pki::Pki> {
    let node = crate::pki::NodeSubject {
        node_name: "cairn-00".into(),
        node_ip: None,
        service_ip: "10.96.0.1".parse().unwrap(),
    };
    Arc::new(crate::pki::ensure(dir, &node, time::OffsetDateTime::now_utc()).unwrap())
}

async fn start_with(pki: Option<Arc<crate::pki::Pki>>) -> Harness {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc/cairn")).unwrap();
    std::fs::write(
        root.path().join("etc/os-release"),
        "ID=cairn\nVERSION=\"1 (x)\"\n",
    )
    .unwrap();
    std::fs::write(
        root.path().join("etc/cairn/build.json"),
        r#"{"content_digest":"sha256:00ff"}"#,
    )
    .unwrap();
    let conditions = Conditions::new();
    let logs = Logs::new(Limits {
        lines: 100,
        ..Limits::default()
    });
    let supervisor = Arc::new(FakeSupervisor::default());
    let (requester, power) = crate::pid1::PowerRequester::channel();
    let state = ApiState {
        conditions: conditions.clone(),
        logs: logs.clone(),
        services: supervisor.clone(),
        paths: Paths::under_root(root.path()),
        pki,
        power: requester,
        node_ip: Some(std::net::Ipv4Addr::new(10, 0, 2, 15)),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(debug::serve_on(listener, handlers(state), async {
        stopped.await.ok();
    }));
    let client = cairn_api::connect(&addr.to_string(), Duration::from_secs(5))
        .await
        .unwrap();
    Harness {
        client,
        conditions,
        logs,
        supervisor,
        power,
        _root: root,
        _stop: stop,
    }
}

fn logs_request(component: &str, tail: Option<u32>, follow: bool) -> GetLogsRequest {
    GetLogsRequest {
        component: component.to_owned(),
        tail_lines: tail,
        follow,
    }
}

fn texts(responses: &[GetLogsResponse]) -> Vec<String> {
    responses
        .iter()
        .map(|r| match &r.kind {
            Some(Kind::Entry(entry)) => entry.text.clone(),
            other => panic!("expected an entry, got {other:?}"),
        })
        .collect()
}

async fn collect(client: &mut Client, request: GetLogsRequest) -> Vec<GetLogsResponse> {
    let mut stream = client.get_logs(request).await.unwrap().into_inner();
    let mut all = Vec::new();
    while let Some(item) = stream.next().await {
        all.push(item.unwrap());
    }
    all
}

async fn code_of<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> (Code, String) {
    let status = result.unwrap_err();
    (status.code(), status.message().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_return_exactly_the_requested_tail() {
    let mut h = start().await;
    let buffer = h.logs.buffer("containerd");
    for i in 0..20 {
        buffer.push(Stream::Stderr, &format!("line {i}"));
    }
    let all = collect(&mut h.client, logs_request("containerd", None, false)).await;
    assert_eq!(all.len(), 20);
    for (n, expected) in [(0, 0), (1, 1), (10, 10), (1000, 20)] {
        let got = collect(&mut h.client, logs_request("containerd", Some(n), false)).await;
        assert_eq!(got.len(), expected, "tail {n}");
    }
    let last = collect(&mut h.client, logs_request("containerd", Some(2), false)).await;
    assert_eq!(texts(&last), ["line 18", "line 19"]);
    let Some(Kind::Entry(entry)) = &last[1].kind else {
        unreachable!()
    };
    assert_eq!(entry.seq, 19);
    assert_eq!(entry.stream, LogStream::Stderr as i32);
    assert!(entry.boot_time_ns > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_log_requests_are_not_found_or_invalid() {
    let mut h = start().await;
    let (code, message) = code_of(h.client.get_logs(logs_request("etcd", None, false)).await).await;
    assert_eq!(code, Code::NotFound);
    assert!(message.contains("etcd"), "{message}");
    for bad in ["", "ETCD", "../x", &"a".repeat(300)] {
        let (code, _) = code_of(h.client.get_logs(logs_request(bad, None, false)).await).await;
        assert_eq!(code, Code::InvalidArgument, "{bad:?}");
    }
    let (code, message) = code_of(
        h.client
            .get_logs(logs_request("agent", Some(u32::MAX), false))
            .await,
    )
    .await;
    assert_eq!(code, Code::InvalidArgument);
    assert!(message.contains("tail_lines"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervised_component_without_lines_has_an_empty_log() {
    let mut h = start().await;
    h.supervisor
        .0
        .lock()
        .unwrap()
        .push(status("kubelet", ServiceState::Starting, None));
    assert!(collect(&mut h.client, logs_request("kubelet", None, false))
        .await
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_log_continues_after_the_tail_without_gaps() {
    let mut h = start().await;
    let buffer = h.logs.buffer("agent");
    for i in 0..5 {
        buffer.push(Stream::Agent, &format!("old {i}"));
    }
    let mut stream = h
        .client
        .get_logs(logs_request("agent", Some(2), true))
        .await
        .unwrap()
        .into_inner();
    let mut seqs = Vec::new();
    for _ in 0..2 {
        let Some(Kind::Entry(entry)) = stream.next().await.unwrap().unwrap().kind else {
            panic!("no entry")
        };
        seqs.push(entry.seq);
    }
    for i in 0..50 {
        buffer.push(Stream::Stdout, &format!("new {i}"));
    }
    for _ in 0..50 {
        let item = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("a new line within 5 s")
            .unwrap()
            .unwrap();
        let Some(Kind::Entry(entry)) = item.kind else {
            panic!("no entry")
        };
        seqs.push(entry.seq);
    }
    assert_eq!(seqs, (3..55).collect::<Vec<u64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_follower_gets_a_gap_then_the_oldest_held_line() {
    let buffer = crate::logbuf::LogBuffer::new(
        "c",
        Limits {
            lines: 4,
            ..Limits::default()
        },
    );
    let slots = logs::FollowerSlots::new(1);
    let mut stream = logs::stream(&buffer, Some(0), true, &slots).unwrap();
    for i in 0..10 {
        buffer.push(Stream::Stdout, &format!("{i}"));
    }
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(
        first.kind,
        Some(Kind::Gap(cairn_api::v1::LogGap {
            first_seq: 0,
            count: 6
        }))
    );
    let Some(Kind::Entry(entry)) = stream.next().await.unwrap().unwrap().kind else {
        panic!("no entry after the gap")
    };
    assert_eq!((entry.seq, entry.text.as_str()), (6, "6"));
    // The only slot is taken until the stream is dropped.
    assert!(matches!(
        logs::stream(&buffer, None, true, &slots),
        Err(RpcError::TooManyFollowers(_))
    ));
    drop(stream);
    assert!(logs::stream(&buffer, None, true, &slots).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnected_followers_free_their_slots() {
    let mut h = start().await;
    h.logs.buffer("agent");
    let mut open = Vec::new();
    for _ in 0..logs::MAX_FOLLOWERS {
        let request = logs_request("agent", Some(0), true);
        open.push(h.client.get_logs(request).await.unwrap().into_inner());
    }
    let (code, _) = code_of(
        h.client
            .get_logs(logs_request("agent", Some(0), true))
            .await,
    )
    .await;
    assert_eq!(code, Code::ResourceExhausted);
    drop(open);
    // The server learns of the reset streams asynchronously; bounded retry.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match h
            .client
            .get_logs(logs_request("agent", Some(0), true))
            .await
        {
            Ok(_) => break,
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert!(tokio::time::Instant::now() < deadline, "slots never freed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(status) => panic!("{status}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_list_the_agent_and_the_supervised() {
    let mut h = start().await;
    h.supervisor.0.lock().unwrap().extend([
        status("containerd", ServiceState::Ready, Some(42)),
        status(
            "etcd",
            ServiceState::WaitingForDependencies {
                missing: vec!["network".into()],
            },
            None,
        ),
    ]);
    let list = h
        .client
        .list_components(ListComponentsRequest {})
        .await
        .unwrap()
        .into_inner()
        .components;
    let names: Vec<_> = list.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["agent", "containerd", "etcd"]);
    assert_eq!(list[0].pid, Some(1));
    assert_eq!(list[1].state, Proto::Ready as i32);
    assert_eq!(list[1].restart_count, 3);
    assert_eq!(list[1].last_exit.as_ref().unwrap().signal_name, "SIGKILL");
    assert_eq!(list[2].state, Proto::Waiting as i32);
    assert_eq!(list[2].detail, "waiting for network");
    assert_eq!(list[2].state_since_boot_ns, 2_000_000_000);
    assert_eq!(list[1].started_boot_ns, Some(1_000_000_000));
    assert_eq!(
        list[1].last_exit.as_ref().unwrap().exited_boot_ns,
        1_500_000_000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_list_filter_and_refuse_unknown_names() {
    let mut h = start().await;
    h.conditions.set("mounts", true, "mounted");
    h.conditions.set("network", false, "no eth0");
    let all = h
        .client
        .list_conditions(ListConditionsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .conditions;
    assert_eq!(all.len(), 2);
    assert!(all[0].status && all[0].first_true_boot_ns.is_some());
    assert!(!all[1].status && all[1].first_true_boot_ns.is_none());
    let one = ListConditionsRequest {
        names: vec!["network".into()],
    };
    let got = h.client.list_conditions(one).await.unwrap().into_inner();
    assert_eq!(got.conditions[0].reason, "no eth0");
    let unknown = ListConditionsRequest {
        names: vec!["network".into(), "etcd".into()],
    };
    let (code, message) = code_of(h.client.list_conditions(unknown).await).await;
    assert_eq!((code, message.contains("etcd")), (Code::NotFound, true));
    let bad = ListConditionsRequest {
        names: vec!["no spaces".into()],
    };
    let (code, _) = code_of(h.client.list_conditions(bad).await).await;
    assert_eq!(code, Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_condition_returns_true_or_explains_the_deadline() {
    let mut h = start().await;
    let wait = |name: &str, timeout_ms| WaitConditionRequest {
        name: name.to_owned(),
        timeout_ms,
    };
    let setter = h.conditions.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        setter.set("containerd", true, "version answered");
    });
    let got = h
        .client
        .wait_condition(wait("containerd", 10_000))
        .await
        .unwrap();
    assert_eq!(got.into_inner().reason, "version answered");

    h.conditions.set("kubelet", false, "binary missing");
    let (code, message) = code_of(h.client.wait_condition(wait("kubelet", 50)).await).await;
    assert_eq!(code, Code::DeadlineExceeded);
    assert!(message.contains("binary missing"), "{message}");

    let (code, message) = code_of(h.client.wait_condition(wait("etcd", 0)).await).await;
    assert_eq!((code, message.contains("etcd")), (Code::NotFound, true));

    let (code, _) = code_of(h.client.wait_condition(wait("etcd", 3_600_001)).await).await;
    assert_eq!(code, Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_info_comes_from_the_image_files() {
    let mut h = start().await;
    let info = h
        .client
        .get_build_info(cairn_api::v1::GetBuildInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.os_release_fields["VERSION"], "1 (x)");
    assert_eq!(info.content_digest, "sha256:00ff");
    assert!(info.os_release.starts_with("ID=cairn"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_kills_the_component_process_and_checks_its_input() {
    let mut h = start().await;
    let mut child = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    h.supervisor.0.lock().unwrap().extend([
        status("sleeper", ServiceState::Ready, Some(child.id())),
        status("idle", ServiceState::Stopped, None),
    ]);
    let signal = |component: &str, signal: &str| SignalComponentRequest {
        component: component.to_owned(),
        signal: signal.to_owned(),
    };
    for (request, expected) in [
        (signal("nobody", "SIGKILL"), Code::NotFound),
        (signal("agent", "SIGKILL"), Code::FailedPrecondition),
        (signal("idle", "SIGTERM"), Code::FailedPrecondition),
        (signal("sleeper", "SIGSEGV"), Code::InvalidArgument),
        (signal("Sleeper", "SIGKILL"), Code::InvalidArgument),
    ] {
        let (code, message) = code_of(h.client.signal_component(request.clone()).await).await;
        assert_eq!(code, expected, "{request:?}: {message}");
    }
    let reply = h
        .client
        .signal_component(signal("sleeper", "SIGKILL"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.pid, child.id());
    assert_eq!(child.wait().unwrap().signal(), Some(9));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_are_refused() {
    let mut h = start().await;
    let huge = logs_request(&"a".repeat(MAX_REQUEST * 2), None, false);
    let status = h.client.get_logs(huge).await.unwrap_err();
    // tonic's decoder refuses it before any handler runs.
    assert_eq!(status.code(), Code::OutOfRange, "{status}");
    assert!(status.message().contains("too large"), "{status}");
    // The server is still there.
    let list = h.client.list_components(ListComponentsRequest {}).await;
    assert!(list.is_ok());
}

fn load_messages(header: Option<u64>, data: &[&[u8]]) -> Vec<LoadImageRequest> {
    use cairn_api::v1::load_image_request::Part;
    let header = header.map(|archive_size| LoadImageRequest {
        part: Some(Part::Header(LoadImageHeader { archive_size })),
    });
    let data = data.iter().map(|d| LoadImageRequest {
        part: Some(Part::Data(d.to_vec())),
    });
    header.into_iter().chain(data).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_loads_check_their_stream_before_reaching_containerd() {
    let mut h = start().await;
    let load = |messages: Vec<LoadImageRequest>| {
        let mut client = h.client.clone();
        async move { client.load_image(tokio_stream::iter(messages)).await }
    };
    let (code, message) = code_of(load(load_messages(None, &[b"tar"])).await).await;
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert!(message.contains("header"), "{message}");
    let too_big = cairn_api::validate::MAX_ARCHIVE_BYTES + 1;
    let (code, message) = code_of(load(load_messages(Some(too_big), &[])).await).await;
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert!(message.contains("4 GiB"), "{message}");
    let (code, message) = code_of(load(load_messages(Some(1), &[b"x", b"y"])).await).await;
    // No containerd in the test: the load fails there, with nothing left to clean.
    assert_eq!(code, Code::Unavailable, "{message}");
    assert!(message.contains("containerd.sock"), "{message}");
    // The slot is free again, and listing says containerd is not there either.
    let (code, _) = code_of(load(load_messages(Some(1), &[b"x"])).await).await;
    assert_eq!(code, Code::Unavailable);
    let listed = h.client.list_images(ListImagesRequest {}).await;
    assert_eq!(code_of(listed).await.0, Code::Unavailable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_kubeconfigs_need_the_pki_and_valid_requests() {
    let request = |user: &str, validity| GetDebugKubeconfigRequest {
        user: user.to_owned(),
        groups: vec!["system:masters".to_owned()],
        validity_seconds: validity,
    };
    let mut h = start().await;
    let (code, message) = code_of(
        h.client
            .get_debug_kubeconfig(request("cairn-debug", None))
            .await,
    )
    .await;
    assert_eq!(code, Code::FailedPrecondition);
    assert!(message.contains("pki not ready"), "{message}");

    let dir = tempfile::tempdir().unwrap();
    let mut h = start_with(Some(test_pki(dir.path()))).await;
    for (user, validity) in [
        ("a b", None),
        ("cairn-debug", Some(59)),
        ("cairn-debug", Some(86_401)),
    ] {
        let (code, message) =
            code_of(h.client.get_debug_kubeconfig(request(user, validity)).await).await;
        assert_eq!(
            code,
            Code::InvalidArgument,
            "{user} {validity:?}: {message}"
        );
    }
    let before = time::OffsetDateTime::now_utc().unix_timestamp();
    let response = h
        .client
        .get_debug_kubeconfig(request("cairn-debug", Some(60)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.server, "https://127.0.0.1:6443");
    assert!((before + 60..=before + 62).contains(&response.expires_unix_seconds));
    assert!(response
        .kubeconfig
        .contains("server: \"https://127.0.0.1:6443\""));
    assert!(response.kubeconfig.contains("client-key-data: "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_asks_pid1_for_the_requested_action() {
    let mut h = start().await;
    h.client
        .shutdown(ShutdownRequest { power_off: false })
        .await
        .unwrap();
    let request = h.power.recv().await.unwrap();
    assert_eq!(request.action, crate::power::PowerAction::Reboot);
    assert!(request.origin.contains("Shutdown"), "{}", request.origin);
    h.client
        .shutdown(ShutdownRequest { power_off: true })
        .await
        .unwrap();
    let request = h.power.recv().await.unwrap();
    assert_eq!(request.action, crate::power::PowerAction::PowerOff);
}

#[test]
fn pod_addresses_are_recognised() {
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    assert!(super::from_pods(ip("10.88.0.5")));
    assert!(super::from_pods(ip("10.88.255.255")));
    assert!(super::from_pods(ip("::ffff:10.88.1.2")));
    assert!(!super::from_pods(ip("10.0.2.2")));
    assert!(!super::from_pods(ip("127.0.0.1")));
    assert!(!super::from_pods(ip("10.89.0.1")));
    assert!(!super::from_pods(ip("::1")));
}

/// A join token before the reconciler's bootstrap bindings exist would be refused by
/// the apiserver; the call says why instead of handing it out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_tokens_wait_for_the_bootstrap_bindings() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = start_with(Some(test_pki(dir.path()))).await;
    let request = || cairn_api::v1::CreateJoinTokenRequest {
        ttl_seconds: Some(600),
    };
    let (code, message) = code_of(h.client.create_join_token(request()).await).await;
    assert_eq!(code, Code::Unavailable, "{message}");
    assert_eq!(
        message,
        "the cluster does not admit joins yet (builtin-objects: not reported yet)"
    );
    h.conditions
        .set("builtin-objects", false, "waiting for kube-apiserver");
    let (code, message) = code_of(h.client.create_join_token(request()).await).await;
    assert_eq!(code, Code::Unavailable, "{message}");
    assert!(
        message.ends_with("(builtin-objects: waiting for kube-apiserver)"),
        "{message}"
    );
}
