//! Boot-level tests of pulls from a real OCI registry: the CNCF `distribution` registry
//! built from its Go module runs on the host (`cairn_qemu::registry`), and the node
//! reaches it through QEMU's user network as 10.0.2.2.
//!
//! Two registries share one test CA: `private` requires basic auth, `mirror` is
//! anonymous. The node boots with a per-node config (`-fw_cfg`, docs/interfaces.md)
//! that trusts the CA for the private registry's address and declares
//! `mirror.invalid`, a name that resolves nowhere, with the mirror as its endpoint. The
//! mirror's own address is declared nowhere, so a pull from it directly must fail
//! certificate verification. Each case pulls an image that exists only in a registry
//! and only for that case (pushed with `crane`, the toolbox image plus a layer holding
//! a marker file), so no case can pass on an image another one pulled, and the pod
//! proves where its image came from by printing the marker.
//!
//! One node for the file; each test in its own namespace. All `#[ignore]`d: `make test`
//! runs them with `--ignored`.

#[allow(dead_code)]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use cairn_qemu::config::Settings;
use cairn_qemu::registry::{self, Crane, Credentials, Registry, RegistrySpec, Tls};
use common::kubernetes::{self as k8s, describe, Session, KUBECTL_TIMEOUT};
use serde_json::Value;

const NODE_READY_TIMEOUT: Duration = Duration::from_secs(300);
/// A pull of a few MB over the user network plus the pod's start, under TCG.
const POD_TIMEOUT: Duration = Duration::from_secs(240);
/// A refused pull shows in the pod's status after the kubelet's first attempt.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(120);
const RETRY: Duration = Duration::from_secs(1);
/// The name the node's config declares with the mirror as its only working endpoint.
const MIRRORED_HOST: &str = "mirror.invalid";
const TOOLBOX_ARCHIVE: &str = "usr/share/cairn/images/toolbox.tar";
const REPORTED: &[&str] = &["containerd", "kubelet", "agent"];

/// The registries, the pushed images' references and their markers.
struct Env {
    private: Registry,
    mirror: Registry,
    crane: Crane,
    work: PathBuf,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Result<Env, String>> = OnceLock::new();
    match ENV.get_or_init(start_env) {
        Ok(env) => env,
        Err(err) => panic!("the test registries did not start: {err}"),
    }
}

fn start_env() -> Result<Env, String> {
    let chain = |e: &dyn std::error::Error| cairn_qemu::node::error_chain(e);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let (registry_bin, crane_bin) =
        registry::host_tools(&repo, &registry::default_go_out()).map_err(|e| chain(&e))?;
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("registry-pulls");
    let _ = std::fs::remove_dir_all(&work);
    let tls = Tls::create(&work.join("tls"), "cairn test registry CA").map_err(|e| chain(&e))?;
    let start = |name: &str, auth: Option<Credentials>| {
        Registry::start(&RegistrySpec {
            binary: registry_bin.clone(),
            dir: work.join(name),
            port: 0,
            tls: tls.clone(),
            auth,
        })
        .map_err(|e| chain(&e))
    };
    let private = start(
        "private",
        Some(Credentials {
            user: "puller".to_owned(),
            password: "pull-secret-password".to_owned(),
        }),
    )?;
    let mirror = start("mirror", None)?;
    let crane = Crane {
        binary: crane_bin,
        home: work.join("crane"),
        ca_path: tls.ca_path.clone(),
    };
    crane.login(&private).map_err(|e| chain(&e))?;
    let env = Env {
        private,
        mirror,
        crane,
        work,
    };
    env.push_toolbox(&env.private)?;
    env.push_toolbox(&env.mirror)?;
    k8s::configure(settings(&env));
    Ok(env)
}

/// The node trusts the CA for the private registry and reaches `mirror.invalid`
/// through the mirror; the mirror's own address is not declared.
fn settings(env: &Env) -> Settings {
    let text = format!(
        "version = 1\n\
         [[registry]]\nhost = {private:?}\nca = {ca:?}\n\
         [[registry]]\nhost = {MIRRORED_HOST:?}\nmirrors = [{mirror:?}]\nca = {ca:?}\n",
        private = env.private.guest_address(),
        mirror = format!("https://{}", env.mirror.guest_address()),
        ca = env.private.tls.ca_pem,
    );
    Settings::parse(&text).unwrap_or_else(|err| panic!("test node config: {err}\n{text}"))
}

