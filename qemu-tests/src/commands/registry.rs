//! `cairn-qemu registry`: a registry on the host for nodes to pull from (`make
//! registry`), with TLS from its own CA and basic auth, in the foreground until Ctrl-C.
//!
//! Everything it needs lives in one directory and is kept across runs: the CA (so a
//! node configured once keeps trusting it), the password, the stored images. It writes
//! `node.toml` there, a per-node config trusting the registry as nodes see it, for
//! `cairn-qemu run --node-config` (`make start NODE_CONFIG=…`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cairn_qemu::config::Settings;
use cairn_qemu::registry::{self, Crane, Credentials, Registry, RegistrySpec, Tls};
use clap::Args;

use super::CommandError;

/// Arguments of `registry`.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Where the CA, password, config, storage and node.toml live (kept across runs).
    #[arg(long, default_value = "build/registry")]
    dir: PathBuf,
    /// Host port on 127.0.0.1 (nodes reach it as 10.0.2.2:PORT).
    #[arg(long, default_value_t = 5000)]
    port: u16,
    /// The user basic auth accepts.
    #[arg(long, default_value = "cairn")]
    user: String,
    /// Where third_party/build.sh puts the registry and crane (built when missing).
    #[arg(long, env = "CAIRN_GO_OUT")]
    go_out: Option<PathBuf>,
}

pub fn run(args: RegistryArgs) -> Result<ExitCode, CommandError> {
    let error = |err: registry::RegistryError| CommandError::Registry(Box::new(err));
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let go_out = args.go_out.clone().unwrap_or_else(registry::default_go_out);
    let (binary, crane_binary) = registry::host_tools(&repo, &go_out).map_err(error)?;
    let tls =
        Tls::load_or_create(&args.dir.join("tls"), "cairn local registry CA").map_err(error)?;
    let password = password(&args.dir.join("password")).map_err(error)?;
    let registry = Registry::start(&RegistrySpec {
        binary,
        dir: args.dir.clone(),
        port: args.port,
        tls: tls.clone(),
        auth: Some(Credentials {
            user: args.user.clone(),
            password: password.clone(),
        }),
    })
    .map_err(error)?;
    let crane = Crane {
        binary: crane_binary.clone(),
        home: args.dir.join("docker"),
        ca_path: tls.ca_path.clone(),
    };
    crane.login(&registry).map_err(error)?;
    let node_config = args.dir.join("node.toml");
    let settings = Settings {
        registries: vec![cairn_api::node_config::Registry {
            host: registry.guest_address(),
            ca: Some(tls.ca_pem.clone()),
            ..Default::default()
        }],
        ..Settings::default()
    };
    std::fs::write(&node_config, settings.to_toml())
        .map_err(|e| error(registry::RegistryError::Write(node_config.clone(), e)))?;
    let dir = args.dir.display();
    println!(
        "registry serving on https://{} (nodes: {})",
        registry.host_address(),
        registry.guest_address()
    );
    println!(
        "  user {} password {password} (in {dir}/password)",
        args.user
    );
    println!("  CA {}", tls.ca_path.display());
    println!("  log {}", registry.log_path.display());
    println!("push with crane (logged in already):");
    println!(
        "  DOCKER_CONFIG={dir}/docker SSL_CERT_FILE={} SSL_CERT_DIR={dir}/docker {} push IMAGE {}/NAME:TAG",
        tls.ca_path.display(),
        crane_binary.display(),
        registry.host_address()
    );
    println!(
        "boot a node that trusts it: make start NODE_CONFIG={}",
        node_config.display()
    );
    println!(
        "pods pull {}/NAME:TAG with an imagePullSecret for that server; Ctrl-C stops the registry",
        registry.guest_address()
    );
    registry.wait().map_err(error)?;
    Ok(ExitCode::SUCCESS)
}

/// The password in `path`, or a new random one written there (0600).
fn password(path: &Path) -> Result<String, registry::RegistryError> {
    if let Ok(text) = std::fs::read_to_string(path) {
        if !text.trim().is_empty() {
            return Ok(text.trim().to_owned());
        }
    }
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).map_err(|e| {
        registry::RegistryError::Write(path.to_owned(), std::io::Error::other(e.to_string()))
    })?;
    let password: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    registry::write_private(path, format!("{password}\n").as_bytes())?;
    Ok(password)
}
