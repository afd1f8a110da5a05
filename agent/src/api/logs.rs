//! GetLogs: a component's tail, then (when followed) every new line.
//!
//! The stream is a plain `unfold` over the log buffer's own [`Follower`], with no task
//! of its own: tonic polls it only when the HTTP/2 connection can take more, and drops
//! it when the client goes away, which drops the follower and frees everything. A
//! client that reads slower than the component writes simply falls behind in the
//! buffer; when its next line has been evicted it gets one [`LogGap`] saying how many
//! lines it lost, then continues with the oldest line still held. Nothing a client
//! does can block the agent or grow its memory.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;

use cairn_api::v1::{get_logs_response, GetLogsResponse, LogEntry, LogGap, LogStream};
use futures_util::Stream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;

use super::error::RpcError;
use crate::logbuf::{Entry, Follower, LogBuffer, Stream as Source};

/// What `GetLogs` returns.
pub type LogStreamBox = Pin<Box<dyn Stream<Item = Result<GetLogsResponse, Status>> + Send>>;

/// At most this many followed streams at once (each holds a follower and a connection
/// slot; a debug session needs a handful).
pub const MAX_FOLLOWERS: usize = 32;

/// Limits the number of followers across all connections.
#[derive(Debug, Clone)]
pub struct FollowerSlots(Arc<Semaphore>);

impl Default for FollowerSlots {
    fn default() -> Self {
        Self::new(MAX_FOLLOWERS)
    }
}

impl FollowerSlots {
    pub fn new(slots: usize) -> Self {
        Self(Arc::new(Semaphore::new(slots)))
    }

    fn take(&self) -> Result<OwnedSemaphorePermit, RpcError> {
        self.0
            .clone()
            .try_acquire_owned()
            .map_err(|_| RpcError::TooManyFollowers(MAX_FOLLOWERS))
    }
}

struct State {
    tail: VecDeque<Arc<Entry>>,
    follow: Option<(Follower, OwnedSemaphorePermit)>,
}

/// The stream for `buffer`: the last `tail` entries (all when `None`), then new ones if
/// `follow`.
pub fn stream(
    buffer: &LogBuffer,
    tail: Option<usize>,
    follow: bool,
    slots: &FollowerSlots,
) -> Result<LogStreamBox, RpcError> {
    let state = if follow {
        let permit = slots.take()?;
        let (tail, follower) = buffer.follow(tail);
        State {
            tail: tail.into(),
            follow: Some((follower, permit)),
        }
    } else {
        State {
            tail: buffer.tail(tail).into(),
            follow: None,
        }
    };
    Ok(Box::pin(futures_util::stream::unfold(state, next)))
}

async fn next(mut state: State) -> Option<(Result<GetLogsResponse, Status>, State)> {
    if let Some(entry) = state.tail.pop_front() {
        return Some((Ok(entry_message(&entry)), state));
    }
    let (follower, _permit) = state.follow.as_mut()?;
    let kind = match follower.recv().await {
        Ok(entry) => get_logs_response::Kind::Entry(log_entry(&entry)),
        Err(lagged) => get_logs_response::Kind::Gap(LogGap {
            // After a lag the follower continues at the oldest entry still held.
            first_seq: follower.next_seq().saturating_sub(lagged.missed),
            count: lagged.missed,
        }),
    };
    Some((Ok(GetLogsResponse { kind: Some(kind) }), state))
}

fn entry_message(entry: &Entry) -> GetLogsResponse {
    GetLogsResponse {
        kind: Some(get_logs_response::Kind::Entry(log_entry(entry))),
    }
}

/// One buffered line as the protocol carries it.
pub fn log_entry(entry: &Entry) -> LogEntry {
    LogEntry {
        seq: entry.seq,
        boot_time_ns: duration_ns(entry.time),
        stream: match entry.stream {
            Source::Stdout => LogStream::Stdout,
            Source::Stderr => LogStream::Stderr,
            Source::Agent => LogStream::Agent,
        }
        .into(),
        text: entry.text.clone(),
    }
}

/// Nanoseconds of `d`, saturating (u64 nanoseconds last 584 years of uptime).
pub fn duration_ns(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
