//! Assembling the image: the build pipeline as one linear sequence of named steps.
//!
//! Everything to put in the initramfs is first planned in a [`Plan`] (image path ->
//! content + component), so conflicts are found before anything is written and the
//! manifest is derived from the same data that is archived. The output directory is
//! written beside its final place and swapped in with `renameat2(RENAME_EXCHANGE)`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use cairn_initramfs as cpio;

use crate::cargo::{self, CargoError};
use crate::config::{Component, CompressionKind, Config, ConfigError, ContainerImage, Source};
use crate::deb::{Deb, DebCache, DebError};
use crate::elf::{self, ElfError};
use crate::gobuild::{self, GoError};
use crate::manifest::{self, ContainerImageInfo, FileInfo, Manifest, ModuleInfo, SourceInfo};
use crate::modules::{KernelTree, ModuleError};
use crate::oci::{self, LayerEntry};
use crate::osrelease::{self, BuildInfo};
use crate::progress::Progress;

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
}

/// Content of one planned initramfs entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Content {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    CharDevice(u32, u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Planned {
    mode: u32,
    content: Content,
    component: String,
}

/// Everything going into the initramfs, keyed by absolute image path.
#[derive(Debug, Default)]
struct Plan {
    entries: BTreeMap<String, Planned>,
    sources: Vec<SourceInfo>,
    images: Vec<ContainerImageInfo>,
}

impl Plan {
    fn add(
        &mut self,
        path: &str,
        mode: u32,
        content: Content,
        component: &str,
    ) -> Result<(), BuildError> {
        let planned = Planned {
            mode,
            content,
            component: component.to_owned(),
        };
        match self.entries.get(path) {
            Some(existing) if existing.content == planned.content => Ok(()),
            Some(existing) => Err(BuildError::Conflict {
                path: path.to_owned(),
                first: existing.component.clone(),
                second: component.to_owned(),
            }),
            None => {
                self.entries.insert(path.to_owned(), planned);
                Ok(())
            }
        }
    }

    fn add_host_file(
        &mut self,
        path: &str,
        host: &Path,
        mode: u32,
        component: &str,
    ) -> Result<(), BuildError> {
        let data = fs::read(host).map_err(|source| BuildError::ReadInput {
            component: component.to_owned(),
            path: host.to_owned(),
            source,
        })?;
        self.add(path, mode, Content::File(data), component)
    }

    fn add_deb_source(&mut self, component: &str, deb: &Deb) {
        self.sources.push(SourceInfo {
            component: component.to_owned(),
            kind: "deb".to_owned(),
            name: deb.control.package.clone(),
            version: Some(deb.control.version.clone()),
            sha256: deb.sha256.clone(),
        });
    }
}

