//! Debian packages, fetched with apt and unpacked by us.
//!
//! apt is only asked two things: which version and pool file a package name resolves
//! to (`apt-cache show`), and to download that file (`apt-get download`). A build asks
//! about all its packages in one `apt-cache show` ([`DebCache::resolve_ahead`]): apt
//! rebuilds its package cache on every call where `pkgcache.bin` is disabled (Debian's
//! container images do), about a second each, which dominated a warm build. apt's
//! answers are kept beside the `.deb`s ([`AptAnswers`]) for as long as apt's state (its
//! package lists, sources, preferences, dpkg's status) is unchanged, so a warm build
//! asks apt nothing at all. Everything
//! after that is ours: a `.deb` is an `ar` archive holding `control.tar.*` and
//! `data.tar.*` (xz, zstd, gzip or plain), which we read with the `ar` and `tar` crates.
//! dpkg never runs, so no maintainer script touches the build host and the result does
//! not depend on what the host has installed.
//!
//! [`DebCache`] keeps downloaded `.deb`s under one directory (outside the repository)
//! and their unpacked trees under `unpacked/<sha256>/`, so a rebuild with the same
//! packages downloads and unpacks nothing. Every write lands in a temporary sibling
//! first and is renamed into place, so an interrupted build leaves no half-written file
//! or tree behind. Package bytes are untrusted input: entries that would land outside
//! the destination (`..`, absolute paths, paths through a symlink the archive made)
//! are refused, and malformed archives are errors naming the file, never panics.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;
use tracing::{debug, info, warn};

/// The largest `control` file we read; real ones are a few KiB.
const MAX_CONTROL_BYTES: u64 = 1 << 20;

/// How many `linux-image-*` metapackages [`DebCache::fetch_kernel`] follows.
const MAX_META_DEPTH: usize = 4;

/// Why a Debian package could not be fetched, read or unpacked.
#[derive(Debug, Error)]
pub enum DebError {
    #[error("debian package `{name}` not found (is it spelled right? has `apt-get update` run?)")]
    NotFound { name: String },
    #[error("debian package `{name}` has no version `{version}` (see `apt-cache policy {name}`)")]
    VersionNotFound { name: String, version: String },
    #[error("cannot run `{command}` for debian package `{name}`")]
    AptSpawn {
        name: String,
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed for debian package `{name}`: {stderr}")]
    Apt {
        name: String,
        command: String,
        stderr: String,
    },
    #[error("apt gave no usable `{field}` for debian package `{name}`")]
    AptField { name: String, field: &'static str },
    #[error(
        "downloaded debian package `{name}` at {path} has sha256 {actual}, apt expects {expected}"
    )]
    Checksum {
        name: String,
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("cannot read debian package {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("debian package {path} has no {member} member")]
    MissingMember { path: PathBuf, member: &'static str },
    #[error("debian package {path} has member {member} with an unsupported compression")]
    Compression { path: PathBuf, member: String },
    #[error("debian package {path} has no control file")]
    NoControl { path: PathBuf },
    #[error("debian package {path}: control file has no `{field}` field")]
    ControlField { path: PathBuf, field: &'static str },
    #[error("debian package {path}: entry {entry:?} would land outside the destination")]
    UnsafeEntry { path: PathBuf, entry: String },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("unpack destination {path} already exists")]
    DestExists { path: PathBuf },
    #[error(
        "debian package `{name}` leads through more than {MAX_META_DEPTH} linux-image metapackages"
    )]
    MetaLoop { name: String },
}

type Result<T> = std::result::Result<T, DebError>;

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
        let control = parse_control(path, &text)?;
        Ok(Deb {
            path: path.to_path_buf(),
            sha256,
            control,
        })
    }
}

/// A package name and, when pinned, its version: what a build asks apt to resolve.
type Spec = (String, Option<String>);

/// Where [`AptAnswers`] live in the cache directory.
const ANSWERS_FILE: &str = "apt-answers.json";

