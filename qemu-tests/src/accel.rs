//! Choosing the accelerator: `auto` uses KVM only when a bounded probe proves it works.
//!
//! Nested KVM on the project's hosts accepts the VM and then hangs in the firmware
//! ("Booting from ROM"), so opening `/dev/kvm` proves nothing. The probe boots the kernel
//! alone under KVM (no initrd, `console=ttyS0 panic=-1`, reboots end QEMU) and requires
//! `Linux version` on the serial console within a few seconds; the kernel then panics for
//! want of a root fs and QEMU exits. Anything else means TCG. The probe's QEMU is killed
//! however it ends. Its verdict is kept for the process and, when it is not a failure of
//! the probe itself, for the host: in `<cache>/accel-probe.json`, keyed by the QEMU
//! version and the host kernel, so `auto` pays the probe once per host, not per start
//! (delete the file to probe again).

use std::fmt;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::command::{Accel, QemuCommand};
use crate::console::{self, ConsoleReader};
use crate::node::error_chain;
use crate::process::{QemuProcess, SpawnMode, POLL_INTERVAL};

/// How long the probe kernel may take to print its banner under KVM.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// The line a booting kernel prints first.
const BANNER: &str = "Linux version";

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccelChoice {
    /// KVM if the probe passes, else TCG.
    Auto,
    /// KVM without probing.
    Kvm,
    /// TCG without probing.
    Tcg,
}

impl FromStr for AccelChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(AccelChoice::Auto),
            "kvm" => Ok(AccelChoice::Kvm),
            "tcg" => Ok(AccelChoice::Tcg),
            other => Err(format!(
                "unknown accel {other:?} (expected auto, kvm or tcg)"
            )),
        }
    }
}

/// Why the probe chose what it chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeReason {
    /// The kernel printed its banner under KVM.
    KvmBooted,
    /// `/dev/kvm` cannot be opened.
    NoKvm(String),
    /// The kernel printed nothing under KVM within the timeout.
    KvmSilent(Duration),
    /// QEMU ended under KVM before the kernel printed anything.
    QemuExited(String),
    /// The probe itself could not run.
    Failed(String),
    /// An earlier probe on this host, as kept in `path`.
    Cached { reason: String, path: String },
}

impl fmt::Display for ProbeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeReason::KvmBooted => write!(f, "the kernel printed {BANNER:?} under kvm"),
            ProbeReason::NoKvm(why) => write!(f, "/dev/kvm is unusable: {why}"),
            ProbeReason::KvmSilent(after) => write!(
                f,
                "the kernel printed nothing under kvm within {after:?} (nested kvm hangs in the firmware)"
            ),
            ProbeReason::QemuExited(why) => write!(f, "qemu failed under kvm: {why}"),
            ProbeReason::Failed(why) => write!(f, "the kvm probe could not run: {why}"),
            ProbeReason::Cached { reason, path } => {
                write!(f, "{reason} (probed earlier on this host, kept in {path})")
            }
        }
    }
}

/// The probe's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The accelerator to use.
    pub accel: Accel,
    /// Why.
    pub reason: ProbeReason,
    /// How long the probe took.
    pub elapsed: Duration,
}

/// Resolves `choice`, probing (once per process) with `kernel` for `auto`.
pub fn resolve(choice: AccelChoice, kernel: &Path) -> Accel {
    match choice {
        AccelChoice::Kvm => Accel::Kvm,
        AccelChoice::Tcg => Accel::Tcg,
        AccelChoice::Auto => probe_cached(kernel).accel,
    }
}

/// [`probe`] with [`PROBE_TIMEOUT`], run at most once per process and once per host
/// (see the module docs).
pub fn probe_cached(kernel: &Path) -> &'static Probe {
    static PROBE: OnceLock<Probe> = OnceLock::new();
    PROBE.get_or_init(|| {
        let cache = HostCache {
            path: host_cache_path(),
            key: host_key(),
        };
        if let Some(kept) = cache.read() {
            return kept;
        }
        let probe = probe(kernel, PROBE_TIMEOUT);
        cache.write(&probe);
        probe
    })
}

