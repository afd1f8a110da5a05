//! `cairn-qemu run`: boot the image in the foreground (console on stdout, exit with the
//! guest's `CAIRN_EXIT` code) or detached (return once `CAIRN_READY` is printed).

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use cairn_qemu::accel::{self, AccelChoice};
use cairn_qemu::attach::{self, AttachOptions};
use cairn_qemu::command::{DEFAULT_CPUS, DEFAULT_MEMORY_MIB};
use cairn_qemu::config::Settings;
use cairn_qemu::image::{DEFAULT_IMAGE_DIR, DEFAULT_STATE_DIR};
use cairn_qemu::owner;
use cairn_qemu::{
    ClusterNic, DataDisk, Disk, DiskFormat, ForwardRequest, Image, Mac, Node, NodeConfig,
    NodeRecord, ReadyInfo, SpawnMode, StateDir,
};
use clap::Args;

use super::{dir_or_default, display_path, CommandError};

/// Arguments of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Build output to boot (vmlinuz, initramfs.img, cmdline).
    #[arg(long, env = "CAIRN_IMAGE_DIR")]
    image_dir: Option<PathBuf>,
    /// Accelerator: auto uses KVM only if a short probe boot works.
    #[arg(long, default_value = "auto")]
    accel: AccelChoice,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = DEFAULT_MEMORY_MIB)]
    memory: u32,
    /// Guest vCPUs.
    #[arg(long, default_value_t = DEFAULT_CPUS)]
    cpus: u32,
    /// Where the pid file, console.log, qmp.sock and node.json go.
    #[arg(long, env = "CAIRN_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Return once the guest is ready and leave it running.
    #[arg(long)]
    detach: bool,
    /// Seconds the guest may take to print CAIRN_READY.
    #[arg(long, default_value_t = 120)]
    ready_timeout: u64,
    /// Seconds the guest gets to end after ctrl-alt-delete before QEMU is killed.
    #[arg(long, default_value_t = 30)]
    stop_timeout: u64,
    /// Forward a guest TCP port: GUEST (free host port) or HOST:GUEST. Repeatable.
    #[arg(long = "forward", value_name = "[HOST:]GUEST")]
    forwards: Vec<ForwardRequest>,
    /// The node's persistent data disk (raw image, created sparse if missing; default
    /// data.img in the state dir). The same disk boots the same node again.
    #[arg(long, value_name = "PATH", conflicts_with = "no_data_disk")]
    data_disk: Option<PathBuf>,
    /// Size in GiB of a data disk created by this run.
    #[arg(long, value_name = "GIB", default_value_t = DataDisk::DEFAULT_SIZE >> 30)]
    data_disk_size: u64,
    /// Boot without a data disk: the node runs ephemeral (state in a tmpfs).
    #[arg(long)]
    no_data_disk: bool,
    /// Attach a disk image as a virtio disk (qcow2 if named *.qcow2, else raw). Repeatable.
    #[arg(long = "disk", value_name = "PATH")]
    disks: Vec<PathBuf>,
    /// Append a parameter to the kernel command line. Repeatable.
    #[arg(long = "append", value_name = "PARAM")]
    append: Vec<String>,
    /// Per-node config (TOML, docs/interfaces.md "Per-node config"), e.g. registries
    /// this node may pull from; checked here, handed to the guest at boot.
    #[arg(long, value_name = "FILE")]
    node_config: Option<PathBuf>,
    /// Owner directory whose ca.crt the node is given as its owner CA (`dbg owner
    /// init` fills it) [default: $XDG_CONFIG_HOME/cairn/owner, else
    /// ~/.config/cairn/owner]. A node config's own [owner] wins.
    #[arg(long, value_name = "DIR", env = cairn_dbg::owner::OWNER_DIR_ENV)]
    owner_dir: Option<PathBuf>,
    /// Give the node no owner CA from the host (ignores --owner-dir).
    #[arg(long)]
    no_owner: bool,
    /// Add a second NIC (the guest's eth1) on the cluster segment GROUP:PORT, a
    /// multicast group on the host's loopback that every node of one cluster joins
    /// (e.g. 239.255.10.1:47000). The node config's [cluster] gives it its address.
    #[arg(long, value_name = "GROUP:PORT", value_parser = ClusterNic::parse_segment)]
    cluster_net: Option<std::net::SocketAddrV4>,
    /// The cluster NIC's MAC address [default: 52:54:00 and a hash of the state dir].
    #[arg(long, value_name = "MAC", requires = "cluster_net")]
    mac: Option<Mac>,
}

