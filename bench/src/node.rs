//! Booting a node for a measurement, and talking to its debug service.
//!
//! `--accel auto` means what the issue asks of the boot benchmarks: always TCG, and KVM
//! as well when the launcher's bounded probe proves KVM boots (nested KVM hangs on the
//! project's hosts, so usually TCG alone). Every boot is timed on the host clock from
//! starting QEMU to the agent's `CAIRN_READY` line.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cairn_api::Client;
use cairn_qemu::config::{DataDisk, Settings};
use cairn_qemu::{Accel, AccelChoice, Image, Node, NodeConfig};

use crate::error::Error;

/// The CAIRN_READY line under TCG on a loaded 2-core host, with margin.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// A debug API call that is not a wait: answered from memory in the guest, so this
/// only bounds a guest that stopped answering.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// What a client-side deadline adds to a server-side wait's own timeout.
pub const WAIT_MARGIN: Duration = Duration::from_secs(30);

/// What every benchmark needs.
#[derive(Debug, Clone)]
pub struct Bench {
    /// The built image (`make image`).
    pub image_dir: PathBuf,
    /// The config it was built from.
    pub config: PathBuf,
    /// Where `<name>.md` / `<name>.json` go.
    pub results: PathBuf,
    /// Scratch space kept between runs: extracted peer tools, payloads, outputs.
    pub work: PathBuf,
    pub accel: AccelChoice,
}

/// The accelerators to measure boots under, and why.
#[derive(Debug, Clone)]
pub struct Accels {
    pub list: Vec<Accel>,
    /// The probe's verdict, when `auto` ran it.
    pub probe: Option<String>,
}

/// A booted node with a connected debug client; stopped when dropped.
#[derive(Debug)]
pub struct Booted {
    pub node: Node,
    pub client: Client,
    pub accel: Accel,
    /// The name it was booted under (its state directory), for errors.
    pub name: String,
    /// Host seconds from starting QEMU to the `CAIRN_READY` line.
    pub ready_host_s: f64,
    /// When QEMU was started.
    pub started: Instant,
}

impl Bench {
    /// The image to boot; one built with another Cargo profile than release is
    /// refused, as its figures would not be the shipped node's.
    pub fn image(&self) -> Result<Image, Error> {
        release_only(&self.image_dir)?;
        Image::open(&self.image_dir).map_err(|e| Error::Image(self.image_dir.clone(), Box::new(e)))
    }

    /// TCG always; KVM too when asked for, or when `auto`'s probe says it works.
    pub fn accels(&self) -> Result<Accels, Error> {
        Ok(match self.accel {
            AccelChoice::Tcg => Accels {
                list: vec![Accel::Tcg],
                probe: None,
            },
            AccelChoice::Kvm => Accels {
                list: vec![Accel::Kvm],
                probe: None,
            },
            AccelChoice::Auto => {
                let probe = cairn_qemu::accel::probe_cached(&self.image()?.kernel);
                let mut list = vec![Accel::Tcg];
                if probe.accel == Accel::Kvm {
                    list.push(Accel::Kvm);
                }
                Accels {
                    list,
                    probe: Some(probe.reason.to_string()),
                }
            }
        })
    }

    /// The one accelerator for single-node benchmarks: KVM if it works, else TCG.
    pub fn single_accel(&self) -> Result<Accel, Error> {
        Ok(*self.accels()?.list.last().unwrap_or(&Accel::Tcg))
    }

    /// Boots the image once as a new node (state under `target/bench/<name>`, a blank
    /// data disk: the first boot formats it) and connects.
    pub async fn boot(&self, name: &str, accel: Accel) -> Result<Booted, Error> {
        self.boot_with(name, accel, &[]).await
    }

    /// [`Bench::boot`] with `extra_cmdline` appended to the kernel command line.
    pub async fn boot_with(
        &self,
        name: &str,
        accel: Accel,
        extra_cmdline: &[String],
    ) -> Result<Booted, Error> {
        self.boot_with_settings(name, accel, extra_cmdline, None)
            .await
    }

