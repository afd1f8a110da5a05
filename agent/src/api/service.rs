//! The handlers of both surfaces: validate the request, ask the registries, convert.
//! Every failure is an [`RpcError`], turned into a status in one place; the services
//! ([`super::node`], [`super::debug`]) only unwrap requests and wrap responses.

use cairn_api::v1::{
    exit_info, BuildInfo, Component, ComponentState as Proto, Condition, CreateJoinTokenRequest,
    CreateJoinTokenResponse, ExitInfo, GetDebugKubeconfigResponse, GetLogsRequest,
    GetProcessStatsResponse, ListComponentsResponse, ListConditionsRequest, ListConditionsResponse,
    ListImagesResponse, LoadImageRequest, LoadImageResponse, ShutdownRequest, ShutdownResponse,
    WaitConditionRequest,
};
#[cfg(feature = "debug-service")]
use cairn_api::v1::{
    RunContainerRequest, RunContainerResponse, SignalComponentRequest, SignalComponentResponse,
};
use cairn_api::validate;

use super::error::RpcError;
use super::images;
use super::kubeconfig;
use super::logs::{self, duration_ns, FollowerSlots, LogStreamBox};
use super::process_stats::{self, Target};
use super::services::{LastExit, ServiceState, ServiceStatus};
use super::ApiState;
use crate::conditions::{self, WaitError};
#[cfg(feature = "debug-service")]
use crate::containerd;
use crate::logbuf::AGENT;
use crate::power::PowerAction;

/// The calls over the agent's registries.
#[derive(Debug)]
pub struct Handlers {
    state: ApiState,
    build_info: BuildInfo,
    followers: FollowerSlots,
    /// One image load at a time.
    load_slot: tokio::sync::Semaphore,
}

impl Handlers {
    pub fn new(state: ApiState, build_info: BuildInfo) -> Self {
        Self {
            state,
            build_info,
            followers: FollowerSlots::default(),
            load_slot: tokio::sync::Semaphore::new(1),
        }
    }

    fn components(&self) -> Vec<ServiceStatus> {
        let mut list = self.state.services.list();
        if !list.iter().any(|c| c.name == AGENT) {
            list.insert(0, agent_status());
        }
        list
    }

    fn list_conditions(&self, names: &[String]) -> Result<Vec<Condition>, RpcError> {
        if names.is_empty() {
            return Ok(self.state.conditions.list().iter().map(condition).collect());
        }
        names
            .iter()
            .map(|name| {
                let name = validate::name("condition", name)?;
                self.state
                    .conditions
                    .get(name)
                    .map(|c| condition(&c))
                    .ok_or_else(|| RpcError::UnknownCondition(name.to_owned()))
            })
            .collect()
    }
}

/// The calls both surfaces serve, one method per call.
impl Handlers {
    pub(super) fn get_logs(&self, request: GetLogsRequest) -> Result<LogStreamBox, RpcError> {
        let name = validate::name("component", &request.component)?;
        let tail = validate::tail_lines(request.tail_lines)?;
        let buffer = match self.state.logs.get(name) {
            Some(buffer) => buffer,
            // Supervised but silent so far: an empty log, created so a follower sees
            // the first line.
            None if self.components().iter().any(|c| c.name == name) => {
                self.state.logs.buffer(name)
            }
            None => return Err(RpcError::UnknownComponent(name.to_owned())),
        };
        let tail = tail.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        logs::stream(&buffer, tail, request.follow, &self.followers)
    }

    pub(super) async fn wait(&self, request: WaitConditionRequest) -> Result<Condition, RpcError> {
        let name = validate::name("condition", &request.name)?;
        let timeout = validate::timeout_ms(request.timeout_ms)?;
        let deadline = tokio::time::Instant::now() + timeout;
        match self.state.conditions.wait(name, deadline).await {
            Ok(found) => Ok(condition(&found)),
            Err(WaitError::Unknown { name }) => Err(RpcError::ConditionNeverAppeared(name)),
            Err(WaitError::False { name, reason }) => {
                Err(RpcError::ConditionStillFalse { name, reason })
            }
        }
    }

    pub(super) fn get_process_stats(&self) -> GetProcessStatsResponse {
        let targets: Vec<Target> = self
            .components()
            .into_iter()
            .filter_map(|c| {
                c.pid.map(|pid| Target {
                    component: c.name,
                    pid,
                })
            })
            .collect();
        process_stats::collect(&self.state.paths, &targets)
    }

    pub(super) fn list_components(&self) -> ListComponentsResponse {
        let components = self.components().iter().map(component).collect();
        ListComponentsResponse { components }
    }

    pub(super) fn list_conditions_response(
        &self,
        request: ListConditionsRequest,
    ) -> Result<ListConditionsResponse, RpcError> {
        let conditions = self.list_conditions(&request.names)?;
        Ok(ListConditionsResponse { conditions })
    }

    pub(super) fn build_info(&self) -> BuildInfo {
        self.build_info.clone()
    }

