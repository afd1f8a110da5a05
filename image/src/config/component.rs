//! Components: the `[[component]]` tables as written, and what validation makes of
//! them — a [`Component`] with exactly one typed [`Source`], so the builder never has
//! to ask which of `cargo`, `file`, `deb` or `go` a component meant.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Deserialize;

use super::{check_image_path, check_nonempty, check_package, check_relative_path, field};

/// A `[[component]]` table as written: one thing put into the image, from exactly one
/// of `cargo`, `file`, `deb` or `go` (checked by [`Config::validate`](super::Config::validate)).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ComponentConfig {
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

/// A validated component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    pub name: String,
    pub source: Source,
    /// Image path -> target; unique among the installs of its list.
    pub symlinks: BTreeMap<String, String>,
}

/// Where a component's files come from: exactly one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// One file, placed at the absolute image path `install`.
    Single { install: String, file: SingleFile },
    /// Files of a Debian package, at their package paths.
    Deb(DebSource),
}

/// The origin of a single-file component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SingleFile {
    /// A binary of this Cargo workspace, built by the builder.
    Cargo(CargoSource),
    /// A file in the repository, relative to the config file's directory.
    Repo(PathBuf),
    /// A binary from the Go build output directory.
    Go(GoSource),
}

/// A binary from the Go build output directory (`<cache>/go-out`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GoSource {
    /// Relative to the output directory, e.g. `bin/containerd` or `cni/bin/bridge`.
    pub path: String,
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

/// Validates components listed under `prefix` (`component`, or an image's) into their
/// typed form; every install path and symlink must be unique within `installs`.
pub(super) fn validate_components<'a>(
    components: &'a [ComponentConfig],
    prefix: &str,
    installs: &mut BTreeSet<&'a str>,
) -> Result<Vec<Component>, (String, String)> {
    let mut names = BTreeSet::new();
    let mut typed = Vec::with_capacity(components.len());
    for (i, component) in components.iter().enumerate() {
        let at = |key: &str| format!("{prefix}[{i}].{key}");
        check_nonempty(&at("name"), &component.name)?;
        if !names.insert(component.name.as_str()) {
            return Err(field(
                &at("name"),
                &format!("`{}` is used twice", component.name),
            ));
        }
        let source = validate_source(component, &format!("{prefix}[{i}]"), installs)?;
        for (path, target) in &component.symlinks {
            let key = at(&format!("symlinks.\"{path}\""));
            check_image_path(&key, path)?;
            check_nonempty(&key, target)?;
            if !installs.insert(path.as_str()) {
                return Err(field(&key, &format!("`{path}` is used twice")));
            }
        }
        typed.push(Component {
            name: component.name.clone(),
            source,
            symlinks: component.symlinks.clone(),
        });
    }
    Ok(typed)
}

/// The one source of the component at field path `at`, with its install rules checked.
fn validate_source<'a>(
    component: &'a ComponentConfig,
    at: &str,
    installs: &mut BTreeSet<&'a str>,
) -> Result<Source, (String, String)> {
    let key = |key: &str| format!("{at}.{key}");
    let file = match (
        &component.cargo,
        &component.file,
        &component.deb,
        &component.go,
    ) {
        (Some(cargo), None, None, None) => SingleFile::Cargo(cargo.clone()),
        (None, Some(file), None, None) => SingleFile::Repo(file.clone()),
        (None, None, None, Some(go)) => SingleFile::Go(go.clone()),
        (None, None, Some(deb), None) => return validate_deb(deb, component, &key),
        _ => {
            return Err(field(
                at,
                "needs exactly one source: `cargo`, `file`, `deb` or `go`",
            ))
        }
    };
    let Some(install) = &component.install else {
        return Err(field(&key("install"), "is required for this source"));
    };
    check_image_path(&key("install"), install)?;
    if !installs.insert(install.as_str()) {
        return Err(field(
            &key("install"),
            &format!("`{install}` is used twice"),
        ));
    }
    match &file {
        SingleFile::Go(go) => check_relative_path(&key("go.path"), &go.path)?,
        // Relative to the config's directory, never a host path: an absolute one
        // would pull any file of the build machine into the image.
        SingleFile::Repo(path) => check_relative_path(&key("file"), &path.to_string_lossy())?,
        SingleFile::Cargo(_) => {}
    }
    Ok(Source::Single {
        install: install.clone(),
        file,
    })
}

fn validate_deb(
    deb: &DebSource,
    component: &ComponentConfig,
    key: &dyn Fn(&str) -> String,
) -> Result<Source, (String, String)> {
    if component.install.is_some() {
        return Err(field(&key("install"), "deb files keep their package paths"));
    }
    check_package(&key("deb.package"), &deb.package)?;
    if deb.files.is_empty() {
        return Err(field(&key("deb.files"), "must list at least one file"));
    }
    for (j, file) in deb.files.iter().enumerate() {
        check_image_path(&key(&format!("deb.files[{j}]")), file)?;
    }
    Ok(Source::Deb(deb.clone()))
}
