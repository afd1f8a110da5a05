//! Assembling the image: the build pipeline as one linear sequence of named steps.
//!
//! Everything to put in the initramfs is first planned in a plan (image path ->
//! content + component), so conflicts are found before anything is written and the
//! manifest is derived from the same data that is archived. The steps live by what
//! they read: `inputs` builds or reads each component's one source and assembles
//! container images, `closure` adds what the planned files need (shared libraries,
//! kernel modules), and `output` writes the archive, the manifest and the image
//! directory, swapped in with `renameat2(RENAME_EXCHANGE)`.

use std::cell::{OnceCell, RefCell};
use std::fs;
use std::path::{Path, PathBuf};

use cairn_initramfs as cpio;
use sha2::Digest as _;

use crate::cargo::CargoError;
use crate::config::{ConfigError, Source, Validated};
use crate::deb::{Deb, DebCache, DebError};
use crate::elf::ElfError;
use crate::gobuild::GoError;
use crate::manifest::Manifest;
use crate::modules::{KernelTree, ModuleError};
use crate::osrelease::BuildInfo;
use crate::progress::Progress;

mod closure;
mod fresh;
mod inputs;
mod output;
mod plan;

use fresh::Freshness;
use inputs::Inputs;
use output::ManifestInputs;
use plan::Plan;

