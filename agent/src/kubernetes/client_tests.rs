//! The client against a TLS server that holds the node's real (ed25519) certificates.

use std::path::Path;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::*;
use crate::pki::{self, NodeSubject};

fn node_pki(dir: &Path) -> pki::Pki {
    let node = NodeSubject {
        node_name: "cairn-0123456789abcdef0123456789abcdef".into(),
        node_ip: Some("10.0.2.15".parse().unwrap()),
        service_ip: "10.96.0.1".parse().unwrap(),
    };
    pki::ensure(dir, &node, OffsetDateTime::now_utc()).unwrap()
}

/// What kube-apiserver does with TLS: its own certificate, client certificates
/// required and verified against the cluster CA.
fn apiserver_tls(dir: &Path) -> TlsAcceptor {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(dir.join(CA_CERT)).unwrap() {
        roots.add(ca.unwrap()).unwrap();
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let certs = CertificateDer::pem_file_iter(dir.join("kube-apiserver.crt"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("kube-apiserver.key")).unwrap();
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

/// Answers one request with a `/version` body, after a TLS 1.3 handshake that
/// required a client certificate; returns how many certificates the client sent.
async fn serve_version_once(listener: TcpListener, acceptor: TlsAcceptor) -> usize {
    let (tcp, _) = listener.accept().await.unwrap();
    let mut tls = acceptor.accept(tcp).await.unwrap();
    let presented = tls.get_ref().1.peer_certificates().map_or(0, <[_]>::len);
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tls.read(&mut buf).await.unwrap();
        assert!(n > 0, "client closed before a full request");
        request.extend_from_slice(&buf[..n]);
    }
    assert!(request.starts_with(b"GET /version"), "{request:?}");
    let body = r#"{"major":"1","minor":"37","gitVersion":"v1.37.2","gitCommit":"","gitTreeState":"","buildDate":"","goVersion":"","compiler":"","platform":"linux/amd64"}"#;
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(response.as_bytes()).await.unwrap();
    tls.shutdown().await.unwrap();
    presented
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_client_speaks_tls_with_ed25519_certificates_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    node_pki(dir.path());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(serve_version_once(listener, apiserver_tls(dir.path())));

    let client = client(dir.path(), &url).unwrap();
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.git_version, "v1.37.2");
    assert_eq!(
        server.await.unwrap(),
        1,
        "the agent presented no client certificate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_outside_the_cluster_ca_is_refused() {
    let (ours, theirs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    node_pki(ours.path());
    node_pki(theirs.path());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let acceptor = apiserver_tls(theirs.path());
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        acceptor.accept(tcp).await.is_ok()
    });
    let client = client(ours.path(), &url).unwrap();
    assert!(client.apiserver_version().await.is_err());
    assert!(!server.await.unwrap());
}

#[tokio::test]
async fn missing_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = config(dir.path(), LOCAL_APISERVER).unwrap_err();
    assert!(err.to_string().contains("ca.crt"), "{err}");
    std::fs::write(dir.path().join(CA_CERT), "not pem").unwrap();
    let err = config(dir.path(), LOCAL_APISERVER).unwrap_err();
    assert!(matches!(err, ClientError::NoCertificate { .. }), "{err}");
    node_pki(dir.path());
    std::fs::remove_file(dir.path().join("agent.key")).unwrap();
    let err = config(dir.path(), LOCAL_APISERVER).unwrap_err();
    assert!(err.to_string().contains("agent.key"), "{err}");
    let err = config(dir.path(), "not a url").unwrap_err();
    assert!(matches!(err, ClientError::Url { .. }), "{err}");
}
