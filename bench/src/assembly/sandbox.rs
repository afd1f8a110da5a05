//! The peers' sandbox: Debian's `dracut` and `mkinitramfs`, run from extracted
//! packages, never installed.
//!
//! Installing them is not an option on a shared host: the frontends `dracut` and
//! `initramfs-tools` conflict with each other; their cores pull in `udev`, whose
//! postinst starts udevd on the host; and both expect the kernel's modules in the
//! host's `/lib/modules` and its config in `/boot`. Instead the bench fetches the
//! packages with `apt-get download` (through the builder's own Debian cache),
//! unpacks each, and merges them into one tree (`WORK/root`, usr-merged as bookworm
//! is). `fixtures/peers/enter.sh` then runs a tool in a chroot that sees the host's
//! `/usr` and `/etc` with that tree laid over them through read-only overlays, in a
//! private mount namespace (`unshare --mount`): the tools run at their usual paths
//! with their usual defaults, and nothing on the host changes. `depmod` is run once on
//! the extracted kernel (Debian's kernel package ships no `modules.dep`).
//!
//! The tree is rebuilt only when a package changes (a stamp of their sha256s).

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use cairn_image::deb::{Deb, DebCache};
use cairn_image::manifest::KernelInfo;
use serde::{Deserialize, Serialize};

use super::payload::Payload;
use crate::error::Error;
use crate::measure;

/// The tools and what they need at run time that a bookworm host may lack.
pub const TOOL_PACKAGES: [&str; 6] = [
    "dracut-core",
    "initramfs-tools-core",
    "klibc-utils",
    "libklibc",
    "cpio",
    "kmod",
];
/// The name of the dracut module holding the payload.
pub const DRACUT_MODULE: &str = "cairnpayload";

const ENTER: &str = include_str!("../../fixtures/peers/enter.sh");
const DRACUT_MODULE_SETUP: &str = include_str!("../../fixtures/peers/dracut-module-setup.sh");
const INITRAMFS_TOOLS_HOOK: &str = include_str!("../../fixtures/peers/initramfs-tools-hook.sh");
const INITRAMFS_CONF: &str = include_str!("../../fixtures/peers/initramfs.conf");
const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// A package in the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub version: String,
}

/// A prepared sandbox under `work`.
#[derive(Debug, Clone)]
pub struct Sandbox {
    work: PathBuf,
    /// The kernel release, `uname -r` style: the tools' `--kver`.
    pub release: String,
    pub packages: Vec<Package>,
}

impl Sandbox {
    /// Fetches and unpacks what the tools need, and writes their configuration and
    /// the payload list. The payload must already be under `WORK/bench/payload`.
    pub fn prepare(
        work: &Path,
        kernel: &KernelInfo,
        libraries: &[String],
        payload: &Payload,
    ) -> Result<Sandbox, Error> {
        let cache = DebCache::new(work.join("debs"));
        let mut debs = Vec::new();
        for name in TOOL_PACKAGES
            .iter()
            .copied()
            .chain(libraries.iter().map(String::as_str))
        {
            debs.push(cache.fetch(name, None).map_err(Error::deb(name))?);
        }
        let kernel_deb = cache
            .fetch(&kernel.package, Some(&kernel.version))
            .map_err(Error::deb(&kernel.package))?;
        debs.push(kernel_deb);
        let sandbox = Sandbox {
            work: work.to_owned(),
            release: kernel.release.clone(),
            packages: debs
                .iter()
                .map(|d| Package {
                    name: d.control.package.clone(),
                    version: d.control.version.clone(),
                })
                .collect(),
        };
        sandbox.build_root(&cache, &debs)?;
        sandbox.write_config(payload)?;
        Ok(sandbox)
    }

    fn root(&self) -> PathBuf {
        self.work.join("root")
    }

    /// `WORK/bench`, seen as `/bench` inside.
    pub fn bench_dir(&self) -> PathBuf {
        self.work.join("bench")
    }

    fn build_root(&self, cache: &DebCache, debs: &[Deb]) -> Result<(), Error> {
        let root = self.root();
        let stamp_path = self.work.join("root.stamp");
        let stamp: String = debs.iter().map(|d| format!("{}\n", d.sha256)).collect();
        if root.is_dir() && fs::read_to_string(&stamp_path).ok().as_deref() == Some(&stamp) {
            return Ok(());
        }
        if root.exists() {
            fs::remove_dir_all(&root).map_err(Error::write(&root))?;
        }
        for deb in debs {
            let tree = cache
                .unpacked(deb)
                .map_err(Error::deb(&deb.control.package))?;
            merge_tree(&tree, &root)?;
        }
        for dir in ["etc", "boot", "usr/lib/dracut/modules.d"] {
            let dir = root.join(dir);
            fs::create_dir_all(&dir).map_err(Error::write(&dir))?;
        }
        self.depmod()?;
        fs::write(&stamp_path, stamp).map_err(Error::write(&stamp_path))
    }

    /// The extracted kmod's depmod on the extracted kernel (`-b ROOT/usr`: usr-merged).
    fn depmod(&self) -> Result<(), Error> {
        let root = self.root();
        let mut command = Command::new(root.join("usr/bin/kmod"));
        command
            .arg0("depmod")
            .arg("-b")
            .arg(root.join("usr"))
            .arg(&self.release);
        measure::run(&mut command, "depmod (the extracted kernel)").map(drop)
    }

