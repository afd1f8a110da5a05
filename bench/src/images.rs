//! Images beyond the preloaded ones: a pull of a ~100 MB image from a registry on the
//! host against `dbg load-image` of the same kind of image, seconds and MB/s.
//!
//! The registry is the CNCF `distribution` registry built from its Go module
//! (`cairn_qemu::registry`, as the boot tests run it: TLS from its own CA, here without
//! auth), on loopback; the node reaches it as 10.0.2.2 through QEMU's user network and
//! trusts its CA through the per-node config. Every run uses an image of its own (the
//! toolbox image plus one layer of incompressible bytes, pushed with `crane append`),
//! so no run finds a blob an earlier one brought: half of them are pulled by a pod,
//! half are loaded as the archive `crane pull` writes of them (`docker save` form) with
//! `dbg load-image`'s own code.
//!
//! - Pull: the kubelet's own figure from its `Pulled` event ("Successfully pulled
//!   image … in Xs"), which times containerd's pull through CRI, unpacking included.
//! - Load: host wall clock around `dbg load-image` (upload over the debug service,
//!   the node's digest checks, the import and unpacking), as a user waits for it.
//!
//! `ctr` is not in the image (nothing on a node needs it), so there is no `ctr images
//! pull` / `ctr images import` row: the pull row *is* containerd's own pull.
//! Writes `images.{md,json}`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cairn_api::names::condition;
use cairn_qemu::config::Settings;
use cairn_qemu::registry::{self, Crane, Registry, RegistrySpec, Tls};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::first_pod::Admin;
use crate::node::{self, Bench};
use crate::report::{self, Machine};
use crate::stats::Summary;

pub const NAME: &str = "images";
const UNTIL_TIMEOUT: Duration = Duration::from_secs(600);
/// A pull of ~100 MB and the pod's start under TCG, with margin.
const PULL_TIMEOUT: Duration = Duration::from_secs(600);
const LOAD_TIMEOUT: Duration = Duration::from_secs(1800);
const NAMESPACE: &str = "bench-images";
const TOOLBOX_ARCHIVE: &str = "usr/share/cairn/images/toolbox.tar";

#[derive(Debug, Serialize, Deserialize)]
pub struct Results {
    pub machine: Machine,
    /// Bytes of the layer each image adds to the toolbox image.
    pub layer_bytes: u64,
    pub pulls: Vec<Transfer>,
    pub pull_s: Option<Summary>,
    pub pull_mb_s: Option<Summary>,
    pub loads: Vec<Transfer>,
    pub load_s: Option<Summary>,
    pub load_mb_s: Option<Summary>,
}

/// One image brought to the node.
#[derive(Debug, Serialize, Deserialize)]
pub struct Transfer {
    pub reference: String,
    /// What was moved: the image size the kubelet reports for a pull, the archive's
    /// size for a load.
    pub bytes: u64,
    pub seconds: f64,
}

impl Transfer {
    fn mb_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.seconds
    }
}

