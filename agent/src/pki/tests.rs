use std::os::unix::fs::PermissionsExt;

use x509_parser::prelude::*;

use super::*;

fn node() -> NodeSubject {
    NodeSubject {
        node_name: "cairn-0123456789abcdef0123456789abcdef".into(),
        node_ip: Some("10.0.2.15".parse().unwrap()),
        service_ip: "10.96.0.1".parse().unwrap(),
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

fn parse(pem_text: &str) -> (Vec<u8>, String) {
    let (_, pem) = parse_x509_pem(pem_text.as_bytes()).unwrap();
    let subject = pem.parse_x509().unwrap().subject().to_string();
    (pem.contents, subject)
}

#[test]
fn every_leaf_is_written_and_chains_to_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = ensure(dir.path(), &node(), now()).unwrap();
    let (ca_der, _) = parse(pki.ca_pem());
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    for leaf in LEAVES {
        let text = std::fs::read_to_string(pki.cert_path(leaf.name)).unwrap();
        let (der, subject) = parse(&text);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert!(
            subject.contains(&leaf.subject(&node())),
            "{}: {subject}",
            leaf.name
        );
        cert.verify_signature(Some(ca.public_key())).unwrap();
        // The apiserver's file is its chain: the leaf, then the CA; the others hold
        // the leaf alone.
        let blocks = text.matches("-----BEGIN CERTIFICATE-----").count();
        match leaf.name == APISERVER_LEAF {
            true => assert!(blocks == 2 && text.ends_with(pki.ca_pem()), "{text}"),
            false => assert_eq!(blocks, 1, "{}", leaf.name),
        }
    }
}

#[test]
fn keys_are_private_and_certificates_readable() {
    let dir = tempfile::tempdir().unwrap();
    let pki = ensure(dir.path(), &node(), now()).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    for leaf in LEAVES {
        assert_eq!(mode(&pki.key_path(leaf.name)), 0o600, "{}", leaf.name);
        assert_eq!(mode(&pki.cert_path(leaf.name)), 0o644, "{}", leaf.name);
    }
    assert_eq!(mode(&dir.path().join("ca.key")), 0o600);
    assert_eq!(mode(&pki.service_account_key_path()), 0o600);
    assert_eq!(mode(dir.path()), 0o700);
}

#[test]
fn the_ca_and_service_account_key_survive_a_second_run() {
    let dir = tempfile::tempdir().unwrap();
    let first = ensure(dir.path(), &node(), now()).unwrap();
    let sa = std::fs::read(first.service_account_key_path()).unwrap();
    let second = ensure(dir.path(), &node(), now()).unwrap();
    assert_eq!(first.ca_pem(), second.ca_pem());
    assert_eq!(
        sa,
        std::fs::read(second.service_account_key_path()).unwrap()
    );
}

#[test]
fn kubelet_client_is_a_node_identity() {
    let dir = tempfile::tempdir().unwrap();
    let pki = ensure(dir.path(), &node(), now()).unwrap();
    let (_, subject) = parse(&std::fs::read_to_string(pki.cert_path("kubelet-client")).unwrap());
    assert!(subject.contains("CN=system:node:cairn-0123456789abcdef0123456789abcdef"));
    assert!(subject.contains("O=system:nodes"));
}

#[test]
fn apiserver_names_every_address_clients_use() {
    let dir = tempfile::tempdir().unwrap();
    let pki = ensure(dir.path(), &node(), now()).unwrap();
    let (der, _) = parse(&std::fs::read_to_string(pki.cert_path("kube-apiserver")).unwrap());
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap().value;
    let names: Vec<String> = san
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::IPAddress(&[a, b, c, d]) => format!("{a}.{b}.{c}.{d}"),
            other => other.to_string(),
        })
        .collect();
    for want in [
        "kubernetes.default.svc",
        "10.96.0.1",
        "10.0.2.15",
        "127.0.0.1",
    ] {
        assert!(
            names.iter().any(|n| n.contains(want)),
            "{want} missing from {names:?}"
        );
    }
}

#[test]
fn debug_clients_are_short_lived_with_their_groups() {
    let dir = tempfile::tempdir().unwrap();
    let pki = ensure(dir.path(), &node(), now()).unwrap();
    let groups = vec!["system:masters".to_owned()];
    let issued = pki
        .issue_client("debug-user", &groups, now(), Duration::hours(1))
        .unwrap();
    let (der, subject) = parse(&issued.cert_pem);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    assert!(subject.contains("CN=debug-user") && subject.contains("O=system:masters"));
    let lifetime = cert.validity().not_after.timestamp() - now().unix_timestamp();
    assert_eq!(lifetime, 3600);
}

#[test]
fn debug_clients_keep_every_group_and_verify_against_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = ensure(dir.path(), &node(), now()).unwrap();
    let groups: Vec<String> = (0..MAX_GROUPS).map(|i| format!("group-{i}")).collect();
    let issued = pki
        .issue_client("debug-user", &groups, now(), Duration::hours(1))
        .unwrap();
    let (der, _) = parse(&issued.cert_pem);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let organizations: Vec<&str> = cert
        .subject()
        .iter_organization()
        .map(|o| o.as_str().unwrap())
        .collect();
    assert_eq!(organizations, groups);
    let cn: Vec<&str> = cert
        .subject()
        .iter_common_name()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(cn, ["debug-user"]);
    let (ca_der, _) = parse(pki.ca_pem());
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    cert.verify_signature(Some(ca.public_key())).unwrap();
    // The private key still belongs to the certificate.
    let key = rcgen::KeyPair::from_pem(&issued.key_pem).unwrap();
    assert_eq!(
        key.public_key_raw(),
        cert.public_key().subject_public_key.data.as_ref()
    );
}

#[test]
fn too_many_groups_are_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let pki = ensure(dir.path(), &node(), now()).unwrap();
    let groups: Vec<String> = (0..=MAX_GROUPS).map(|i| format!("g{i}")).collect();
    let err = pki
        .issue_client("u", &groups, now(), Duration::hours(1))
        .unwrap_err();
    assert!(matches!(err, PkiError::Groups { .. }), "{err}");
}