/// Where the agent finds its module list (docs/interfaces.md).
pub const MODULES_LOAD: &str = "/etc/cairn/modules.load";
/// Build facts for the agent's debug service (docs/interfaces.md).
pub const BUILD_JSON: &str = "/etc/cairn/build.json";

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Deb(#[from] DebError),
    #[error(transparent)]
    Elf(#[from] ElfError),
    #[error(transparent)]
    Module(#[from] ModuleError),
    #[error("component `{component}`")]
    Cargo {
        component: String,
        #[source]
        source: CargoError,
    },
    #[error("cannot build the go components")]
    Go(#[from] GoError),
    #[error("container image `{image}`: {path} is dynamically linked (interpreter {interpreter})")]
    DynamicInImage {
        image: String,
        path: String,
        interpreter: String,
    },
    #[error("container image `{image}`: cannot write its archive")]
    ImageArchive {
        image: String,
        #[source]
        source: std::io::Error,
    },
    #[error("component `{component}`: cannot read {}", path.display())]
    ReadInput {
        component: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("component `{component}`: file {file} is not in debian package `{package}`")]
    NotInPackage {
        component: String,
        package: String,
        file: String,
    },
    #[error("{path} is provided by both `{first}` and `{second}`")]
    Conflict {
        path: String,
        first: String,
        second: String,
    },
    #[error("kernel package `{package}` has no kernel")]
    NoKernel {
        package: String,
        #[source]
        source: ModuleError,
    },
    #[error("cannot add to the initramfs")]
    Archive(#[source] cpio::ArchiveError),
    #[error("cannot write the initramfs")]
    Write(#[source] cpio::WriteError),
    #[error("cannot write {}", path.display())]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read image {}", path.display())]
    Inspect {
        path: PathBuf,
        #[source]
        source: cpio::ReadError,
    },
}

/// What to build, from where, into where.
#[derive(Debug, Clone)]
pub struct Options {
    pub config: PathBuf,
    pub out: PathBuf,
    /// Holds `debs/` (downloaded packages and their unpacked trees).
    pub cache: PathBuf,
    pub source_date_epoch: Option<u64>,
    /// Assemble the image even when the one in `out` is current.
    pub force: bool,
    /// Cargo profile of the workspace's binaries ([`crate::cargo::RELEASE_PROFILE`]
    /// unless developing).
    pub cargo_profile: String,
}

/// Builds the image described by `options` and returns its manifest, or finds the
/// image in `options.out` current (see [`fresh`]) and returns that one's.
pub fn build(options: &Options) -> Result<Manifest, BuildError> {
    let _lock = fresh::lock(&options.out)?;
    let mut progress = Progress::new(9);
    progress.step("reading config");
    let config = Validated::load(&options.config)?;
    let workspace = workspace_root();
    let info = BuildInfo::detect(
        &workspace,
        options.source_date_epoch,
        &options.cargo_profile,
    );
    let debs = DebCache::new(options.cache.join("debs"));
    debs.resolve_ahead(deb_specs(&config));
    let inputs = Inputs {
        workspace: &workspace,
        config_dir: options.config.parent().unwrap_or(Path::new(".")),
        debs: &debs,
        go_out: options.cache.join("go-out"),
        go_built: OnceCell::new(),
        cargo_profile: &options.cargo_profile,
        cargo_built: RefCell::new(Default::default()),
    };

    progress.step("building components and checking what changed");
    let mut facts = inputs::facts(&config, &inputs, &progress)?;
    facts.add("builder", builder_fact());
    facts.add_digest("config", format!("{config:?}").as_bytes());
    facts.add_digest("build-info", format!("{info:?}").as_bytes());
    match (options.force, fresh::check(&options.out, &facts)) {
        (false, Freshness::Current) => {
            if let Some(manifest) = fresh::read_manifest(&options.out) {
                progress.finish();
                eprintln!(
                    "cairn-image: {} is up to date (no input changed since it was built)",
                    options.out.display()
                );
                return Ok(manifest);
            }
            eprintln!("cairn-image: building: the manifest in the image directory is unreadable");
        }
        (true, _) => eprintln!("cairn-image: building: --force"),
        (false, Freshness::Stale(why)) => eprintln!("cairn-image: building: {why}"),
    }
    let mut plan = Plan::default();
    plan::add_base(&mut plan, &config, &info)?;
    plan::add_registries(&mut plan, &config, &options.config)?;

    progress.step("fetching the kernel");
    let kernel = fetch_kernel(&debs, &config, &mut plan)?;

    progress.step("building and collecting components");
    inputs::add_components(&mut plan, &config.components, &inputs, &progress)?;

    progress.step("assembling container images");
    let images = &config.container_images;
    inputs::add_container_images(&mut plan, images, &inputs, &info, &progress)?;

    progress.step("resolving shared libraries");
    closure::add_libraries(&mut plan, &config, &debs)?;

    progress.step("resolving kernel modules");
    let modules = closure::add_modules(&mut plan, &config, &kernel.tree)?;
    let content_digest = plan::add_build_json(&mut plan, &info)?;

    progress.step("writing the initramfs");
    let initramfs = output::write_archive(&plan, &config, info.source_date_epoch)?;
    let vmlinuz_path = kernel.tree.vmlinuz();
    let vmlinuz = fs::read(&vmlinuz_path).map_err(|source| BuildError::ReadInput {
        component: "kernel".into(),
        path: vmlinuz_path,
        source,
    })?;

    progress.step("writing the image directory");
    let manifest = ManifestInputs {
        plan: &plan,
        config: &config,
        info: &info,
        kernel: &kernel,
        vmlinuz: &vmlinuz,
        initramfs: &initramfs,
        modules,
        content_digest,
    }
    .manifest();
    let cmdline = &config.kernel.cmdline;
    output::write_output(&options.out, &vmlinuz, &initramfs, cmdline, &manifest)?;
    // After the swap: killed before this, the new image has no facts and is rebuilt.
    fresh::record(&options.out, facts)?;
    progress.finish();
    Ok(manifest)
}

/// The builder itself is an input: another builder may assemble differently. By its
/// bytes, not its mtime: `cargo test` and `cargo run` link the same builder anew.
fn builder_fact() -> String {
    std::env::current_exe()
        .and_then(|exe| {
            let mut hasher = sha2::Sha256::new();
            std::io::copy(&mut fs::File::open(&exe)?, &mut hasher)?;
            Ok(format!("sha256 {}", hex::encode(hasher.finalize())))
        })
        // Unknown: a value no build recorded, so the image is assembled.
        .unwrap_or_else(|err| format!("unknown ({err}) {:?}", std::time::SystemTime::now()))
}

/// The Cargo workspace the builder runs in (cargo components are built there and
/// its git state versions the image): the nearest ancestor of the current directory
/// holding a `Cargo.lock`, else the current directory.
fn workspace_root() -> PathBuf {
    let dir = std::env::current_dir().unwrap_or_default();
    dir.ancestors()
        .find(|d| d.join("Cargo.lock").is_file())
        .map(Path::to_owned)
        .unwrap_or(dir)
}

/// Every Debian package the config names, for [`DebCache::resolve_ahead`].
fn deb_specs(config: &Validated) -> Vec<(&str, Option<&str>)> {
    let kernel = (
        config.kernel.package.as_str(),
        config.kernel.version.as_deref(),
    );
    let image_components = config.container_images.iter().flat_map(|i| &i.components);
    let components = config
        .components
        .iter()
        .chain(image_components)
        .filter_map(|component| match &component.source {
            Source::Deb(source) => Some((source.package.as_str(), source.version.as_deref())),
            Source::Single { .. } => None,
        });
    let libraries = config.libraries.packages.iter().map(|p| (p.as_str(), None));
    std::iter::once(kernel)
        .chain(components)
        .chain(libraries)
        .collect()
}

/// The kernel package (after following metapackages) and its unpacked tree.
struct Kernel {
    deb: Deb,
    tree: KernelTree,
}

fn fetch_kernel(
    debs: &DebCache,
    config: &Validated,
    plan: &mut Plan,
) -> Result<Kernel, BuildError> {
    let deb = debs.fetch_kernel(&config.kernel.package, config.kernel.version.as_deref())?;
    plan.add_deb_source("kernel", &deb);
    let root = debs.unpacked(&deb)?;
    let tree = KernelTree::open(&root).map_err(|source| BuildError::NoKernel {
        package: deb.control.package.clone(),
        source,
    })?;
    Ok(Kernel { deb, tree })
}

/// Lists an image directory's (or an initramfs file's) entries like `ls -l`.
pub fn inspect(image: &Path) -> Result<String, BuildError> {
    let path = if image.is_dir() {
        image.join("initramfs.img")
    } else {
        image.to_owned()
    };
    let bytes = fs::read(&path).map_err(|source| BuildError::ReadInput {
        component: "inspect".into(),
        path: path.clone(),
        source,
    })?;
    let entries = cpio::read(&bytes).map_err(|source| BuildError::Inspect { path, source })?;
    Ok(cpio::format_listing(&entries))
}

#[cfg(test)]
mod tests;
