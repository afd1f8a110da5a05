//! `dbg owner init [--force]`: the owner credentials on this host.
//!
//! Makes the owner CA and the owner's client certificate ([`crate::owner`]). The
//! launcher hands the CA to nodes it starts (per-node config `[owner]`); `dbg` presents
//! the client certificate to their node API. Nothing is sent anywhere by this command.

use std::io::Write;
use std::path::Path;

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
    }
}

/// What `init` says it did.
pub fn report(created: &owner::Created) -> String {
    let mut text = format!(
        "owner credentials in {} (owner CA sha256:{})\n",
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
