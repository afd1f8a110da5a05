//! What a service is: the declarative [`ServiceSpec`] other modules build (containerd,
//! later etcd and the Kubernetes components) and hand to the supervisor.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;

/// `PATH` given to a service whose spec sets none: services get a clean environment,
/// not PID 1's (which holds whatever the kernel command line passed).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One supervised service. Build it with [`ServiceSpec::new`] and the `with_`/`arg`
/// methods:
///
/// ```
/// # use cairn_agent::supervisor::{ServiceSpec, Readiness, probe_fn};
/// let spec = ServiceSpec::new("containerd", "/usr/bin/containerd")
///     .args(["--config", "/etc/containerd/config.toml"])
///     .env("TMPDIR", "/run/containerd/tmp")
///     .depends_on("network")
///     .readiness(Readiness::new(probe_fn(|| async { Ok(()) })));
/// assert_eq!(spec.name, "containerd");
/// ```
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// Service name: names its log buffer (its component on the wire) and its condition.
    pub name: String,
    /// Absolute path of the executable.
    pub binary: PathBuf,
    /// Arguments after argv[0] (argv[0] is the binary path).
    pub args: Vec<String>,
    /// The whole environment, in order; `PATH` defaults to [`DEFAULT_PATH`].
    pub env: Vec<(String, String)>,
    /// Working directory; `/` when `None`.
    pub working_dir: Option<PathBuf>,
    /// Conditions that must be true before the service starts (other services' names,
    /// or agent conditions such as `network`).
    pub dependencies: Vec<String>,
    /// How readiness is learnt; `None` = ready once started.
    pub readiness: Option<Readiness>,
    pub restart: RestartPolicy,
    pub stop: StopPolicy,
    /// The cgroup2 directory each run of the service joins before exec (created if
    /// missing); `None` = the agent's own cgroup.
    pub cgroup: Option<PathBuf>,
}

impl ServiceSpec {
    pub fn new(name: impl Into<String>, binary: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            binary: binary.into(),
            args: Vec::new(),
            env: Vec::new(),
            working_dir: None,
            dependencies: Vec::new(),
            readiness: None,
            restart: RestartPolicy::default(),
            stop: StopPolicy::default(),
            cgroup: None,
        }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn working_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.working_dir = Some(dir.into());
        self
    }

    pub fn depends_on(mut self, condition: impl Into<String>) -> Self {
        self.dependencies.push(condition.into());
        self
    }

    pub fn readiness(mut self, readiness: Readiness) -> Self {
        self.readiness = Some(readiness);
        self
    }

    pub fn restart(mut self, restart: RestartPolicy) -> Self {
        self.restart = restart;
        self
    }

    pub fn stop(mut self, stop: StopPolicy) -> Self {
        self.stop = stop;
        self
    }
}

/// What a probe finds: `Ok` when ready, with an optional note for the condition's
/// reason (something an operator should see that does not make the service unready,
/// e.g. an upstream it forwards to that does not answer); `Err(reason)` when not ready.
pub type ProbeResult = Result<Option<String>, String>;

/// The future a probe returns.
pub type ProbeFuture = Pin<Box<dyn Future<Output = ProbeResult> + Send>>;

/// A readiness check (e.g. a version call over containerd's socket). It runs in the
/// agent, so it must be cheap and must not log on every failure: the supervisor
/// reports state changes.
pub trait Probe: Send + Sync {
    fn check(&self) -> ProbeFuture;
}

struct FnProbe<F>(F);

impl<F, Fut> Probe for FnProbe<F>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    fn check(&self) -> ProbeFuture {
        let check = (self.0)();
        Box::pin(async move { check.await.map(|()| None) })
    }
}

/// A probe from an async closure: `probe_fn(|| async { ... })`; it passes with no note.
pub fn probe_fn<F, Fut>(check: F) -> Arc<dyn Probe>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    Arc::new(FnProbe(check))
}

/// When and how a readiness probe runs: every `interval` until the service is ready
/// (so boot moves on quickly), then every `steady` (a probe is a new connection, often a
/// TLS handshake, for the agent and the component alike: at one a second they cost an
/// idle node a tenth of a core under TCG), and every `interval` again after a failed
/// one. Each attempt is cut off after `timeout`. Probing continues after the first
/// success, so a service that stops answering turns its condition false; one that
/// exits is seen at once, by its exit.
#[derive(Clone)]
pub struct Readiness {
    pub probe: Arc<dyn Probe>,
    pub interval: Duration,
    pub steady: Duration,
    pub timeout: Duration,
}

impl Readiness {
    /// Probes every 100 ms until ready, then every 10 s (the kubelet's default probe
    /// period), 1 s per attempt.
    pub fn new(probe: Arc<dyn Probe>) -> Self {
        Self {
            probe,
            interval: Duration::from_millis(100),
            steady: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
        }
    }

    /// How often to probe while the service is not ready.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// How often to probe while the service is ready.
    pub fn steady(mut self, steady: Duration) -> Self {
        self.steady = steady;
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl fmt::Debug for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Readiness")
            .field("interval", &self.interval)
            .field("steady", &self.steady)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Restart on every exit, after `initial * factor^n` (n = restarts since the service
/// last ran healthily for `reset_after`), at most `cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    pub initial: Duration,
    pub factor: u32,
    pub cap: Duration,
    pub reset_after: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(250),
            factor: 2,
            cap: Duration::from_secs(30),
            reset_after: Duration::from_secs(60),
        }
    }
}

impl RestartPolicy {
    /// The delay before restart number `attempt` (0-based since the last reset).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = self.factor.max(1);
        let mut delay = self.initial;
        for _ in 0..attempt {
            delay = delay.saturating_mul(factor);
            if delay >= self.cap {
                return self.cap;
            }
        }
        delay.min(self.cap)
    }
}

/// How a service is stopped: `signal`, then SIGKILL to its process group after `grace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopPolicy {
    pub signal: Signal,
    pub grace: Duration,
}

impl Default for StopPolicy {
    fn default() -> Self {
        Self {
            signal: Signal::SIGTERM,
            grace: Duration::from_secs(10),
        }
    }
}