/// Builds the image described by `options` and returns its manifest.
pub fn build(options: &Options) -> Result<Manifest, BuildError> {
    let mut progress = Progress::new(8);
    progress.step("reading config");
    let config = Config::load(&options.config)?;
    let workspace = workspace_root();
    let info = BuildInfo::detect(&workspace, options.source_date_epoch);
    let debs = DebCache::new(options.cache.join("debs"));
    debs.resolve_ahead(deb_specs(&config));
    let mut plan = Plan::default();
    add_base(&mut plan, &config, &info)?;

    progress.step("fetching the kernel");
    let (kernel_deb, kernel) = fetch_kernel(&debs, &config, &mut plan)?;

    progress.step("building and collecting components");
    let inputs = Inputs {
        workspace: &workspace,
        config_dir: options.config.parent().unwrap_or(Path::new(".")),
        debs: &debs,
        go_out: options.cache.join("go-out"),
        go_built: std::cell::OnceCell::new(),
    };
    add_components(&mut plan, &config.components, &inputs, &progress)?;

    progress.step("assembling container images");
    add_container_images(
        &mut plan,
        &config.container_images,
        &inputs,
        &info,
        &progress,
    )?;

    progress.step("resolving shared libraries");
    add_libraries(&mut plan, &config, &debs)?;

    progress.step("resolving kernel modules");
    let (modules, builtin) = add_modules(&mut plan, &config, &kernel)?;
    let content_digest = add_build_json(&mut plan, &info)?;

    progress.step("writing the initramfs");
    let archive = write_archive(&plan, &config, info.source_date_epoch)?;
    let vmlinuz = fs::read(kernel.vmlinuz()).map_err(|source| BuildError::ReadInput {
        component: "kernel".into(),
        path: kernel.vmlinuz(),
        source,
    })?;

    progress.step("writing the image directory");
    let manifest = manifest_for(
        &plan,
        &config,
        &info,
        &kernel_deb,
        &kernel,
        &vmlinuz,
        &archive,
        modules,
        builtin,
        content_digest,
    );
    write_output(
        &options.out,
        &vmlinuz,
        &archive,
        &config.kernel.cmdline,
        &manifest,
    )?;
    progress.finish();
    Ok(manifest)
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

/// Mount points, the console node the kernel opens for PID 1, and os-release.
fn add_base(plan: &mut Plan, config: &Config, info: &BuildInfo) -> Result<(), BuildError> {
    for dir in [
        "/dev",
        "/etc",
        "/etc/cairn",
        "/proc",
        "/run",
        "/sys",
        "/tmp",
        "/var",
    ] {
        let mode = if dir == "/tmp" { 0o1777 } else { 0o755 };
        plan.add(dir, mode, Content::Dir, "base")?;
    }
    plan.add("/dev/console", 0o600, Content::CharDevice(5, 1), "base")?;
    let os_release = osrelease::render(&config.os_release, info);
    plan.add(
        "/etc/os-release",
        0o644,
        Content::File(os_release.into_bytes()),
        "os-release",
    )
}

/// Every Debian package the config names, for [`DebCache::resolve_ahead`].
fn deb_specs(config: &Config) -> Vec<(&str, Option<&str>)> {
    let kernel = (
        config.kernel.package.as_str(),
        config.kernel.version.as_deref(),
    );
    let image_components = config.container_images.iter().flat_map(|i| &i.components);
    let components = config
        .components
        .iter()
        .chain(image_components)
        .filter_map(|component| match component.source() {
            Some(Source::Deb(source)) => Some((source.package.as_str(), source.version.as_deref())),
            _ => None,
        });
    let libraries = config.libraries.packages.iter().map(|p| (p.as_str(), None));
    std::iter::once(kernel)
        .chain(components)
        .chain(libraries)
        .collect()
}

fn fetch_kernel(
    debs: &DebCache,
    config: &Config,
    plan: &mut Plan,
) -> Result<(Deb, KernelTree), BuildError> {
    let deb = debs.fetch_kernel(&config.kernel.package, config.kernel.version.as_deref())?;
    plan.add_deb_source("kernel", &deb);
    let root = debs.unpacked(&deb)?;
    let tree = KernelTree::open(&root).map_err(|source| BuildError::NoKernel {
        package: deb.control.package.clone(),
        source,
    })?;
    Ok((deb, tree))
}

/// Where component sources come from during one build.
struct Inputs<'a> {
    workspace: &'a Path,
    config_dir: &'a Path,
    debs: &'a DebCache,
    go_out: PathBuf,
    /// Set once `third_party/build.sh` has run in this build.
    go_built: std::cell::OnceCell<PathBuf>,
}

impl Inputs<'_> {
    /// The Go output directory, running the Go build the first time it is asked for.
    fn go_out(&self) -> Result<&Path, BuildError> {
        if let Some(out) = self.go_built.get() {
            return Ok(out);
        }
        let out = gobuild::build(self.workspace, &self.go_out)?;
        Ok(self.go_built.get_or_init(|| out))
    }
}

fn add_components(
    plan: &mut Plan,
    components: &[Component],
    inputs: &Inputs,
    progress: &Progress,
) -> Result<(), BuildError> {
    for component in components {
        progress.detail(&component.name);
        add_component(plan, component, inputs)?;
        for (path, target) in &component.symlinks {
            plan.add(
                path,
                0o777,
                Content::Symlink(target.clone()),
                &component.name,
            )?;
        }
    }
    Ok(())
}

