//! Boot-level tests of loading container images over the node API, with the built
//! `dbg`. The test makes its archives from the preloaded toolbox image (read out of the
//! image's initramfs): its layer plus a layer holding `/marker.txt` (and a MiB of
//! filler), under a new name, so the node gets a genuinely new image.
//!
//! - `dbg load-image` of it as an OCI image layout prints the reference and digest; a
//!   pod of that image with `imagePullPolicy: Never` runs and prints the marker; `dbg
//!   images` lists it unpinned and the preloaded images pinned.
//! - The same kind of image as a `docker save` archive (manifest.json form) loads and
//!   runs as a pod.
//! - The archive truncated, with a corrupted blob, with a `../` entry, and with a tar
//!   header claiming 5 GiB: each is a clear error from `dbg` naming the file (exit 13,
//!   INVALID_ARGUMENT), no new image is listed, and the content store's totals (blobs,
//!   bytes, writes in progress) are what they were before: no orphan blobs. The node
//!   stays healthy: every boot condition is still true.
//!
//! - Under disk pressure (a critical pod allocates the data disk down to 2 % free), the
//!   kubelet's image garbage collection removes a loaded image no pod uses, and the
//!   preloaded images stay listed and pinned throughout; no pod uses the toolbox image
//!   then, so only its pin keeps it. That node is its own: the
//!   pressure outlasts the test by the kubelet's transition period.
//!
//! One node for the other tests (`common/kubernetes.rs`). The content store is the
//! node's, so the tests take turns ([`turn`]). Every wait has a deadline: `dbg`'s own run,
//! `kubectl wait`, the agent's WaitCondition.
//!
//! All `#[ignore]`d: `make test` runs them with `--ignored`.

#[allow(dead_code)]
mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use cairn_api::v1::{ListConditionsRequest, ListImagesRequest, ListImagesResponse};
use common::kubernetes::{describe, Cluster, Session, CALL_TIMEOUT, KUBECTL_TIMEOUT};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const NODE_READY_TIMEOUT: Duration = Duration::from_secs(300);
/// Scheduling, the sandbox and the container under TCG, with margin.
const POD_TIMEOUT: Duration = Duration::from_secs(180);
/// A `dbg load-image` of a few MiB under TCG, with margin.
const LOAD_TIMEOUT: Duration = Duration::from_secs(180);
const TOOLBOX_ARCHIVE: &str = "usr/share/cairn/images/toolbox.tar";
const PRELOADED: [&str; 2] = ["localhost/cairn/pause:1", "localhost/cairn/toolbox:1"];
const LOADED: &str = "localhost/cairn/loaded:1";
const LOADED_DOCKER: &str = "localhost/cairn/loaded-docker:1";
const BROKEN: &str = "localhost/cairn/broken:1";
const MARKER: &str = "loaded over the node API";
const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MEDIA_TYPE_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// `dbg`'s exit code for INVALID_ARGUMENT.
const EXIT_INVALID_ARGUMENT: i32 = 13;
const REPORTED: &[&str] = &["agent", "containerd", "kubelet"];

/// The content store is the node's: one test at a time looks at it or changes it.
fn turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

