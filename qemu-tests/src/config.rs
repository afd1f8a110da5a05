//! What a node is started with: image, accelerator, size, forwards, disks and state dir.
//!
//! A node has a persistent data disk by default: a sparse raw image in its state dir,
//! created when absent and kept across runs, so the same state dir boots the same node
//! (identity, PKI, etcd, containerd and kubelet state) again.

use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};

use crate::command::{
    Accel, ClusterNic, Disk, DiskFormat, PortForward, QemuCommand, APISERVER_PORT, DEBUG_PORT,
    DEFAULT_CPUS, DEFAULT_MEMORY_MIB, KUBELET_PORT, NODE_API_PORT, USER_NET_IP_PARAM,
};
use crate::image::Image;
use crate::ports::ForwardRequest;
use crate::process::SpawnMode;
use crate::state::StateDir;

/// The per-node config (`cairn_api::node_config`), as the launcher hands it over.
pub use cairn_api::node_config::NodeConfig as Settings;
use cairn_api::node_config::FW_CFG_NAME;

/// How to start a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The image to boot.
    pub image: Image,
    /// Accelerator (resolve `auto` with [`crate::accel`] first).
    pub accel: Accel,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Guest vCPUs.
    pub cpus: u32,
    /// Host-to-guest TCP forwards, besides the debug and API ones.
    pub forwards: Vec<ForwardRequest>,
    /// Forward a free host port to the debug service (guest port 7837) unless
    /// `forwards` already has one for that guest port.
    pub debug_forward: bool,
    /// Forward a free host port to each of the node's HTTPS APIs: kube-apiserver (guest
    /// port 6443), the kubelet (10250) and the owner's node API (7838), each unless
    /// `forwards` already has one for that guest port.
    pub api_forward: bool,
    /// The persistent data disk (attached first, as `vda`), if any.
    pub data_disk: Option<DataDisk>,
    /// Extra virtio disks.
    pub disks: Vec<Disk>,
    /// A second NIC on a segment shared with other nodes; the node config's `[cluster]`
    /// gives it its address.
    pub cluster_nic: Option<ClusterNic>,
    /// Parameters appended to the build's kernel command line.
    pub extra_cmdline: Vec<String>,
    /// The per-node config handed to the agent at boot (docs/interfaces.md), if any;
    /// written to the state dir as `node.toml`.
    pub settings: Option<Settings>,
    /// The node config's text handed to the agent as it is, unchecked, in place of
    /// `settings`: for tests of what the node does with a malformed one (the launcher's
    /// own commands never send one).
    pub raw_settings: Option<String>,
    /// Where the pid file, console log, QMP socket and `node.json` go.
    pub state_dir: PathBuf,
    /// Attached (owned by this process) or detached.
    pub mode: SpawnMode,
}

impl NodeConfig {
    /// An attached node of default size with no forwards or disks.
    pub fn new(image: Image, accel: Accel, state_dir: &Path) -> Self {
        NodeConfig {
            image,
            accel,
            memory_mib: DEFAULT_MEMORY_MIB,
            cpus: DEFAULT_CPUS,
            forwards: Vec::new(),
            debug_forward: true,
            api_forward: true,
            data_disk: Some(DataDisk::in_state_dir(state_dir)),
            disks: Vec::new(),
            cluster_nic: None,
            extra_cmdline: Vec::new(),
            settings: None,
            raw_settings: None,
            state_dir: state_dir.to_owned(),
            mode: SpawnMode::Attached,
        }
    }

    /// Every forward to set up: [`NodeConfig::forwards`] plus the debug and API ones,
    /// each only if not asked for explicitly.
    pub fn forward_requests(&self) -> Vec<ForwardRequest> {
        let mut requests = self.forwards.clone();
        for (wanted, guest) in [
            (self.debug_forward, DEBUG_PORT),
            (self.api_forward, APISERVER_PORT),
            (self.api_forward, KUBELET_PORT),
            (self.api_forward, NODE_API_PORT),
        ] {
            if wanted && requests.iter().all(|r| r.guest != guest) {
                requests.push(ForwardRequest { host: None, guest });
            }
        }
        requests
    }

    pub(crate) fn qemu_command(&self, state: &StateDir, forwards: Vec<PortForward>) -> QemuCommand {
        let mut qemu = QemuCommand::new(&self.image.kernel, &state.console_log(), self.accel);
        qemu.initrd = Some(self.image.initrd.clone());
        // The user network's address first, so an `ip=` in `extra_cmdline` overrides it
        // (the agent takes the last one).
        let extra: Vec<String> = std::iter::once(USER_NET_IP_PARAM.to_owned())
            .chain(self.extra_cmdline.iter().cloned())
            .collect();
        qemu.cmdline = self.image.cmdline_with(&extra);
        qemu.memory_mib = self.memory_mib;
        qemu.cpus = self.cpus;
        qemu.qmp_socket = Some(state.qmp_socket());
        qemu.forwards = forwards;
        qemu.cluster_nic = self.cluster_nic;
        qemu.disks = self.data_disk.iter().map(DataDisk::disk).collect();
        qemu.disks.extend(self.disks.iter().cloned());
        if self.settings.is_some() || self.raw_settings.is_some() {
            qemu.fw_cfg
                .push((FW_CFG_NAME.to_owned(), state.node_config()));
        }
        qemu
    }
}

