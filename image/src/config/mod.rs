//! The declarative image config (TOML).
//!
//! Parsing and validation are separate steps, as in cloud-hypervisor's `config.rs`:
//! serde (with `deny_unknown_fields`) rejects unknown keys and wrong types and names
//! the key and line; [`Config::validate`] then checks what types cannot express,
//! names the offending field by its path (`component[1].install`), and returns the
//! [`Validated`] form the builder takes, where each component has exactly one typed
//! [`Source`]. Every error also names the config file.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod component;
mod extends;

use component::validate_components;
pub use component::{
    CargoSource, Component, ComponentConfig, DebSource, GoSource, SingleFile, Source,
};

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

/// The config file as written (after `extends` is merged).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub os_release: OsReleaseConfig,
    pub initramfs: InitramfsConfig,
    pub kernel: KernelConfig,
    pub libraries: LibrariesConfig,
    #[serde(rename = "component", default)]
    pub components: Vec<ComponentConfig>,
    /// OCI images written as archives into the initramfs, for the agent to import.
    #[serde(rename = "container_image", default)]
    pub container_images: Vec<ContainerImageConfig>,
    /// Container registries every node of the image may pull from (mirrors, CA), written
    /// to `/etc/cairn/registries.toml`; a node's own config can add or replace them.
    #[serde(rename = "registry", default)]
    pub registries: Vec<RegistryConfig>,
}

/// A `[[registry]]` table: the per-node config's registry (docs/interfaces.md), with
/// the CA as a file. No client key: a key in an image is every node's key and anyone's
/// who holds the image, so client certificates are per-node settings only.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// `host` or `host:port` as in image references.
    pub host: String,
    /// `https://…` endpoints tried before the host itself.
    #[serde(default)]
    pub mirrors: Vec<String>,
    /// PEM CA bundle, relative to the config file's directory.
    pub ca_file: Option<PathBuf>,
    /// Allow plain HTTP to the registry and `http://` mirrors.
    #[serde(default)]
    pub plain_http: bool,
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

/// An `[[container_image]]` table as written.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ContainerImageConfig {
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
    pub components: Vec<ComponentConfig>,
}

/// An OCI image the builder assembles from components (one layer) and writes as an
/// OCI image layout archive to [`ContainerImage::archive_path`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerImage {
    pub name: String,
    pub reference: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub components: Vec<Component>,
}

/// Where preloaded image archives live in the initramfs (docs/interfaces.md).
pub const IMAGES_DIR: &str = "/usr/share/cairn/images";

impl ContainerImage {
    pub fn archive_path(&self) -> String {
        format!("{IMAGES_DIR}/{}.tar", self.name)
    }
}

/// A config that passed [`Config::validate`], as the builder takes it: the same
/// settings, with every component holding exactly one typed [`Source`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    pub os_release: OsReleaseConfig,
    pub initramfs: InitramfsConfig,
    pub kernel: KernelConfig,
    pub libraries: LibrariesConfig,
    pub components: Vec<Component>,
    pub container_images: Vec<ContainerImage>,
    pub registries: Vec<RegistryConfig>,
}

impl Validated {
    /// Reads, parses and validates the config at `path` (see [`Config::load`]).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Config::load_validated(path).map(|(_, validated)| validated)
    }

    /// Parses and validates config text; `path` is only used in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        Config::parse_validated(path, text).map(|(_, validated)| validated)
    }
}

impl Config {
    /// Reads, parses and validates the config at `path`.
    ///
    /// A config may start with `extends = "other.toml"` (relative to itself): the other
    /// file is loaded first and this one merged over it (see [`extends`]).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_validated(path).map(|(config, _)| config)
    }

    /// [`Config::load`], keeping both the file as written and its validated form.
    fn load_validated(path: &Path) -> Result<(Self, Validated), ConfigError> {
        let layered = extends::load_layered(path)?;
        let config = Config::deserialize(layered.table).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
        match config.validate() {
            Ok(validated) => Ok((config, validated)),
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
        Self::parse_validated(path, text).map(|(config, _)| config)
    }

    fn parse_validated(path: &Path, text: &str) -> Result<(Self, Validated), ConfigError> {
        let config: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
        let validated = config
            .validate()
            .map_err(|(field, problem)| ConfigError::Field {
                path: path.to_owned(),
                field,
                problem,
            })?;
        Ok((config, validated))
    }

    /// Checks what the types cannot and returns the typed form; an error is the field
    /// path and the problem.
    pub fn validate(&self) -> Result<Validated, (String, String)> {
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
        let components = validate_components(&self.components, "component", &mut installs)?;
        if !installs.contains("/init") {
            return Err(field(
                "component",
                "no component installs `/init` (the agent): the image could not boot",
            ));
        }
        Ok(Validated {
            os_release: self.os_release.clone(),
            initramfs: self.initramfs.clone(),
            kernel: self.kernel.clone(),
            libraries: self.libraries.clone(),
            components,
            container_images: self.validate_container_images()?,
            registries: self.validate_registries()?,
        })
    }

    fn validate_registries(&self) -> Result<Vec<RegistryConfig>, (String, String)> {
        let mut hosts = BTreeSet::new();
        for (i, registry) in self.registries.iter().enumerate() {
            let path = format!("registry[{i}]");
            let as_node = cairn_api::node_config::Registry {
                host: registry.host.clone(),
                mirrors: registry.mirrors.clone(),
                plain_http: registry.plain_http,
                ..Default::default()
            };
            as_node.validate(&path).map_err(|err| match err {
                cairn_api::node_config::NodeConfigError::Field { field, problem } => {
                    (field, problem)
                }
                other => (path.clone(), other.to_string()),
            })?;
            if let Some(ca) = &registry.ca_file {
                check_relative_path(&format!("{path}.ca_file"), &ca.to_string_lossy())?;
            }
            if !hosts.insert(registry.host.as_str()) {
                return Err(field(
                    &format!("{path}.host"),
                    &format!("{:?} is declared twice", registry.host),
                ));
            }
        }
        Ok(self.registries.clone())
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

    fn validate_container_images(&self) -> Result<Vec<ContainerImage>, (String, String)> {
        let mut images = Vec::with_capacity(self.container_images.len());
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
            images.push(ContainerImage {
                name: image.name.clone(),
                reference: image.reference.clone(),
                entrypoint: image.entrypoint.clone(),
                cmd: image.cmd.clone(),
                env: image.env.clone(),
                components: validate_components(
                    &image.components,
                    &at("component"),
                    &mut installs,
                )?,
            });
        }
        Ok(images)
    }
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
