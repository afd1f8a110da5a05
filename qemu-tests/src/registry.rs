//! A real OCI registry on the host for nodes to pull from: the CNCF `distribution`
//! registry (`third_party/distribution`, built by `third_party/build.sh`), serving TLS
//! with a certificate from its own CA and, if asked, htpasswd basic auth.
//!
//! The registry listens on 127.0.0.1 only; a node reaches it as [`GUEST_HOST`] (QEMU's
//! user network maps the gateway address to the host's loopback), which is why the
//! server certificate names that address too. The boot tests start one per case that
//! needs it, and `cairn-qemu registry` (`make registry`) runs one for people.
//!
//! Pushing goes through `crane` (go-containerregistry, `third_party/crane`): a
//! well-kept client, never a hand-written registry protocol.

use std::fs;
use std::io;
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

use crate::ports;

/// The host as a node on QEMU's user network sees it.
pub const GUEST_HOST: &str = "10.0.2.2";
/// The registry checks the hash on every request: the default cost (12) costs ~460 ms
/// each here, the lowest it accepts (4) ~12 ms. A test password guards nothing.
const BCRYPT_COST: u32 = 4;
/// How long a started registry may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors of this module; each names the file or tool involved.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot write {}", .0.display())]
    Write(PathBuf, #[source] io::Error),
    #[error("cannot read {}", .0.display())]
    Read(PathBuf, #[source] io::Error),
    #[error("cannot create the registry's certificates")]
    Certificate(#[from] rcgen::Error),
    #[error("cannot hash the registry password")]
    Password(#[from] bcrypt::BcryptError),
    #[error("no free port for the registry")]
    Port(#[source] io::Error),
    #[error("cannot run {}", .0.display())]
    Spawn(PathBuf, #[source] io::Error),
    #[error("{what} failed ({status}): {output}")]
    Tool {
        what: String,
        status: String,
        output: String,
    },
    #[error(
        "the registry on 127.0.0.1:{port} did not accept connections within {:?}; its log {}:\n{log}",
        START_TIMEOUT,
        .log_path.display()
    )]
    NotListening {
        port: u16,
        log_path: PathBuf,
        log: String,
    },
}

/// A user and password for basic auth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

/// A CA and the registry's server certificate and key, as PEM files in a directory.
#[derive(Debug, Clone)]
pub struct Tls {
    /// The CA certificate nodes and `crane` must trust.
    pub ca_pem: String,
    pub ca_path: PathBuf,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl Tls {
    /// The files [`Tls::create`] wrote to `dir` earlier, or new ones: a registry run
    /// again keeps its CA, so nodes configured with it still trust it.
    pub fn load_or_create(dir: &Path, ca_name: &str) -> Result<Self, RegistryError> {
        let tls = Tls {
            ca_pem: String::new(),
            ca_path: dir.join("ca.crt"),
            cert_path: dir.join("server.crt"),
            key_path: dir.join("server.key"),
        };
        if [&tls.ca_path, &tls.cert_path, &tls.key_path]
            .iter()
            .all(|p| p.is_file())
        {
            let ca_pem = fs::read_to_string(&tls.ca_path)
                .map_err(|e| RegistryError::Read(tls.ca_path.clone(), e))?;
            return Ok(Tls { ca_pem, ..tls });
        }
        Self::create(dir, ca_name)
    }

    /// A new CA (ECDSA P-256) and a server certificate for 127.0.0.1, `localhost` and
    /// [`GUEST_HOST`], written to `dir` as `ca.crt`, `server.crt` and `server.key`.
    pub fn create(dir: &Path, ca_name: &str) -> Result<Self, RegistryError> {
        create_dir(dir)?;
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, ca_name);
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca_params.self_signed(&ca_key)?;
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate()?;
        let names = vec![
            "localhost".to_owned(),
            Ipv4Addr::LOCALHOST.to_string(),
            GUEST_HOST.to_owned(),
        ];
        let mut server_params = CertificateParams::new(names)?;
        server_params
            .distinguished_name
            .push(DnType::CommonName, "cairn test registry");
        let server = server_params.signed_by(&server_key, &issuer)?;
        let tls = Tls {
            ca_pem: ca.pem(),
            ca_path: dir.join("ca.crt"),
            cert_path: dir.join("server.crt"),
            key_path: dir.join("server.key"),
        };
        write(&tls.ca_path, tls.ca_pem.as_bytes())?;
        write(&tls.cert_path, server.pem().as_bytes())?;
        write_private(&tls.key_path, server_key.serialize_pem().as_bytes())?;
        Ok(tls)
    }
}

/// How to run one registry.
#[derive(Debug, Clone)]
pub struct RegistrySpec {
    /// The `registry` binary.
    pub binary: PathBuf,
    /// Config, htpasswd, storage and log go here.
    pub dir: PathBuf,
    /// Host port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    pub tls: Tls,
    /// Basic auth for every request, or anonymous access.
    pub auth: Option<Credentials>,
}

/// A running registry; stopped when dropped.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    pub port: u16,
    pub log_path: PathBuf,
    pub tls: Tls,
    pub auth: Option<Credentials>,
}

impl Registry {
    /// Writes the config and starts the registry; returns once it accepts connections.
    pub fn start(spec: &RegistrySpec) -> Result<Self, RegistryError> {
        create_dir(&spec.dir)?;
        let port = match spec.port {
            0 => ports::free_port().map_err(RegistryError::Port)?,
            port => port,
        };
        let htpasswd = match &spec.auth {
            Some(credentials) => {
                let path = spec.dir.join("htpasswd");
                let hash = bcrypt::hash(&credentials.password, BCRYPT_COST)?;
                write_private(&path, format!("{}:{hash}\n", credentials.user).as_bytes())?;
                Some(path)
            }
            None => None,
        };
        let config_path = spec.dir.join("config.yml");
        let config = render_config(
            port,
            &spec.dir.join("storage"),
            &spec.tls,
            htpasswd.as_deref(),
        );
        write(&config_path, config.as_bytes())?;
        let log_path = spec.dir.join("registry.log");
        let log =
            fs::File::create(&log_path).map_err(|e| RegistryError::Write(log_path.clone(), e))?;
        let err_log = log
            .try_clone()
            .map_err(|e| RegistryError::Write(log_path.clone(), e))?;
        let mut command = Command::new(&spec.binary);
        command
            .arg("serve")
            .arg(&config_path)
            // No telemetry exporter: nothing to send traces to, and no network to try.
            .env("OTEL_TRACES_EXPORTER", "none")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log);
        // Dies with this process: a test keeps its registries in a `static`, which is
        // never dropped, and `make registry` may be killed rather than interrupted.
        let child = crate::process::spawn_attached(command)
            .map_err(|e| RegistryError::Spawn(spec.binary.clone(), e))?;
        let mut registry = Registry {
            child,
            port,
            log_path,
            tls: spec.tls.clone(),
            auth: spec.auth.clone(),
        };
        registry.wait_listening()?;
        Ok(registry)
    }

    /// Blocks until the registry exits (for a foreground run). It serves until it is
    /// killed, so any exit is an error, with its log.
    pub fn wait(mut self) -> Result<(), RegistryError> {
        let status = self
            .child
            .wait()
            .map_err(|e| RegistryError::Read(self.log_path.clone(), e))?;
        Err(RegistryError::Tool {
            what: "registry".to_owned(),
            status: status.to_string(),
            output: fs::read_to_string(&self.log_path).unwrap_or_default(),
        })
    }

    /// `127.0.0.1:PORT`, the name the host pushes to.
    pub fn host_address(&self) -> String {
        format!("{}:{}", Ipv4Addr::LOCALHOST, self.port)
    }

    /// `10.0.2.2:PORT`, the name a node pulls from.
    pub fn guest_address(&self) -> String {
        format!("{GUEST_HOST}:{}", self.port)
    }

    fn wait_listening(&mut self) -> Result<(), RegistryError> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok() {
                return Ok(());
            }
            let exited = matches!(self.child.try_wait(), Ok(Some(_)));
            if exited || Instant::now() > deadline {
                return Err(RegistryError::NotListening {
                    port: self.port,
                    log_path: self.log_path.clone(),
                    log: fs::read_to_string(&self.log_path).unwrap_or_default(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The registry's config (distribution's `configuration.md`): filesystem storage, TLS,
/// optional htpasswd, and nothing that would call out (no notifications, no proxy).
fn render_config(port: u16, storage: &Path, tls: &Tls, htpasswd: Option<&Path>) -> String {
    let mut text = format!(
        "# Written by cairn-qemu (src/registry.rs).\n\
         version: 0.1\n\
         log:\n  level: info\n  accesslog:\n    disabled: false\n\
         storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n  redirect:\n    disable: true\n\
         \x20 maintenance:\n    uploadpurging:\n      enabled: false\n\
         http:\n  addr: 127.0.0.1:{port}\n  tls:\n    certificate: {cert}\n    key: {key}\n",
        storage = storage.display(),
        cert = tls.cert_path.display(),
        key = tls.key_path.display(),
    );
    if let Some(path) = htpasswd {
        text.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: cairn\n    path: {}\n",
            path.display()
        ));
    }
    text
}

/// `crane` with its credentials and trust confined to `home` (its Docker config) and
/// `tls` (the registry's CA as the only trusted root).
#[derive(Debug, Clone)]
pub struct Crane {
    pub binary: PathBuf,
    /// DOCKER_CONFIG: where `crane auth login` keeps credentials.
    pub home: PathBuf,
    pub ca_path: PathBuf,
}

impl Crane {
    /// Runs crane with `args`; its stdout on success.
    pub fn run<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Result<String, RegistryError> {
        self.run_with_stdin(args, &[])
    }

    /// Runs crane with `args` and `stdin` as its standard input (`crane edit manifest`
    /// reads the new manifest there when it is not a terminal); its stdout on success.
    pub fn run_with_stdin<S: AsRef<std::ffi::OsStr>>(
        &self,
        args: &[S],
        stdin: &[u8],
    ) -> Result<String, RegistryError> {
        create_dir(&self.home)?;
        let mut child = Command::new(&self.binary)
            .args(args)
            .env("DOCKER_CONFIG", &self.home)
            .env("SSL_CERT_FILE", &self.ca_path)
            // Go would add /etc/ssl/certs unless SSL_CERT_DIR names another directory.
            .env("SSL_CERT_DIR", &self.home)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| RegistryError::Spawn(self.binary.clone(), e))?;
        // Written whole before reading: crane reads all of stdin before it answers,
        // and what is written here is a manifest, far below a pipe's buffer.
        if let Some(mut input) = child.stdin.take() {
            use std::io::Write as _;
            input
                .write_all(stdin)
                .map_err(|e| RegistryError::Spawn(self.binary.clone(), e))?;
        }
        let output = child
            .wait_with_output()
            .map_err(|e| RegistryError::Spawn(self.binary.clone(), e))?;
        if !output.status.success() {
            let what: Vec<String> = args
                .iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned())
                .collect();
            return Err(RegistryError::Tool {
                what: format!("crane {}", what.join(" ")),
                status: output.status.to_string(),
                output: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `crane auth login` for `registry` with its credentials, if it has any.
    pub fn login(&self, registry: &Registry) -> Result<(), RegistryError> {
        if let Some(credentials) = &registry.auth {
            self.run(&[
                "auth",
                "login",
                &registry.host_address(),
                "-u",
                &credentials.user,
                "-p",
                &credentials.password,
            ])?;
        }
        Ok(())
    }
}

/// Writes a file only its owner may read (keys, passwords), creating its directory.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        create_dir(dir)?;
    }
    write(path, bytes)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(|e| RegistryError::Write(path.to_owned(), e))
}

/// `third_party/build.sh`'s default output directory: `$CAIRN_CACHE/go-out`, else
/// `~/.cache/cairn/go-out` (the Makefile's cache).
pub fn default_go_out() -> PathBuf {
    let cache = std::env::var_os("CAIRN_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/cairn")
        });
    cache.join("go-out")
}

fn create_dir(dir: &Path) -> Result<(), RegistryError> {
    fs::create_dir_all(dir).map_err(|e| RegistryError::Write(dir.to_owned(), e))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
    fs::write(path, bytes).map_err(|e| RegistryError::Write(path.to_owned(), e))
}

/// Where `third_party/build.sh` puts the host tools, and builds them there if they are
/// missing or stale (a no-op when current).
pub fn host_tools(repo: &Path, go_out: &Path) -> Result<(PathBuf, PathBuf), RegistryError> {
    let script = repo.join("third_party/build.sh");
    let output = Command::new(&script)
        .arg(go_out)
        .args(["distribution", "crane"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| RegistryError::Spawn(script.clone(), e))?;
    if !output.status.success() {
        return Err(RegistryError::Tool {
            what: format!(
                "{} {} distribution crane",
                script.display(),
                go_out.display()
            ),
            status: output.status.to_string(),
            output: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok((go_out.join("bin/registry"), go_out.join("bin/crane")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_names_the_host_as_guests_see_it() {
        let dir = tempfile::tempdir().unwrap();
        let tls = Tls::create(dir.path(), "test CA").unwrap();
        let server = fs::read_to_string(&tls.cert_path).unwrap();
        assert!(tls.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(server.starts_with("-----BEGIN CERTIFICATE-----"));
        let key = fs::read_to_string(&tls.key_path).unwrap();
        assert!(key.contains("PRIVATE KEY"));
    }

    #[test]
    fn the_config_has_auth_only_when_asked() {
        let tls = Tls {
            ca_pem: String::new(),
            ca_path: "/r/ca.crt".into(),
            cert_path: "/r/server.crt".into(),
            key_path: "/r/server.key".into(),
        };
        let open = render_config(5000, Path::new("/r/storage"), &tls, None);
        assert!(open.contains("  addr: 127.0.0.1:5000\n"), "{open}");
        assert!(
            open.contains("\n  redirect:\n    disable: true\n  maintenance:\n"),
            "{open}"
        );
        assert!(open.contains("    certificate: /r/server.crt\n"));
        assert!(!open.contains("auth:"));
        let closed = render_config(
            5000,
            Path::new("/r/storage"),
            &tls,
            Some(Path::new("/r/htpasswd")),
        );
        assert!(closed.ends_with("auth:\n  htpasswd:\n    realm: cairn\n    path: /r/htpasswd\n"));
    }
}
