//! A `.deb` file's container and control data: the `ar` archive, its decompressed
//! `control.tar.*` member and the deb822 `control` file in it. All of it is untrusted
//! input; every malformation is an error naming the file.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::unpack::safe_relative;
use super::{DebError, Result};

/// The largest `control` file we read; real ones are a few KiB.
const MAX_CONTROL_BYTES: u64 = 1 << 20;

/// One relation in a `Depends` field: `name[:arch] [(op version)]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub name: String,
    /// The operator (`=`, `>=`, `<<`, ...) and version, when the relation has one.
    pub constraint: Option<(String, String)>,
}

impl Relation {
    /// The version this relation pins with `=`, if it does.
    pub fn exact_version(&self) -> Option<&str> {
        match &self.constraint {
            Some((op, version)) if op == "=" => Some(version),
            _ => None,
        }
    }
}

/// The fields of a package's `control` file the builder uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    pub package: String,
    pub version: String,
    pub architecture: String,
    /// `Depends`: each inner list is one group of `|` alternatives.
    pub depends: Vec<Vec<Relation>>,
}

impl Control {
    /// Parses the first paragraph of a control file; `path` (the package it came
    /// from) is only used in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Control> {
        let fields = parse_fields(text);
        let field = |field: &'static str| {
            fields.get(field).cloned().ok_or(DebError::ControlField {
                path: path.to_path_buf(),
                field,
            })
        };
        Ok(Control {
            package: field("Package")?,
            version: field("Version")?,
            architecture: field("Architecture")?,
            depends: fields
                .get("Depends")
                .map(|d| parse_depends(d))
                .unwrap_or_default(),
        })
    }

    /// The first alternative of the first dependency whose name starts with `prefix`.
    pub fn first_dependency_with_prefix(&self, prefix: &str) -> Option<&Relation> {
        self.depends
            .iter()
            .filter_map(|group| group.first())
            .find(|relation| relation.name.starts_with(prefix))
    }
}

/// A `.deb` file on disk, checked to parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deb {
    pub path: PathBuf,
    /// Lower-case hex sha256 of the whole file.
    pub sha256: String,
    pub control: Control,
}

impl Deb {
    /// Reads a `.deb`: hashes it and parses `control.tar.*`'s `./control`.
    pub fn open(path: &Path) -> Result<Deb> {
        let sha256 = sha256_file(path)?;
        let text = with_member(path, "control.tar", |tar| read_control(path, tar))?;
        let control = Control::parse(path, &text)?;
        Ok(Deb {
            path: path.to_path_buf(),
            sha256,
            control,
        })
    }
}

fn sha256_file(path: &Path) -> Result<String> {
    let read_error = |source| DebError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(read_error)?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).map_err(read_error)?;
    Ok(hex::encode(hasher.finalize()))
}

/// Finds the `ar` member `<prefix>[.xz|.zst|.gz]` and hands `f` its decompressed bytes.
pub(super) fn with_member<T>(
    path: &Path,
    prefix: &'static str,
    f: impl FnOnce(&mut dyn Read) -> Result<T>,
) -> Result<T> {
    let read_error = |source| DebError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut archive = ar::Archive::new(File::open(path).map_err(read_error)?);
    while let Some(entry) = archive.next_entry() {
        let entry = entry.map_err(read_error)?;
        let id = String::from_utf8_lossy(entry.header().identifier()).into_owned();
        let Some(suffix) = id.strip_prefix(prefix) else {
            continue;
        };
        return match suffix {
            "" => f(&mut { entry }),
            ".gz" => f(&mut flate2::read::GzDecoder::new(entry)),
            ".xz" => f(&mut xz2::read::XzDecoder::new(entry)),
            ".zst" => f(&mut zstd::stream::read::Decoder::new(entry).map_err(read_error)?),
            _ => Err(DebError::Compression {
                path: path.to_path_buf(),
                member: id,
            }),
        };
    }
    Err(DebError::MissingMember {
        path: path.to_path_buf(),
        member: prefix,
    })
}

/// The text of `./control` inside a control tarball.
fn read_control(path: &Path, tar: &mut dyn Read) -> Result<String> {
    let read_error = |source| DebError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().map_err(read_error)? {
        let entry = entry.map_err(read_error)?;
        let is_control =
            safe_relative(&entry.path_bytes()).is_some_and(|p| p == Path::new("control"));
        if is_control {
            let mut text = String::new();
            entry
                .take(MAX_CONTROL_BYTES)
                .read_to_string(&mut text)
                .map_err(read_error)?;
            return Ok(text);
        }
    }
    Err(DebError::NoControl {
        path: path.to_path_buf(),
    })
}

