//! Running one container from a preloaded image to completion, through CRI.
//!
//! This drives exactly the path the kubelet drives, on the same socket: RunPodSandbox
//! (the pause image, a network namespace from the CNI bridge), CreateContainer with a
//! CRI log path, StartContainer, ContainerStatus until the container has exited, then
//! the CRI log file (`<RFC 3339 time> <stream> <P|F> <text>` per line, kubelet
//! `pkg/kubelet/kuberuntime/logs`) is read back. So a successful run proves the
//! sandbox image, the runtime (shim, runc, pivot_root on the moved root), CNI with
//! iptables, and the preloaded image all work. The sandbox is always removed
//! afterwards, also on failure or timeout.
//!
//! Used by the boot test through a debug RPC; not on any boot path.

use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::Status;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerState, ContainerStatusRequest,
    CreateContainerRequest, ImageSpec, LinuxPodSandboxConfig, LinuxSandboxSecurityContext,
    NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxMetadata, RemoveContainerRequest,
    RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest, StopPodSandboxRequest,
};

use super::client::{self, ClientError};

/// The Kubernetes-style namespace the sandboxes are labelled with.
const POD_NAMESPACE: &str = "cairn-system";
/// Where CRI writes container logs (the kubelet's layout).
const LOG_ROOT: &str = "/var/log/pods";
const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{step} failed")]
    Cri {
        step: &'static str,
        #[source]
        source: Status,
    },
    #[error("container did not exit within {0:?}")]
    Timeout(Duration),
    #[error("cannot read the container log {}", .0.display())]
    Log(PathBuf, #[source] std::io::Error),
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    /// An image reference already in containerd, e.g. `localhost/cairn/toolbox:1`.
    pub image: String,
    /// Replaces the image's entrypoint; empty keeps it.
    pub command: Vec<String>,
    pub args: Vec<String>,
    /// From sandbox creation to container exit.
    pub timeout: Duration,
}

/// How the container ended and what it wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOutput {
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `spec` to completion through CRI on `socket`.
pub async fn run_container(socket: &Path, spec: &RunSpec) -> Result<RunOutput, RunError> {
    let channel = client::connect(socket).await?;
    let mut cri = RuntimeServiceClient::new(channel);
    let names = Names::new();
    let sandbox_config = sandbox_config(&names);
    let sandbox = cri
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(sandbox_config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .map_err(cri_error("RunPodSandbox"))?
        .into_inner()
        .pod_sandbox_id;
    let result = tokio::time::timeout(
        spec.timeout,
        run_in_sandbox(&mut cri, &sandbox, sandbox_config, spec, &names),
    )
    .await
    .unwrap_or(Err(RunError::Timeout(spec.timeout)));
    remove_sandbox(&mut cri, &sandbox).await;
    result
}

/// Unique names and paths for one run.
struct Names {
    pod: String,
    uid: String,
}

impl Names {
    fn new() -> Self {
        let mut bytes = [0u8; 8];
        // Only uniqueness matters; fall back to the clock if the CRNG is not ready.
        if getrandom::fill(&mut bytes).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            bytes = (nanos as u64).to_le_bytes();
        }
        let uid = hex::encode(bytes);
        Self {
            pod: format!("run-{}", &uid[..8]),
            uid,
        }
    }

    fn log_directory(&self) -> String {
        format!("{LOG_ROOT}/{POD_NAMESPACE}_{}_{}", self.pod, self.uid)
    }
}

fn sandbox_config(names: &Names) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: names.pod.clone(),
            uid: names.uid.clone(),
            namespace: POD_NAMESPACE.to_owned(),
            attempt: 0,
        }),
        hostname: names.pod.clone(),
        log_directory: names.log_directory(),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Pod as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: NamespaceMode::Pod as i32,
                    ..NamespaceOption::default()
                }),
                ..LinuxSandboxSecurityContext::default()
            }),
            ..LinuxPodSandboxConfig::default()
        }),
        ..PodSandboxConfig::default()
    }
}

