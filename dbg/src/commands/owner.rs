//! `dbg owner init [--force]`: the owner credentials on this host.
//! `dbg owner hand-over NEW_CA`: a node config handing this owner's nodes to another.
//!
//! `init` makes the owner CA and the owner's client certificate ([`crate::owner`]). The
//! launcher hands the CA to nodes it starts (per-node config `[owner]`); `dbg` presents
//! the client certificate to their node API. `hand-over` signs another owner's CA with
//! this owner's CA key and prints the per-node config that carries both. Nothing is
//! sent anywhere by these commands.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{owner, DbgError};

#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// Create the owner CA and client certificate (ed25519, files 0600).
    Init {
        /// Replace existing credentials. Nodes that pinned the old owner CA will refuse
        /// the new certificate.
        #[arg(long)]
        force: bool,
    },
    /// Print a node config (TOML) that moves nodes owned by this owner to the owner CA
    /// in NEW_CA: boot them with it (`cairn-qemu run --node-config FILE`).
    HandOver {
        /// The new owner's CA certificate (its `dbg owner init` wrote it as `ca.crt`).
        new_ca: PathBuf,
    },
}

pub fn run(args: &Args, dir: Option<&Path>, out: &mut dyn Write) -> Result<(), DbgError> {
    let dir = match dir {
        Some(dir) => dir.to_owned(),
        None => owner::default_dir()?,
    };
    match args {
        Args::Init { force } => {
            let created = owner::init(&dir, *force)?;
            let text = report(&created);
            out.write_all(text.as_bytes()).map_err(DbgError::Output)
        }
        Args::HandOver { new_ca } => {
            let text = hand_over(&dir, new_ca)?;
            out.write_all(text.as_bytes()).map_err(DbgError::Output)
        }
    }
}

/// The node config that hands nodes from the owner in `dir` to the CA in `new_ca`, with
/// a comment naming both fingerprints.
pub fn hand_over(dir: &Path, new_ca: &Path) -> Result<String, DbgError> {
    let owner = owner::hand_over(dir, new_ca)?;
    let current = owner::load_ca_pem(dir)?
        .ok_or_else(|| owner::OwnerError::Missing(owner::OwnerFiles::new(dir).ca_cert()))?;
    let (from, to) = (
        owner::fingerprint(&current)?,
        owner::fingerprint(&owner.ca)?,
    );
    let config = cairn_api::node_config::NodeConfig {
        owner: Some(owner),
        ..Default::default()
    };
    Ok(format!(
        "# Hands a node from owner CA {from} to owner CA {to}.\n\
         # Boot the node with this file as its node config (cairn-qemu run --node-config).\n{}",
        config.to_toml()
    ))
}

/// What `init` says it did.
pub fn report(created: &owner::Created) -> String {
    let mut text = format!(
        "owner credentials in {} (owner CA {})\n",
        created.files.dir().display(),
        created.ca_fingerprint
    );
    for path in &created.written {
        let verb = match created.replaced.contains(path) {
            true => "replaced",
            false => "wrote",
        };
        text.push_str(&format!("  {verb} {}\n", path.display()));
    }
    text.push_str(
        "nodes started by `make run`/`make start` get this owner CA in their node config; \
         `dbg --owner` uses the certificate\n",
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_api::node_config::{decode_handover_signature, NodeConfig};

    #[test]
    fn hand_over_prints_a_node_config_with_the_new_ca_and_a_signature() {
        let root = tempfile::tempdir().unwrap();
        let (current, next) = (root.path().join("current"), root.path().join("next"));
        owner::init(&current, false).unwrap();
        owner::init(&next, false).unwrap();
        let next_ca = owner::OwnerFiles::new(&next).ca_cert();
        let text = hand_over(&current, &next_ca).unwrap();

        let config = NodeConfig::parse(&text).unwrap();
        let given = config.owner.unwrap();
        assert_eq!(given.ca, std::fs::read_to_string(&next_ca).unwrap());
        decode_handover_signature(given.handover_signature.as_deref().unwrap()).unwrap();
        let fingerprint =
            |dir: &Path| owner::fingerprint(&owner::load_ca_pem(dir).unwrap().unwrap()).unwrap();
        assert!(
            text.starts_with(&format!(
                "# Hands a node from owner CA {} to owner CA {}.\n",
                fingerprint(&current),
                fingerprint(&next)
            )),
            "{text}"
        );
    }

    #[test]
    fn hand_over_names_what_it_cannot_use() {
        let root = tempfile::tempdir().unwrap();
        let (current, next) = (root.path().join("current"), root.path().join("next"));
        owner::init(&next, false).unwrap();
        let next_ca = owner::OwnerFiles::new(&next).ca_cert();
        // No owner here: the missing CA key is named.
        let missing = hand_over(&current, &next_ca).unwrap_err().to_string();
        let key = owner::OwnerFiles::new(&current).ca_key();
        assert!(
            missing.starts_with(&format!("{} does not exist", key.display())),
            "{missing}"
        );
        // Not a certificate: the file is named.
        owner::init(&current, false).unwrap();
        let not_a_ca = root.path().join("not-a-ca.crt");
        std::fs::write(&not_a_ca, "hello").unwrap();
        let garbage = hand_over(&current, &not_a_ca).unwrap_err().to_string();
        assert!(
            garbage.starts_with(&format!(
                "{} is not a usable certificate",
                not_a_ca.display()
            )),
            "{garbage}"
        );
    }
}
