//! Boot-level tests: boot the built image (`build/image`, or `CAIRN_IMAGE_DIR`) under QEMU
//! and check what the agent reports on the console. All `#[ignore]`d so plain `cargo test`
//! stays fast; `make test` runs them with `--ignored`.
//!
//! The read-only checks share one node (booted by whichever test runs first); the clean
//! stop, the reboots and the foreign-disk case boot their own.

mod common;

use std::fs;
use std::path::{Component, Path};
use std::time::Duration;

use cairn_qemu::node::error_chain;
use cairn_qemu::{ExitAction, Stop};
use common::{boot, fail, module_name, shared, Shared};

/// From a reboot to the next boot's `CAIRN_READY`.
const REBOOT_TIMEOUT: Duration = Duration::from_secs(180);
use serde_json::Value;

#[test]
#[ignore = "boots QEMU; run with `make test`"]
fn guest_prints_cairn_ready() {
    let shared = shared();
    shared.check(
        !shared.ready.node_id.is_empty(),
        "CAIRN_READY has an empty node_id",
    );
}

#[test]
#[ignore = "boots QEMU; run with `make test`"]
fn the_network_comes_from_the_ip_parameter() {
    let shared = shared();
    let ready = &shared.ready;
    // The launcher's ip= (QEMU user networking), as the kernel reports it back.
    for address in ["lo 127.0.0.1/8", "eth0 10.0.2.15/24"] {
        shared.check(
            ready.addresses.iter().any(|a| a == address),
            format!("no address {address:?} in {:?}", ready.addresses),
        );
    }
    let routes = ["10.0.2.0/24 dev eth0", "default via 10.0.2.2 dev eth0"];
    let mut found = ready.routes.clone();
    found.sort();
    shared.check(
        found == routes,
        format!("routes {:?}, want {routes:?}", ready.routes),
    );
}

#[test]
#[ignore = "boots QEMU; run with `make test`"]
fn identity_derives_from_the_public_key() {
    let shared = shared();
    let ready = &shared.ready;
    let is_lower_hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    shared.check(
        ready.public_key.len() == 64 && is_lower_hex(&ready.public_key),
        format!(
            "public_key {:?} is not 32 bytes of lowercase hex",
            ready.public_key
        ),
    );
    let key = hex::decode(&ready.public_key).expect("checked hex");
    let expected = hex::encode(&key[..16]);
    shared.check(
        ready.node_id == expected,
        format!(
            "node_id {:?} is not the first 16 bytes of the key ({expected})",
            ready.node_id
        ),
    );
    shared.check(
        ready.machine_id == ready.node_id,
        format!(
            "machine_id {:?} differs from node_id {:?}",
            ready.machine_id, ready.node_id
        ),
    );
    shared.check(
        ready.hostname == format!("cairn-{}", ready.node_id),
        format!("hostname {:?} is not cairn-<node id>", ready.hostname),
    );
}

#[test]
#[ignore = "boots QEMU; run with `make test`"]
fn os_release_is_the_one_stamped_into_the_image() {
    let shared = shared();
    let stamped = image_os_release(shared);
    shared.check(
        shared.ready.os_release == stamped,
        format!(
            "guest os-release differs from the image's\n--- guest ---\n{}\n--- image ---\n{stamped}",
            shared.ready.os_release
        ),
    );
    let version = stamped
        .lines()
        .find_map(|line| line.strip_prefix("VERSION="))
        .map(|value| value.trim_matches('"'));
    shared.check(
        version == Some(shared.ready.version.as_str()),
        format!(
            "reported version {:?} is not os-release VERSION {version:?}",
            shared.ready.version
        ),
    );
}