fn add_component(
    plan: &mut Plan,
    component: &Component,
    inputs: &Inputs,
) -> Result<(), BuildError> {
    let name = component.name.as_str();
    let install = component.install.as_deref().unwrap_or_default();
    match component.source().expect("validated: one source") {
        Source::Cargo(source) => {
            let binary =
                cargo::build(inputs.workspace, source).map_err(|source| BuildError::Cargo {
                    component: name.to_owned(),
                    source,
                })?;
            plan.add_host_file(install, &binary, 0o755, name)?;
            push_file_source(plan, name, "cargo", &source.package, install);
        }
        Source::File(file) => {
            plan.add_host_file(install, &inputs.config_dir.join(file), 0o755, name)?;
            push_file_source(plan, name, "file", &file.display().to_string(), install);
        }
        Source::Go(source) => {
            let host = inputs.go_out()?.join(&source.path);
            plan.add_host_file(install, &host, 0o755, name)?;
            push_file_source(plan, name, "go", &source.path, install);
        }
        Source::Deb(source) => {
            let deb = inputs
                .debs
                .fetch(&source.package, source.version.as_deref())?;
            plan.add_deb_source(name, &deb);
            let root = inputs.debs.unpacked(&deb)?;
            for file in &source.files {
                add_deb_file(plan, &root, file, name, &source.package)?;
            }
        }
    }
    Ok(())
}

/// Each image's components are planned on their own (they are not initramfs files),
/// turned into one layer and written as an OCI archive into the initramfs.
fn add_container_images(
    plan: &mut Plan,
    images: &[ContainerImage],
    inputs: &Inputs,
    info: &BuildInfo,
    progress: &Progress,
) -> Result<(), BuildError> {
    for image in images {
        let mut contents = Plan::default();
        add_components(&mut contents, &image.components, inputs, progress)?;
        let mut layer = BTreeMap::new();
        for (path, planned) in &contents.entries {
            let entry = match &planned.content {
                Content::Dir => LayerEntry::Dir { mode: planned.mode },
                Content::File(data) => {
                    check_static(image, path, data)?;
                    LayerEntry::File {
                        mode: planned.mode,
                        data: data.clone(),
                    }
                }
                Content::Symlink(target) => LayerEntry::Symlink {
                    target: target.clone(),
                },
                Content::CharDevice(..) => unreachable!("components plan no devices"),
            };
            layer.insert(path.clone(), entry);
        }
        let run = oci::RunConfig {
            entrypoint: image.entrypoint.clone(),
            cmd: image.cmd.clone(),
            env: image.env.clone(),
        };
        let archive = oci::write_image(&image.reference, &layer, &run, info.source_date_epoch)
            .map_err(|source| BuildError::ImageArchive {
                image: image.name.clone(),
                source,
            })?;
        let component = format!("image/{}", image.name);
        let path = image.archive_path();
        plan.sources
            .extend(contents.sources.into_iter().map(|mut s| {
                s.component = format!("{component}/{}", s.component);
                s
            }));
        plan.images.push(ContainerImageInfo {
            name: image.name.clone(),
            reference: image.reference.clone(),
            archive: path.clone(),
            archive_sha256: manifest::sha256_hex(&archive.bytes),
            manifest_digest: archive.manifest_digest,
            layer_digest: archive.layer_digest,
        });
        plan.add(&path, 0o644, Content::File(archive.bytes), &component)?;
    }
    Ok(())
}

/// A container has no loader or libraries of its own: refuse dynamic executables.
fn check_static(image: &ContainerImage, path: &str, data: &[u8]) -> Result<(), BuildError> {
    if !data.starts_with(b"\x7fELF") {
        return Ok(());
    }
    let interpreter = goblin::elf::Elf::parse(data)
        .ok()
        .and_then(|elf| elf.interpreter.map(str::to_owned));
    match interpreter {
        Some(interpreter) => Err(BuildError::DynamicInImage {
            image: image.name.clone(),
            path: path.to_owned(),
            interpreter,
        }),
        None => Ok(()),
    }
}