/// What apt answered, with a fingerprint of the apt state it answered from.
#[derive(Debug, Default, Serialize, Deserialize)]
struct AptAnswers {
    state: String,
    /// By spec written as apt takes it (`name` or `name=version`).
    answers: BTreeMap<String, Candidate>,
}

/// A fingerprint of what decides apt's answers: the names, sizes and modification
/// times of its package lists, its configuration and dpkg's status file.
fn apt_state() -> String {
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

fn spec_text((name, version): &Spec) -> String {
    match version {
        Some(version) => format!("{name}={version}"),
        None => name.clone(),
    }
}

/// Downloaded `.deb`s and their unpacked trees, under one directory.
#[derive(Debug, Clone)]
pub struct DebCache {
    root: PathBuf,
    /// What apt answered (now or in an earlier build with the same apt state), by
    /// the spec asked for; `None` until first used.
    resolved: Arc<Mutex<Option<AptAnswers>>>,
}

impl DebCache {
    /// A cache rooted at `root` (created on first use).
    pub fn new(root: impl Into<PathBuf>) -> DebCache {
        DebCache {
            root: root.into(),
            resolved: Arc::default(),
        }
    }

    /// Resolves every `(name, version)` with a single `apt-cache show` (none when an
    /// earlier build with the same apt state kept every answer), so the fetches that
    /// follow need no apt call of their own. Best effort: a package apt does not answer
    /// for here (misspelt, unknown version) is resolved again by its fetch, which
    /// reports the precise error.
    pub fn resolve_ahead<'a>(&self, specs: impl IntoIterator<Item = (&'a str, Option<&'a str>)>) {
        let mut answers = self.answers();
        let Some(known) = answers.as_mut() else {
            return;
        };
        let specs: Vec<Spec> = specs
            .into_iter()
            .map(|(name, version)| (name.to_owned(), version.map(str::to_owned)))
            .filter(|spec| !known.answers.contains_key(&spec_text(spec)))
            .collect();
        if specs.is_empty() {
            return;
        }
        let mut command = Command::new("apt-cache");
        command.args(["show", "--no-all-versions"]);
        command.args(specs.iter().map(spec_text));
        match run_apt("(all)", &mut command) {
            Ok(stdout) => {
                let found = match_candidates(&specs, &stdout);
                debug!(
                    asked = specs.len(),
                    answered = found.len(),
                    "resolved debs ahead"
                );
                known
                    .answers
                    .extend(found.into_iter().map(|(spec, c)| (spec_text(&spec), c)));
                self.save_answers(known);
            }
            Err(err) => debug!(error = %err, "resolving debs ahead failed; each fetch asks apt"),
        }
    }

    /// The answers, loaded on first use: those kept on disk if apt's state is the one
    /// they were given in, else none.
    fn answers(&self) -> std::sync::MutexGuard<'_, Option<AptAnswers>> {
        let mut answers = self
            .resolved
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if answers.is_none() {
            let state = apt_state();
            let kept = fs::read(self.root.join(ANSWERS_FILE))
                .ok()
                .and_then(|bytes| serde_json::from_slice::<AptAnswers>(&bytes).ok())
                .filter(|kept| kept.state == state);
            *answers = Some(kept.unwrap_or(AptAnswers {
                state,
                answers: BTreeMap::new(),
            }));
        }
        answers
    }

    /// Keeps `answers` for later builds; a cache that cannot be written only costs
    /// apt calls.
    fn save_answers(&self, answers: &AptAnswers) {
        let write = || -> io::Result<()> {
            fs::create_dir_all(&self.root)?;
            let mut file = tempfile::NamedTempFile::new_in(&self.root)?;
            serde_json::to_writer(&mut file, answers)?;
            file.persist(self.root.join(ANSWERS_FILE))?;
            Ok(())
        };
        if let Err(err) = write() {
            debug!(error = %err, "cannot keep apt's answers");
        }
    }

    /// What `name` (at `version`) resolves to: from apt's answers so far when they
    /// have it, else from apt now (and kept).
    fn candidate(&self, name: &str, version: Option<&str>) -> Result<Candidate> {
        let spec = spec_text(&(name.to_owned(), version.map(str::to_owned)));
        let mut answers = self.answers();
        if let Some(known) = answers.as_ref().and_then(|a| a.answers.get(&spec)) {
            return Ok(known.clone());
        }
        let candidate = resolve(name, version)?;
        if let Some(known) = answers.as_mut() {
            known.answers.insert(spec, candidate.clone());
            self.save_answers(known);
        }
        Ok(candidate)
    }

    /// The candidate version of `name` (or exactly `version`), from the cache when a
    /// good copy is there, else downloaded with `apt-get download`.
    pub fn fetch(&self, name: &str, version: Option<&str>) -> Result<Deb> {
        let candidate = self.candidate(name, version)?;
        let path = self.root.join(&candidate.file_name);
        if path.exists() {
            match check_cached(&path, &candidate) {
                Ok(deb) => {
                    debug!(package = name, path = %path.display(), "reusing cached deb");
                    return Ok(deb);
                }
                Err(err) => {
                    warn!(package = name, error = %err, "cached deb unusable, downloading again")
                }
            }
        }
        self.download(&candidate, &path)
    }

    /// Fetches a kernel package, following `linux-image-*` metapackages.
    ///
    /// `linux-image-cloud-amd64` ships no kernel: its `Depends` names the real package
    /// (`linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)`). While the fetched package
    /// depends on another `linux-image-*` package, fetch that one instead, at the
    /// version it pins. The real kernel package depends on no `linux-image-*`.
    pub fn fetch_kernel(&self, name: &str, version: Option<&str>) -> Result<Deb> {
        let mut deb = self.fetch(name, version)?;
        for _ in 0..MAX_META_DEPTH {
            let Some(next) = deb.control.first_dependency_with_prefix("linux-image-") else {
                return Ok(deb);
            };
            let next = next.clone();
            info!(from = %deb.control.package, to = %next.name, "following kernel metapackage");
            deb = self.fetch(&next.name, next.exact_version())?;
        }
        Err(DebError::MetaLoop {
            name: name.to_string(),
        })
    }

    /// The unpacked tree of `deb`, at `<cache>/unpacked/<sha256>/`, unpacked on first use.
    pub fn unpacked(&self, deb: &Deb) -> Result<PathBuf> {
        let dest = self.root.join("unpacked").join(&deb.sha256);
        if dest.is_dir() {
            return Ok(dest);
        }
        match unpack(deb, &dest) {
            // Another build unpacked the same package first; its tree is as good as ours.
            Err(DebError::Write { .. }) | Err(DebError::DestExists { .. }) if dest.is_dir() => {
                Ok(dest)
            }
            Err(err) => Err(err),
            Ok(()) => Ok(dest),
        }
    }

    fn download(&self, candidate: &Candidate, path: &Path) -> Result<Deb> {
        let name = &candidate.name;
        create_dir(&self.root)?;
        let staging = tempfile::Builder::new()
            .prefix(".download-")
            .tempdir_in(&self.root)
            .map_err(|source| write_error(&self.root, source))?;
        info!(package = %name, version = %candidate.version, "downloading deb");
        let spec = format!("{name}={}", candidate.version);
        run_apt(
            name,
            Command::new("apt-get")
                .args(["download", "-q", &spec])
                .current_dir(staging.path()),
        )?;
        let downloaded = single_deb_in(staging.path(), name)?;
        let deb = check_cached(&downloaded, candidate)?;
        fs::rename(&downloaded, path).map_err(|source| write_error(path, source))?;
        Ok(Deb {
            path: path.to_path_buf(),
            ..deb
        })
    }
}

