//! `cairn-image`: builds and inspects cairn images. See the crate docs of `cairn_image`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cairn-image",
    version,
    about = "Build and inspect cairn node images"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build an image (kernel, initramfs, cmdline, manifest) from a config file.
    Build {
        /// The image config (TOML).
        #[arg(long, default_value = "image/cairn.toml")]
        config: PathBuf,
        /// Output directory; replaced as a whole only when the build succeeds.
        #[arg(long, default_value = "build/image")]
        out: PathBuf,
        /// Cache for downloaded and unpacked Debian packages.
        #[arg(long, env = "CAIRN_CACHE")]
        cache: Option<PathBuf>,
        /// Timestamp of every file in the image (default: the last commit's time).
        #[arg(long, env = "SOURCE_DATE_EPOCH")]
        source_date_epoch: Option<u64>,
        /// Assemble the image even when the one in the output directory is current
        /// (built by this builder from the same inputs, and untouched since).
        #[arg(long)]
        force: bool,
        /// Cargo profile of the workspace's binaries: `release` (benchmarks, CI, what
        /// ships) or `dev-image` (quick incremental rebuilds of the agent).
        #[arg(long, env = "CAIRN_CARGO_PROFILE", default_value = cairn_image::cargo::RELEASE_PROFILE)]
        cargo_profile: String,
    },
    /// List the files of an image's initramfs, like `ls -l`.
    Inspect {
        /// An image directory or an initramfs file.
        #[arg(default_value = "build/image")]
        image: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!(
                "cairn-image: error: {}",
                cairn_api::error_chain(err.as_ref())
            );
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Build {
            config,
            out,
            cache,
            source_date_epoch,
            force,
            cargo_profile,
        } => {
            let cache = cache.unwrap_or_else(default_cache);
            let options = cairn_image::build::Options {
                config,
                out,
                cache,
                source_date_epoch,
                force,
                cargo_profile,
            };
            let manifest = cairn_image::build::build(&options)?;
            println!("{} {}", manifest.image_digest, options.out.display());
        }
        Command::Inspect { image } => {
            print!("{}", cairn_image::build::inspect(&image)?);
        }
    }
    Ok(())
}

fn default_cache() -> PathBuf {
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/cairn")
}
