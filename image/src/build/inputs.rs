//! Components into the plan: each one's single source is built or read (a cargo or Go
//! binary, a repository file, files of a Debian package), and container images are
//! planned from their own components and archived whole.

use std::cell::{OnceCell, RefCell};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::fresh::Facts;
use super::plan::{Content, Plan};
use super::BuildError;
use crate::cargo;
use crate::config::{CargoSource, Component, ContainerImage, SingleFile, Source, Validated};
use crate::deb::DebCache;
use crate::gobuild;
use crate::manifest::{self, ContainerImageInfo};
use crate::oci::{self, LayerEntry};
use crate::osrelease::BuildInfo;
use crate::progress::Progress;

/// Where component sources come from during one build.
pub(super) struct Inputs<'a> {
    pub workspace: &'a Path,
    /// Repository (`file`) sources are relative to the config's directory.
    pub config_dir: &'a Path,
    pub debs: &'a DebCache,
    pub go_out: PathBuf,
    /// Set once `third_party/build.sh` has run in this build.
    pub go_built: OnceCell<PathBuf>,
    /// The Cargo profile for `cargo` sources.
    pub cargo_profile: &'a str,
    /// Executables Cargo built in this build, by their source: built once, whether
    /// the up-to-date check or the plan asks first.
    pub cargo_built: RefCell<BTreeMap<String, PathBuf>>,
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

    /// The executable Cargo builds for component `name`, building it the first time.
    fn cargo_binary(&self, name: &str, source: &CargoSource) -> Result<PathBuf, BuildError> {
        let key = format!("{source:?}");
        if let Some(built) = self.cargo_built.borrow().get(&key) {
            return Ok(built.clone());
        }
        let binary =
            cargo::build(self.workspace, source, self.cargo_profile).map_err(|source| {
                BuildError::Cargo {
                    component: name.to_owned(),
                    source,
                }
            })?;
        self.cargo_built.borrow_mut().insert(key, binary.clone());
        Ok(binary)
    }

    /// The host file a single-file component installs, and its source for the manifest.
    fn single_file(
        &self,
        name: &str,
        file: &SingleFile,
    ) -> Result<(PathBuf, (&'static str, String)), BuildError> {
        Ok(match file {
            SingleFile::Cargo(source) => (
                self.cargo_binary(name, source)?,
                ("cargo", source.package.clone()),
            ),
            SingleFile::Repo(path) => (
                self.config_dir.join(path),
                ("file", path.display().to_string()),
            ),
            SingleFile::Go(source) => (
                self.go_out()?.join(&source.path),
                ("go", source.path.clone()),
            ),
        })
    }
}

/// What an image built from `config` depends on, as cheap facts (see [`super::fresh`]):
/// Cargo and the Go script run their own up-to-date checks, built and repository files
/// are `stat`ed, Debian packages are named by their sha256.
pub(super) fn facts(
    config: &Validated,
    inputs: &Inputs,
    progress: &Progress,
) -> Result<Facts, BuildError> {
    let mut facts = Facts::default();
    let deb_fact = |facts: &mut Facts, key: String, deb: &crate::deb::Deb| {
        let c = &deb.control;
        facts.add(key, format!("{} {} {}", c.package, c.version, deb.sha256));
    };
    let kernel = &config.kernel;
    let deb = inputs
        .debs
        .fetch_kernel(&kernel.package, kernel.version.as_deref())?;
    deb_fact(&mut facts, "kernel".into(), &deb);
    for package in &config.libraries.packages {
        let deb = inputs.debs.fetch(package, None)?;
        deb_fact(&mut facts, format!("libraries/{package}"), &deb);
    }
    let images = config.container_images.iter().flat_map(|i| {
        i.components
            .iter()
            .map(move |c| (format!("image/{}/", i.name), c))
    });
    let components = config.components.iter().map(|c| (String::new(), c));
    for (prefix, component) in components.chain(images) {
        progress.detail(&component.name);
        let key = format!("component/{prefix}{}", component.name);
        match &component.source {
            Source::Single { file, .. } => {
                let (host, _) = inputs.single_file(&component.name, file)?;
                facts.add_file(key, &host)?;
            }
            Source::Deb(source) => {
                let deb = inputs
                    .debs
                    .fetch(&source.package, source.version.as_deref())?;
                deb_fact(&mut facts, key, &deb);
            }
        }
    }
    for registry in &config.registries {
        if let Some(ca) = &registry.ca_file {
            let key = format!("registry/{}/ca_file", registry.host);
            facts.add_file(key, &inputs.config_dir.join(ca))?;
        }
    }
    Ok(facts)
}

pub(super) fn add_components(
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
    match &component.source {
        Source::Single { install, file } => {
            let (host, source) = inputs.single_file(name, file)?;
            plan.add_single_file(install, &host, name, source)
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
            Ok(())
        }
    }
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

/// Each image's components are planned on their own (they are not initramfs files),
/// turned into one layer and written as an OCI archive into the initramfs.
pub(super) fn add_container_images(
    plan: &mut Plan,
    images: &[ContainerImage],
    inputs: &Inputs,
    info: &BuildInfo,
    progress: &Progress,
) -> Result<(), BuildError> {
    for image in images {
        let mut contents = Plan::default();
        add_components(&mut contents, &image.components, inputs, progress)?;
        let layer = layer_of(image, &contents)?;
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
        plan.add(
            &path,
            0o644,
            Content::File(archive.bytes.into()),
            &component,
        )?;
    }
    Ok(())
}

/// The image's single layer: its planned components, executables checked static.
fn layer_of(
    image: &ContainerImage,
    contents: &Plan,
) -> Result<BTreeMap<String, LayerEntry>, BuildError> {
    let mut layer = BTreeMap::new();
    for (path, planned) in &contents.entries {
        let entry = match &planned.content {
            Content::Dir => LayerEntry::Dir { mode: planned.mode },
            Content::File(data) => {
                check_static(image, path, data)?;
                LayerEntry::File {
                    mode: planned.mode,
                    data: data.to_vec(),
                }
            }
            Content::Symlink(target) => LayerEntry::Symlink {
                target: target.clone(),
            },
            Content::CharDevice(..) => unreachable!("components plan no devices"),
        };
        layer.insert(path.clone(), entry);
    }
    Ok(layer)
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
