//! The conditions registry: named booleans the agent publishes (docs/interfaces.md
//! "Conditions"), each with a reason and the time since kernel start it first became
//! true.
//!
//! Tests and the debug service wait on conditions instead of sleeping or matching log
//! lines, and benchmarks read their first-true times as the boot timeline. Times are
//! CLOCK_BOOTTIME (clock_gettime(2)): it starts at zero with the kernel and keeps
//! counting across suspend, so a time reads as "seconds since the kernel started".
//!
//! [`Conditions`] is a cheap handle (one `Arc`): clone it into every task that sets or
//! waits. A name that nobody has set is *unknown* ([`Conditions::get`] returns `None`),
//! which the debug service reports differently from *false*; waiting on an unknown name
//! is allowed, because services register their conditions only when they start.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::time::{clock_gettime, ClockId};
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

/// Time since the kernel started (CLOCK_BOOTTIME), the clock of every timestamp the
/// agent publishes (conditions, log entries, service states).
pub fn since_boot() -> Duration {
    // CLOCK_BOOTTIME exists since Linux 2.6.39; failing would mean a broken kernel ABI,
    // and a zero time is a better answer than a dead PID 1.
    clock_gettime(ClockId::CLOCK_BOOTTIME)
        .map(Duration::from)
        .unwrap_or_default()
}

/// One condition as published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Condition {
    pub name: String,
    pub value: bool,
    /// Why it has its value: what was done, or what is missing or failed.
    pub reason: String,
    /// Since kernel start, when it first became true; `None` while it never was.
    pub first_true: Option<Duration>,
    /// Since kernel start, when value or reason last changed.
    pub last_change: Duration,
}

/// Why a wait ended without the condition becoming true.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    #[error("condition {name} is still unknown at the deadline")]
    Unknown { name: String },
    #[error("condition {name} is still false at the deadline: {reason}")]
    False { name: String, reason: String },
}

/// The registry: a shared, sorted map of conditions plus a change counter to wake
/// waiters.
#[derive(Debug, Clone)]
pub struct Conditions {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    map: Mutex<BTreeMap<String, Condition>>,
    /// Bumped on every change; waiters re-check their condition when it moves.
    changes: watch::Sender<u64>,
}

impl Default for Conditions {
    fn default() -> Self {
        Self::new()
    }
}

