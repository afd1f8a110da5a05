//! Every way a NodeDebugService call fails, and its gRPC status: one exhaustive match,
//! so a new failure cannot slip out as a vague `UNKNOWN`.

use cairn_api::validate::InvalidArgument;
use tonic::{Code, Status};

use cairn_api::error_chain;

use super::services::SignalError;
use crate::containerd::images::ListError;
use crate::containerd::import::LoadError;
use crate::pki::PkiError;

/// Why a call failed. Messages name the component or condition; causes chain.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error(transparent)]
    InvalidArgument(#[from] InvalidArgument),
    #[error("unknown component {0}")]
    UnknownComponent(String),
    #[error("unknown condition {0}")]
    UnknownCondition(String),
    #[error("condition {0} does not exist at the deadline")]
    ConditionNeverAppeared(String),
    #[error("condition {name} is still false at the deadline: {reason}")]
    ConditionStillFalse { name: String, reason: String },
    #[error("component agent is PID 1 and cannot be signalled")]
    SignalAgent,
    #[error("cannot signal component {0}")]
    Signal(String, #[source] SignalError),
    #[error("{0} log streams are followed already; close one first")]
    TooManyFollowers(usize),
    #[error("cannot run the container")]
    Run(#[from] crate::containerd::RunError),
    #[error(
        "pki not ready: the node has no cluster CA (not yet, or it is a worker, which holds none)"
    )]
    PkiNotReady,
    #[error("cannot issue a debug certificate")]
    IssueCredentials(#[source] PkiError),
    #[error("another image load is in progress; try again when it has ended")]
    LoadBusy,
    #[error("malformed LoadImage stream: {0}")]
    LoadProtocol(&'static str),
    #[error(
        "the image archive needs {need} bytes free on the data disk (twice its size), {free} are"
    )]
    NoSpace { need: u64, free: u64 },
    #[error("the client sent nothing for {0:?}")]
    LoadIdle(std::time::Duration),
    #[error("the client's stream failed")]
    LoadStream(#[source] Status),
    #[error(transparent)]
    Load(LoadError),
    #[error("the image load task ended abnormally")]
    LoadTask(#[source] tokio::task::JoinError),
    #[error("cannot list the images")]
    ListImages(#[source] ListError),
    #[error("the node has no address other machines could reach its apiserver at (see network)")]
    NoNodeAddress,
    /// A token before the bootstrap bindings exist would be refused by the apiserver.
    #[error("the cluster does not admit joins yet (builtin-objects: {0})")]
    JoinBindingsMissing(String),
    #[error("the cluster CA: {0}")]
    CaHash(String),
    #[error("no random bytes for the token")]
    Random(#[source] getrandom::Error),
    #[error("the apiserver did not store the join token: {0}")]
    JoinTokenSecret(String),
}

impl From<RpcError> for Status {
    fn from(err: RpcError) -> Status {
        let code = match &err {
            RpcError::InvalidArgument(_) => Code::InvalidArgument,
            RpcError::UnknownComponent(_)
            | RpcError::UnknownCondition(_)
            | RpcError::ConditionNeverAppeared(_) => Code::NotFound,
            RpcError::ConditionStillFalse { .. } => Code::DeadlineExceeded,
            RpcError::SignalAgent => Code::FailedPrecondition,
            RpcError::Signal(_, SignalError::Unknown(_)) => Code::NotFound,
            RpcError::Signal(_, SignalError::NotRunning(_)) => Code::FailedPrecondition,
            RpcError::Signal(_, SignalError::Kill { .. }) => Code::Internal,
            RpcError::TooManyFollowers(_) => Code::ResourceExhausted,
            RpcError::PkiNotReady => Code::FailedPrecondition,
            RpcError::IssueCredentials(_) => Code::Internal,
            RpcError::Run(err) => run_code(err),
            RpcError::LoadBusy | RpcError::NoSpace { .. } => Code::ResourceExhausted,
            RpcError::LoadProtocol(_) => Code::InvalidArgument,
            RpcError::LoadIdle(_) => Code::DeadlineExceeded,
            RpcError::LoadStream(status) => status.code(),
            RpcError::Load(err) => load_code(err),
            RpcError::LoadTask(_) => Code::Internal,
            RpcError::ListImages(ListError::Client(_)) => Code::Unavailable,
            RpcError::ListImages(ListError::Call { .. }) => Code::Internal,
            RpcError::NoNodeAddress => Code::FailedPrecondition,
            RpcError::JoinBindingsMissing(_) => Code::Unavailable,
            RpcError::CaHash(_) | RpcError::Random(_) => Code::Internal,
            RpcError::JoinTokenSecret(_) => Code::Unavailable,
        };
        Status::new(code, error_chain(&err))
    }
}

/// A failed run: CRI's own verdict where it gave one (an unknown image is its
/// NOT_FOUND), otherwise what went wrong on our side.
fn run_code(err: &crate::containerd::RunError) -> Code {
    use crate::containerd::RunError;
    match err {
        RunError::Client(_) => Code::Unavailable,
        RunError::Cri { source, .. } => source.code(),
        RunError::Timeout(_) => Code::DeadlineExceeded,
        RunError::Log(..) => Code::Internal,
    }
}

/// A failed load: the archive's fault is the client's (INVALID_ARGUMENT); containerd
/// not answering is UNAVAILABLE; containerd failing otherwise is ours.
fn load_code(err: &LoadError) -> Code {
    match err {
        LoadError::Archive(_) | LoadError::DiffId { .. } => Code::InvalidArgument,
        LoadError::Pinned(_) => Code::FailedPrecondition,
        LoadError::Client(_) => Code::Unavailable,
        LoadError::Call { .. } | LoadError::Reader(_) => Code::Internal,
    }
}
