//! The declarative image config (TOML).
//!
//! Parsing and validation are separate steps, as in cloud-hypervisor's `config.rs`:
//! serde (with `deny_unknown_fields`) rejects unknown keys and wrong types and names
//! the key and line; [`Config::validate`] then checks what types cannot express and
//! names the offending field by its path (`component[1].install`). Every error also
//! names the config file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod extends;

/// A config error; always names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config {}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("config {}: `extends` {problem}", path.display())]
    Extends { path: PathBuf, problem: String },
    #[error("invalid config {}: field `{field}`: {problem}", path.display())]
    Field {
        path: PathBuf,
        field: String,
        problem: String,
    },
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub os_release: OsReleaseConfig,
    pub initramfs: InitramfsConfig,
    pub kernel: KernelConfig,
    pub libraries: LibrariesConfig,
    #[serde(rename = "component", default)]
    pub components: Vec<Component>,
    /// OCI images written as archives into the initramfs, for the agent to import.
    #[serde(rename = "container_image", default)]
    pub container_images: Vec<ContainerImage>,
}

/// The fixed os-release fields; the version fields are derived at build time.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OsReleaseConfig {
    pub name: String,
    pub id: String,
    pub pretty_name: String,
    pub image_id: String,
    pub home_url: String,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CompressionKind {
    Zstd,
    Gzip,
    None,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct InitramfsConfig {
    pub compression: CompressionKind,
    /// Compression level; defaults to 3 for zstd and 6 for gzip.
    pub level: Option<i32>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KernelConfig {
    /// Debian package holding `/boot/vmlinuz-*` and `/lib/modules/*` (or a metapackage
    /// depending on one).
    pub package: String,
    pub version: Option<String>,
    pub cmdline: String,
    #[serde(default)]
    pub modules: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LibrariesConfig {
    pub packages: Vec<String>,
}

/// One thing put into the image, from exactly one of `cargo`, `file`, `deb` or `go`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Component {
    pub name: String,
    /// Where a single-file source lands in the image (cargo, file and go sources).
    pub install: Option<String>,
    /// A binary of this Cargo workspace, built by the builder.
    pub cargo: Option<CargoSource>,
    /// A file in the repository, relative to the config file.
    pub file: Option<PathBuf>,
    /// Files taken from a Debian package, at their package paths.
    pub deb: Option<DebSource>,
    /// A binary built by `third_party/build.sh` (containerd, runc, CNI plugins).
    pub go: Option<GoSource>,
    /// Symlinks installed with the component (image path -> target), e.g. the
    /// names a package's maintainer scripts would create with update-alternatives.
    #[serde(default)]
    pub symlinks: BTreeMap<String, String>,
}

/// A component's source, once validation has checked there is exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source<'a> {
    Cargo(&'a CargoSource),
    File(&'a Path),
    Deb(&'a DebSource),
    Go(&'a GoSource),
}

impl Component {
    /// The single source of this component, or `None` if it names zero or several.
    pub fn source(&self) -> Option<Source<'_>> {
        match (&self.cargo, &self.file, &self.deb, &self.go) {
            (Some(cargo), None, None, None) => Some(Source::Cargo(cargo)),
            (None, Some(file), None, None) => Some(Source::File(file)),
            (None, None, Some(deb), None) => Some(Source::Deb(deb)),
            (None, None, None, Some(go)) => Some(Source::Go(go)),
            _ => None,
        }
    }
}

/// A binary from the Go build output directory (`<cache>/go-out`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GoSource {
    /// Relative to the output directory, e.g. `bin/containerd` or `cni/bin/bridge`.
    pub path: String,
}

/// An OCI image the builder assembles from components (one layer) and writes as an
/// OCI image layout archive to [`ContainerImage::archive_path`].
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ContainerImage {
    /// Names the archive: `/usr/share/cairn/images/<name>.tar`.
    pub name: String,
    /// The full reference containerd lists, e.g. `localhost/cairn/pause:1`.
    pub reference: String,
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub cmd: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    /// The files of the image's single layer; executables must be static.
    #[serde(rename = "component")]
    pub components: Vec<Component>,
}

/// Where preloaded image archives live in the initramfs (docs/interfaces.md).
pub const IMAGES_DIR: &str = "/usr/share/cairn/images";

impl ContainerImage {
    pub fn archive_path(&self) -> String {
        format!("{IMAGES_DIR}/{}.tar", self.name)
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CargoSource {
    pub package: String,
    pub bin: String,
    #[serde(default)]
    pub features: Vec<String>,
    /// Link statically (`+crt-static` for an explicit `--target`): for container
    /// images, which have no loader or libc of their own.
    #[serde(default, rename = "static")]
    pub static_link: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DebSource {
    pub package: String,
    pub version: Option<String>,
    /// Absolute paths inside the package to include; a directory is included whole.
    pub files: Vec<String>,
}

impl Config {
    /// Reads, parses and validates the config at `path`.
    ///
    /// A config may start with `extends = "other.toml"` (relative to itself): the other
    /// file is loaded first and this one merged over it (see [`extends`]).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let layered = extends::load_layered(path)?;
        let config = Config::deserialize(layered.table).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
        match config.validate() {
            Ok(()) => Ok(config),
            Err((field, mut problem)) => {
                if let Some((name, variant, base)) = config
                    .component_of_field(&field)
                    .and_then(|name| layered.added_components.iter().find(|a| a.0 == name))
                {
                    problem.push_str(&format!(
                        " (`{name}` is not a component of {}, so {} adds it as a new one: \
                         is the name misspelt?)",
                        base.display(),
                        variant.display()
                    ));
                }
                Err(ConfigError::Field {
                    path: path.to_owned(),
                    field,
                    problem,
                })
            }
        }
    }

    /// The name of the top-level component a field path such as `component[3].install`
    /// points into.
    fn component_of_field(&self, field: &str) -> Option<&str> {
        let index = field.strip_prefix("component[")?.split_once(']')?.0;
        let component = self.components.get(index.parse::<usize>().ok()?)?;
        Some(&component.name)
    }

    /// Parses and validates config text; `path` is only used in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
        config.validated(path)
    }

    fn validated(self, path: &Path) -> Result<Self, ConfigError> {
        let config = self;
        config
            .validate()
            .map_err(|(field, problem)| ConfigError::Field {
                path: path.to_owned(),
                field,
                problem,
            })?;
        Ok(config)
    }

    /// Checks what the types cannot; returns the field path and the problem.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let os = &self.os_release;
        check_os_release_id("os_release.id", &os.id)?;
        check_os_release_id("os_release.image_id", &os.image_id)?;
        check_nonempty("os_release.name", &os.name)?;
        check_nonempty("os_release.pretty_name", &os.pretty_name)?;
        if !os.home_url.starts_with("https://") && !os.home_url.starts_with("http://") {
            return Err(field("os_release.home_url", "must be an http(s) URL"));
        }
        self.validate_initramfs()?;
        check_package("kernel.package", &self.kernel.package)?;
        check_nonempty("kernel.cmdline", &self.kernel.cmdline)?;
        for (i, module) in self.kernel.modules.iter().enumerate() {
            check_module_name(&format!("kernel.modules[{i}]"), module)?;
        }
        if self.libraries.packages.is_empty() {
            return Err(field(
                "libraries.packages",
                "must name at least one package",
            ));
        }
        for (i, package) in self.libraries.packages.iter().enumerate() {
            check_package(&format!("libraries.packages[{i}]"), package)?;
        }
        let mut installs = BTreeSet::new();
        validate_components(&self.components, "component", &mut installs)?;
        if !installs.contains("/init") {
            return Err(field(
                "component",
                "no component installs `/init` (the agent): the image could not boot",
            ));
        }
        self.validate_container_images()
    }

    fn validate_initramfs(&self) -> Result<(), (String, String)> {
        let range = match self.initramfs.compression {
            CompressionKind::Zstd => 1..=19,
            CompressionKind::Gzip => 0..=9,
            CompressionKind::None => {
                return match self.initramfs.level {
                    Some(_) => Err(field(
                        "initramfs.level",
                        "has no meaning without compression",
                    )),
                    None => Ok(()),
                }
            }
        };
        match self.initramfs.level {
            Some(level) if !range.contains(&level) => Err(field(
                "initramfs.level",
                &format!("must be in {}..={}", range.start(), range.end()),
            )),
            _ => Ok(()),
        }
    }

    fn validate_container_images(&self) -> Result<(), (String, String)> {
        let mut names = BTreeSet::new();
        let mut references = BTreeSet::new();
        for (i, image) in self.container_images.iter().enumerate() {
            let at = |key: &str| format!("container_image[{i}].{key}");
            let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
            if image.name.is_empty() || !image.name.chars().all(ok) {
                return Err(field(&at("name"), "may only contain 0-9, a-z and `-`"));
            }
            if !names.insert(image.name.as_str()) {
                return Err(field(
                    &at("name"),
                    &format!("`{}` is used twice", image.name),
                ));
            }
            check_reference(&at("reference"), &image.reference)?;
            if !references.insert(image.reference.as_str()) {
                let problem = format!("`{}` is used twice", image.reference);
                return Err(field(&at("reference"), &problem));
            }
            if image.entrypoint.is_empty() && image.cmd.is_empty() {
                return Err(field(
                    &at("entrypoint"),
                    "an image needs `entrypoint` or `cmd`",
                ));
            }
            for (j, env) in image.env.iter().enumerate() {
                if !env.contains('=') || env.starts_with('=') {
                    return Err(field(&at(&format!("env[{j}]")), "must be `NAME=value`"));
                }
            }
            if image.components.is_empty() {
                return Err(field(&at("component"), "must list at least one component"));
            }
            let mut installs = BTreeSet::new();
            validate_components(&image.components, &at("component"), &mut installs)?;
        }
        Ok(())
    }
}

/// Validates components listed under `prefix` (`component`, or an image's); every
/// install path and symlink must be unique within `installs`.
fn validate_components<'a>(
    components: &'a [Component],
    prefix: &str,
    installs: &mut BTreeSet<&'a str>,
) -> Result<(), (String, String)> {
    let mut names = BTreeSet::new();
    for (i, component) in components.iter().enumerate() {
        let at = |key: &str| format!("{prefix}[{i}].{key}");
        check_nonempty(&at("name"), &component.name)?;
        if !names.insert(component.name.as_str()) {
            return Err(field(
                &at("name"),
                &format!("`{}` is used twice", component.name),
            ));
        }
        let Some(source) = component.source() else {
            return Err(field(
                &format!("{prefix}[{i}]"),
                "needs exactly one source: `cargo`, `file`, `deb` or `go`",
            ));
        };
        match (source, &component.install) {
            (Source::Deb(deb), None) => {
                check_package(&at("deb.package"), &deb.package)?;
                if deb.files.is_empty() {
                    return Err(field(&at("deb.files"), "must list at least one file"));
                }
                for (j, file) in deb.files.iter().enumerate() {
                    check_image_path(&at(&format!("deb.files[{j}]")), file)?;
                }
            }
            (Source::Deb(_), Some(_)) => {
                return Err(field(&at("install"), "deb files keep their package paths"));
            }
            (_, None) => return Err(field(&at("install"), "is required for this source")),
            (source, Some(install)) => {
                check_image_path(&at("install"), install)?;
                if !installs.insert(install.as_str()) {
                    return Err(field(&at("install"), &format!("`{install}` is used twice")));
                }
                if let Source::Go(go) = source {
                    check_relative_path(&at("go.path"), &go.path)?;
                }
                // Relative to the config's directory, never a host path: an absolute
                // one would pull any file of the build machine into the image.
                if let Source::File(file) = source {
                    check_relative_path(&at("file"), &file.to_string_lossy())?;
                }
            }
        }
        for (path, target) in &component.symlinks {
            let key = at(&format!("symlinks.\"{path}\""));
            check_image_path(&key, path)?;
            check_nonempty(&key, target)?;
            if !installs.insert(path.as_str()) {
                return Err(field(&key, &format!("`{path}` is used twice")));
            }
        }
    }
    Ok(())
}

fn field(name: &str, problem: &str) -> (String, String) {
    (name.to_owned(), problem.to_owned())
}

fn check_nonempty(name: &str, value: &str) -> Result<(), (String, String)> {
    if value.trim().is_empty() {
        return Err(field(name, "must not be empty"));
    }
    Ok(())
}

/// os-release(5): ID and IMAGE_ID are lower-case `0-9 a-z . _ -`.
fn check_os_release_id(name: &str, value: &str) -> Result<(), (String, String)> {
    check_nonempty(name, value)?;
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c);
    if !value.chars().all(ok) {
        return Err(field(
            name,
            "may only contain 0-9, a-z, `.`, `_` and `-` (os-release(5))",
        ));
    }
    Ok(())
}

/// Debian policy 5.6.1: lower-case alphanumerics and `+ - .`, at least two characters.
fn check_package(name: &str, value: &str) -> Result<(), (String, String)> {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c);
    if value.len() < 2
        || !value.chars().all(ok)
        || !value.starts_with(|c: char| c.is_ascii_alphanumeric())
    {
        return Err(field(
            name,
            &format!("`{value}` is not a valid Debian package name"),
        ));
    }
    Ok(())
}

