//! What a node is started with: image, accelerator, size, forwards, disks and state dir.

use std::path::{Path, PathBuf};

use crate::command::{
    Accel, Disk, PortForward, QemuCommand, APISERVER_PORT, DEBUG_PORT, DEFAULT_CPUS,
    DEFAULT_MEMORY_MIB, USER_NET_IP_PARAM,
};
use crate::image::Image;
use crate::ports::ForwardRequest;
use crate::process::SpawnMode;
use crate::state::StateDir;

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
    /// Host-to-guest TCP forwards, besides the debug and apiserver ones.
    pub forwards: Vec<ForwardRequest>,
    /// Forward a free host port to the debug service (guest port 7837) unless
    /// `forwards` already has one for that guest port.
    pub debug_forward: bool,
    /// Forward a free host port to kube-apiserver (guest port 6443) unless `forwards`
    /// already has one for that guest port.
    pub api_forward: bool,
    /// Extra virtio disks.
    pub disks: Vec<Disk>,
    /// Parameters appended to the build's kernel command line.
    pub extra_cmdline: Vec<String>,
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
            disks: Vec::new(),
            extra_cmdline: Vec::new(),
            state_dir: state_dir.to_owned(),
            mode: SpawnMode::Attached,
        }
    }

    /// Every forward to set up: [`NodeConfig::forwards`] plus the debug and apiserver
    /// ones, each only if not asked for explicitly.
    pub fn forward_requests(&self) -> Vec<ForwardRequest> {
        let mut requests = self.forwards.clone();
        for (wanted, guest) in [
            (self.debug_forward, DEBUG_PORT),
            (self.api_forward, APISERVER_PORT),
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
        qemu.disks = self.disks.clone();
        qemu
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
        assert_eq!(guests(&config), [DEBUG_PORT, APISERVER_PORT]);
        config.forwards = vec!["6443".parse().unwrap()];
        assert_eq!(guests(&config), [APISERVER_PORT, DEBUG_PORT]);

        config.forwards = vec!["17837:7837".parse().unwrap(), "16443:6443".parse().unwrap()];
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
}