/// A session once the node is Ready and pods are admitted in `default`.
fn session() -> Session {
    static NODE_READY: OnceLock<Result<(), String>> = OnceLock::new();
    let session = Session::open().reporting(REPORTED);
    let ready = NODE_READY
        .get_or_init(|| (session.try_wait_true("node-ready", NODE_READY_TIMEOUT)).map(|_| ()));
    if let Err(err) = ready {
        session.fail(err);
    }
    session.wait_for_default_service_account("default");
    session
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn blob_path(bytes: &[u8]) -> String {
    format!("blobs/sha256/{}", &digest(bytes)[7..])
}

fn descriptor(media_type: &str, bytes: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": digest(bytes), "size": bytes.len()})
}

/// The preloaded toolbox image as the builder wrote it.
struct Toolbox {
    config: Value,
    manifest: Value,
    layer: Vec<u8>,
}

fn toolbox() -> &'static Toolbox {
    static TOOLBOX: OnceLock<Toolbox> = OnceLock::new();
    TOOLBOX.get_or_init(|| {
        let image = common::image();
        let bytes = std::fs::read(&image.initrd)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", image.initrd.display()));
        let entries = cairn_initramfs::read(&bytes)
            .unwrap_or_else(|e| panic!("{} does not parse: {e}", image.initrd.display()));
        let archive = entries
            .into_iter()
            .find(|e| e.path.trim_start_matches("./").trim_start_matches('/') == TOOLBOX_ARCHIVE)
            .unwrap_or_else(|| panic!("no {TOOLBOX_ARCHIVE} in {}", image.initrd.display()))
            .data;
        let mut files = std::collections::BTreeMap::new();
        let mut tar = tar::Archive::new(archive.as_slice());
        for entry in tar.entries().expect("the toolbox archive is a tar") {
            let mut entry = entry.expect("a tar entry");
            let path = entry.path().expect("a path").display().to_string();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut data).expect("entry data");
            files.insert(path, data);
        }
        let blob = |digest: &str| files[&format!("blobs/sha256/{}", &digest[7..])].clone();
        let json = |bytes: Vec<u8>| serde_json::from_slice::<Value>(&bytes).expect("JSON");
        let index = json(files["index.json"].clone());
        let manifest = json(blob(index["manifests"][0]["digest"].as_str().unwrap()));
        let config = json(blob(manifest["config"]["digest"].as_str().unwrap()));
        let layer = blob(manifest["layers"][0]["digest"].as_str().unwrap());
        Toolbox {
            config,
            manifest,
            layer,
        }
    })
}

/// A layer with `/marker.txt` holding `marker` and a MiB of filler, so a cut or a
/// flipped byte can land in a blob the node does not have yet.
fn marker_layer(marker: &str) -> Vec<u8> {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let filler: Vec<u8> = (0..1 << 20)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect();
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in [
        ("marker.txt", marker.as_bytes()),
        ("filler.bin", &filler[..]),
    ] {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        builder
            .append_data(&mut header, path, data)
            .expect("a layer entry");
    }
    builder.into_inner().expect("a layer")
}

/// The toolbox's config with the marker layer's diff ID added.
fn config_with(marker_layer: &[u8]) -> Vec<u8> {
    let mut config = toolbox().config.clone();
    let diff_ids = config["rootfs"]["diff_ids"]
        .as_array_mut()
        .expect("diff_ids");
    diff_ids.push(json!(digest(marker_layer)));
    serde_json::to_vec(&config).unwrap()
}

