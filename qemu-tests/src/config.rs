//! What a node is started with: image, accelerator, size, forwards, disks and state dir.

use std::path::{Path, PathBuf};

use crate::command::{Accel, Disk, PortForward, QemuCommand, DEFAULT_CPUS, DEFAULT_MEMORY_MIB};
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
    /// Host-to-guest TCP forwards.
    pub forwards: Vec<ForwardRequest>,
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
            disks: Vec::new(),
            extra_cmdline: Vec::new(),
            state_dir: state_dir.to_owned(),
            mode: SpawnMode::Attached,
        }
    }

    pub(crate) fn qemu_command(&self, state: &StateDir, forwards: Vec<PortForward>) -> QemuCommand {
        let mut qemu = QemuCommand::new(&self.image.kernel, &state.console_log(), self.accel);
        qemu.initrd = Some(self.image.initrd.clone());
        qemu.cmdline = self.image.cmdline_with(&self.extra_cmdline);
        qemu.memory_mib = self.memory_mib;
        qemu.cpus = self.cpus;
        qemu.qmp_socket = Some(state.qmp_socket());
        qemu.forwards = forwards;
        qemu.disks = self.disks.clone();
        qemu
    }
}
