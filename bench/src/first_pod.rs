//! The first pod: once the node is Ready, how long a pod from the preloaded toolbox
//! image takes from `kubectl create` to Running (host clock). kubectl is the
//! project-built one, with a debug kubeconfig pointed at the forwarded apiserver, as
//! `dbg kubectl` runs it.

use std::ffi::OsString;
use std::process::Command;
use std::time::{Duration, Instant};

use cairn_api::v1::GetDebugKubeconfigRequest;
use cairn_dbg::commands::{kubeconfig, kubectl};

use crate::node::{Booted, Error};

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
    let request = GetDebugKubeconfigRequest {
        user: kubeconfig::DEFAULT_USER.to_owned(),
        groups: kubeconfig::DEFAULT_GROUPS
            .iter()
            .map(|g| (*g).to_owned())
            .collect(),
        validity_seconds: None,
    };
    let reply = booted
        .client
        .get_debug_kubeconfig(request)
        .await?
        .into_inner();
    let server = booted
        .node
        .api_endpoint()
        .ok_or("the launcher forwarded no apiserver port")?;
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(
        file.path(),
        kubeconfig::rewrite_server(&reply.kubeconfig, server),
    )?;
    let home = std::env::var_os("HOME");
    let cache = std::env::var_os("CAIRN_CACHE");
    let found = kubectl::locate(
        std::env::var_os("CAIRN_KUBECTL").as_deref(),
        cache.as_deref(),
        home.as_deref(),
    )?;
    let run = |args: &[&str]| -> Result<(), Error> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        let line = kubectl::command_line(&found, file.path(), &args);
        let output = Command::new(&found.program).args(line).output()?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "kubectl {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            )
            .into())
        }
    };
    let wait_sa = format!("--timeout={}s", POD_TIMEOUT.as_secs());
    run(&["wait", "--for=create", "serviceaccount/default", &wait_sa])?;
    let manifest = tempfile::NamedTempFile::new()?;
    std::fs::write(manifest.path(), POD)?;
    let path = manifest.path().display().to_string();
    let started = Instant::now();
    run(&["create", "-f", &path])?;
    run(&[
        "wait",
        "--for=condition=Ready",
        "pod/bench-first-pod",
        &wait_sa,
    ])?;
    Ok(FirstPod {
        since_call: called.elapsed().as_secs_f64(),
        create_to_running: started.elapsed().as_secs_f64(),
    })
}
