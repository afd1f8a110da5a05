//! Boot step: the node's identity — an ed25519 key, the node ID derived from it, and the
//! names derived from the node ID (`/etc/machine-id`, hostname, Kubernetes node name).
//!
//! The key comes from a [`KeySource`]: [`DiskKey`] loads it from the data disk, or
//! creates it there on the first boot (mode 0600, written atomically), so the node ID
//! and every name derived from it survive reboots; [`EphemeralKey`] makes a new one
//! each boot, for a node without a data disk.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey, SECRET_KEY_LENGTH};
use nix::errno::Errno;

use crate::atomic_write::write_atomic;
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
    #[error("cannot read the node key {}", .0.display())]
    ReadKey(PathBuf, #[source] io::Error),
    #[error("node key {} is {len} bytes, not {SECRET_KEY_LENGTH}; left as it is", .0.display(), len = .1)]
    KeyLength(PathBuf, usize),
    #[error("cannot store the node key in {}", .0.display())]
    WriteKey(PathBuf, #[source] io::Error),
}

/// The node key on the data disk (docs/interfaces.md).
pub const KEY_FILE: &str = "/var/lib/cairn/identity/node.key";

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

/// The key in a file: the raw 32-byte ed25519 secret, mode 0600, owned by root. Made on
/// first use; a file of the wrong size is an error and is never overwritten.
#[derive(Debug, Clone)]
pub struct DiskKey {
    pub path: PathBuf,
}

impl KeySource for DiskKey {
    fn signing_key(&self) -> Result<SigningKey, IdentityError> {
        match fs::read(&self.path) {
            Ok(bytes) => {
                let secret: [u8; SECRET_KEY_LENGTH] = bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| IdentityError::KeyLength(self.path.clone(), bytes.len()))?;
                restrict_mode(&self.path);
                Ok(SigningKey::from_bytes(&secret))
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                let key = EphemeralKey.signing_key()?;
                store_key(&self.path, &key.to_bytes())
                    .map_err(|e| IdentityError::WriteKey(self.path.clone(), e))?;
                tracing::info!("identity: created the node key {}", self.path.display());
                Ok(key)
            }
            Err(err) => Err(IdentityError::ReadKey(self.path.clone(), err)),
        }
    }
}

/// A key file someone loosened is tightened again, not refused: the node must boot.
fn restrict_mode(path: &Path) {
    let loose = fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0);
    if loose {
        tracing::warn!(
            "identity: {} was readable by others; now 0600",
            path.display()
        );
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o600));
    }
}

/// A power cut leaves either no key or the whole key, never half of one.
fn store_key(path: &Path, secret: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    write_atomic(path, secret, 0o600)
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
    write_atomic(
        &machine_id,
        machine_id_contents(identity.node_id()).as_bytes(),
        0o444,
    )
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
    fn disk_keys_are_created_once_with_mode_0600_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let source = DiskKey {
            path: dir.path().join("identity/node.key"),
        };
        let first = source.signing_key().unwrap();
        let mode = fs::metadata(&source.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = fs::metadata(dir.path().join("identity"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        assert_eq!(source.signing_key().unwrap().to_bytes(), first.to_bytes());

        fs::set_permissions(&source.path, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(source.signing_key().unwrap().to_bytes(), first.to_bytes());
        let mode = fs::metadata(&source.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_damaged_key_file_is_an_error_and_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        fs::write(&path, b"short").unwrap();
        let err = DiskKey { path: path.clone() }.signing_key().unwrap_err();
        assert!(matches!(err, IdentityError::KeyLength(_, 5)), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"short");
    }

    #[test]
    fn ephemeral_keys_differ() {
        let a = EphemeralKey.signing_key().unwrap();
        let b = EphemeralKey.signing_key().unwrap();
        assert_ne!(a.to_bytes(), b.to_bytes());
    }
}
