//! The owner's credentials on the host: the owner CA a node trusts for its node API, and
//! the client certificate `dbg` presents to it.
//!
//! They live in one directory ([`default_dir`]: `$CAIRN_OWNER_DIR`, else
//! `$XDG_CONFIG_HOME/cairn/owner`, else `~/.config/cairn/owner`) as `ca.crt`, `ca.key`,
//! `owner.crt` and `owner.key`, each mode 0600 in a 0700 directory. [`init`] creates
//! them: an ed25519 CA and an ed25519 client certificate (clientAuth only) signed by it.
//! The launcher hands `ca.crt` to the node in its per-node config (`[owner] ca`); the
//! node pins the first owner CA it is given, so replacing the credentials (`--force`)
//! locks this host out of nodes that pinned the old CA. [`hand_over`] is how an owner
//! lets such a node go to another owner CA: it signs the new CA with its own CA key.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cairn_api::node_config::{check_one_certificate, handover_message, Owner};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber, PKCS_ED25519,
};
use time::{Duration, OffsetDateTime};

/// The variable naming the owner directory, ahead of the XDG default.
pub const OWNER_DIR_ENV: &str = "CAIRN_OWNER_DIR";
/// The owner CA certificate (what nodes are given and pin).
pub const CA_CERT_FILE: &str = "ca.crt";
/// The owner CA's private key.
pub const CA_KEY_FILE: &str = "ca.key";
/// The owner's client certificate.
pub const CERT_FILE: &str = "owner.crt";
/// The owner's client key.
pub const KEY_FILE: &str = "owner.key";

/// Common name of the owner CA.
pub const CA_COMMON_NAME: &str = "cairn owner CA";
/// Common name of the owner's client certificate.
pub const CLIENT_COMMON_NAME: &str = "cairn owner";
/// How long the owner CA is valid.
pub const CA_VALIDITY: Duration = Duration::days(3650);
/// How long the client certificate is valid.
pub const CLIENT_VALIDITY: Duration = Duration::days(365);
/// How far `notBefore` lies in the past, for hosts and nodes whose clocks disagree.
pub const BACKDATE: Duration = Duration::minutes(5);

const FILE_MODE: u32 = 0o600;
const DIR_MODE: u32 = 0o700;