/// `/etc/os-release` as the builder stamped it into the initramfs (one symlink followed).
fn image_os_release(shared: &Shared) -> String {
    let initrd = common::image().initrd;
    let bytes = fs::read(&initrd)
        .unwrap_or_else(|err| shared.fail(format!("cannot read {}: {err}", initrd.display())));
    let entries = cairn_initramfs::read(&bytes)
        .unwrap_or_else(|err| shared.fail(format!("the initramfs does not parse: {err}")));
    let find = |path: &str| {
        let wanted = Path::new("/").join(path);
        entries
            .iter()
            .find(|e| Path::new("/").join(e.path.trim_start_matches("./")) == wanted)
    };
    let mut entry = find("etc/os-release")
        .unwrap_or_else(|| shared.fail("the initramfs has no /etc/os-release"));
    if let Some(target) = entry.symlink_target() {
        let resolved = normalize(&Path::new("/etc").join(target.as_ref()));
        entry = find(&resolved).unwrap_or_else(|| {
            shared.fail(format!(
                "/etc/os-release links to {target:?}, not in the initramfs"
            ))
        });
    }
    String::from_utf8_lossy(&entry.data).into_owned()
}

/// `path` with `.` and `..` resolved lexically, without the leading `/`.
fn normalize(path: &Path) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.components() {
        match part {
            Component::Normal(name) => parts.push(name.to_str().unwrap_or_default()),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    parts.join("/")
}

#[test]
#[ignore = "boots QEMU; run with `make test`"]
fn every_manifest_module_is_loaded() {
    let shared = shared();
    let listed = manifest_modules(shared);
    let loaded: Vec<String> = shared
        .ready
        .modules
        .iter()
        .map(|m| module_name(m))
        .collect();
    let missing: Vec<&String> = listed.iter().filter(|m| !loaded.contains(m)).collect();
    shared.check(
        missing.is_empty(),
        format!("modules listed in the manifest but not loaded: {missing:?} (loaded: {loaded:?})"),
    );
}

/// Module names from `manifest.json` (`modules: [{name, path}]`, in load order).
fn manifest_modules(shared: &Shared) -> Vec<String> {
    let path = common::image().manifest_path();
    let text = fs::read_to_string(&path).unwrap_or_else(|err| {
        shared.fail(format!(
            "cannot read {}: {err} (run `make image`)",
            path.display()
        ))
    });
    let manifest: Value = serde_json::from_str(&text)
        .unwrap_or_else(|err| shared.fail(format!("manifest.json is not JSON: {err}")));
    let Some(modules) = manifest["modules"].as_array() else {
        shared.fail("manifest.json has no modules list")
    };
    modules
        .iter()
        .map(|module| module["name"].as_str().or(module.as_str()))
        .map(|name| name.unwrap_or_else(|| shared.fail("a manifest module has no name")))
        .map(module_name)
        .collect()
}

#[test]
#[ignore = "boots QEMU; run with `make test`"]
fn ctrl_alt_delete_reboots_cleanly() {
    let (mut node, _ready) = boot("clean-stop").unwrap_or_else(|err| panic!("{err}"));
    let stop = node
        .stop(Duration::from_secs(60))
        .unwrap_or_else(|err| fail(&node, err));
    let exited = match stop {
        Stop::Clean(exited) => exited,
        Stop::Forced { why, .. } => fail(&node, format!("the guest had to be killed: {why}")),
    };
    let Some(info) = exited.info else {
        fail(
            &node,
            format!("qemu exited ({}) without a CAIRN_EXIT line", exited.status),
        )
    };
    if info.action != ExitAction::Reboot || info.code != 0 {
        fail(
            &node,
            format!("expected a reboot with code 0, got {info:?}"),
        );
    }
    if !exited.status.success() {
        fail(&node, format!("qemu exited with {}", exited.status));
    }
}

/// A guest reboot ends its QEMU and the launcher boots the same node (same data disk,
/// same identity) in a fresh one at once; the console log goes on with the next boot.
/// (Under TCG a reset in place costs ~25 s more: docs/interfaces.md "Reboots".)
#[test]
#[ignore = "boots QEMU; run with `make test`"]
fn a_guest_reboot_boots_again_in_a_fresh_qemu() {
    let (mut node, first) = boot("reboot").unwrap_or_else(|err| panic!("{err}"));
    let first_pid = node.pid();
    node.press_ctrl_alt_delete()
        .unwrap_or_else(|err| fail(&node, error_chain(&err)));
    let second = node
        .wait_boot_ready(2, REBOOT_TIMEOUT)
        .unwrap_or_else(|err| fail(&node, error_chain(&err)));
    if second.node_id != first.node_id {
        fail(
            &node,
            format!(
                "the reboot changed the node: {} then {}",
                first.node_id, second.node_id
            ),
        );
    }
    let pid = node.pid();
    if pid == first_pid || alive(first_pid) {
        fail(
            &node,
            format!("the reboot did not end qemu {first_pid} (running now: {pid})"),
        );
    }
    let recorded = (node.state().read())
        .unwrap_or_else(|err| fail(&node, error_chain(&err)))
        .map(|record| record.pid);
    if recorded != Some(pid) || node.record().pid != pid {
        fail(
            &node,
            format!(
                "node.json says qemu {recorded:?}, the node {}, it is {pid}",
                node.record().pid
            ),
        );
    }
    let console = fs::read_to_string(node.console_log()).unwrap_or_default();
    let exits = console
        .lines()
        .filter(|l| l.contains("CAIRN_EXIT {"))
        .count();
    if exits != 1 {
        fail(
            &node,
            format!("{exits} CAIRN_EXIT lines in the log of two boots, want 1"),
        );
    }
    // A stop is not a reboot: QEMU ends, and nothing starts it again.
    match node.stop(Duration::from_secs(60)) {
        Ok(Stop::Clean(_)) => {}
        other => fail(&node, format!("the stop after the reboot: {other:?}")),
    }
    if alive(pid) {
        fail(&node, format!("qemu {pid} still runs after the stop"));
    }
}

/// A detached node (`cairn-qemu run --detach`) is rebooted in a fresh QEMU by its
/// watcher process, which `cairn-qemu stop` ends before it stops the node.
#[test]
#[ignore = "boots QEMU; run with `make test`"]
fn a_detached_node_reboots_in_a_fresh_qemu_until_stopped() {
    let config = common::fresh_config("detached-reboot");
    let state = cairn_qemu::StateDir::new(&config.state_dir);
    let launcher = |args: &[&str]| {
        // A relative state dir, as `make start` gives it.
        let (parent, name) = (state.root().parent(), state.root().file_name());
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_cairn-qemu"))
            .args(args)
            .arg("--state-dir")
            .arg(name.expect("a state dir has a name"))
            .current_dir(parent.expect("a state dir has a parent"))
            .env("CAIRN_IMAGE_DIR", &config.image.dir)
            .output()
            .expect("the launcher runs");
        let text = format!(
            "cairn-qemu {args:?}: {}\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    };
    let accel = config.accel.to_string();
    let (started, text) = launcher(&["run", "--detach", "--no-owner", "--accel", &accel]);
    let console = state.console_log();
    let say = |message: String| -> ! {
        let _ = launcher(&["stop"]);
        panic!(
            "{message}\n--- console tail ---\n{}",
            cairn_qemu::console::tail(&console, 40)
        )
    };
    if !started {
        say(text);
    }
    let first_pid = state.running_pid().ok().flatten();
    let watcher = cairn_qemu::watch::running(&state);
    let (Some(first_pid), Some(watcher)) = (first_pid, watcher) else {
        say(format!(
            "after `run --detach`: qemu {first_pid:?}, watcher {watcher:?}"
        ));
    };
    cairn_qemu::qmp::Qmp::connect(&state.qmp_socket(), Duration::from_secs(5))
        .and_then(|mut qmp| qmp.send_ctrl_alt_delete())
        .unwrap_or_else(|err| say(format!("ctrl-alt-delete: {}", error_chain(&err))));
    let deadline = std::time::Instant::now() + REBOOT_TIMEOUT;
    let readies = || {
        let text = fs::read_to_string(&console).unwrap_or_default();
        text.lines().filter(|l| l.contains("CAIRN_READY {")).count()
    };
    while readies() < 2 {
        if std::time::Instant::now() >= deadline {
            say(format!(
                "no second CAIRN_READY within {REBOOT_TIMEOUT:?} of the reboot"
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    match state.running_pid() {
        Ok(Some(pid)) if pid != first_pid && !alive(first_pid) => {}
        other => say(format!(
            "after the reboot qemu.pid gives {other:?} (first qemu {first_pid})"
        )),
    }
    let (stopped, text) = launcher(&["stop"]);
    if !stopped || !text.contains("stopped the node") {
        say(text);
    }
    if alive(watcher) || state.running_pid().ok().flatten().is_some() {
        say(format!(
            "after `stop`: watcher {watcher} alive {}, {text}",
            alive(watcher)
        ));
    }
}

/// Whether `pid` is a live (not zombie) process.
fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| Some(stat.rsplit_once(") ")?.1.chars().next()? != 'Z'))
        .unwrap_or(false)
}

/// A data disk holding something that is not ours is never formatted: the node says
/// so on the console, runs ephemeral, still boots, and the disk is unchanged after.
#[test]
#[ignore = "boots QEMU; run with `make test`"]
fn a_disk_with_foreign_data_is_left_alone() {
    let config = common::fresh_config("foreign-disk");
    let data = config.data_disk.clone().expect("nodes have a data disk");
    data.ensure().expect("create the data disk");
    let foreign: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    write_at_start(&data.path, &foreign);

    let mut node = cairn_qemu::Node::start(&config).unwrap_or_else(|e| panic!("{e}"));
    node.wait_ready(common::READY_TIMEOUT)
        .unwrap_or_else(|err| fail(&node, err));
    node.wait_for_line(
        "the console message that the disk is left alone",
        |line| line.contains("running ephemeral") && line.contains("vda not blank"),
        Duration::ZERO,
    )
    .unwrap_or_else(|err| fail(&node, err));
    node.stop(Duration::from_secs(60))
        .unwrap_or_else(|err| fail(&node, err));
    let mut head = vec![0; foreign.len()];
    std::io::Read::read_exact(&mut fs::File::open(&data.path).unwrap(), &mut head).unwrap();
    assert!(
        head == foreign,
        "the node wrote to a disk that was not blank"
    );
}

fn write_at_start(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut file = fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all(bytes).unwrap();
    file.sync_all().unwrap();
}

/// Where the data disk's `cairn-data` partition starts (1 MiB aligned, the only one) and
/// where the node key lives in it (the partition is mounted on `/var`).
const DATA_PARTITION_OFFSET: u64 = 1 << 20;
const KEY_IN_PARTITION: &str = "/lib/cairn/identity/node.key";

/// A stored node key that cannot be read must not quietly become a new identity over
/// the old node's cluster data: the key file is left as it is, `identity` is false with
/// the reason, and nothing of Kubernetes starts — while the node still boots far enough
/// to be looked at.
#[test]
#[ignore = "boots QEMU; run with `make test`"]
fn an_unreadable_node_key_holds_the_node_short_of_kubernetes() {
    let config = common::fresh_config("unreadable-key");
    let data = config.data_disk.clone().expect("nodes have a data disk");
    // First boot: a blank disk gets its partition and the node its key.
    let mut node = cairn_qemu::Node::start(&config).unwrap_or_else(|e| panic!("{e}"));
    node.wait_ready(common::READY_TIMEOUT)
        .unwrap_or_else(|err| fail(&node, err));
    node.stop(Duration::from_secs(60))
        .unwrap_or_else(|err| fail(&node, err));
    let damaged = b"junk\n";
    debugfs_write(&data.path, KEY_IN_PARTITION, damaged);

    let mut node = cairn_qemu::Node::start(&config).unwrap_or_else(|e| panic!("{e}"));
    node.wait_ready(common::READY_TIMEOUT)
        .unwrap_or_else(|err| fail(&node, err));
    let endpoint = node.debug_endpoint().expect("debug forward").to_owned();
    let (conditions, components) = look(&endpoint).unwrap_or_else(|err| fail(&node, err));
    let reason_of = |name: &str| {
        conditions
            .iter()
            .find(|c| c.name == name)
            .map(|c| (c.status, c.reason.clone()))
    };
    match reason_of("identity") {
        Some((false, reason)) if reason.contains("node.key is 5 bytes") => {}
        other => fail(
            &node,
            format!("identity: {other:?}, want false naming the key"),
        ),
    }
    for name in ["pki", "etcd", "kube-apiserver", "containerd", "kubelet"] {
        match reason_of(name) {
            Some((false, reason)) if reason.contains("node key is unreadable") => {}
            other => fail(&node, format!("{name}: {other:?}, want held for the key")),
        }
    }
    let started: Vec<&str> = (components.iter())
        .map(|c| c.name.as_str())
        .filter(|name| *name != "agent")
        .collect();
    if !started.is_empty() {
        fail(&node, format!("services were started: {started:?}"));
    }
    node.stop(Duration::from_secs(60))
        .unwrap_or_else(|err| fail(&node, err));
    let kept = debugfs_read(&data.path, KEY_IN_PARTITION);
    assert_eq!(kept, damaged, "the node changed its unreadable key file");
}

/// The node's conditions and supervised components, through the debug service.
fn look(
    endpoint: &str,
) -> Result<(Vec<cairn_api::v1::Condition>, Vec<cairn_api::v1::Component>), String> {
    use cairn_api::v1::{ListComponentsRequest, ListConditionsRequest};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let mut client = cairn_api::client::connect_within(endpoint, Duration::from_secs(30))
            .await
            .map_err(|e| error_chain(&e))?;
        let conditions = client
            .list_conditions(ListConditionsRequest::default())
            .await
            .map_err(|e| format!("ListConditions: {e}"))?
            .into_inner()
            .conditions;
        let components = client
            .list_components(ListComponentsRequest {})
            .await
            .map_err(|e| format!("ListComponents: {e}"))?
            .into_inner()
            .components;
        Ok((conditions, components))
    })
}

/// debugfs(8) on the data partition of a stopped node's disk image: `-w -f` with the
/// requests in a file when writing (it echoes them), `-R` with one request to read.
fn debugfs(disk: &Path, writable: bool, requests: &str) -> std::process::Output {
    let image = format!("{}?offset={DATA_PARTITION_OFFSET}", disk.display());
    let script = tempfile::NamedTempFile::new().expect("temporary file");
    let mut command = std::process::Command::new("debugfs");
    if writable {
        fs::write(script.path(), requests).expect("write the debugfs requests");
        command.arg("-w").arg("-f").arg(script.path());
    } else {
        command.args(["-R", requests]);
    }
    let output = command
        .arg(&image)
        .output()
        .unwrap_or_else(|e| panic!("debugfs (e2fsprogs) did not run: {e}"));
    assert!(
        output.status.success(),
        "debugfs {requests:?} on {image}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Replaces `path` in the partition with a file holding `bytes` (debugfs's `write`
/// names the new file in the current directory, hence the `cd`).
fn debugfs_write(disk: &Path, path: &str, bytes: &[u8]) {
    let source = tempfile::NamedTempFile::new().expect("temporary file");
    fs::write(source.path(), bytes).expect("write the temporary file");
    let (dir, name) = path.rsplit_once('/').expect("an absolute path");
    let requests = format!(
        "cd {dir}\nrm {name}\nwrite {} {name}\n",
        source.path().display()
    );
    debugfs(disk, true, &requests);
    assert_eq!(
        debugfs_read(disk, path),
        bytes,
        "debugfs did not write {path}"
    );
}

fn debugfs_read(disk: &Path, path: &str) -> Vec<u8> {
    debugfs(disk, false, &format!("cat {path}")).stdout
}
