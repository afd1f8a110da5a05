//! `dbg kubectl` under a signal, without a node: the built `dbg` binary talks to an
//! in-test NodeDebugService that only hands out a kubeconfig, and runs a shell script as
//! kubectl (`CAIRN_KUBECTL`). The script records the kubeconfig it was given and the
//! signal it got; the test signals `dbg` and checks what a supervisor relies on: the
//! signal reached kubectl, `dbg` ended promptly with kubectl's status, and the
//! credentials file is gone.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use cairn_api::v1::node_debug_service_server::{NodeDebugService, NodeDebugServiceServer};
use cairn_api::v1::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tonic::codegen::tokio_stream;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// Long enough for a loaded 2-core host; the wait ends as soon as the condition holds.
const DEADLINE: Duration = Duration::from_secs(20);
const KUBECONFIG: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: cairn\n  cluster:\n    server: \"https://127.0.0.1:6443\"\nusers: []\n";

/// Answers GetBuildInfo (the client's connection probe) and GetDebugKubeconfig.
struct FakeNode;

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("not in the fake node"))
}

#[tonic::async_trait]
impl NodeDebugService for FakeNode {
    type GetLogsStream = tokio_stream::Empty<Result<GetLogsResponse, Status>>;

    async fn get_build_info(
        &self,
        _: Request<GetBuildInfoRequest>,
    ) -> Result<Response<BuildInfo>, Status> {
        Ok(Response::new(BuildInfo::default()))
    }

    async fn get_debug_kubeconfig(
        &self,
        _: Request<GetDebugKubeconfigRequest>,
    ) -> Result<Response<GetDebugKubeconfigResponse>, Status> {
        Ok(Response::new(GetDebugKubeconfigResponse {
            kubeconfig: KUBECONFIG.to_owned(),
            ..Default::default()
        }))
    }

    async fn get_logs(
        &self,
        _: Request<GetLogsRequest>,
    ) -> Result<Response<Self::GetLogsStream>, Status> {
        unimplemented()
    }
    async fn list_components(
        &self,
        _: Request<ListComponentsRequest>,
    ) -> Result<Response<ListComponentsResponse>, Status> {
        unimplemented()
    }
    async fn list_conditions(
        &self,
        _: Request<ListConditionsRequest>,
    ) -> Result<Response<ListConditionsResponse>, Status> {
        unimplemented()
    }
    async fn wait_condition(
        &self,
        _: Request<WaitConditionRequest>,
    ) -> Result<Response<Condition>, Status> {
        unimplemented()
    }
    async fn signal_component(
        &self,
        _: Request<SignalComponentRequest>,
    ) -> Result<Response<SignalComponentResponse>, Status> {
        unimplemented()
    }
    async fn run_container(
        &self,
        _: Request<RunContainerRequest>,
    ) -> Result<Response<RunContainerResponse>, Status> {
        unimplemented()
    }
    async fn shutdown(
        &self,
        _: Request<ShutdownRequest>,
    ) -> Result<Response<ShutdownResponse>, Status> {
        unimplemented()
    }
    async fn get_process_stats(
        &self,
        _: Request<GetProcessStatsRequest>,
    ) -> Result<Response<GetProcessStatsResponse>, Status> {
        unimplemented()
    }
    async fn load_image(
        &self,
        _: Request<tonic::Streaming<LoadImageRequest>>,
    ) -> Result<Response<LoadImageResponse>, Status> {
        unimplemented()
    }
    async fn list_images(
        &self,
        _: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        unimplemented()
    }
    async fn create_join_token(
        &self,
        _: Request<CreateJoinTokenRequest>,
    ) -> Result<Response<CreateJoinTokenResponse>, Status> {
        unimplemented()
    }
}

/// Serves [`FakeNode`] on a free loopback port for the rest of the test process.
fn start_fake_node() -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let incoming = TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            tx.send(incoming.local_addr().unwrap()).unwrap();
            tonic::transport::Server::builder()
                .add_service(NodeDebugServiceServer::new(FakeNode))
                .serve_with_incoming(incoming)
                .await
                .unwrap();
        });
    });
    format!("http://{}", rx.recv().unwrap())
}

