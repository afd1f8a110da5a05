//! Connecting to a node's NodeService (the owner's node API) with mTLS.
//!
//! The client presents the owner certificate and checks the node's certificate
//! against the node's cluster CA. Which CA that is, a client that has never talked to
//! the node cannot know (the node makes its CA at first boot), so [`ServerTrust`] says
//! either "this CA" (pinned from an earlier connection) or "first use": accept the CA
//! the node sends with its certificate, if the certificate is really signed by it, and
//! report it ([`OwnerConnection::server_ca_pem`]) so the caller can pin it, as SSH does
//! with host keys. TLS 1.3 only, like the server.
//!
//! Who refused is in the error: [`OwnerConnectError::ServerCertificate`] when this side
//! refused the node's certificate, [`OwnerConnectError::Refused`] when the node refused
//! ours (its TLS alert is in the message), the other variants as in [`crate::client`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::node::v1::node_service_client::NodeServiceClient;
use crate::v1::GetBuildInfoRequest;

/// A connected NodeService client.
pub type OwnerClient = NodeServiceClient<Channel>;

/// How to trust the node's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerTrust {
    /// Only a certificate issued by this CA (PEM), pinned at an earlier connection.
    Pinned(String),
    /// Trust on first use: the CA the node sends along.
    FirstUse,
}

/// The owner's client certificate and key (PEM), as `dbg owner init` wrote them.
#[derive(Clone)]
pub struct OwnerIdentity {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for OwnerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnerIdentity").finish_non_exhaustive()
    }
}

/// A client and what the node showed.
#[derive(Debug)]
pub struct OwnerConnection {
    pub client: OwnerClient,
    /// The channel under `client`, for calling other services over the same mTLS
    /// connection (the boot test asks it for debug-only calls, which must be absent).
    pub channel: Channel,
    /// The CA (PEM) the node's certificate was verified against: the pinned one, or on
    /// first use the one the node sent.
    pub server_ca_pem: String,
}