fn check_module_name(name: &str, value: &str) -> Result<(), (String, String)> {
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if value.is_empty() || !value.chars().all(ok) {
        return Err(field(
            name,
            &format!("`{value}` is not a kernel module name"),
        ));
    }
    Ok(())
}

/// `name:tag` with a registry host, lower-case (OCI distribution grammar, simplified):
/// the agent imports under exactly this name and CRI looks pods' images up by it.
fn check_reference(name: &str, value: &str) -> Result<(), (String, String)> {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/:".contains(c);
    let (repository, tag) = value.rsplit_once(':').unwrap_or((value, ""));
    let bad = !value.chars().all(ok)
        || !repository.contains('/')
        || tag.is_empty()
        || tag.contains('/')
        || repository.split('/').any(str::is_empty);
    if bad {
        return Err(field(
            name,
            &format!("`{value}` is not a `host/path:tag` image reference"),
        ));
    }
    Ok(())
}

/// A plain relative path that stays inside its base directory.
fn check_relative_path(name: &str, value: &str) -> Result<(), (String, String)> {
    let path = Path::new(value);
    let bad = value.is_empty()
        || path.is_absolute()
        || path
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)));
    if bad {
        return Err(field(
            name,
            &format!("`{value}` must be a relative path without `..`"),
        ));
    }
    Ok(())
}

fn check_image_path(name: &str, value: &str) -> Result<(), (String, String)> {
    let path = Path::new(value);
    let bad = !path.is_absolute()
        || path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        || value.ends_with('/');
    if bad {
        return Err(field(
            name,
            &format!("`{value}` must be an absolute file path without `..`"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
