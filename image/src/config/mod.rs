//! The declarative image config (TOML).
//!
//! Parsing and validation are separate steps, as in cloud-hypervisor's `config.rs`:
//! serde (with `deny_unknown_fields`) rejects unknown keys and wrong types and names
//! the key and line; [`Config::validate`] then checks what types cannot express and
//! names the offending field by its path (`component[1].install`). Every error also
//! names the config file.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;

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

/// One thing put into the image, from exactly one of `cargo`, `file` or `deb`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Component {
    pub name: String,
    /// Where a single-file source lands in the image (cargo and file sources).
    pub install: Option<String>,
    /// A binary of this Cargo workspace, built by the builder.
    pub cargo: Option<CargoSource>,
    /// A file in the repository, relative to the config file.
    pub file: Option<PathBuf>,
    /// Files taken from a Debian package, at their package paths.
    pub deb: Option<DebSource>,
}

/// A component's source, once validation has checked there is exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source<'a> {
    Cargo(&'a CargoSource),
    File(&'a Path),
    Deb(&'a DebSource),
}

impl Component {
    /// The single source of this component, or `None` if it names zero or several.
    pub fn source(&self) -> Option<Source<'_>> {
        match (&self.cargo, &self.file, &self.deb) {
            (Some(cargo), None, None) => Some(Source::Cargo(cargo)),
            (None, Some(file), None) => Some(Source::File(file)),
            (None, None, Some(deb)) => Some(Source::Deb(deb)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CargoSource {
    pub package: String,
    pub bin: String,
    #[serde(default)]
    pub features: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DebSource {
    pub package: String,
    pub version: Option<String>,
    /// Absolute paths inside the package to include.
    pub files: Vec<String>,
}

impl Config {
    /// Reads, parses and validates the config at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates config text; `path` is only used in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
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
        self.validate_components()
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

    fn validate_components(&self) -> Result<(), (String, String)> {
        let mut names = BTreeSet::new();
        let mut installs = BTreeSet::new();
        for (i, component) in self.components.iter().enumerate() {
            let at = |key: &str| format!("component[{i}].{key}");
            check_nonempty(&at("name"), &component.name)?;
            if !names.insert(component.name.as_str()) {
                return Err(field(
                    &at("name"),
                    &format!("`{}` is used twice", component.name),
                ));
            }
            let Some(source) = component.source() else {
                return Err(field(
                    &format!("component[{i}]"),
                    "needs exactly one source: `cargo`, `file` or `deb`",
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
                (_, Some(install)) => {
                    check_image_path(&at("install"), install)?;
                    if !installs.insert(install.as_str()) {
                        return Err(field(&at("install"), &format!("`{install}` is used twice")));
                    }
                }
            }
        }
        Ok(())
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
#[path = "config_tests.rs"]
mod tests;
