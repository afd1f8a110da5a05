//! Joining against a stand-in apiserver that presents a real cairn chain (leaf + CA
//! from `pki::ensure`) and answers the token check as kube-apiserver does.

use std::net::SocketAddrV4;
use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::PrivateKeyDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use super::*;
use crate::pki::{self, NodeSubject};

const TOKEN: &str = "abcdef.0123456789abcdef";
const NODE: &str = "cairn-00000000000000000000000000000001";

/// The control plane's PKI, its apiserver certificate naming 127.0.0.1.
fn control_plane(dir: &Path) -> pki::Pki {
    let node = NodeSubject {
        node_name: "cairn-control-plane".into(),
        node_ip: Some("127.0.0.1".parse().unwrap()),
        service_ip: "10.96.0.1".parse().unwrap(),
    };
    pki::ensure(dir, &node, OffsetDateTime::now_utc()).unwrap()
}

fn acceptor(dir: &Path) -> TlsAcceptor {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = CertificateDer::pem_file_iter(dir.join("kube-apiserver.crt"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert_eq!(certs.len(), 2, "the apiserver's file holds leaf and CA");
    let key = PrivateKeyDer::from_pem_file(dir.join("kube-apiserver.key")).unwrap();
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

/// Serves until dropped: each request that completes a handshake gets `status` and a
/// SelfSubjectReview for `system:bootstrap:abcdef`; each request's head goes to the
/// channel (a handshake the client abandoned sends nothing).
async fn apiserver(dir: &Path, status: u16) -> (SocketAddrV4, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let SocketAddr::V4(addr) = listener.local_addr().unwrap() else {
        unreachable!()
    };
    let acceptor = acceptor(dir);
    let (heads, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                continue;
            };
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = heads.send(String::from_utf8_lossy(&request).into_owned());
            let body = match status {
                201 => {
                    r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview","status":{"userInfo":{"username":"system:bootstrap:abcdef"}}}"#
                }
                _ => {
                    r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#
                }
            };
            let response = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tls.write_all(response.as_bytes()).await;
            let _ = tls.shutdown().await;
        }
    });
    (addr, received)
}

fn credential(addr: SocketAddrV4, ca_hash: &str) -> Join {
    Join {
        api: addr.to_string(),
        token: TOKEN.to_owned(),
        ca_hash: ca_hash.to_owned(),
        expires: None,
    }
}