/// Why no client could be had.
#[derive(Debug, thiserror::Error)]
pub enum OwnerConnectError {
    #[error("invalid node API endpoint {0:?}")]
    InvalidEndpoint(String),
    #[error("the owner {0} is not PEM (run `dbg owner init`)")]
    Identity(&'static str, #[source] rustls::pki_types::pem::Error),
    #[error("the pinned node CA is not a PEM certificate")]
    PinnedCa(#[source] rustls::pki_types::pem::Error),
    #[error("TLS settings")]
    Tls(#[source] rustls::Error),
    #[error("cannot reach the node API at {0}")]
    Unreachable(String, #[source] tonic::transport::Error),
    #[error(
        "this client refused the certificate of the node API at {0}: {1} (server \
         certificate mismatch: is it the node whose CA was pinned?)"
    )]
    ServerCertificate(String, String),
    #[error(
        "the node API at {0} refused this client: {1} (is the owner certificate from the \
         owner CA the node pinned?)"
    )]
    Refused(String, String),
    #[error("the node API at {0} does not answer")]
    NoAnswer(String, #[source] tonic::Status),
    #[error("no answer from the node API at {0} within {1:?}")]
    Timeout(String, Duration),
}

/// Connects to the NodeService at `endpoint` (`https://host:port` or `host:port`) as
/// `identity`, trusting the node as `trust` says, and makes one cheap call
/// (GetBuildInfo), all within `timeout`.
pub async fn connect_owner(
    endpoint: &str,
    identity: &OwnerIdentity,
    trust: &ServerTrust,
    timeout: Duration,
) -> Result<OwnerConnection, OwnerConnectError> {
    let authority = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest)
        .trim_end_matches('/')
        .to_owned();
    // tonic speaks HTTP/2 over whatever the connector returns; the TLS is ours.
    let uri: Uri = format!("http://{authority}")
        .parse()
        .map_err(|_| OwnerConnectError::InvalidEndpoint(endpoint.to_owned()))?;
    let host = uri
        .host()
        .ok_or_else(|| OwnerConnectError::InvalidEndpoint(endpoint.to_owned()))?
        .trim_matches(|c| c == '[' || c == ']')
        .to_owned();
    let server_name = ServerName::try_from(host)
        .map_err(|_| OwnerConnectError::InvalidEndpoint(endpoint.to_owned()))?;
    let verifier = Arc::new(NodeVerifier::new(trust)?);
    let config = Arc::new(client_config(identity, verifier.clone())?);
    let connector = tower::service_fn(move |uri: Uri| {
        let (config, server_name) = (config.clone(), server_name.clone());
        async move {
            let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
            let tcp = tokio::net::TcpStream::connect(authority).await?;
            tcp.set_nodelay(true)?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(server_name, tcp)
                .await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    let shown = format!("https://{authority}");
    let attempt = async {
        let channel = Endpoint::from(uri)
            .connect_timeout(timeout)
            .connect_with_connector(connector)
            .await
            .map_err(|e| classify_transport(&shown, &verifier, e))?;
        let mut client =
            NodeServiceClient::new(channel.clone()).max_decoding_message_size(16 << 20);
        client
            .get_build_info(GetBuildInfoRequest {})
            .await
            .map_err(|status| classify_status(&shown, &verifier, status))?;
        let server_ca_pem = verifier.seen().unwrap_or_default();
        Ok(OwnerConnection {
            client,
            channel,
            server_ca_pem,
        })
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(OwnerConnectError::Timeout(shown, timeout)),
    }
}

/// [`connect_owner`], retried every 250 ms (each attempt at most 5 s) until `within`
/// has passed while the node API does not answer yet: it starts a moment after the
/// node reports ready. A refusal by either side, or a bad endpoint or identity, is
/// final. Returns the last error at the deadline.
pub async fn connect_owner_within(
    endpoint: &str,
    identity: &OwnerIdentity,
    trust: &ServerTrust,
    within: Duration,
) -> Result<OwnerConnection, OwnerConnectError> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match connect_owner(endpoint, identity, trust, left.min(Duration::from_secs(5))).await {
            Err(
                OwnerConnectError::Unreachable(..)
                | OwnerConnectError::NoAnswer(..)
                | OwnerConnectError::Timeout(..),
            ) if left > Duration::from_millis(250) => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            result => return result,
        }
    }
}

fn client_config(
    identity: &OwnerIdentity,
    verifier: Arc<NodeVerifier>,
) -> Result<ClientConfig, OwnerConnectError> {
    let chain = CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| OwnerConnectError::Identity("certificate", e))?;
    let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes())
        .map_err(|e| OwnerConnectError::Identity("key", e))?;
    let mut config = ClientConfig::builder_with_provider(verifier.provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(OwnerConnectError::Tls)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(chain, key)
        .map_err(OwnerConnectError::Tls)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The node's side of the error, from what the handshake left behind.
fn classify_transport(
    endpoint: &str,
    verifier: &NodeVerifier,
    error: tonic::transport::Error,
) -> OwnerConnectError {
    if let Some(why) = verifier.refusal() {
        return OwnerConnectError::ServerCertificate(endpoint.to_owned(), why);
    }
    let chain = crate::error_chain(&error);
    match alert(&chain) {
        Some(alert) => OwnerConnectError::Refused(endpoint.to_owned(), alert),
        None => OwnerConnectError::Unreachable(endpoint.to_owned(), error),
    }
}

fn classify_status(
    endpoint: &str,
    verifier: &NodeVerifier,
    status: tonic::Status,
) -> OwnerConnectError {
    if let Some(why) = verifier.refusal() {
        return OwnerConnectError::ServerCertificate(endpoint.to_owned(), why);
    }
    // TLS 1.3: the server judges the client certificate after the client's side of the
    // handshake is done, so its alert arrives with the first call.
    // Often the write that follows the handshake meets the closed connection before
    // the alert is read: a node whose certificate checked out and that then hung up on
    // the first call's transport refused this client.
    let transport = std::error::Error::source(&status).is_some();
    match alert(&crate::error_chain(&status)) {
        Some(alert) => OwnerConnectError::Refused(endpoint.to_owned(), alert),
        None if transport && verifier.seen().is_some() => OwnerConnectError::Refused(
            endpoint.to_owned(),
            "it closed the connection after the TLS handshake".to_owned(),
        ),
        None => OwnerConnectError::NoAnswer(endpoint.to_owned(), status),
    }
}

/// The TLS alert in an error's text, if the peer sent one ("received fatal alert:
/// CertificateRequired").
fn alert(chain: &str) -> Option<String> {
    const PREFIX: &str = "received fatal alert: ";
    let at = chain.find(PREFIX)? + PREFIX.len();
    let name: String = chain[at..]
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    Some(format!("{PREFIX}{name}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_alert_is_cut_out_of_an_error_chain() {
        let chain = "transport error: connection error: received fatal alert: DecryptError\" }";
        assert_eq!(
            super::alert(chain).as_deref(),
            Some("received fatal alert: DecryptError")
        );
        assert_eq!(super::alert("connection reset"), None);
    }
}

/// Checks the node's certificate against the pinned CA, or on first use against the
/// CA the node sends, and remembers what it saw.
#[derive(Debug)]
struct NodeVerifier {
    pinned: Option<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
    seen: Mutex<Option<CertificateDer<'static>>>,
    refused: Mutex<Option<String>>,
}

impl NodeVerifier {
    fn new(trust: &ServerTrust) -> Result<Self, OwnerConnectError> {
        let pinned = match trust {
            ServerTrust::Pinned(pem) => Some(
                CertificateDer::from_pem_slice(pem.as_bytes())
                    .map_err(OwnerConnectError::PinnedCa)?,
            ),
            ServerTrust::FirstUse => None,
        };
        Ok(NodeVerifier {
            pinned,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            seen: Mutex::new(None),
            refused: Mutex::new(None),
        })
    }

    fn seen(&self) -> Option<String> {
        let der = self.seen.lock().ok()?.clone()?;
        Some(crate::pem::certificate(&der))
    }

    fn refusal(&self) -> Option<String> {
        self.refused.lock().ok()?.clone()
    }

    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<CertificateDer<'static>, String> {
        let ca = match (&self.pinned, intermediates.first()) {
            (Some(pinned), _) => pinned.clone(),
            (None, Some(sent)) => sent.clone().into_owned(),
            (None, None) => return Err("the node sent no CA certificate to pin".to_owned()),
        };
        let mut roots = RootCertStore::empty();
        roots
            .add(ca.clone())
            .map_err(|e| format!("the CA certificate: {e}"))?;
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)
            .map_err(|e| format!("the node's certificate: {e}"))?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &roots,
            &[],
            now,
            self.provider.signature_verification_algorithms.all,
        )
        .map_err(|e| match self.pinned {
            Some(_) => format!("not issued by the pinned node CA: {e}"),
            None => format!("not issued by the CA it sent: {e}"),
        })?;
        Ok(ca)
    }
}

impl ServerCertVerifier for NodeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.check(end_entity, intermediates, now) {
            Ok(ca) => {
                if let Ok(mut seen) = self.seen.lock() {
                    *seen = Some(ca);
                }
                Ok(ServerCertVerified::assertion())
            }
            Err(why) => {
                if let Ok(mut refused) = self.refused.lock() {
                    *refused = Some(why.clone());
                }
                Err(rustls::Error::General(why))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