/// An OCI image layout of the toolbox plus a marker layer, named `reference`, entry by
/// entry (the marker layer last but for index.json); and its manifest digest.
fn oci_entries(reference: &str, marker: &str) -> (Vec<(String, Vec<u8>)>, String) {
    let layer = marker_layer(marker);
    let config = config_with(&layer);
    let mut manifest = toolbox().manifest.clone();
    manifest["config"] = descriptor(MEDIA_TYPE_CONFIG, &config);
    let layers = manifest["layers"].as_array_mut().expect("layers");
    layers.push(descriptor(MEDIA_TYPE_LAYER, &layer));
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let mut entry = descriptor(MEDIA_TYPE_MANIFEST, &manifest);
    entry["annotations"] = json!({ REF_NAME: reference });
    let index = json!({"schemaVersion": 2, "manifests": [entry]});
    let toolbox_layer = toolbox().layer.clone();
    let entries = vec![
        (
            "oci-layout".to_owned(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        (blob_path(&config), config),
        (blob_path(&manifest), manifest.clone()),
        (blob_path(&toolbox_layer), toolbox_layer),
        (blob_path(&layer), layer),
        ("index.json".to_owned(), serde_json::to_vec(&index).unwrap()),
    ];
    (entries, digest(&manifest))
}

/// The same image as a `docker save` archive in its manifest.json form.
fn docker_entries(reference: &str, marker: &str) -> Vec<(String, Vec<u8>)> {
    let layer = marker_layer(marker);
    let config = config_with(&layer);
    let config_file = format!("{}.json", &digest(&config)[7..]);
    let manifest = json!([{"Config": config_file, "RepoTags": [reference],
        "Layers": ["toolbox/layer.tar", "marker/layer.tar"]}]);
    vec![
        (config_file, config),
        ("toolbox/layer.tar".to_owned(), toolbox().layer.clone()),
        ("marker/layer.tar".to_owned(), layer),
        (
            "manifest.json".to_owned(),
            serde_json::to_vec(&manifest).unwrap(),
        ),
    ]
}

/// A tar of `entries` with raw ustar headers (so a test can write a `..` path the
/// `tar` crate's builder refuses), and where each entry's data starts. `claimed`
/// overrides an entry's header size.
fn tar_bytes(
    entries: &[(String, Vec<u8>)],
    claimed: Option<(usize, u64)>,
) -> (Vec<u8>, Vec<usize>) {
    let (mut out, mut starts) = (Vec::new(), Vec::new());
    for (i, (path, data)) in entries.iter().enumerate() {
        let mut header = tar::Header::new_ustar();
        header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        let size = match claimed {
            Some((at, size)) if at == i => size,
            _ => data.len() as u64,
        };
        header.set_size(size);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        starts.push(out.len());
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(512), 0);
    }
    out.resize(out.len() + 1024, 0);
    (out, starts)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path.display().to_string()
}

/// Fails with the message `message` makes unless `ok`.
fn check(session: &Session, ok: bool, message: impl FnOnce() -> String) {
    if !ok {
        session.fail(message());
    }
}

fn list_images(session: &Session) -> ListImagesResponse {
    let mut client = session.client.clone();
    let call = client.list_images(ListImagesRequest {});
    match (session.runtime).block_on(async { tokio::time::timeout(CALL_TIMEOUT, call).await }) {
        Ok(Ok(list)) => list.into_inner(),
        Ok(Err(status)) => session.fail(format!("ListImages: {status}")),
        Err(_) => session.fail("ListImages did not answer"),
    }
}

fn references(list: &ListImagesResponse) -> BTreeSet<String> {
    list.images
        .iter()
        .flat_map(|i| i.references.clone())
        .collect()
}

/// `dbg load-image FILE`, which must succeed; its stdout.
fn load(session: &Session, tmp: &Path, file: &str) -> String {
    let started = Instant::now();
    let output = common::dbg::run_within(session, tmp, &["load-image", file], LOAD_TIMEOUT);
    if !output.status.success() {
        session.fail(format!("dbg load-image {file}: {}", describe(&output)));
    }
    let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "dbg load-image of {file} ({size} bytes) took {:.2} s; stderr: {}",
        started.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The `dbg images` row of `reference`, as cells.
fn images_row(session: &Session, tmp: &Path, reference: &str) -> Option<Vec<String>> {
    let (out, _) = common::dbg::exits(session, tmp, &["images"], 0);
    out.lines()
        .map(|line| {
            line.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .find(|cells| cells.first().map(String::as_str) == Some(reference))
}

/// Runs a pod `name` of `image` (`imagePullPolicy: Never`) that prints
/// `/marker.txt`, waits for it to succeed, and returns its log.
fn run_pod(session: &Session, name: &str, image: &str) -> String {
    let pod = format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: default
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: {image}
    imagePullPolicy: Never
    command: [\"cat\", \"/marker.txt\"]
"
    );
    session.kubectl_ok_within(&["apply", "-f", "-"], &pod, KUBECTL_TIMEOUT);
    let timeout = format!("--timeout={}s", POD_TIMEOUT.as_secs());
    let succeeded = "--for=jsonpath={.status.phase}=Succeeded";
    let target = format!("pod/{name}");
    let args = ["wait", succeeded, &target, "-n", "default", &timeout];
    let waited = session.kubectl_within(&args, "", POD_TIMEOUT + KUBECTL_TIMEOUT);
    if !waited.status.success() {
        let described = session.kubectl(&["describe", "pod", name, "-n", "default"], "");
        session.fail(format!(
            "the pod of {image} did not succeed: {}\n--- describe ---\n{}",
            describe(&waited),
            describe(&described)
        ));
    }
    session.kubectl_ok(&["logs", name, "-n", "default"])
}

#[test]
#[ignore = "boots a node; run by `make test`"]
fn a_loaded_archive_runs_as_a_pod_and_is_listed_unpinned() {
    let _turn = turn();
    let session = session();
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let (entries, manifest_digest) = oci_entries(LOADED, MARKER);
    let file = write(tmp.path(), "loaded.tar", &tar_bytes(&entries, None).0);
    let out = load(&session, tmp.path(), &file);
    let expected = format!("loaded {LOADED} {manifest_digest}");
    check(&session, out.trim() == expected, || {
        format!("dbg load-image printed {out:?}, not {expected:?}")
    });

    let row = images_row(&session, tmp.path(), LOADED)
        .unwrap_or_else(|| session.fail(format!("dbg images does not list {LOADED}")));
    check(
        &session,
        row[1] == manifest_digest[7..19] && row[3] == "no",
        || format!("{LOADED} listed as {row:?}"),
    );
    for preloaded in PRELOADED {
        let row = images_row(&session, tmp.path(), preloaded);
        let pinned = row.as_ref().is_some_and(|r| r[3] == "yes");
        check(&session, pinned, || {
            format!("{preloaded} listed as {row:?}, not pinned")
        });
    }

    let logs = run_pod(&session, "loaded", LOADED);
    check(&session, logs.trim() == MARKER, || {
        format!("the pod printed {logs:?}")
    });
}

#[test]
#[ignore = "boots a node; run by `make test`"]
fn a_docker_save_archive_loads_and_runs_as_a_pod() {
    let _turn = turn();
    let session = session();
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let marker = "loaded from a docker save archive";
    let (bytes, _) = tar_bytes(&docker_entries(LOADED_DOCKER, marker), None);
    let file = write(tmp.path(), "docker-save.tar", &bytes);
    let out = load(&session, tmp.path(), &file);
    check(
        &session,
        out.starts_with(&format!("loaded {LOADED_DOCKER} sha256:")),
        || format!("dbg load-image printed {out:?}"),
    );
    let logs = run_pod(&session, "loaded-docker", LOADED_DOCKER);
    check(&session, logs.trim() == marker, || {
        format!("the pod printed {logs:?}")
    });
}

#[test]
#[ignore = "boots a node; run by `make test`"]
fn broken_archives_are_refused_and_leave_nothing_behind() {
    let _turn = turn();
    let session = session();
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let before = list_images(&session);
    let (entries, _) = oci_entries(BROKEN, "never loaded");
    let (bytes, starts) = tar_bytes(&entries, None);
    // The marker layer is the fifth entry: the config, the manifest and the toolbox
    // layer reach containerd before the reader meets what is wrong with it.
    let marker_data = starts[4];
    let truncated = bytes[..marker_data + (512 << 10)].to_vec();
    let mut corrupted = bytes.clone();
    corrupted[marker_data + 1000] ^= 0xff;
    let mut escaping = entries.clone();
    escaping.insert(5, ("../escape".to_owned(), b"out of the archive".to_vec()));
    let (escaping, _) = tar_bytes(&escaping, None);
    // A header claiming 5 GiB right after the config, in an archive of a few MiB.
    let mut claiming = entries.clone();
    claiming.insert(2, (blob_path(b"huge"), Vec::new()));
    let (claiming, _) = tar_bytes(&claiming, Some((2, 5 << 30)));
    let cases = [
        ("truncated.tar", truncated, "truncated"),
        ("corrupted.tar", corrupted, "not the one its name says"),
        ("escaping.tar", escaping, "\"../escape\" leaves the archive"),
        ("claiming.tar", claiming, "claims 5368709120 bytes"),
    ];
    for (name, bytes, expected) in cases {
        let file = write(tmp.path(), name, &bytes);
        let args = ["load-image", &file];
        let output = common::dbg::run_within(&session, tmp.path(), &args, LOAD_TIMEOUT);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let clear = output.status.code() == Some(EXIT_INVALID_ARGUMENT)
            && stderr.contains(&file)
            && stderr.contains(expected);
        check(&session, clear, || {
            format!("dbg load-image {name}: {}", describe(&output))
        });
        let after = list_images(&session);
        check(&session, references(&after) == references(&before), || {
            format!(
                "{name} changed the images: {:?} -> {:?}",
                references(&before),
                references(&after)
            )
        });
        check(&session, after.content == before.content, || {
            format!(
                "{name} changed the content store: {:?} -> {:?}",
                before.content, after.content
            )
        });
        let listed = images_row(&session, tmp.path(), BROKEN);
        check(&session, listed.is_none(), || {
            format!("dbg images lists {BROKEN}: {listed:?}")
        });
    }
    // The node is as healthy as before.
    let mut client = session.client.clone();
    let call = client.list_conditions(ListConditionsRequest { names: vec![] });
    let conditions = match (session.runtime)
        .block_on(async { tokio::time::timeout(CALL_TIMEOUT, call).await })
    {
        Ok(Ok(list)) => list.into_inner().conditions,
        other => session.fail(format!("ListConditions: {other:?}")),
    };
    for name in cairn_api::names::condition::BOOT_ORDER {
        let holds = conditions.iter().any(|c| c.name == name && c.status);
        check(&session, holds, || {
            format!("condition {name} is not true after the bad loads")
        });
    }
}

/// The node the garbage-collection test fills: disk pressure lingers for the kubelet's
/// transition period (5 min) after it ends, so it gets a node of its own.
fn gc_node() -> &'static Cluster {
    static NODE: OnceLock<Result<Cluster, String>> = OnceLock::new();
    match NODE.get_or_init(|| common::kubernetes::boot_cluster("images-gc", None)) {
        Ok(cluster) => cluster,
        Err(err) => panic!("the garbage-collection node did not boot: {err}"),
    }
}

/// Where the filler pod writes: a directory on the data disk (`/var`), the
/// filesystem that holds containerd's images and the kubelet's root.
const FILLER_DIR: &str = "/var/lib/cairn-test-filler";
/// An image that is neither preloaded nor in use: garbage collection may take it.
const GC_VICTIM: &str = "localhost/cairn/gc-victim:1";
/// The filler pod's image: a loaded one, so that no pod uses the preloaded toolbox
/// image while the kubelet collects and only its pin can keep it. (The pause image is
/// every sandbox's, the filler's too, so in use: its pin is not what keeps it here.)
const GC_FILLER: &str = "localhost/cairn/gc-filler:1";
/// From disk pressure to the victim's removal: the eviction manager reclaims every
/// 10 s, and the kubelet takes no image younger than `imageMinimumGCAge` (2 min) since
/// it first saw it, which for a loaded image can be that first reclaim.
const GC_TIMEOUT: Duration = Duration::from_secs(360);

/// A critical pod (never evicted by the kubelet) in `kube-system` that allocates all
/// but 2 % of the data disk's free space, below `evictionHard` `nodefs.available` (5 %),
/// then waits; `rm` through `kubectl exec` undoes it.
fn filler_pod() -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: disk-filler
  namespace: kube-system
spec:
  priorityClassName: system-node-critical
  terminationGracePeriodSeconds: 1
  tolerations:
  - {{ key: node.kubernetes.io/disk-pressure, operator: Exists }}
  containers:
  - name: main
    image: {image}
    imagePullPolicy: Never
    command: [sh, -c, 'set -- $(df -k /fill | tail -1) && fallocate -l $(( ($4 - $2 * 2 / 100) * 1024 )) /fill/filler && exec sleep 3600']
    volumeMounts: [{{ name: fill, mountPath: /fill }}]
  volumes:
  - name: fill
    hostPath: {{ path: {FILLER_DIR}, type: DirectoryOrCreate }}
",
        image = GC_FILLER,
    )
}

/// Whether the Node reports the condition `DiskPressure` true.
fn disk_pressure(session: &Session) -> bool {
    let jsonpath = "jsonpath={.items[0].status.conditions[?(@.type==\"DiskPressure\")].status}";
    session.kubectl_ok(&["get", "nodes", "-o", jsonpath]).trim() == "True"
}

#[test]
#[ignore = "boots a node; run by `make test`"]
fn preloaded_images_survive_image_garbage_collection_under_disk_pressure() {
    let _turn = turn();
    let session = Session::open_on(gc_node()).reporting(REPORTED);
    if let Err(err) = session.try_wait_true("node-ready", NODE_READY_TIMEOUT) {
        session.fail(err);
    }
    session.wait_for_default_service_account("default");
    let tmp = tempfile::tempdir().expect("a temporary directory");
    // An unpinned image, used once and then by nothing.
    let marker = "collected under disk pressure";
    // Markers of their own: the same bytes would be the same image (one config digest)
    // under two names, and the filler's would keep the victim's in use.
    for (reference, name, marker) in [
        (GC_VICTIM, "victim.tar", marker),
        (GC_FILLER, "filler.tar", "the filler's own image"),
    ] {
        let (entries, _) = oci_entries(reference, marker);
        let file = write(tmp.path(), name, &tar_bytes(&entries, None).0);
        load(&session, tmp.path(), &file);
    }
    let logs = run_pod(&session, "victim", GC_VICTIM);
    check(&session, logs.trim() == marker, || {
        format!("the pod printed {logs:?}")
    });
    session.kubectl_ok(&["delete", "pod", "victim", "-n", "default", "--wait=true"]);

    session.kubectl_ok_within(&["apply", "-f", "-"], &filler_pod(), KUBECTL_TIMEOUT);
    let deadline = Instant::now() + GC_TIMEOUT;
    let mut pressure_seen = false;
    loop {
        pressure_seen = pressure_seen || disk_pressure(&session);
        let list = list_images(&session);
        let listed = references(&list);
        // Through it all, the preloaded images stay, pinned.
        for preloaded in PRELOADED {
            let pinned = (list.images.iter())
                .any(|i| i.pinned && i.references.iter().any(|r| r == preloaded));
            check(&session, pinned, || {
                format!("{preloaded} is gone or unpinned under disk pressure: {listed:?}")
            });
        }
        if pressure_seen && !listed.contains(GC_VICTIM) {
            break;
        }
        if Instant::now() > deadline {
            let filler =
                session.kubectl(&["describe", "pod", "disk-filler", "-n", "kube-system"], "");
            session.fail(format!(
                "within {GC_TIMEOUT:?}: disk pressure seen {pressure_seen}, images {listed:?}\n\
                 --- filler ---\n{}",
                describe(&filler)
            ));
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    // The kubelet collected it, not something else: its log says it removed the image.
    let kubelet = session.log_tail("kubelet", 2000).unwrap_or_default();
    check(
        &session,
        kubelet
            .iter()
            .any(|line| line.contains("Removing image to free bytes")),
        || "the victim is gone, but the kubelet's log has no image removal".to_owned(),
    );
    session.kubectl_ok(&[
        "exec",
        "disk-filler",
        "-n",
        "kube-system",
        "--",
        "rm",
        "/fill/filler",
    ]);
}
