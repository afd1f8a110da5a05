//! The three tools' command lines, outputs and run preparation.
//!
//! cairn: `cairn-image build` (the binary `make image` builds) with the generated
//! config, its own Debian cache under `WORK/cairn-cache`. dracut: only the payload's
//! module (`--modules cairnpayload`), not host-only, reproducible, no microcode, no
//! stripping (the payload is stripped already; stripping would change its bytes).
//! mkinitramfs: the payload hook and module list in its own CONFDIR (`-d`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::sandbox::{Sandbox, DRACUT_MODULE};
use super::{Setting, Temperature, Tool, SOURCE_DATE_EPOCH};
use crate::error::Error;
use crate::measure::{self, Timed};

/// Where the outputs are, seen from inside the sandbox.
const SANDBOX_OUT: &str = "/bench/out";

#[derive(Debug)]
pub struct Tools {
    bench_dir: PathBuf,
    /// cairn's Debian cache for this benchmark (`debs/`, `debs/unpacked/`).
    cairn_cache: PathBuf,
    cairn_image: PathBuf,
    sandbox: Sandbox,
}

impl Tools {
    pub fn new(work: &Path, sandbox: Sandbox) -> Result<Tools, Error> {
        Ok(Tools {
            bench_dir: sandbox.bench_dir(),
            cairn_cache: work.join("cairn-cache"),
            cairn_image: locate_cairn_image()?,
            sandbox,
        })
    }

    /// Why `tool` cannot produce `setting`, if it cannot.
    pub fn unsupported(&self, tool: Tool, setting: Setting) -> Option<String> {
        (tool == Tool::Mkinitramfs && setting == Setting::Uncompressed).then(|| {
            "mkinitramfs always compresses: a compressor it does not know, or whose \
             CONFIG_RD_* the kernel lacks, falls back to gzip"
                .to_owned()
        })
    }

    /// The peers' argument vector inside the sandbox.
    fn peer_argv(&self, tool: Tool, setting: Setting) -> Vec<String> {
        let out = format!("{SANDBOX_OUT}/{}", output_name(tool, setting));
        let release = self.sandbox.release.clone();
        let args: Vec<&str> = match tool {
            Tool::Cairn => unreachable!("cairn runs outside the sandbox"),
            Tool::Dracut => {
                let mut args = vec![
                    "dracut",
                    "--force",
                    "--quiet",
                    "--reproducible",
                    "--no-hostonly",
                    "--no-hostonly-cmdline",
                    "--no-early-microcode",
                    "--nostrip",
                    "--conf",
                    "/bench/dracut.conf",
                    "--confdir",
                    "/bench/dracut.conf.d",
                    "--modules",
                    DRACUT_MODULE,
                    "--tmpdir",
                    "/tmp",
                    "--kver",
                    &release,
                ];
                match setting {
                    Setting::Zstd3 => args.extend(["--compress", "zstd -3 -q -T1"]),
                    Setting::Uncompressed => args.push("--no-compress"),
                }
                args.push(&out);
                args
            }
            Tool::Mkinitramfs => vec![
                "mkinitramfs",
                "-d",
                "/bench/initramfs-tools",
                "-c",
                "zstd",
                "-l",
                "3",
                "-o",
                &out,
                &release,
            ],
        };
        args.into_iter().map(str::to_owned).collect()
    }

    fn command(&self, tool: Tool, setting: Setting) -> Command {
        match tool {
            Tool::Cairn => {
                let mut command = Command::new(&self.cairn_image);
                command
                    .arg("build")
                    .arg("--config")
                    .arg(self.bench_dir.join(format!("cairn-{}.toml", setting.key())))
                    .arg("--out")
                    .arg(self.cairn_out_dir(setting))
                    .arg("--cache")
                    .arg(&self.cairn_cache)
                    .arg("--source-date-epoch")
                    .arg(SOURCE_DATE_EPOCH.to_string())
                    // Every run assembles: the same inputs would find the last run's
                    // output current and assemble nothing.
                    .arg("--force");
                command
            }
            Tool::Dracut | Tool::Mkinitramfs => self
                .sandbox
                .command(&self.peer_argv(tool, setting), SOURCE_DATE_EPOCH),
        }
    }

    /// The command as the report shows it.
    pub fn command_line(&self, tool: Tool, setting: Setting) -> String {
        match tool {
            Tool::Cairn => format!(
                "cairn-image build --config cairn-{}.toml --out OUT --cache CACHE \
                 --source-date-epoch {SOURCE_DATE_EPOCH} --force",
                setting.key()
            ),
            Tool::Dracut | Tool::Mkinitramfs => format!(
                "SOURCE_DATE_EPOCH={SOURCE_DATE_EPOCH} {}",
                self.peer_argv(tool, setting).join(" ")
            ),
        }
    }

    fn cairn_out_dir(&self, setting: Setting) -> PathBuf {
        self.bench_dir
            .join("out")
            .join(format!("cairn-{}", setting.key()))
    }

    /// The initramfs a run of `tool` writes.
    pub fn output_file(&self, tool: Tool, setting: Setting) -> PathBuf {
        match tool {
            Tool::Cairn => self.cairn_out_dir(setting).join("initramfs.img"),
            _ => self.bench_dir.join("out").join(output_name(tool, setting)),
        }
    }

    /// Clears the last output and, for a cold run, the page cache (and for cairn's
    /// empty-cache runs its unpacked packages). `false` if the cache stayed.
    pub fn prepare(&self, tool: Tool, temperature: Temperature) -> Result<bool, Error> {
        self.remove_output(tool)?;
        if temperature == Temperature::ColdEmptyCache {
            let unpacked = self.cairn_cache.join("debs/unpacked");
            if unpacked.exists() {
                fs::remove_dir_all(&unpacked).map_err(Error::write(&unpacked))?;
            }
        }
        Ok(match temperature {
            Temperature::Warm => true,
            Temperature::Cold | Temperature::ColdEmptyCache => measure::drop_caches(),
        })
    }

    pub fn run_timed(&self, tool: Tool, setting: Setting) -> Result<Timed, Error> {
        measure::timed(&mut self.command(tool, setting), tool.name())
    }

    pub fn run_untimed(&self, tool: Tool, setting: Setting) -> Result<(), Error> {
        measure::run(&mut self.command(tool, setting), tool.name()).map(drop)
    }

    /// Removes every output of `tool`.
    pub fn remove_output(&self, tool: Tool) -> Result<(), Error> {
        for setting in Setting::ALL {
            let path = match tool {
                Tool::Cairn => self.cairn_out_dir(setting),
                _ => self.output_file(tool, setting),
            };
            let removed = match path.is_dir() {
                true => fs::remove_dir_all(&path),
                false => fs::remove_file(&path),
            };
            match removed {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::Write(path, err))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn output_name(tool: Tool, setting: Setting) -> String {
    format!("{}-{}.img", tool.name(), setting.key())
}

/// `CAIRN_IMAGE_TOOL`, else `cairn-image` beside this binary (both are built into the
/// same Cargo target directory).
fn locate_cairn_image() -> Result<PathBuf, Error> {
    let path = match std::env::var_os("CAIRN_IMAGE_TOOL") {
        Some(path) => PathBuf::from(path),
        None => std::env::current_exe()
            .map_err(Error::read("/proc/self/exe"))?
            .with_file_name("cairn-image"),
    };
    if path.is_file() {
        return Ok(path);
    }
    Err(Error::Unmeasurable(format!(
        "no cairn-image binary at {} (cargo build --release -p cairn-image, or set \
         CAIRN_IMAGE_TOOL)",
        path.display()
    )))
}
