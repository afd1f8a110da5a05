//! The life of one service, as its own task: wait for dependencies, spawn, follow
//! readiness, learn the exit from the reaper, back off, restart — until the supervisor
//! asks it to stop. Nothing here waits on another service's task, so a crash-looping
//! service costs the others nothing but its own (capped) restarts.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::spawn::{capture_output, check_executable, command, pid_of, ChildWatcher};
use super::spec::{ProbeResult, Readiness, ServiceSpec};
use super::status::{LastExit, ServiceState, ServiceStatus};
use crate::conditions::{since_boot, Conditions};
use crate::logbuf::{LogBuffer, Stream};
use crate::reaper::ExitStatus;

/// How long an exit waits for the last output lines before it is noted in the log, so
/// the note usually follows them (a grandchild holding the pipe must not delay it).
const OUTPUT_DRAIN: Duration = Duration::from_millis(200);
/// After SIGKILL, how long to wait for the reaper to report the exit.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Everything one service task needs.
pub(super) struct Service {
    pub spec: ServiceSpec,
    pub conditions: Conditions,
    pub log: LogBuffer,
    pub watcher: Arc<dyn ChildWatcher>,
    pub status: Arc<Mutex<ServiceStatus>>,
    pub stop: watch::Receiver<bool>,
}

/// How one run ended.
enum RunEnd {
    Exited(ExitStatus),
    /// The supervisor asked the service to stop, and it has.
    Stopped,
}

impl Service {
    pub async fn run(mut self) {
        if !self.wait_for_dependencies().await {
            return self.stopped();
        }
        let mut attempt = 0;
        loop {
            if let Err(reason) = check_executable(&self.spec.binary) {
                return self.fail(reason);
            }
            let started = Instant::now();
            let end = self.run_once().await;
            let status = match end {
                RunEnd::Stopped => return self.stopped(),
                RunEnd::Exited(status) => status,
            };
            if started.elapsed() >= self.spec.restart.reset_after {
                attempt = 0;
            }
            let delay = self.spec.restart.delay(attempt);
            attempt = attempt.saturating_add(1);
            self.note_exit(status, delay, attempt);
            if !self.sleep_unless_stopped(delay).await {
                return self.stopped();
            }
            self.update(|s| s.restarts += 1);
        }
    }

    /// Returns false if a stop arrived first.
    async fn wait_for_dependencies(&mut self) -> bool {
        let mut changes = self.conditions.subscribe();
        loop {
            changes.borrow_and_update();
            let missing: Vec<String> = (self.spec.dependencies.iter())
                .filter(|dep| !self.conditions.get(dep).is_some_and(|c| c.value))
                .cloned()
                .collect();
            if missing.is_empty() {
                return true;
            }
            let reason = format!("waiting for {}", missing.join(", "));
            self.conditions.set(&self.spec.name, false, reason);
            self.set_state(ServiceState::WaitingForDependencies { missing });
            tokio::select! {
                _ = changes.changed() => {}
                _ = stop_requested(&mut self.stop) => return false,
            }
        }
    }

    async fn run_once(&mut self) -> RunEnd {
        self.set_state(ServiceState::Starting);
        let spawned =
            command(&self.spec).and_then(|mut command| self.watcher.spawn_watched(&mut command));
        let (mut child, exit) = match spawned {
            Ok(spawned) => spawned,
            Err(err) => {
                // Checked executable a moment ago: a transient failure (EAGAIN,
                // ENOMEM, ...) or a bad working directory; retried with backoff.
                let reason = format!("cannot start {}: {err}", self.spec.binary.display());
                tracing::warn!("{}: {reason}", self.spec.name);
                self.log.push(Stream::Agent, &reason);
                self.conditions.set(&self.spec.name, false, reason);
                return RunEnd::Exited(ExitStatus::Exited(-1));
            }
        };
        let pid = pid_of(&child);
        let output = capture_output(&mut child, &self.log);
        drop(child); // Dropping a Child neither waits nor kills.
        let message = format!("started {} (pid {pid})", self.spec.binary.display());
        tracing::info!("{}: {message}", self.spec.name);
        self.log.push(Stream::Agent, &message);
        self.update(|s| {
            s.pid = u32::try_from(pid.as_raw()).ok();
            s.started = Some(since_boot());
        });
        let end = self.follow(pid, exit).await;
        drain(output).await;
        self.update(|s| s.pid = None);
        end
    }

    /// While the process runs: probe readiness, watch for its exit and for a stop.
    async fn follow(&mut self, pid: Pid, mut exit: oneshot::Receiver<ExitStatus>) -> RunEnd {
        let readiness = self.spec.readiness.clone();
        match &readiness {
            None => self.set_ready(true, format!("running (pid {pid})")),
            Some(_) => {
                self.set_state(ServiceState::Running);
                self.conditions
                    .set(&self.spec.name, false, "started, not ready yet");
            }
        }
        let mut delay = Duration::ZERO;
        let mut stop = self.stop.clone();
        loop {
            let probe = probe_after(readiness.as_ref(), delay);
            tokio::select! {
                status = &mut exit => return RunEnd::Exited(lost_exit(status)),
                _ = stop_requested(&mut stop) => {
                    self.terminate(pid, exit).await;
                    return RunEnd::Stopped;
                }
                result = probe => {
                    let ready = result.is_ok();
                    match result {
                        Ok(None) => self.set_ready(true, format!("ready (pid {pid})")),
                        Ok(Some(note)) => self.set_ready(true, format!("ready (pid {pid}); {note}")),
                        Err(reason) => self.set_ready(false, format!("not ready: {reason}")),
                    }
                    delay = readiness.as_ref().map_or(Duration::MAX, |r| match ready {
                        true => r.steady,
                        false => r.interval,
                    });
                }
            }
        }
    }