    /// `client` says who asked, for the agent's log.
    pub(super) fn shutdown(&self, request: ShutdownRequest, client: &str) -> ShutdownResponse {
        let action = match request.power_off {
            true => PowerAction::PowerOff,
            false => PowerAction::Reboot,
        };
        tracing::info!("{client} requests {action}");
        self.state
            .power
            .request(action, format!("{client}: Shutdown"));
        ShutdownResponse {}
    }

    /// A kubeconfig for `user` in `groups`, valid `validity_seconds` (validated).
    pub(super) fn kubeconfig(
        &self,
        user: &str,
        groups: &[String],
        validity_seconds: Option<u32>,
    ) -> Result<GetDebugKubeconfigResponse, RpcError> {
        let now = time::OffsetDateTime::now_utc();
        kubeconfig::issue(
            self.state.pki.as_deref(),
            user,
            groups,
            validity_seconds,
            now,
        )
    }

    pub(super) async fn load_image(
        &self,
        stream: tonic::Streaming<LoadImageRequest>,
    ) -> Result<LoadImageResponse, RpcError> {
        images::load(&self.state, &self.load_slot, stream).await
    }

    pub(super) async fn list_images(&self) -> Result<ListImagesResponse, RpcError> {
        images::list(&self.state).await
    }

    pub(super) async fn create_join_token(
        &self,
        request: CreateJoinTokenRequest,
    ) -> Result<CreateJoinTokenResponse, RpcError> {
        super::join::create(&self.state, request).await
    }
}

/// Debug-only calls.
#[cfg(feature = "debug-service")]
impl Handlers {
    pub(super) async fn run(
        &self,
        request: RunContainerRequest,
    ) -> Result<RunContainerResponse, RpcError> {
        let spec = containerd::RunSpec {
            image: validate::image(&request.image)?.to_owned(),
            command: validate::command(&request.command)?.to_vec(),
            args: Vec::new(),
            timeout: validate::run_timeout_ms(request.timeout_ms)?,
        };
        tracing::info!("running a container from {} for a debug client", spec.image);
        let output = containerd::run_container(&self.state.paths, &spec).await?;
        Ok(RunContainerResponse {
            exit_code: output.exit_code,
            stdout: output.stdout,
            stderr: output.stderr,
        })
    }

    pub(super) fn signal_component(
        &self,
        request: &SignalComponentRequest,
    ) -> Result<SignalComponentResponse, RpcError> {
        let name = validate::name("component", &request.component)?;
        let signal = validate::signal(&request.signal)?;
        if name == AGENT {
            return Err(RpcError::SignalAgent);
        }
        let pid = (self.state.services.signal(name, signal))
            .map_err(|err| RpcError::Signal(name.to_owned(), err))?;
        Ok(SignalComponentResponse { pid })
    }
}

/// The agent itself, listed first: it has a log (`agent`) but no supervisor entry.
fn agent_status() -> ServiceStatus {
    ServiceStatus {
        name: AGENT.to_owned(),
        state: ServiceState::Ready,
        since: std::time::Duration::ZERO,
        pid: Some(1),
        restarts: 0,
        last_exit: None,
        started: Some(std::time::Duration::ZERO),
        exited: None,
    }
}

fn condition(c: &conditions::Condition) -> Condition {
    Condition {
        name: c.name.clone(),
        status: c.value,
        reason: c.reason.clone(),
        first_true_boot_ns: c.first_true.map(duration_ns),
        last_change_boot_ns: duration_ns(c.last_change),
    }
}

fn component(c: &ServiceStatus) -> Component {
    let (state, detail) = state(&c.state);
    Component {
        name: c.name.clone(),
        state: state.into(),
        detail,
        pid: c.pid,
        restart_count: c.restarts,
        last_exit: c
            .last_exit
            .map(|last| exit(last, c.exited.unwrap_or_default())),
        state_since_boot_ns: duration_ns(c.since),
        started_boot_ns: c.started.map(duration_ns),
    }
}

fn state(state: &ServiceState) -> (Proto, String) {
    match state {
        ServiceState::WaitingForDependencies { missing } => (
            Proto::Waiting,
            format!("waiting for {}", missing.join(", ")),
        ),
        ServiceState::Starting => (Proto::Starting, String::new()),
        ServiceState::Running => (Proto::Running, "not ready".to_owned()),
        ServiceState::Ready => (Proto::Ready, String::new()),
        ServiceState::Backoff { until } => (
            Proto::Backoff,
            format!("restarts at {:.3}s", until.as_secs_f64()),
        ),
        ServiceState::Failed { reason } => (Proto::Failed, reason.clone()),
        ServiceState::Stopping => (Proto::Stopping, String::new()),
        ServiceState::Stopped => (Proto::Stopped, String::new()),
    }
}

fn exit(last: LastExit, at: std::time::Duration) -> ExitInfo {
    let exited_boot_ns = duration_ns(at);
    match last {
        LastExit::Code(code) => ExitInfo {
            how: Some(exit_info::How::Code(code)),
            signal_name: String::new(),
            exited_boot_ns,
        },
        LastExit::Signal(number) => ExitInfo {
            how: Some(exit_info::How::Signal(number)),
            signal_name: nix::sys::signal::Signal::try_from(number)
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
            exited_boot_ns,
        },
    }
}
