//! The agent's own Kubernetes client (the `kube` crate, configured from the PKI).
//!
//! The agent talks to its apiserver as `cairn:agent` in `system:masters` (the `agent`
//! leaf of [`crate::pki`]): the reconciler needs to write cluster-scoped RBAC, which
//! only an administrator may. [`client`] builds a `kube::Client` from the PKI directory
//! alone, so any task that knows the directory can have one; it trusts only the
//! cluster CA (the initramfs has no system roots, and must not trust any).
//!
//! All certificates are ed25519. rustls (ring provider) verifies ed25519 server
//! certificates and signs with ed25519 client keys, under TLS 1.3 and 1.2; the unit
//! tests prove it against a rustls server that presents the node's apiserver
//! certificate and requires a client certificate signed by the CA.
//!
//! The kubeconfig files the Kubernetes components read and the debug service hands out
//! are [`super::kubeconfig`]'s.

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::config::AuthInfo;
use kube::Config;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// Where the agent reaches its apiserver: on the node, over loopback.
pub const LOCAL_APISERVER: &str = "https://127.0.0.1:6443";
/// The PKI leaf the agent authenticates with (`<dir>/agent.crt`, `<dir>/agent.key`).
pub const AGENT_LEAF: &str = "agent";
/// The CA certificate in the PKI directory.
pub const CA_CERT: &str = "ca.crt";
/// Connecting to a local apiserver takes milliseconds; a stuck one must not hold a
/// reconciler pass for the default 30 s.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bounds one request (the reconciler's calls are small, none is a watch).
const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// Why no client could be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} holds no PEM certificate", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{} is not a PEM certificate", path.display())]
    BadCertificate {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("{url:?} is not a valid apiserver URL")]
    Url {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot build a Kubernetes client for {url}")]
    Client {
        url: String,
        #[source]
        source: kube::Error,
    },
}

/// A Kubernetes client for the apiserver at `server_url` (normally
/// [`LOCAL_APISERVER`]) that authenticates with the `agent` leaf of the PKI in
/// `pki_dir` and trusts only `pki_dir/ca.crt`.
///
/// Reads the files once, now: call it after the PKI exists (a missing file is an
/// error naming it). Needs a Tokio runtime (the client spawns its connection tasks);
/// it does not contact the server, so it succeeds while the apiserver is still down.
/// Clone the result freely: clones share one connection pool.
pub fn client(pki_dir: &Path, server_url: &str) -> Result<kube::Client, ClientError> {
    let config = config(pki_dir, server_url)?;
    kube::Client::try_from(config).map_err(|source| ClientError::Client {
        url: server_url.to_owned(),
        source,
    })
}

/// A client with a worker kubelet's credentials (`kubeconfig`, which the kubelet
/// writes after its TLS bootstrap: the server, the cluster CA inline, and one PEM file
/// holding the client certificate and its key, named twice). The certificate and key
/// are read apart here, so the client presents the certificate once.
pub async fn kubelet_client(kubeconfig: &Path) -> Result<kube::Client, String> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let named = |err: &dyn std::error::Error| {
        format!("{}: {}", kubeconfig.display(), cairn_api::error_chain(err))
    };
    let file = Kubeconfig::read_from(kubeconfig).map_err(|e| named(&e))?;
    let mut config = Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .map_err(|e| named(&e))?;
    let auth = &mut config.auth_info;
    if let Some(path) = auth.client_certificate.take() {
        let pem = read(Path::new(&path)).map_err(|e| named(&e))?;
        let (mut certs, mut key) = (String::new(), String::new());
        for block in rustls_pki_types::pem::PemObject::pem_slice_iter(&pem) {
            let (kind, der): (rustls_pki_types::pem::SectionKind, Vec<u8>) =
                block.map_err(|e| named(&e))?;
            let label = match kind {
                rustls_pki_types::pem::SectionKind::Certificate => "CERTIFICATE",
                rustls_pki_types::pem::SectionKind::EcPrivateKey => "EC PRIVATE KEY",
                rustls_pki_types::pem::SectionKind::PrivateKey => "PRIVATE KEY",
                _ => continue,
            };
            let text = cairn_api::pem::encode(label, &der);
            match kind {
                rustls_pki_types::pem::SectionKind::Certificate => certs.push_str(&text),
                _ => key.push_str(&text),
            }
        }
        use base64::Engine as _;
        let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
        auth.client_certificate_data = Some(b64(&certs));
        auth.client_key = None;
        auth.client_key_data = Some(b64(&key).into());
    }
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.read_timeout = Some(READ_TIMEOUT);
    kube::Client::try_from(config).map_err(|e| named(&e))
}

/// The client configuration [`client`] uses: CA, client certificate and timeouts.
pub fn config(pki_dir: &Path, server_url: &str) -> Result<Config, ClientError> {
    let mut config = anonymous_config(pki_dir, server_url)?;
    let cert = pki_dir.join(format!("{AGENT_LEAF}.crt"));
    let key = pki_dir.join(format!("{AGENT_LEAF}.key"));
    // Fail here, naming the file, rather than inside kube with a vaguer message.
    for path in [&cert, &key] {
        read(path)?;
    }
    config.auth_info = AuthInfo {
        client_certificate: Some(cert.to_string_lossy().into_owned()),
        client_key: Some(key.to_string_lossy().into_owned()),
        ..AuthInfo::default()
    };
    Ok(config)
}

/// [`config`] without credentials: the CA of `pki_dir` (a worker has no agent leaf,
/// only the cluster CA) and the timeouts.
pub fn anonymous_config(pki_dir: &Path, server_url: &str) -> Result<Config, ClientError> {
    let cluster_url = server_url.parse().map_err(|source| ClientError::Url {
        url: server_url.to_owned(),
        source: Box::new(source),
    })?;
    let mut config = Config::new(cluster_url);
    config.root_cert = Some(ca_certificates(&pki_dir.join(CA_CERT))?);
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.read_timeout = Some(READ_TIMEOUT);
    config.reset_reader_on_write = true;
    Ok(config)
}

/// Every certificate in a PEM file, DER-encoded (what kube's `root_cert` takes).
fn ca_certificates(path: &Path) -> Result<Vec<Vec<u8>>, ClientError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .map(|cert| cert.map(|der| der.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| ClientError::BadCertificate {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(ClientError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn read(path: &Path) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|source| ClientError::Read {
        path: path.to_owned(),
        source,
    })
}
