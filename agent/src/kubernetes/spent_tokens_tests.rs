//! Which tokens are spent, from CSRs as the kubelet makes them (rcgen PKCS#10) and
//! the controller-manager issues them.

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequestSpec, CertificateSigningRequestStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use rcgen::{CertificateParams, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};

use super::*;

const WORKER: &str = "cairn-00000000000000000000000000000002";

fn node(name: &str) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        ..Node::default()
    }
}

/// A client CSR for `system:node:<node>` made by `username` with `signer`, issued or not.
fn csr(username: &str, signer: &str, node: &str, issued: bool) -> CertificateSigningRequest {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    (params.distinguished_name).push(DnType::CommonName, format!("system:node:{node}"));
    (params.distinguished_name).push(DnType::OrganizationName, "system:nodes");
    let request = params.serialize_request(&key).unwrap().pem().unwrap();
    CertificateSigningRequest {
        spec: CertificateSigningRequestSpec {
            signer_name: signer.to_owned(),
            username: Some(username.to_owned()),
            request: ByteString(request.into_bytes()),
            ..CertificateSigningRequestSpec::default()
        },
        status: Some(CertificateSigningRequestStatus {
            certificate: issued.then(|| ByteString(b"-----BEGIN CERTIFICATE-----".to_vec())),
            ..CertificateSigningRequestStatus::default()
        }),
        ..CertificateSigningRequest::default()
    }
}

#[test]
fn a_token_is_spent_once_its_issued_certificates_node_registered() {
    let csrs = [csr("system:bootstrap:abcdef", CLIENT_SIGNER, WORKER, true)];
    assert_eq!(
        spent(&csrs, &[node(WORKER)]),
        [Spent {
            token_id: "abcdef".to_owned(),
            node: WORKER.to_owned()
        }]
    );
    // The Node has not registered yet: the kubelet may still need the token.
    assert_eq!(spent(&csrs, &[node("cairn-other")]), []);
}

#[test]
fn unissued_renewed_or_foreign_requests_spend_nothing() {
    let nodes = [node(WORKER)];
    for csr in [
        // Approved or pending, but no certificate yet.
        csr("system:bootstrap:abcdef", CLIENT_SIGNER, WORKER, false),
        // A renewal by the node itself.
        csr(
            &format!("system:node:{WORKER}"),
            CLIENT_SIGNER,
            WORKER,
            true,
        ),
        // Another signer.
        csr(
            "system:bootstrap:abcdef",
            "kubernetes.io/kubelet-serving",
            WORKER,
            true,
        ),
    ] {
        assert_eq!(
            spent(std::slice::from_ref(&csr), &nodes),
            [],
            "{:?}",
            csr.spec
        );
    }
}
