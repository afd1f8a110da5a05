use super::*;

fn node() -> Node {
    Node {
        name: "cairn-0123456789abcdef0123456789abcdef".into(),
        ip: Some(Ipv4Addr::new(10, 0, 2, 15)),
        uplink: None,
    }
}

fn flag<'a>(spec: &'a ServiceSpec, name: &str) -> Option<&'a str> {
    let prefix = format!("--{name}=");
    spec.args
        .iter()
        .find_map(|a| a.strip_prefix(prefix.as_str()))
}

#[test]
fn every_component_runs_the_multiplexer_with_its_name_first() {
    let specs = services(&Paths::system(), &node(), Role::ControlPlane);
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "etcd",
            "kube-apiserver",
            "controller-manager",
            "scheduler",
            "kube-proxy",
            "cluster-dns",
            "kubelet"
        ]
    );
    let kube: Vec<&ServiceSpec> = specs.iter().filter(|s| s.name != "cluster-dns").collect();
    let first: Vec<&str> = kube.iter().map(|s| s.args[0].as_str()).collect();
    assert_eq!(
        first,
        [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kube-proxy",
            "kubelet"
        ]
    );
    for spec in kube {
        assert_eq!(spec.binary, Path::new(KUBE));
    }
    for spec in &specs {
        assert!(spec.readiness.is_some(), "{}", spec.name);
    }
}

#[test]
fn dependencies_give_the_documented_start_order() {
    let specs = services(&Paths::system(), &node(), Role::ControlPlane);
    let deps = |name: &str| {
        let spec = specs.iter().find(|s| s.name == name).unwrap();
        spec.dependencies.clone()
    };
    assert_eq!(deps("etcd"), ["pki", "network"]);
    assert_eq!(deps("kube-apiserver"), ["pki", "network", "etcd"]);
    // The kubelet starts beside the apiserver and retries its connection
    // (docs/architecture.md "Boot order").
    assert_eq!(deps("controller-manager"), ["kube-apiserver"]);
    assert_eq!(deps("scheduler"), ["kube-apiserver"]);
    assert_eq!(deps("kube-proxy"), ["kube-apiserver"]);
    assert_eq!(deps("cluster-dns"), ["kube-apiserver"]);
    assert_eq!(deps("kubelet"), ["containerd", "images", "pki", "network"]);
}

#[test]
fn the_apiserver_is_locked_down_and_advertises_the_node_ip() {
    let specs = services(&Paths::system(), &node(), Role::ControlPlane);
    let api = &specs[1];
    assert_eq!(flag(api, "anonymous-auth"), Some("false"));
    assert_eq!(flag(api, "authorization-mode"), Some("Node,RBAC"));
    assert_eq!(flag(api, "advertise-address"), Some("10.0.2.15"));
    assert_eq!(
        flag(api, "enable-admission-plugins"),
        Some("NodeRestriction")
    );
    assert_eq!(flag(api, "allow-privileged"), Some("true"));
    assert_eq!(
        flag(api, "client-ca-file"),
        Some("/var/lib/cairn/pki/ca.crt")
    );
    assert_eq!(flag(api, "etcd-servers"), Some("https://127.0.0.1:2379"));
    let etcd = &specs[0];
    assert_eq!(
        flag(etcd, "listen-client-urls"),
        Some("https://127.0.0.1:2379")
    );
    assert_eq!(flag(etcd, "client-cert-auth"), Some("true"));
    assert_eq!(flag(etcd, "data-dir"), Some("/var/lib/cairn/etcd"));
}