/// What apt says a package name (and optional version) resolves to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Candidate {
    name: String,
    version: String,
    /// The pool file's base name, used as the cache file name.
    file_name: String,
    sha256: Option<String>,
}

fn resolve(name: &str, version: Option<&str>) -> Result<Candidate> {
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
fn match_candidates(specs: &[Spec], text: &str) -> BTreeMap<Spec, Candidate> {
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
fn run_apt(name: &str, command: &mut Command) -> Result<String> {
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
fn single_deb_in(dir: &Path, name: &str) -> Result<PathBuf> {
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

/// Opens a `.deb` and checks it against apt's sha256, when apt gave one.
fn check_cached(path: &Path, candidate: &Candidate) -> Result<Deb> {
    let deb = Deb::open(path)?;
    match &candidate.sha256 {
        Some(expected) if *expected != deb.sha256 => Err(DebError::Checksum {
            name: candidate.name.clone(),
            path: path.to_path_buf(),
            expected: expected.clone(),
            actual: deb.sha256,
        }),
        _ => Ok(deb),
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
fn with_member<T>(
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

/// Parses the first paragraph of a control file into a [`Control`].
fn parse_control(path: &Path, text: &str) -> Result<Control> {
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

/// The fields of the first deb822 paragraph; continuation lines are joined with `\n`.
fn parse_fields(text: &str) -> BTreeMap<String, String> {
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

/// Unpacks `deb`'s `data.tar.*` into `dest`, which must not exist yet.
///
/// The tree is written into a temporary sibling and renamed to `dest` at the end.
/// Directories, regular files (with their permission bits), symlinks and hard links
/// are created; device nodes and FIFOs, which packages do not ship, are skipped.
pub fn unpack(deb: &Deb, dest: &Path) -> Result<()> {
    if dest.exists() {
        return Err(DebError::DestExists {
            path: dest.to_path_buf(),
        });
    }
    let parent = dest.parent().unwrap_or(Path::new("."));
    create_dir(parent)?;
    let staging = tempfile::Builder::new()
        .prefix(".unpack-")
        .tempdir_in(parent)
        .map_err(|source| write_error(parent, source))?;
    set_mode(staging.path(), 0o755)?;
    with_member(&deb.path, "data.tar", |tar| {
        extract(&deb.path, tar, staging.path())
    })?;
    fs::rename(staging.path(), dest).map_err(|source| write_error(dest, source))?;
    Ok(())
}

/// Extracts every entry of a data tarball under `dest`.
fn extract(deb: &Path, tar: &mut dyn Read, dest: &Path) -> Result<()> {
    let read_error = |source| DebError::Read {
        path: deb.to_path_buf(),
        source,
    };
    let mut dir_modes = Vec::new();
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().map_err(read_error)? {
        let mut entry = entry.map_err(read_error)?;
        let raw = entry.path_bytes().into_owned();
        let unsafe_entry = || DebError::UnsafeEntry {
            path: deb.to_path_buf(),
            entry: String::from_utf8_lossy(&raw).into_owned(),
        };
        let rel = safe_relative(&raw).ok_or_else(unsafe_entry)?;
        if through_symlink(dest, &rel, entry.header().entry_type().is_dir()) {
            return Err(unsafe_entry());
        }
        if let Some(dir) = extract_entry(deb, &mut entry, dest, &rel)? {
            dir_modes.push(dir);
        }
    }
    // Directory modes last: a read-only directory must not stop us filling it.
    dir_modes
        .into_iter()
        .try_for_each(|(path, mode)| set_mode(&path, mode))
}

/// Creates one entry; returns a directory and its mode, to be applied at the end.
fn extract_entry<R: Read>(
    deb: &Path,
    entry: &mut tar::Entry<R>,
    dest: &Path,
    rel: &Path,
) -> Result<Option<(PathBuf, u32)>> {
    let target = dest.join(rel);
    let mode = entry.header().mode().unwrap_or(0o644) & 0o7777;
    let kind = entry.header().entry_type();
    if kind.is_dir() {
        fs::create_dir_all(&target).map_err(|source| write_error(&target, source))?;
        return Ok(Some((target, mode)));
    }
    if let Some(parent) = target.parent() {
        create_dir(parent)?;
    }
    remove_existing(&target)?;
    if kind.is_file() || kind == tar::EntryType::Continuous {
        write_file(entry, &target, mode)?;
    } else if kind.is_symlink() {
        let link = link_name(deb, entry)?;
        std::os::unix::fs::symlink(&link, &target)
            .map_err(|source| write_error(&target, source))?;
    } else if kind.is_hard_link() {
        hard_link_entry(deb, &link_name(deb, entry)?, dest, &target)?;
    } else {
        debug!(entry = %rel.display(), ?kind, "skipping special file");
    }
    Ok(None)
}

fn write_file<R: Read>(entry: &mut tar::Entry<R>, target: &Path, mode: u32) -> Result<()> {
    let write = |source| write_error(target, source);
    let mut file = File::create(target).map_err(write)?;
    io::copy(entry, &mut file).map_err(write)?;
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(write)
}

fn link_name<R: Read>(deb: &Path, entry: &tar::Entry<R>) -> Result<PathBuf> {
    match entry.link_name() {
        Ok(Some(link)) => Ok(link.into_owned()),
        Ok(None) => Err(DebError::UnsafeEntry {
            path: deb.to_path_buf(),
            entry: String::from_utf8_lossy(&entry.path_bytes()).into_owned(),
        }),
        Err(source) => Err(DebError::Read {
            path: deb.to_path_buf(),
            source,
        }),
    }
}

/// Links `target` to the earlier entry `link` (a hard link, or a copy where the
/// filesystem has none). `link` must name a file inside `dest` reached through no
/// symlink, or the link (or copy) could pull in a file from outside the tree.
fn hard_link_entry(deb: &Path, link: &Path, dest: &Path, target: &Path) -> Result<()> {
    let unsafe_link = || DebError::UnsafeEntry {
        path: deb.to_path_buf(),
        entry: link.display().to_string(),
    };
    let rel = safe_relative(link.as_os_str().as_bytes()).ok_or_else(unsafe_link)?;
    if rel.as_os_str().is_empty() || through_symlink(dest, &rel, true) {
        return Err(unsafe_link());
    }
    let source = dest.join(rel);
    if fs::hard_link(&source, target).is_ok() {
        return Ok(());
    }
    fs::copy(&source, target).map_err(|err| write_error(target, err))?;
    Ok(())
}

/// An archive path as a plain relative path (`./a/b` -> `a/b`; `./` -> empty), or
/// `None` when it is absolute or climbs with `..`.
fn safe_relative(raw: &[u8]) -> Option<PathBuf> {
    let path = Path::new(OsStr::from_bytes(raw));
    let mut rel = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => rel.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(rel)
}

/// Whether a parent of `rel` under `dest` (or `rel` itself, for a directory entry, which
/// would be filled later) is a symlink: writing there could leave `dest`.
fn through_symlink(dest: &Path, rel: &Path, include_last: bool) -> bool {
    let mut path = dest.to_path_buf();
    let count = rel.components().count();
    let checked = if include_last {
        count
    } else {
        count.saturating_sub(1)
    };
    rel.components().take(checked).any(|part| {
        path.push(part);
        fs::symlink_metadata(&path).is_ok_and(|meta| meta.file_type().is_symlink())
    })
}

/// Removes a non-directory at `target` so a later entry replaces it instead of
/// writing through it (it might be a symlink).
fn remove_existing(target: &Path) -> Result<()> {
    match fs::symlink_metadata(target) {
        Ok(meta) if meta.is_dir() => Err(write_error(target, io::ErrorKind::AlreadyExists.into())),
        Ok(_) => fs::remove_file(target).map_err(|source| write_error(target, source)),
        Err(_) => Ok(()),
    }
}

fn create_dir(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(|source| write_error(path, source))
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|s| write_error(path, s))
}

fn write_error(path: &Path, source: io::Error) -> DebError {
    DebError::Write {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// One entry of a fixture tarball.
    enum Item<'a> {
        Dir(&'a str, u32),
        File(&'a str, &'a [u8], u32),
        Symlink(&'a str, &'a str),
        HardLink(&'a str, &'a str),
    }

    /// A tar header whose name is written raw, so tests can build hostile paths the
    /// `tar` builder itself refuses.
    fn header(path: &str, kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
        let mut header = tar::Header::new_old();
        header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_entry_type(kind);
        header.set_size(size);
        header.set_mode(mode);
        header
    }

    fn tarball(items: &[Item]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for item in items {
            let (mut header, data): (tar::Header, &[u8]) = match *item {
                Item::Dir(path, mode) => (header(path, tar::EntryType::Directory, 0, mode), b""),
                Item::File(path, data, mode) => {
                    let kind = tar::EntryType::Regular;
                    (header(path, kind, data.len() as u64, mode), data)
                }
                Item::Symlink(path, to) | Item::HardLink(path, to) => {
                    let kind = match item {
                        Item::Symlink(..) => tar::EntryType::Symlink,
                        _ => tar::EntryType::Link,
                    };
                    let mut header = header(path, kind, 0, 0o777);
                    header.as_old_mut().linkname[..to.len()].copy_from_slice(to.as_bytes());
                    (header, b"")
                }
            };
            header.set_cksum();
            builder.append(&header, data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn compress(ext: &str, bytes: &[u8]) -> Vec<u8> {
        match ext {
            "" => bytes.to_vec(),
            ".gz" => {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), Default::default());
                gz.write_all(bytes).unwrap();
                gz.finish().unwrap()
            }
            ".xz" => {
                let mut xz = xz2::write::XzEncoder::new(Vec::new(), 6);
                xz.write_all(bytes).unwrap();
                xz.finish().unwrap()
            }
            ".zst" => zstd::stream::encode_all(bytes, 3).unwrap(),
            other => panic!("no compressor for {other}"),
        }
    }

    const CONTROL: &str = "Package: tool\nVersion: 1:2.0-1\nArchitecture: amd64\n\
        Depends: libc6 (>= 2.34), libfoo1:any | libbar1,\n libbaz (= 1.0) [amd64]\n\
        Description: a tool\n more words\n";

    fn write_deb(dir: &Path, control_ext: &str, data_ext: &str, data: &[Item]) -> PathBuf {
        let control = tarball(&[
            Item::Dir("./", 0o755),
            Item::File("./control", CONTROL.as_bytes(), 0o644),
        ]);
        let members = [
            ("debian-binary".to_string(), b"2.0\n".to_vec()),
            (
                format!("control.tar{control_ext}"),
                compress(control_ext, &control),
            ),
            (
                format!("data.tar{data_ext}"),
                compress(data_ext, &tarball(data)),
            ),
        ];
        let path = dir.join("tool_2.0-1_amd64.deb");
        write_ar(&path, &members);
        path
    }

    fn write_ar(path: &Path, members: &[(String, Vec<u8>)]) {
        let mut builder = ar::Builder::new(File::create(path).unwrap());
        for (name, bytes) in members {
            let header = ar::Header::new(name.clone().into_bytes(), bytes.len() as u64);
            builder.append(&header, bytes.as_slice()).unwrap();
        }
    }

    fn sample() -> Vec<Item<'static>> {
        vec![
            Item::Dir("./", 0o755),
            Item::Dir("./usr/", 0o755),
            Item::Dir("./usr/bin/", 0o755),
            Item::File("./usr/bin/tool", b"#!/bin/true\n", 0o755),
            Item::Symlink("./usr/bin/alias", "tool"),
            Item::HardLink("./usr/bin/tool2", "./usr/bin/tool"),
            Item::Dir("./etc/secret/", 0o700),
            Item::File("./etc/secret/key", b"k", 0o600),
            Item::Symlink("./usr/lib64/ld.so", "/lib/x86_64-linux-gnu/ld.so"),
        ]
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

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
        let control = parse_control(Path::new("meta.deb"), &text).unwrap();
        let next = control
            .first_dependency_with_prefix("linux-image-")
            .unwrap();
        assert_eq!(next.name, "linux-image-6.1.0-56-cloud-amd64");
        assert_eq!(next.exact_version(), Some("6.1.192-2"));
        let text = fs::read_to_string("testdata/deb/linux-image-6.1.0-56-cloud-amd64.control");
        let control = parse_control(Path::new("real.deb"), &text.unwrap()).unwrap();
        assert_eq!(control.first_dependency_with_prefix("linux-image-"), None);
    }

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

    #[test]
    fn kept_answers_serve_while_apt_state_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let name = "cairn-no-such-package";
        let candidate = Candidate {
            name: name.to_owned(),
            version: "1.0".to_owned(),
            file_name: format!("{name}_1.0_amd64.deb"),
            sha256: None,
        };
        let keep = |state: String| {
            let answers = AptAnswers {
                state,
                answers: BTreeMap::from([(name.to_owned(), candidate.clone())]),
            };
            fs::write(
                dir.path().join(ANSWERS_FILE),
                serde_json::to_vec(&answers).unwrap(),
            )
            .unwrap();
        };
        keep(apt_state());
        let cache = DebCache::new(dir.path());
        assert_eq!(cache.candidate(name, None).unwrap(), candidate);

        // Answers from another apt state are not used: apt is asked (and knows nothing).
        keep("another state".to_owned());
        let cache = DebCache::new(dir.path());
        assert!(cache.candidate(name, None).is_err());
    }

    #[test]
    fn unpacks_files_modes_and_links() {
        for (control_ext, data_ext) in [(".gz", ".xz"), (".xz", ".zst"), (".zst", ".gz"), ("", "")]
        {
            let dir = tempfile::tempdir().unwrap();
            let deb = Deb::open(&write_deb(dir.path(), control_ext, data_ext, &sample())).unwrap();
            let dest = dir.path().join("out");
            unpack(&deb, &dest).unwrap();
            assert_eq!(
                fs::read(dest.join("usr/bin/tool")).unwrap(),
                b"#!/bin/true\n"
            );
            assert_eq!(mode(&dest.join("usr/bin/tool")), 0o755);
            assert_eq!(mode(&dest.join("etc/secret/key")), 0o600);
            assert_eq!(mode(&dest.join("etc/secret")), 0o700);
            assert_eq!(mode(&dest), 0o755);
            assert_eq!(
                fs::read_link(dest.join("usr/bin/alias")).unwrap(),
                Path::new("tool")
            );
            let ld = fs::read_link(dest.join("usr/lib64/ld.so")).unwrap();
            assert_eq!(ld, Path::new("/lib/x86_64-linux-gnu/ld.so"));
            assert_eq!(
                fs::read(dest.join("usr/bin/tool2")).unwrap(),
                b"#!/bin/true\n"
            );
        }
    }

    #[test]
    fn refuses_entries_escaping_the_destination() {
        let hostile: [&[Item]; 7] = [
            &[Item::File("../evil", b"x", 0o644)],
            &[Item::File("./usr/../../evil", b"x", 0o644)],
            &[Item::File("/tmp/evil", b"x", 0o644)],
            &[
                Item::Symlink("./lib", "/tmp"),
                Item::File("./lib/evil", b"x", 0o644),
            ],
            &[
                Item::Symlink("./etc", "/etc"),
                Item::HardLink("./evil", "./etc/hostname"),
            ],
            &[
                Item::Symlink("./pw", "/etc/hostname"),
                Item::HardLink("./evil", "./pw"),
            ],
            &[Item::HardLink("./evil", "../etc/hostname")],
        ];
        for items in hostile {
            let dir = tempfile::tempdir().unwrap();
            let deb = Deb::open(&write_deb(dir.path(), ".gz", ".gz", items)).unwrap();
            let dest = dir.path().join("sub/out");
            let err = unpack(&deb, &dest).unwrap_err();
            assert!(matches!(err, DebError::UnsafeEntry { .. }), "{err}");
            assert!(err.to_string().contains("tool_2.0-1_amd64.deb"), "{err}");
            assert!(!dest.exists());
            assert!(!dir.path().join("evil").exists());
            assert_eq!(fs::read_dir(dir.path().join("sub")).unwrap().count(), 0);
        }
    }

    #[test]
    fn corrupt_deb_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.deb");
        fs::write(&garbage, b"this is not an ar archive").unwrap();
        let good = fs::read(write_deb(dir.path(), ".xz", ".xz", &sample())).unwrap();
        let truncated = dir.path().join("truncated.deb");
        fs::write(&truncated, &good[..good.len() / 2]).unwrap();
        for path in [&garbage, &truncated] {
            let err = Deb::open(path).map(|deb| unpack(&deb, &dir.path().join("x")));
            let err = match err {
                Err(err) | Ok(Err(err)) => err,
                Ok(Ok(())) => panic!("{} unpacked", path.display()),
            };
            assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
        }
    }

    #[test]
    fn missing_members_and_unknown_compression_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("odd.deb");
        let control = tarball(&[Item::File("./control", CONTROL.as_bytes(), 0o644)]);
        let control = ("control.tar".to_string(), control);
        write_ar(&path, &[("debian-binary".into(), b"2.0\n".to_vec())]);
        let err = Deb::open(&path).unwrap_err();
        assert!(matches!(err, DebError::MissingMember { .. }), "{err}");
        write_ar(&path, std::slice::from_ref(&control));
        let err = unpack(&Deb::open(&path).unwrap(), &dir.path().join("x")).unwrap_err();
        assert!(matches!(err, DebError::MissingMember { .. }), "{err}");
        write_ar(&path, &[control, ("data.tar.bz2".into(), b"BZh".to_vec())]);
        let err = unpack(&Deb::open(&path).unwrap(), &dir.path().join("x")).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "debian package {} has member data.tar.bz2 with an unsupported compression",
                path.display()
            )
        );
        let empty = tarball(&[Item::File("./md5sums", b"", 0o644)]);
        write_ar(&path, &[("control.tar".into(), empty)]);
        let err = Deb::open(&path).unwrap_err();
        assert!(matches!(err, DebError::NoControl { .. }), "{err}");
    }

    #[test]
    fn unpacked_is_keyed_by_sha256_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let deb = Deb::open(&write_deb(dir.path(), ".xz", ".xz", &sample())).unwrap();
        let cache = DebCache::new(dir.path().join("cache"));
        let tree = cache.unpacked(&deb).unwrap();
        assert_eq!(tree, dir.path().join("cache/unpacked").join(&deb.sha256));
        fs::write(tree.join("marker"), b"").unwrap();
        assert_eq!(cache.unpacked(&deb).unwrap(), tree);
        assert!(tree.join("marker").exists(), "second call unpacked again");
    }

    #[test]
    #[ignore = "needs apt and a Debian mirror"]
    fn fetches_a_real_package() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DebCache::new(dir.path());
        let deb = cache.fetch("hello", None).unwrap();
        assert_eq!(deb.control.package, "hello");
        assert!(cache
            .unpacked(&deb)
            .unwrap()
            .join("usr/bin/hello")
            .is_file());
        assert_eq!(
            cache.fetch("hello", Some(&deb.control.version)).unwrap(),
            deb
        );
        let err = cache.fetch("no-such-package-cairn", None).unwrap_err();
        assert!(matches!(err, DebError::NotFound { .. }), "{err}");
        let err = cache.fetch("hello", Some("0.0-nope")).unwrap_err();
        assert!(matches!(err, DebError::VersionNotFound { .. }), "{err}");
    }
}