/// The node's persistent disk: a raw image file, created sparse at `size_bytes` when
/// missing. The agent partitions and formats it on the first boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDisk {
    pub path: PathBuf,
    pub size_bytes: u64,
}

impl DataDisk {
    /// File name of the data disk in a state dir.
    pub const FILE_NAME: &'static str = "data.img";
    /// Default size: room for etcd, images and pod logs; sparse, so it costs what the
    /// node writes.
    pub const DEFAULT_SIZE: u64 = 8 << 30;

    pub fn in_state_dir(state_dir: &Path) -> Self {
        DataDisk {
            path: state_dir.join(Self::FILE_NAME),
            size_bytes: Self::DEFAULT_SIZE,
        }
    }

    /// Creates the image (and its directory) if it does not exist; an existing one is
    /// never touched.
    pub fn ensure(&self) -> io::Result<bool> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&self.path)
        {
            Ok(file) => file.set_len(self.size_bytes).map(|()| true),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(err) => Err(err),
        }
    }

    fn disk(&self) -> Disk {
        Disk {
            path: self.path.clone(),
            format: DiskFormat::Raw,
            read_only: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> NodeConfig {
        let image = Image {
            dir: "/img".into(),
            kernel: "/img/vmlinuz".into(),
            initrd: "/img/initramfs.img".into(),
            cmdline: "console=ttyS0".into(),
        };
        NodeConfig::new(image, Accel::Tcg, Path::new("/state"))
    }

    #[test]
    fn debug_and_api_ports_are_forwarded_unless_already_asked_for() {
        let mut config = config();
        let guests = |config: &NodeConfig| -> Vec<u16> {
            config.forward_requests().iter().map(|r| r.guest).collect()
        };
        assert_eq!(NODE_API_PORT, 7838);
        assert_eq!(
            guests(&config),
            [DEBUG_PORT, APISERVER_PORT, KUBELET_PORT, NODE_API_PORT]
        );
        config.forwards = vec!["6443".parse().unwrap()];
        assert_eq!(
            guests(&config),
            [APISERVER_PORT, DEBUG_PORT, KUBELET_PORT, NODE_API_PORT]
        );
        config.forwards = vec!["17838:7838".parse().unwrap()];
        assert_eq!(
            guests(&config),
            [NODE_API_PORT, DEBUG_PORT, APISERVER_PORT, KUBELET_PORT]
        );
        config.api_forward = false;
        assert_eq!(guests(&config), [NODE_API_PORT, DEBUG_PORT]);
        config.api_forward = true;

        config.forwards = vec![
            "17837:7837".parse().unwrap(),
            "16443:6443".parse().unwrap(),
            "20250:10250".parse().unwrap(),
            "17838:7838".parse().unwrap(),
        ];
        assert_eq!(config.forward_requests(), config.forwards);
        config.debug_forward = false;
        config.api_forward = false;
        config.forwards.clear();
        assert!(config.forward_requests().is_empty());
    }

    #[test]
    fn the_user_network_address_goes_before_extra_parameters() {
        let mut config = config();
        config.extra_cmdline = vec!["ip=off".into()];
        let qemu = config.qemu_command(&StateDir::new(Path::new("/state")), Vec::new());
        assert_eq!(
            qemu.cmdline,
            format!("console=ttyS0 {USER_NET_IP_PARAM} ip=off")
        );
        assert!(qemu.network);
    }

    #[test]
    fn the_data_disk_comes_first_and_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config();
        config.data_disk = Some(DataDisk::in_state_dir(dir.path()));
        config.disks = vec![Disk {
            path: "/extra.img".into(),
            format: DiskFormat::Raw,
            read_only: true,
        }];
        let qemu = config.qemu_command(&StateDir::new(dir.path()), Vec::new());
        assert_eq!(qemu.disks[0].path, dir.path().join("data.img"));
        assert_eq!(qemu.disks[1].path, Path::new("/extra.img"));

        let data = config.data_disk.clone().unwrap();
        assert!(data.ensure().unwrap());
        std::fs::write(&data.path, b"node state").unwrap();
        assert!(!data.ensure().unwrap());
        assert_eq!(std::fs::read(&data.path).unwrap(), b"node state");
        config.data_disk = None;
        assert_eq!(
            config
                .qemu_command(&StateDir::new(dir.path()), Vec::new())
                .disks
                .len(),
            1
        );
    }
}
