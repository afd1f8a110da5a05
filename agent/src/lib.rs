//! The cairn init agent: PID 1 of a cairn node, installed as `/init` in the initramfs.
//!
//! [`run`] is the whole boot, one linear sequence of named steps (modelled on
//! firecracker's jailer `Env::run`): leave the initramfs root, mount the pseudo file
//! systems, raise limits, load kernel modules, establish the node identity, configure
//! the network, start the supervised services (and, on debug images, the debug
//! service), announce readiness on the console, then serve as PID 1 until the host asks
//! for a power-off or reboot, when the services are stopped first. Each step lives in
//! its own module and says why it sits where it does. Steps publish their outcome in
//! the [`conditions`] registry; every component's output goes to a [`logbuf`] buffer.
//!
//! Every system call goes through the [`syscall::Syscall`] trait and every file through
//! [`Paths`], so each step runs in unit tests against a recording fake and a temporary
//! directory. The binary (`main.rs`) only installs the panic hook and logging, calls
//! [`run`] and turns its outcome into a deliberate power-off or reboot: PID 1 never
//! simply exits.

pub mod api;
pub mod atomic_write;
pub mod conditions;
pub mod console;
pub mod containerd;
pub mod identity;
pub mod kubernetes;
pub mod logbuf;
pub mod modules;
pub mod mounts;
pub mod network;
pub mod node_config;
pub mod os_release;
pub mod paths;
pub mod pid1;
pub mod pki;
pub mod power;
pub mod profile;
pub mod ready;
pub mod reaper;
pub mod reconciler;
pub mod rootfs;
pub mod services;
pub mod storage;
pub mod supervisor;
pub mod syscall;

mod boot;

pub use boot::{run, BootError};
pub use paths::Paths;
