//! The payload every tool assembles: the files the built image's components put in
//! the initramfs (agent, containerd, runc, CNI plugins, kube, iptables, the preloaded
//! image archives, passwd), taken from the built initramfs itself so every tool gets
//! the same bytes; plus the config's kernel modules (each tool adds their
//! dependencies) and, implicitly, the shared libraries of its ELF files (each tool
//! resolves those its own way). What a tool adds besides (cairn's os-release and
//! build facts, dracut's and initramfs-tools' own init, klibc, kmod) is its own
//! overhead and shows in its output.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use cairn_image::config::Config;
use cairn_image::manifest::Manifest;
use cairn_initramfs::FileType;

use crate::error::Error;

/// One regular file of the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadFile {
    /// Absolute path in the image.
    pub path: String,
    pub mode: u32,
    pub size: u64,
    /// ELF: the tools resolve its shared libraries.
    pub elf: bool,
}

#[derive(Debug, Clone)]
pub struct Payload {
    /// Where the files are on the host, at their image paths below it.
    pub root: PathBuf,
    pub files: Vec<PayloadFile>,
    /// (image path, target).
    pub symlinks: Vec<(String, String)>,
    /// Kernel modules as the config names them.
    pub modules: Vec<String>,
}

impl Payload {
    /// Extracts the payload of the image in `image_dir` (built from `config`) under
    /// `root`, replacing what was there.
    pub fn extract(
        image_dir: &Path,
        config: &Config,
        manifest: &Manifest,
        root: &Path,
    ) -> Result<Payload, Error> {
        let wanted = payload_paths(config, manifest);
        let initrd = image_dir.join(&manifest.initramfs.file);
        let bytes = fs::read(&initrd).map_err(Error::read(&initrd))?;
        let entries = cairn_initramfs::read(&bytes).map_err(Error::initramfs(initrd))?;
        if root.exists() {
            fs::remove_dir_all(root).map_err(Error::write(root))?;
        }
        let mut payload = Payload {
            root: root.to_owned(),
            files: Vec::new(),
            symlinks: Vec::new(),
            modules: config.kernel.modules.clone(),
        };
        for entry in entries {
            let path = format!("/{}", entry.path);
            if !wanted.contains(path.as_str()) {
                continue;
            }
            match entry.file_type() {
                FileType::Regular => payload.add_file(path, entry.mode & 0o7777, &entry.data)?,
                FileType::Symlink => payload
                    .symlinks
                    .push((path, String::from_utf8_lossy(&entry.data).into_owned())),
                _ => {}
            }
        }
        Ok(payload)
    }

    fn add_file(&mut self, path: String, mode: u32, data: &[u8]) -> Result<(), Error> {
        let host = self.host_path(&path);
        if let Some(dir) = host.parent() {
            fs::create_dir_all(dir).map_err(Error::write(dir))?;
        }
        fs::write(&host, data).map_err(Error::write(&host))?;
        fs::set_permissions(&host, fs::Permissions::from_mode(mode))
            .map_err(Error::write(&host))?;
        self.files.push(PayloadFile {
            path,
            mode,
            size: data.len() as u64,
            elf: data.starts_with(b"\x7fELF"),
        });
        Ok(())
    }

    /// Where the file at image path `path` is on the host.
    pub fn host_path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// The list the dracut module and the initramfs-tools hook read, one item a line:
    /// `exec PATH` (ELF: libraries resolved), `file PATH`, `symlink PATH TARGET`,
    /// `module NAME`. Paths are image paths; the file itself is under `/bench/payload`.
    pub fn list(&self) -> String {
        let mut text = String::new();
        for file in &self.files {
            let kind = if file.elf { "exec" } else { "file" };
            let _ = writeln!(text, "{kind} {}", file.path);
        }
        for (path, target) in &self.symlinks {
            let _ = writeln!(text, "symlink {path} {target}");
        }
        for module in &self.modules {
            let _ = writeln!(text, "module {module}");
        }
        text
    }
}

/// Image paths of the files whose component is one of the config's components or
/// preloaded images: not the kernel's modules, the libraries, or what the builder
/// itself writes (os-release, build facts, base directories).
pub fn payload_paths<'a>(config: &Config, manifest: &'a Manifest) -> BTreeSet<&'a str> {
    let mut components: BTreeSet<String> =
        config.components.iter().map(|c| c.name.clone()).collect();
    components.extend(
        config
            .container_images
            .iter()
            .map(|i| format!("image/{}", i.name)),
    );
    manifest
        .files
        .iter()
        .filter(|f| components.contains(&f.component))
        .filter(|f| f.kind == "file" || f.kind == "symlink")
        .map(|f| f.path.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_is_the_components_and_images_not_kernel_libraries_or_metadata() {
        let config = Config::parse(
            Path::new("cairn.toml"),
            r#"
[os_release]
name = "cairn"
id = "cairn"
pretty_name = "cairn"
image_id = "cairn-node"
home_url = "https://example.invalid/"

[initramfs]
compression = "none"

[kernel]
package = "linux-image-cloud-amd64"
cmdline = "console=ttyS0"

[libraries]
packages = ["libc6"]

[[component]]
name = "agent"
install = "/init"
file = "agent"

[[container_image]]
name = "pause"
reference = "localhost/cairn/pause:1"
entrypoint = ["/pause"]

[[container_image.component]]
name = "pause"
install = "/pause"
file = "pause"
"#,
        )
        .unwrap();
        let manifest: Manifest =
            serde_json::from_str(include_str!("../../fixtures/manifest-sample.json")).unwrap();
        let paths: Vec<&str> = payload_paths(&config, &manifest).into_iter().collect();
        assert_eq!(paths, ["/init", "/usr/share/cairn/images/pause.tar"]);
    }

    #[test]
    fn the_list_names_every_kind_of_item() {
        let payload = Payload {
            root: PathBuf::from("/w/payload"),
            files: vec![
                PayloadFile {
                    path: "/usr/bin/kube".into(),
                    mode: 0o755,
                    size: 10,
                    elf: true,
                },
                PayloadFile {
                    path: "/usr/share/base-passwd/passwd.master".into(),
                    mode: 0o644,
                    size: 5,
                    elf: false,
                },
            ],
            symlinks: vec![("/etc/passwd".into(), "../usr/share/x".into())],
            modules: vec!["virtio_net".into()],
        };
        assert_eq!(
            payload.list(),
            "exec /usr/bin/kube\nfile /usr/share/base-passwd/passwd.master\n\
             symlink /etc/passwd ../usr/share/x\nmodule virtio_net\n"
        );
        assert_eq!(payload.bytes(), 15);
        assert_eq!(
            payload.host_path("/usr/bin/kube"),
            Path::new("/w/payload/usr/bin/kube")
        );
    }
}
