//! `cairn-bench`: measures booted cairn nodes and writes the figures to `bench/results/`.
//!
//! Benchmarks are not tests: they never fail on a number, only when a node cannot be
//! measured at all. Each writes a Markdown summary and the raw JSON beside it.

mod debug_api;
mod first_pod;
mod go_build;
mod image_size;
mod node;
mod report;
mod stats;
mod timeline;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cairn-bench", about = "Benchmarks of cairn nodes")]
struct Cli {
    /// The image to boot.
    #[arg(long, env = "CAIRN_IMAGE_DIR", default_value = "build/image")]
    image_dir: PathBuf,
    /// Where results go.
    #[arg(long, default_value = "bench/results")]
    results: PathBuf,
    /// auto, kvm or tcg.
    #[arg(long, default_value = "auto")]
    accel: cairn_qemu::AccelChoice,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Boot several times; record when each condition first became true.
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
    /// Image size by component, file and binary counts, from the build manifest.
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::BootTimeline {
            boots,
            until,
            first_pod,
        } => timeline::run(&cli.bench(), *boots, until, *first_pod),
        Command::ImageSize => image_size::run(&cli.bench()),
        Command::GoBuild { cold } => go_build::run(&cli.bench(), *cold),
        Command::DebugApi { rounds } => debug_api::run(&cli.bench(), *rounds),
    };
    match result {
        Ok(path) => {
            println!("results written to {}", path.display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("cairn-bench: {}", cairn_qemu::node::error_chain(&*err));
            ExitCode::FAILURE
        }
    }
}

impl Cli {
    fn bench(&self) -> node::Bench {
        node::Bench {
            image_dir: self.image_dir.clone(),
            results: self.results.clone(),
            accel: self.accel,
        }
    }
}
