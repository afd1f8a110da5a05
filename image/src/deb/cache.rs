//! Downloaded `.deb`s and their unpacked trees under one directory, with apt's
//! answers kept beside them.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use tracing::{debug, info, warn};

use super::apt::{
    apt_state, match_candidates, resolve, run_apt, single_deb_in, spec_text, AptAnswers, Candidate,
    Spec, ANSWERS_FILE,
};
use super::unpack::unpack;
use super::{create_dir, write_error, Deb, DebError, Result, MAX_META_DEPTH};

/// Downloaded `.deb`s and their unpacked trees, under one directory.
#[derive(Debug, Clone)]
pub struct DebCache {
    root: PathBuf,
    /// What apt answered (now or in an earlier build with the same apt state), by
    /// the spec asked for; `None` until first used.
    resolved: Arc<Mutex<Option<AptAnswers>>>,
    /// Packages already opened (and their sha256 checked) in this build, by file name:
    /// a build asks for each one more than once (its up-to-date check, then the plan).
    opened: Arc<Mutex<BTreeMap<String, Deb>>>,
}

impl DebCache {
    /// A cache rooted at `root` (created on first use).
    pub fn new(root: impl Into<PathBuf>) -> DebCache {
        DebCache {
            root: root.into(),
            resolved: Arc::default(),
            opened: Arc::default(),
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
        let opened = self.opened.lock().expect("no panic while holding the lock");
        if let Some(deb) = opened.get(&candidate.file_name) {
            return Ok(deb.clone());
        }
        drop(opened);
        let deb = self.fetch_candidate(name, &candidate)?;
        let mut opened = self.opened.lock().expect("no panic while holding the lock");
        opened.insert(candidate.file_name, deb.clone());
        Ok(deb)
    }

    /// [`DebCache::fetch`] of what apt answered, from the cache or downloaded.
    fn fetch_candidate(&self, name: &str, candidate: &Candidate) -> Result<Deb> {
        let path = self.root.join(&candidate.file_name);
        if path.exists() {
            match check_cached(&path, candidate) {
                Ok(deb) => {
                    debug!(package = name, path = %path.display(), "reusing cached deb");
                    return Ok(deb);
                }
                Err(err) => {
                    warn!(package = name, error = %err, "cached deb unusable, downloading again")
                }
            }
        }
        self.download(candidate, &path)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deb::fixtures::*;
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