pub fn run(bench: &Bench, runs: usize, layer_mb: u64) -> Result<PathBuf, Error> {
    let accel = bench.single_accel()?;
    let work = bench.work.join(NAME);
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(Error::write(&work))?;
    let tool = |e: registry::RegistryError| Error::Unmeasurable(format!("registry: {e}"));
    let (registry_bin, crane_bin) =
        registry::host_tools(Path::new("."), &registry::default_go_out()).map_err(tool)?;
    let tls = Tls::create(&work.join("tls"), "cairn bench registry CA").map_err(tool)?;
    let registry = Registry::start(&RegistrySpec {
        binary: registry_bin,
        dir: work.join("registry"),
        port: 0,
        tls: tls.clone(),
        auth: None,
    })
    .map_err(tool)?;
    let crane = Crane {
        binary: crane_bin,
        home: work.join("crane"),
        ca_path: tls.ca_path.clone(),
    };
    push_toolbox(bench, &work, &crane, &registry)?;
    let layer_bytes = layer_mb * 1_000_000;
    let mut images = Vec::new();
    for index in 0..2 * runs {
        let repository = format!("bench/big-{index}:1");
        push_big(
            &work,
            &crane,
            &registry,
            &repository,
            index as u64,
            layer_bytes,
        )?;
        images.push(repository);
    }
    let (pulled, loaded) = images.split_at(runs);
    let mut archives = Vec::new();
    for repository in loaded {
        let file = work.join(format!("{}.tar", repository.replace(['/', ':'], "_")));
        let source = format!("{}/{repository}", registry.host_address());
        crane
            .run(&["pull", &source, &file.display().to_string()])
            .map_err(tool)?;
        archives.push((repository.clone(), file));
    }
    let settings = settings(&registry)?;
    node::runtime()?.block_on(async {
        let mut booted = bench
            .boot_with_settings(NAME, accel, &[], Some(settings))
            .await?;
        booted
            .wait_true(condition::NODE_READY, UNTIL_TIMEOUT)
            .await?;
        let admin = Admin::new(&mut booted).await?;
        let namespace =
            format!("apiVersion: v1\nkind: Namespace\nmetadata: {{ name: {NAMESPACE} }}\n");
        admin.apply(&namespace).await?;
        let account = [
            "wait",
            "--for=create",
            "serviceaccount/default",
            "--timeout=300s",
        ];
        admin
            .run(&[&account[..], &["-n", NAMESPACE]].concat())
            .await?;

        let mut pulls = Vec::new();
        for (index, repository) in pulled.iter().enumerate() {
            let reference = format!("{}/{repository}", registry.guest_address());
            let pull = pull(&admin, &format!("pull-{index}"), &reference).await?;
            eprintln!(
                "cairn-bench: images: pulled {reference} ({} bytes) in {:.2} s",
                pull.bytes, pull.seconds
            );
            pulls.push(pull);
        }
        let mut loads = Vec::new();
        for (repository, file) in &archives {
            let load = load(&booted, repository, file).await?;
            eprintln!(
                "cairn-bench: images: loaded {repository} ({} bytes) in {:.2} s",
                load.bytes, load.seconds
            );
            loads.push(load);
        }
        let summary = |list: &[Transfer], f: fn(&Transfer) -> f64| {
            Summary::of(&list.iter().map(f).collect::<Vec<_>>())
        };
        let results = Results {
            machine: Machine::describe(&accel.to_string()),
            layer_bytes,
            pull_s: summary(&pulls, |t| t.seconds),
            pull_mb_s: summary(&pulls, Transfer::mb_s),
            load_s: summary(&loads, |t| t.seconds),
            load_mb_s: summary(&loads, Transfer::mb_s),
            pulls,
            loads,
        };
        report::write(&bench.results, NAME, &markdown(&results), &results)
    })
}

/// The node trusts the registry's CA for its guest address.
fn settings(registry: &Registry) -> Result<Settings, Error> {
    let text = format!(
        "version = 1\n[[registry]]\nhost = {host:?}\nca = {ca:?}\n",
        host = registry.guest_address(),
        ca = registry.tls.ca_pem,
    );
    Settings::parse(&text).map_err(|e| Error::Unmeasurable(format!("bench node config: {e}")))
}

/// The preloaded toolbox image, read out of the initramfs under test, as
/// `bench/toolbox:1`: the base of every image here.
fn push_toolbox(
    bench: &Bench,
    work: &Path,
    crane: &Crane,
    registry: &Registry,
) -> Result<(), Error> {
    let initrd = bench.image()?.initrd;
    let bytes = std::fs::read(&initrd).map_err(Error::read(&initrd))?;
    let entries =
        cairn_initramfs::read(&bytes).map_err(|e| Error::Initramfs(initrd.clone(), Box::new(e)))?;
    let archive = entries
        .iter()
        .find(|e| e.path.trim_start_matches("./").trim_start_matches('/') == TOOLBOX_ARCHIVE)
        .ok_or_else(|| Error::Unmeasurable(format!("no /{TOOLBOX_ARCHIVE} in the image")))?;
    let layout = work.join("toolbox-layout");
    std::fs::create_dir_all(&layout).map_err(Error::write(&layout))?;
    let tar = work.join("toolbox.tar");
    std::fs::write(&tar, &archive.data).map_err(Error::write(&tar))?;
    run_tool(
        Command::new("tar")
            .arg("-xf")
            .arg(&tar)
            .arg("-C")
            .arg(&layout),
    )?;
    let target = format!("{}/bench/toolbox:1", registry.host_address());
    crane
        .run(&["push", &layout.display().to_string(), &target])
        .map(drop)
        .map_err(|e| Error::Unmeasurable(format!("crane push: {e}")))
}

