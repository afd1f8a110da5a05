//! Recovery: how long a node takes to be Ready again after each way it can go down —
//! every supervised component SIGKILLed in turn (through the debug service), a clean
//! reboot (the debug service's Shutdown), and a hard power-off (QEMU killed, the same
//! state directory and data disk booted again). Times are on the host's clock, from
//! the fault to the agent's `node-ready` condition being true in the boot that
//! follows (a Ready condition posted before a reboot does not count, see the agent's
//! `node_ready`).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cairn_api::v1::{
    GetBuildInfoRequest, ListComponentsRequest, ShutdownRequest, SignalComponentRequest,
    WaitConditionRequest,
};
use cairn_api::Client;
use cairn_qemu::{ForwardRequest, Node, NodeConfig};
use serde::{Deserialize, Serialize};

use cairn_api::names::service;

use crate::error::Error;
use crate::node::{self, Bench, Booted};
use crate::report::{self, Machine};

pub const NAME: &str = "recovery";
/// In the order the fault test kills them.
const COMPONENTS: [&str; 8] = [
    service::ETCD,
    service::KUBE_APISERVER,
    service::CONTROLLER_MANAGER,
    service::SCHEDULER,
    service::KUBE_PROXY,
    service::CLUSTER_DNS,
    service::CONTAINERD,
    service::KUBELET,
];
const READY_TIMEOUT: Duration = Duration::from_secs(600);
/// Between two looks at what offers no wait (the component list, a rebooting node).
const POLL: Duration = Duration::from_millis(250);
/// How long one look at a rebooting node may take (a connection the user network
/// accepted for a guest that is not listening yet goes nowhere).
const LOOK_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    pub machine: Machine,
    /// Seconds from SIGKILL to the component and the node Ready again, per component.
    pub components: Vec<(String, f64)>,
    /// Seconds from SIGKILL to the component's own readiness, per component: for
    /// kube-apiserver, how long it takes to start on a node otherwise idle (empty in
    /// results from before 2026-12-08).
    #[serde(default)]
    pub components_ready: Vec<(String, f64)>,
    /// Seconds from the Shutdown call to node Ready in the next boot.
    pub clean_reboot_s: f64,
    /// Of which: until the new boot's debug service answered.
    pub clean_reboot_up_s: f64,
    /// Seconds from killing QEMU to node Ready after starting it again.
    pub power_off_s: f64,
}

pub fn run(bench: &Bench) -> Result<PathBuf, Error> {
    let accel = bench.single_accel()?;
    node::runtime()?.block_on(async {
        let mut booted = bench.boot(NAME, accel).await?;
        wait_true(&mut booted.client, "node-ready").await?;
        let mut components = Vec::new();
        let mut components_ready = Vec::new();
        for component in COMPONENTS {
            let (ready, took) = kill_and_recover(&mut booted.client, component).await?;
            eprintln!("cairn-bench: recovery: {component} ready {ready:.1}s, node {took:.1}s");
            components.push((component.to_owned(), took));
            components_ready.push((component.to_owned(), ready));
        }
        let (clean_reboot_s, clean_reboot_up_s) = clean_reboot(&mut booted).await?;
        let power_off_s = power_off(bench, &mut booted).await?;
        let results = Results {
            machine: Machine::describe(&accel.to_string()),
            components,
            components_ready,
            clean_reboot_s,
            clean_reboot_up_s,
            power_off_s,
        };
        report::write(&bench.results, NAME, &markdown(&results), &results)
    })
}

async fn wait_true(client: &mut Client, condition: &str) -> Result<(), Error> {
    let request = WaitConditionRequest {
        name: condition.to_owned(),
        timeout_ms: READY_TIMEOUT.as_millis() as u32,
    };
    let limit = READY_TIMEOUT + node::WAIT_MARGIN;
    node::call(NAME, "WaitCondition", limit, client.wait_condition(request)).await?;
    Ok(())
}

/// SIGKILL, then until the supervisor reports a new process ready, and until the node
/// is Ready: both in seconds from the SIGKILL.
async fn kill_and_recover(client: &mut Client, component: &str) -> Result<(f64, f64), Error> {
    let restarts = restart_count(client, component).await?;
    let started = Instant::now();
    let signal = SignalComponentRequest {
        component: component.to_owned(),
        signal: "SIGKILL".to_owned(),
    };
    node::call(
        NAME,
        "SignalComponent",
        node::CALL_TIMEOUT,
        client.signal_component(signal),
    )
    .await?;
    let deadline = started + READY_TIMEOUT;
    while restart_count(client, component).await? <= restarts {
        if Instant::now() >= deadline {
            return Err(Error::Unmeasurable(format!(
                "{component} was not restarted"
            )));
        }
        tokio::time::sleep(POLL).await;
    }
    wait_true(client, component).await?;
    let ready = started.elapsed().as_secs_f64();
    wait_true(client, "node-ready").await?;
    Ok((ready, started.elapsed().as_secs_f64()))
}

async fn restart_count(client: &mut Client, component: &str) -> Result<u32, Error> {
    let list = node::call(
        NAME,
        "ListComponents",
        node::CALL_TIMEOUT,
        client.list_components(ListComponentsRequest {}),
    )
    .await?;
    (list.components.iter())
        .find(|c| c.name == component)
        .map(|c| c.restart_count)
        .ok_or_else(|| Error::Unmeasurable(format!("no component {component}")))
}

