//! containerd on the node: its config, the pods' CNI network, the supervised service,
//! the import of the preloaded images and of archives loaded over the node API, and
//! one-shot container runs.
//!
//! The agent owns containerd's whole configuration: [`write_config`] renders
//! `/etc/containerd/config.toml` ([`config`]) and the CNI conflist template ([`cni`])
//! at every boot, before [`service`] hands the supervisor a [`ServiceSpec`]. Readiness is a real
//! API call (the Version service over the socket), so the `containerd` condition means
//! "answers gRPC", not "printed a line". Once it holds, [`import_when_ready`] imports
//! the archives the builder put under [`IMAGES_DIR`] natively over the gRPC API
//! ([`import`]) and sets the `images` condition; the kubelet must wait for that one.
//! [`import::load_archive`] loads an archive streamed over the node API the same way
//! (not pinned), and [`images`] lists what containerd holds.
//! [`run::run_container`] runs one container through CRI, the kubelet's own path, for
//! the boot test.
//!
//! containerd runs on the moved root (see [`crate::rootfs`]): its root and state
//! directories are on the tmpfs-backed `/`, where overlayfs works and runc's
//! pivot_root(2) succeeds.

pub mod archive;
mod client;
pub mod cni;
pub mod config;
pub mod images;
pub mod import;
pub mod registries;
pub mod run;

use std::path::PathBuf;
use std::time::Duration;

use crate::atomic_write::write_atomic;
use crate::conditions::Conditions;
use crate::supervisor::{probe_fn, Readiness, ServiceSpec};
use crate::Paths;
use cairn_api::error_chain;
use cairn_api::node_config::NodeConfig;

pub use archive::ArchiveError;
pub use client::ClientError;
pub use import::{ImportError, Imported};
pub use run::{RunError, RunOutput, RunSpec};

/// The service's name: its component (log buffer) and its condition.
pub const SERVICE: &str = cairn_api::names::service::CONTAINERD;
/// Set once every preloaded image is imported.
pub const IMAGES_CONDITION: &str = cairn_api::names::condition::IMAGES;
pub const BINARY: &str = "/usr/bin/containerd";
pub const CONFIG: &str = "/etc/containerd/config.toml";
pub const SOCKET: &str = "/run/containerd/containerd.sock";
pub const ROOT: &str = "/var/lib/containerd";
pub const STATE: &str = "/run/containerd";
pub const CNI_BIN_DIR: &str = "/opt/cni/bin";
pub const CNI_CONF_DIR: &str = "/etc/cni/net.d";
/// Where the builder puts the OCI archives (docs/interfaces.md).
pub const IMAGES_DIR: &str = "/usr/share/cairn/images";
/// The namespace CRI (and so the kubelet) uses.
pub const NAMESPACE: &str = "k8s.io";
pub const SNAPSHOTTER: &str = "overlayfs";
pub const SANDBOX_IMAGE: &str = "localhost/cairn/pause:1";
/// containerd finds the shim and the shim finds runc through `PATH`; the CNI plugins
/// find `iptables` in `/usr/sbin` through it too.
pub const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
pub enum ContainerdError {
    #[error("cannot create {}", .0.display())]
    CreateDir(PathBuf, #[source] std::io::Error),
    #[error("cannot write {}", .0.display())]
    Write(PathBuf, #[source] std::io::Error),
}

/// Writes containerd's config, its registry hosts directory (from `settings`'
/// registries) and the CNI conflist, or its template on a node with a cluster network
/// ([`cni`]), under `paths`' root. Run before the supervisor starts the service;
/// rewritten at every boot, so the image and the node config decide.
pub fn write_config(paths: &Paths, settings: &NodeConfig) -> Result<(), ContainerdError> {
    let hosts_dir = paths.resolve(registries::HOSTS_DIR);
    let template = settings.cluster.is_some();
    let conflist = match template {
        true => (paths.resolve(cni::TEMPLATE), cni::render_template()),
        false => (
            paths.resolve(CNI_CONF_DIR).join(cni::CONFLIST),
            cni::render_single(),
        ),
    };
    let mut files = vec![
        (paths.resolve(CONFIG), config::render(template), 0o644),
        (conflist.0, conflist.1, 0o644),
    ];
    files.extend(
        registries::render(settings)
            .into_iter()
            .map(|file| (hosts_dir.join(file.path), file.contents, file.mode)),
    );
    // Empty: containerd's CRI watches it for the conflist it renders.
    let conf_dir = paths.resolve(CNI_CONF_DIR);
    std::fs::create_dir_all(&conf_dir).map_err(|e| ContainerdError::CreateDir(conf_dir, e))?;
    for (path, text, mode) in files {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| ContainerdError::CreateDir(dir.to_owned(), e))?;
        }
        // containerd reads each file as it starts: it must never see half a file.
        write_atomic(&path, text.as_bytes(), mode)
            .map_err(|e| ContainerdError::Write(path.clone(), e))?;
    }
    Ok(())
}

