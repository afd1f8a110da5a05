//! containerd's registry host configuration (`hosts.toml` layout), rendered from the
//! node's `[[registry]]` settings: the image's ([`IMAGE_REGISTRIES_PATH`]) merged with
//! the per-node config's (see [`crate::node_config`]).
//!
//! Each registry gets `HOSTS_DIR/<host>/hosts.toml` (containerd's
//! `docs/hosts.md`): its mirrors as `[host."URL"]` entries with pull and resolve
//! capabilities, tried in order before the registry itself (`server`), and the CA
//! bundle and client certificate beside it, referenced by absolute path. A host with
//! no directory gets containerd's default: HTTPS to the host, verified against the
//! (empty) system trust store, so a registry is reachable only once declared.
//!
//! [`IMAGE_REGISTRIES_PATH`]: cairn_api::node_config::IMAGE_REGISTRIES_PATH

use std::path::{Path, PathBuf};

use cairn_api::node_config::{NodeConfig, Registry};

/// containerd's `registry.config_path`.
pub const HOSTS_DIR: &str = "/etc/containerd/certs.d";

/// One file to write, relative to [`HOSTS_DIR`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub path: PathBuf,
    pub contents: String,
    pub mode: u32,
}

/// Every file of the hosts directory for `config`.
pub fn render(config: &NodeConfig) -> Vec<File> {
    config.registries.iter().flat_map(render_registry).collect()
}

fn render_registry(registry: &Registry) -> Vec<File> {
    let dir = Path::new(&registry.host);
    let absolute = |name: &str| format!("{HOSTS_DIR}/{}/{name}", registry.host);
    let mut files = Vec::new();
    // Settings that apply to the server and to every mirror alike.
    let mut trust = String::new();
    if let Some(ca) = &registry.ca {
        files.push(File {
            path: dir.join("ca.crt"),
            contents: ca.clone(),
            mode: 0o644,
        });
        trust.push_str(&format!("ca = \"{}\"\n", absolute("ca.crt")));
    }
    if let (Some(cert), Some(key)) = (&registry.client_certificate, &registry.client_key) {
        files.push(File {
            path: dir.join("client.crt"),
            contents: cert.clone(),
            mode: 0o644,
        });
        files.push(File {
            path: dir.join("client.key"),
            contents: key.clone(),
            mode: 0o600,
        });
        trust.push_str(&format!(
            "client = [[\"{}\", \"{}\"]]\n",
            absolute("client.crt"),
            absolute("client.key")
        ));
    }
    let mut text = String::from(
        "# Written by cairn-agent at every boot from the image's and the node config's\n\
         # [[registry]] settings; edits are lost.\n",
    );
    text.push_str(&format!("server = \"{}\"\n", server_url(registry)));
    text.push_str(&trust);
    for mirror in &registry.mirrors {
        text.push_str(&format!("\n[host.\"{mirror}\"]\n"));
        text.push_str("capabilities = [\"pull\", \"resolve\"]\n");
        text.push_str(&trust);
    }
    files.push(File {
        path: dir.join("hosts.toml"),
        contents: text,
        mode: 0o644,
    });
    files
}

/// The registry's own endpoint. Docker Hub's image references say `docker.io`, its
/// API lives elsewhere (containerd's default for that name, kept when configured).
fn server_url(registry: &Registry) -> String {
    let scheme = if registry.plain_http { "http" } else { "https" };
    match registry.host.as_str() {
        "docker.io" => format!("{scheme}://registry-1.docker.io"),
        host => format!("{scheme}://{host}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n";

    fn file<'a>(files: &'a [File], path: &str) -> &'a File {
        files
            .iter()
            .find(|f| f.path == Path::new(path))
            .unwrap_or_else(|| panic!("no {path} in {files:?}"))
    }

    #[test]
    fn no_registries_no_files() {
        assert!(render(&NodeConfig::default()).is_empty());
    }

    #[test]
    fn mirrors_come_first_and_share_the_trust() {
        let config = NodeConfig {
            version: 1,
            owner: None,
            cluster: None,
            registries: vec![Registry {
                host: "registry.test:5000".to_owned(),
                mirrors: vec![
                    "https://10.0.2.2:5443".to_owned(),
                    "https://m2/v2/x".to_owned(),
                ],
                ca: Some(PEM.to_owned()),
                client_certificate: Some(PEM.to_owned()),
                client_key: Some("KEY".to_owned()),
                plain_http: false,
            }],
        };
        let files = render(&config);
        assert_eq!(files.len(), 4);
        assert_eq!(file(&files, "registry.test:5000/ca.crt").contents, PEM);
        assert_eq!(file(&files, "registry.test:5000/client.key").mode, 0o600);
        let hosts = &file(&files, "registry.test:5000/hosts.toml").contents;
        let ca = "ca = \"/etc/containerd/certs.d/registry.test:5000/ca.crt\"";
        let client = "client = [[\"/etc/containerd/certs.d/registry.test:5000/client.crt\", \
                      \"/etc/containerd/certs.d/registry.test:5000/client.key\"]]";
        let expected = format!(
            "server = \"https://registry.test:5000\"\n{ca}\n{client}\n\n\
             [host.\"https://10.0.2.2:5443\"]\ncapabilities = [\"pull\", \"resolve\"]\n{ca}\n{client}\n\n\
             [host.\"https://m2/v2/x\"]\ncapabilities = [\"pull\", \"resolve\"]\n{ca}\n{client}\n"
        );
        assert!(hosts.ends_with(&expected), "{hosts}");
    }

    #[test]
    fn plain_http_and_docker_hub_servers() {
        let config = NodeConfig {
            version: 1,
            owner: None,
            cluster: None,
            registries: vec![
                Registry {
                    host: "docker.io".to_owned(),
                    ..Default::default()
                },
                Registry {
                    host: "lan:80".to_owned(),
                    plain_http: true,
                    ..Default::default()
                },
            ],
        };
        let files = render(&config);
        assert_eq!(files.len(), 2);
        let hub = &file(&files, "docker.io/hosts.toml").contents;
        assert!(
            hub.contains("server = \"https://registry-1.docker.io\"\n"),
            "{hub}"
        );
        assert!(!hub.contains("ca ="));
        let lan = &file(&files, "lan:80/hosts.toml").contents;
        assert!(lan.contains("server = \"http://lan:80\"\n"), "{lan}");
    }
}