pub fn run(args: RunArgs) -> Result<ExitCode, CommandError> {
    let settings = args.node_config.as_deref().map(read_settings).transpose()?;
    let settings = with_owner(settings, &args)?;
    let image = Image::open(&dir_or_default(args.image_dir.clone(), DEFAULT_IMAGE_DIR))?;
    let accel = match args.accel {
        AccelChoice::Auto => {
            let probe = accel::probe_cached(&image.kernel);
            tracing::info!(accel = %probe.accel, reason = %probe.reason, "accel auto");
            probe.accel
        }
        choice => accel::resolve(choice, &image.kernel),
    };
    let state_dir = dir_or_default(args.state_dir.clone(), DEFAULT_STATE_DIR);
    let mut config = NodeConfig::new(image, accel, &state_dir);
    config.memory_mib = args.memory;
    config.cpus = args.cpus;
    config.forwards = args.forwards.clone();
    config.data_disk = match (args.no_data_disk, &args.data_disk) {
        (true, _) => None,
        (false, path) => Some(DataDisk {
            path: path
                .clone()
                .unwrap_or_else(|| state_dir.join(DataDisk::FILE_NAME)),
            size_bytes: args.data_disk_size << 30,
        }),
    };
    config.disks = args.disks.iter().map(|path| disk(path.clone())).collect();
    config.extra_cmdline = args.append.clone();
    config.cluster_nic = args.cluster_net.map(|segment| ClusterNic {
        segment,
        mac: (args.mac).unwrap_or_else(|| {
            let absolute = std::path::absolute(&state_dir).unwrap_or_else(|_| state_dir.clone());
            Mac::derived(absolute.as_os_str().as_bytes())
        }),
    });
    config.settings = settings;
    let ready_timeout = Duration::from_secs(args.ready_timeout);
    if args.detach {
        config.mode = SpawnMode::Detached;
        detached(&config, ready_timeout)
    } else {
        let options = AttachOptions {
            ready_timeout,
            stop_timeout: Duration::from_secs(args.stop_timeout),
        };
        foreground(&config, options)
    }
}

/// `settings` with the host's owner CA unless `--no-owner` or the node config names
/// its own (`cairn_qemu::owner`); says which one the node gets.
fn with_owner(
    settings: Option<Settings>,
    args: &RunArgs,
) -> Result<Option<Settings>, CommandError> {
    let dir = owner::dir(args.owner_dir.clone(), args.no_owner);
    let (settings, choice) =
        owner::apply(settings, args.no_owner, dir.as_deref()).map_err(CommandError::Owner)?;
    tracing::info!("{}", choice.describe());
    Ok(settings)
}

/// The node config at `path`, checked as the agent will check it.
fn read_settings(path: &Path) -> Result<Settings, CommandError> {
    let error = |problem: String| CommandError::NodeConfig {
        path: path.to_owned(),
        problem,
    };
    let text = std::fs::read_to_string(path).map_err(|err| error(err.to_string()))?;
    Settings::parse(&text).map_err(|err| error(err.to_string()))
}

fn disk(path: PathBuf) -> Disk {
    let qcow2 = path.extension().is_some_and(|ext| ext == "qcow2");
    let format = if qcow2 {
        DiskFormat::Qcow2
    } else {
        DiskFormat::Raw
    };
    Disk {
        path,
        format,
        read_only: false,
    }
}

