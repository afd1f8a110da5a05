//! The per-node config the launcher hands over at boot, merged with the image's own
//! settings (docs/interfaces.md "Per-node config").
//!
//! Read once, after the modules (`qemu_fw_cfg` shows the item in sysfs) and before
//! anything that uses it. Never fatal: a node whose config is missing runs on the
//! image's settings and says so; one whose config is malformed does the same, with
//! `node-config` false and the file, field and problem as its reason, so the node
//! stays reachable to be told better.

use std::io::Read;
use std::path::Path;

use cairn_api::node_config::{
    NodeConfig, FW_CFG_NAME, FW_CFG_PATH, IMAGE_REGISTRIES_PATH, MAX_SIZE,
};

use crate::Paths;

/// What the boot goes on with, and what the `node-config` condition says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// The image's settings with the node's merged over them.
    pub config: NodeConfig,
    /// Whether every file there was could be used.
    pub ok: bool,
    /// Whether a node config was given but ignored (malformed): what it would have
    /// set, e.g. the owner, is then unknown rather than absent.
    pub node_ignored: bool,
    pub reason: String,
}

/// Reads the image's registries and the node config under `paths`.
pub fn load(paths: &Paths) -> Loaded {
    let mut problems = Vec::new();
    let image = match read(&paths.resolve(IMAGE_REGISTRIES_PATH)) {
        Ok(Some(config)) => config,
        Ok(None) => NodeConfig::default(),
        Err(problem) => {
            problems.push(format!("image settings {IMAGE_REGISTRIES_PATH}: {problem}"));
            NodeConfig::default()
        }
    };
    let mut node_ignored = false;
    let (node, given) = match read(&paths.resolve(FW_CFG_PATH)) {
        Ok(Some(config)) => (config, "node config given"),
        Ok(None) => (NodeConfig::default(), "no node config given"),
        Err(problem) => {
            node_ignored = true;
            problems.push(format!(
                "node config (firmware config item {FW_CFG_NAME}) ignored: {problem}"
            ));
            (NodeConfig::default(), "")
        }
    };
    let config = image.merged_with(&node);
    let hosts: Vec<&str> = config.registries.iter().map(|r| r.host.as_str()).collect();
    let registries = match hosts.is_empty() {
        true => "no registries declared".to_owned(),
        false => format!("registries {}", hosts.join(", ")),
    };
    let ok = problems.is_empty();
    let reason = match ok {
        true => format!("{given}; {registries}"),
        false => format!(
            "{}; running on the image's settings: {registries}",
            problems.join("; ")
        ),
    };
    Loaded {
        config,
        ok,
        node_ignored,
        reason,
    }
}

/// `Ok(None)` when the file does not exist.
fn read(path: &Path) -> Result<Option<NodeConfig>, String> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(format!("cannot open: {err}")),
    };
    let mut bytes = Vec::new();
    file.take(MAX_SIZE as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| format!("cannot read: {err}"))?;
    let text = String::from_utf8(bytes).map_err(|_| "is not UTF-8".to_owned())?;
    NodeConfig::parse(&text)
        .map(Some)
        .map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(paths: &Paths, absolute: &str, text: &str) {
        let path = paths.resolve(absolute);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    const IMAGE: &str = "version = 1\n[[registry]]\nhost = \"a\"\n[[registry]]\nhost = \"b\"\n";

    #[test]
    fn nothing_given_is_fine_and_said() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = load(&Paths::under_root(dir.path()));
        assert!(loaded.ok);
        assert_eq!(loaded.config, NodeConfig::default());
        assert_eq!(
            loaded.reason,
            "no node config given; no registries declared"
        );
    }

    #[test]
    fn the_node_config_is_merged_over_the_image() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::under_root(dir.path());
        write(&paths, IMAGE_REGISTRIES_PATH, IMAGE);
        let node = "version = 1\n[[registry]]\nhost = \"b\"\nplain_http = true\n\
                    [[registry]]\nhost = \"c\"\n";
        write(&paths, FW_CFG_PATH, node);
        let loaded = load(&paths);
        assert!(loaded.ok, "{}", loaded.reason);
        assert_eq!(loaded.reason, "node config given; registries a, b, c");
        assert!(loaded.config.registries[1].plain_http);
    }

    #[test]
    fn a_malformed_node_config_is_ignored_with_its_field_named() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::under_root(dir.path());
        write(&paths, IMAGE_REGISTRIES_PATH, IMAGE);
        write(
            &paths,
            FW_CFG_PATH,
            "version = 1\n[[registry]]\nhost = \"https://x\"\n",
        );
        let loaded = load(&paths);
        assert!(!loaded.ok);
        assert_eq!(loaded.config.registries.len(), 2);
        assert!(
            loaded.reason.starts_with(
                "node config (firmware config item opt/cairn/node.toml) ignored: \
                 field `registry[0].host`"
            ),
            "{}",
            loaded.reason
        );
        assert!(loaded
            .reason
            .ends_with("running on the image's settings: registries a, b"));
    }

    #[test]
    fn an_oversized_node_config_is_not_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::under_root(dir.path());
        write(&paths, FW_CFG_PATH, &"#".repeat(MAX_SIZE + 100));
        let loaded = load(&paths);
        assert!(!loaded.ok);
        assert!(
            loaded.reason.contains(&format!("{} bytes", MAX_SIZE + 1)),
            "{}",
            loaded.reason
        );
    }
}
