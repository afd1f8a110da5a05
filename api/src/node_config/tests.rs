use super::*;

fn certificate_and_key() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["registry.test".to_owned()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn error_field(text: &str) -> String {
    match NodeConfig::parse(text) {
        Err(NodeConfigError::Field { field, .. }) => field,
        other => panic!("expected a field error, got {other:?}"),
    }
}

#[test]
fn a_full_config_round_trips() {
    let (cert, key) = certificate_and_key();
    let config = NodeConfig {
        version: 1,
        owner: None,
        cluster: Some(Cluster {
            address: "192.168.100.11/24".to_owned(),
            device: "eth2".to_owned(),

            role: Role::ControlPlane,
            join: None,
        }),
        registries: vec![
            Registry {
                host: "10.0.2.2:5000".to_owned(),
                ca: Some(cert.clone()),
                client_certificate: Some(cert),
                client_key: Some(key),
                ..Default::default()
            },
            Registry {
                host: "docker.io".to_owned(),
                mirrors: vec!["http://mirror.lan:8080/v2/x".to_owned()],
                plain_http: true,
                ..Default::default()
            },
        ],
    };
    let text = config.to_toml();
    assert_eq!(NodeConfig::parse(&text).unwrap(), config);
}

#[test]
fn the_smallest_config_is_a_version() {
    assert_eq!(
        NodeConfig::parse("version = 1\n").unwrap(),
        NodeConfig {
            version: 1,
            owner: None,
            registries: vec![],
            cluster: None,
        }
    );
}

#[test]
fn unknown_keys_and_versions_are_refused() {
    let err = NodeConfig::parse("version = 1\nhostname = \"x\"\n").unwrap_err();
    assert!(err.to_string().contains("hostname"), "{err}");
    let err =
        NodeConfig::parse("version = 1\n[[registry]]\nhost = \"a\"\nmirror = []\n").unwrap_err();
    assert!(err.to_string().contains("mirror"), "{err}");
    assert_eq!(error_field("version = 2\n"), "version");
    assert!(matches!(
        NodeConfig::parse(""),
        Err(NodeConfigError::Parse(_))
    ));
}

#[test]
fn bad_hosts_are_named_by_path() {
    for host in [
        "https://a.b",
        "a.b/path",
        "A.b",
        "a..b",
        "a.b:0",
        "a.b:65536",
        "a.b:08",
        "-a.b",
        "user@a.b",
        "",
    ] {
        let text =
            format!("version = 1\n[[registry]]\nhost = \"ok\"\n[[registry]]\nhost = {host:?}\n");
        assert_eq!(error_field(&text), "registry[1].host", "{host}");
    }
    let twice = "version = 1\n[[registry]]\nhost = \"a\"\n[[registry]]\nhost = \"a\"\n";
    assert_eq!(error_field(twice), "registry[1].host");
}

#[test]
fn plain_http_mirrors_need_plain_http() {
    let text =
        "version = 1\n[[registry]]\nhost = \"a\"\nmirrors = [\"https://m\", \"http://m:80\"]\n";
    assert_eq!(error_field(text), "registry[0].mirrors[1]");
    let allowed = format!("{text}plain_http = true\n");
    assert!(NodeConfig::parse(&allowed).is_ok());
    for bad in ["ftp://m", "https://m/../x", "https://m/?q=1", "https://"] {
        let text = format!("version = 1\n[[registry]]\nhost = \"a\"\nmirrors = [{bad:?}]\n");
        assert_eq!(error_field(&text), "registry[0].mirrors[0]", "{bad}");
    }
}

#[test]
fn certificates_and_keys_must_be_pem_and_paired() {
    let (cert, key) = certificate_and_key();
    let with = |extra: &str| format!("version = 1\n[[registry]]\nhost = \"a\"\n{extra}");
    assert_eq!(error_field(&with("ca = \"junk\"\n")), "registry[0].ca");
    let cert_only = with(&format!("client_certificate = {cert:?}\n"));
    assert_eq!(error_field(&cert_only), "registry[0].client_key");
    let key_only = with(&format!("client_key = {key:?}\n"));
    assert_eq!(error_field(&key_only), "registry[0].client_certificate");
    let key_as_cert = with(&format!(
        "client_certificate = {key:?}\nclient_key = {key:?}\n"
    ));
    assert_eq!(error_field(&key_as_cert), "registry[0].client_certificate");
    let cert_as_key = with(&format!(
        "client_certificate = {cert:?}\nclient_key = {cert:?}\n"
    ));
    assert_eq!(error_field(&cert_as_key), "registry[0].client_key");
    let good = with(&format!(
        "ca = {cert:?}\nclient_certificate = {cert:?}\nclient_key = {key:?}\n"
    ));
    assert!(NodeConfig::parse(&good).is_ok());
}

#[test]
fn the_node_wins_over_the_image_per_host() {
    let image = NodeConfig {
        version: 1,
        owner: None,
        cluster: None,
        registries: vec![
            Registry {
                host: "a".to_owned(),
                ..Default::default()
            },
            Registry {
                host: "b".to_owned(),
                plain_http: true,
                ..Default::default()
            },
        ],
    };
    let node = NodeConfig {
        version: 1,
        owner: None,
        cluster: None,
        registries: vec![Registry {
            host: "b".to_owned(),
            ..Default::default()
        }],
    };
    let merged = image.merged_with(&node);
    let hosts: Vec<_> = merged
        .registries
        .iter()
        .map(|r| (r.host.as_str(), r.plain_http))
        .collect();
    assert_eq!(hosts, [("a", false), ("b", false)]);
}

#[test]
fn oversized_text_is_refused_before_parsing() {
    let text = "#".repeat(MAX_SIZE + 1);
    assert_eq!(
        NodeConfig::parse(&text),
        Err(NodeConfigError::TooLarge(MAX_SIZE + 1))
    );
}

/// A self-signed ed25519 certificate, PEM, to stand for an owner CA.
fn owner_ca_pem() -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    rcgen::CertificateParams::new(vec!["owner".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap()
        .pem()
}

#[test]
fn the_owner_ca_is_one_pem_certificate() {
    let cert = owner_ca_pem();
    let with = |ca: &str| format!("version = 1\n[owner]\nca = {ca:?}\n");
    let config = NodeConfig::parse(&with(&cert)).unwrap();
    assert_eq!(
        config.owner.as_ref().map(|o| o.ca.as_str()),
        Some(cert.as_str())
    );
    assert_eq!(NodeConfig::parse(&config.to_toml()), Ok(config));
    for bad in ["", "not pem", &format!("{cert}{cert}")] {
        assert_eq!(error_field(&with(bad)), "owner.ca", "{bad:?}");
    }
    let unknown = format!("{}fingerprint = \"x\"\n", with(&cert));
    assert!(matches!(
        NodeConfig::parse(&unknown),
        Err(NodeConfigError::Parse(message)) if message.contains("fingerprint")
    ));
}

#[test]
fn a_handover_signature_is_base64_of_64_bytes() {
    let cert = owner_ca_pem();
    let with = |signature: &str| {
        format!("version = 1\n[owner]\nca = {cert:?}\nhandover_signature = {signature:?}\n")
    };
    let good = "A".repeat(86) + "==";
    let config = NodeConfig::parse(&with(&good)).unwrap();
    assert_eq!(
        config
            .owner
            .as_ref()
            .and_then(|o| o.handover_signature.as_deref()),
        Some(good.as_str())
    );
    assert_eq!(NodeConfig::parse(&config.to_toml()), Ok(config));
    for bad in ["", "not base64!", "AAAA"] {
        assert_eq!(
            error_field(&with(bad)),
            "owner.handover_signature",
            "{bad:?}"
        );
    }
    // What is signed starts with the context and carries the CA's DER whole.
    let message = handover_message(&cert).unwrap();
    assert!(message.starts_with(HANDOVER_CONTEXT));
    assert!(message.len() > HANDOVER_CONTEXT.len() + 100);
}

#[test]
fn the_owner_comes_from_the_node_never_from_the_image_alone() {
    let owner = Some(Owner {
        ca: "node".to_owned(),
        handover_signature: None,
    });
    let node = NodeConfig {
        owner: owner.clone(),
        ..NodeConfig::default()
    };
    assert_eq!(NodeConfig::default().merged_with(&node).owner, owner);
    assert_eq!(node.merged_with(&NodeConfig::default()).owner, None);
}

#[test]
fn a_cluster_address_is_a_host_outside_the_nodes_own_networks() {
    let config =
        NodeConfig::parse("version = 1\n[cluster]\naddress = \"192.168.100.10/24\"\n").unwrap();
    let cluster = config.cluster.unwrap();
    assert_eq!(cluster.device, "eth1");
    assert_eq!(
        cluster.address().unwrap(),
        ("192.168.100.10".parse().unwrap(), 24)
    );
    for (address, problem) in [
        ("192.168.100.10", "not an IPv4 address with a prefix"),
        ("192.168.100.10/33", "not an IPv4 address with a prefix"),
        ("192.168.100.10/+8", "not an IPv4 address with a prefix"),
        ("192.168.100.300/24", "not an IPv4 address with a prefix"),
        ("192.168.100.10/31", "prefix /31 is not 8-30"),
        ("192.168.100.0/24", "network's own or broadcast"),
        ("192.168.100.255/24", "network's own or broadcast"),
        ("10.100.0.5/24", "overlaps the Service network 10.96.0.0/12"),
        ("10.88.7.1/24", "overlaps the pod network 10.88.0.0/16"),
        ("10.0.0.1/8", "overlaps the Service network"),
    ] {
        let text = format!("version = 1\n[cluster]\naddress = \"{address}\"\n");
        let err = NodeConfig::parse(&text).unwrap_err().to_string();
        assert!(
            err.starts_with("field `cluster.address`: ") && err.contains(problem),
            "{address}: {err}"
        );
    }
    let text = "version = 1\n[cluster]\naddress = \"192.168.100.10/24\"\ndevice = \"eth 1\"\n";
    let err = NodeConfig::parse(text).unwrap_err().to_string();
    assert!(err.starts_with("field `cluster.device`: "), "{err}");
}

#[test]
fn the_cluster_address_comes_from_the_node_never_from_the_image() {
    let image = NodeConfig {
        cluster: Some(Cluster {
            address: "192.168.100.10/24".into(),
            device: "eth1".into(),

            role: Role::ControlPlane,
            join: None,
        }),
        ..Default::default()
    };
    assert_eq!(image.merged_with(&NodeConfig::default()).cluster, None);
    assert_eq!(
        NodeConfig::default().merged_with(&image).cluster,
        image.cluster
    );
}

const JOIN: &str = "api = \"192.168.100.10:6443\"\ntoken = \"abcdef.0123456789abcdef\"\n\
                    ca_hash = \"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"\n";

#[test]
fn a_worker_takes_what_join_token_prints() {
    let text = format!(
        "version = 1\n[cluster]\naddress = \"192.168.100.11/24\"\nrole = \"worker\"\n\
         [cluster.join]\n{JOIN}expires = 2026-12-24T12:00:00Z\n"
    );
    let config = NodeConfig::parse(&text).unwrap();
    let cluster = config.cluster.as_ref().unwrap();
    assert_eq!(cluster.role, Role::Worker);
    let join = cluster.join.as_ref().unwrap();
    assert_eq!(join.api().unwrap().to_string(), "192.168.100.10:6443");
    assert_eq!(join.token_id().unwrap(), "abcdef");
    assert_eq!(join.ca_hash_bytes().unwrap()[..2], [0x01, 0x23]);
    assert_eq!(join.expires.unwrap().to_string(), "2026-12-24T12:00:00Z");
    assert_eq!(NodeConfig::parse(&config.to_toml()).unwrap(), config);
    // The default role is not written back.
    let plain =
        NodeConfig::parse("version = 1\n[cluster]\naddress = \"192.168.100.10/24\"\n").unwrap();
    assert_eq!(plain.cluster.as_ref().unwrap().role, Role::ControlPlane);
    assert!(!plain.to_toml().contains("role"), "{}", plain.to_toml());
}

#[test]
fn a_join_belongs_to_a_worker_and_is_checked_field_by_field() {
    let worker = |join: &str| {
        format!(
            "version = 1\n[cluster]\naddress = \"192.168.100.11/24\"\nrole = \"worker\"\n{join}"
        )
    };
    assert_eq!(error_field(&worker("")), "cluster.join");
    let control_plane =
        format!("version = 1\n[cluster]\naddress = \"192.168.100.10/24\"\n[cluster.join]\n{JOIN}");
    assert_eq!(error_field(&control_plane), "cluster.join");
    for (from, to, field) in [
        ("192.168.100.10:6443", "192.168.100.10", "cluster.join.api"),
        (
            "abcdef.0123456789abcdef",
            "ABCDEF.0123456789abcdef",
            "cluster.join.token",
        ),
        (
            "abcdef.0123456789abcdef",
            "abcdef.0123456789abcde",
            "cluster.join.token",
        ),
        ("sha256:0123", "sha1:0123", "cluster.join.ca_hash"),
        ("sha256:0", "sha256:g", "cluster.join.ca_hash"),
    ] {
        assert!(JOIN.contains(from), "{from}");
        let text = worker(&format!("[cluster.join]\n{}", JOIN.replacen(from, to, 1)));
        assert_eq!(error_field(&text), field, "{to}");
    }
    let dateless = worker(&format!("[cluster.join]\n{JOIN}expires = 12:00:00\n"));
    assert_eq!(error_field(&dateless), "cluster.join.expires");
    let role = "version = 1\n[cluster]\naddress = \"192.168.100.11/24\"\nrole = \"boss\"\n";
    assert!(matches!(
        NodeConfig::parse(role),
        Err(NodeConfigError::Parse(_))
    ));
}
