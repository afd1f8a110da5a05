//! Boot-level tests of containerd on the node: it becomes ready (its Version API
//! answers), the preloaded images are imported into the `k8s.io` namespace, and no
//! registry is contacted. Everything is read through the debug API, with a deadline on
//! every wait.
//!
//! One container from `localhost/cairn/toolbox:1` runs through CRI (pod sandbox on
//! the CNI bridge, runc, pivot_root on the moved root) via the `RunContainer` debug RPC,
//! and its output and exit code come back.
//!
//! All `#[ignore]`d: `make test` runs them with `--ignored`.

#[allow(dead_code)]
mod common;

use std::fmt::Display;
use std::time::Duration;

use cairn_api::v1::{Condition, RunContainerRequest, WaitConditionRequest};
use cairn_api::Client;
use common::{shared, Shared};

/// The images the builder preloads (image/cairn.toml, docs/interfaces.md).
const REFERENCES: [&str; 2] = ["localhost/cairn/pause:1", "localhost/cairn/toolbox:1"];
/// containerd's start and the import under TCG on a small CI host, with margin.
const CONDITION_TIMEOUT: Duration = Duration::from_secs(180);
const CONNECT_DEADLINE: Duration = Duration::from_secs(60);
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

struct Session {
    shared: &'static Shared,
    runtime: tokio::runtime::Runtime,
    client: Client,
}

impl Session {
    fn open() -> Self {
        let shared = shared();
        let endpoint = {
            let node = shared.node.lock().unwrap_or_else(|p| p.into_inner());
            node.debug_endpoint().map(str::to_owned)
        };
        let Some(endpoint) = endpoint else {
            shared.fail("the launcher forwarded no host port to the debug service")
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let client = runtime
            .block_on(cairn_api::connect_within(&endpoint, CONNECT_DEADLINE))
            .unwrap_or_else(|err| shared.fail(format!("the debug service does not answer: {err}")));
        Session {
            shared,
            runtime,
            client,
        }
    }

    fn fail(&self, message: impl Display) -> ! {
        let log = self.containerd_log().unwrap_or_else(|err| vec![err]);
        let tail = log[log.len().saturating_sub(40)..].join("\n");
        self.shared
            .fail(format!("{message}\n--- containerd log (tail) ---\n{tail}"))
    }

    fn wait_true(&self, name: &str) -> Condition {
        let request = WaitConditionRequest {
            name: name.to_owned(),
            timeout_ms: u32::try_from(CONDITION_TIMEOUT.as_millis()).unwrap_or(u32::MAX),
        };
        let mut client = self.client.clone();
        let reply = self.runtime.block_on(async {
            let call = client.wait_condition(request);
            tokio::time::timeout(CONDITION_TIMEOUT + CALL_TIMEOUT, call).await
        });
        let condition = match reply {
            Ok(Ok(reply)) => reply.into_inner(),
            Ok(Err(status)) => self.fail(format!("condition {name}: {status}")),
            Err(_) => self.fail(format!("condition {name}: no answer")),
        };
        if !condition.status {
            self.fail(format!(
                "condition {name} still false after {CONDITION_TIMEOUT:?}: {}",
                condition.reason
            ));
        }
        condition
    }

    /// containerd's whole log buffer, one string per line.
    fn containerd_log(&self) -> Result<Vec<String>, String> {
        common::log_lines(
            &self.runtime,
            &self.client,
            "containerd",
            None,
            CALL_TIMEOUT,
        )
    }
}

#[test]
#[ignore = "boots QEMU; run with `make test`"]
fn containerd_answers_its_api() {
    let session = Session::open();
    let condition = session.wait_true("containerd");
    assert!(condition.first_true_boot_ns.is_some());
}

#[test]
#[ignore = "boots QEMU; run with `make test`"]
fn preloaded_images_are_imported() {
    let session = Session::open();
    let condition = session.wait_true("images");
    for reference in REFERENCES {
        if !condition.reason.contains(reference) {
            session.fail(format!(
                "images condition does not name {reference}: {}",
                condition.reason
            ));
        }
    }
}

#[test]
#[ignore = "boots QEMU; run with `make test`"]
fn no_registry_is_contacted() {
    let session = Session::open();
    session.wait_true("images");
    let log = session
        .containerd_log()
        .unwrap_or_else(|err| session.fail(err));
    // containerd logs every resolve/pull attempt (and its failure: the node has no
    // route to any registry) at info level or above.
    let pulls: Vec<&String> = log
        .iter()
        .filter(|line| line.contains("PullImage") || line.contains("resolving"))
        .collect();
    if !pulls.is_empty() {
        session.fail(format!("containerd tried to pull: {pulls:#?}"));
    }
}

#[test]
#[ignore = "boots QEMU; run with `make test`"]
fn a_container_from_a_preloaded_image_runs() {
    let session = Session::open();
    session.wait_true("images");
    let request = RunContainerRequest {
        image: "localhost/cairn/toolbox:1".to_owned(),
        command: ["sh", "-c", "echo hello; echo oops >&2; exit 3"]
            .map(str::to_owned)
            .to_vec(),
        timeout_ms: 120_000,
    };
    let mut client = session.client.clone();
    let reply = session.runtime.block_on(async {
        let call = client.run_container(request);
        tokio::time::timeout(Duration::from_secs(150), call).await
    });
    let output = match reply {
        Ok(Ok(reply)) => reply.into_inner(),
        Ok(Err(status)) => session.fail(format!("RunContainer: {status}")),
        Err(_) => session.fail("RunContainer: no answer"),
    };
    assert_eq!(output.exit_code, 3, "{output:?}");
    assert_eq!(output.stdout.trim(), "hello", "{output:?}");
    assert_eq!(output.stderr.trim(), "oops", "{output:?}");
}

#[test]
#[ignore = "boots QEMU; run with `make test`"]
fn an_image_not_on_the_node_is_not_found_and_not_pulled() {
    let session = Session::open();
    session.wait_true("images");
    let request = RunContainerRequest {
        image: "localhost/cairn/absent:1".to_owned(),
        command: vec!["true".to_owned()],
        timeout_ms: 60_000,
    };
    let mut client = session.client.clone();
    let reply = session.runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(90), client.run_container(request)).await
    });
    match reply {
        Ok(Err(status)) if status.message().contains("localhost/cairn/absent:1") => {}
        other => session.fail(format!("expected an error naming the image, got {other:?}")),
    }
}
