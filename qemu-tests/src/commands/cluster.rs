//! `cairn-qemu cluster start|stop`: one control-plane node and N workers on one host,
//! each detached with its own state directory under the cluster directory
//! (`control-plane`, `worker-1`, ...), all on one cluster segment
//! (docs/interfaces.md "Clusters (launcher)").
//!
//! `start` boots the control-plane node, then boots each worker with a join token of
//! its own in its node config (tokens are single-use), which it asks the control
//! plane for once the apiserver admits joins: through its debug service, or its node
//! API as the owner (production images). Every node gets the host's owner CA, as `run`
//! gives it. A worker that joined before and keeps its disk gets no token. The
//! segment, addresses and MACs are kept in `cluster.json`, so a later `start` brings
//! the same cluster back: the data disks keep each node's key and a worker's client
//! certificate, so workers rejoin without a new token.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use cairn_api::node_config::{Cluster, Join, Role};
use cairn_qemu::accel::{self, AccelChoice};
use cairn_qemu::config::{DataDisk, Settings};
use cairn_qemu::image::DEFAULT_IMAGE_DIR;
use cairn_qemu::owner;
use cairn_qemu::stop::{stop_recorded, RecordedStop};
use cairn_qemu::{ClusterNic, Image, Mac, Node, NodeConfig, SpawnMode, StateDir};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};

use super::{dir_or_default, display_path, CommandError};

/// The cluster directory by default, under the workspace root.
pub const DEFAULT_CLUSTER_DIR: &str = "build/cluster";
/// The record of a cluster, in its directory.
pub const RECORD: &str = "cluster.json";
/// The control-plane node's directory (and name in the record).
pub const CONTROL_PLANE: &str = "control-plane";
/// The cluster segment's network; the control plane is .10, worker i is .10+i.
const SUBNET: [u8; 3] = [192, 168, 100];
const PREFIX: u8 = 24;
const FIRST_HOST: u8 = 10;
const MAX_WORKERS: u8 = 8;

#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Boot a control-plane node and --workers workers that join it.
    Start(StartArgs),
    /// Stop every node of the cluster (workers first).
    Stop(StopArgs),
}

#[derive(Debug, Args)]
struct StartArgs {
    /// Workers to boot besides the control-plane node (1-8).
    #[arg(long, default_value_t = 1)]
    workers: u8,
    /// Where the nodes' state directories and cluster.json go.
    #[arg(long, env = "CAIRN_CLUSTER_DIR")]
    dir: Option<PathBuf>,
    /// Build output to boot: a debug image (join tokens from the control plane's debug
    /// service) or a production one (join tokens through its node API, as the owner).
    #[arg(long, env = "CAIRN_IMAGE_DIR")]
    image_dir: Option<PathBuf>,
    /// Owner directory whose ca.crt every node is given as its owner CA (`dbg owner
    /// init` fills it) [default: $XDG_CONFIG_HOME/cairn/owner, else
    /// ~/.config/cairn/owner].
    #[arg(long, value_name = "DIR", env = cairn_dbg::owner::OWNER_DIR_ENV)]
    owner_dir: Option<PathBuf>,
    /// Give the nodes no owner CA from the host (ignores --owner-dir); a production
    /// control plane then cannot issue join tokens.
    #[arg(long)]
    no_owner: bool,
    /// Accelerator: auto uses KVM only if a short probe boot works.
    #[arg(long, default_value = "auto")]
    accel: AccelChoice,
    /// Seconds each node may take to print CAIRN_READY.
    #[arg(long, default_value_t = 240)]
    ready_timeout: u64,
    /// Seconds the control plane's apiserver may take to issue the join token.
    #[arg(long, default_value_t = 300)]
    token_timeout: u64,
}

