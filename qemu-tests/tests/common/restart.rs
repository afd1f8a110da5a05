//! Restarting the Kubernetes tests' node and waiting for it to come back: a reboot
//! through the debug service, ctrl-alt-delete, a clean stop and start of QEMU, and a
//! hard power-off, each on the same state directory and data disk. Used by the
//! persistence test and the restart soak.

use std::thread;
use std::time::{Duration, Instant};

use cairn_api::v1::{BuildInfo, GetBuildInfoRequest, ShutdownRequest};
use cairn_qemu::{ForwardRequest, Node};

use super::kubernetes::Session;

/// From a reboot request to the next boot's `CAIRN_READY` (services stop, the disk is
/// unmounted, the kernel boots again).
pub const REBOOT_TIMEOUT: Duration = Duration::from_secs(180);
/// A clean stop: the agent stops every service and unmounts the disk first.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(120);
/// Between two looks at something that offers no watch across a reboot.
pub const POLL: Duration = Duration::from_secs(1);

pub fn build_info(session: &Session) -> BuildInfo {
    let mut client = session.client.clone();
    match session
        .runtime
        .block_on(client.get_build_info(GetBuildInfoRequest {}))
    {
        Ok(info) => info.into_inner(),
        Err(status) => session.fail(format!("GetBuildInfo: {status}")),
    }
}

/// Asks the agent to reboot (the debug service's Shutdown without power-off).
pub fn call_shutdown(session: &Session) {
    let mut client = session.client.clone();
    let request = ShutdownRequest { power_off: false };
    if let Err(status) = session.runtime.block_on(client.shutdown(request)) {
        session.fail(format!("Shutdown: {status}"));
    }
}

/// Presses ctrl-alt-delete: the agent reboots the node in the same QEMU.
pub fn press_ctrl_alt_delete(session: &Session) {
    let node = session.cluster.node.lock().unwrap();
    if let Err(err) = node.press_ctrl_alt_delete() {
        drop(node);
        session.fail(format!("ctrl-alt-delete: {err}"));
    }
}

/// Waits for boot number `boot` of this QEMU to print `CAIRN_READY` and for the
/// debug service to answer with a boot ID other than `previous`; returns the new one.
pub fn wait_next_boot(session: &Session, boot: usize, previous: &str) -> String {
    let started = Instant::now();
    {
        let mut node = session.cluster.node.lock().unwrap();
        if let Err(err) = node.wait_boot_ready(boot, REBOOT_TIMEOUT) {
            drop(node);
            session.fail(format!("boot {boot} did not come: {err}"));
        }
    }
    eprintln!("  boot {boot}: CAIRN_READY after {:.1?}", started.elapsed());
    let boot_id = wait_debug_service(session, previous);
    eprintln!(
        "  boot {boot}: debug service after {:.1?}",
        started.elapsed()
    );
    boot_id
}

/// Polls GetBuildInfo (the service is down while the node reboots) until it reports a
/// boot ID other than `previous`; returns it.
pub fn wait_debug_service(session: &Session, previous: &str) -> String {
    let deadline = Instant::now() + REBOOT_TIMEOUT;
    loop {
        let mut client = session.client.clone();
        let call = client.get_build_info(GetBuildInfoRequest {});
        let answer = session
            .runtime
            .block_on(async { tokio::time::timeout(POLL * 5, call).await });
        if let Ok(Ok(info)) = answer {
            let info = info.into_inner();
            if info.boot_id != previous && !info.boot_id.is_empty() {
                return info.boot_id;
            }
        }
        if Instant::now() >= deadline {
            session.fail(format!(
                "the debug service did not come back within {REBOOT_TIMEOUT:?}"
            ));
        }
        thread::sleep(POLL);
    }
}

/// How QEMU goes away in [`restart_qemu`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QemuStop {
    /// The launcher's clean stop (the agent shuts down, QEMU exits).
    Clean,
    /// SIGKILL: a power cut.
    Kill,
}

/// Ends this QEMU (cleanly or not) and boots the same state dir (same data disk, same
/// host ports) in a new one; returns the new boot's ID once the debug service answers.
pub fn restart_qemu(session: &Session, how: QemuStop) -> String {
    let mut node = session.cluster.node.lock().unwrap();
    let forwards: Vec<ForwardRequest> = (node.record().forwards.iter())
        .map(|f| ForwardRequest {
            host: Some(f.host),
            guest: f.guest,
        })
        .collect();
    match how {
        QemuStop::Kill => {
            node.kill()
                .unwrap_or_else(|e| panic!("cannot kill qemu: {e}"));
        }
        QemuStop::Clean => match node.stop(STOP_TIMEOUT) {
            Ok(cairn_qemu::node::Stop::Clean(_)) => {}
            Ok(stop) => {
                drop(node);
                session.fail(format!("QEMU did not stop cleanly: {stop:?}"));
            }
            Err(err) => {
                drop(node);
                session.fail(format!("stopping QEMU: {err}"));
            }
        },
    }
    let mut config = super::node_config(env!("CARGO_CRATE_NAME"));
    config.forwards = forwards;
    let mut restarted = Node::start(&config).unwrap_or_else(|e| panic!("restart: {e}"));
    if let Err(err) = restarted.wait_ready(REBOOT_TIMEOUT) {
        panic!("no CAIRN_READY after restarting QEMU ({how:?}): {err}");
    }
    // The old handle's QEMU is gone; detached, its drop leaves the new one's state
    // files (same directory) alone.
    std::mem::replace(&mut *node, restarted).detach();
    drop(node);
    wait_debug_service(session, "")
}

/// The container ID of a Ready pod in `namespace` labelled `app=APP` whose container
/// is not `previous` (one started after a restart), if there is one; with the
/// listing it was read from, for a failure message.
pub fn ready_container(
    session: &Session,
    namespace: &str,
    app: &str,
    previous: Option<&str>,
) -> (Option<String>, String) {
    let selector = format!("app={app}");
    let jsonpath = "jsonpath={range .items[*]}{.status.containerStatuses[0].containerID} \
                    {.status.containerStatuses[0].ready}{\"\\n\"}{end}";
    let out = session.kubectl_ok(&[
        "get", "pods", "-n", namespace, "-l", &selector, "-o", jsonpath,
    ]);
    let running = out.lines().find_map(|line| {
        let (id, ready) = line.split_once(' ')?;
        (ready == "true" && !id.is_empty() && Some(id) != previous).then(|| id.to_owned())
    });
    (running, out)
}
