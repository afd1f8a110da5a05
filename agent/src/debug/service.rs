//! The NodeDebugService handlers: validate the request, ask the registries, convert.
//! Every failure is an [`RpcError`], turned into a status in one place.

use cairn_api::v1::node_debug_service_server::NodeDebugService;
use cairn_api::v1::{
    exit_info, BuildInfo, Component, ComponentState as Proto, Condition, ExitInfo,
    GetBuildInfoRequest, GetDebugKubeconfigRequest, GetDebugKubeconfigResponse, GetLogsRequest,
    GetProcessStatsRequest, GetProcessStatsResponse, ListComponentsRequest, ListComponentsResponse,
    ListConditionsRequest, ListConditionsResponse, ListImagesRequest, ListImagesResponse,
    LoadImageRequest, LoadImageResponse, RunContainerRequest, RunContainerResponse,
    ShutdownRequest, ShutdownResponse, SignalComponentRequest, SignalComponentResponse,
    WaitConditionRequest,
};
use cairn_api::validate;
use tonic::{Request, Response, Status};

use super::error::RpcError;
use super::images;
use super::kubeconfig;
use super::logs::{self, duration_ns, FollowerSlots, LogStreamBox};
use super::process_stats::{self, Target};
use super::services::{LastExit, ServiceState, ServiceStatus};
use super::DebugState;
use crate::conditions::{self, WaitError};
use crate::containerd;
use crate::logbuf::AGENT;
use crate::power::PowerAction;

/// The service over the agent's registries.
#[derive(Debug)]
pub struct DebugService {
    state: DebugState,
    build_info: BuildInfo,
    followers: FollowerSlots,
    /// One image load at a time.
    load_slot: tokio::sync::Semaphore,
}

impl DebugService {
    pub fn new(state: DebugState, build_info: BuildInfo) -> Self {
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

    fn get_logs_stream(&self, request: GetLogsRequest) -> Result<LogStreamBox, RpcError> {
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

    async fn wait_condition(&self, request: WaitConditionRequest) -> Result<Condition, RpcError> {
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

    async fn run_container(
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

    fn signal(&self, request: &SignalComponentRequest) -> Result<u32, RpcError> {
        let name = validate::name("component", &request.component)?;
        let signal = validate::signal(&request.signal)?;
        if name == AGENT {
            return Err(RpcError::SignalAgent);
        }
        self.state
            .services
            .signal(name, signal)
            .map_err(|err| RpcError::Signal(name.to_owned(), err))
    }

    fn process_stats(&self) -> GetProcessStatsResponse {
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
}

#[tonic::async_trait]
impl NodeDebugService for DebugService {
    type GetLogsStream = LogStreamBox;

    async fn get_logs(
        &self,
        request: Request<GetLogsRequest>,
    ) -> Result<Response<Self::GetLogsStream>, Status> {
        Ok(Response::new(self.get_logs_stream(request.into_inner())?))
    }

    async fn list_components(
        &self,
        _request: Request<ListComponentsRequest>,
    ) -> Result<Response<ListComponentsResponse>, Status> {
        let components = self.components().iter().map(component).collect();
        Ok(Response::new(ListComponentsResponse { components }))
    }

    async fn list_conditions(
        &self,
        request: Request<ListConditionsRequest>,
    ) -> Result<Response<ListConditionsResponse>, Status> {
        let conditions = self.list_conditions(&request.into_inner().names)?;
        Ok(Response::new(ListConditionsResponse { conditions }))
    }

    async fn wait_condition(
        &self,
        request: Request<WaitConditionRequest>,
    ) -> Result<Response<Condition>, Status> {
        Ok(Response::new(
            self.wait_condition(request.into_inner()).await?,
        ))
    }

    async fn get_build_info(
        &self,
        _request: Request<GetBuildInfoRequest>,
    ) -> Result<Response<BuildInfo>, Status> {
        Ok(Response::new(self.build_info.clone()))
    }

    async fn signal_component(
        &self,
        request: Request<SignalComponentRequest>,
    ) -> Result<Response<SignalComponentResponse>, Status> {
        let pid = self.signal(&request.into_inner())?;
        Ok(Response::new(SignalComponentResponse { pid }))
    }

    async fn get_debug_kubeconfig(
        &self,
        request: Request<GetDebugKubeconfigRequest>,
    ) -> Result<Response<GetDebugKubeconfigResponse>, Status> {
        let pki = self.state.pki.as_deref();
        let now = time::OffsetDateTime::now_utc();
        Ok(Response::new(kubeconfig::issue(
            pki,
            &request.into_inner(),
            now,
        )?))
    }

    async fn run_container(
        &self,
        request: Request<RunContainerRequest>,
    ) -> Result<Response<RunContainerResponse>, Status> {
        Ok(Response::new(
            self.run_container(request.into_inner()).await?,
        ))
    }

    async fn shutdown(
        &self,
        request: Request<ShutdownRequest>,
    ) -> Result<Response<ShutdownResponse>, Status> {
        let action = match request.into_inner().power_off {
            true => PowerAction::PowerOff,
            false => PowerAction::Reboot,
        };
        tracing::info!("debug client requests {action}");
        self.state.power.request(action, "debug service Shutdown");
        Ok(Response::new(ShutdownResponse {}))
    }

    async fn get_process_stats(
        &self,
        _request: Request<GetProcessStatsRequest>,
    ) -> Result<Response<GetProcessStatsResponse>, Status> {
        Ok(Response::new(self.process_stats()))
    }

    async fn load_image(
        &self,
        request: Request<tonic::Streaming<LoadImageRequest>>,
    ) -> Result<Response<LoadImageResponse>, Status> {
        let stream = request.into_inner();
        Ok(Response::new(
            images::load(&self.state, &self.load_slot, stream).await?,
        ))
    }

    async fn list_images(
        &self,
        _request: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        Ok(Response::new(images::list(&self.state).await?))
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