#[test]
fn configs_and_kubeconfigs_are_written_from_the_pki() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::under_root(dir.path());
    let subject = crate::pki::NodeSubject {
        node_name: node().name,
        node_ip: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 2, 15))),
        service_ip: SERVICE_IP,
    };
    let now = time::OffsetDateTime::now_utc();
    let pki = crate::pki::ensure(&paths.resolve(PKI_DIR), &subject, now).unwrap();
    write_configs(&paths, &pki, &node()).unwrap();
    let config = dir.path().join("etc/kubernetes");
    for (file, user) in [
        ("kubelet.kubeconfig", format!("system:node:{}", node().name)),
        ("scheduler.kubeconfig", "system:kube-scheduler".to_owned()),
        (
            "controller-manager.kubeconfig",
            "system:kube-controller-manager".to_owned(),
        ),
        ("kube-proxy.kubeconfig", "system:kube-proxy".to_owned()),
        ("cluster-dns.kubeconfig", "cairn:cluster-dns".to_owned()),
    ] {
        let path = config.join(file);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file}");
        let text = std::fs::read_to_string(&path).unwrap();
        let parsed = ::kube::config::Kubeconfig::from_yaml(&text).unwrap();
        assert_eq!(parsed.auth_infos[0].name, user);
    }
    let kubelet: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(config.join("kubelet.json")).unwrap())
            .unwrap();
    assert_eq!(kubelet["cgroupDriver"], "cgroupfs");
    assert_eq!(
        kubelet["containerRuntimeEndpoint"],
        "unix:///run/containerd/containerd.sock"
    );
    assert_eq!(kubelet["authentication"]["anonymous"]["enabled"], false);
    assert_eq!(kubelet["authorization"]["mode"], "Webhook");
    assert_eq!(kubelet["clusterDNS"][0], "10.96.0.10");
    assert_eq!(kubelet["clusterDomain"], "cluster.local");
    let proxy: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(config.join("kube-proxy.json")).unwrap())
            .unwrap();
    assert_eq!(proxy["mode"], "nftables");
    assert_eq!(proxy["hostnameOverride"], node().name.as_str());
    assert_eq!(proxy["clusterCIDR"], "10.88.0.0/16");
    assert_eq!(proxy["nodePortAddresses"], serde_json::json!(["primary"]));
    // No resolv.conf under the fixture root: cluster names only.
    let corefile = std::fs::read_to_string(config.join("cluster-dns.Corefile")).unwrap();
    assert!(corefile.contains("bind 10.0.2.15"), "{corefile}");
    assert!(!corefile.contains("forward"), "{corefile}");
    let admission = std::fs::read_to_string(config.join("admission.json")).unwrap();
    assert!(admission.contains("PodSecurityConfiguration"));
}

#[test]
fn etcd_health_bodies() {
    assert!(etcd::healthy(r#"{"health":"true","reason":""}"#).is_ok());
    assert!(etcd::healthy(r#"{"health":"false","reason":"NOSPACE"}"#).is_err());
    assert!(etcd::healthy("not json").is_err());
}

#[test]
fn node_readiness_comes_from_the_ready_condition() {
    let node: k8s_openapi::api::core::v1::Node = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "n" },
        "status": { "conditions": [
            { "type": "MemoryPressure", "status": "False" },
            { "type": "Ready", "status": "True", "reason": "KubeletReady",
              "message": "kubelet is posting ready status",
              "lastHeartbeatTime": "2026-11-25T10:00:00Z" },
        ]},
    }))
    .unwrap();
    let posted = 1_795_600_800; // 2026-11-25T10:00:00Z
    let (ready, reason) = node_ready::readiness(&node, posted);
    assert!(ready);
    assert_eq!(reason, "KubeletReady: kubelet is posting ready status");
    // Posted before this boot began: stale, whatever it says.
    let (ready, reason) = node_ready::readiness(&node, posted + 1);
    assert!(!ready);
    assert!(reason.contains("earlier boot"), "{reason}");
}

