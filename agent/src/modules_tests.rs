use std::path::{Path, PathBuf};

use nix::errno::Errno;

use super::*;
use crate::syscall::fake::{Call, RecordingSyscall};

fn fixture() -> Paths {
    Paths::under_root(Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/node"))
}

const KERNEL: &str = "/lib/modules/6.1.0-cloud-amd64/kernel";

#[test]
fn parses_paths_skipping_comments_and_blank_lines() {
    let text = "# header\n\n  /a/b.ko  \n/c.ko # trailing comment\n   # indented\n";
    let expected = [PathBuf::from("/a/b.ko"), PathBuf::from("/c.ko")];
    assert_eq!(parse_modules_load(text).unwrap(), expected);
    assert_eq!(parse_modules_load("").unwrap(), Vec::<PathBuf>::new());
}

#[test]
fn rejects_bad_lines_with_their_number() {
    let cases = [
        ("/a.ko\nrelative/b.ko\n", 2, "not an absolute path"),
        ("/a.ko.xz\n", 1, "not an uncompressed .ko file"),
        ("/a.ko\n\n/b.ko /c.ko\n", 3, "more than one path on a line"),
    ];
    for (text, line, reason) in cases {
        let err = parse_modules_load(text).unwrap_err();
        assert_eq!((err.line, err.reason), (line, reason), "{text:?}");
    }
}

#[test]
fn loads_in_listed_order_below_the_root() {
    let paths = fixture();
    let sys = RecordingSyscall::new();
    let summary = load_listed(&sys, &paths).unwrap();
    assert_eq!(
        summary,
        LoadSummary {
            loaded: 3,
            already_loaded: 0
        }
    );
    let expected: Vec<Call> = [
        "drivers/virtio/virtio.ko",
        "drivers/virtio/virtio_ring.ko",
        "net/core/failover.ko",
    ]
    .iter()
    .map(|m| Call::FinitModule(paths.resolve(format!("{KERNEL}/{m}"))))
    .collect();
    assert_eq!(sys.calls(), expected);
}

#[test]
fn already_loaded_modules_count_as_loaded() {
    let sys = RecordingSyscall::new();
    sys.fail_when(
        |c| matches!(c, Call::FinitModule(p) if p.ends_with("virtio.ko")),
        Errno::EEXIST,
    );
    let summary = load_listed(&sys, &fixture()).unwrap();
    assert_eq!(
        summary,
        LoadSummary {
            loaded: 2,
            already_loaded: 1
        }
    );
}

#[test]
fn a_failed_load_names_the_module_and_stops() {
    let sys = RecordingSyscall::new();
    sys.fail_when(
        |c| matches!(c, Call::FinitModule(p) if p.ends_with("virtio_ring.ko")),
        Errno::ENOEXEC,
    );
    let err = load_listed(&sys, &fixture()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("failed to load kernel module {KERNEL}/drivers/virtio/virtio_ring.ko")
    );
    assert_eq!(sys.calls().len(), 2);
}

#[test]
fn a_missing_list_loads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sys = RecordingSyscall::new();
    let summary = load_listed(&sys, &Paths::under_root(dir.path())).unwrap();
    assert_eq!(summary, LoadSummary::default());
    assert!(sys.calls().is_empty());
}

#[test]
fn reads_names_from_proc_modules() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/node/proc/modules"),
    )
    .unwrap();
    assert_eq!(
        loaded_module_names(&text),
        ["virtio_net", "net_failover", "failover", "virtio_pci"]
    );
}