async fn run_in_sandbox(
    cri: &mut RuntimeServiceClient<Channel>,
    sandbox: &str,
    sandbox_config: PodSandboxConfig,
    spec: &RunSpec,
    names: &Names,
) -> Result<RunOutput, RunError> {
    let log_name = "main_0.log";
    let config = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "main".to_owned(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: spec.image.clone(),
            ..ImageSpec::default()
        }),
        command: spec.command.clone(),
        args: spec.args.clone(),
        log_path: log_name.to_owned(),
        ..ContainerConfig::default()
    };
    let container = cri
        .create_container(CreateContainerRequest {
            pod_sandbox_id: sandbox.to_owned(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        })
        .await
        .map_err(cri_error("CreateContainer"))?
        .into_inner()
        .container_id;
    let result = start_and_wait(cri, &container).await;
    let _ = cri
        .remove_container(RemoveContainerRequest {
            container_id: container.clone(),
        })
        .await;
    let exit_code = result?;
    let log = Path::new(&names.log_directory()).join(log_name);
    let text = std::fs::read_to_string(&log).map_err(|e| RunError::Log(log.clone(), e))?;
    let (stdout, stderr) = parse_cri_log(&text);
    Ok(RunOutput {
        exit_code,
        stdout,
        stderr,
    })
}

/// Starts the container and polls its status until it has exited; its exit code.
async fn start_and_wait(
    cri: &mut RuntimeServiceClient<Channel>,
    container: &str,
) -> Result<i32, RunError> {
    cri.start_container(StartContainerRequest {
        container_id: container.to_owned(),
    })
    .await
    .map_err(cri_error("StartContainer"))?;
    loop {
        let status = cri
            .container_status(ContainerStatusRequest {
                container_id: container.to_owned(),
                verbose: false,
            })
            .await
            .map_err(cri_error("ContainerStatus"))?
            .into_inner()
            .status
            .unwrap_or_default();
        if status.state == ContainerState::ContainerExited as i32 {
            return Ok(status.exit_code);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Best effort: a sandbox left behind only costs memory on an ephemeral root.
async fn remove_sandbox(cri: &mut RuntimeServiceClient<Channel>, sandbox: &str) {
    let id = sandbox.to_owned();
    if let Err(status) = cri
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
    {
        tracing::warn!(sandbox, "StopPodSandbox failed: {status}");
    }
    if let Err(status) = cri
        .remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id })
        .await
    {
        tracing::warn!(sandbox, "RemovePodSandbox failed: {status}");
    }
}

fn cri_error(step: &'static str) -> impl FnOnce(Status) -> RunError {
    move |source| RunError::Cri { step, source }
}

/// Splits a CRI log into stdout and stderr text. Partial (`P`) lines are joined to
/// the next line without a newline; malformed lines are skipped.
pub fn parse_cri_log(text: &str) -> (String, String) {
    let (mut stdout, mut stderr) = (String::new(), String::new());
    for line in text.lines() {
        let mut fields = line.splitn(4, ' ');
        let (Some(_time), Some(stream), Some(tag)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let content = fields.next().unwrap_or_default();
        let out = match stream {
            "stdout" => &mut stdout,
            "stderr" => &mut stderr,
            _ => continue,
        };
        out.push_str(content);
        if tag != "P" {
            out.push('\n');
        }
    }
    (stdout, stderr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_log_splits_streams_and_joins_partial_lines() {
        let log = "2026-01-01T00:00:00.000000001Z stdout F hello\n\
                   2026-01-01T00:00:00.000000002Z stderr F oops: no\n\
                   2026-01-01T00:00:00.000000003Z stdout P par\n\
                   2026-01-01T00:00:00.000000004Z stdout F tial line\n\
                   garbage\n\
                   2026-01-01T00:00:00.000000005Z stdout F \n";
        let (stdout, stderr) = parse_cri_log(log);
        assert_eq!(stdout, "hello\npartial line\n\n");
        assert_eq!(stderr, "oops: no\n");
    }

    #[test]
    fn sandbox_config_names_a_unique_pod_and_its_log_directory() {
        let (a, b) = (Names::new(), Names::new());
        assert_ne!(a.uid, b.uid);
        let config = sandbox_config(&a);
        let metadata = config.metadata.unwrap();
        assert_eq!(metadata.namespace, POD_NAMESPACE);
        assert_eq!(
            config.log_directory,
            format!(
                "/var/log/pods/cairn-system_{}_{}",
                metadata.name, metadata.uid
            )
        );
    }
}