fn not_joined(result: Result<String, NotJoined>) -> (String, bool) {
    match result {
        Ok(reason) => panic!("joined: {reason}"),
        Err(failed) => (failed.reason, failed.retry),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_pins_the_ca_in_the_presented_chain_and_checks_its_token() {
    let (cp, worker) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let pki = control_plane(cp.path());
    let (addr, mut heads) = apiserver(cp.path(), 201).await;
    let pin = join_token::ca_hash(pki.ca_pem()).unwrap();
    let paths = Paths::under_root(worker.path());

    let joined = attempt(&paths, Some(&credential(addr, &pin)), NODE).await;
    let reason = joined.unwrap_or_else(|failed| panic!("{}", failed.reason));
    assert!(reason.contains("as system:bootstrap:abcdef"), "{reason}");
    let head = heads.recv().await.unwrap();
    assert!(
        head.starts_with("POST /apis/authentication.k8s.io/v1/selfsubjectreviews "),
        "{head}"
    );
    assert!(
        head.to_lowercase()
            .contains(&format!("authorization: bearer {TOKEN}")),
        "{head}"
    );
    // The CA only, never its key; the token only in the RAM config dir, mode 0600.
    let files = Files::new(&paths);
    assert_eq!(std::fs::read_to_string(files.ca()).unwrap(), pki.ca_pem());
    let pki_dir = files.pki_dir().to_owned();
    let kept: Vec<_> = std::fs::read_dir(&pki_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(kept, ["ca.crt"], "{}", pki_dir.display());
    let bootstrap = files.config(BOOTSTRAP_KUBECONFIG);
    let text = std::fs::read_to_string(&bootstrap).unwrap();
    assert!(
        text.contains(TOKEN) && text.contains(&format!("https://{addr}")),
        "{text}"
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&bootstrap).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_that_does_not_match_the_pin_gets_no_token() {
    let (cp, worker) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let pki = control_plane(cp.path());
    let (addr, mut heads) = apiserver(cp.path(), 201).await;
    let paths = Paths::under_root(worker.path());
    let other = format!("sha256:{}", "ab".repeat(32));

    let (reason, retried) =
        not_joined(attempt(&paths, Some(&credential(addr, &other)), NODE).await);
    let presented = join_token::ca_hash(pki.ca_pem()).unwrap();
    assert_eq!(
        reason,
        format!("https://{addr}: the server presented CA {presented}, not the pinned {other}")
    );
    assert!(retried);
    assert!(heads.try_recv().is_err(), "a request reached the server");
    assert!(!Path::new(&Files::new(&paths).ca()).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_says_so() {
    let (cp, worker) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let pki = control_plane(cp.path());
    let (addr, _heads) = apiserver(cp.path(), 401).await;
    let pin = join_token::ca_hash(pki.ca_pem()).unwrap();
    let paths = Paths::under_root(worker.path());

    let (reason, _) = not_joined(attempt(&paths, Some(&credential(addr, &pin)), NODE).await);
    assert_eq!(
        reason,
        format!(
            "join token abcdef refused by the API server at https://{addr} (wrong, expired \
             or already used)"
        )
    );
}

#[tokio::test]
async fn an_expired_token_is_not_tried() {
    let worker = tempfile::tempdir().unwrap();
    let paths = Paths::under_root(worker.path());
    let mut join = credential(
        "127.0.0.1:9".parse().unwrap(),
        &format!("sha256:{}", "00".repeat(32)),
    );
    join.expires = Some("2020-01-02T03:04:05Z".parse().unwrap());

    let (reason, retried) = not_joined(attempt(&paths, Some(&join), NODE).await);
    assert!(
        reason.starts_with("join token abcdef expired at 2020-01-02T03:04:05Z; "),
        "{reason}"
    );
    assert!(!retried);
}

#[tokio::test]
async fn a_node_with_its_client_certificate_is_joined_offline() {
    let (cp, worker) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let pki = control_plane(cp.path());
    let paths = Paths::under_root(worker.path());
    let files = Files::new(&paths);
    let now = OffsetDateTime::now_utc();
    let issued = pki
        .issue_client(
            &format!("system:node:{NODE}"),
            &["system:nodes".into()],
            now,
            time::Duration::days(1),
        )
        .unwrap();
    let cert_dir = paths.resolve(CERT_DIR);
    std::fs::create_dir_all(&cert_dir).unwrap();
    std::fs::write(
        cert_dir.join(CLIENT_CERT),
        format!("{}{}", issued.cert_pem, issued.key_pem),
    )
    .unwrap();
    std::fs::write(paths.resolve(KUBELET_KUBECONFIG), "kubeconfig").unwrap();
    // Not without the cluster CA it chains to.
    assert_eq!(joined_earlier(&paths, &files, NODE, now), None);
    write(Path::new(&files.ca()), pki.ca_pem(), 0o644).unwrap();
    let reason = joined_earlier(&paths, &files, NODE, now).unwrap();
    assert!(
        reason.starts_with(&format!(
            "joined earlier as system:node:{NODE}; client certificate valid until "
        )),
        "{reason}"
    );
    // Not with another node's certificate, nor once it expired.
    assert_eq!(joined_earlier(&paths, &files, "cairn-other", now), None);
    let later = now + time::Duration::days(2);
    assert_eq!(joined_earlier(&paths, &files, NODE, later), None);
    // No credential at all: nothing to try.
    std::fs::remove_file(paths.resolve(KUBELET_KUBECONFIG)).unwrap();
    let (reason, retried) = not_joined(attempt(&paths, None, NODE).await);
    assert_eq!(reason, "no [cluster.join] in the node config");
    assert!(!retried);
}
