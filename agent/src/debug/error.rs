//! Every way a NodeDebugService call fails, and its gRPC status: one exhaustive match,
//! so a new failure cannot slip out as a vague `UNKNOWN`.

use cairn_api::validate::InvalidArgument;
use tonic::{Code, Status};

use cairn_api::error_chain;

use super::services::SignalError;
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
    #[error("pki not ready: the node has no cluster CA yet")]
    PkiNotReady,
    #[error("cannot issue a debug certificate")]
    IssueCredentials(#[source] PkiError),
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
