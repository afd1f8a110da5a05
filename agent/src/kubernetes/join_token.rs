//! Join tokens: the credential another machine joins this node's cluster with
//! (docs/interfaces.md "Join tokens"), made of upstream parts. The token is a
//! Kubernetes bootstrap token: a Secret `kube-system/bootstrap-token-<id>` that the
//! apiserver accepts as `system:bootstrap:<id>` in the groups `system:bootstrappers`
//! and [`WORKER_GROUP`] until it expires (`--enable-bootstrap-token-auth`), and that
//! the controller-manager's `tokencleaner` deletes after. The reconciler's bindings
//! give [`WORKER_GROUP`] what a kubelet needs to bootstrap: create its client CSR and
//! have it approved. With the token go the cluster CA's public-key hash (kubeadm's
//! `sha256:` pin format), which the joining machine checks the apiserver's chain
//! against before it sends the token, and the API address.

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::reconciler::MANAGED_BY;

/// The characters of a token's id and secret (upstream's `[a-z0-9]`).
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
pub const ID_LEN: usize = 6;
pub const SECRET_LEN: usize = 16;
/// The extra group every cairn token authenticates in; the bootstrap bindings name it
/// rather than all of `system:bootstrappers`, so only tokens made here admit a node.
pub const WORKER_GROUP: &str = "system:bootstrappers:cairn:worker";
pub const NAMESPACE: &str = "kube-system";
/// The Secret type the apiserver's bootstrap authenticator reads.
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";

/// One token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub id: String,
    pub secret: String,
    pub expires: OffsetDateTime,
}

impl JoinToken {
    /// A new token from the kernel's random source, expiring at `expires`.
    pub fn generate(expires: OffsetDateTime) -> Result<Self, getrandom::Error> {
        Ok(JoinToken {
            id: random_chars(ID_LEN)?,
            secret: random_chars(SECRET_LEN)?,
            expires,
        })
    }

    /// `<id>.<secret>`, what the joining machine presents as its bearer token.
    pub fn token(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }

    /// The Secret the apiserver authenticates the token by.
    pub fn secret_object(&self) -> Secret {
        let expiration = self
            .expires
            .replace_nanosecond(0)
            .unwrap_or(self.expires)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let data = [
            ("token-id", self.id.clone()),
            ("token-secret", self.secret.clone()),
            ("expiration", expiration),
            ("usage-bootstrap-authentication", "true".to_owned()),
            ("auth-extra-groups", WORKER_GROUP.to_owned()),
            ("description", "cairn join token".to_owned()),
        ];
        Secret {
            metadata: ObjectMeta {
                name: Some(secret_name(&self.id)),
                namespace: Some(NAMESPACE.to_owned()),
                labels: Some([(MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned())].into()),
                ..ObjectMeta::default()
            },
            type_: Some(SECRET_TYPE.to_owned()),
            string_data: Some(data.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()),
            ..Secret::default()
        }
    }
}

/// `n` characters of [`ALPHABET`], by rejection sampling so each is equally likely.
fn random_chars(n: usize) -> Result<String, getrandom::Error> {
    // The largest multiple of the alphabet's size that fits in a byte.
    let limit = (256 / ALPHABET.len() * ALPHABET.len()) as u8;
    let mut text = String::with_capacity(n);
    while text.len() < n {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        for byte in bytes.into_iter().filter(|b| *b < limit) {
            if text.len() == n {
                break;
            }
            text.push(char::from(ALPHABET[usize::from(byte) % ALPHABET.len()]));
        }
    }
    Ok(text)
}

/// The name of token `id`'s Secret (in [`NAMESPACE`]).
pub fn secret_name(id: &str) -> String {
    format!("bootstrap-token-{id}")
}

/// `sha256:<hex>` of the DER SubjectPublicKeyInfo of the first certificate in `pem`:
/// kubeadm's `--discovery-token-ca-cert-hash`.
pub fn ca_hash(pem: &str) -> Result<String, String> {
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|err| format!("the CA holds no PEM certificate: {err}"))?;
    ca_hash_der(der.as_ref())
}

/// [`ca_hash`] of a DER certificate.
pub fn ca_hash_der(der: &[u8]) -> Result<String, String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|err| format!("the CA certificate does not parse: {err}"))?;
    let spki = cert.tbs_certificate.subject_pki.raw;
    Ok(format!("sha256:{}", hex::encode(Sha256::digest(spki))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_upstreams_shape() {
        let expires = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let token = JoinToken::generate(expires).unwrap();
        let text = token.token();
        let (id, secret) = text.split_once('.').unwrap();
        assert_eq!((id.len(), secret.len()), (ID_LEN, SECRET_LEN));
        assert!(text
            .bytes()
            .all(|b| b == b'.' || b.is_ascii_lowercase() || b.is_ascii_digit()));
        assert_ne!(JoinToken::generate(expires).unwrap(), token);
        let object = token.secret_object();
        assert_eq!(
            object.metadata.name.as_deref(),
            Some(format!("bootstrap-token-{id}").as_str())
        );
        assert_eq!(object.type_.as_deref(), Some(SECRET_TYPE));
        let data = object.string_data.unwrap();
        assert_eq!(data["token-id"], id);
        assert_eq!(data["token-secret"], secret);
        assert_eq!(data["expiration"], "2027-01-15T08:00:00Z");
        assert_eq!(data["usage-bootstrap-authentication"], "true");
        assert_eq!(data["auth-extra-groups"], WORKER_GROUP);
    }

    #[test]
    fn every_character_is_drawn() {
        let text = random_chars(4000).unwrap();
        for c in ALPHABET {
            assert!(text.as_bytes().contains(c), "{}", char::from(*c));
        }
    }

    #[test]
    fn the_ca_hash_is_the_sha256_of_the_public_key_info() {
        use rcgen::PublicKeyData as _;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let pem = params.self_signed(&key).unwrap().pem();
        let expected = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(key.subject_public_key_info()))
        );
        assert_eq!(ca_hash(&pem).unwrap(), expected);
        assert!(ca_hash("nothing")
            .unwrap_err()
            .contains("no PEM certificate"));
    }
}
