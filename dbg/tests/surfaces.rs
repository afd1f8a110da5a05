//! Which surface the built `dbg` picks from a node record, without a node: a record
//! whose `apis` (the node's ready line) list no surface `dbg` can use fails at once with
//! the reason, where it once waited out the whole timeout for a debug service that a
//! production image does not have.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Far below the `--timeout 300` given; a wait for an answer would outlast it.
const DEADLINE: Duration = Duration::from_secs(20);

/// `dbg conditions --wait node-ready` against the record in `state`, as the owner in
/// `owner_dir`, killed at [`DEADLINE`].
fn wait_node_ready(state: &Path, owner_dir: &Path) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dbg"))
        .args(["conditions", "--wait", "node-ready", "--timeout", "300"])
        .env("CAIRN_STATE_DIR", state)
        .env(cairn_dbg::owner::OWNER_DIR_ENV, owner_dir)
        .env_remove("CAIRN_DEBUG_ENDPOINT")
        .env_remove("CAIRN_NODE_API_ENDPOINT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > DEADLINE {
            child.kill().unwrap();
            panic!("dbg still waits after {DEADLINE:?}: it did not read the record's apis");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// A record of a node whose forwards point at a port nothing listens on.
fn record(state: &Path, apis: &str) {
    std::fs::create_dir_all(state).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        state.join("node.json"),
        format!(
            r#"{{"forwards":[{{"host":{port},"guest":7837}},{{"host":{port},"guest":7838}}],
                "apis":{apis}}}"#
        ),
    )
    .unwrap();
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_node_that_serves_no_api_is_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("node");
    record(&state, "[]");
    let output = wait_node_ready(&state, &dir.path().join("owner"));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(text.contains("serves no management API"), "{text}");
    assert!(text.contains("dbg owner init"), "{text}");
}

#[test]
fn a_node_that_serves_only_the_node_api_needs_owner_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("node");
    record(&state, r#"["node"]"#);
    let output = wait_node_ready(&state, &dir.path().join("owner"));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(
        text.contains("serves only the owner's node API") && text.contains("dbg owner init"),
        "{text}"
    );
}