impl Env {
    /// The preloaded toolbox image (from the initramfs under test) as `cairn/toolbox:1`
    /// in `registry`, the base of every case's image.
    fn push_toolbox(&self, registry: &Registry) -> Result<(), String> {
        let layout = self.work.join("toolbox-layout");
        if !layout.join("index.json").exists() {
            let initrd = common::image().initrd;
            let bytes = std::fs::read(&initrd)
                .map_err(|e| format!("cannot read {}: {e}", initrd.display()))?;
            let entries = cairn_initramfs::read(&bytes).map_err(|e| format!("initramfs: {e}"))?;
            let archive = entries
                .iter()
                .find(|e| {
                    e.path.trim_start_matches("./").trim_start_matches('/') == TOOLBOX_ARCHIVE
                })
                .ok_or_else(|| format!("no /{TOOLBOX_ARCHIVE} in {}", initrd.display()))?;
            std::fs::create_dir_all(&layout).map_err(|e| e.to_string())?;
            let tar = self.work.join("toolbox.tar");
            std::fs::write(&tar, &archive.data).map_err(|e| e.to_string())?;
            run(Command::new("tar")
                .arg("-xf")
                .arg(&tar)
                .arg("-C")
                .arg(&layout))?;
        }
        let reference = format!("{}/cairn/toolbox:1", registry.host_address());
        let layout = layout.to_string_lossy().into_owned();
        self.crane
            .run(&["push", &layout, &reference])
            .map(drop)
            .map_err(|e| cairn_qemu::node::error_chain(&e))
    }

