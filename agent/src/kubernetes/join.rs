//! A worker joins its control-plane node's cluster: the `joined` step
//! (docs/interfaces.md "Workers"). The kubelet and kube-proxy wait for it.
//!
//! With the join credential of the node config (`[cluster.join]`, what `dbg
//! join-token` prints on the control-plane node):
//! 1. **Discovery.** A TLS handshake with the API address, made only to read the chain
//!    the apiserver presents (its certificate file holds the cluster CA after the leaf,
//!    `pki::APISERVER_LEAF`); nothing is sent on it. The certificate in that chain whose
//!    public-key hash is `ca_hash` is the cluster CA; no match, no join.
//! 2. **Trust.** The CA is kept in the PKI directory on the data disk (the certificate
//!    only; a worker never holds the cluster CA's key) and goes into the kubelet's
//!    bootstrap kubeconfig with the token.
//! 3. **Token check.** Over a connection verified against that CA, a
//!    `SelfSubjectReview` with the token: the control plane names it
//!    `system:bootstrap:<id>`, or refuses it (401), and the condition says which.
//!
//! The kubelet then does Kubernetes' own TLS bootstrapping: it asks for its client
//! certificate by CSR with the token, the controller-manager approves it, and the
//! kubelet keeps it below [`CERT_DIR`] with its kubeconfig at [`KUBELET_KUBECONFIG`].
//! A worker that has those from an earlier boot is joined at once, offline: the kubelet
//! makes no new CSR, and the token (by then likely expired) is not used.
//!
//! Everything but an expired token is retried with backoff: the control plane may
//! still be starting, and its token authenticator answers 401 until it has read the
//! token Secrets.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use time::OffsetDateTime;

use cairn_api::error_chain;
use cairn_api::node_config::Join;

use super::{join_token, kubeconfig, Files};
use crate::conditions::Conditions;
use crate::Paths;

pub const CONDITION: &str = cairn_api::names::condition::JOINED;
/// The kubelet's bootstrap kubeconfig, in [`super::CONFIG_DIR`] (RAM: it holds the token).
pub const BOOTSTRAP_KUBECONFIG: &str = "bootstrap-kubelet.kubeconfig";
/// The kubeconfig the kubelet writes once its client certificate is issued.
pub const KUBELET_KUBECONFIG: &str = "/var/lib/kubelet/kubeconfig";
/// Where the kubelet keeps its certificates (data disk).
pub const CERT_DIR: &str = "/var/lib/kubelet/pki";
/// The kubelet's current client certificate and key, one PEM file.
pub const CLIENT_CERT: &str = "kubelet-client-current.pem";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_RETRY: Duration = Duration::from_secs(2);
const LAST_RETRY: Duration = Duration::from_secs(30);

/// Why an attempt did not join.
struct NotJoined {
    reason: String,
    /// Whether another attempt could succeed.
    retry: bool,
}

fn retry(reason: String) -> NotJoined {
    NotJoined {
        reason,
        retry: true,
    }
}

