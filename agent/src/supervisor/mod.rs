//! The service supervisor: runs the node's services (containerd, later etcd and the
//! Kubernetes components) from declarative [`ServiceSpec`]s.
//!
//! Each service is its own tokio task ([`service`]): it waits until its dependency
//! conditions are true, spawns the binary in its own session with stdout and stderr
//! piped into the service's [`LogBuffer`](crate::logbuf::LogBuffer), sets the
//! condition named after the service from its readiness probe, and on exit restarts it
//! after an exponential backoff. Exits are learnt from the [`Reaper`](crate::reaper)
//! (PID 1 owns `waitpid(-1)`), never by waiting on the child, through a
//! [`ChildWatcher`] that spawns and registers the pid under one lock.
//!
//! [`Supervisor`] is the cheap, cloneable handle the rest of the agent holds: start
//! services, read their [`ServiceStatus`], signal one (the debug service's kill), and
//! stop them all in reverse dependency order before the node powers off.

mod service;
mod spawn;
mod spec;
mod status;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use spawn::ChildWatcher;
pub use spec::{
    probe_fn, Probe, ProbeFuture, ProbeResult, Readiness, RestartPolicy, ServiceSpec, StopPolicy,
    DEFAULT_PATH,
};
pub use status::{LastExit, ServiceState, ServiceStatus};

use crate::conditions::{since_boot, Conditions};
use crate::logbuf::Logs;
use service::Service;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SupervisorError {
    #[error("a service has an empty name")]
    EmptyName,
    #[error("service {0} is defined twice")]
    Duplicate(String),
    #[error("service {0}: binary {1} is not an absolute path")]
    RelativeBinary(String, String),
    #[error("services {0:?} depend on each other in a cycle")]
    Cycle(Vec<String>),
}

/// Why a signal was not delivered to a service (the debug service's SignalComponent
/// reports it as it is).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignalError {
    #[error("unknown service {0}")]
    Unknown(String),
    #[error("service {0} has no running process")]
    NotRunning(String),
    #[error("kill({pid}, {signal}) for service {service} failed")]
    Kill {
        service: String,
        pid: u32,
        signal: Signal,
        #[source]
        errno: Errno,
    },
}

/// Handle to the supervisor; clones share it.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

struct Inner {
    watcher: Arc<dyn ChildWatcher>,
    conditions: Conditions,
    logs: Logs,
    /// In start (dependency) order.
    services: Mutex<Vec<Entry>>,
}

struct Entry {
    name: String,
    /// Dependencies that are services of this supervisor.
    service_deps: Vec<String>,
    status: Arc<Mutex<ServiceStatus>>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Supervisor")
            .field("services", &self.status())
            .finish_non_exhaustive()
    }
}

