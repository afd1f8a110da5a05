//! Supervisor tests with real, short-lived processes. Exits come through a real
//! [`Reaper`], driven by a thread that polls `waitpid(pid)` for the pids this watcher
//! spawned only (a `waitpid(-1)` would steal other tests' children).

use std::collections::BTreeSet;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::*;
use crate::logbuf::{Entry, Stream};
use crate::reaper::{Exit, ExitStatus, Reaper};

#[derive(Debug, Default)]
struct PolledReaper {
    reaper: Mutex<Reaper>,
    pids: Mutex<BTreeSet<i32>>,
}

impl ChildWatcher for PolledReaper {
    fn spawn_watched(
        &self,
        command: &mut Command,
    ) -> std::io::Result<(Child, oneshot::Receiver<ExitStatus>)> {
        let mut reaper = self.reaper.lock().unwrap();
        let child = command.spawn()?;
        let exit = reaper.watch(Pid::from_raw(child.id() as i32));
        self.pids.lock().unwrap().insert(child.id() as i32);
        Ok((child, exit))
    }
}

impl PolledReaper {
    fn start() -> Arc<Self> {
        let watcher = Arc::new(Self::default());
        let weak = Arc::downgrade(&watcher);
        std::thread::spawn(move || {
            while let Some(watcher) = weak.upgrade() {
                watcher.poll();
                drop(watcher);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        watcher
    }

    fn poll(&self) {
        let mut reaper = self.reaper.lock().unwrap();
        let pids: Vec<i32> = self.pids.lock().unwrap().iter().copied().collect();
        for raw in pids {
            let status = match waitpid(Pid::from_raw(raw), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => ExitStatus::Exited(code),
                Ok(WaitStatus::Signaled(_, signal, _)) => ExitStatus::Signaled(signal),
                _ => continue,
            };
            self.pids.lock().unwrap().remove(&raw);
            reaper.dispatch(Exit {
                pid: Pid::from_raw(raw),
                status,
            });
        }
    }
}

struct Fixture {
    supervisor: Supervisor,
    conditions: Conditions,
    logs: Logs,
}

fn fixture() -> Fixture {
    let conditions = Conditions::new();
    let logs = Logs::default();
    let supervisor = Supervisor::new(PolledReaper::start(), conditions.clone(), logs.clone());
    Fixture {
        supervisor,
        conditions,
        logs,
    }
}

fn shell(name: &str, script: &str) -> ServiceSpec {
    ServiceSpec::new(name, "/bin/sh").args(["-c", script])
}

fn fast_restart() -> RestartPolicy {
    RestartPolicy {
        initial: Duration::from_millis(20),
        factor: 2,
        cap: Duration::from_millis(80),
        reset_after: Duration::from_secs(60),
    }
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(20)
}

/// Waits (bounded) until `check` holds for the service's status.
async fn wait_status(
    supervisor: &Supervisor,
    name: &str,
    check: impl Fn(&ServiceStatus) -> bool,
) -> ServiceStatus {
    let deadline = deadline();
    loop {
        let status = supervisor.service(name).unwrap();
        if check(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "timed out; last status {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn lines(entries: &[Arc<Entry>], stream: Stream) -> Vec<String> {
    (entries.iter())
        .filter(|e| e.stream == stream)
        .map(|e| e.text.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_is_captured_per_stream_in_order_and_exits_are_restarted() {
    let f = fixture();
    let spec =
        shell("crashy", "echo a; echo b >&2; echo c; echo d >&2; exit 3").restart(fast_restart());
    f.supervisor.start(vec![spec]).unwrap();

    let status = wait_status(&f.supervisor, "crashy", |s| s.restarts >= 3).await;
    assert_eq!(status.last_exit, Some(LastExit::Code(3)));

    let log = f.logs.get("crashy").unwrap().tail(None);
    let stdout = lines(&log, Stream::Stdout);
    let stderr = lines(&log, Stream::Stderr);
    assert_eq!(&stdout[..6], ["a", "c", "a", "c", "a", "c"]);
    assert_eq!(&stderr[..6], ["b", "d", "b", "d", "b", "d"]);
    let agent = lines(&log, Stream::Agent);
    assert!(agent[0].starts_with("started /bin/sh (pid "), "{agent:?}");
    assert!(agent.iter().any(|l| l.starts_with("exited (exit code 3)")));
    f.supervisor.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_grows_to_the_cap() {
    let f = fixture();
    let policy = fast_restart();
    f.supervisor
        .start(vec![ServiceSpec::new("true", "/bin/true").restart(policy)])
        .unwrap();
    let started = Instant::now();
    let status = wait_status(&f.supervisor, "true", |s| s.restarts >= 5).await;
    // Delays 20 + 40 + 80 + 80 + 80 ms before restart five.
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(status.last_exit, Some(LastExit::Code(0)));
    f.supervisor.stop_all().await;

    assert_eq!(policy.delay(0), Duration::from_millis(20));
    assert_eq!(policy.delay(1), Duration::from_millis(40));
    assert_eq!(policy.delay(2), Duration::from_millis(80));
    assert_eq!(policy.delay(60), Duration::from_millis(80));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loop_at_the_cap_is_reported_and_the_others_stay_up() {
    let f = fixture();
    let steady = shell("steady", "exec sleep 1000");
    let crashing = ServiceSpec::new("crashing", "/bin/false").restart(fast_restart());
    f.supervisor.start(vec![steady, crashing]).unwrap();
    wait_status(&f.supervisor, "crashing", |s| s.restarts >= 4).await;
    // The condition says "running" again once it restarts; the log keeps the report.
    let log = f.logs.get("crashing").unwrap().tail(None);
    let reports = lines(&log, Stream::Agent);
    assert!(
        reports
            .iter()
            .any(|r| r.starts_with("crash-looping: exited (exit code 1)")
                && r.contains("exits in a row")),
        "{reports:?}"
    );
    let steady = f.supervisor.service("steady").unwrap();
    assert_eq!((steady.restarts, steady.last_exit), (0, None));
    f.supervisor.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_binary_fails_alone() {
    let f = fixture();
    let missing = ServiceSpec::new("ghost", "/nonexistent/ghostd");
    let fine = shell("fine", "exec sleep 30");
    f.supervisor.start(vec![missing, fine]).unwrap();

    f.conditions.wait("fine", deadline()).await.unwrap();
    let ghost = wait_status(&f.supervisor, "ghost", |s| {
        matches!(s.state, ServiceState::Failed { .. })
    })
    .await;
    assert!(ghost
        .state
        .to_string()
        .contains("/nonexistent/ghostd is missing"));
    let reason = f.conditions.get("ghost").unwrap().reason;
    assert!(reason.contains("is missing"), "{reason}");
    let log = f.logs.get("ghost").unwrap().tail(None);
    assert!(log[0].text.contains("is missing"));

    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain");
    std::fs::write(&plain, "#!/bin/sh\n").unwrap();
    f.supervisor
        .start(vec![ServiceSpec::new("plain", &plain)])
        .unwrap();
    let status = wait_status(&f.supervisor, "plain", |s| {
        matches!(s.state, ServiceState::Failed { .. })
    })
    .await;
    assert!(status.state.to_string().ends_with("is not executable"));
    f.supervisor.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_start_after_their_dependencies_and_stop_before_them() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    // Ready (its probe passes) only once its TERM trap is set and its start recorded.
    let service = |name: &str| {
        let script = format!(
            "trap 'echo stop {name} >> {t}; exit 0' TERM; echo start {name} >> {t}; \
             touch {d}/{name}.ready; while :; do sleep 0.01; done",
            t = trace.display(),
            d = dir.path().display(),
        );
        let ready = dir.path().join(format!("{name}.ready"));
        let probe = probe_fn(move || {
            let exists = ready.exists();
            async move { exists.then_some(()).ok_or_else(|| "not yet".to_owned()) }
        });
        shell(name, &script).readiness(Readiness::new(probe).interval(Duration::from_millis(5)))
    };
    // Given in the wrong order on purpose, and `a` also waits for an agent condition.
    let b = service("b").depends_on("a");
    let a = service("a").depends_on("network");
    f.supervisor.start(vec![b, a]).unwrap();
    let names: Vec<_> = f.supervisor.status().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["a", "b"]);

    let waiting = wait_status(&f.supervisor, "a", |s| {
        matches!(s.state, ServiceState::WaitingForDependencies { .. })
    })
    .await;
    assert_eq!(
        waiting.state,
        ServiceState::WaitingForDependencies {
            missing: vec!["network".into()]
        }
    );
    f.conditions.set("network", true, "up");
    f.conditions.wait("b", deadline()).await.unwrap();
    f.supervisor.stop_all().await;

    let text = std::fs::read_to_string(&trace).unwrap();
    assert_eq!(text, "start a\nstart b\nstop b\nstop a\n");
    for name in ["a", "b"] {
        assert_eq!(
            f.supervisor.service(name).unwrap().state,
            ServiceState::Stopped
        );
        assert!(!f.conditions.get(name).unwrap().value);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ready_service_is_probed_at_the_steady_interval() {
    let f = fixture();
    let probes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = probes.clone();
    // Fails twice, then passes: fast probing until ready, then none for an hour.
    let probe = probe_fn(move || {
        let n = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move { (n >= 2).then_some(()).ok_or_else(|| "not yet".to_owned()) }
    });
    let readiness = Readiness::new(probe)
        .interval(Duration::from_millis(5))
        .steady(Duration::from_secs(3600));
    let spec = shell("svc", "exec sleep 30").readiness(readiness);
    f.supervisor.start(vec![spec]).unwrap();
    f.conditions.wait("svc", deadline()).await.unwrap();
    let at_ready = probes.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(at_ready, 3);
    // Long enough for dozens of probes at the fast interval.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(probes.load(std::sync::atomic::Ordering::SeqCst), at_ready);
    f.supervisor.stop_all().await;
}

/// A probe that passes with a note (cluster DNS naming a silent upstream): the
/// condition is true with the note in its reason, the agent's log says it once, and
/// when the note clears the reason does too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passing_probe_s_note_is_in_the_reason_and_logged_once() {
    let f = fixture();
    let note = Arc::new(Mutex::new(Some("upstream x does not answer".to_owned())));
    let probed = note.clone();
    let probe: Arc<dyn Probe> = Arc::new(NotingProbe(probed));
    let readiness = Readiness::new(probe)
        .interval(Duration::from_millis(5))
        .steady(Duration::from_millis(5));
    f.supervisor
        .start(vec![shell("svc", "exec sleep 30").readiness(readiness)])
        .unwrap();
    let ready = f.conditions.wait("svc", deadline()).await.unwrap();
    let pid = f.supervisor.service("svc").unwrap().pid.unwrap();
    assert_eq!(
        ready.reason,
        format!("ready (pid {pid}); upstream x does not answer")
    );
    // Dozens of probes with the same note: one line for it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let said = |text: &str| {
        let log = f.logs.get("svc").unwrap().tail(None);
        lines(&log, Stream::Agent)
            .iter()
            .filter(|l| l.as_str() == text)
            .count()
    };
    assert_eq!(said(&ready.reason), 1);
    *note.lock().unwrap() = None;
    let cleared = format!("ready (pid {pid})");
    let until = deadline();
    while f.conditions.get("svc").unwrap().reason != cleared {
        assert!(Instant::now() < until, "the note never cleared");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(f.conditions.get("svc").unwrap().value);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(said(&cleared), 1, "the clearing is said once too");
    f.supervisor.stop_all().await;
}

/// Passes with whatever note the test holds.
struct NotingProbe(Arc<Mutex<Option<String>>>);

impl Probe for NotingProbe {
    fn check(&self) -> ProbeFuture {
        let note = self.0.lock().unwrap().clone();
        Box::pin(async move { Ok(note) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_probe_and_kill_restarts() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("ready");
    let probe_flag = flag.clone();
    let probe = probe_fn(move || {
        let ready = probe_flag.exists();
        async move { ready.then_some(()).ok_or_else(|| "no flag".to_owned()) }
    });
    let spec = shell("svc", "echo hello; exec sleep 30")
        .readiness(Readiness::new(probe).interval(Duration::from_millis(10)))
        .restart(fast_restart());
    f.supervisor.start(vec![spec]).unwrap();

    wait_status(&f.supervisor, "svc", |s| s.state == ServiceState::Running).await;
    assert!(!f.conditions.get("svc").unwrap().value);
    std::fs::write(&flag, "").unwrap();
    let ready = f.conditions.wait("svc", deadline()).await.unwrap();
    assert!(ready.reason.starts_with("ready (pid "), "{}", ready.reason);

    f.supervisor.signal("svc", Signal::SIGKILL).unwrap();
    let status = wait_status(&f.supervisor, "svc", |s| {
        s.restarts == 1 && s.state == ServiceState::Ready
    })
    .await;
    assert_eq!(
        status.last_exit,
        Some(LastExit::Signal(Signal::SIGKILL as i32))
    );
    // The new process's output is read concurrently with its readiness: wait for it.
    let deadline = deadline();
    loop {
        let log = f.logs.get("svc").unwrap().tail(None);
        let stdout = lines(&log, Stream::Stdout);
        if stdout.len() >= 2 {
            assert_eq!(stdout, ["hello", "hello"]);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "second hello never logged: {stdout:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    assert_eq!(
        f.supervisor.signal("nope", Signal::SIGTERM),
        Err(SignalError::Unknown("nope".into()))
    );
    f.supervisor.stop_all().await;
    assert_eq!(
        f.supervisor.signal("svc", Signal::SIGTERM),
        Err(SignalError::NotRunning("svc".into()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_kills_a_service_that_ignores_its_signal() {
    let f = fixture();
    let spec = shell(
        "stubborn",
        "trap '' TERM; echo armed; while :; do sleep 0.01; done",
    )
    .stop(StopPolicy {
        signal: Signal::SIGTERM,
        grace: Duration::from_millis(200),
    });
    f.supervisor.start(vec![spec]).unwrap();
    let log = f.logs.buffer("stubborn");
    let (_, mut follower) = log.follow(Some(0));
    while follower.recv().await.unwrap().text != "armed" {}
    f.supervisor.stop_all().await;
    let status = f.supervisor.service("stubborn").unwrap();
    assert_eq!(status.state, ServiceState::Stopped);
    assert_eq!(
        status.last_exit,
        Some(LastExit::Signal(Signal::SIGKILL as i32))
    );
}

#[test]
fn specs_are_validated_and_ordered() {
    let started = BTreeSet::new();
    let spec = |name: &str| ServiceSpec::new(name, "/bin/true");
    assert_eq!(
        order(vec![spec("a"), spec("a")], &started).unwrap_err(),
        SupervisorError::Duplicate("a".into())
    );
    assert_eq!(
        order(vec![ServiceSpec::new("x", "true")], &started).unwrap_err(),
        SupervisorError::RelativeBinary("x".into(), "true".into())
    );
    assert_eq!(
        order(vec![spec("")], &started).unwrap_err(),
        SupervisorError::EmptyName
    );
    let cycle = vec![spec("a").depends_on("b"), spec("b").depends_on("a")];
    assert!(matches!(
        order(cycle, &started),
        Err(SupervisorError::Cycle(_))
    ));
    let chain = vec![
        spec("kubelet").depends_on("containerd"),
        spec("apiserver").depends_on("etcd"),
        spec("etcd").depends_on("network"),
        spec("containerd"),
    ];
    let names: Vec<_> = order(chain, &started)
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["etcd", "apiserver", "containerd", "kubelet"]);
}
