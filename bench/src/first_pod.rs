//! The first pod: once the node is Ready, how long a pod from the preloaded toolbox
//! image takes from `kubectl create` to Running (host clock). kubectl is the
//! project-built one, with a debug kubeconfig pointed at the forwarded apiserver, as
//! `dbg kubectl` runs it.

use std::ffi::OsString;
use std::time::{Duration, Instant};
use tokio::process::Command;

use cairn_api::v1::GetDebugKubeconfigRequest;
use cairn_api::Client;
use cairn_dbg::commands::{kubeconfig, kubectl};

use crate::error::Error;
use crate::node::{self, Booted};

/// Scheduling, the first sandbox (bridge + iptables under TCG: 7-11 s) and the start.
const POD_TIMEOUT: Duration = Duration::from_secs(300);

const POD: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"bench-first-pod"},
"spec":{"containers":[{"name":"c","image":"localhost/cairn/toolbox:1",
"imagePullPolicy":"Never","command":["sleep","3600"]}]}}"#;

/// Host seconds of the first pod.
#[derive(Debug, Clone, Copy)]
pub struct FirstPod {
    /// From this call (right after the node turned Ready) to the pod's Ready
    /// condition, including the wait for the `default` service account.
    pub since_call: f64,
    /// From `kubectl create` to the pod's Ready condition.
    pub create_to_running: f64,
}

/// Creates a pod once pods are admitted and times it to Ready.
pub async fn create_to_running(booted: &mut Booted) -> Result<FirstPod, Error> {
    let called = Instant::now();
    let admin = Admin::new(booted).await?;
    let wait_sa = format!("--timeout={}s", POD_TIMEOUT.as_secs());
    admin
        .run(&["wait", "--for=create", "serviceaccount/default", &wait_sa])
        .await?;
    let started = Instant::now();
    admin.apply(POD).await?;
    let ready = [
        "wait",
        "--for=condition=Ready",
        "pod/bench-first-pod",
        &wait_sa,
    ];
    admin.run(&ready).await?;
    Ok(FirstPod {
        since_call: called.elapsed().as_secs_f64(),
        create_to_running: started.elapsed().as_secs_f64(),
    })
}

/// kubectl as cluster admin on a booted node: the project-built kubectl (found as
/// `dbg kubectl` finds it) with a debug kubeconfig pointed at the forwarded apiserver.
#[derive(Debug)]
pub struct Admin {
    kubectl: kubectl::Kubectl,
    kubeconfig: tempfile::NamedTempFile,
}

impl Admin {
    pub async fn new(booted: &mut Booted) -> Result<Self, Error> {
        let server = booted.node.api_endpoint().ok_or_else(|| {
            Error::Unmeasurable(format!("node `{}` has no apiserver forward", booted.name))
        })?;
        let server = server.to_owned();
        Admin::connect(&booted.name, &mut booted.client, &server).await
    }

    /// Cluster admin on node `name`, whose debug service `client` is and whose
    /// apiserver the host reaches at `server`.
    pub async fn connect(name: &str, client: &mut Client, server: &str) -> Result<Self, Error> {
        let request = GetDebugKubeconfigRequest {
            user: kubeconfig::DEFAULT_USER.to_owned(),
            groups: kubeconfig::DEFAULT_GROUPS
                .iter()
                .map(|g| (*g).to_owned())
                .collect(),
            validity_seconds: None,
        };
        let request = client.get_debug_kubeconfig(request);
        let reply = node::call(name, "GetDebugKubeconfig", node::CALL_TIMEOUT, request).await?;
        let kubeconfig = temp_file(&kubeconfig::rewrite_server(&reply.kubeconfig, server))?;
        let home = std::env::var_os("HOME");
        let cache = std::env::var_os("CAIRN_CACHE");
        let kubectl = kubectl::locate(
            std::env::var_os("CAIRN_KUBECTL").as_deref(),
            cache.as_deref(),
            home.as_deref(),
        )
        .map_err(|e| Error::Unmeasurable(format!("no kubectl: {e}")))?;
        Ok(Admin {
            kubectl,
            kubeconfig,
        })
    }

    /// Runs kubectl with `args`; its stdout. Asynchronously, so the runtime keeps
    /// answering the debug connection's keepalive pings (the waits take minutes
    /// under TCG).
    pub async fn run(&self, args: &[&str]) -> Result<String, Error> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        let line = kubectl::command_line(&self.kubectl, self.kubeconfig.path(), &args);
        let output = Command::new(&self.kubectl.program)
            .args(line)
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|source| Error::Spawn {
                program: self.kubectl.program.display().to_string(),
                source,
            })?;
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        Err(Error::Kubectl {
            args: format!("{args:?}"),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// Namespace `name` with `labels` (`key: value, ...`), once admission can admit pods
    /// in it: its `default` service account exists (`timeout`: kubectl's
    /// `--timeout=...`).
    pub async fn namespace(&self, name: &str, labels: &str, timeout: &str) -> Result<(), Error> {
        self.apply(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels: {{ {labels} }}\n"
        ))
        .await?;
        let account = ["wait", "--for=create", "serviceaccount/default", timeout];
        self.run(&[&account[..], &["-n", name]].concat())
            .await
            .map(drop)
    }

    /// `kubectl apply` of `manifest` (YAML or JSON).
    pub async fn apply(&self, manifest: &str) -> Result<(), Error> {
        let file = temp_file(manifest)?;
        let path = file.path().display().to_string();
        self.run(&["apply", "-f", &path]).await.map(drop)
    }
}

/// A private temporary file holding `text`.
fn temp_file(text: &str) -> Result<tempfile::NamedTempFile, Error> {
    let file = tempfile::NamedTempFile::new().map_err(Error::write("a temporary file"))?;
    std::fs::write(file.path(), text).map_err(Error::write(file.path()))?;
    Ok(file)
}
