//! cairn-qemu: boots cairn images under QEMU for people, CI and the boot-level tests.
//!
//! The launcher turns a build directory (`vmlinuz`, `initramfs.img`, `cmdline`; see
//! `docs/interfaces.md`) into a QEMU command line ([`command`]), picks the accelerator
//! ([`accel`]: KVM only when a bounded probe proves it boots), and starts QEMU in a process
//! group of its own ([`process`]) with the serial console captured to a file and QMP on a
//! unix socket, both in the node's state directory ([`state`]). A [`node::Node`] waits on
//! the console for the agent's `CAIRN_READY` / `CAIRN_EXIT` lines ([`console`]), each wait
//! bounded by a deadline, and stops the guest cleanly by pressing ctrl-alt-delete over QMP
//! ([`qmp`]). No QEMU outlives an attached node: `Drop` kills its group, and a
//! parent-death signal covers a launcher that dies without dropping it.
//!
//! Unless told not to, a node started by `cairn-qemu run` is given the host's owner CA in
//! its per-node config ([`owner`]).
//!
//! The `cairn-qemu` binary (`run`, `stop`, `probe`) and the `#[ignore]`d boot tests in
//! `tests/` are thin users of this library.

pub mod accel;
pub mod attach;
pub mod command;
pub mod config;
pub mod console;
pub mod image;
pub mod join;
pub mod node;
pub mod owner;
pub mod ports;
pub mod process;
pub mod qmp;
pub mod registry;
pub mod relaunch;
pub mod state;
pub mod stop;
pub mod watch;

pub use accel::{AccelChoice, Probe};
pub use command::{Accel, ClusterNic, Disk, DiskFormat, Mac, PortForward, QemuCommand};
pub use config::{DataDisk, NodeConfig};
pub use console::{ExitAction, ExitInfo, ReadyInfo};
pub use image::Image;
pub use node::{Exited, Node, NodeError, Stop};
pub use ports::ForwardRequest;
pub use process::SpawnMode;
pub use state::{NodeRecord, StateDir};