    /// [`Bench::boot_with`] handing the node `settings` as its per-node config (an
    /// owner CA, say: without one the node serves no node API).
    pub async fn boot_with_settings(
        &self,
        name: &str,
        accel: Accel,
        extra_cmdline: &[String],
        settings: Option<Settings>,
    ) -> Result<Booted, Error> {
        let image = self.image()?;
        let state = state_dir(name);
        fresh_data_disk(&state)?;
        let node_error = Error::node(name);
        let started = Instant::now();
        let mut config = NodeConfig::new(image, accel, &state);
        config.extra_cmdline.extend_from_slice(extra_cmdline);
        config.settings = settings;
        let mut node = Node::start(&config).map_err(&node_error)?;
        node.wait_ready(READY_TIMEOUT).map_err(&node_error)?;
        let ready_host_s = started.elapsed().as_secs_f64();
        let endpoint = node
            .debug_endpoint()
            .ok_or_else(|| Error::Unmeasurable(format!("node `{name}` has no debug forward")))?
            .to_owned();
        let client = cairn_api::connect_within(&endpoint, CONNECT_TIMEOUT)
            .await
            .map_err(|e| Error::Connect(name.to_owned(), Box::new(e)))?;
        Ok(Booted {
            node,
            client,
            accel,
            name: name.to_owned(),
            ready_host_s,
            started,
        })
    }
}

impl Booted {
    /// Waits (in the agent, at most `timeout`) until condition `name` is true.
    pub async fn wait_true(&mut self, name: &str, timeout: Duration) -> Result<(), Error> {
        let wait = cairn_api::v1::WaitConditionRequest {
            name: name.to_owned(),
            timeout_ms: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
        };
        let request = self.client.wait_condition(wait);
        call(&self.name, "WaitCondition", timeout + WAIT_MARGIN, request)
            .await
            .map(drop)
    }
}

impl Drop for Booted {
    fn drop(&mut self) {
        let _ = self.node.stop(STOP_TIMEOUT);
    }
}

/// Where a benchmark node called `name` keeps its state (QEMU logs, data disk).
pub fn state_dir(name: &str) -> PathBuf {
    PathBuf::from("target/bench").join(name)
}

/// Removes the data disk the launcher keeps in `state`, so the next boot is a new
/// node's first (a kept disk would carry the last node's identity, etcd and pods).
pub fn fresh_data_disk(state: &Path) -> Result<(), Error> {
    let disk = state.join(DataDisk::FILE_NAME);
    match std::fs::remove_file(&disk) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(Error::Write(disk, err)),
        _ => Ok(()),
    }
}

/// A debug API call on node `name`, bounded by `limit` on the host's clock: a guest
/// that stops answering (a frozen TCG guest keeps its TCP forward open) must not hang
/// the benchmark.
pub async fn call<T>(
    name: &str,
    call: &'static str,
    limit: Duration,
    request: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, Error> {
    match tokio::time::timeout(limit, request).await {
        Ok(reply) => reply
            .map(tonic::Response::into_inner)
            .map_err(Error::api(name, call)),
        Err(_) => Err(Error::Unmeasurable(format!(
            "node `{name}` did not answer {call} within {limit:?}"
        ))),
    }
}

/// A current-thread runtime for one benchmark's async part.
pub fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)
}

/// Refuses an image whose manifest names a Cargo profile other than `release` (an
/// image from before the field has none and passes; so does a directory without a
/// manifest, which [`Image::open`] then reports).
fn release_only(image_dir: &Path) -> Result<(), Error> {
    let path = image_dir.join("manifest.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    /// The one field of the manifest read here.
    #[derive(serde::Deserialize)]
    struct Built {
        #[serde(default)]
        cargo_profile: String,
    }
    let built: Built = serde_json::from_str(&text).map_err(|e| Error::Json(path.clone(), e))?;
    match built.cargo_profile.as_str() {
        "" | cairn_image::cargo::RELEASE_PROFILE => Ok(()),
        profile => Err(Error::Unmeasurable(format!(
            "{} was built with the Cargo profile `{profile}`; boots are measured on \
             release images (`make bench` builds one, as does `make image \
             IMAGE_PROFILE=release`)",
            image_dir.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_release_images_are_booted_for_figures() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            release_only(dir.path()).is_ok(),
            "no manifest: Image::open says why"
        );
        let manifest = dir.path().join("manifest.json");
        std::fs::write(&manifest, r#"{"format":1}"#).unwrap();
        assert!(
            release_only(dir.path()).is_ok(),
            "a manifest from before the field"
        );
        std::fs::write(&manifest, r#"{"cargo_profile":"release"}"#).unwrap();
        assert!(release_only(dir.path()).is_ok());
        std::fs::write(&manifest, r#"{"cargo_profile":"dev-image"}"#).unwrap();
        let err = release_only(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("`dev-image`") && err.contains("IMAGE_PROFILE=release"),
            "{err}"
        );
    }
}