/// `/etc/cairn/build.json`: the os-release version fields and a digest over every
/// other initramfs entry, so the running node can name exactly what it booted (the
/// same value is in manifest.json). Added last, after everything it covers.
fn add_build_json(plan: &mut Plan, info: &BuildInfo) -> Result<String, BuildError> {
    let mut text = String::new();
    for (path, planned) in &plan.entries {
        let info = file_info(path, planned);
        let what = info.sha256.or(info.target).unwrap_or_default();
        text.push_str(&format!("{path} {} {} {what}\n", info.kind, info.mode));
    }
    let digest = format!("sha256:{}", manifest::sha256_hex(text.as_bytes()));
    let json = serde_json::json!({
        "version": info.version,
        "version_id": info.version_id,
        "build_id": info.build_id,
        "source_date_epoch": info.source_date_epoch,
        "content_digest": digest,
    });
    let mut bytes = serde_json::to_vec_pretty(&json).expect("json serializes");
    bytes.push(b'\n');
    plan.add(BUILD_JSON, 0o644, Content::File(bytes), "os-release")?;
    Ok(digest)
}

/// Records a built or repository file as a source, hashed as it is in the plan.
fn push_file_source(plan: &mut Plan, component: &str, kind: &str, name: &str, install: &str) {
    let sha256 = match &plan.entries[install].content {
        Content::File(data) => manifest::sha256_hex(data),
        _ => String::new(),
    };
    plan.sources.push(SourceInfo {
        component: component.to_owned(),
        kind: kind.to_owned(),
        name: name.to_owned(),
        version: None,
        sha256,
    });
}

