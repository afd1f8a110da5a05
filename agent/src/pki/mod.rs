//! The node's PKI: a cluster CA and the leaf certificates the control plane and the
//! kubelet need, plus the service-account signing key.
//!
//! Keys are ed25519, as the seed's were: Go (etcd, Kubernetes) accepts ed25519
//! certificates under TLS 1.3, signing is fast, and keys are tiny. The one exception is
//! the service-account key: kube-apiserver signs tokens with RSA or ECDSA only
//! (`--service-account-signing-key-file`), so that key is ECDSA P-256.
//!
//! The CA and the service-account key are created once and kept (tokens and trust
//! must survive reboots once the state dir is persistent). Leaf certificates are
//! issued fresh at every boot from the kept CA: it costs microseconds, never leaves a
//! stale SAN (the node IP may change) and needs no renewal logic. Every private key is
//! written mode 0600 through a temporary file and a rename.

mod files;
mod groups;
mod leaves;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256, PKCS_ED25519,
};
use time::{Duration, OffsetDateTime};

pub use groups::{GroupsError, MAX_GROUPS};
pub use leaves::{Leaf, Usage, LEAVES};

/// CA lifetime; the CA is kept across boots.
const CA_VALIDITY: Duration = Duration::days(3650);
/// Leaf lifetime; leaves are reissued every boot, so this only bounds a leaked one.
const LEAF_VALIDITY: Duration = Duration::days(365);
/// Certificates are valid from a little before now, for clocks that disagree slightly.
const BACKDATE: Duration = Duration::minutes(5);

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a usable key or certificate", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: rcgen::Error,
    },
    #[error("cannot issue the certificate `{name}`")]
    Issue {
        name: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("cannot put the groups of `{name}` into its certificate")]
    Groups {
        name: String,
        #[source]
        source: GroupsError,
    },
}

/// What the certificates name: the node and the addresses clients use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSubject {
    /// Kubernetes node name (`cairn-<node id>`).
    pub node_name: String,
    pub node_ip: Option<IpAddr>,
    /// First address of the service CIDR (the `kubernetes` Service).
    pub service_ip: IpAddr,
}

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The PKI directory after [`ensure`]: where each file is, and the CA to sign with.
pub struct Pki {
    dir: PathBuf,
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// The apiserver's serving certificate; its file holds the CA after it.
pub const APISERVER_LEAF: &str = "kube-apiserver";

/// Loads or creates the CA and service-account key in `dir`, then issues every leaf
/// of [`LEAVES`] for `node`, valid from `now`.
pub fn ensure(dir: &Path, node: &NodeSubject, now: OffsetDateTime) -> Result<Pki, PkiError> {
    files::create_dir(dir)?;
    let (ca_pem, issuer) = load_or_create_ca(dir, now)?;
    ensure_service_account_key(dir)?;
    let pki = Pki {
        dir: dir.to_owned(),
        ca_pem,
        issuer,
    };
    for leaf in LEAVES {
        let mut issued = pki.issue(leaf.name, &leaf.params(node, now))?;
        // A joining machine checks the cluster CA against its pinned hash in the chain
        // the apiserver sends (`kubernetes::join_token`), so that chain holds the CA.
        if leaf.name == APISERVER_LEAF {
            issued.cert_pem.push_str(&pki.ca_pem);
        }
        files::write_pair(dir, leaf.name, &issued)?;
    }
    Ok(pki)
}

/// Loads or creates only a CA in `dir`: a worker's node-local CA, which signs its node
/// API's certificate and nothing of the cluster's.
pub fn ensure_ca(dir: &Path, now: OffsetDateTime) -> Result<Pki, PkiError> {
    files::create_dir(dir)?;
    let (ca_pem, issuer) = load_or_create_ca(dir, now)?;
    Ok(Pki {
        dir: dir.to_owned(),
        ca_pem,
        issuer,
    })
}

impl Pki {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate, PEM (what every client and server trusts).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    pub fn cert_path(&self, leaf: &str) -> PathBuf {
        self.dir.join(format!("{leaf}.crt"))
    }

    pub fn key_path(&self, leaf: &str) -> PathBuf {
        self.dir.join(format!("{leaf}.key"))
    }

    pub fn service_account_key_path(&self) -> PathBuf {
        self.dir.join("service-account.key")
    }

    pub fn service_account_pub_path(&self) -> PathBuf {
        self.dir.join("service-account.pub")
    }

