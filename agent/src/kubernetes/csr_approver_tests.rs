//! Verdicts on requests made as a kubelet makes them (rcgen PKCS#10, ECDSA P-256).

use k8s_openapi::api::certificates::v1::CertificateSigningRequestSpec;
use k8s_openapi::api::core::v1::{NodeAddress, NodeStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use rcgen::{CertificateParams, DnType, KeyPair, SanType, PKCS_ECDSA_P256_SHA256};

use super::*;

const WORKER: &str = "cairn-00000000000000000000000000000002";
const OTHER: &str = "cairn-00000000000000000000000000000001";

fn node(name: &str, ip: &str) -> Node {
    let address = |type_: &str, address: &str| NodeAddress {
        type_: type_.to_owned(),
        address: address.to_owned(),
    };
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        status: Some(NodeStatus {
            addresses: Some(vec![address("InternalIP", ip), address("Hostname", name)]),
            ..NodeStatus::default()
        }),
        ..Node::default()
    }
}

fn nodes() -> Vec<Node> {
    vec![
        node(OTHER, "192.168.100.10"),
        node(WORKER, "192.168.100.11"),
    ]
}

/// A kubelet's serving request: CN and O of a node, SANs as given.
fn request(cn: &str, orgs: &[&str], dns: &[&str], ips: &[&str]) -> Vec<u8> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, cn);
    for org in orgs {
        params
            .distinguished_name
            .push(DnType::OrganizationName, *org);
    }
    let mut sans: Vec<SanType> = dns
        .iter()
        .map(|d| SanType::DnsName((*d).try_into().unwrap()))
        .collect();
    sans.extend(ips.iter().map(|ip| SanType::IpAddress(ip.parse().unwrap())));
    params.subject_alt_names = sans;
    params
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap()
        .into_bytes()
}

fn csr(user: &str, request: Vec<u8>) -> CertificateSigningRequest {
    CertificateSigningRequest {
        metadata: ObjectMeta {
            name: Some("csr-test".to_owned()),
            ..ObjectMeta::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(request),
            signer_name: SIGNER.to_owned(),
            username: Some(user.to_owned()),
            groups: Some(vec!["system:nodes".into(), "system:authenticated".into()]),
            usages: Some(vec![
                "digital signature".into(),
                "key encipherment".into(),
                "server auth".into(),
            ]),
            ..CertificateSigningRequestSpec::default()
        },
        status: None,
    }
}

fn user() -> String {
    format!("system:node:{WORKER}")
}

fn denied(verdict: Verdict) -> String {
    match verdict {
        Verdict::Deny(reason) => reason,
        Verdict::Approve(reason) => panic!("approved: {reason}"),
    }
}

#[test]
fn a_node_gets_a_serving_certificate_for_its_own_name_and_address() {
    let req = request(&user(), &["system:nodes"], &[WORKER], &["192.168.100.11"]);
    let verdict = decide(&csr(&user(), req), &nodes());
    assert_eq!(
        verdict,
        Verdict::Approve(format!(
            "node {WORKER}: names [\"{WORKER}\"] and addresses [\"192.168.100.11\"] are its own"
        ))
    );
}

#[test]
fn a_node_asking_for_another_nodes_address_or_name_is_denied() {
    let nodes = nodes();
    let foreign_ip = request(&user(), &["system:nodes"], &[WORKER], &["192.168.100.10"]);
    assert_eq!(
        denied(decide(&csr(&user(), foreign_ip), &nodes)),
        format!("Node {WORKER} does not report the address 192.168.100.10")
    );
    let foreign_name = request(&user(), &["system:nodes"], &[OTHER], &[]);
    assert_eq!(
        denied(decide(&csr(&user(), foreign_name), &nodes)),
        format!("Node {WORKER} does not report the name {OTHER}")
    );
    // Its Node reporting another Node's address is not enough.
    let mut claiming = nodes.clone();
    let status = claiming[1].status.as_mut().unwrap();
    status.addresses.as_mut().unwrap().push(NodeAddress {
        type_: "ExternalIP".into(),
        address: "192.168.100.10".into(),
    });
    let req = request(&user(), &["system:nodes"], &[], &["192.168.100.10"]);
    assert_eq!(
        denied(decide(&csr(&user(), req), &claiming)),
        format!("the address 192.168.100.10 is also Node {OTHER}'s")
    );
}

#[test]
fn requests_not_shaped_like_a_nodes_are_denied() {
    let nodes = nodes();
    let good = || request(&user(), &["system:nodes"], &[WORKER], &["192.168.100.11"]);
    // Not from a node.
    let reason = denied(decide(&csr("system:bootstrap:abcdef", good()), &nodes));
    assert_eq!(
        reason,
        "requested by \"system:bootstrap:abcdef\", not by a node"
    );
    // For another node than the requester.
    let other = format!("system:node:{OTHER}");
    let reason = denied(decide(&csr(&other, good()), &nodes));
    assert!(reason.starts_with("the request names CN "), "{reason}");
    // Extra organisation.
    let req = request(&user(), &["system:nodes", "system:masters"], &[WORKER], &[]);
    let reason = denied(decide(&csr(&user(), req), &nodes));
    assert!(reason.starts_with("the request names CN "), "{reason}");
    // Client auth besides serving.
    let mut client = csr(&user(), good());
    client
        .spec
        .usages
        .as_mut()
        .unwrap()
        .push("client auth".into());
    let reason = denied(decide(&client, &nodes));
    assert!(reason.starts_with("usages "), "{reason}");
    // No SAN at all; a Node that does not exist.
    let bare = request(&user(), &["system:nodes"], &[], &[]);
    let reason = denied(decide(&csr(&user(), bare), &nodes));
    assert_eq!(reason, "the request names no DNS name or IP address");
    let reason = denied(decide(&csr(&user(), good()), &nodes[..1]));
    assert_eq!(reason, format!("no Node {WORKER}"));
    // A request whose signature does not verify (one byte of the signature flipped).
    let pem = String::from_utf8(good()).unwrap();
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    let mut der = block.contents.clone();
    let last = der.len() - 1;
    der[last] ^= 1;
    let tampered = cairn_api::pem::encode("CERTIFICATE REQUEST", &der).into_bytes();
    let reason = denied(decide(&csr(&user(), tampered), &nodes));
    assert!(
        reason.starts_with("the request's signature does not verify"),
        "{reason}"
    );
}

#[test]
fn only_undecided_requests_are_taken_up() {
    let mut csr = csr(&user(), Vec::new());
    assert!(undecided(&csr));
    csr.status = Some(Default::default());
    let conditions = csr
        .status
        .as_mut()
        .unwrap()
        .conditions
        .get_or_insert_with(Vec::new);
    conditions.push(CertificateSigningRequestCondition {
        type_: "Denied".into(),
        status: "True".into(),
        ..Default::default()
    });
    assert!(!undecided(&csr));
}