impl Supervisor {
    /// A supervisor with no services. `watcher` spawns and claims exits (PID 1 passes
    /// its `Mutex<Reaper>`).
    pub fn new(watcher: Arc<dyn ChildWatcher>, conditions: Conditions, logs: Logs) -> Self {
        Self {
            inner: Arc::new(Inner {
                watcher,
                conditions,
                logs,
                services: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Checks `specs` and starts a task per service. Must run inside the tokio runtime.
    /// Returns once the tasks exist; each waits for its own dependencies.
    pub fn start(&self, specs: Vec<ServiceSpec>) -> Result<(), SupervisorError> {
        let mut services = self.lock();
        let known: BTreeSet<String> = services.iter().map(|e| e.name.clone()).collect();
        let specs = order(specs, &known)?;
        let names: BTreeSet<String> = known
            .into_iter()
            .chain(specs.iter().map(|s| s.name.clone()))
            .collect();
        for spec in specs {
            services.push(self.spawn_task(spec, &names));
        }
        Ok(())
    }

    fn spawn_task(&self, spec: ServiceSpec, services: &BTreeSet<String>) -> Entry {
        let status = Arc::new(Mutex::new(ServiceStatus {
            name: spec.name.clone(),
            state: ServiceState::Starting,
            since: since_boot(),
            pid: None,
            restarts: 0,
            last_exit: None,
            started: None,
            exited: None,
        }));
        let (stop, stop_receiver) = watch::channel(false);
        let entry = Entry {
            name: spec.name.clone(),
            service_deps: (spec.dependencies.iter())
                .filter(|dep| services.contains(*dep))
                .cloned()
                .collect(),
            status: status.clone(),
            stop,
            task: None,
        };
        let service = Service {
            log: self.inner.logs.buffer(&spec.name),
            spec,
            conditions: self.inner.conditions.clone(),
            watcher: self.inner.watcher.clone(),
            status,
            stop: stop_receiver,
        };
        Entry {
            task: Some(tokio::spawn(service.run())),
            ..entry
        }
    }

    /// Every service's status, in start order.
    pub fn status(&self) -> Vec<ServiceStatus> {
        self.lock().iter().map(|e| read(&e.status)).collect()
    }

    /// One service's status, or `None` for an unknown name.
    pub fn service(&self, name: &str) -> Option<ServiceStatus> {
        self.lock()
            .iter()
            .find(|e| e.name == name)
            .map(|e| read(&e.status))
    }

    /// Sends `signal` to the service's main process and returns its pid. The service
    /// then follows its restart policy like after any exit.
    pub fn signal(&self, name: &str, signal: Signal) -> Result<u32, SignalError> {
        let status = self
            .service(name)
            .ok_or_else(|| SignalError::Unknown(name.to_owned()))?;
        let pid = status
            .pid
            .ok_or_else(|| SignalError::NotRunning(name.to_owned()))?;
        let raw = i32::try_from(pid).map_err(|_| SignalError::NotRunning(name.to_owned()))?;
        kill(Pid::from_raw(raw), signal).map_err(|errno| match errno {
            // Exited between the status read and kill(2): as good as not running.
            Errno::ESRCH => SignalError::NotRunning(name.to_owned()),
            errno => SignalError::Kill {
                service: name.to_owned(),
                pid,
                signal,
                errno,
            },
        })?;
        tracing::info!("sent {signal} to {name} (pid {pid})");
        Ok(pid)
    }

    /// Stops every service: dependents before what they depend on, services of the
    /// same depth together; each gets its stop signal, then SIGKILL after its grace.
    /// Returns when every service task has ended.
    pub async fn stop_all(&self) {
        let levels = {
            let mut services = self.lock();
            stop_levels(&mut services)
        };
        for level in levels.into_iter().rev() {
            for (stop, _) in &level {
                let _ = stop.send(true);
            }
            for (_, task) in level {
                let _ = task.await;
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.inner
            .services
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

type StopLevel = Vec<(watch::Sender<bool>, JoinHandle<()>)>;

/// Groups the running tasks by dependency depth (0 = depends on no service).
fn stop_levels(services: &mut [Entry]) -> Vec<StopLevel> {
    let mut depth: BTreeMap<String, usize> = BTreeMap::new();
    let mut levels: Vec<StopLevel> = Vec::new();
    // Start order is a topological order, so dependencies come first.
    for entry in services.iter_mut() {
        let level = (entry.service_deps.iter())
            .filter_map(|dep| depth.get(dep).map(|d| d + 1))
            .max()
            .unwrap_or(0);
        depth.insert(entry.name.clone(), level);
        if let Some(task) = entry.task.take() {
            levels.resize_with(levels.len().max(level + 1), Vec::new);
            levels[level].push((entry.stop.clone(), task));
        }
    }
    levels
}

/// Validates `specs` and sorts them so every service comes after the services it
/// depends on (Kahn's algorithm, keeping the given order among independent ones).
fn order(
    specs: Vec<ServiceSpec>,
    started: &BTreeSet<String>,
) -> Result<Vec<ServiceSpec>, SupervisorError> {
    let mut names = started.clone();
    for spec in &specs {
        if spec.name.is_empty() {
            return Err(SupervisorError::EmptyName);
        }
        if !spec.binary.is_absolute() {
            let binary = spec.binary.display().to_string();
            return Err(SupervisorError::RelativeBinary(spec.name.clone(), binary));
        }
        if !names.insert(spec.name.clone()) {
            return Err(SupervisorError::Duplicate(spec.name.clone()));
        }
    }
    let new: BTreeSet<String> = specs.iter().map(|s| s.name.clone()).collect();
    let mut placed: BTreeSet<String> = BTreeSet::new();
    let mut pending = specs;
    let mut ordered = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        let ready = |spec: &ServiceSpec| {
            (spec.dependencies.iter()).all(|dep| !new.contains(dep) || placed.contains(dep))
        };
        let Some(index) = pending.iter().position(ready) else {
            let cycle = pending.into_iter().map(|s| s.name).collect();
            return Err(SupervisorError::Cycle(cycle));
        };
        let spec = pending.remove(index);
        placed.insert(spec.name.clone());
        ordered.push(spec);
    }
    Ok(ordered)
}

fn read(status: &Mutex<ServiceStatus>) -> ServiceStatus {
    status
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}