    /// Pushes `repository:1` to `registry`: the toolbox plus a layer with
    /// `/cairn-marker` holding `marker`. Returns the repository path to pull.
    fn push_marked(&self, registry: &Registry, repository: &str, marker: &str) -> String {
        let dir = self.work.join("markers").join(repository.replace('/', "_"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cairn-marker"), marker).unwrap();
        let layer = dir.with_extension("tar");
        run(Command::new("tar")
            .arg("-cf")
            .arg(&layer)
            .arg("-C")
            .arg(&dir)
            .arg("cairn-marker"))
        .unwrap_or_else(|e| panic!("{e}"));
        let host = registry.host_address();
        let base = format!("{host}/cairn/toolbox:1");
        let target = format!("{host}/{repository}:1");
        let layer = layer.to_string_lossy().into_owned();
        self.crane
            .run(&["append", "-b", &base, "-f", &layer, "-t", &target])
            .unwrap_or_else(|e| panic!("{}", cairn_qemu::node::error_chain(&e)));
        format!("{repository}:1")
    }
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    match output.status.success() {
        true => Ok(()),
        false => Err(format!(
            "{command:?}: {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )),
    }
}

/// A session once the registries run and the node (booted with their config) is Ready.
fn session() -> Session {
    env();
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let session = Session::open().reporting(REPORTED);
    let ready = READY.get_or_init(|| {
        session.try_wait_true("node-ready", NODE_READY_TIMEOUT)?;
        let (ok, reason) = session.condition("node-config");
        match ok {
            true => Ok(()),
            false => Err(format!("node-config is false: {reason}")),
        }
    });
    if let Err(err) = ready {
        session.fail(err);
    }
    session
}

fn namespace(session: &Session, name: &str) {
    let manifest = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n");
    session.kubectl_ok_within(&["apply", "-f", "-"], &manifest, KUBECTL_TIMEOUT);
    session.wait_for_default_service_account(name);
}

/// A pod that prints the marker of `image` and exits.
fn marker_pod(ns: &str, image: &str, pull_secret: Option<&str>) -> String {
    let secrets = match pull_secret {
        Some(name) => format!("  imagePullSecrets: [{{ name: {name} }}]\n"),
        None => String::new(),
    };
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: marker
  namespace: {ns}
spec:
  restartPolicy: Never
{secrets}  containers:
  - name: main
    image: {image}
    command: [\"cat\", \"/cairn-marker\"]
"
    )
}

/// Namespace `ns` (with the pull secret `regcred` when `secret`) and, in it, pod
/// `marker` of `image`.
fn start_marker_pod(session: &Session, env: &Env, ns: &str, image: &str, secret: bool) {
    namespace(session, ns);
    if secret {
        pull_secret(session, env, ns);
    }
    let secret = secret.then_some("regcred");
    session.kubectl_ok_within(
        &["apply", "-f", "-"],
        &marker_pod(ns, image, secret),
        KUBECTL_TIMEOUT,
    );
}

/// Waits for pod `marker` to succeed and returns its log.
fn marker_output(session: &Session, ns: &str) -> String {
    let timeout = format!("--timeout={}s", POD_TIMEOUT.as_secs());
    let args = [
        "wait",
        "--for=jsonpath={.status.phase}=Succeeded",
        "pod/marker",
        "-n",
        ns,
        &timeout,
    ];
    let output = session.kubectl_within(&args, "", POD_TIMEOUT + KUBECTL_TIMEOUT);
    if !output.status.success() {
        let described = session.kubectl(&["describe", "pod", "marker", "-n", ns], "");
        session.fail(format!(
            "pod {ns}/marker did not succeed: {}\n--- describe ---\n{}",
            describe(&output),
            describe(&described)
        ));
    }
    session.kubectl_ok(&["logs", "marker", "-n", ns])
}

/// Waits until pod `marker`'s container waits with `ErrImagePull` or
/// `ImagePullBackOff`; returns the messages of its `Failed` events joined.
fn pull_failure(session: &Session, ns: &str) -> String {
    let deadline = Instant::now() + REFUSAL_TIMEOUT;
    loop {
        let pod: Value = serde_json::from_str(
            &session.kubectl_ok(&["get", "pod", "marker", "-n", ns, "-o", "json"]),
        )
        .unwrap_or_else(|e| session.fail(format!("pod json: {e}")));
        let reason = pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let events = session.kubectl_ok(&[
            "get",
            "events",
            "-n",
            ns,
            "--field-selector",
            "involvedObject.name=marker,reason=Failed",
            "-o",
            "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}",
        ]);
        let pulling_failed = matches!(reason.as_str(), "ErrImagePull" | "ImagePullBackOff");
        if pulling_failed && !events.trim().is_empty() {
            return events;
        }
        if pod["status"]["phase"] == "Succeeded" || pod["status"]["phase"] == "Running" {
            session.fail(format!("pod {ns}/marker ran; its pull should have failed"));
        }
        if Instant::now() > deadline {
            let described = session.kubectl(&["describe", "pod", "marker", "-n", ns], "");
            session.fail(format!(
                "pod {ns}/marker: no pull failure within {REFUSAL_TIMEOUT:?} (waiting: {reason:?})\n\
                 --- describe ---\n{}",
                describe(&described)
            ));
        }
        thread::sleep(RETRY);
    }
}

/// The node's runtime and kubelet are unharmed by a refused pull.
fn assert_node_healthy(session: &Session) {
    for name in ["containerd", "kubelet", "node-ready"] {
        let (ok, reason) = session.condition(name);
        if !ok {
            session.fail(format!("{name} is false after a refused pull: {reason}"));
        }
    }
}

#[test]
#[ignore = "boots QEMU and runs registries; run with --ignored after `make image`"]
fn a_private_image_runs_with_its_pull_secret() {
    let session = session();
    let env = env();
    let ns = "pull-secret";
    let marker = "pulled from the private registry with a secret";
    let image = format!(
        "{}/{}",
        env.private.guest_address(),
        env.push_marked(&env.private, "cairn/secret", marker)
    );
    start_marker_pod(&session, env, ns, &image, true);
    let output = marker_output(&session, ns);
    assert_eq!(output.trim(), marker);
}

/// The pull secret `regcred` for the private registry in namespace `ns`.
fn pull_secret(session: &Session, env: &Env, ns: &str) {
    let credentials = env.private.auth.as_ref().unwrap();
    session.kubectl_ok(&[
        "create",
        "secret",
        "docker-registry",
        "regcred",
        "-n",
        ns,
        &format!("--docker-server={}", env.private.guest_address()),
        &format!("--docker-username={}", credentials.user),
        &format!("--docker-password={}", credentials.password),
    ]);
}

#[test]
#[ignore = "boots QEMU and runs registries; run with --ignored after `make image`"]
fn an_image_named_only_by_its_digest_runs() {
    let session = session();
    let env = env();
    let ns = "by-digest";
    let marker = "pulled by digest";
    let tagged = env.push_marked(&env.private, "cairn/by-digest", marker);
    let pushed = format!("{}/{tagged}", env.private.host_address());
    let digest = env
        .crane
        .run(&["digest", &pushed])
        .unwrap_or_else(|e| panic!("{}", cairn_qemu::node::error_chain(&e)));
    let digest = digest.trim();
    assert!(digest.starts_with("sha256:"), "crane digest: {digest:?}");
    let image = format!("{}/cairn/by-digest@{digest}", env.private.guest_address());
    start_marker_pod(&session, env, ns, &image, true);
    let output = marker_output(&session, ns);
    assert_eq!(output.trim(), marker);
    let pod: Value = serde_json::from_str(
        &session.kubectl_ok(&["get", "pod", "marker", "-n", ns, "-o", "json"]),
    )
    .unwrap_or_else(|e| session.fail(format!("pod json: {e}")));
    let image_id = pod["status"]["containerStatuses"][0]["imageID"]
        .as_str()
        .unwrap_or_default();
    if !image_id.ends_with(digest) {
        session.fail(format!(
            "the container's imageID {image_id:?} is not {digest}"
        ));
    }
}

#[test]
#[ignore = "boots QEMU and runs registries; run with --ignored after `make image`"]
fn without_its_pull_secret_a_private_image_is_refused_with_the_registrys_401() {
    let session = session();
    let env = env();
    let ns = "no-pull-secret";
    let image = format!(
        "{}/{}",
        env.private.guest_address(),
        env.push_marked(&env.private, "cairn/denied", "never pulled")
    );
    start_marker_pod(&session, env, ns, &image, false);
    let events = pull_failure(&session, ns);
    // containerd words the registry's 401 challenge as an authorization failure; the
    // registry's access log shows the 401 it sent to the node's containerd.
    if !events.contains("authorization failed: no basic auth credentials") {
        session.fail(format!(
            "the pull failed, but not for want of credentials:\n{events}"
        ));
    }
    let log = std::fs::read_to_string(&env.private.log_path).unwrap_or_default();
    let refused = log.lines().any(|line| {
        line.contains("\"HEAD /v2/cairn/denied/manifests/1 HTTP/1.1\" 401 ")
            && line.contains("containerd/")
    });
    if !refused {
        session.fail(format!(
            "the registry's log ({}) has no 401 for containerd's request of cairn/denied:1",
            env.private.log_path.display()
        ));
    }
    assert_node_healthy(&session);
}

#[test]
#[ignore = "boots QEMU and runs registries; run with --ignored after `make image`"]
fn a_mirror_serves_a_registry_whose_name_does_not_resolve() {
    let session = session();
    let env = env();
    let ns = "mirrored";
    let marker = "pulled through the mirror";
    let image = format!(
        "{MIRRORED_HOST}/{}",
        env.push_marked(&env.mirror, "cairn/mirrored", marker)
    );
    start_marker_pod(&session, env, ns, &image, false);
    let output = marker_output(&session, ns);
    assert_eq!(output.trim(), marker);
}

#[test]
#[ignore = "boots QEMU and runs registries; run with --ignored after `make image`"]
fn a_registry_whose_ca_the_node_was_not_given_fails_the_pull_on_its_certificate() {
    let session = session();
    let env = env();
    let ns = "untrusted";
    let image = format!(
        "{}/{}",
        env.mirror.guest_address(),
        env.push_marked(&env.mirror, "cairn/untrusted", "never pulled")
    );
    start_marker_pod(&session, env, ns, &image, false);
    let events = pull_failure(&session, ns);
    if !events.contains("x509: certificate signed by unknown authority") {
        session.fail(format!(
            "the pull failed, but not on the certificate:\n{events}"
        ));
    }
    assert_node_healthy(&session);
}

/// A TCP listener on the host that accepts every connection and never says a word:
/// a registry that hangs before TLS.
fn silent_listener() -> u16 {
    let listener = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .expect("a listener for the hanging registry");
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    port
}

#[test]
#[ignore = "boots QEMU and runs registries; run with --ignored after `make image`"]
fn a_registry_that_hangs_fails_the_pull_with_a_reason_in_bounded_time() {
    let session = session();
    let ns = "hanging";
    let port = silent_listener();
    let image = format!("{}:{port}/cairn/hangs:1", registry::GUEST_HOST);
    let started = Instant::now();
    start_marker_pod(&session, env(), ns, &image, false);
    let events = pull_failure(&session, ns);
    if !events.contains("TLS handshake timeout") {
        session.fail(format!(
            "the pull failed, but not on the silent server:\n{events}"
        ));
    }
    eprintln!(
        "the hanging registry's pull failed after {:?}",
        started.elapsed()
    );
    assert_node_healthy(&session);
}

#[test]
#[ignore = "boots QEMU and runs registries; run with --ignored after `make image`"]
fn a_malformed_image_reference_is_refused_as_an_invalid_image_name() {
    let session = session();
    let ns = "malformed-reference";
    // Upper case is not allowed in a repository path: the apiserver accepts the pod
    // (it checks only that the field is set), the kubelet refuses the reference.
    let image = format!("{}/Cairn/UPPER:1", registry::GUEST_HOST);
    start_marker_pod(&session, env(), ns, &image, false);
    let deadline = Instant::now() + REFUSAL_TIMEOUT;
    loop {
        let pod: Value = serde_json::from_str(
            &session.kubectl_ok(&["get", "pod", "marker", "-n", ns, "-o", "json"]),
        )
        .unwrap_or_else(|e| session.fail(format!("pod json: {e}")));
        let waiting = &pod["status"]["containerStatuses"][0]["state"]["waiting"];
        let reason = waiting["reason"].as_str().unwrap_or_default();
        let message = waiting["message"].as_str().unwrap_or_default();
        if reason == "InvalidImageName" {
            if !message.contains("invalid reference format") {
                session.fail(format!("InvalidImageName, but the message is {message:?}"));
            }
            break;
        }
        if Instant::now() > deadline {
            session.fail(format!(
                "pod {ns}/marker is not InvalidImageName within {REFUSAL_TIMEOUT:?}: \
                 {reason:?} {message:?}"
            ));
        }
        thread::sleep(RETRY);
    }
    assert_node_healthy(&session);
}

/// The digest and path in `env`'s private registry storage of the last layer of
/// `repository:1` (the case's own marker layer).
fn marker_layer(env: &Env, repository: &str) -> (String, Value) {
    let reference = format!("{}/{repository}", env.private.host_address());
    let manifest = env
        .crane
        .run(&["manifest", &reference])
        .unwrap_or_else(|e| panic!("{}", cairn_qemu::node::error_chain(&e)));
    let manifest: Value =
        serde_json::from_str(&manifest).unwrap_or_else(|e| panic!("manifest json: {e}"));
    let digest = manifest["layers"]
        .as_array()
        .and_then(|layers| layers.last())
        .and_then(|layer| layer["digest"].as_str())
        .unwrap_or_else(|| panic!("no layers in {manifest}"))
        .to_owned();
    (digest, manifest)
}

#[test]
#[ignore = "boots QEMU and runs registries; run with --ignored after `make image`"]
fn a_manifest_whose_layer_is_missing_fails_the_pull_naming_the_blob() {
    let session = session();
    let env = env();
    let ns = "missing-blob";
    let repository = env.push_marked(&env.private, "cairn/missing-blob", "never pulled");
    let (digest, _) = marker_layer(env, &repository);
    // The registry's filesystem storage (distribution's layout): the blob's bytes go,
    // the manifest that names it stays.
    let hex = digest.trim_start_matches("sha256:");
    let data = env
        .work
        .join("private/storage/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    std::fs::remove_file(&data).unwrap_or_else(|e| panic!("{}: {e}", data.display()));
    let image = format!("{}/{repository}", env.private.guest_address());
    start_marker_pod(&session, env, ns, &image, true);
    let events = pull_failure(&session, ns);
    if !(events.contains(&digest) && events.contains("not found")) {
        session.fail(format!(
            "the pull failed, but not on the missing blob {digest}:\n{events}"
        ));
    }
    assert_node_healthy(&session);
}

#[test]
#[ignore = "boots QEMU and runs registries; run with --ignored after `make image`"]
fn a_manifest_claiming_a_5_gib_layer_fails_the_pull_on_the_size() {
    let session = session();
    let env = env();
    let ns = "huge-claim";
    let repository = env.push_marked(&env.private, "cairn/huge-claim", "never pulled");
    let (digest, mut manifest) = marker_layer(env, &repository);
    let claimed: u64 = 5 << 30;
    let layers = manifest["layers"].as_array_mut().unwrap();
    layers.last_mut().unwrap()["size"] = claimed.into();
    // The registry checks that the blobs a manifest names exist, not their sizes.
    let reference = format!("{}/{repository}", env.private.host_address());
    let edited = serde_json::to_string(&manifest).unwrap();
    env.crane
        .run_with_stdin(&["edit", "manifest", &reference], edited.as_bytes())
        .unwrap_or_else(|e| panic!("{}", cairn_qemu::node::error_chain(&e)));
    let image = format!("{}/{repository}", env.private.guest_address());
    start_marker_pod(&session, env, ns, &image, true);
    let events = pull_failure(&session, ns);
    // containerd reads the blob against the claimed size and stops at its real end
    // ("short read: expected N bytes but got M"); the digest is not in that message.
    if !events.contains(&format!("expected {claimed} bytes but got")) {
        session.fail(format!(
            "the pull failed, but not on the size of {digest} ({claimed} claimed):\n{events}"
        ));
    }
    assert_node_healthy(&session);
}
