//! The boot floor: the image's own kernel, on the same QEMU machine, booting a
//! one-file initramfs whose `/init` powers off at once (`fixtures/floor-init.rs`).
//! Nothing a node does can come in under it, so it is what the boot timeline is
//! measured against.
//!
//! Two figures per boot: host seconds from starting QEMU to QEMU's exit, and the
//! kernel's own timestamp on the line `/init` writes to `/dev/kmsg` (seconds since
//! kernel start, the clock the agent's conditions use too). `printk.time=1` is added
//! to the command line so the console shows that timestamp.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cairn_initramfs::{Archive, Compression, WriteOptions};
use cairn_qemu::{Accel, Image, Node, NodeConfig};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::measure;

const INIT_SOURCE: &str = include_str!("../fixtures/floor-init.rs");
/// What `/init` writes to the kernel log.
const INIT_LINE: &str = "cairn-floor: /init started";
/// The floor boots in seconds even under TCG; this only bounds a broken one.
const EXIT_TIMEOUT: Duration = Duration::from_secs(120);

/// One floor boot.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FloorBoot {
    /// Host seconds from starting QEMU to its exit.
    pub qemu_start_to_exit_s: f64,
    /// Kernel timestamp of `/init`'s line, if the console had it.
    pub kernel_to_init_s: Option<f64>,
}

/// Builds the floor image beside `work` from `image`'s kernel and command line.
pub fn build(image: &Image, work: &Path) -> Result<Image, Error> {
    let dir = work.join("floor");
    let image_dir = dir.join("image");
    fs::create_dir_all(&image_dir).map_err(Error::write(&image_dir))?;
    let init = compile_init(&dir)?;
    let archive = archive(&init)?;
    let initrd = image_dir.join("initramfs.img");
    fs::write(&initrd, archive).map_err(Error::write(&initrd))?;
    let kernel = image_dir.join("vmlinuz");
    fs::copy(&image.kernel, &kernel).map_err(Error::write(&kernel))?;
    let cmdline = image_dir.join("cmdline");
    fs::write(&cmdline, format!("{} printk.time=1\n", image.cmdline))
        .map_err(Error::write(&cmdline))?;
    Image::open(&image_dir).map_err(|e| Error::Image(image_dir, Box::new(e)))
}

/// The floor's `/init`.
fn compile_init(dir: &Path) -> Result<PathBuf, Error> {
    compile_static(dir, "init", INIT_SOURCE)
}

/// `rustc` straight from `text` to a static executable `dir/name`: no crates, so no
/// Cargo and no wait.
pub fn compile_static(dir: &Path, name: &str, text: &str) -> Result<PathBuf, Error> {
    let source = dir.join(format!("{name}.rs"));
    fs::write(&source, text).map_err(Error::write(&source))?;
    let out = dir.join(name);
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let mut command = Command::new(rustc);
    command
        .args([
            "--edition",
            "2021",
            "-C",
            "opt-level=2",
            "-C",
            "panic=abort",
        ])
        .args(["-C", "strip=symbols", "-C", "target-feature=+crt-static"])
        .args(["--target", cairn_image::cargo::STATIC_TARGET, "-o"])
        .arg(&out)
        .arg(&source);
    measure::run(&mut command, &format!("rustc ({name})"))?;
    Ok(out)
}

/// `/init` and the two device nodes it and the kernel need; no directories beyond
/// `/dev`, uncompressed as the node's own initramfs is.
fn archive(init: &Path) -> Result<Vec<u8>, Error> {
    let data = fs::read(init).map_err(Error::read(init))?;
    let boxed = |e: cairn_initramfs::ArchiveError| Error::Archive(init.to_owned(), Box::new(e));
    let mut archive = Archive::new();
    archive.add_file("/init", 0o755, data).map_err(boxed)?;
    archive
        .add_char_device("/dev/console", 0o600, 5, 1)
        .map_err(boxed)?;
    archive
        .add_char_device("/dev/kmsg", 0o644, 1, 11)
        .map_err(boxed)?;
    let options = WriteOptions {
        mtime: 0,
        compression: Compression::None,
    };
    archive
        .to_bytes(&options)
        .map_err(|e| Error::Archive(init.to_owned(), Box::new(e)))
}

/// Boots the floor once on the node's machine (no forwards) and times it.
pub fn boot_once(image: &Image, accel: Accel, state: &Path) -> Result<FloorBoot, Error> {
    crate::node::fresh_data_disk(state)?;
    let mut config = NodeConfig::new(image.clone(), accel, state);
    config.debug_forward = false;
    config.api_forward = false;
    let node_error = Error::node("floor");
    let started = Instant::now();
    let mut node = Node::start(&config).map_err(&node_error)?;
    node.wait_exit(EXIT_TIMEOUT).map_err(&node_error)?;
    let qemu_start_to_exit_s = started.elapsed().as_secs_f64();
    let console = fs::read_to_string(node.console_log()).unwrap_or_default();
    Ok(FloorBoot {
        qemu_start_to_exit_s,
        kernel_to_init_s: init_stamp(&console),
    })
}

/// The kernel timestamp (`[    1.234567] `) on `/init`'s console line.
pub fn init_stamp(console: &str) -> Option<f64> {
    let line = console.lines().find(|l| l.contains(INIT_LINE))?;
    let inside = line.trim_start().strip_prefix('[')?;
    inside[..inside.find(']')?].trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_init_line_timestamp_is_read() {
        let console = "[    0.000000] Linux version 6.1.0\n\
                       [    2.345678] cairn-floor: /init started\n\
                       [    2.400000] reboot: Power down\n";
        assert_eq!(init_stamp(console), Some(2.345678));
        assert_eq!(init_stamp("cairn-floor: /init started\n"), None);
        assert_eq!(init_stamp("[ 1.0] something else\n"), None);
    }

    #[test]
    fn the_archive_holds_init_and_its_devices() {
        let dir = tempfile::tempdir().unwrap();
        let init = dir.path().join("init");
        fs::write(&init, b"\x7fELF").unwrap();
        let entries = cairn_initramfs::read(&archive(&init).unwrap()).unwrap();
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["dev", "dev/console", "dev/kmsg", "init"]);
    }
}