    /// A client certificate for `user` in `groups` (one `O=` each, as Kubernetes reads
    /// them), valid for `validity` from `now` (debug credentials). Not written to disk.
    pub fn issue_client(
        &self,
        user: &str,
        groups: &[String],
        now: OffsetDateTime,
        validity: Duration,
    ) -> Result<Issued, PkiError> {
        let groups_err = |source| PkiError::Groups {
            name: user.to_owned(),
            source,
        };
        let mut params = base_params(user, now, validity);
        // rcgen keeps one value per attribute type: see [`groups`].
        for (index, group) in groups.iter().enumerate() {
            let placeholder = groups::placeholder(index).map_err(groups_err)?;
            params.distinguished_name.push(placeholder, group.as_str());
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let (key, cert) = self.sign(user, &params)?;
        let der = groups::rewrite(cert.der(), self.issuer.key()).map_err(groups_err)?;
        Ok(Issued {
            cert_pem: cairn_api::pem::certificate(&der),
            key_pem: key.serialize_pem(),
        })
    }

    /// A serving certificate named `common_name` for `names` and `ips`, valid for
    /// `validity` from `now` (the node API's, issued at each boot). Not written to disk.
    pub fn issue_server(
        &self,
        common_name: &str,
        names: &[&str],
        ips: &[IpAddr],
        now: OffsetDateTime,
        validity: Duration,
    ) -> Result<Issued, PkiError> {
        let mut params = base_params(common_name, now, validity);
        params.subject_alt_names = sans(names, ips);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(common_name, &params)
    }

    fn issue(&self, name: &str, params: &CertificateParams) -> Result<Issued, PkiError> {
        let (key, cert) = self.sign(name, params)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A new ed25519 key and its certificate from `params`, signed by the CA.
    fn sign(
        &self,
        name: &str,
        params: &CertificateParams,
    ) -> Result<(KeyPair, rcgen::Certificate), PkiError> {
        let issue_err = |source| PkiError::Issue {
            name: name.to_owned(),
            source,
        };
        let key = KeyPair::generate_for(&PKCS_ED25519).map_err(issue_err)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(issue_err)?;
        Ok((key, cert))
    }
}

/// Subject CN, validity and a random serial; callers add names and usages.
fn base_params(common_name: &str, now: OffsetDateTime, validity: Duration) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.not_before = now - BACKDATE;
    params.not_after = now + validity;
    params.serial_number = Some(random_serial());
    params
}

fn random_serial() -> rcgen::SerialNumber {
    let mut bytes = [0u8; 16];
    // A CSPRNG failure here is a broken kernel; a zero serial is still valid X.509.
    let _ = getrandom::fill(&mut bytes);
    bytes[0] &= 0x7f; // positive
    rcgen::SerialNumber::from_slice(&bytes)
}

fn ca_params(now: OffsetDateTime) -> CertificateParams {
    let mut params = base_params("cairn cluster CA", now, CA_VALIDITY);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn load_or_create_ca(
    dir: &Path,
    now: OffsetDateTime,
) -> Result<(String, Issuer<'static, KeyPair>), PkiError> {
    let (cert_path, key_path) = (dir.join("ca.crt"), dir.join("ca.key"));
    if cert_path.exists() && key_path.exists() {
        let cert_pem = files::read(&cert_path)?;
        let key =
            KeyPair::from_pem(&files::read(&key_path)?).map_err(|source| PkiError::Parse {
                path: key_path.clone(),
                source,
            })?;
        let issuer =
            Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|source| PkiError::Parse {
                path: cert_path,
                source,
            })?;
        return Ok((cert_pem, issuer));
    }
    let issue_err = |source| PkiError::Issue {
        name: "ca".into(),
        source,
    };
    let key = KeyPair::generate_for(&PKCS_ED25519).map_err(issue_err)?;
    let params = ca_params(now);
    let cert = params.self_signed(&key).map_err(issue_err)?;
    let issued = Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    };
    files::write_pair(dir, "ca", &issued)?;
    Ok((issued.cert_pem, Issuer::new(params, key)))
}

fn ensure_service_account_key(dir: &Path) -> Result<(), PkiError> {
    let (key_path, pub_path) = (
        dir.join("service-account.key"),
        dir.join("service-account.pub"),
    );
    if key_path.exists() && pub_path.exists() {
        return Ok(());
    }
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|source| PkiError::Issue {
        name: "service-account".into(),
        source,
    })?;
    files::write_secret(&key_path, &key.serialize_pem())?;
    files::write_public(&pub_path, &key.public_key_pem())
}

/// SAN entries for names and addresses.
fn sans(names: &[&str], ips: &[IpAddr]) -> Vec<SanType> {
    let dns = names.iter().filter_map(|n| {
        let name = rcgen::string::Ia5String::try_from(*n).ok()?;
        Some(SanType::DnsName(name))
    });
    dns.chain(ips.iter().map(|ip| SanType::IpAddress(*ip)))
        .collect()
}

#[cfg(test)]
mod tests;
