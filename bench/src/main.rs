//! `cairn-bench`: parses the command line and runs one benchmark, or all of them, from
//! the `cairn_bench` library; prints where the results went, or the error chain.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cairn_bench::{
    all, assembly, boot_ab, churn, cluster, debug_api, error, go_build, image_size, images,
    profile_boot, rebuild, recovery, services, summary, timeline, Bench,
};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cairn-bench",
    about = "Benchmarks of cairn against the tools users would otherwise pick"
)]
struct Cli {
    /// The image to boot and measure.
    #[arg(long, env = "CAIRN_IMAGE_DIR", default_value = "build/image")]
    image_dir: PathBuf,
    /// The config that image was built from.
    #[arg(long, env = "CAIRN_CONFIG", default_value = "image/cairn.toml")]
    config: PathBuf,
    /// Where results go; RESULTS.md goes beside it.
    #[arg(long, default_value = "bench/results")]
    results: PathBuf,
    /// Scratch kept between runs: peer tools, payloads, outputs (default:
    /// $CAIRN_CACHE/bench-tools).
    #[arg(long, env = "CAIRN_BENCH_WORK")]
    work: Option<PathBuf>,
    /// auto (TCG, and KVM too if the probe passes), kvm or tcg.
    #[arg(long, default_value = "auto")]
    accel: cairn_qemu::AccelChoice,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every benchmark, then RESULTS.md (what `make bench` runs).
    All {
        #[arg(long, default_value_t = 5)]
        boots: usize,
        #[arg(long, default_value = "node-ready")]
        until: String,
        #[arg(long, default_value_t = 3)]
        assembly_runs: usize,
        #[arg(long, default_value_t = 2)]
        rebuild_runs: usize,
        #[arg(long, default_value_t = 600)]
        soak_seconds: u64,
        #[arg(long, default_value_t = 20)]
        debug_rounds: usize,
        /// Also build the Go components with an empty Go build cache.
        #[arg(long)]
        go_cold: bool,
    },
    /// Boot several times against the floor; record when each condition became true.
    BootTimeline {
        #[arg(long, default_value_t = 5)]
        boots: usize,
        /// The condition that ends a boot's measurement.
        #[arg(long, default_value = "node-ready")]
        until: String,
        /// Then create a pod and time it to Running.
        #[arg(long)]
        first_pod: bool,
    },
    /// Boot the image (A) and another one (B) in alternation; per-round differences.
    BootAb {
        /// The other image's directory (B), built as its own release image.
        #[arg(long)]
        against: PathBuf,
        /// Boots of each image.
        #[arg(long, default_value_t = 5)]
        boots: usize,
        /// The condition that ends a boot's measurement.
        #[arg(long, default_value = "node-ready")]
        until: String,
    },
    /// The same payload assembled by cairn, dracut and mkinitramfs.
    Assembly {
        /// Runs per tool, setting and temperature.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// The make targets' Cargo builds three times over: what compiles after the first.
    Churn {
        /// Fail when anything compiles after the first pass (`make test-churn`).
        #[arg(long)]
        check: bool,
    },
    /// `make image` when nothing changed and when only the agent changed.
    Rebuild {
        #[arg(long, default_value_t = 2)]
        runs: usize,
    },
    /// Agent and component RSS and CPU after boot and after an idle soak.
    Footprint {
        #[arg(long, default_value_t = 600)]
        soak_seconds: u64,
    },
    /// Image size by component (uncompressed and compressed), file and binary counts.
    ImageSize,
    /// Build time of the Go components (third_party/build.sh).
    GoBuild {
        /// Also build with an empty Go build cache (Kubernetes: several minutes).
        #[arg(long)]
        cold: bool,
    },
    /// Latency of a 1000-line log tail and of a followed line, on one node.
    DebugApi {
        #[arg(long, default_value_t = 20)]
        rounds: usize,
    },
    /// One profiled boot: Go init traces, the apiserver's readyz checks and CPU profile.
    ProfileBoot,
    /// Time back to node Ready after each component's SIGKILL, a clean reboot and a
    /// hard power-off.
    Recovery,
    /// A new Service: `kubectl apply` to the first request a pod gets answered by name.
    Services {
        #[arg(long, default_value_t = 5)]
        services: usize,
    },
    /// A ~100 MB image pulled from a registry on the host vs loaded with
    /// `dbg load-image`, seconds and MB/s.
    Images {
        /// Runs of each (a new image each).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// MB (10^6 bytes) of the layer each image adds to the toolbox image.
        #[arg(long, default_value_t = 100)]
        layer_mb: u64,
    },
    /// `cairn-qemu cluster start` to every Node Ready for each worker count; on the
    /// first cluster each node's footprint after an idle soak, then pod-to-pod
    /// latency and throughput on one node and across two.
    Cluster {
        /// Worker counts to start clusters with, one after the other.
        #[arg(long, value_delimiter = ',', default_values_t = [1, 2])]
        workers: Vec<usize>,
        #[arg(long, default_value_t = 120)]
        soak_seconds: u64,
    },
    /// Regenerate RESULTS.md from the results directory.
    Summary,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let bench = cli.bench();
    let result = match cli.command {
        Command::All {
            boots,
            until,
            assembly_runs,
            rebuild_runs,
            soak_seconds,
            debug_rounds,
            go_cold,
        } => {
            let options = all::Options {
                boots,
                until,
                assembly_runs,
                rebuild_runs,
                soak: Duration::from_secs(soak_seconds),
                debug_rounds,
                go_cold,
            };
            all::run(&bench, &options)
        }
        Command::BootTimeline {
            boots,
            until,
            first_pod,
        } => timeline::run(&bench, boots, &until, first_pod),
        Command::BootAb {
            against,
            boots,
            until,
        } => boot_ab::run(&bench, &against, boots, &until),
        Command::Assembly { runs } => assembly::run(&bench, runs),
        Command::Churn { check } => churn::run(&bench, check),
        Command::Rebuild { runs } => rebuild::run(&bench, runs),
        Command::Footprint { soak_seconds } => {
            cairn_bench::footprint::run(&bench, Duration::from_secs(soak_seconds))
        }
        Command::ImageSize => image_size::run(&bench),
        Command::GoBuild { cold } => go_build::run(&bench, cold),
        Command::DebugApi { rounds } => debug_api::run(&bench, rounds),
        Command::ProfileBoot => profile_boot::run(&bench),
        Command::Recovery => recovery::run(&bench),
        Command::Services { services: count } => services::run(&bench, count),
        Command::Images { runs, layer_mb } => images::run(&bench, runs, layer_mb),
        Command::Cluster {
            workers,
            soak_seconds,
        } => cluster::run(&bench, &workers, Duration::from_secs(soak_seconds)),
        Command::Summary => summary::write(&bench.results, &[]),
    };
    match result {
        Ok(path) => {
            println!("results written to {}", path.display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("cairn-bench: {}", error::chain(&err));
            ExitCode::FAILURE
        }
    }
}

impl Cli {
    fn bench(&self) -> Bench {
        let work = self.work.clone().unwrap_or_else(|| {
            let cache = std::env::var_os("CAIRN_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                        .join(".cache/cairn")
                });
            cache.join("bench-tools")
        });
        Bench {
            image_dir: self.image_dir.clone(),
            config: self.config.clone(),
            results: self.results.clone(),
            work,
            accel: self.accel,
        }
    }
}