/// The fields of the first deb822 paragraph; continuation lines are joined with `\n`.
pub(super) fn parse_fields(text: &str) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    let mut last: Option<String> = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            if fields.is_empty() {
                continue;
            }
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(value) = last.as_ref().and_then(|key| fields.get_mut(key)) {
                let value: &mut String = value;
                value.push('\n');
                value.push_str(line.trim());
            }
        } else if let Some((key, value)) = line.split_once(':') {
            fields.insert(key.trim().to_string(), value.trim().to_string());
            last = Some(key.trim().to_string());
        }
    }
    fields
}

/// Parses a `Depends` value: `a (>= 1) | b, c:any, d [amd64]`.
fn parse_depends(value: &str) -> Vec<Vec<Relation>> {
    value
        .split(',')
        .map(|group| {
            group
                .split('|')
                .filter_map(parse_relation)
                .collect::<Vec<_>>()
        })
        .filter(|group| !group.is_empty())
        .collect()
}

fn parse_relation(text: &str) -> Option<Relation> {
    let (head, rest) = text.split_once('(').unwrap_or((text, ""));
    let name = head.split_whitespace().next()?;
    let name = name.split(':').next()?.to_string();
    let constraint = rest.split_once(')').and_then(|(inside, _)| {
        let inside = inside.trim();
        let split = inside.find(|c| !matches!(c, '<' | '>' | '='))?;
        let (op, version) = inside.split_at(split);
        Some((op.to_string(), version.trim().to_string())).filter(|(op, _)| !op.is_empty())
    });
    Some(Relation { name, constraint })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    use crate::deb::fixtures::*;
    #[test]
    fn parses_control_fields_and_depends() {
        let dir = tempfile::tempdir().unwrap();
        let deb = Deb::open(&write_deb(dir.path(), ".xz", ".xz", &sample())).unwrap();
        assert_eq!(deb.control.package, "tool");
        assert_eq!(deb.control.version, "1:2.0-1");
        assert_eq!(deb.control.architecture, "amd64");
        let names: Vec<Vec<&str>> = deb
            .control
            .depends
            .iter()
            .map(|group| group.iter().map(|r| r.name.as_str()).collect())
            .collect();
        assert_eq!(
            names,
            [vec!["libc6"], vec!["libfoo1", "libbar1"], vec!["libbaz"]]
        );
        let libc = &deb.control.depends[0][0];
        assert_eq!(libc.constraint, Some((">=".into(), "2.34".into())));
        assert_eq!(libc.exact_version(), None);
        assert_eq!(deb.control.depends[2][0].exact_version(), Some("1.0"));
        assert_eq!(deb.sha256.len(), 64);
    }

    #[test]
    fn follows_the_kernel_metapackage_dependency() {
        let text = fs::read_to_string("testdata/deb/linux-image-cloud-amd64.control").unwrap();
        let control = Control::parse(Path::new("meta.deb"), &text).unwrap();
        let next = control
            .first_dependency_with_prefix("linux-image-")
            .unwrap();
        assert_eq!(next.name, "linux-image-6.1.0-56-cloud-amd64");
        assert_eq!(next.exact_version(), Some("6.1.192-2"));
        let text = fs::read_to_string("testdata/deb/linux-image-6.1.0-56-cloud-amd64.control");
        let control = Control::parse(Path::new("real.deb"), &text.unwrap()).unwrap();
        assert_eq!(control.first_dependency_with_prefix("linux-image-"), None);
    }

    #[test]
    fn a_control_file_without_a_required_field_is_an_error_naming_it() {
        let path = Path::new("odd.deb");
        let err = Control::parse(path, "Package: x\nArchitecture: all\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "debian package odd.deb: control file has no `Version` field"
        );
        // Only the first paragraph counts, and odd Depends values parse to something.
        let text =
            "\nPackage: x\nVersion: 1\nArchitecture: all\nDepends: (, |, a (>>\n\nPackage: y\n";
        let control = Control::parse(path, text).unwrap();
        assert_eq!(control.package, "x");
        assert_eq!(control.depends.len(), 1);
        assert_eq!(control.depends[0][0].name, "a");
    }
}