/// Why the owner credentials could not be found, created or read.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    /// No variable names a place for the owner directory.
    #[error("no owner directory: set {OWNER_DIR_ENV}, XDG_CONFIG_HOME (an absolute path) or HOME")]
    NoDir,
    /// The directory could not be created.
    #[error("cannot create the owner directory {}", .0.display())]
    CreateDir(PathBuf, #[source] io::Error),
    /// `init` without `force` found credentials already there.
    #[error(
        "{} already exists; `dbg owner init --force` replaces the owner credentials, \
         and nodes pinned to the old owner CA will refuse the new one",
        .0.display()
    )]
    Exists(PathBuf),
    /// Whether a file exists could not be told.
    #[error("cannot check {}", .0.display())]
    Stat(PathBuf, #[source] io::Error),
    /// rcgen failed to make a key or certificate.
    #[error("cannot generate the {what}")]
    Generate {
        /// The key or certificate.
        what: &'static str,
        /// rcgen's error.
        #[source]
        source: rcgen::Error,
    },
    /// A credential file could not be written.
    #[error("cannot write {}", .0.display())]
    Write(PathBuf, #[source] io::Error),
    /// A credential file is absent.
    #[error("{} does not exist; run `dbg owner init` to create the owner credentials", .0.display())]
    Missing(PathBuf),
    /// A credential file could not be read.
    #[error("cannot read {}; `dbg owner init --force` recreates the owner credentials", .0.display())]
    Read(PathBuf, #[source] io::Error),
    /// The new owner's CA certificate given to `hand-over` could not be read.
    #[error("cannot read the new owner's CA certificate {}", .0.display())]
    ReadNewCa(PathBuf, #[source] io::Error),
    /// The owner CA key cannot sign a hand-over.
    #[error("{} is not an ed25519 key; nodes accept hand-overs signed with ed25519 owner CA keys only", .0.display())]
    NotEd25519(PathBuf),
    /// A key file holds no usable private key.
    #[error("{} is not a usable private key", .0.display())]
    NotAKey(PathBuf, #[source] rcgen::Error),
    /// The text holds no PEM certificate.
    #[error("{what} is not a usable certificate: {problem}")]
    NotACertificate {
        /// What was parsed (a path, or "the PEM text").
        what: String,
        /// The parser's complaint.
        problem: String,
    },
}

/// The credential files of one owner directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerFiles {
    dir: PathBuf,
}

impl OwnerFiles {
    /// The files in `dir` (nothing is read or created).
    pub fn new(dir: &Path) -> Self {
        OwnerFiles {
            dir: dir.to_owned(),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `ca.crt`: the owner CA certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join(CA_CERT_FILE)
    }

    /// `ca.key`: the owner CA's private key.
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join(CA_KEY_FILE)
    }

    /// `owner.crt`: the client certificate.
    pub fn cert(&self) -> PathBuf {
        self.dir.join(CERT_FILE)
    }

    /// `owner.key`: the client key.
    pub fn key(&self) -> PathBuf {
        self.dir.join(KEY_FILE)
    }

    /// All four, in the order [`init`] writes them.
    pub fn all(&self) -> [PathBuf; 4] {
        [self.ca_key(), self.ca_cert(), self.key(), self.cert()]
    }
}

/// What [`init`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// The directory and its files.
    pub files: OwnerFiles,
    /// Every file written, in order.
    pub written: Vec<PathBuf>,
    /// The files that existed before and were replaced (only with `force`).
    pub replaced: Vec<PathBuf>,
    /// `sha256:<hex>` of the new CA certificate's DER.
    pub ca_fingerprint: String,
}

/// The owner's credentials as PEM text.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The owner CA certificate.
    pub ca_pem: String,
    /// The client certificate.
    pub cert_pem: String,
    /// The client key.
    pub key_pem: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("ca_pem", &self.ca_pem)
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// The owner directory from the process environment: see [`dir_from`].
pub fn default_dir() -> Result<PathBuf, OwnerError> {
    dir_from(
        std::env::var_os(OWNER_DIR_ENV),
        std::env::var_os("XDG_CONFIG_HOME"),
        std::env::var_os("HOME"),
    )
}

/// The owner directory given the values of `CAIRN_OWNER_DIR`, `XDG_CONFIG_HOME` and
/// `HOME`: the first if non-empty, else `XDG_CONFIG_HOME/cairn/owner` if that is an
/// absolute path (the XDG spec ignores relative ones), else `HOME/.config/cairn/owner`.
pub fn dir_from(
    owner_dir: Option<OsString>,
    xdg_config_home: Option<OsString>,
    home: Option<OsString>,
) -> Result<PathBuf, OwnerError> {
    let set = |value: Option<OsString>| value.filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set(owner_dir) {
        return Ok(dir);
    }
    if let Some(config) = set(xdg_config_home).filter(|p| p.is_absolute()) {
        return Ok(config.join("cairn").join("owner"));
    }
    match set(home) {
        Some(home) => Ok(home.join(".config").join("cairn").join("owner")),
        None => Err(OwnerError::NoDir),
    }
}

/// Creates the owner credentials in `dir` (and `dir` itself, 0700, with its parents):
/// a new owner CA and a client certificate it signed. Without `force` an existing
/// credential file is an error and nothing is written.
pub fn init(dir: &Path, force: bool) -> Result<Created, OwnerError> {
    let files = OwnerFiles::new(dir);
    let mut existing = Vec::new();
    for path in files.all() {
        match fs::symlink_metadata(&path) {
            Ok(_) => existing.push(path),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(OwnerError::Stat(path, err)),
        }
    }
    if let (false, Some(path)) = (force, existing.first()) {
        return Err(OwnerError::Exists(path.clone()));
    }
    create_dir(dir)?;
    let generated = generate(OffsetDateTime::now_utc())?;
    let ca_fingerprint = fingerprint(&generated.ca_cert)?;
    let contents = [
        &generated.ca_key,
        &generated.ca_cert,
        &generated.key,
        &generated.cert,
    ];
    let mut written = Vec::with_capacity(contents.len());
    for (path, text) in files.all().into_iter().zip(contents) {
        write_private(dir, &path, text.as_bytes(), force)?;
        written.push(path);
    }
    // The renames are durable once the directory is (best effort: some file systems
    // refuse to sync a directory).
    if let Ok(handle) = fs::File::open(dir) {
        let _ = handle.sync_all();
    }
    Ok(Created {
        files,
        written,
        replaced: existing,
        ca_fingerprint,
    })
}

/// The credentials in `dir`.
pub fn load(dir: &Path) -> Result<Credentials, OwnerError> {
    let files = OwnerFiles::new(dir);
    let read = |path: PathBuf| read_file(&path)?.ok_or(OwnerError::Missing(path));
    Ok(Credentials {
        ca_pem: read(files.ca_cert())?,
        cert_pem: read(files.cert())?,
        key_pem: read(files.key())?,
    })
}

/// The owner CA certificate in `dir`, or `None` when there is no `ca.crt`.
pub fn load_ca_pem(dir: &Path) -> Result<Option<String>, OwnerError> {
    read_file(&OwnerFiles::new(dir).ca_cert())
}

/// `sha256:<hex>` of the DER of the first certificate in `pem`
/// ([`cairn_api::pem::fingerprint`]), as the agent and the launcher print it.
pub fn fingerprint(pem: &str) -> Result<String, OwnerError> {
    cairn_api::pem::fingerprint(pem).map_err(|problem| OwnerError::NotACertificate {
        what: "the PEM text".to_owned(),
        problem,
    })
}

/// The `[owner]` table that hands a node from the owner in `dir` to the owner CA in the
/// file `new_ca`: the new CA and the current owner CA key's signature over it. A node
/// whose pinned owner is this one pins the new CA when it boots with this table in its
/// config; any other node ignores it.
pub fn hand_over(dir: &Path, new_ca: &Path) -> Result<Owner, OwnerError> {
    use base64::Engine as _;
    use rcgen::SigningKey as _;
    let new_ca_pem =
        fs::read_to_string(new_ca).map_err(|err| OwnerError::ReadNewCa(new_ca.to_owned(), err))?;
    let not_a_certificate = |problem| OwnerError::NotACertificate {
        what: new_ca.display().to_string(),
        problem,
    };
    check_one_certificate(&new_ca_pem).map_err(not_a_certificate)?;
    let message = handover_message(&new_ca_pem).map_err(not_a_certificate)?;
    let files = OwnerFiles::new(dir);
    let key_path = files.ca_key();
    let key_pem = read_file(&key_path)?.ok_or_else(|| OwnerError::Missing(key_path.clone()))?;
    let key =
        KeyPair::from_pem(&key_pem).map_err(|err| OwnerError::NotAKey(key_path.clone(), err))?;
    if !key.is_compatible(&PKCS_ED25519) {
        return Err(OwnerError::NotEd25519(key_path));
    }
    let signature = key.sign(&message).map_err(|source| OwnerError::Generate {
        what: "hand-over signature",
        source,
    })?;
    Ok(Owner {
        ca: new_ca_pem,
        handover_signature: Some(base64::engine::general_purpose::STANDARD.encode(signature)),
    })
}

/// The four PEM texts [`init`] writes.
struct Generated {
    ca_cert: String,
    ca_key: String,
    cert: String,
    key: String,
}

fn generate(now: OffsetDateTime) -> Result<Generated, OwnerError> {
    let err = |what| move |source| OwnerError::Generate { what, source };
    let ca_key = KeyPair::generate_for(&PKCS_ED25519).map_err(err("owner CA key"))?;
    let mut ca_params = base_params(CA_COMMON_NAME, now, CA_VALIDITY);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = (ca_params.self_signed(&ca_key)).map_err(err("owner CA certificate"))?;
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate_for(&PKCS_ED25519).map_err(err("owner key"))?;
    let mut params = base_params(CLIENT_COMMON_NAME, now, CLIENT_VALIDITY);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = (params.signed_by(&key, &issuer)).map_err(err("owner certificate"))?;
    Ok(Generated {
        ca_cert: ca.pem(),
        ca_key: ca_key_pem,
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// Subject CN, validity (backdated by [`BACKDATE`]) and a random serial.
fn base_params(common_name: &str, now: OffsetDateTime, validity: Duration) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    params.distinguished_name = name;
    params.not_before = now - BACKDATE;
    params.not_after = now + validity;
    params.serial_number = Some(random_serial());
    params
}

/// 16 random bytes, the top bit cleared so the DER integer is positive.
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    // A CSPRNG failure is a broken host; the serial only has to differ between CAs.
    let _ = getrandom::fill(&mut bytes);
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01; // never a leading zero byte, so the 16 bytes stay 16 in DER
    SerialNumber::from_slice(&bytes)
}

fn create_dir(dir: &Path) -> Result<(), OwnerError> {
    let error = |err| OwnerError::CreateDir(dir.to_owned(), err);
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(error)?;
    }
    match fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(err) => Err(error(err)),
    }
}

/// Writes `bytes` to `path` with mode 0600 through a temporary file in `dir` renamed
/// over it; without `replace`, a file that appeared meanwhile is kept and reported.
fn write_private(dir: &Path, path: &Path, bytes: &[u8], replace: bool) -> Result<(), OwnerError> {
    let write_err = |err| OwnerError::Write(path.to_owned(), err);
    let mut tmp = tempfile::Builder::new()
        .prefix(".owner-")
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(FILE_MODE))
        .tempfile_in(dir)
        .map_err(write_err)?;
    // The umask may have narrowed the mode further; never wider.
    (tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(FILE_MODE)))
    .map_err(write_err)?;
    tmp.write_all(bytes).map_err(write_err)?;
    tmp.as_file().sync_all().map_err(write_err)?;
    let persisted = if replace {
        tmp.persist(path)
    } else {
        tmp.persist_noclobber(path)
    };
    match persisted {
        Ok(_) => Ok(()),
        Err(err) if err.error.kind() == io::ErrorKind::AlreadyExists => {
            Err(OwnerError::Exists(path.to_owned()))
        }
        Err(err) => Err(write_err(err.error)),
    }
}