/// With a cluster NIC the node's address is the cluster address everywhere Kubernetes
/// names the node, and NodePorts also listen where the host's forwards arrive.
#[test]
fn a_cluster_address_is_the_nodes_kubernetes_address() {
    let cluster_ip = Ipv4Addr::new(192, 168, 100, 10);
    let node = Node {
        ip: Some(cluster_ip),
        uplink: Some(Ipv4Addr::new(10, 0, 2, 15)),
        ..node()
    };
    let specs = services(&Paths::system(), &node, Role::ControlPlane);
    let spec = |name: &str| specs.iter().find(|s| s.name == name).unwrap();
    assert_eq!(
        flag(spec("kube-apiserver"), "advertise-address"),
        Some("192.168.100.10")
    );
    assert_eq!(flag(spec("kubelet"), "node-ip"), Some("192.168.100.10"));
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::under_root(dir.path());
    let subject = crate::pki::NodeSubject {
        node_name: node.name.clone(),
        node_ip: Some(IpAddr::V4(cluster_ip)),
        service_ip: SERVICE_IP,
    };
    let now = time::OffsetDateTime::now_utc();
    let pki = crate::pki::ensure(&paths.resolve(PKI_DIR), &subject, now).unwrap();
    write_configs(&paths, &pki, &node).unwrap();
    let config = dir.path().join("etc/kubernetes");
    let proxy: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(config.join("kube-proxy.json")).unwrap())
            .unwrap();
    assert_eq!(
        proxy["nodePortAddresses"],
        serde_json::json!(["primary", "10.0.2.15/32"])
    );
    let corefile = std::fs::read_to_string(config.join("cluster-dns.Corefile")).unwrap();
    assert!(corefile.contains("bind 192.168.100.10"), "{corefile}");
}

/// A worker runs the kubelet and kube-proxy only, both on credentials from joining: the
/// kubelet bootstraps with the token and keeps its certificates on the data disk, asks
/// for its serving certificate by CSR, and kube-proxy uses the kubelet's kubeconfig.
#[test]
fn a_worker_runs_a_kubelet_that_bootstraps_and_a_kube_proxy_on_its_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::under_root(dir.path());
    let specs = services(&paths, &node(), Role::Worker);
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["kubelet", "kube-proxy"]);
    let (kubelet_spec, proxy_spec) = (&specs[0], &specs[1]);
    let root = |p: &str| paths.resolve(p).display().to_string();
    assert_eq!(
        flag(kubelet_spec, "bootstrap-kubeconfig"),
        Some(root("/etc/kubernetes/bootstrap-kubelet.kubeconfig").as_str())
    );
    assert_eq!(
        flag(kubelet_spec, "kubeconfig"),
        Some(root("/var/lib/kubelet/kubeconfig").as_str())
    );
    assert_eq!(
        flag(kubelet_spec, "cert-dir"),
        Some(root("/var/lib/kubelet/pki").as_str())
    );
    assert_eq!(
        kubelet_spec.dependencies,
        ["containerd", "images", "joined", "network"]
    );
    assert_eq!(proxy_spec.dependencies, ["kubelet"]);

    write_worker_configs(&paths, &node()).unwrap();
    let config = dir.path().join("etc/kubernetes");
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(config.join(name)).unwrap()).unwrap()
    };
    let kubelet_config = read("kubelet.json");
    assert_eq!(kubelet_config["serverTLSBootstrap"], true);
    assert_eq!(kubelet_config["rotateCertificates"], true);
    assert!(kubelet_config.get("tlsCertFile").is_none());
    assert_eq!(
        kubelet_config["authentication"]["x509"]["clientCAFile"],
        root("/var/lib/cairn/pki/ca.crt")
    );
    let proxy_config = read("kube-proxy.json");
    assert_eq!(
        proxy_config["clientConnection"]["kubeconfig"],
        root("/var/lib/kubelet/kubeconfig")
    );
    // Nothing of the control plane's.
    let written: Vec<_> = std::fs::read_dir(&config)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let mut written = written;
    written.sort();
    assert_eq!(written, ["kube-proxy.json", "kubelet.json"]);
}