/// Where a host's probe verdict is kept: the cache directory the Makefile uses.
fn host_cache_path() -> PathBuf {
    let cache = std::env::var_os("CAIRN_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
            PathBuf::from(home).join(".cache/cairn")
        });
    cache.join("accel-probe.json")
}

/// What a verdict depends on: QEMU's version and the host kernel's release; `None` when
/// either cannot be told (then nothing is kept).
fn host_key() -> Option<String> {
    let qemu = std::process::Command::new(crate::command::DEFAULT_QEMU)
        .arg("--version")
        .output()
        .ok()?;
    let version = String::from_utf8_lossy(&qemu.stdout);
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    Some(format!(
        "{} / linux {}",
        version.lines().next()?.trim(),
        release.trim()
    ))
}

/// The host's kept verdict, one JSON object.
struct HostCache {
    path: PathBuf,
    key: Option<String>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Kept {
    key: String,
    accel: String,
    reason: String,
}

impl HostCache {
    fn read(&self) -> Option<Probe> {
        let key = self.key.as_ref()?;
        let kept: Kept = serde_json::from_slice(&std::fs::read(&self.path).ok()?).ok()?;
        let accel = match kept.accel.as_str() {
            "kvm" => Accel::Kvm,
            "tcg" => Accel::Tcg,
            _ => return None,
        };
        (kept.key == *key).then(|| Probe {
            accel,
            reason: ProbeReason::Cached {
                reason: kept.reason,
                path: self.path.display().to_string(),
            },
            elapsed: Duration::ZERO,
        })
    }

    /// Keeps `probe` unless the probe itself failed (that says nothing of the host).
    fn write(&self, probe: &Probe) {
        let Some(key) = &self.key else { return };
        if matches!(
            probe.reason,
            ProbeReason::Failed(_) | ProbeReason::QemuExited(_) | ProbeReason::Cached { .. }
        ) {
            return;
        }
        let kept = Kept {
            key: key.clone(),
            accel: probe.accel.to_string(),
            reason: probe.reason.to_string(),
        };
        let json = serde_json::to_vec_pretty(&kept).expect("a kept probe serialises");
        let written = self
            .path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&self.path, json));
        if let Err(err) = written {
            tracing::debug!(path = %self.path.display(), error = %err, "cannot keep the accel probe");
        }
    }
}

/// Boots `kernel` alone under KVM and checks that it prints its banner within `timeout`.
pub fn probe(kernel: &Path, timeout: Duration) -> Probe {
    let started = Instant::now();
    let (accel, reason) = match OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        Err(err) => (Accel::Tcg, ProbeReason::NoKvm(err.to_string())),
        Ok(_) => match boot_under_kvm(kernel, timeout) {
            Ok(ProbeReason::KvmBooted) => (Accel::Kvm, ProbeReason::KvmBooted),
            Ok(reason) => (Accel::Tcg, reason),
            Err(why) => (Accel::Tcg, ProbeReason::Failed(why)),
        },
    };
    let probe = Probe {
        accel,
        reason,
        elapsed: started.elapsed(),
    };
    tracing::debug!(accel = %probe.accel, reason = %probe.reason, elapsed = ?probe.elapsed, "accel probe");
    probe
}

fn boot_under_kvm(kernel: &Path, timeout: Duration) -> Result<ProbeReason, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("cannot create a temporary dir: {e}"))?;
    let console_log = dir.path().join("console.log");
    let mut qemu = QemuCommand::new(kernel, &console_log, Accel::Kvm);
    qemu.cmdline = "console=ttyS0 panic=-1".to_owned();
    qemu.memory_mib = 256;
    qemu.cpus = 1;
    // The probe only needs the kernel to print; no NIC to initialise.
    qemu.network = false;
    qemu.rng = false;
    let stderr_log = dir.path().join("qemu.log");
    let mut process =
        QemuProcess::spawn(&qemu, &stderr_log, SpawnMode::Attached).map_err(|e| error_chain(&e))?;
    let verdict = watch_for_banner(&mut process, &console_log, &stderr_log, timeout);
    // Whatever happened, no probe QEMU survives (the kernel may still be panicking).
    process.kill().map_err(|e| error_chain(&e))?;
    verdict
}

