//! Log buffers: one bounded, in-memory log per component (every supervised service,
//! plus `agent` for the agent's own `tracing` output), read by the debug service.
//!
//! A buffer keeps the newest entries within a line limit *and* a byte limit, whichever
//! bites first, so a chatty service can neither grow the agent without bound nor push
//! a quiet one's history out (each component has its own). Every entry carries a
//! sequence number that is monotonic per buffer and never reused: a client that follows
//! a buffer sees every number exactly once, and a gap means entries were evicted before
//! it could read them, which [`Follower::recv`] reports as [`Lagged`].
//!
//! Following reads from the buffer itself rather than from a channel of copies: a
//! [`Follower`] remembers the next sequence number it wants, and a `watch` channel only
//! says "something new arrived". The tail a client gets first and the live stream after
//! it therefore meet without gaps or duplicates by construction.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use crate::conditions::since_boot;

/// Component name of the agent's own log (docs/interfaces.md "Components").
pub const AGENT: &str = cairn_api::names::service::AGENT;
/// Default line limit per buffer.
pub const MAX_LINES: usize = 8192;
/// Default byte limit per buffer (sum of entry texts).
pub const MAX_BYTES: usize = 4 << 20;
/// Longest line kept; longer lines are cut and end in [`TRUNCATED_MARKER`].
pub const MAX_LINE: usize = 16 << 10;
/// Appended to a cut line (as the seed did).
pub const TRUNCATED_MARKER: &str = "...";

/// Where an entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
    /// Written by the agent (its own log, or the supervisor about a service).
    Agent,
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
            Stream::Agent => "agent",
        })
    }
}

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Per buffer, starting at 0, +1 per entry, never reused.
    pub seq: u64,
    /// Since kernel start (CLOCK_BOOTTIME), when the agent received the line.
    pub time: Duration,
    pub stream: Stream,
    /// The line without its newline, valid UTF-8 (invalid bytes replaced), at most
    /// [`MAX_LINE`] bytes plus the marker.
    pub text: String,
}

/// Bounds of one buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub lines: usize,
    pub bytes: usize,
    pub line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            lines: MAX_LINES,
            bytes: MAX_BYTES,
            line: MAX_LINE,
        }
    }
}

/// A follower fell behind: `missed` entries were evicted before it read them. The next
/// [`Follower::recv`] continues with the oldest entry still held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{missed} log entries were dropped before they could be read")]
pub struct Lagged {
    pub missed: u64,
}

/// Counters of one buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BufferStats {
    pub lines: usize,
    pub bytes: usize,
    /// Sequence number of the oldest entry held (== `next_seq` when empty).
    pub first_seq: u64,
    /// Sequence number the next entry will get (= entries ever pushed).
    pub next_seq: u64,
}

/// One component's log. Clones share the buffer.
#[derive(Clone)]
pub struct LogBuffer {
    inner: Arc<Shared>,
}

struct Shared {
    name: String,
    limits: Limits,
    ring: Mutex<Ring>,
    /// Holds `next_seq`; followers wait for it to move.
    pushed: watch::Sender<u64>,
}

#[derive(Default)]
struct Ring {
    entries: VecDeque<Arc<Entry>>,
    bytes: usize,
    next_seq: u64,
}

impl Ring {
    fn first_seq(&self) -> u64 {
        self.next_seq - self.entries.len() as u64
    }
}

impl fmt::Debug for LogBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogBuffer")
            .field("name", &self.inner.name)
            .field("stats", &self.stats())
            .finish()
    }
}

impl LogBuffer {
    pub fn new(name: impl Into<String>, limits: Limits) -> Self {
        Self {
            inner: Arc::new(Shared {
                name: name.into(),
                limits,
                ring: Mutex::new(Ring::default()),
                pushed: watch::Sender::new(0),
            }),
        }
    }

    /// The component name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Appends one line (without its newline) and returns its sequence number, evicting
    /// the oldest entries beyond the limits.
    pub fn push(&self, stream: Stream, text: &str) -> u64 {
        let text = truncate(text, self.inner.limits.line);
        let time = since_boot();
        let seq = {
            let mut ring = self.lock();
            let seq = ring.next_seq;
            ring.next_seq += 1;
            ring.bytes += text.len();
            let entry = Entry {
                seq,
                time,
                stream,
                text,
            };
            ring.entries.push_back(Arc::new(entry));
            self.evict(&mut ring);
            seq
        };
        self.inner.pushed.send_replace(seq + 1);
        seq
    }

    fn evict(&self, ring: &mut Ring) {
        let Limits { lines, bytes, .. } = self.inner.limits;
        while ring.entries.len() > lines || (ring.bytes > bytes && ring.entries.len() > 1) {
            if let Some(old) = ring.entries.pop_front() {
                ring.bytes -= old.text.len();
            }
        }
    }

    /// The last `n` entries, oldest first; `None` gives every entry held, `Some(0)` none.
    pub fn tail(&self, n: Option<usize>) -> Vec<Arc<Entry>> {
        let ring = self.lock();
        let skip = n.map_or(0, |n| ring.entries.len().saturating_sub(n));
        ring.entries.iter().skip(skip).cloned().collect()
    }

