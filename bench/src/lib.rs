//! cairn's benchmarks: cairn measured against what a user would otherwise pick, on the
//! same machine in the same run, with the figures written to `bench/results/` (one
//! `<name>.md` for people and `<name>.json` with the raw numbers per benchmark) and
//! collected into `bench/RESULTS.md` ([`summary`]).
//!
//! - [`assembly`]: the same payload assembled by cairn's builder, dracut and
//!   mkinitramfs, cold and warm, with output size and reproducibility;
//! - [`churn`]: the make targets' Cargo builds, three passes: only the first compiles;
//! - [`rebuild`]: `make image` when nothing changed and when only the agent changed;
//! - [`timeline`]: the conditions' first-true times over several boots, against a
//!   floor ([`floor`]: the same kernel booting an `/init` that powers off), with an
//!   SVG chart ([`svg`]); [`boot_ab`] boots two images in alternation to judge a cut;
//! - [`footprint`]: agent and component RSS and CPU after boot and after a soak;
//! - [`image_size`]: sizes per component, uncompressed and compressed, and counts;
//! - [`debug_api`]: log tail latency and followed-line delay;
//! - [`go_build`]: build time of the Go components;
//! - [`profile_boot`]: where a boot's time goes (Go init traces, the apiserver's
//!   `/readyz` checks and CPU profile), before cutting it;
//! - [`recovery`]: time back to Ready after each component is killed, a clean reboot
//!   and a hard power-off;
//! - [`cluster`]: `cairn-qemu cluster start` to every Node Ready, each node's
//!   footprint, and pod-to-pod latency and throughput on one node and across two.
//!
//! Benchmarks are not tests: they never fail on a number, only when something cannot
//! be measured at all ([`error::Error`]). [`all`] runs every one in turn, goes on past
//! one that cannot measure, and says which in RESULTS.md. Boots use the QEMU launcher
//! of `cairn-qemu` ([`node`]); timing of programs is in [`measure`].

pub mod all;
pub mod assembly;
pub mod boot_ab;
pub mod churn;
pub mod cluster;
pub mod debug_api;
pub mod error;
pub mod first_pod;
pub mod floor;
pub mod footprint;
pub mod go_build;
pub mod image_size;
pub mod images;
pub mod measure;
pub mod node;
pub mod profile_boot;
pub mod rebuild;
pub mod recovery;
pub mod report;
pub mod services;
pub mod stats;
pub mod summary;
pub mod svg;
pub mod timeline;

pub use error::Error;
pub use node::Bench;