fn watch_for_banner(
    process: &mut QemuProcess,
    console_log: &Path,
    stderr_log: &Path,
    timeout: Duration,
) -> Result<ProbeReason, String> {
    let deadline = Instant::now() + timeout;
    let mut reader = ConsoleReader::new(console_log);
    loop {
        let status = process.try_wait().map_err(|e| error_chain(&e))?;
        let mut lines = reader.new_lines().map_err(|e| error_chain(&e))?;
        if status.is_some() {
            lines.extend(reader.take_partial());
        }
        if lines.iter().any(|line| line.contains(BANNER)) {
            return Ok(ProbeReason::KvmBooted);
        }
        if let Some(status) = status {
            let stderr = console::tail(stderr_log, 3).replace('\n', " / ");
            return Ok(ProbeReason::QemuExited(format!("{status}: {stderr}")));
        }
        if Instant::now() >= deadline {
            return Ok(ProbeReason::KvmSilent(timeout));
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse() {
        assert_eq!("auto".parse(), Ok(AccelChoice::Auto));
        assert_eq!("kvm".parse(), Ok(AccelChoice::Kvm));
        assert_eq!("tcg".parse(), Ok(AccelChoice::Tcg));
        assert!("hvf".parse::<AccelChoice>().is_err());
    }

    #[test]
    fn explicit_choices_do_not_probe() {
        let missing = Path::new("/nonexistent/vmlinuz");
        assert_eq!(resolve(AccelChoice::Tcg, missing), Accel::Tcg);
        assert_eq!(resolve(AccelChoice::Kvm, missing), Accel::Kvm);
    }

    fn verdict(accel: Accel, reason: ProbeReason) -> Probe {
        Probe {
            accel,
            reason,
            elapsed: Duration::from_secs(5),
        }
    }

    #[test]
    fn a_hosts_verdict_is_kept_for_the_same_qemu_and_kernel_only() {
        let dir = tempfile::tempdir().unwrap();
        let cache = |key: &str| HostCache {
            path: dir.path().join("cache/accel-probe.json"),
            key: Some(key.to_owned()),
        };
        let here = cache("QEMU 7.2 / linux 6.18");
        assert!(here.read().is_none(), "nothing kept yet");
        let silent = ProbeReason::KvmSilent(Duration::from_secs(5));
        here.write(&verdict(Accel::Tcg, silent.clone()));
        let kept = here.read().expect("kept");
        assert_eq!(kept.accel, Accel::Tcg);
        assert!(kept.reason.to_string().starts_with(&silent.to_string()));
        assert!(kept.reason.to_string().contains("probed earlier"));
        // Another QEMU or kernel probes again.
        assert!(cache("QEMU 8.0 / linux 6.18").read().is_none());
        assert!(HostCache { key: None, ..here }.read().is_none());
    }

    #[test]
    fn a_probe_that_could_not_run_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let cache = HostCache {
            path: dir.path().join("accel-probe.json"),
            key: Some("k".to_owned()),
        };
        cache.write(&verdict(Accel::Tcg, ProbeReason::Failed("no tmp".into())));
        cache.write(&verdict(Accel::Tcg, ProbeReason::QemuExited("oom".into())));
        assert!(cache.read().is_none());
        cache.write(&verdict(Accel::Kvm, ProbeReason::KvmBooted));
        assert_eq!(cache.read().map(|p| p.accel), Some(Accel::Kvm));
    }
}