    /// Stop signal, then after the grace period SIGKILL to the whole process group.
    async fn terminate(&mut self, pid: Pid, mut exit: oneshot::Receiver<ExitStatus>) {
        self.set_state(ServiceState::Stopping);
        let policy = self.spec.stop;
        // ESRCH: it exited already, and the exit is on its way through the reaper.
        let _ = kill(pid, policy.signal);
        let status = match tokio::time::timeout(policy.grace, &mut exit).await {
            Ok(status) => Some(lost_exit(status)),
            Err(_) => {
                tracing::warn!(
                    "{}: still running {:?} after {}, killing it",
                    self.spec.name,
                    policy.grace,
                    policy.signal
                );
                let _ = killpg(pid, Signal::SIGKILL);
                tokio::time::timeout(KILL_WAIT, exit)
                    .await
                    .ok()
                    .map(lost_exit)
            }
        };
        // Whatever else the service left in its group goes with it.
        let _ = killpg(pid, Signal::SIGKILL);
        if let Some(status) = status {
            self.update(|s| {
                s.last_exit = Some(status.into());
                s.exited = Some(since_boot());
            });
        }
    }

    fn set_ready(&self, ready: bool, reason: String) {
        let state = if ready {
            ServiceState::Ready
        } else {
            ServiceState::Running
        };
        let changed = self.read(|s| s.state != state);
        // A ready service's note (what its probe adds to "ready") is worth a line when
        // it appears, changes or clears; the same reason again each probe is not.
        let noted = ready
            && (self.conditions.get(&self.spec.name))
                .is_some_and(|c| c.value && c.reason != reason);
        if changed || noted {
            tracing::info!("{}: {reason}", self.spec.name);
            self.log.push(Stream::Agent, &reason);
        }
        if changed {
            self.set_state(state);
        }
        self.conditions.set(&self.spec.name, ready, reason);
    }

    /// `in_a_row`: exits without a healthy run of `reset_after` in between. Once the
    /// back-off has reached its cap the service is crash-looping, and the reason (the
    /// condition's and the log's) says so at warning level.
    fn note_exit(&self, status: ExitStatus, delay: Duration, in_a_row: u32) {
        let last = LastExit::from(status);
        let reason = if delay >= self.spec.restart.cap {
            format!(
                "crash-looping: exited ({last}), {in_a_row} exits in a row; back-off at its \
                 cap, restarting in {delay:?}"
            )
        } else {
            format!("exited ({last}), restarting in {delay:?}")
        };
        match delay >= self.spec.restart.cap {
            true => tracing::warn!("{}: {reason}", self.spec.name),
            false => tracing::info!("{}: {reason}", self.spec.name),
        }
        self.log.push(Stream::Agent, &reason);
        self.conditions.set(&self.spec.name, false, reason);
        self.update(|s| {
            s.last_exit = Some(last);
            s.exited = Some(since_boot());
        });
        self.set_state(ServiceState::Backoff {
            until: since_boot() + delay,
        });
    }

    /// Returns false if a stop arrived first.
    async fn sleep_unless_stopped(&mut self, delay: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = stop_requested(&mut self.stop) => false,
        }
    }

    fn fail(&self, reason: String) {
        tracing::error!("{}: {reason}", self.spec.name);
        self.log.push(Stream::Agent, &reason);
        self.conditions.set(&self.spec.name, false, reason.clone());
        self.set_state(ServiceState::Failed { reason });
    }

    fn stopped(&self) {
        self.log.push(Stream::Agent, "stopped");
        self.conditions.set(&self.spec.name, false, "stopped");
        self.set_state(ServiceState::Stopped);
    }

    fn set_state(&self, state: ServiceState) {
        self.update(|s| {
            if s.state != state {
                s.state = state;
                s.since = since_boot();
            }
        });
    }

    fn update(&self, change: impl FnOnce(&mut ServiceStatus)) {
        change(&mut self.status.lock().unwrap_or_else(PoisonError::into_inner));
    }

    fn read<T>(&self, look: impl FnOnce(&ServiceStatus) -> T) -> T {
        look(&self.status.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// One readiness attempt after `delay`; never completes without a probe.
async fn probe_after(readiness: Option<&Readiness>, delay: Duration) -> ProbeResult {
    let Some(readiness) = readiness else {
        return std::future::pending().await;
    };
    tokio::time::sleep(delay).await;
    match tokio::time::timeout(readiness.timeout, readiness.probe.check()).await {
        Ok(result) => result,
        Err(_) => Err(format!("probe timed out after {:?}", readiness.timeout)),
    }
}

/// The reaper dropped the watch without an exit: only possible if the watcher is gone,
/// which means the agent is going down; report it as a failed run.
fn lost_exit(status: Result<ExitStatus, oneshot::error::RecvError>) -> ExitStatus {
    status.unwrap_or(ExitStatus::Exited(-1))
}

/// Completes once a stop is requested (or the supervisor is gone).
async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send: drop it here, not across an await.
    let _ = stop.wait_for(|stop| *stop).await.map(drop);
}

async fn drain(output: Vec<JoinHandle<()>>) {
    let all = async {
        for task in output {
            let _ = task.await;
        }
    };
    let _ = tokio::time::timeout(OUTPUT_DRAIN, all).await;
}
