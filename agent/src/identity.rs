//! Step 5: the node's identity — an ed25519 key, the node ID derived from it, and the
//! names derived from the node ID (`/etc/machine-id`, hostname, Kubernetes node name).
//!
//! The key comes from a [`KeySource`]. Today that is [`EphemeralKey`] (a new key every
//! boot, kept in memory); a source that loads or creates the key on the data disk
//! (mode 0600) slots in behind the same trait once storage exists.

use std::io;
use std::path::PathBuf;

use ed25519_dalek::{SigningKey, VerifyingKey, SECRET_KEY_LENGTH};
use nix::errno::Errno;

use crate::syscall::Syscall;
use crate::Paths;

/// Bytes of the public key that form the node ID: 16 bytes = 32 hex characters, the
/// machine-id(5) format.
const NODE_ID_BYTES: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("failed to get random bytes for the node key")]
    Random(#[source] getrandom::Error),
    #[error("failed to write {}", .0.display())]
    WriteMachineId(PathBuf, #[source] io::Error),
    #[error("failed to set the hostname to {0}")]
    SetHostname(String, #[source] Errno),
}

/// Where the node's signing key comes from.
pub trait KeySource {
    fn signing_key(&self) -> Result<SigningKey, IdentityError>;
}

/// A fresh key each boot, from getrandom(2). getrandom blocks until the kernel's CRNG
/// is initialised (random(7)); the kernel's jitter entropy makes that quick on 6.1.
#[derive(Debug, Default, Clone, Copy)]
pub struct EphemeralKey;

impl KeySource for EphemeralKey {
    fn signing_key(&self) -> Result<SigningKey, IdentityError> {
        let mut secret = [0u8; SECRET_KEY_LENGTH];
        getrandom::fill(&mut secret).map_err(IdentityError::Random)?;
        Ok(SigningKey::from_bytes(&secret))
    }
}

/// The node's key and the node ID derived from it.
#[derive(Debug)]
pub struct Identity {
    key: SigningKey,
    node_id: String,
}

impl Identity {
    pub fn from_key(key: SigningKey) -> Self {
        let node_id = node_id(&key.verifying_key());
        Self { key, node_id }
    }

    /// Lowercase hex of the first 16 bytes of the public key.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Lowercase hex of the whole public key (64 characters).
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// See [`node_name`].
    pub fn node_name(&self) -> String {
        node_name(&self.node_id)
    }
}

/// Lowercase hex of the first 16 bytes of `key`. Hex, not base64url, because the ID ends
/// up in Kubernetes object names, which allow only lowercase alphanumerics and `-`.
pub fn node_id(key: &VerifyingKey) -> String {
    hex::encode(&key.as_bytes()[..NODE_ID_BYTES])
}

/// The one naming rule: hostname and Kubernetes node name are `cairn-<node id>`.
/// 38 characters: within HOST_NAME_MAX (64, sethostname(2)) and a DNS label (63).
pub fn node_name(node_id: &str) -> String {
    format!("cairn-{node_id}")
}

/// machine-id(5): the ID and a newline.
pub fn machine_id_contents(node_id: &str) -> String {
    format!("{node_id}\n")
}

/// Obtains the key, writes `/etc/machine-id` and sets the hostname.
pub fn establish(
    sys: &dyn Syscall,
    paths: &Paths,
    source: &dyn KeySource,
) -> Result<Identity, IdentityError> {
    let identity = Identity::from_key(source.signing_key()?);
    let machine_id = paths.machine_id();
    std::fs::write(&machine_id, machine_id_contents(identity.node_id()))
        .map_err(|e| IdentityError::WriteMachineId(machine_id, e))?;
    let hostname = identity.node_name();
    sys.sethostname(&hostname)
        .map_err(|e| IdentityError::SetHostname(hostname, e))?;
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::fake::{Call, RecordingSyscall};

    /// A fixed key, so expected values can be written down.
    struct FixedKey;

    impl KeySource for FixedKey {
        fn signing_key(&self) -> Result<SigningKey, IdentityError> {
            Ok(SigningKey::from_bytes(&[7; SECRET_KEY_LENGTH]))
        }
    }

    #[test]
    fn node_id_is_hex_of_the_first_16_public_key_bytes() {
        let identity = Identity::from_key(FixedKey.signing_key().unwrap());
        let public = identity.public_key_hex();
        assert_eq!(public.len(), 64);
        assert_eq!(identity.node_id(), &public[..32]);
        assert!(identity
            .node_id()
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }

    #[test]
    fn hostname_rule() {
        assert_eq!(
            node_name("0123456789abcdef0123456789abcdef"),
            "cairn-0123456789abcdef0123456789abcdef"
        );
    }

    #[test]
    fn establish_writes_machine_id_and_sets_hostname() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        let sys = RecordingSyscall::new();

        let identity = establish(&sys, &Paths::under_root(dir.path()), &FixedKey).unwrap();

        let written = std::fs::read_to_string(dir.path().join("etc/machine-id")).unwrap();
        assert_eq!(written, format!("{}\n", identity.node_id()));
        assert_eq!(written.len(), 33);
        let hostname = format!("cairn-{}", identity.node_id());
        assert_eq!(sys.calls(), [Call::SetHostname(hostname)]);
    }

    #[test]
    fn ephemeral_keys_differ() {
        let a = EphemeralKey.signing_key().unwrap();
        let b = EphemeralKey.signing_key().unwrap();
        assert_ne!(a.to_bytes(), b.to_bytes());
    }
}
