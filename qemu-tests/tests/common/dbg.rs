//! The built `dbg` binary, run against a test file's node as a person would run it:
//! `--endpoint` set to the node's forward (and the apiserver forward for `dbg
//! kubectl`), killed at a deadline, its temporary files in a directory the test owns.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use super::kubernetes::{describe, Session};

/// Names the `dbg` binary to run instead of the one built next to the test.
pub const DBG_ENV: &str = "CAIRN_DBG";
/// Deadline of a `dbg` run that waits for nothing longer than its own `--timeout`.
pub const DBG_TIMEOUT: Duration = Duration::from_secs(60);

/// The built `dbg`: `CAIRN_DBG`, else `dbg` in the test's profile directory
/// (`<target>/release/dbg`), which `cargo build --release -p cairn-dbg` writes. Cargo
/// gives a test the binaries of its own package only, so the Makefile builds it first.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os(DBG_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test's own path");
    // <target>/<profile>/deps/<test>-<hash>
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("a deps directory");
    profile.join("dbg")
}

/// Runs the built `dbg ARGS` against the file's node, killed after `deadline`. Its
/// temporary files go to `tmp`, so a test can see that none stay behind.
pub fn run_within(session: &Session, tmp: &Path, args: &[&str], deadline: Duration) -> Output {
    let program = binary();
    if !program.is_file() {
        panic!(
            "no dbg binary at {}: run `cargo build --release --locked -p cairn-dbg` (the \
             Makefile's boot-test does) or set {DBG_ENV}",
            program.display()
        );
    }
    // Built inside the runtime: a tokio child registers with its reactor.
    let run = async {
        tokio::process::Command::new(&program)
            .args(["--endpoint", &session.cluster.debug_endpoint])
            .args(args)
            .env("CAIRN_API_ENDPOINT", &session.cluster.api_endpoint)
            .env("TMPDIR", tmp)
            .env_remove("CAIRN_STATE_DIR")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
    };
    match (session.runtime).block_on(async { tokio::time::timeout(deadline, run).await }) {
        Ok(Ok(output)) => output,
        Ok(Err(err)) => session.fail(format!("cannot run {}: {err}", program.display())),
        Err(_) => session.fail(format!("dbg {args:?} still running after {deadline:?}")),
    }
}

/// [`run_within`] [`DBG_TIMEOUT`].
pub fn run(session: &Session, tmp: &Path, args: &[&str]) -> Output {
    run_within(session, tmp, args, DBG_TIMEOUT)
}

/// `dbg ARGS` that must exit with `code`; its stdout and stderr.
pub fn exits(session: &Session, tmp: &Path, args: &[&str], code: i32) -> (String, String) {
    let output = run(session, tmp, args);
    if output.status.code() != Some(code) {
        session.fail(format!(
            "dbg {args:?}: expected exit code {code}, got {}",
            describe(&output)
        ));
    }
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (text(&output.stdout), text(&output.stderr))
}
