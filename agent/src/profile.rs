//! The boot profile (debug images only): `cairn.profile=boot` on the kernel command
//! line makes this boot record where its time goes, for `cairn-bench profile-boot`
//! (docs/architecture.md "Where a boot's time goes").
//!
//! - every service runs with `GODEBUG=inittrace=1`: the Go runtime writes one line per
//!   package initialiser (`init PKG @T ms, C ms clock, ...`) to the service's log;
//! - kube-apiserver writes a CPU profile from its start until it turns ready (the
//!   multiplexer's `CAIRN_CPU_PROFILE`; the agent sends SIGUSR2 when the readiness
//!   probe passes) to [`CPU_PROFILE`] on the data disk, where the host reads it after
//!   the node stops;
//! - `/readyz?verbose` is polled every [`POLL`] until it passes, and each check's first
//!   pass is logged (`profile: readyz CHECK ok at T s`), so the post-start hooks are
//!   timed from inside, with no host round trip in the figures.
//!
//! It changes no behaviour of the node beyond that: the same services, arguments and
//! order.

use std::collections::BTreeSet;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::conditions::Conditions;
use crate::kubernetes::{apiserver, client::LOCAL_APISERVER, probe};
use crate::supervisor::{ServiceSpec, Supervisor};
use crate::Paths;

pub use cairn_api::names::profile::{CPU_PROFILE, PARAMETER};
/// How often `/readyz?verbose` is asked while the apiserver starts.
const POLL: Duration = Duration::from_millis(250);

/// Whether this boot was asked to profile itself.
pub fn requested(paths: &Paths) -> bool {
    std::fs::read_to_string(paths.resolve("/proc/cmdline"))
        .map(|cmdline| in_cmdline(&cmdline))
        .unwrap_or(false)
}

fn in_cmdline(cmdline: &str) -> bool {
    cmdline.split_whitespace().any(|word| word == PARAMETER)
}

/// The services as a profiled boot runs them.
pub fn instrument(paths: &Paths, specs: Vec<ServiceSpec>) -> Vec<ServiceSpec> {
    let dir = paths.resolve(CPU_PROFILE);
    if let Some(dir) = dir.parent() {
        if let Err(err) = std::fs::create_dir_all(dir) {
            tracing::warn!("profile: cannot create {}: {err}", dir.display());
        }
    }
    specs
        .into_iter()
        .map(|spec| {
            let spec = spec.env("GODEBUG", "inittrace=1");
            match spec.name == apiserver::SERVICE {
                true => spec.env("CAIRN_CPU_PROFILE", CPU_PROFILE),
                false => spec,
            }
        })
        .collect()
}

/// Times the apiserver's readiness checks and ends its CPU profile when it is ready.
pub fn spawn(paths: &Paths, conditions: &Conditions, supervisor: &Supervisor) {
    let pki = paths.resolve(crate::kubernetes::PKI_DIR);
    let conditions = conditions.clone();
    let supervisor = supervisor.clone();
    tokio::spawn(async move {
        time_readyz(&pki).await;
        conditions.wait_true(apiserver::SERVICE).await;
        match supervisor.signal(apiserver::SERVICE, Signal::SIGUSR2) {
            Ok(pid) => {
                tracing::info!("profile: asked kube-apiserver (pid {pid}) to end its CPU profile")
            }
            Err(err) => tracing::warn!("profile: cannot end kube-apiserver's CPU profile: {err}"),
        }
    });
}

/// Polls `/readyz?verbose` until it passes; logs each check's first pass with the
/// seconds since boot (the clock the conditions use).
async fn time_readyz(pki: &std::path::Path) {
    let client = match probe::agent_client(pki, LOCAL_APISERVER) {
        Ok(client) => client,
        Err(err) => {
            tracing::warn!("profile: no apiserver client, readyz not timed: {err}");
            return;
        }
    };
    let mut passed = BTreeSet::new();
    loop {
        if let Some(body) = probe::body_any_status(&client, "/readyz?verbose").await {
            let now = crate::conditions::since_boot().as_secs_f64();
            for check in passing(&body) {
                if passed.insert(check.to_owned()) {
                    tracing::info!("profile: readyz {check} ok at {now:.2} s");
                }
            }
            if body.contains("readyz check passed") {
                return;
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The checks a `/readyz?verbose` body lists as passing (`[+]NAME ok`).
fn passing(body: &str) -> impl Iterator<Item = &str> {
    body.lines().filter_map(|line| {
        let rest = line.trim().strip_prefix("[+]")?;
        rest.strip_suffix(" ok")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_parameter_asks_for_a_profile() {
        assert!(in_cmdline("console=ttyS0 cairn.profile=boot quiet\n"));
        assert!(!in_cmdline("console=ttyS0 quiet\n"));
        assert!(!in_cmdline("cairn.profile=boots\n"));
        assert!(!in_cmdline("xcairn.profile=boot\n"));
    }

    #[test]
    fn passing_checks_are_read_from_a_verbose_readyz_body() {
        let body = "[+]ping ok\n[+]etcd ok\n[-]poststarthook/rbac/bootstrap-roles failed: reason withheld\n[+]poststarthook/start-apiextensions-informers ok\nreadyz check failed\n";
        assert_eq!(
            passing(body).collect::<Vec<_>>(),
            [
                "ping",
                "etcd",
                "poststarthook/start-apiextensions-informers"
            ]
        );
    }

    #[test]
    fn a_profiled_boot_runs_the_same_services_with_inittrace_and_the_apiserver_profile() {
        let root = tempfile::tempdir().unwrap();
        let paths = Paths::under_root(root.path());
        let specs = vec![
            ServiceSpec::new("etcd", "/usr/bin/kube").arg("etcd"),
            ServiceSpec::new(apiserver::SERVICE, "/usr/bin/kube").arg("kube-apiserver"),
        ];
        let profiled = instrument(&paths, specs);
        assert_eq!(profiled[0].args, ["etcd"]);
        assert_eq!(
            profiled[0].env,
            [("GODEBUG".to_owned(), "inittrace=1".to_owned())]
        );
        assert_eq!(
            profiled[1].env,
            [
                ("GODEBUG".to_owned(), "inittrace=1".to_owned()),
                ("CAIRN_CPU_PROFILE".to_owned(), CPU_PROFILE.to_owned()),
            ]
        );
        assert!(paths.resolve(CPU_PROFILE).parent().unwrap().is_dir());
    }
}