/// Joins (or finds the node joined) and sets [`CONDITION`]; spawn once at boot.
pub async fn run(paths: Paths, join: Option<Join>, node_name: String, conditions: Conditions) {
    conditions.set(CONDITION, false, "joining");
    let mut wait = FIRST_RETRY;
    let mut last = String::new();
    loop {
        match attempt(&paths, join.as_ref(), &node_name).await {
            Ok(reason) => {
                tracing::info!("joined: {reason}");
                return conditions.set(CONDITION, true, reason);
            }
            Err(failed) => {
                if failed.reason != last {
                    tracing::warn!("joined: {}", failed.reason);
                    last.clone_from(&failed.reason);
                }
                conditions.set(CONDITION, false, failed.reason);
                if !failed.retry {
                    return;
                }
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(LAST_RETRY);
    }
}

async fn attempt(paths: &Paths, join: Option<&Join>, node_name: &str) -> Result<String, NotJoined> {
    let files = Files::new(paths);
    let now = OffsetDateTime::now_utc();
    if let Some(reason) = joined_earlier(paths, &files, node_name, now) {
        return Ok(reason);
    }
    let join = join.ok_or_else(|| NotJoined {
        reason: "no [cluster.join] in the node config".to_owned(),
        retry: false,
    })?;
    // The node config was validated: these parse.
    let (api, id) = (join.api().map_err(retry)?, join.token_id().map_err(retry)?);
    if let Some(expires) = expiry(join) {
        if expires <= now {
            return Err(NotJoined {
                reason: format!(
                    "join token {id} expired at {}; get a new one with `dbg join-token` on \
                     the control-plane node and put it into this node's config",
                    rfc3339(expires)
                ),
                retry: false,
            });
        }
    }
    let url = format!("https://{api}");
    let chain = presented_chain(SocketAddr::V4(api))
        .await
        .map_err(|err| retry(format!("cannot reach {url}: {err}")))?;
    let ca_der = pinned_ca(&chain, &join.ca_hash).map_err(|err| retry(format!("{url}: {err}")))?;
    let ca_pem = cairn_api::pem::certificate(ca_der.as_ref());
    let bootstrap =
        kubeconfig::render_token(&url, &ca_pem, &join.token, &format!("bootstrap-{id}"));
    write(Path::new(&files.ca()), &ca_pem, 0o644).map_err(retry)?;
    write(
        Path::new(&files.config(BOOTSTRAP_KUBECONFIG)),
        &bootstrap,
        0o600,
    )
    .map_err(retry)?;
    let user = review(&bootstrap).await.map_err(|err| {
        retry(match err {
            Review::Refused => format!(
                "join token {id} refused by the API server at {url} (wrong, expired or \
                 already used)"
            ),
            Review::Failed(err) => format!("cannot check the join token at {url}: {err}"),
        })
    })?;
    Ok(format!(
        "cluster CA {} pinned; join token accepted by {url} as {user}; the kubelet \
         requests its client certificate",
        join.ca_hash
    ))
}

/// `joined` from an earlier boot: the kubelet's kubeconfig, a client certificate for
/// this node that is still valid, and the cluster CA.
fn joined_earlier(
    paths: &Paths,
    files: &Files,
    node_name: &str,
    now: OffsetDateTime,
) -> Option<String> {
    use rustls::pki_types::pem::PemObject;
    use x509_parser::prelude::{FromDer, X509Certificate};
    let ca = Path::new(&files.ca()).to_owned();
    let kubeconfig = paths.resolve(KUBELET_KUBECONFIG);
    if !ca.exists() || !kubeconfig.exists() {
        return None;
    }
    let pem = std::fs::read(paths.resolve(CERT_DIR).join(CLIENT_CERT)).ok()?;
    let der = CertificateDer::pem_slice_iter(&pem).next()?.ok()?;
    let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
    let user = format!("system:node:{node_name}");
    let named = cert
        .subject()
        .iter_common_name()
        .any(|cn| cn.as_str() == Ok(user.as_str()));
    let until = cert.validity().not_after.timestamp();
    if !named || until <= now.unix_timestamp() {
        return None;
    }
    let until = OffsetDateTime::from_unix_timestamp(until).map_or(String::new(), rfc3339);
    Some(format!(
        "joined earlier as {user}; client certificate valid until {until}"
    ))
}

fn expiry(join: &Join) -> Option<OffsetDateTime> {
    let text = join.expires?.to_string();
    OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339).ok()
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn write(path: &Path, text: &str, mode: u32) -> Result<(), String> {
    super::create_dir(path.parent().unwrap_or(Path::new("/")))
        .and_then(|()| super::write_file(&path.display().to_string(), text, mode))
        .map_err(|err| error_chain(&err))
}

/// The certificates the server at `addr` presents, leaf first. The handshake is
/// abandoned once they are read: nothing is sent to a server not yet trusted.
async fn presented_chain(addr: SocketAddr) -> Result<Vec<CertificateDer<'static>>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let capture = Arc::new(Capture {
        chain: Mutex::new(Vec::new()),
        schemes: provider
            .signature_verification_algorithms
            .supported_schemes(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|err| err.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(capture.clone())
        .with_no_client_auth();
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| format!("no connection within {CONNECT_TIMEOUT:?}"))?
        .map_err(|err| err.to_string())?;
    let name = ServerName::IpAddress(addr.ip().into());
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let handshake = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, stream)).await;
    let chain = std::mem::take(&mut *capture.chain.lock().unwrap_or_else(|e| e.into_inner()));
    match (chain.is_empty(), handshake) {
        (false, _) => Ok(chain),
        (true, Err(_)) => Err(format!("no TLS handshake within {CONNECT_TIMEOUT:?}")),
        (true, Ok(Err(err))) => Err(format!("TLS handshake: {err}")),
        (true, Ok(Ok(_))) => Err("the server presented no certificate".to_owned()),
    }
}