/// A kubectl that writes `kubeconfig` (the file it was given, if it exists), says
/// `started` (its pid) and waits. `trapped`: it traps the signals `dbg` passes on,
/// writes the one it got to `signal` and exits 42; else the signal kills it.
fn fake_kubectl(dir: &Path, trapped: bool) -> PathBuf {
    let wait = if trapped {
        r#"sleep 600 &
sleeper=$!
echo $sleeper > "$MARKS/sleeper"
for sig in TERM INT HUP; do
  trap "echo $sig > \"\$MARKS/signal\"; kill $sleeper; exit 42" $sig
done
echo $$ > "$MARKS/started"
wait $sleeper"#
    } else {
        r#"echo $$ > "$MARKS/started"
exec sleep 600"#
    };
    let script = format!(
        "#!/bin/sh\n[ \"$1\" = --kubeconfig ] && [ -f \"$2\" ] && echo \"$2\" > \"$MARKS/kubeconfig\"\n{wait}\n"
    );
    let path = dir.join("kubectl");
    fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

struct Run {
    dbg: Child,
    marks: PathBuf,
    tmp: PathBuf,
    _dir: tempfile::TempDir,
}

/// Starts `dbg kubectl logs -f x` with the fake kubectl and waits until it runs.
fn start(trapped: bool) -> Run {
    let endpoint = start_fake_node();
    let dir = tempfile::tempdir().unwrap();
    let (marks, tmp) = (dir.path().join("marks"), dir.path().join("tmp"));
    fs::create_dir(&marks).unwrap();
    fs::create_dir(&tmp).unwrap();
    let kubectl = fake_kubectl(dir.path(), trapped);
    let dbg = Command::new(env!("CARGO_BIN_EXE_dbg"))
        .args(["--endpoint", &endpoint, "kubectl"])
        .args(["--server", "https://127.0.0.1:1", "logs", "-f", "x"])
        .env("CAIRN_KUBECTL", &kubectl)
        .env("MARKS", &marks)
        // Where tempfile writes the credentials, so the test can see them go.
        .env("TMPDIR", &tmp)
        .env_remove("CAIRN_STATE_DIR")
        .env_remove("CAIRN_API_ENDPOINT")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut run = Run {
        dbg,
        marks,
        tmp,
        _dir: dir,
    };
    let started = run.marks.join("started");
    if !wait_until(|| started.exists()) {
        let _ = run.dbg.kill();
        panic!("the fake kubectl did not start within {DEADLINE:?}");
    }
    run
}

fn wait_until(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    condition()
}

impl Run {
    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.dbg.id() as i32), signal).unwrap();
    }

    /// `dbg`'s status once it has ended, or a panic (after killing it) at the deadline.
    fn status(&mut self) -> ExitStatus {
        let mut status = None;
        wait_until(|| {
            status = self.dbg.try_wait().unwrap();
            status.is_some()
        });
        status.unwrap_or_else(|| {
            let _ = self.dbg.kill();
            panic!("dbg still runs {DEADLINE:?} after the signal")
        })
    }

    fn mark(&self, name: &str) -> String {
        fs::read_to_string(self.marks.join(name)).unwrap_or_default()
    }

    fn kubeconfig(&self) -> PathBuf {
        let path = PathBuf::from(self.mark("kubeconfig").trim());
        assert!(
            path.starts_with(&self.tmp),
            "kubectl got no kubeconfig in TMPDIR: {path:?}"
        );
        path
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // A failed assertion must not leave the fake kubectl behind.
        for mark in ["started", "sleeper"] {
            if let Ok(pid) = self.mark(mark).trim().parse() {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        let _ = self.dbg.kill();
    }
}

#[test]
fn each_stop_signal_reaches_kubectl_and_dbg_exits_with_its_status() {
    for (signal, name) in [
        (Signal::SIGTERM, "TERM"),
        (Signal::SIGINT, "INT"),
        (Signal::SIGHUP, "HUP"),
    ] {
        let mut run = start(true);
        let kubeconfig = run.kubeconfig();
        run.signal(signal);
        let status = run.status();
        assert_eq!(
            run.mark("signal").trim(),
            name,
            "kubectl's record of {signal}"
        );
        assert_eq!(status.code(), Some(42), "{signal}: {status}");
        assert!(!kubeconfig.exists(), "{signal}: credentials left behind");
        assert_eq!(fs::read_dir(&run.tmp).unwrap().count(), 0);
    }
}

#[test]
fn a_kubectl_killed_by_the_signal_gives_128_plus_signal() {
    let mut run = start(false);
    let kubeconfig = run.kubeconfig();
    run.signal(Signal::SIGTERM);
    let status = run.status();
    assert_eq!(
        status.code(),
        Some(128 + Signal::SIGTERM as i32),
        "{status}"
    );
    assert!(!kubeconfig.exists(), "credentials left behind");
}