    /// The last `n` entries (as [`LogBuffer::tail`]) and a follower that continues
    /// exactly after them.
    pub fn follow(&self, n: Option<usize>) -> (Vec<Arc<Entry>>, Follower) {
        let ring = self.lock();
        let skip = n.map_or(0, |n| ring.entries.len().saturating_sub(n));
        let tail: Vec<_> = ring.entries.iter().skip(skip).cloned().collect();
        let next = ring.next_seq;
        drop(ring);
        (tail, self.follow_from(next))
    }

    /// A follower that starts at sequence number `next` (e.g. one past the last entry
    /// a client saw). Entries already evicted are reported as [`Lagged`] first.
    pub fn follow_from(&self, next: u64) -> Follower {
        Follower {
            buffer: self.clone(),
            pushed: self.inner.pushed.subscribe(),
            next,
            pending: VecDeque::new(),
        }
    }

    pub fn stats(&self) -> BufferStats {
        let ring = self.lock();
        BufferStats {
            lines: ring.entries.len(),
            bytes: ring.bytes,
            first_seq: ring.first_seq(),
            next_seq: ring.next_seq,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        // A panic while holding the lock powers the node off; the ring stays usable.
        self.inner
            .ring
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Reads a buffer's entries from a sequence number on, waiting for new ones.
#[derive(Debug)]
pub struct Follower {
    buffer: LogBuffer,
    pushed: watch::Receiver<u64>,
    next: u64,
    pending: VecDeque<Arc<Entry>>,
}

/// Entries a follower copies out of the buffer per lock.
const FOLLOW_BATCH: usize = 256;

impl Follower {
    /// The next entry, waiting for one if the follower is at the end. Never ends: the
    /// follower keeps its buffer alive.
    pub async fn recv(&mut self) -> Result<Arc<Entry>, Lagged> {
        loop {
            if let Some(entry) = self.pending.pop_front() {
                return Ok(entry);
            }
            self.pushed.borrow_and_update();
            self.refill()?;
            if self.pending.is_empty() && self.pushed.changed().await.is_err() {
                // The sender lives in the buffer this follower holds: unreachable.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Sequence number of the entry [`Follower::recv`] returns next.
    pub fn next_seq(&self) -> u64 {
        self.next - self.pending.len() as u64
    }

    fn refill(&mut self) -> Result<(), Lagged> {
        let ring = self.buffer.lock();
        let first = ring.first_seq();
        if self.next < first {
            let missed = first - self.next;
            self.next = first;
            return Err(Lagged { missed });
        }
        let start = (self.next - first) as usize;
        self.pending
            .extend(ring.entries.iter().skip(start).take(FOLLOW_BATCH).cloned());
        self.next += self.pending.len() as u64;
        Ok(())
    }
}

/// `text` cut to at most `limit` bytes (on a character boundary) plus the marker.
fn truncate(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{TRUNCATED_MARKER}", &text[..end])
}

/// Every component's buffer, by name. Clones share the registry.
#[derive(Debug, Clone, Default)]
pub struct Logs {
    inner: Arc<Mutex<BTreeMap<String, LogBuffer>>>,
    limits: Limits,
}

impl Logs {
    pub fn new(limits: Limits) -> Self {
        Self {
            inner: Arc::default(),
            limits,
        }
    }

    /// The buffer of `component`, created empty on first use.
    pub fn buffer(&self, component: &str) -> LogBuffer {
        self.lock()
            .entry(component.to_owned())
            .or_insert_with(|| LogBuffer::new(component, self.limits))
            .clone()
    }

    /// The buffer of `component` if it exists (unknown components are a client error).
    pub fn get(&self, component: &str) -> Option<LogBuffer> {
        self.lock().get(component).cloned()
    }

    /// Component names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, LogBuffer>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Splits a byte stream into lines for [`LogBuffer::push`], holding at most
/// `limit` bytes of an unfinished line: the rest of an overlong line is dropped and
/// the line ends in [`TRUNCATED_MARKER`], so a service printing without newlines
/// cannot grow the agent.
#[derive(Debug)]
pub struct LineSplitter {
    limit: usize,
    partial: Vec<u8>,
    overlong: bool,
}

impl LineSplitter {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            partial: Vec::new(),
            overlong: false,
        }
    }

    /// Feeds `bytes`, calling `line` for every completed line.
    pub fn feed(&mut self, mut bytes: &[u8], mut line: impl FnMut(String)) {
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            self.append(&bytes[..end]);
            line(self.take());
            bytes = &bytes[end + 1..];
        }
        self.append(bytes);
    }

    /// The unfinished last line, if any (call at end of stream).
    pub fn finish(&mut self) -> Option<String> {
        (!self.partial.is_empty() || self.overlong).then(|| self.take())
    }

    fn append(&mut self, bytes: &[u8]) {
        let room = self.limit.saturating_sub(self.partial.len());
        if bytes.len() > room {
            self.overlong = true;
        }
        self.partial
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn take(&mut self) -> String {
        let mut text = String::from_utf8_lossy(&self.partial).into_owned();
        if std::mem::take(&mut self.overlong) {
            text.push_str(TRUNCATED_MARKER);
        }
        self.partial.clear();
        text
    }
}

#[cfg(test)]
#[path = "logbuf_tests.rs"]
mod tests;