#[derive(Debug, Args)]
struct StopArgs {
    /// The cluster directory.
    #[arg(long, env = "CAIRN_CLUSTER_DIR")]
    dir: Option<PathBuf>,
    /// Seconds each guest gets to end after ctrl-alt-delete before QEMU is killed.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

/// `cluster.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterRecord {
    /// The multicast group and port of the cluster segment.
    pub segment: SocketAddrV4,
    /// The control-plane node first.
    pub nodes: Vec<NodeEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeEntry {
    /// The state directory's name under the cluster directory.
    pub name: String,
    pub role: Role,
    /// The cluster address, `A.B.C.D/N`.
    pub address: String,
    pub mac: String,
    /// Set once the node has booted (`cairn-<node_id>` is its Kubernetes name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
}

pub fn run(args: ClusterArgs) -> Result<ExitCode, CommandError> {
    match args.command {
        ClusterCommand::Start(args) => start(args),
        ClusterCommand::Stop(args) => stop(args),
    }
}

fn cluster_error(problem: impl Into<String>) -> CommandError {
    CommandError::Cluster(problem.into())
}

fn start(args: StartArgs) -> Result<ExitCode, CommandError> {
    if !(1..=MAX_WORKERS).contains(&args.workers) {
        return Err(cluster_error(format!(
            "--workers {}: give 1 to {MAX_WORKERS}",
            args.workers
        )));
    }
    let dir = dir_or_default(args.dir.clone(), DEFAULT_CLUSTER_DIR);
    std::fs::create_dir_all(&dir)
        .map_err(|err| cluster_error(format!("cannot create {}: {err}", dir.display())))?;
    let mut record = load_or_plan(&dir, args.workers)?;
    for entry in &record.nodes {
        let state = StateDir::new(&dir.join(&entry.name));
        if let Ok(Some(_)) = state.running_pid() {
            return Err(cluster_error(format!(
                "{} is already running in {}; `cairn-qemu cluster stop` first",
                entry.name,
                display_path(&dir)
            )));
        }
    }
    save(&dir, &record)?;
    let image = Image::open(&dir_or_default(args.image_dir.clone(), DEFAULT_IMAGE_DIR))?;
    let accel = match args.accel {
        AccelChoice::Auto => accel::probe_cached(&image.kernel).accel,
        choice => accel::resolve(choice, &image.kernel),
    };
    let ready_timeout = Duration::from_secs(args.ready_timeout);
    let owner_dir = owner::dir(args.owner_dir.clone(), args.no_owner);
    let mut owner_said = false;
    let mut boot = |entry: &NodeEntry, join: Option<Join>| -> Result<String, CommandError> {
        let state_dir = dir.join(&entry.name);
        let mut config = NodeConfig::new(image.clone(), accel, &state_dir);
        config.mode = SpawnMode::Detached;
        config.cluster_nic = Some(ClusterNic {
            segment: record.segment,
            mac: entry.mac.parse().map_err(cluster_error)?,
        });
        let settings = Some(Settings {
            cluster: Some(Cluster {
                address: entry.address.clone(),
                device: Cluster::DEFAULT_DEVICE.to_owned(),
                role: entry.role,
                join,
            }),
            ..Default::default()
        });
        let (settings, owner) = owner::apply(settings, args.no_owner, owner_dir.as_deref())
            .map_err(CommandError::Owner)?;
        if !owner_said {
            println!("{}", owner.describe());
            owner_said = true;
        }
        config.settings = settings;
        let mut node = Node::start(&config).map_err(CommandError::Start)?;
        let ready = node
            .wait_ready(ready_timeout)
            .map_err(CommandError::NotReady)?;
        let record = node.detach();
        super::watch::start_watcher(&StateDir::new(&state_dir));
        println!(
            "{}: node {} ({}) ready, qemu pid {}, state dir {}",
            entry.name,
            ready.node_id,
            entry.address,
            record.pid,
            display_path(&state_dir)
        );
        Ok(ready.node_id)
    };
    let control_plane = record.nodes[0].clone();
    let id = boot(&control_plane, None)?;
    record.nodes[0].node_id = Some(id);
    save(&dir, &record)?;
    let control_record = StateDir::new(&dir.join(CONTROL_PLANE)).record_file();
    for index in 1..record.nodes.len() {
        let entry = record.nodes[index].clone();
        let join = if rejoins(&dir, &entry) {
            println!(
                "{}: joined before; rejoins with the client certificate on its data disk",
                entry.name
            );
            None
        } else {
            // One token per worker: a token joins one node (the control plane deletes
            // it once that node registered).
            let within = Duration::from_secs(args.token_timeout);
            Some(join_credential(
                &control_record,
                owner_dir.as_deref(),
                within,
            )?)
        };
        let id = boot(&entry, join)?;
        record.nodes[index].node_id = Some(id);
        save(&dir, &record)?;
    }
    let cluster = display_path(&dir);
    println!(
        "cluster of {} nodes on segment {} ({cluster}/{RECORD})",
        record.nodes.len(),
        record.segment
    );
    println!("  kubectl:   dbg --node {CONTROL_PLANE} kubectl get nodes");
    println!("  conditions: dbg --node worker-1 conditions");
    println!("  stop it:   cairn-qemu cluster stop --dir {cluster}");
    Ok(ExitCode::SUCCESS)
}

/// The recorded cluster if there is one (the same segment, addresses and MACs; more
/// workers are added, none are dropped), else a new plan with a random segment.
fn load_or_plan(dir: &Path, workers: u8) -> Result<ClusterRecord, CommandError> {
    let mut record = match std::fs::read_to_string(dir.join(RECORD)) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|err| cluster_error(format!("{}: {err}", dir.join(RECORD).display())))?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => ClusterRecord {
            segment: random_segment()?,
            nodes: Vec::new(),
        },
        Err(err) => {
            return Err(cluster_error(format!(
                "{}: {err}",
                dir.join(RECORD).display()
            )))
        }
    };
    for index in record.nodes.len()..=usize::from(workers) {
        let (name, role) = match index {
            0 => (CONTROL_PLANE.to_owned(), Role::ControlPlane),
            i => (format!("worker-{i}"), Role::Worker),
        };
        let host = FIRST_HOST + u8::try_from(index).unwrap_or(u8::MAX);
        let absolute = std::path::absolute(dir.join(&name)).unwrap_or_else(|_| dir.join(&name));
        record.nodes.push(NodeEntry {
            name,
            role,
            address: format!(
                "{}/{PREFIX}",
                Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], host)
            ),
            mac: Mac::derived(absolute.as_os_str().as_bytes()).to_string(),
            node_id: None,
        });
    }
    Ok(record)
}