impl Conditions {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                map: Mutex::new(BTreeMap::new()),
                changes: watch::Sender::new(0),
            }),
        }
    }

    /// Sets `name` to `value` with `reason`, creating it if unknown. Setting the same
    /// value and reason again changes nothing (no timestamp moves, no waiter wakes).
    pub fn set(&self, name: &str, value: bool, reason: impl Into<String>) {
        self.set_at(name, value, reason.into(), since_boot());
    }

    fn set_at(&self, name: &str, value: bool, reason: String, now: Duration) {
        {
            let mut map = self.lock();
            let entry = map.entry(name.to_owned()).or_insert_with(|| Condition {
                name: name.to_owned(),
                value: !value,
                reason: String::new(),
                first_true: None,
                last_change: now,
            });
            if entry.value == value && entry.reason == reason {
                return;
            }
            if value && entry.first_true.is_none() {
                entry.first_true = Some(now);
            }
            entry.value = value;
            entry.reason = reason;
            entry.last_change = now;
        }
        self.inner.changes.send_modify(|count| *count += 1);
    }

    /// The condition, or `None` if nobody has set it yet.
    pub fn get(&self, name: &str) -> Option<Condition> {
        self.lock().get(name).cloned()
    }

    /// Whether `name` has been set at all (unknown and false differ).
    pub fn known(&self, name: &str) -> bool {
        self.lock().contains_key(name)
    }

    /// Every known condition, sorted by name.
    pub fn list(&self) -> Vec<Condition> {
        self.lock().values().cloned().collect()
    }

    /// Waits until `name` is true and returns it, or fails at `deadline` with the
    /// condition's state then (unknown, or false with its reason).
    pub async fn wait(&self, name: &str, deadline: Instant) -> Result<Condition, WaitError> {
        match tokio::time::timeout_at(deadline, self.wait_true(name)).await {
            Ok(condition) => Ok(condition),
            Err(_elapsed) => match self.get(name) {
                Some(condition) if condition.value => Ok(condition),
                Some(condition) => Err(WaitError::False {
                    name: name.to_owned(),
                    reason: condition.reason,
                }),
                None => Err(WaitError::Unknown {
                    name: name.to_owned(),
                }),
            },
        }
    }

    /// Waits, without a deadline, until `name` is true.
    pub async fn wait_true(&self, name: &str) -> Condition {
        let mut changes = self.subscribe();
        loop {
            // Mark the current version seen before reading, so a change made between
            // the read and the await still wakes us.
            changes.borrow_and_update();
            if let Some(condition) = self.get(name).filter(|c| c.value) {
                return condition;
            }
            if changes.changed().await.is_err() {
                // The sender lives in `self`, so this cannot happen; wait forever as
                // the condition can no longer change.
                std::future::pending::<()>().await;
            }
        }
    }

    /// A receiver that changes whenever any condition does (for streaming watchers);
    /// the value is a change counter, read the conditions with [`Conditions::list`].
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Condition>> {
        // A panic while holding the lock powers the node off; the map stays usable.
        self.inner
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn first_true_is_kept_across_later_changes() {
        let conditions = Conditions::new();
        conditions.set_at("network", false, "no eth0".into(), secs(1));
        assert_eq!(conditions.get("network").unwrap().first_true, None);
        conditions.set_at("network", true, "eth0 up".into(), secs(2));
        conditions.set_at("network", false, "eth0 gone".into(), secs(3));
        conditions.set_at("network", true, "eth0 up".into(), secs(4));
        let network = conditions.get("network").unwrap();
        assert_eq!(network.first_true, Some(secs(2)));
        assert_eq!(network.last_change, secs(4));
        assert!(network.value);
    }

    #[test]
    fn unknown_differs_from_false_and_list_is_sorted() {
        let conditions = Conditions::new();
        assert!(!conditions.known("mounts"));
        conditions.set("mounts", true, "mounted");
        conditions.set("identity", false, "no key");
        assert!(conditions.known("identity"));
        assert_eq!(conditions.get("etcd"), None);
        let names: Vec<_> = conditions.list().into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["identity", "mounts"]);
    }

    #[test]
    fn repeating_a_value_changes_nothing() {
        let conditions = Conditions::new();
        conditions.set_at("modules", true, "loaded".into(), secs(1));
        let version = *conditions.subscribe().borrow();
        conditions.set_at("modules", true, "loaded".into(), secs(5));
        assert_eq!(*conditions.subscribe().borrow(), version);
        assert_eq!(conditions.get("modules").unwrap().last_change, secs(1));
    }

    #[tokio::test]
    async fn wait_returns_once_a_later_set_makes_it_true() {
        let conditions = Conditions::new();
        let setter = conditions.clone();
        let deadline = Instant::now() + Duration::from_secs(10);
        let waiter = tokio::spawn(async move { conditions.wait("etcd", deadline).await });
        tokio::task::yield_now().await;
        setter.set("etcd", false, "starting");
        setter.set("etcd", true, "healthy");
        let condition = waiter.await.unwrap().unwrap();
        assert_eq!(condition.reason, "healthy");
    }

    #[tokio::test(start_paused = true)]
    async fn wait_times_out_with_the_current_reason() {
        let conditions = Conditions::new();
        let deadline = Instant::now() + Duration::from_secs(1);
        assert_eq!(
            conditions.wait("kubelet", deadline).await,
            Err(WaitError::Unknown {
                name: "kubelet".into()
            })
        );
        conditions.set("kubelet", false, "binary missing");
        let deadline = Instant::now() + Duration::from_secs(1);
        assert_eq!(
            conditions.wait("kubelet", deadline).await,
            Err(WaitError::False {
                name: "kubelet".into(),
                reason: "binary missing".into()
            })
        );
    }
}