    fn write_config(&self, payload: &Payload) -> Result<(), Error> {
        let bench = self.bench_dir();
        let tools = bench.join("initramfs-tools");
        let module = self
            .root()
            .join("usr/lib/dracut/modules.d")
            .join(format!("99{DRACUT_MODULE}"));
        let modules: String = payload.modules.iter().map(|m| format!("{m}\n")).collect();
        let files: [(PathBuf, &str, u32); 8] = [
            (self.work.join("enter.sh"), ENTER, 0o755),
            (module.join("module-setup.sh"), DRACUT_MODULE_SETUP, 0o755),
            (tools.join("initramfs.conf"), INITRAMFS_CONF, 0o644),
            (tools.join("modules"), &modules, 0o644),
            (
                tools.join("hooks/cairn-payload"),
                INITRAMFS_TOOLS_HOOK,
                0o755,
            ),
            (bench.join("dracut.conf"), "", 0o644),
            (bench.join("payload.list"), &payload.list(), 0o644),
            (bench.join("dracut.conf.d/.keep"), "", 0o644),
        ];
        for (path, text, mode) in files {
            write_file(&path, text, mode)?;
        }
        for dir in [
            tools.join("conf.d"),
            tools.join("scripts"),
            bench.join("out"),
        ] {
            fs::create_dir_all(&dir).map_err(Error::write(&dir))?;
        }
        Ok(())
    }

    /// `argv` run inside the sandbox, with a clean environment.
    pub fn command(&self, argv: &[String], source_date_epoch: u64) -> Command {
        let mut command = Command::new("unshare");
        command
            .args(["--mount", "--propagation", "private", "--", "sh"])
            .arg(self.work.join("enter.sh"))
            .arg(&self.work)
            .args(argv)
            .env_clear()
            .env("PATH", PATH)
            .env("LC_ALL", "C")
            .env("HOME", "/tmp")
            .env("SOURCE_DATE_EPOCH", source_date_epoch.to_string());
        command
    }
}

fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), Error> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(Error::write(dir))?;
    }
    fs::write(path, text).map_err(Error::write(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(Error::write(path))
}

/// Where `rel` (a path inside a package) lands in a usr-merged tree.
pub fn merged_path(rel: &Path) -> PathBuf {
    let mut parts = rel
        .components()
        .filter(|c| matches!(c, Component::Normal(_)));
    match parts.next() {
        Some(first) => {
            let first = first.as_os_str();
            let merged = ["bin", "sbin", "lib", "lib64", "lib32", "libx32"]
                .iter()
                .any(|d| first == *d);
            let head = match merged {
                true => Path::new("usr").join(first),
                false => PathBuf::from(first),
            };
            parts.fold(head, |path, part| path.join(part))
        }
        None => PathBuf::new(),
    }
}

/// Hard-links (or copies) every file of `tree` into `root` at its usr-merged path;
/// symlinks are recreated. A path two packages share keeps the first.
fn merge_tree(tree: &Path, root: &Path) -> Result<(), Error> {
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        let src = tree.join(&rel);
        let dst = root.join(merged_path(&rel));
        let meta = fs::symlink_metadata(&src).map_err(Error::read(&src))?;
        if meta.is_dir() {
            fs::create_dir_all(&dst).map_err(Error::write(&dst))?;
            for entry in fs::read_dir(&src).map_err(Error::read(&src))? {
                let entry = entry.map_err(Error::read(&src))?;
                pending.push(rel.join(entry.file_name()));
            }
        } else if fs::symlink_metadata(&dst).is_err() {
            link_one(&src, &dst, meta.is_symlink())?;
        }
    }
    Ok(())
}

fn link_one(src: &Path, dst: &Path, symlink: bool) -> Result<(), Error> {
    if let Some(dir) = dst.parent() {
        fs::create_dir_all(dir).map_err(Error::write(dir))?;
    }
    let result = if symlink {
        fs::read_link(src).and_then(|target| std::os::unix::fs::symlink(target, dst))
    } else {
        fs::hard_link(src, dst).or_else(|_| fs::copy(src, dst).map(drop))
    };
    result.map_err(|e: io::Error| Error::Write(dst.to_owned(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_paths_are_usr_merged() {
        assert_eq!(
            merged_path(Path::new("bin/kmod")),
            Path::new("usr/bin/kmod")
        );
        assert_eq!(
            merged_path(Path::new("lib/modules/6.1.0/kernel/x.ko")),
            Path::new("usr/lib/modules/6.1.0/kernel/x.ko")
        );
        assert_eq!(
            merged_path(Path::new("./sbin/depmod")),
            Path::new("usr/sbin/depmod")
        );
        assert_eq!(
            merged_path(Path::new("usr/lib/dracut")),
            Path::new("usr/lib/dracut")
        );
        assert_eq!(
            merged_path(Path::new("etc/dracut.conf")),
            Path::new("etc/dracut.conf")
        );
        assert_eq!(merged_path(Path::new("libexec/x")), Path::new("libexec/x"));
        assert_eq!(merged_path(Path::new("")), Path::new(""));
    }

    #[test]
    fn trees_merge_with_links_and_first_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, root) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("root"),
        );
        fs::create_dir_all(a.join("bin")).unwrap();
        fs::create_dir_all(b.join("usr/bin")).unwrap();
        fs::create_dir_all(b.join("sbin")).unwrap();
        fs::write(a.join("bin/kmod"), "kmod").unwrap();
        fs::write(b.join("usr/bin/kmod"), "other").unwrap();
        std::os::unix::fs::symlink("/bin/kmod", b.join("sbin/depmod")).unwrap();
        merge_tree(&a, &root).unwrap();
        merge_tree(&b, &root).unwrap();
        assert_eq!(
            fs::read_to_string(root.join("usr/bin/kmod")).unwrap(),
            "kmod"
        );
        assert_eq!(
            fs::read_link(root.join("usr/sbin/depmod")).unwrap(),
            Path::new("/bin/kmod")
        );
    }
}
