//! cairn's side of the assembly benchmark: an image config holding the payload, as a
//! user of the builder would write it. Every payload file is a `file` component at its
//! image path; the kernel (pinned to the package and version the image was built
//! with), its modules, the library packages and os-release come from the image's own
//! config. No container images, Go or Cargo builds: only assembly is measured.

use cairn_image::config::Config;
use cairn_image::manifest::Manifest;
use toml::{Table, Value};

use super::payload::Payload;
use super::Setting;

/// Where the config sits relative to the payload: `file` paths are relative to it.
pub const PAYLOAD_DIR: &str = "payload";

/// The config text for `setting`.
pub fn render(config: &Config, manifest: &Manifest, payload: &Payload, setting: Setting) -> String {
    let mut doc = Table::new();
    doc.insert("os_release".into(), os_release(config));
    doc.insert("initramfs".into(), initramfs(setting));
    doc.insert("kernel".into(), kernel(config, manifest));
    let mut libraries = Table::new();
    libraries.insert("packages".into(), strings(&config.libraries.packages));
    doc.insert("libraries".into(), Value::Table(libraries));
    doc.insert("component".into(), components(payload));
    toml::to_string(&doc).expect("a table of strings serializes")
}

fn os_release(config: &Config) -> Value {
    let os = &config.os_release;
    let mut table = Table::new();
    for (key, value) in [
        ("name", &os.name),
        ("id", &os.id),
        ("pretty_name", &os.pretty_name),
        ("image_id", &os.image_id),
        ("home_url", &os.home_url),
    ] {
        table.insert(key.into(), Value::String(value.clone()));
    }
    Value::Table(table)
}

fn initramfs(setting: Setting) -> Value {
    let mut table = Table::new();
    match setting {
        Setting::Zstd3 => {
            table.insert("compression".into(), "zstd".into());
            table.insert("level".into(), Value::Integer(3));
        }
        Setting::Uncompressed => {
            table.insert("compression".into(), "none".into());
        }
    }
    Value::Table(table)
}

fn kernel(config: &Config, manifest: &Manifest) -> Value {
    let mut table = Table::new();
    table.insert("package".into(), manifest.kernel.package.clone().into());
    table.insert("version".into(), manifest.kernel.version.clone().into());
    table.insert("cmdline".into(), config.kernel.cmdline.clone().into());
    table.insert("modules".into(), strings(&config.kernel.modules));
    Value::Table(table)
}

/// One component per file, named by its path; the symlinks ride on the first.
fn components(payload: &Payload) -> Value {
    let mut list = Vec::new();
    for file in &payload.files {
        let mut table = Table::new();
        table.insert("name".into(), file.path.clone().into());
        table.insert("install".into(), file.path.clone().into());
        let source = format!("{PAYLOAD_DIR}{}", file.path);
        table.insert("file".into(), source.into());
        list.push(table);
    }
    if let Some(first) = list.first_mut() {
        let links: Table = payload
            .symlinks
            .iter()
            .map(|(path, target)| (path.clone(), Value::String(target.clone())))
            .collect();
        first.insert("symlinks".into(), Value::Table(links));
    }
    Value::Array(list.into_iter().map(Value::Table).collect())
}

fn strings(items: &[String]) -> Value {
    Value::Array(items.iter().cloned().map(Value::String).collect())
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::super::payload::PayloadFile;
    use super::*;

    const CONFIG: &str = r#"
[os_release]
name = "cairn"
id = "cairn"
pretty_name = "cairn Kubernetes node"
image_id = "cairn-node"
home_url = "https://example.invalid/cairn"

[initramfs]
compression = "none"

[kernel]
package = "linux-image-cloud-amd64"
cmdline = "console=ttyS0"
modules = ["virtio_net", "overlay"]

[libraries]
packages = ["libc6"]

[[component]]
name = "agent"
install = "/init"
file = "agent"
"#;

    fn manifest() -> Manifest {
        let text = include_str!("../../fixtures/manifest-sample.json");
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn the_rendered_config_is_a_valid_builder_config() {
        let config = Config::parse(Path::new("cairn.toml"), CONFIG).unwrap();
        let payload = Payload {
            root: PathBuf::from("/w/bench/payload"),
            files: vec![
                PayloadFile {
                    path: "/init".into(),
                    mode: 0o755,
                    size: 1,
                    elf: true,
                },
                PayloadFile {
                    path: "/usr/sbin/xtables-nft-multi".into(),
                    mode: 0o755,
                    size: 1,
                    elf: true,
                },
            ],
            symlinks: vec![("/usr/sbin/iptables".into(), "xtables-nft-multi".into())],
            modules: config.kernel.modules.clone(),
        };
        let text = render(&config, &manifest(), &payload, Setting::Zstd3);
        let back = Config::parse(Path::new("bench.toml"), &text).unwrap();
        assert_eq!(back.kernel.package, "linux-image-6.1.0-40-cloud-amd64");
        assert_eq!(back.kernel.version.as_deref(), Some("6.1.153-1"));
        assert_eq!(back.kernel.modules, ["virtio_net", "overlay"]);
        assert_eq!(back.initramfs.level, Some(3));
        assert_eq!(back.components.len(), 2);
        assert_eq!(
            back.components[1].file.as_deref(),
            Some(Path::new("payload/usr/sbin/xtables-nft-multi"))
        );
        assert_eq!(
            back.components[0].symlinks["/usr/sbin/iptables"],
            "xtables-nft-multi"
        );
        assert!(back.container_images.is_empty());
    }
}