/// A group in 239.255.0.0/16 and a port in 40000-59999, from the kernel's randomness:
/// clusters on one host each get their own segment.
fn random_segment() -> Result<SocketAddrV4, CommandError> {
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).map_err(|err| cluster_error(format!("getrandom: {err}")))?;
    let port = 40_000 + u16::from_le_bytes([bytes[2], bytes[3]]) % 20_000;
    Ok(SocketAddrV4::new(
        Ipv4Addr::new(239, 255, bytes[0], bytes[1].max(1)),
        port,
    ))
}

fn save(dir: &Path, record: &ClusterRecord) -> Result<(), CommandError> {
    let path = dir.join(RECORD);
    let text = serde_json::to_string_pretty(record).expect("a record serializes");
    std::fs::write(&path, text + "\n")
        .map_err(|err| cluster_error(format!("cannot write {}: {err}", path.display())))
}

/// Whether worker `entry` joined in an earlier start and keeps its data disk: it then
/// authenticates with the client certificate stored there, and a token would go unused
/// (docs/interfaces.md "Clusters (launcher)").
fn rejoins(dir: &Path, entry: &NodeEntry) -> bool {
    entry.node_id.is_some() && dir.join(&entry.name).join(DataDisk::FILE_NAME).is_file()
}

/// A join token from the control-plane node: through its debug service, else (a
/// production image) through its node API as the owner in `owner_dir`.
fn join_credential(
    record: &Path,
    owner_dir: Option<&Path>,
    within: Duration,
) -> Result<Join, CommandError> {
    cairn_qemu::join::join_credential_from_record(record, owner_dir, within).map_err(|err| {
        cluster_error(format!(
            "no join token from the control-plane node: {err} (a production control plane \
             issues them only to its owner: `dbg owner init` before `cluster start`)"
        ))
    })
}

