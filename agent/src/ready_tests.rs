use std::path::Path;

use ed25519_dalek::SigningKey;
use serde_json::Value;

use super::*;
use crate::syscall::fake::RecordingSyscall;

/// A node root with the fixture's os-release, /proc/modules and /proc/net/route (QEMU's
/// user network: 10.0.2.15/24 via 10.0.2.2) plus a machine-id.
fn node(identity: &Identity) -> tempfile::TempDir {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/node");
    let dir = tempfile::tempdir().unwrap();
    for file in ["etc/os-release", "proc/modules", "proc/net/route"] {
        let to = dir.path().join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(fixture.join(file), to).unwrap();
    }
    let machine_id = format!("{}\n", identity.node_id());
    std::fs::write(dir.path().join("etc/machine-id"), machine_id).unwrap();
    dir
}

#[test]
fn ready_line_is_one_line_of_the_documented_json() {
    let identity = Identity::from_key(SigningKey::from_bytes(&[1; 32]));
    let dir = node(&identity);
    let sys = RecordingSyscall::new();
    sys.sethostname(&identity.node_name()).unwrap();

    let line = ReadyReport::gather(&sys, &Paths::under_root(dir.path()), &identity, &["node"])
        .unwrap()
        .line();

    assert_eq!(line.matches('\n').count(), 1);
    let json = line.strip_prefix("CAIRN_READY ").unwrap();
    let value: Value = serde_json::from_str(json).unwrap();
    let keys: Vec<_> = value.as_object().unwrap().keys().cloned().collect();
    let mut expected = [
        "node_id",
        "public_key",
        "version",
        "machine_id",
        "hostname",
        "modules",
        "os_release",
        "addresses",
        "routes",
        "apis",
    ];
    expected.sort_unstable();
    assert_eq!(keys, expected);
    assert_eq!(value["node_id"], identity.node_id());
    assert_eq!(value["public_key"].as_str().unwrap().len(), 64);
    assert_eq!(value["version"], "0.1.0");
    assert_eq!(value["machine_id"], identity.node_id());
    assert_eq!(value["hostname"], format!("cairn-{}", identity.node_id()));
    assert_eq!(value["modules"][2], "failover");
    assert_eq!(value["addresses"][0], "lo 127.0.0.1/8");
    assert_eq!(
        value["routes"],
        serde_json::json!(["default via 10.0.2.2 dev eth0", "10.0.2.0/24 dev eth0"])
    );
    assert_eq!(value["apis"], serde_json::json!(["node"]));
    assert!(value["os_release"]
        .as_str()
        .unwrap()
        .starts_with("NAME=\"cairn\"\n"));
}

#[test]
fn keys_appear_in_the_documented_order() {
    let identity = Identity::from_key(SigningKey::from_bytes(&[2; 32]));
    let dir = node(&identity);
    let sys = RecordingSyscall::new();
    let line = ReadyReport::gather(&sys, &Paths::under_root(dir.path()), &identity, &["node"])
        .unwrap()
        .line();
    let positions: Vec<_> = [
        "\"node_id\"",
        "\"public_key\"",
        "\"version\"",
        "\"machine_id\"",
    ]
    .iter()
    .chain(&["\"hostname\"", "\"modules\"", "\"os_release\""])
    .map(|key| line.find(key).unwrap())
    .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{line}");
}

#[test]
fn missing_os_release_names_the_file() {
    let identity = Identity::from_key(SigningKey::from_bytes(&[3; 32]));
    let dir = tempfile::tempdir().unwrap();
    let err = ReadyReport::gather(
        &RecordingSyscall::new(),
        &Paths::under_root(dir.path()),
        &identity,
        &[],
    )
    .unwrap_err();
    assert!(err.to_string().ends_with("etc/os-release"), "{err}");
}
