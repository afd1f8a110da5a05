//! Two builds from the same inputs give byte-identical images.
//!
//! Ignored by plain `cargo test` (it fetches Debian packages and builds the agent);
//! `make test` runs it with `--ignored`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn build(out: &Path) -> String {
    let config = std::env::var_os("CAIRN_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("image/cairn.toml"));
    let output = Command::new(env!("CARGO_BIN_EXE_cairn-image"))
        .current_dir(workspace())
        .arg("build")
        .arg("--config")
        .arg(&config)
        .arg("--out")
        .arg(out)
        .output()
        .expect("run cairn-image");
    assert!(
        output.status.success(),
        "build failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
#[ignore = "builds a real image; run by `make test`"]
fn two_builds_give_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let digest_a = build(&a);
    let digest_b = build(&b);
    assert_eq!(
        digest_a.split_whitespace().next(),
        digest_b.split_whitespace().next(),
        "image digests differ"
    );
    for file in ["vmlinuz", "initramfs.img", "cmdline", "manifest.json"] {
        let (x, y) = (
            std::fs::read(a.join(file)).unwrap(),
            std::fs::read(b.join(file)).unwrap(),
        );
        assert!(x == y, "{file} differs between two builds");
    }
}

#[test]
#[ignore = "builds a real image; run by `make test`"]
fn a_failed_build_leaves_the_previous_image_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("image");
    build(&out);
    let before = std::fs::read(out.join("manifest.json")).unwrap();
    let bad = dir.path().join("bad.toml");
    let config = std::fs::read_to_string(workspace().join("image/cairn.toml")).unwrap();
    std::fs::write(&bad, config.replace("\"overlay\"", "\"no_such_module\"")).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_cairn-image"))
        .current_dir(workspace())
        .args(["build", "--config"])
        .arg(&bad)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("no_such_module"),
        "error does not name the module: {stderr}"
    );
    assert_eq!(std::fs::read(out.join("manifest.json")).unwrap(), before);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains(".cairn-image-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "staging directories left behind: {leftovers:?}"
    );
}

/// zstd compresses on every core the builder may use; the frame must not depend on how
/// many that is. One build is pinned to a single CPU (`taskset`), which is all
/// `available_parallelism` then reports, so it compresses with one worker.
#[test]
#[ignore = "builds a real image; run by `make test`"]
fn a_zstd_image_is_the_same_on_one_cpu_as_on_all() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        cpus >= 2,
        "needs at least 2 CPUs to compare, this host has {cpus}"
    );
    let dir = tempfile::tempdir().unwrap();
    let base = std::env::var_os("CAIRN_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("image/cairn.toml"));
    let config = dir.path().join("zstd.toml");
    let text = format!(
        "extends = {:?}\n[initramfs]\ncompression = \"zstd\"\nlevel = 3\n",
        base.display().to_string()
    );
    std::fs::write(&config, text).unwrap();
    let build_with = |out: &Path, pin: bool| {
        let builder = env!("CARGO_BIN_EXE_cairn-image");
        let mut command = if pin {
            let mut taskset = Command::new("taskset");
            taskset.args(["--cpu-list", "0", builder]);
            taskset
        } else {
            Command::new(builder)
        };
        let output = command
            .current_dir(workspace())
            .args(["build", "--source-date-epoch", "1704067200", "--config"])
            .arg(&config)
            .arg("--out")
            .arg(out)
            .output()
            .expect("run cairn-image");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "build failed: {stderr}");
    };
    let (one, all) = (dir.path().join("one"), dir.path().join("all"));
    build_with(&one, true);
    build_with(&all, false);
    let manifest = std::fs::read_to_string(all.join("manifest.json")).unwrap();
    assert!(manifest.contains("\"compression\": \"zstd\""), "{manifest}");
    for file in ["initramfs.img", "manifest.json"] {
        let (x, y) = (
            std::fs::read(one.join(file)).unwrap(),
            std::fs::read(all.join(file)).unwrap(),
        );
        assert!(x == y, "{file} differs between 1 and {cpus} CPUs");
    }
}
