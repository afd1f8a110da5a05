//! A build whose inputs did not change finds the image current and writes nothing; a
//! changed input, or a build killed midway, assembles the image again.
//!
//! Ignored by plain `cargo test` (it builds real images: Debian packages, the agent);
//! `make test` runs it with `--ignored`.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn config() -> PathBuf {
    std::env::var_os("CAIRN_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("image/cairn.toml"))
}

fn builder(out: &Path, epoch: u64) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cairn-image"));
    command
        .current_dir(workspace())
        .arg("build")
        .arg("--config")
        .arg(config())
        .arg("--out")
        .arg(out)
        .arg("--source-date-epoch")
        .arg(epoch.to_string());
    command
}

/// Runs a build to the end: (image digest, standard error).
fn build(out: &Path, epoch: u64) -> (String, String) {
    let output: Output = builder(out, epoch).output().expect("run cairn-image");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "build failed: {stderr}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let digest = stdout.split_whitespace().next().unwrap_or_default();
    (digest.to_owned(), stderr)
}

/// The identity of a written file: a rewrite or replacement changes it.
fn identity(path: &Path) -> (u64, i64, i64) {
    let meta = std::fs::metadata(path).unwrap();
    (meta.ino(), meta.mtime(), meta.mtime_nsec())
}

const EPOCH: u64 = 1_704_067_200;
const UP_TO_DATE: &str = "is up to date";

#[test]
#[ignore = "builds real images; run by `make test`"]
fn unchanged_inputs_are_up_to_date_and_a_changed_one_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("image");
    let (first, stderr) = build(&out, EPOCH);
    assert!(stderr.contains("no earlier build"), "{stderr}");
    let written = identity(&out.join("initramfs.img"));

    let (second, stderr) = build(&out, EPOCH);
    assert!(stderr.contains(UP_TO_DATE), "not found current: {stderr}");
    assert!(!stderr.contains("writing the initramfs"), "{stderr}");
    assert_eq!(second, first);
    assert_eq!(identity(&out.join("initramfs.img")), written);

    // Another timestamp is another input: assembled again, and said why.
    let (third, stderr) = build(&out, EPOCH + 1);
    assert!(stderr.contains("building: build-info changed"), "{stderr}");
    assert_ne!(third, first);

    // An output changed by hand is not taken as the build's.
    std::fs::write(out.join("cmdline"), "console=ttyS0 init=/bin/sh").unwrap();
    let (fourth, stderr) = build(&out, EPOCH + 1);
    assert!(
        stderr.contains("building: cmdline was changed or removed"),
        "{stderr}"
    );
    assert_eq!(fourth, third);
}

#[test]
#[ignore = "builds real images; run by `make test`"]
fn a_build_killed_while_assembling_is_redone_by_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("image");
    let (old, _) = build(&out, EPOCH);

    // A build with another input, killed once it writes the initramfs.
    let mut child = builder(&out, EPOCH + 1)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = Vec::new();
    for line in stderr.lines() {
        let line = line.unwrap();
        let assembling = line.contains("writing the initramfs");
        seen.push(line);
        if assembling {
            child.kill().unwrap();
            break;
        }
    }
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the build ended before it was killed: {seen:?}"
    );

    // The old image is still there, still described by its own inputs, and nothing
    // the killed build staged is left beside it...
    let (still_old, stderr) = build(&out, EPOCH);
    assert!(stderr.contains(UP_TO_DATE), "{stderr}");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains("cairn-image-"))
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
    assert_eq!(still_old, old);
    // ...and the interrupted build's inputs are assembled in full, to the bytes a
    // build that was never interrupted gives.
    let (redone, stderr) = build(&out, EPOCH + 1);
    assert!(stderr.contains("building: build-info changed"), "{stderr}");
    let (clean, _) = build(&dir.path().join("clean"), EPOCH + 1);
    assert_eq!(redone, clean);
    assert_ne!(redone, old);
}