/// The supervised containerd. Ready when its Version API answers on the socket.
pub fn service(paths: &Paths) -> ServiceSpec {
    let socket = paths.resolve(SOCKET);
    let probe = probe_fn(move || {
        let socket = socket.clone();
        async move {
            client::version(&socket)
                .await
                .map(drop)
                .map_err(|err| error_chain(&err))
        }
    });
    ServiceSpec::new(SERVICE, paths.resolve(BINARY))
        .args([
            "--config".to_owned(),
            paths.resolve(CONFIG).display().to_string(),
        ])
        .env("PATH", PATH)
        .readiness(
            Readiness::new(probe)
                .interval(Duration::from_millis(200))
                .timeout(Duration::from_secs(3)),
        )
}

/// The post-ready step: waits for the `containerd` condition, imports every archive
/// under [`IMAGES_DIR`] and sets the `images` condition (true with the references, or
/// false with the error chain). Retries a few times, since a containerd that just
/// turned ready may still restart. Spawn it once, right after the supervisor starts.
pub async fn import_when_ready(conditions: Conditions, paths: Paths) {
    const ATTEMPTS: u32 = 5;
    conditions.set(IMAGES_CONDITION, false, "waiting for containerd");
    let (socket, dir) = (paths.resolve(SOCKET), paths.resolve(IMAGES_DIR));
    for attempt in 1..=ATTEMPTS {
        conditions.wait_true(SERVICE).await;
        match import::import_dir(&socket, &dir).await {
            Ok(images) => {
                let names: Vec<&str> = images.iter().map(|i| i.reference.as_str()).collect();
                tracing::info!("imported {} images: {}", names.len(), names.join(", "));
                conditions.set(
                    IMAGES_CONDITION,
                    true,
                    format!("imported {}", names.join(", ")),
                );
                return;
            }
            Err(err) => {
                let reason = error_chain(&err);
                tracing::warn!("image import attempt {attempt}/{ATTEMPTS} failed: {reason}");
                conditions.set(IMAGES_CONDITION, false, reason);
                tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
            }
        }
    }
}

/// Runs one container from a preloaded image through CRI (see [`run`]).
pub async fn run_container(paths: &Paths, spec: &RunSpec) -> Result<RunOutput, RunError> {
    run::run_container(&paths.resolve(SOCKET), spec).await
}

/// The image references CRI reports: what the kubelet sees as present.
pub async fn list_images(paths: &Paths) -> Result<Vec<String>, RunError> {
    use k8s_cri::v1::image_service_client::ImageServiceClient;
    let channel = client::connect(&paths.resolve(SOCKET)).await?;
    let images = ImageServiceClient::new(channel)
        .list_images(k8s_cri::v1::ListImagesRequest { filter: None })
        .await
        .map_err(|source| RunError::Cri {
            step: "ListImages",
            source,
        })?
        .into_inner()
        .images;
    let mut tags: Vec<String> = images.into_iter().flat_map(|i| i.repo_tags).collect();
    tags.sort();
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_node_gets_the_agents_conflist_for_the_whole_pod_network() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::under_root(dir.path());
        write_config(&paths, &NodeConfig::default()).unwrap();
        let conflist = dir.path().join("etc/cni/net.d/10-cairn.conflist");
        assert!(std::fs::read_to_string(conflist)
            .unwrap()
            .contains("10.88.0.0/16"));
        assert!(!dir.path().join("etc/cni/cairn.conflist.tmpl").exists());
    }

    #[test]
    fn a_cluster_node_gets_a_conflist_template_for_its_pod_cidr() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::under_root(dir.path());
        let settings = NodeConfig {
            cluster: Some(cairn_api::node_config::Cluster {
                address: "192.168.100.10/24".to_owned(),
                device: "eth1".to_owned(),
                role: Default::default(),
                join: None,
            }),
            ..NodeConfig::default()
        };
        write_config(&paths, &settings).unwrap();
        let config = std::fs::read_to_string(dir.path().join("etc/containerd/config.toml"));
        assert!(config.unwrap().contains("version = 4"));
        let template = dir.path().join("etc/cni/cairn.conflist.tmpl");
        assert!(std::fs::read_to_string(template)
            .unwrap()
            .contains("{{.PodCIDR}}"));
        // containerd renders the conflist from the Node's pod CIDR: none is written.
        let conf_dir = std::fs::read_dir(dir.path().join("etc/cni/net.d")).unwrap();
        assert_eq!(conf_dir.count(), 0);
    }

    #[test]
    fn service_runs_containerd_with_our_config_and_path() {
        let spec = service(&Paths::system());
        assert_eq!(spec.name, "containerd");
        assert_eq!(spec.binary, std::path::Path::new("/usr/bin/containerd"));
        assert_eq!(spec.args, ["--config", "/etc/containerd/config.toml"]);
        assert!(spec.env.contains(&("PATH".to_owned(), PATH.to_owned())));
        assert!(spec.readiness.is_some());
    }

    #[tokio::test]
    async fn probe_fails_with_a_reason_when_nothing_listens() {
        let dir = tempfile::tempdir().unwrap();
        let spec = service(&Paths::under_root(dir.path()));
        let reason = spec.readiness.unwrap().probe.check().await.unwrap_err();
        assert!(reason.contains("containerd.sock"), "{reason}");
    }
}