/// The certificate in `chain` whose public-key hash is `pin`, if it is not the leaf
/// (the server's own certificate is no CA).
fn pinned_ca<'a>(
    chain: &'a [CertificateDer<'static>],
    pin: &str,
) -> Result<&'a CertificateDer<'static>, String> {
    let mut presented = Vec::new();
    for cert in chain.iter().skip(1) {
        let hash = join_token::ca_hash_der(cert.as_ref())?;
        if hash == pin {
            return Ok(cert);
        }
        presented.push(hash);
    }
    match presented.is_empty() {
        true => {
            Err("the server sent no CA in its chain (is it a cairn control-plane node?)".to_owned())
        }
        false => Err(format!(
            "the server presented CA {}, not the pinned {pin}",
            presented.join(", ")
        )),
    }
}

/// Records the presented chain and fails the handshake.
#[derive(Debug)]
struct Capture {
    chain: Mutex<Vec<CertificateDer<'static>>>,
    schemes: Vec<SignatureScheme>,
}

const CAPTURED: &str = "chain read; the handshake ends here";

impl ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain = std::iter::once(end_entity).chain(intermediates);
        *self.chain.lock().unwrap_or_else(|e| e.into_inner()) =
            chain.map(|cert| cert.clone().into_owned()).collect();
        Err(rustls::Error::General(CAPTURED.to_owned()))
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General(CAPTURED.to_owned()))
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General(CAPTURED.to_owned()))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone()
    }
}

enum Review {
    /// 401: the token does not authenticate.
    Refused,
    Failed(String),
}

/// Who the API server takes the bootstrap kubeconfig's token for.
async fn review(bootstrap: &str) -> Result<String, Review> {
    let failed = |err: &dyn std::error::Error| Review::Failed(error_chain(err));
    let kubeconfig = Kubeconfig::from_yaml(bootstrap).map_err(|e| failed(&e))?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| failed(&e))?;
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.read_timeout = Some(CONNECT_TIMEOUT);
    let client = kube::Client::try_from(config).map_err(|e| failed(&e))?;
    let body = serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "SelfSubjectReview",
    });
    let request = http::Request::post("/apis/authentication.k8s.io/v1/selfsubjectreviews")
        .header("content-type", "application/json")
        .body(body.to_string().into_bytes())
        .map_err(|e| failed(&e))?;
    match client.request::<serde_json::Value>(request).await {
        Ok(review) => Ok(review["status"]["userInfo"]["username"]
            .as_str()
            .unwrap_or("an unnamed user")
            .to_owned()),
        Err(kube::Error::Api(status)) if status.code == 401 => Err(Review::Refused),
        Err(err) => Err(failed(&err)),
    }
}

#[cfg(test)]
#[path = "join_tests.rs"]
mod tests;
