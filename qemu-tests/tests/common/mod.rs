//! Shared harness for the boot tests: where the image is, booting a node with deadlines,
//! one lazily booted node shared by the read-only checks, and failure messages that carry
//! the console tail. [`kubernetes`] is the Kubernetes tests' part: a node per test
//! file, a debug session, and kubectl with debug credentials.
//!
//! The shared node lives in a static, so its `Drop` never runs; it is attached, though, so
//! QEMU gets SIGKILL from the kernel (`PR_SET_PDEATHSIG`) when the test process exits.

use std::fmt::Display;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use cairn_qemu::accel::{self, AccelChoice};
use cairn_qemu::node::{error_chain, TAIL_LINES};
use cairn_qemu::{Image, Node, NodeConfig, ReadyInfo};

// Each Kubernetes test file uses a different part of it, the others none.
#[allow(dead_code)]
pub mod dbg;
#[allow(dead_code)]
pub mod kubernetes;
#[allow(dead_code)]
pub mod restart;

/// Deadline for `CAIRN_READY` (TCG on a small CI host).
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The build output under test: `CAIRN_IMAGE_DIR`, else `build/image` in the workspace.
pub fn image_dir() -> PathBuf {
    std::env::var_os("CAIRN_IMAGE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../build/image"))
}

/// The image, or a panic telling how to build it.
pub fn image() -> Image {
    let dir = image_dir();
    Image::open(&dir).unwrap_or_else(|err| {
        panic!(
            "no image to boot in {}: {} (run `make image`)",
            dir.display(),
            error_chain(&err)
        )
    })
}

/// A per-node state dir under Cargo's scratch space (short enough for the QMP socket).
fn state_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("boot")
        .join(name)
}

/// A node in state dir `name`, with whatever its data disk holds. `CAIRN_TEST_CMDLINE`
/// adds kernel parameters to every test node (e.g. `loglevel=7` to see kernel traces).
pub fn node_config(name: &str) -> NodeConfig {
    let image = image();
    let accel = accel::resolve(AccelChoice::Auto, &image.kernel);
    let mut config = NodeConfig::new(image, accel, &state_dir(name));
    if let Ok(extra) = std::env::var("CAIRN_TEST_CMDLINE") {
        config
            .extra_cmdline
            .extend(extra.split_whitespace().map(str::to_owned));
    }
    config
}

/// A node in state dir `name` with a new, blank data disk: every test run starts
/// from a first boot, whatever an earlier run left on the disk.
pub fn fresh_config(name: &str) -> NodeConfig {
    let config = node_config(name);
    if let Some(data) = &config.data_disk {
        match std::fs::remove_file(&data.path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => panic!("cannot remove {}: {err}", data.path.display()),
        }
    }
    config
}

/// Boots the image in state dir `name` (with a blank data disk) and waits for
/// `CAIRN_READY`.
pub fn boot(name: &str) -> Result<(Node, ReadyInfo), String> {
    let config = fresh_config(name);
    let mut node = Node::start(&config).map_err(|e| error_chain(&e))?;
    let ready = node
        .wait_ready(READY_TIMEOUT)
        .map_err(|e| error_chain(&e))?;
    Ok((node, ready))
}

/// The node every non-destructive test looks at.
pub struct Shared {
    /// The node; locked so tests may use it one at a time.
    pub node: Mutex<Node>,
    /// Its `CAIRN_READY` report.
    pub ready: ReadyInfo,
}

impl Shared {
    /// Panics with `message` and the console tail unless `condition` holds.
    pub fn check(&self, condition: bool, message: impl Display) {
        if !condition {
            self.fail(message);
        }
    }

    /// Panics with `message` and the console tail.
    pub fn fail(&self, message: impl Display) -> ! {
        let node = self
            .node
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        fail(&node, message)
    }
}

/// Boots the shared node on first use; every later caller gets the same node or the same
/// boot failure.
pub fn shared() -> &'static Shared {
    static SHARED: OnceLock<Result<Shared, String>> = OnceLock::new();
    let booted = SHARED.get_or_init(|| {
        boot("shared").map(|(node, ready)| Shared {
            node: Mutex::new(node),
            ready,
        })
    });
    match booted {
        Ok(shared) => shared,
        Err(err) => panic!("the shared node did not boot: {err}"),
    }
}

/// Panics with `message` and the console tail of `node`.
pub fn fail(node: &Node, message: impl Display) -> ! {
    panic!(
        "{message}\n--- console tail ({}) ---\n{}",
        node.console_log().display(),
        node.console_tail(TAIL_LINES)
    )
}

/// Module names as `/proc/modules` shows them: dashes become underscores.
pub fn module_name(name: &str) -> String {
    name.replace('-', "_")
}

/// The text of `component`'s log lines (the newest `tail`, or the whole buffer) over
/// the debug API, within `timeout`.
pub fn log_lines(
    runtime: &tokio::runtime::Runtime,
    client: &cairn_api::Client,
    component: &str,
    tail: Option<u32>,
    timeout: Duration,
) -> Result<Vec<String>, String> {
    use cairn_api::v1::{get_logs_response::Kind, GetLogsRequest};
    let request = GetLogsRequest {
        component: component.to_owned(),
        tail_lines: tail,
        follow: false,
    };
    let mut client = client.clone();
    runtime.block_on(async {
        let collect = async {
            let mut stream = client.get_logs(request).await?.into_inner();
            let mut lines = Vec::new();
            while let Some(message) = stream.message().await? {
                if let Some(Kind::Entry(entry)) = message.kind {
                    lines.push(entry.text);
                }
            }
            Ok::<_, tonic::Status>(lines)
        };
        match tokio::time::timeout(timeout, collect).await {
            Ok(result) => result.map_err(|status| format!("GetLogs {component}: {status}")),
            Err(_) => Err(format!("GetLogs {component} timed out after {timeout:?}")),
        }
    })
}

/// A rustls root store holding the certificates of `ca_pem` (the cluster CA), for the
/// tests that talk TLS to the node themselves.
#[allow(dead_code)]
pub fn ca_roots(ca_pem: &[u8]) -> Result<rustls::RootCertStore, String> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    Ok(roots)
}
