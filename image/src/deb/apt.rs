//! Asking apt: what a package name (and version) resolves to, parsed from
//! `apt-cache show`, and the answers kept while apt's state is unchanged.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::package::parse_fields;
use super::{DebError, Result};

/// A package name and, when pinned, its version: what a build asks apt to resolve.
pub(super) type Spec = (String, Option<String>);

/// Where [`AptAnswers`] live in the cache directory.
pub(super) const ANSWERS_FILE: &str = "apt-answers.json";

/// What apt answered, with a fingerprint of the apt state it answered from.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct AptAnswers {
    pub state: String,
    /// By spec written as apt takes it (`name` or `name=version`).
    pub answers: BTreeMap<String, Candidate>,
}

/// A fingerprint of what decides apt's answers: the names, sizes and modification
/// times of its package lists, its configuration and dpkg's status file.
pub(super) fn apt_state() -> String {
    let mut hasher = Sha256::new();
    let mut visit = |path: &Path| {
        let mut stack = vec![path.to_path_buf()];
        while let Some(path) = stack.pop() {
            let Ok(meta) = fs::metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                let mut children: Vec<PathBuf> = fs::read_dir(&path)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|entry| entry.path())
                    .collect();
                children.sort();
                stack.extend(children.into_iter().rev());
                continue;
            }
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            hasher.update(path.as_os_str().as_bytes());
            hasher.update(format!("\0{}\0{modified}\n", meta.len()));
        }
    };
    for path in ["/var/lib/apt/lists", "/etc/apt", "/var/lib/dpkg/status"] {
        visit(Path::new(path));
    }
    hex::encode(hasher.finalize())
}

pub(super) fn spec_text((name, version): &Spec) -> String {
    match version {
        Some(version) => format!("{name}={version}"),
        None => name.clone(),
    }
}

/// What apt says a package name (and optional version) resolves to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Candidate {
    pub name: String,
    pub version: String,
    /// The pool file's base name, used as the cache file name.
    pub file_name: String,
    pub sha256: Option<String>,
}

pub(super) fn resolve(name: &str, version: Option<&str>) -> Result<Candidate> {
    let spec = match version {
        Some(version) => format!("{name}={version}"),
        None => name.to_string(),
    };
    let mut command = Command::new("apt-cache");
    command.args(["show", "--no-all-versions", &spec]);
    let stdout = match run_apt(name, &mut command) {
        Err(DebError::Apt { stderr, .. }) if stderr.contains("No packages found") => {
            return Err(DebError::NotFound {
                name: name.to_string(),
            })
        }
        other => other?,
    };
    if stdout.trim().is_empty() {
        return Err(match version {
            Some(version) => DebError::VersionNotFound {
                name: name.to_string(),
                version: version.to_string(),
            },
            None => DebError::NotFound {
                name: name.to_string(),
            },
        });
    }
    parse_candidate(name, &stdout)
}

/// Pairs each spec with its paragraph of a multi-package `apt-cache show` answer.
///
/// A pinned spec takes the paragraph of that package and version. An unpinned one takes
/// the only paragraph of its package, and none when the answer has several (the same
/// package was asked for at a pinned version too): which is the candidate is then not
/// knowable from the text, and the fetch asks apt on its own.
pub(super) fn match_candidates(specs: &[Spec], text: &str) -> BTreeMap<Spec, Candidate> {
    let paragraphs: Vec<Candidate> = text
        .split("\n\n")
        .filter(|paragraph| !paragraph.trim().is_empty())
        .filter_map(|paragraph| {
            let package = parse_fields(paragraph).get("Package")?.clone();
            parse_candidate(&package, paragraph).ok()
        })
        .collect();
    let mut found = BTreeMap::new();
    for spec in specs {
        let (name, version) = spec;
        let mut matching = paragraphs.iter().filter(|candidate| {
            candidate.name == *name && version.as_ref().is_none_or(|v| candidate.version == *v)
        });
        let first = matching.next();
        let unique = matching.all(|other| Some(other) == first);
        if let (Some(candidate), true) = (first, version.is_some() || unique) {
            found.insert(spec.clone(), candidate.clone());
        }
    }
    found
}