fn foreground(config: &NodeConfig, options: AttachOptions) -> Result<ExitCode, CommandError> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).map_err(CommandError::Signals)?;
    }
    let mut node = Node::start(config).map_err(CommandError::Start)?;
    let mut stdout = io::stdout();
    let exited = attach::supervise(&mut node, options, &stop, &mut stdout, |node, ready| {
        tracing::info!(
            node_id = %ready.node_id,
            "node ready; stop it with ctrl-c or `cairn-qemu stop --state-dir {}`",
            display_path(node.state().root())
        );
    })
    .map_err(CommandError::Attach)?;
    Ok(match exited.info {
        Some(info) => {
            tracing::info!(action = ?info.action, code = info.code, reason = %info.reason, "guest exited");
            exit_code(info.code)
        }
        None => {
            let stderr = cairn_qemu::console::tail(&node.state().qemu_log(), 10);
            tracing::warn!(status = %exited.status, "qemu ended without a CAIRN_EXIT line");
            if !stderr.trim().is_empty() {
                eprintln!("--- qemu stderr ---\n{stderr}");
            }
            ExitCode::FAILURE
        }
    })
}

/// The guest's code as a process exit code; codes outside 0..=255 become 1, never 0.
fn exit_code(code: i32) -> ExitCode {
    match u8::try_from(code) {
        Ok(code) => ExitCode::from(code),
        Err(_) => ExitCode::FAILURE,
    }
}

fn detached(config: &NodeConfig, ready_timeout: Duration) -> Result<ExitCode, CommandError> {
    let mut node = Node::start(config).map_err(CommandError::Start)?;
    // On error the node drops here: QEMU is killed and its state files cleared.
    let ready = node
        .wait_ready(ready_timeout)
        .map_err(CommandError::NotReady)?;
    let record = node.detach();
    super::watch::start_watcher(&StateDir::new(&config.state_dir));
    print_reachability(&record, &ready, config);
    Ok(ExitCode::SUCCESS)
}

fn print_reachability(record: &NodeRecord, ready: &ReadyInfo, config: &NodeConfig) {
    let state_dir = display_path(&config.state_dir);
    println!(
        "node {} is ready ({}, qemu pid {})",
        ready.node_id, record.accel, record.pid
    );
    println!("  hostname:    {}", ready.hostname);
    println!("  console log: {}", display_path(&record.console_log));
    println!("  state dir:   {state_dir} (node.json, qmp.sock)");
    for forward in &record.forwards {
        println!(
            "  forward:     127.0.0.1:{} -> guest port {}",
            forward.host, forward.guest
        );
    }
    use cairn_api::names::api;
    let serves =
        |name: &str| (ready.apis.as_ref()).is_none_or(|apis| apis.iter().any(|a| a == name));
    if let Some(endpoint) = record
        .debug_endpoint
        .as_ref()
        .filter(|_| serves(api::DEBUG))
    {
        println!("  debug:       {endpoint} (CAIRN_DEBUG_ENDPOINT)");
    }
    if let Some(endpoint) = &record.api_endpoint {
        println!("  apiserver:   {endpoint} (CAIRN_API_ENDPOINT; `dbg kubectl get nodes`)");
    }
    if let Some(endpoint) = record
        .node_api_endpoint
        .as_ref()
        .filter(|_| serves(api::NODE))
    {
        println!("  node API:    {endpoint} (the owner's, mTLS)");
    }
    if ready.apis.as_ref().is_some_and(Vec::is_empty) {
        println!(
            "  no API:      this node has no debug service (a production image) and no \
             owner, so nobody can operate it: `dbg owner init`, then stop and start it"
        );
    }
    println!("  stop it:     cairn-qemu stop --state-dir {state_dir}");
}
