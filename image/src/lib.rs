//! The cairn image builder.
//!
//! One declarative config ([`config`]) becomes a bootable image: the Debian kernel,
//! and a reproducible initramfs holding the agent as `/init`, the libraries its
//! executables need ([`elf`]), the kernel modules they need ([`modules`]) with their
//! load order, and a stamped `/etc/os-release` ([`osrelease`]). Debian packages are
//! fetched and unpacked by the builder itself ([`deb`]); workspace binaries are built
//! with cargo ([`cargo`]); Go components come from `third_party/build.sh`
//! ([`gobuild`]). Container images to preload (the pause and toolbox images) are
//! assembled from the same kinds of components and written as OCI image layout
//! archives ([`oci`]).
//!
//! Reproducibility is by construction: every input is content-addressed in the
//! manifest ([`manifest`]), entries are written sorted with a fixed timestamp, uid/gid
//! 0 and sequential inode numbers, and compression is single-threaded at a fixed
//! level. [`build::build`] writes the whole output directory beside its final place
//! and renames it in at the end, so a failed build leaves the previous image intact.

pub mod build;
pub mod cargo;
pub mod config;
pub mod deb;
pub mod elf;
pub mod gobuild;
pub mod manifest;
pub mod modules;
pub mod oci;
pub mod osrelease;
pub mod progress;