fn stop(args: StopArgs) -> Result<ExitCode, CommandError> {
    let dir = dir_or_default(args.dir, DEFAULT_CLUSTER_DIR);
    let text = match std::fs::read_to_string(dir.join(RECORD)) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            println!("no cluster in {}", display_path(&dir));
            return Ok(ExitCode::SUCCESS);
        }
        Err(err) => {
            return Err(cluster_error(format!(
                "{}: {err}",
                dir.join(RECORD).display()
            )))
        }
    };
    let record: ClusterRecord = serde_json::from_str(&text)
        .map_err(|err| cluster_error(format!("{}: {err}", dir.join(RECORD).display())))?;
    // Workers first: the control plane then sees them go, not the other way round.
    for entry in record.nodes.iter().rev() {
        let node_dir = dir.join(&entry.name);
        let state = StateDir::new(&node_dir);
        let outcome = stop_recorded(&state, Duration::from_secs(args.timeout))
            .map_err(|e| CommandError::Stop(node_dir.clone(), e))?;
        match outcome {
            RecordedStop::NotRunning => println!("{}: not running", entry.name),
            RecordedStop::Clean(pid) => println!("{}: stopped (qemu pid {pid})", entry.name),
            RecordedStop::Forced { pid, why } => {
                println!("{}: killed (qemu pid {pid}): {why}", entry.name)
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_cluster_gets_a_random_segment_and_one_address_and_mac_per_node() {
        let dir = tempfile::tempdir().unwrap();
        let record = load_or_plan(dir.path(), 2).unwrap();
        let octets = record.segment.ip().octets();
        assert_eq!(octets[..2], [239, 255]);
        assert!((40_000..60_000).contains(&record.segment.port()));
        let nodes: Vec<(&str, Role, &str)> = (record.nodes.iter())
            .map(|n| (n.name.as_str(), n.role, n.address.as_str()))
            .collect();
        assert_eq!(
            nodes,
            [
                ("control-plane", Role::ControlPlane, "192.168.100.10/24"),
                ("worker-1", Role::Worker, "192.168.100.11/24"),
                ("worker-2", Role::Worker, "192.168.100.12/24"),
            ]
        );
        let macs: std::collections::BTreeSet<&str> =
            record.nodes.iter().map(|n| n.mac.as_str()).collect();
        assert_eq!(macs.len(), 3, "{macs:?}");
        for mac in macs {
            mac.parse::<Mac>().unwrap();
        }
    }

    #[test]
    fn a_recorded_cluster_keeps_its_segment_and_nodes_and_grows() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = load_or_plan(dir.path(), 1).unwrap();
        first.nodes[1].node_id = Some("00ff".to_owned());
        save(dir.path(), &first).unwrap();
        let again = load_or_plan(dir.path(), 3).unwrap();
        assert_eq!(again.segment, first.segment);
        assert_eq!(again.nodes.len(), 4);
        assert_eq!(again.nodes[1].node_id.as_deref(), Some("00ff"));
        assert_eq!(again.nodes[1].mac, first.nodes[1].mac);
        assert_eq!(again.nodes[3].address, "192.168.100.13/24");
        // Fewer workers asked for: none is dropped from the record.
        save(dir.path(), &again).unwrap();
        assert_eq!(load_or_plan(dir.path(), 1).unwrap().nodes.len(), 4);
    }

    #[test]
    fn only_a_worker_that_joined_and_keeps_its_disk_rejoins_without_a_token() {
        let dir = tempfile::tempdir().unwrap();
        let mut record = load_or_plan(dir.path(), 1).unwrap();
        let worker = &mut record.nodes[1];
        assert!(!rejoins(dir.path(), worker), "never booted");
        let disk = dir.path().join(&worker.name);
        std::fs::create_dir_all(&disk).unwrap();
        std::fs::write(disk.join(DataDisk::FILE_NAME), b"").unwrap();
        assert!(
            !rejoins(dir.path(), worker),
            "a disk but no node id recorded"
        );
        worker.node_id = Some("00ff".to_owned());
        assert!(rejoins(dir.path(), worker));
        std::fs::remove_file(disk.join(DataDisk::FILE_NAME)).unwrap();
        assert!(!rejoins(dir.path(), worker), "its disk is gone: a new node");
    }

    #[test]
    fn a_damaged_record_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(RECORD), "{").unwrap();
        let err = load_or_plan(dir.path(), 1).unwrap_err().to_string();
        assert!(
            err.starts_with("cluster: ") && err.contains(RECORD),
            "{err}"
        );
    }
}