/// A file of an unpacked package at its package path; symlinks stay symlinks.
fn add_deb_file(
    plan: &mut Plan,
    root: &Path,
    file: &str,
    component: &str,
    package: &str,
) -> Result<(), BuildError> {
    let host = root.join(file.trim_start_matches('/'));
    let not_found = || BuildError::NotInPackage {
        component: component.to_owned(),
        package: package.to_owned(),
        file: file.to_owned(),
    };
    let meta = fs::symlink_metadata(&host).map_err(|_| not_found())?;
    if meta.file_type().is_symlink() {
        let target = fs::read_link(&host).map_err(|_| not_found())?;
        return plan.add(
            file,
            0o777,
            Content::Symlink(target.display().to_string()),
            component,
        );
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o7777;
    if meta.is_dir() {
        return add_deb_dir(plan, root, file, mode, component, package);
    }
    if !meta.is_file() {
        return Err(not_found());
    }
    plan.add_host_file(file, &host, mode, component)
}

/// A package directory and everything below it (sorted, so the plan is the same on
/// every host), e.g. the xtables extensions that iptables dlopen(3)s by name.
fn add_deb_dir(
    plan: &mut Plan,
    root: &Path,
    dir: &str,
    mode: u32,
    component: &str,
    package: &str,
) -> Result<(), BuildError> {
    plan.add(dir, mode, Content::Dir, component)?;
    let host = root.join(dir.trim_start_matches('/'));
    let read_err = |source| BuildError::ReadInput {
        component: component.to_owned(),
        path: host.clone(),
        source,
    };
    let mut names: Vec<String> = fs::read_dir(&host)
        .map_err(read_err)?
        .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()
        .map_err(read_err)?;
    names.sort();
    for name in names {
        add_deb_file(plan, root, &format!("{dir}/{name}"), component, package)?;
    }
    Ok(())
}

/// Adds the interpreter and DT_NEEDED closure of every ELF file planned so far.
fn add_libraries(plan: &mut Plan, config: &Config, debs: &DebCache) -> Result<(), BuildError> {
    let mut roots = Vec::new();
    for package in &config.libraries.packages {
        let deb = debs.fetch(package, None)?;
        plan.add_deb_source("libraries", &deb);
        roots.push((debs.unpacked(&deb)?, deb.control.package.clone()));
    }
    let inputs: Vec<(String, Vec<u8>)> = plan
        .entries
        .iter()
        .filter_map(|(path, planned)| match &planned.content {
            Content::File(data) if needs_loader(data, planned.mode) => {
                Some((path.clone(), data.clone()))
            }
            _ => None,
        })
        .collect();
    for resolved in elf::closure(&inputs, &roots)? {
        match resolved.symlink_target {
            Some(target) => plan.add(
                &resolved.image_path,
                0o777,
                Content::Symlink(target),
                &resolved.component,
            )?,
            None => plan.add_host_file(
                &resolved.image_path,
                &resolved.host_path,
                0o755,
                &resolved.component,
            )?,
        }
    }
    Ok(())
}

/// Executables, and shared objects whatever their mode: plugins such as the xtables
/// extensions are 0644 and dlopen(3)ed, and their DT_NEEDED must be present too.
/// Kernel modules are ELF relocatable objects (`ET_REL`) and never loaded by ld.so.
fn needs_loader(data: &[u8], mode: u32) -> bool {
    const ET_DYN: u16 = 3;
    if !data.starts_with(b"\x7fELF") || data.len() < 18 {
        return false;
    }
    // e_type follows the 16-byte e_ident; x86_64 ELF is little-endian.
    let e_type = u16::from_le_bytes([data[16], data[17]]);
    mode & 0o111 != 0 || e_type == ET_DYN
}

/// Adds the module closure and `/etc/cairn/modules.load`.
fn add_modules(
    plan: &mut Plan,
    config: &Config,
    kernel: &KernelTree,
) -> Result<(Vec<ModuleInfo>, Vec<String>), BuildError> {
    let closure = kernel.closure(&config.kernel.modules)?;
    let mut list =
        String::from("# Written by cairn-image: load in this order (dependencies first).\n");
    let mut infos = Vec::new();
    for module in &closure.modules {
        let image_path = format!("/{}", module.path.display());
        plan.add_host_file(
            &image_path,
            &kernel.root().join(&module.path),
            0o644,
            "kernel",
        )?;
        list.push_str(&image_path);
        list.push('\n');
        infos.push(ModuleInfo {
            name: module.name.clone(),
            path: image_path,
        });
    }
    plan.add(
        MODULES_LOAD,
        0o644,
        Content::File(list.into_bytes()),
        "kernel",
    )?;
    Ok((infos, closure.builtin.clone()))
}

fn write_archive(plan: &Plan, config: &Config, mtime: u64) -> Result<Vec<u8>, BuildError> {
    let mut archive = cpio::Archive::new();
    for (path, planned) in &plan.entries {
        let result = match &planned.content {
            Content::Dir => archive.add_dir(path, planned.mode),
            Content::File(data) => archive.add_file(path, planned.mode, data.clone()),
            Content::Symlink(target) => archive.add_symlink(path, target),
            Content::CharDevice(major, minor) => {
                archive.add_char_device(path, planned.mode, *major, *minor)
            }
        };
        result.map_err(BuildError::Archive)?;
    }
    let compression = match (config.initramfs.compression, config.initramfs.level) {
        (CompressionKind::None, _) => cpio::Compression::None,
        (CompressionKind::Gzip, level) => cpio::Compression::Gzip {
            level: level.unwrap_or(6).unsigned_abs(),
        },
        (CompressionKind::Zstd, level) => cpio::Compression::Zstd {
            level: level.unwrap_or(3),
        },
    };
    // newc stores 32-bit times; clamp rather than wrap (year 2106 problem).
    let mtime = u32::try_from(mtime).unwrap_or(u32::MAX);
    let options = cpio::WriteOptions { mtime, compression };
    archive.to_bytes(&options).map_err(BuildError::Write)
}

#[allow(clippy::too_many_arguments)]
fn manifest_for(
    plan: &Plan,
    config: &Config,
    info: &BuildInfo,
    kernel_deb: &Deb,
    kernel: &KernelTree,
    vmlinuz: &[u8],
    archive: &[u8],
    modules: Vec<ModuleInfo>,
    builtin_modules: Vec<String>,
    content_digest: String,
) -> Manifest {
    let vmlinuz_sha256 = manifest::sha256_hex(vmlinuz);
    let initramfs_sha256 = manifest::sha256_hex(archive);
    let mut sources = plan.sources.clone();
    sources.sort();
    sources.dedup();
    Manifest {
        format: manifest::FORMAT,
        image_digest: manifest::image_digest(
            &vmlinuz_sha256,
            &initramfs_sha256,
            &config.kernel.cmdline,
        ),
        os_release: manifest::OsReleaseFields {
            version: info.version.clone(),
            version_id: info.version_id.clone(),
            build_id: info.build_id.clone(),
            source_date_epoch: info.source_date_epoch,
        },
        kernel: manifest::KernelInfo {
            package: kernel_deb.control.package.clone(),
            version: kernel_deb.control.version.clone(),
            release: kernel.release().to_owned(),
            vmlinuz_sha256,
        },
        cmdline: config.kernel.cmdline.clone(),
        initramfs: manifest::InitramfsInfo {
            file: "initramfs.img".into(),
            compression: format!("{:?}", config.initramfs.compression).to_lowercase(),
            size: archive.len() as u64,
            sha256: initramfs_sha256,
        },
        content_digest,
        sources,
        container_images: plan.images.clone(),
        modules,
        builtin_modules,
        files: plan
            .entries
            .iter()
            .map(|(path, planned)| file_info(path, planned))
            .collect(),
    }
}

fn file_info(path: &str, planned: &Planned) -> FileInfo {
    let (kind, size, sha256, target) = match &planned.content {
        Content::Dir => ("dir", 0, None, None),
        Content::File(data) => (
            "file",
            data.len() as u64,
            Some(manifest::sha256_hex(data)),
            None,
        ),
        Content::Symlink(target) => ("symlink", target.len() as u64, None, Some(target.clone())),
        Content::CharDevice(..) => ("char", 0, None, None),
    };
    FileInfo {
        path: path.to_owned(),
        kind: kind.to_owned(),
        mode: format!("{:04o}", planned.mode),
        size,
        sha256,
        target,
        component: planned.component.clone(),
    }
}

/// Writes the image directory beside `out` and swaps it into place.
fn write_output(
    out: &Path,
    vmlinuz: &[u8],
    initramfs: &[u8],
    cmdline: &str,
    manifest: &Manifest,
) -> Result<(), BuildError> {
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let write_err = |path: &Path| {
        let path = path.to_owned();
        move |source| BuildError::Output { path, source }
    };
    fs::create_dir_all(parent).map_err(write_err(parent))?;
    let staging = tempfile::Builder::new()
        .prefix(".cairn-image-")
        .tempdir_in(parent)
        .map_err(write_err(parent))?;
    let manifest_json = manifest.to_json();
    let files: [(&str, &[u8]); 4] = [
        ("vmlinuz", vmlinuz),
        ("initramfs.img", initramfs),
        ("cmdline", cmdline.as_bytes()),
        ("manifest.json", manifest_json.as_bytes()),
    ];
    for (name, bytes) in files {
        let path = staging.path().join(name);
        fs::write(&path, bytes).map_err(write_err(&path))?;
    }
    swap_into_place(staging, out).map_err(write_err(out))
}

/// Exchanges the staged directory with `out` atomically (or renames it there when
/// `out` does not exist yet); the old image is removed with the staging directory.
fn swap_into_place(staging: tempfile::TempDir, out: &Path) -> std::io::Result<()> {
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    if out.exists() {
        renameat2(
            AT_FDCWD,
            staging.path(),
            AT_FDCWD,
            out,
            RenameFlags::RENAME_EXCHANGE,
        )?;
        drop(staging);
    } else {
        fs::rename(staging.keep(), out)?;
    }
    Ok(())
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
