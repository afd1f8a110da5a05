//! The node API over real TLS on 127.0.0.1: who gets in, who is refused, and which
//! side says so. The node's certificates come from a real node PKI, the owner's from
//! an owner CA made here as `dbg owner init` makes it.

use std::sync::Arc;
use std::time::Duration;

use cairn_api::owner_client::{connect_owner, OwnerConnectError, OwnerIdentity, ServerTrust};
use cairn_api::v1::ListConditionsRequest;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    PKCS_ED25519,
};
use time::OffsetDateTime;
use tokio::sync::oneshot;

use super::*;
use crate::pki::{self, NodeSubject};

const TIMEOUT: Duration = Duration::from_secs(10);

struct OwnerCa {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn owner_ca(name: &str) -> OwnerCa {
    let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let pem = params.self_signed(&key).unwrap().pem();
    OwnerCa {
        pem,
        issuer: Issuer::new(params, key),
    }
}

/// A client certificate from `ca`, valid from `from` to `until` (relative to now).
fn client(ca: &OwnerCa, from: time::Duration, until: time::Duration) -> OwnerIdentity {
    let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, "owner");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let now = OffsetDateTime::now_utc();
    params.not_before = now + from;
    params.not_after = now + until;
    OwnerIdentity {
        cert_pem: params.signed_by(&key, &ca.issuer).unwrap().pem(),
        key_pem: key.serialize_pem(),
    }
}

fn valid(ca: &OwnerCa) -> OwnerIdentity {
    client(ca, time::Duration::minutes(-5), time::Duration::hours(1))
}

struct Node {
    endpoint: String,
    cluster_ca: String,
    conditions: Conditions,
    _root: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

async fn node(owner: &OwnerCa) -> Node {
    let root = tempfile::tempdir().unwrap();
    let subject = NodeSubject {
        node_name: "cairn-00".into(),
        node_ip: None,
        service_ip: "10.96.0.1".parse().unwrap(),
    };
    let now = OffsetDateTime::now_utc();
    let pki = Arc::new(pki::ensure(&root.path().join("pki"), &subject, now).unwrap());
    let ips = ["127.0.0.1".parse().unwrap()];
    let issued = pki
        .issue_server("cairn-00", &["cairn-00"], &ips, now, node::SERVING_VALIDITY)
        .unwrap();
    let chain = format!("{}{}", issued.cert_pem, pki.ca_pem());
    let tls = node::tls_config(&chain, &issued.key_pem, &owner.pem).unwrap();
    let conditions = Conditions::new();
    conditions.set("storage", true, "mounted");
    let (power, _) = crate::pid1::PowerRequester::channel();
    let handlers = handlers(ApiState {
        conditions: conditions.clone(),
        logs: Logs::new(crate::logbuf::Limits::default()),
        services: Arc::new(NoServices),
        paths: crate::Paths::under_root(root.path()),
        pki: Some(pki.clone()),
        power,
        node_ip: None,
    });
    let listener = node::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let endpoint = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(node::serve_on(listener, handlers, tls, async {
        stopped.await.ok();
    }));
    Node {
        endpoint,
        cluster_ca: pki.ca_pem().to_owned(),
        conditions,
        _root: root,
        _stop: stop,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_gets_in_and_pins_the_node_ca_on_first_use() {
    let owner = owner_ca("owner");
    let node = node(&owner).await;
    let connection = connect_owner(
        &node.endpoint,
        &valid(&owner),
        &ServerTrust::FirstUse,
        TIMEOUT,
    )
    .await
    .unwrap();
    assert_eq!(connection.server_ca_pem, node.cluster_ca);
    let mut client = connection.client;
    let listed = client
        .list_conditions(ListConditionsRequest { names: vec![] })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.conditions.len(), node.conditions.list().len());
    // The pin works for the next connection.
    let pinned = ServerTrust::Pinned(node.cluster_ca.clone());
    connect_owner(&node.endpoint, &valid(&owner), &pinned, TIMEOUT)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_not_from_the_owner_ca_are_refused_by_the_node() {
    let owner = owner_ca("owner");
    let node = node(&owner).await;
    let stranger = owner_ca("stranger");
    let expired = client(&owner, time::Duration::hours(-2), time::Duration::hours(-1));
    let not_yet = client(&owner, time::Duration::hours(1), time::Duration::hours(2));
    // A self-signed certificate: its own CA.
    let self_signed = {
        let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "owner");
        OwnerIdentity {
            cert_pem: params.self_signed(&key).unwrap().pem(),
            key_pem: key.serialize_pem(),
        }
    };
    for (what, identity) in [
        ("another owner CA", valid(&stranger)),
        ("expired", expired),
        ("not yet valid", not_yet),
        ("self-signed", self_signed),
    ] {
        let err = connect_owner(&node.endpoint, &identity, &ServerTrust::FirstUse, TIMEOUT)
            .await
            .unwrap_err();
        assert!(
            matches!(err, OwnerConnectError::Refused(..)),
            "{what}: {}",
            cairn_api::error_chain(&err)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_a_client_certificate_gets_no_call_through() {
    let owner = owner_ca("owner");
    let node = node(&owner).await;
    // A TLS 1.3 client with no certificate at all.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(node.cluster_ca.as_bytes()).unwrap())
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(&node.endpoint)
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("cairn-00").unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut tls = connector.connect(name, tcp).await.unwrap();
    // The node's verdict arrives as an alert on the first read.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(TIMEOUT, tls.read(&mut buf))
        .await
        .unwrap();
    let err = read.expect_err("the node answered a client without a certificate");
    assert!(err.to_string().contains("CertificateRequired"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_ca_is_not_the_pinned_one_is_refused_by_the_client() {
    let owner = owner_ca("owner");
    let node = node(&owner).await;
    let other_node = owner_ca("some other cluster CA");
    let pinned = ServerTrust::Pinned(other_node.pem.clone());
    let err = connect_owner(&node.endpoint, &valid(&owner), &pinned, TIMEOUT)
        .await
        .unwrap_err();
    assert!(
        matches!(err, OwnerConnectError::ServerCertificate(..)),
        "{}",
        cairn_api::error_chain(&err)
    );
}

/// The limits of the debug service hold on the mTLS listener too: an oversized request
/// and a malformed one each get their own status, and the same connection goes on
/// serving the owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_malformed_requests_get_clean_statuses_over_mtls() {
    use cairn_api::v1::GetLogsRequest;
    let owner = owner_ca("owner");
    let node = node(&owner).await;
    let mut client = connect_owner(
        &node.endpoint,
        &valid(&owner),
        &ServerTrust::FirstUse,
        TIMEOUT,
    )
    .await
    .unwrap()
    .client;
    let logs = |component: String| GetLogsRequest {
        component,
        tail_lines: None,
        follow: false,
    };
    let huge = client.get_logs(logs("a".repeat(MAX_REQUEST * 2))).await;
    let status = huge.map(|_| ()).unwrap_err();
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status}");
    assert!(status.message().contains("too large"), "{status}");
    let bad = client.get_logs(logs("../etcd".into())).await;
    let status = bad.map(|_| ()).unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
    assert!(status.message().contains("component"), "{status}");
    let listed = client
        .list_conditions(ListConditionsRequest { names: vec![] })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.conditions.len(), node.conditions.list().len());
}