/// Parses the first paragraph of `apt-cache show` output.
fn parse_candidate(name: &str, text: &str) -> Result<Candidate> {
    let fields = parse_fields(text);
    let field = |field: &'static str| {
        fields.get(field).cloned().ok_or(DebError::AptField {
            name: name.to_string(),
            field,
        })
    };
    let version = field("Version")?;
    let file_name = Path::new(&field("Filename")?)
        .file_name()
        .and_then(|f| f.to_str())
        .filter(|f| f.ends_with(".deb"))
        .map(str::to_string)
        .ok_or(DebError::AptField {
            name: name.to_string(),
            field: "Filename",
        })?;
    Ok(Candidate {
        name: name.to_string(),
        version,
        file_name,
        sha256: fields.get("SHA256").map(|s| s.to_ascii_lowercase()),
    })
}

/// Runs an apt command, returning its stdout; a non-zero exit is an error with stderr.
pub(super) fn run_apt(name: &str, command: &mut Command) -> Result<String> {
    let shown = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let output = command.output().map_err(|source| DebError::AptSpawn {
        name: name.to_string(),
        command: shown.clone(),
        source,
    })?;
    if !output.status.success() {
        return Err(DebError::Apt {
            name: name.to_string(),
            command: shown,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The one `.deb` `apt-get download` left in `dir`.
pub(super) fn single_deb_in(dir: &Path, name: &str) -> Result<PathBuf> {
    let entries = fs::read_dir(dir).map_err(|source| DebError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut debs: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "deb"))
        .collect();
    match (debs.pop(), debs.is_empty()) {
        (Some(path), true) => Ok(path),
        _ => Err(DebError::AptField {
            name: name.to_string(),
            field: "Filename",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn parses_apt_cache_show() {
        let text = fs::read_to_string("testdata/deb/apt-cache-show-hello.txt").unwrap();
        let candidate = parse_candidate("hello", &text).unwrap();
        assert_eq!(candidate.version, "2.10-3");
        assert_eq!(candidate.file_name, "hello_2.10-3_amd64.deb");
        let sha = "2e6e2f1a0007dc43bc91c273fd36e91e40a4f1c2765a03eca68b70a42103878a";
        assert_eq!(candidate.sha256.as_deref(), Some(sha));
        let err = parse_candidate("hello", "Package: hello\n").unwrap_err();
        assert!(err.to_string().contains("`Version`"), "{err}");
    }

    fn paragraph(name: &str, version: &str) -> String {
        format!(
            "Package: {name}\nVersion: {version}\nFilename: pool/main/{name}_{version}_amd64.deb\n\
             Description: x\n continued\n"
        )
    }

    #[test]
    fn one_apt_answer_serves_every_spec_it_can() {
        let spec =
            |name: &str, version: Option<&str>| (name.to_owned(), version.map(str::to_owned));
        let specs = [
            spec("hello", None),
            spec("libfoo1", Some("2.0-1")),
            spec("both", None),
            spec("both", Some("1.0")),
            spec("missing", None),
            spec("libfoo1", Some("9.9")),
        ];
        let text = [
            paragraph("hello", "2.10-3"),
            paragraph("libfoo1", "2.0-1"),
            paragraph("both", "2.0"),
            paragraph("both", "1.0"),
        ]
        .join("\n");
        let found = match_candidates(&specs, &text);
        assert_eq!(found[&specs[0]].version, "2.10-3");
        assert_eq!(found[&specs[0]].file_name, "hello_2.10-3_amd64.deb");
        assert_eq!(found[&specs[1]].version, "2.0-1");
        // Unpinned next to a pinned version of the same package: left to its own call.
        assert!(!found.contains_key(&specs[2]));
        assert_eq!(found[&specs[3]].version, "1.0");
        assert!(!found.contains_key(&specs[4]));
        assert!(!found.contains_key(&specs[5]));
        assert_eq!(found.len(), 3);
    }
}