/// The file's text, or `None` if it does not exist.
fn read_file(path: &Path) -> Result<Option<String>, OwnerError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(OwnerError::Read(path.to_owned(), err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::{pem::PemObject, CertificateDer};
    use x509_parser::prelude::{FromDer, X509Certificate};

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn contents(files: &OwnerFiles) -> Vec<Vec<u8>> {
        files.all().iter().map(|p| fs::read(p).unwrap()).collect()
    }

    fn der(pem: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec()
    }

    #[test]
    fn init_writes_four_private_files_in_a_private_dir() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("config/cairn/owner");
        let created = init(&dir, false).unwrap();
        assert_eq!(created.files.dir(), dir);
        assert_eq!(created.written.len(), 4);
        assert!(created.replaced.is_empty());
        assert_eq!(mode(&dir), 0o700);
        let names = ["ca.crt", "ca.key", "owner.crt", "owner.key"];
        for name in names {
            let path = dir.join(name);
            assert!(created.written.contains(&path), "{name}");
            assert_eq!(mode(&path), 0o600, "{name}");
        }
        let mut left: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, names, "no temporary files left behind");
        let ca = fs::read_to_string(dir.join("ca.crt")).unwrap();
        assert_eq!(created.ca_fingerprint, fingerprint(&ca).unwrap());
        assert!(created.ca_fingerprint.starts_with("sha256:"));
    }

    #[test]
    fn a_second_init_refuses_without_force_and_replaces_with_it() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("owner");
        let first = init(&dir, false).unwrap();
        let before = contents(&first.files);

        let err = init(&dir, false).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, OwnerError::Exists(_)), "{message}");
        assert!(message.contains(&dir.display().to_string()), "{message}");
        assert!(message.contains("--force"), "{message}");
        assert!(message.contains("old owner CA"), "{message}");
        assert_eq!(contents(&first.files), before, "files untouched");

        // One file is enough to refuse.
        let lonely = root.path().join("lonely");
        fs::create_dir(&lonely).unwrap();
        fs::write(lonely.join("owner.key"), "mine").unwrap();
        let err = init(&lonely, false).unwrap_err();
        assert!(err.to_string().contains("owner.key"), "{err}");
        assert_eq!(
            fs::read_to_string(lonely.join("owner.key")).unwrap(),
            "mine"
        );
        assert!(!lonely.join("ca.crt").exists());

        let second = init(&dir, true).unwrap();
        assert_eq!(second.replaced.len(), 4);
        let after = contents(&second.files);
        for (old, new) in before.iter().zip(&after) {
            assert_ne!(old, new);
        }
        assert_ne!(second.ca_fingerprint, first.ca_fingerprint);
        for path in &second.written {
            assert_eq!(mode(path), 0o600);
        }
    }

    #[test]
    fn the_client_certificate_is_an_ed25519_client_auth_leaf_of_the_ca() {
        let root = tempfile::tempdir().unwrap();
        init(root.path(), false).unwrap();
        let creds = load(root.path()).unwrap();
        let (ca_der, cert_der) = (der(&creds.ca_pem), der(&creds.cert_pem));
        let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
        let (_, cert) = X509Certificate::from_der(&cert_der).unwrap();
        let ed25519 = x509_parser::oid_registry::OID_SIG_ED25519;

        assert_eq!(ca.subject().to_string(), "CN=cairn owner CA");
        assert_eq!(ca.issuer(), ca.subject());
        assert!(ca.is_ca());
        let usage = ca.key_usage().unwrap().unwrap().value;
        assert!(usage.key_cert_sign() && usage.crl_sign() && usage.digital_signature());
        assert_eq!(ca.public_key().algorithm.algorithm, ed25519);
        ca.verify_signature(None).unwrap();
        let ca_left = ca.validity().time_to_expiration().unwrap();
        assert!(ca_left > CA_VALIDITY - Duration::days(1) && ca_left <= CA_VALIDITY);

        assert_eq!(cert.subject().to_string(), "CN=cairn owner");
        assert_eq!(cert.issuer(), ca.subject());
        assert!(!cert.is_ca());
        assert_eq!(cert.public_key().algorithm.algorithm, ed25519);
        cert.verify_signature(Some(ca.public_key())).unwrap();
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth);
        assert!(!eku.server_auth && !eku.any && eku.other.is_empty());
        let usage = cert.key_usage().unwrap().unwrap().value;
        assert!(usage.digital_signature() && !usage.key_cert_sign());
        let not_before = cert.validity().not_before.to_datetime();
        let now = OffsetDateTime::now_utc();
        assert!(not_before <= now - Duration::minutes(4), "backdated");
        let left = cert.validity().time_to_expiration().unwrap();
        assert!(left > Duration::days(364) && left <= CLIENT_VALIDITY);
        let serial = cert.raw_serial();
        assert_eq!(serial.len(), 16);
        assert!(serial[0] & 0x80 == 0, "positive serial");
        assert_ne!(serial, ca.raw_serial());

        // The key on disk is the certificate's.
        let key = KeyPair::from_pem(&creds.key_pem).unwrap();
        assert_eq!(
            cert.public_key().subject_public_key.data,
            key.public_key_raw()
        );
    }

    #[test]
    fn load_round_trips_and_names_what_is_missing() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(load_ca_pem(root.path()).unwrap(), None);
        let err = load(root.path()).unwrap_err();
        assert!(matches!(err, OwnerError::Missing(_)), "{err}");
        let message = err.to_string();
        assert!(message.contains("ca.crt") && message.contains("dbg owner init"));

        let created = init(root.path(), false).unwrap();
        let creds = load(root.path()).unwrap();
        let files = &created.files;
        assert_eq!(creds.ca_pem, fs::read_to_string(files.ca_cert()).unwrap());
        assert_eq!(creds.cert_pem, fs::read_to_string(files.cert()).unwrap());
        assert_eq!(creds.key_pem, fs::read_to_string(files.key()).unwrap());
        assert!(creds.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(creds.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(
            !format!("{creds:?}").contains("PRIVATE KEY"),
            "key redacted"
        );
        assert_eq!(load_ca_pem(root.path()).unwrap(), Some(creds.ca_pem));

        fs::remove_file(files.key()).unwrap();
        let err = load(root.path()).unwrap_err().to_string();
        assert!(
            err.contains("owner.key") && err.contains("dbg owner init"),
            "{err}"
        );
    }

    #[test]
    fn the_fingerprint_is_the_sha256_of_the_first_certificate() {
        let root = tempfile::tempdir().unwrap();
        init(root.path(), false).unwrap();
        let creds = load(root.path()).unwrap();
        let expected = cairn_api::pem::fingerprint(&creds.ca_pem).unwrap();
        let both = format!("{}{}", creds.ca_pem, creds.cert_pem);
        assert_eq!(fingerprint(&both).unwrap(), expected);
        assert_ne!(fingerprint(&creds.cert_pem).unwrap(), expected);
        let err = fingerprint("not a certificate").unwrap_err();
        assert!(matches!(err, OwnerError::NotACertificate { .. }), "{err}");
    }

    #[test]
    fn the_default_dir_prefers_the_variable_then_xdg_then_home() {
        let os = |s: &str| Some(OsString::from(s));
        let dir = |o, x, h| dir_from(o, x, h).map_err(|e| e.to_string());
        assert_eq!(
            dir(os("/owner"), os("/xdg"), os("/home/u")),
            Ok(PathBuf::from("/owner"))
        );
        assert_eq!(
            dir(os(""), os("/xdg"), os("/home/u")),
            Ok(PathBuf::from("/xdg/cairn/owner"))
        );
        assert_eq!(
            dir(None, os("relative"), os("/home/u")),
            Ok(PathBuf::from("/home/u/.config/cairn/owner"))
        );
        assert_eq!(
            dir(None, None, os("/home/u")),
            Ok(PathBuf::from("/home/u/.config/cairn/owner"))
        );
        let err = dir(None, os(""), os("")).unwrap_err();
        for name in [OWNER_DIR_ENV, "XDG_CONFIG_HOME", "HOME"] {
            assert!(err.contains(name), "{err}");
        }
    }
}
