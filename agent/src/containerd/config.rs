//! `/etc/containerd/config.toml`, rendered from the node's fixed layout.
//!
//! containerd 2.x config schema `version = 4`, the current one of the pinned v2.3.7
//! (`version.ConfigVersion`): version 3, which `docs/cri/config.md` still shows, makes
//! containerd migrate the file at every start (and log so), since 2.3 moved the gRPC
//! listener from `[grpc]` into the `io.containerd.server.v1.grpc` plugin. The CRI
//! sections are the same in both. Only what differs from containerd's defaults or what cairn relies on is
//! written, each with its reason. Nothing here names a registry: the sandbox image is
//! preloaded ([`super::import`]), and registries are configured per host in
//! `registry.config_path` ([`super::registries`]).

use super::cni::TEMPLATE as CNI_TEMPLATE;
use super::registries::HOSTS_DIR;
use super::{CNI_BIN_DIR, CNI_CONF_DIR, ROOT, SANDBOX_IMAGE, SOCKET, STATE};

/// The runc binary the shim executes (the image installs it there).
pub const RUNC: &str = "/usr/bin/runc";

/// The whole config file; `template`: the CNI conflist comes from the Node's pod CIDR
/// ([`super::cni`]), else the agent writes it.
pub fn render(template: bool) -> String {
    let conf_template = match template {
        true => format!(
            "    # Rendered into conf_dir once the kubelet passes the Node's pod CIDR (cni.rs).\n    \
             conf_template = \"{CNI_TEMPLATE}\"\n"
        ),
        false => String::new(),
    };
    format!(
        r#"# Written by cairn-agent at every boot; edits are lost.
version = 4
root = "{ROOT}"
state = "{STATE}"
# Snapshotters that cannot work on the node's tmpfs-backed root.
disabled_plugins = [
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.blockfile",
]

[plugins.'io.containerd.server.v1.grpc']
  address = "{SOCKET}"

[plugins.'io.containerd.cri.v1.images']
  # overlay is loaded by the agent; overlayfs on tmpfs works (measured: docs/architecture.md).
  snapshotter = "overlayfs"
  # Keep layer blobs: preloaded images cannot be pulled again.
  discard_unpacked_layers = false
  # A pull that receives no byte for this long is cancelled with that reason, so a
  # stalled registry fails the pod's pull instead of holding it (default 5m).
  image_pull_progress_timeout = "1m"

  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    # Imported by the agent before the kubelet starts; never pulled.
    sandbox = "{SANDBOX_IMAGE}"

  [plugins.'io.containerd.cri.v1.images'.registry]
    # One hosts.toml per declared registry (mirrors, CA, client certificate), written
    # by the agent at every boot from the image's and the node config's settings.
    config_path = "{HOSTS_DIR}"

[plugins.'io.containerd.cri.v1.runtime']
  enable_selinux = false
  # The cloud kernel has no hugetlb controller in the cgroup2 hierarchy by default.
  tolerate_missing_hugetlb_controller = true
  disable_hugetlb_controller = true

  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"

    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "{RUNC}"
        # No systemd on the node: runc manages cgroups directly (cgroupfs driver).
        SystemdCgroup = false

  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["{CNI_BIN_DIR}"]
    conf_dir = "{CNI_CONF_DIR}"
    max_conf_num = 1
{conf_template}"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_version_4_with_cri_on_our_paths() {
        let text = render(true);
        let config: toml_check::Value = toml_check::parse(&text);
        assert_eq!(config.get("version"), Some("4"));
        assert!(text.contains("[plugins.'io.containerd.server.v1.grpc']"));
        assert_eq!(config.get("root"), Some("\"/var/lib/containerd\""));
        assert_eq!(config.get("state"), Some("\"/run/containerd\""));
        assert_eq!(
            config.get("address"),
            Some("\"/run/containerd/containerd.sock\"")
        );
        assert_eq!(config.get("snapshotter"), Some("\"overlayfs\""));
        assert_eq!(config.get("sandbox"), Some("\"localhost/cairn/pause:1\""));
        assert_eq!(config.get("SystemdCgroup"), Some("false"));
        assert_eq!(config.get("BinaryName"), Some("\"/usr/bin/runc\""));
        assert_eq!(config.get("bin_dirs"), Some("[\"/opt/cni/bin\"]"));
        assert_eq!(config.get("conf_dir"), Some("\"/etc/cni/net.d\""));
        assert_eq!(
            config.get("conf_template"),
            Some("\"/etc/cni/cairn.conflist.tmpl\"")
        );
        // A node without a cluster network: the agent's conflist, no template.
        let single = render(false);
        assert!(!single.contains("conf_template"));
        assert!(single.ends_with("    max_conf_num = 1\n"));
        assert_eq!(
            config.get("config_path"),
            Some("\"/etc/containerd/certs.d\"")
        );
        // The CRI plugin is on: it is never listed as disabled.
        assert!(!text.contains("io.containerd.grpc.v1.cri\""));
        let settings: Vec<&str> = text
            .lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .collect();
        assert!(settings
            .iter()
            .all(|l| !l.contains("mirror") && !l.contains("endpoint")));
    }

    /// A flat key view of the rendered TOML: enough to check values without a TOML
    /// parser in the agent's dependencies.
    mod toml_check {
        use std::collections::BTreeMap;

        pub struct Value(BTreeMap<String, String>);

        impl Value {
            pub fn get(&self, key: &str) -> Option<&str> {
                self.0.get(key).map(String::as_str)
            }
        }

        pub fn parse(text: &str) -> Value {
            let mut keys = BTreeMap::new();
            for line in text.lines().map(str::trim) {
                if line.starts_with('#') || line.starts_with('[') {
                    continue;
                }
                if let Some((key, value)) = line.split_once(" = ") {
                    let previous = keys.insert(key.to_owned(), value.to_owned());
                    assert!(previous.is_none(), "key {key} set twice");
                }
            }
            Value(keys)
        }
    }
}