/// Pushes `repository`: the toolbox plus a layer holding `bytes` bytes that do not
/// compress (a xorshift stream seeded by `seed`, so every image's layer differs).
fn push_big(
    work: &Path,
    crane: &Crane,
    registry: &Registry,
    repository: &str,
    seed: u64,
    bytes: u64,
) -> Result<(), Error> {
    let dir = work.join(format!("layer-{seed}"));
    std::fs::create_dir_all(&dir).map_err(Error::write(&dir))?;
    let data = dir.join("payload.bin");
    let mut file =
        std::io::BufWriter::new(std::fs::File::create(&data).map_err(Error::write(&data))?);
    let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ (seed + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let mut written = 0;
    while written < bytes {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let word = state.to_le_bytes();
        let take = (bytes - written).min(8) as usize;
        file.write_all(&word[..take]).map_err(Error::write(&data))?;
        written += take as u64;
    }
    file.flush().map_err(Error::write(&data))?;
    drop(file);
    let layer = work.join(format!("layer-{seed}.tar"));
    run_tool(
        Command::new("tar")
            .arg("-cf")
            .arg(&layer)
            .arg("-C")
            .arg(&dir)
            .arg("payload.bin"),
    )?;
    let host = registry.host_address();
    let (base, target) = (
        format!("{host}/bench/toolbox:1"),
        format!("{host}/{repository}"),
    );
    let layer = layer.display().to_string();
    crane
        .run(&["append", "-b", &base, "-f", &layer, "-t", &target])
        .map(drop)
        .map_err(|e| Error::Unmeasurable(format!("crane append: {e}")))
}

fn run_tool(command: &mut Command) -> Result<(), Error> {
    let output = command.output().map_err(|source| Error::Spawn {
        program: format!("{command:?}"),
        source,
    })?;
    match output.status.success() {
        true => Ok(()),
        false => Err(Error::Failed {
            what: format!("{command:?}"),
            status: output.status,
            tail: String::from_utf8_lossy(&output.stderr).into_owned(),
        }),
    }
}

/// Pod `name` of `reference` (pulled: the image is not on the node); the kubelet's
/// `Pulled` event gives the pull's time and the image's size.
async fn pull(admin: &Admin, name: &str, reference: &str) -> Result<Transfer, Error> {
    let pod = format!(
        "apiVersion: v1
kind: Pod
metadata: {{ name: {name}, namespace: {NAMESPACE} }}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: {reference}
    command: [\"true\"]
"
    );
    admin.apply(&pod).await?;
    let selector = format!("involvedObject.name={name},reason=Pulled");
    let deadline = Instant::now() + PULL_TIMEOUT;
    loop {
        let events = admin
            .run(&[
                "get",
                "events",
                "-n",
                NAMESPACE,
                "--field-selector",
                &selector,
                "-o",
                "jsonpath={.items[*].message}",
            ])
            .await?;
        if let Some((seconds, bytes)) = parse_pulled(&events) {
            return Ok(Transfer {
                reference: reference.to_owned(),
                bytes,
                seconds,
            });
        }
        if Instant::now() > deadline {
            return Err(Error::Unmeasurable(format!(
                "no Pulled event for {reference} within {PULL_TIMEOUT:?}: {events:?}"
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Seconds and bytes from the kubelet's "Successfully pulled image "R" in 1.5s (1.5s
/// including waiting). Image size: N bytes." (`None` for anything else).
pub fn parse_pulled(message: &str) -> Option<(f64, u64)> {
    let rest = message.split("Successfully pulled image ").nth(1)?;
    let time = rest.split(" in ").nth(1)?.split(' ').next()?;
    let seconds = parse_go_duration(time)?;
    let size = rest.split("Image size: ").nth(1)?.split(' ').next()?;
    Some((seconds, size.parse().ok()?))
}

/// A Go duration as the kubelet prints it: `850ms`, `12.5s`, `1m2.5s`.
fn parse_go_duration(text: &str) -> Option<f64> {
    if let Some(ms) = text.strip_suffix("ms") {
        return ms.parse::<f64>().ok().map(|ms| ms / 1000.0);
    }
    let text = text.strip_suffix('s')?;
    match text.split_once('m') {
        Some((minutes, seconds)) => {
            Some(minutes.parse::<f64>().ok()? * 60.0 + seconds.parse::<f64>().ok()?)
        }
        None => text.parse().ok(),
    }
}

/// `dbg load-image FILE` through dbg's own code, timed on the host.
async fn load(booted: &node::Booted, repository: &str, file: &Path) -> Result<Transfer, Error> {
    let bytes = std::fs::metadata(file).map_err(Error::read(file))?.len();
    let endpoint = (booted.node.debug_endpoint())
        .ok_or_else(|| Error::Unmeasurable("no debug forward".to_owned()))?
        .to_owned();
    let ctx = cairn_dbg::commands::Context {
        client: cairn_api::node_client::NodeClient::Debug(booted.client.clone()),
        endpoint,
        call_timeout: node::CALL_TIMEOUT,
    };
    let args = cairn_dbg::commands::load_image::Args {
        file: file.to_owned(),
        timeout: LOAD_TIMEOUT.as_secs_f64(),
    };
    let mut out = Vec::new();
    let started = Instant::now();
    cairn_dbg::commands::load_image::run(args, ctx, &mut out)
        .await
        .map_err(|e| Error::Unmeasurable(format!("dbg load-image {}: {e}", file.display())))?;
    Ok(Transfer {
        reference: repository.to_owned(),
        bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

pub fn markdown(results: &Results) -> String {
    report::page(
        "Images: registry pull vs `dbg load-image`",
        &results.machine,
        &body(results),
    )
}

/// The figures, for this page and RESULTS.md.
pub fn body(results: &Results) -> String {
    let mut body = format!(
        "Each image: the toolbox image plus one layer of {} MB that does not compress; \
         a new image for every run. Pull: the kubelet's `Pulled` event (containerd's \
         pull through CRI, unpacking included) from the registry on the host via QEMU's \
         user network. Load: host wall clock around `dbg load-image` of the same kind of \
         image as a `docker save` archive (upload, digest checks, import, unpacking). \
         `ctr` is not in the image, so the pull row is containerd's own pull.\n\n\
         | how | runs | median s | min s | max s | median MB/s |\n\
         | --- | ---: | ---: | ---: | ---: | ---: |\n",
        results.layer_bytes / 1_000_000,
    );
    for (label, seconds, rate) in [
        ("registry pull", results.pull_s, results.pull_mb_s),
        ("dbg load-image", results.load_s, results.load_mb_s),
    ] {
        match (seconds, rate) {
            (Some(s), Some(r)) => {
                let _ = writeln!(
                    body,
                    "| {label} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
                    s.count, s.median, s.min, s.max, r.median
                );
            }
            _ => {
                let _ = writeln!(body, "| {label} | 0 | n/a | | | |");
            }
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubelets_pulled_event_gives_time_and_size() {
        let message = "Successfully pulled image \"10.0.2.2:5000/bench/big-0:1\" in \
                       12.345s (12.5s including waiting). Image size: 104857600 bytes.";
        assert_eq!(parse_pulled(message), Some((12.345, 104_857_600)));
        let quick = "Successfully pulled image \"x\" in 850ms (850ms including waiting). \
                     Image size: 10 bytes.";
        assert_eq!(parse_pulled(quick), Some((0.85, 10)));
        let long = "Successfully pulled image \"x\" in 1m2.5s (1m2.5s including waiting). \
                    Image size: 1 bytes.";
        assert_eq!(parse_pulled(long), Some((62.5, 1)));
        assert_eq!(parse_pulled("Container image \"x\" already present"), None);
    }
}