/// Shutdown (reboot), then until a new boot ID answers, then until node Ready.
///
/// Every look after the Shutdown is made on a new connection: the old one ends with the
/// boot it was made to, and a call on it can fail after the new boot answered.
async fn clean_reboot(booted: &mut Booted) -> Result<(f64, f64), Error> {
    let before = boot_id(&mut booted.client).await?;
    let endpoint = debug_endpoint(booted)?;
    let started = Instant::now();
    let request = ShutdownRequest { power_off: false };
    node::call(
        NAME,
        "Shutdown",
        node::CALL_TIMEOUT,
        booted.client.shutdown(request),
    )
    .await?;
    let deadline = started + READY_TIMEOUT;
    loop {
        // Refused or cut off while the node is down: keep asking until the deadline.
        if let Ok(mut client) = cairn_api::connect(&endpoint, LOOK_TIMEOUT).await {
            let id = tokio::time::timeout(LOOK_TIMEOUT, boot_id(&mut client)).await;
            if matches!(id, Ok(Ok(id)) if id != before) {
                booted.client = client;
                break;
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::Unmeasurable(
                "the node did not come back from a reboot".into(),
            ));
        }
        tokio::time::sleep(POLL).await;
    }
    let up = started.elapsed().as_secs_f64();
    wait_true(&mut booted.client, "node-ready").await?;
    Ok((started.elapsed().as_secs_f64(), up))
}

fn debug_endpoint(booted: &Booted) -> Result<String, Error> {
    booted
        .node
        .debug_endpoint()
        .map(str::to_owned)
        .ok_or_else(|| Error::Unmeasurable(format!("node `{NAME}` has no debug forward")))
}

async fn boot_id(client: &mut Client) -> Result<String, Error> {
    let info = node::call(
        NAME,
        "GetBuildInfo",
        node::CALL_TIMEOUT,
        client.get_build_info(GetBuildInfoRequest {}),
    )
    .await?;
    Ok(info.boot_id)
}

/// Kills QEMU and boots the same state directory on the same host ports.
async fn power_off(bench: &Bench, booted: &mut Booted) -> Result<f64, Error> {
    let forwards: Vec<ForwardRequest> = (booted.node.record().forwards.iter())
        .map(|f| ForwardRequest {
            host: Some(f.host),
            guest: f.guest,
        })
        .collect();
    let state = booted.node.state().root().to_owned();
    booted.node.kill().map_err(Error::node(NAME))?;
    let started = Instant::now();
    let mut config = NodeConfig::new(bench.image()?, booted.accel, &state);
    config.forwards = forwards;
    let node = Node::start(&config).map_err(Error::node(NAME))?;
    // The old handle's QEMU is dead; detached, its drop leaves the new one's state
    // files (same directory) alone.
    std::mem::replace(&mut booted.node, node).detach();
    booted
        .node
        .wait_ready(READY_TIMEOUT)
        .map_err(Error::node(NAME))?;
    // A new QEMU: the old connection went with the old one.
    let endpoint = debug_endpoint(booted)?;
    booted.client = cairn_api::connect_within(&endpoint, node::CALL_TIMEOUT * 4)
        .await
        .map_err(|e| Error::Connect(NAME.to_owned(), Box::new(e)))?;
    wait_true(&mut booted.client, "node-ready").await?;
    Ok(started.elapsed().as_secs_f64())
}

pub fn markdown(results: &Results) -> String {
    report::page("Recovery", &results.machine, &body(results))
}

/// The figures without title and machine, for RESULTS.md too.
pub fn body(results: &Results) -> String {
    let mut md = String::from(
        "Seconds on the host's clock from the fault to `node-ready` true again \
         (in the boot that follows, for a reboot or power-off), and to the killed \
         component's own readiness. A reboot ends QEMU and the launcher boots the same \
         disk in a fresh one (docs/interfaces.md, \"Reboots\").\n\n\
         | fault | component ready (s) | node Ready (s) |\n| --- | ---: | ---: |\n",
    );
    for (component, seconds) in &results.components {
        let ready = (results.components_ready.iter())
            .find(|(name, _)| name == component)
            .map_or_else(|| "—".to_owned(), |(_, s)| format!("{s:.1}"));
        let _ = writeln!(md, "| SIGKILL {component} | {ready} | {seconds:.1} |");
    }
    let _ = writeln!(
        md,
        "| clean reboot (debug service Shutdown) | {:.1} (debug service) | {:.1} |",
        results.clean_reboot_up_s, results.clean_reboot_s
    );
    let _ = writeln!(
        md,
        "| hard power-off (QEMU killed, same disk booted) | — | {:.1} |",
        results.power_off_s
    );
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_row_per_fault() {
        let results = Results {
            machine: Machine::describe("tcg"),
            components: vec![("etcd".into(), 3.3), ("kubelet".into(), 12.0)],
            components_ready: vec![("etcd".into(), 2.04)],
            clean_reboot_s: 61.0,
            clean_reboot_up_s: 20.5,
            power_off_s: 40.04,
        };
        let md = markdown(&results);
        assert!(md.contains("| SIGKILL etcd | 2.0 | 3.3 |"), "{md}");
        assert!(md.contains("| SIGKILL kubelet | — | 12.0 |"), "{md}");
        assert!(
            md.contains("| clean reboot (debug service Shutdown) | 20.5 (debug service) | 61.0 |"),
            "{md}"
        );
        assert!(
            md.contains("| hard power-off (QEMU killed, same disk booted) | — | 40.0 |"),
            "{md}"
        );
    }
}
