//! The boot sequence: [`run`] and its steps, in order.

use std::convert::Infallible;
use std::io;
use std::sync::{Arc, Mutex};

use crate::identity::{self, EphemeralKey, Identity, IdentityError};
use crate::modules::{self, ModuleError};
use crate::mounts::{self, MountError, MOUNTS};
use crate::pid1::{self, LoopError, ShutdownRequest};
use crate::ready::{ReadyError, ReadyReport};
use crate::reaper::Reaper;
use crate::rootfs::{self, RootError, RootState};
use crate::syscall::Syscall;
use crate::{console, Paths};

/// RLIMIT_NOFILE for the agent and everything it starts (containerd, etcd and the
/// kubelet each want far more than the kernel's default 1024). Equal to the default
/// fs.nr_open, the most setrlimit(2) allows without raising that sysctl.
pub const NOFILE_LIMIT: u64 = 1 << 20;

/// Why the boot could not continue; the binary prints the chain and powers off.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("cannot leave the initramfs root")]
    Root(#[from] RootError),
    #[error("cannot mount the pseudo file systems")]
    Mounts(#[from] MountError),
    #[error("cannot load kernel modules")]
    Modules(#[from] ModuleError),
    #[error("cannot establish the node identity")]
    Identity(#[from] IdentityError),
    #[error("cannot report readiness")]
    Ready(#[from] ReadyError),
    #[error("main loop failed")]
    Loop(#[from] LoopError),
}

/// Boots the node and serves as PID 1 until a power request arrives, which it returns.
/// On the first run (still on rootfs) it does not return: it re-execs `/init`.
pub fn run(sys: Arc<dyn Syscall>, paths: &Paths) -> Result<ShutdownRequest, BootError> {
    let boot = Boot { sys: &*sys, paths };
    boot.leave_initramfs_root()?;
    boot.mount_filesystems()?;
    boot.raise_limits();
    boot.load_modules()?;
    let identity = boot.establish_identity()?;
    boot.announce_ready(&identity)?;
    let reaper = Arc::new(Mutex::new(Reaper::default()));
    Ok(pid1::serve(sys, reaper)?)
}

struct Boot<'a> {
    sys: &'a dyn Syscall,
    paths: &'a Paths,
}

impl Boot<'_> {
    /// First, before any mount: mounts made on rootfs would not follow the moved root,
    /// and the re-exec would have to repeat them. See [`rootfs`] for the choice.
    fn leave_initramfs_root(&self) -> Result<(), BootError> {
        let marker = std::env::var_os(rootfs::MARKER_ENV);
        match rootfs::root_state(self.paths, marker.as_deref()) {
            RootState::Moved => {
                rootfs::clean_up(self.paths);
                tracing::info!("running on the moved root");
                Ok(())
            }
            RootState::Initramfs => {
                let (argv, env) = (std::env::args_os(), std::env::vars_os());
                let never: Infallible =
                    rootfs::move_root_and_reexec(self.sys, self.paths, argv, env)?;
                match never {}
            }
        }
    }

    /// Second: everything after this reads /proc or /sys or writes /run.
    fn mount_filesystems(&self) -> Result<(), BootError> {
        mounts::mount_all(self.sys, self.paths, MOUNTS)?;
        tracing::info!("mounted {} file systems", MOUNTS.len());
        Ok(())
    }

    /// Before any child exists, because children inherit limits (getrlimit(2)). Not
    /// fatal: a node with the default limit boots, its services just hit it sooner.
    fn raise_limits(&self) {
        if let Err(errno) = self.sys.set_nofile_limit(NOFILE_LIMIT) {
            tracing::warn!("failed to raise RLIMIT_NOFILE to {NOFILE_LIMIT}: {errno}");
        }
    }

    /// After the mounts (the kernel may call out to /sys and /dev for devices the
    /// modules bring up) and before anything needs a virtio device, overlay or netfilter.
    fn load_modules(&self) -> Result<(), BootError> {
        let summary = modules::load_listed(self.sys, self.paths)?;
        tracing::info!(
            "loaded {} kernel modules ({} already loaded)",
            summary.loaded,
            summary.already_loaded
        );
        Ok(())
    }

    /// After module loading (virtio-rng, when listed, feeds the CRNG the key needs);
    /// before anything that names the node.
    fn establish_identity(&self) -> Result<Identity, BootError> {
        let identity = identity::establish(self.sys, self.paths, &EphemeralKey)?;
        tracing::info!("node {} ({})", identity.node_id(), identity.node_name());
        Ok(identity)
    }

    /// Last before the main loop: the launcher treats the line as "boot complete".
    fn announce_ready(&self, identity: &Identity) -> Result<(), BootError> {
        let report = ReadyReport::gather(self.sys, self.paths, identity)?;
        console::write_line(&mut io::stderr(), &report.line());
        Ok(())
    }
}
