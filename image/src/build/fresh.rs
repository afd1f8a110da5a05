//! Deciding that an image is current without building it.
//!
//! A build records the facts it was made from in its image directory (file
//! [`FACTS_FILE`]): the builder executable, the merged config, the build info, every
//! component's source (a built binary's or repository file's size, mtime and inode; a
//! Debian package's sha256) and, last, the size and mtime of each file it wrote. The
//! next build gathers the input facts again, which costs Cargo's and the Go script's
//! own up-to-date checks and a few `stat`s, and when they and the outputs are the same
//! it reports the image as current instead of assembling it again.
//!
//! The facts are written after the new image is swapped into place, so an interrupted
//! build leaves either the previous image with its own facts or the new image with none
//! (rebuilt next time): never an output a later check would take for the result of
//! inputs it did not see. One build at a time holds an output directory's lock.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};

use super::BuildError;
use crate::manifest::Manifest;

/// The image directory's files the facts describe (all that `output` writes).
const OUTPUTS: [&str; 4] = ["vmlinuz", "initramfs.img", "cmdline", "manifest.json"];

/// The facts file in an image directory (docs/interfaces.md "Image directory").
pub const FACTS_FILE: &str = ".build-facts";
/// Version of the facts file's format: a builder reading another version rebuilds.
const FORMAT: &str = "cairn-build-facts 1";
/// Output facts are keyed `output/<file name>`, after every input fact.
const OUTPUT_PREFIX: &str = "output/";

/// Named facts, each one line of text; compared as a whole, reported by the first key
/// that differs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Facts(BTreeMap<String, String>);

impl Facts {
    pub fn add(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let value: String = value.into();
        // One fact per line: a value never spans two.
        self.0.insert(key.into(), value.replace('\n', " "));
    }

    /// A fact for a file the build reads: its size, modification time and inode (which
    /// change when it is rewritten or replaced), not its contents.
    pub fn add_file(&mut self, key: impl Into<String>, path: &Path) -> Result<(), BuildError> {
        let key = key.into();
        let value = stat(path).map_err(|source| BuildError::ReadInput {
            component: key.clone(),
            path: path.to_owned(),
            source,
        })?;
        self.add(key, value);
        Ok(())
    }

    /// A fact digested: for inputs too large to keep as text (the merged config).
    pub fn add_digest(&mut self, key: impl Into<String>, bytes: &[u8]) {
        self.add(key, hex::encode(Sha256::digest(bytes)));
    }

    /// Adds each file in `dir` named by `names` as an output fact.
    pub fn add_outputs(&mut self, dir: &Path, names: &[&str]) -> std::io::Result<()> {
        for name in names {
            self.add(format!("{OUTPUT_PREFIX}{name}"), stat(&dir.join(name))?);
        }
        Ok(())
    }

    pub fn to_text(&self) -> String {
        let mut text = format!("{FORMAT}\n");
        for (key, value) in &self.0 {
            let _ = writeln!(text, "{key}\t{value}");
        }
        text
    }

    /// The facts in `text`, or `None` when it is no facts file of this format.
    pub fn parse(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        if lines.next()? != FORMAT {
            return None;
        }
        let mut facts = Facts::default();
        for line in lines {
            let (key, value) = line.split_once('\t')?;
            facts.add(key, value);
        }
        Some(facts)
    }

    /// Only the facts about inputs.
    fn inputs(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter().filter(|(k, _)| !k.starts_with(OUTPUT_PREFIX))
    }

    /// The output file names these facts describe.
    fn outputs(&self) -> impl Iterator<Item = (&str, &String)> {
        self.0
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(OUTPUT_PREFIX)?, v)))
    }
}

/// Whether the image in `out` was built from `inputs` and is still as it was written.
#[derive(Debug, PartialEq, Eq)]
pub enum Freshness {
    Current,
    /// Why not, for the build's log: the first fact that differs.
    Stale(String),
}

/// Compares `inputs` (gathered now) with the facts kept in `out`.
pub fn check(out: &Path, inputs: &Facts) -> Freshness {
    let Ok(text) = fs::read_to_string(out.join(FACTS_FILE)) else {
        return Freshness::Stale("no earlier build in this directory".into());
    };
    let Some(kept) = Facts::parse(&text) else {
        return Freshness::Stale(format!("{FACTS_FILE} is from another builder version"));
    };
    if let Some(why) = first_difference(inputs.inputs(), kept.inputs()) {
        return Freshness::Stale(why);
    }
    if kept.outputs().next().is_none() {
        return Freshness::Stale(format!("{FACTS_FILE} names no output"));
    }
    for (name, value) in kept.outputs() {
        if stat(&out.join(name)).ok().as_ref() != Some(value) {
            return Freshness::Stale(format!("{name} was changed or removed since it was built"));
        }
    }
    Freshness::Current
}

/// Writes `inputs` and the facts of the image just written to `out` into `out`.
pub fn record(out: &Path, mut inputs: Facts) -> Result<(), BuildError> {
    let path = out.join(FACTS_FILE);
    let fail = |source| BuildError::Output {
        path: path.clone(),
        source,
    };
    inputs.add_outputs(out, &OUTPUTS).map_err(fail)?;
    let mut file = tempfile::NamedTempFile::new_in(out).map_err(fail)?;
    std::io::Write::write_all(&mut file, inputs.to_text().as_bytes()).map_err(fail)?;
    file.persist(&path).map_err(|e| fail(e.error))?;
    Ok(())
}

/// The manifest of the image in `out`, if it is there and readable.
pub fn read_manifest(out: &Path) -> Option<Manifest> {
    let bytes = fs::read(out.join("manifest.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The name prefix of `out`'s staging directories (beside it, see `output`).
pub fn staging_prefix(out: &Path) -> String {
    format!(".{}.cairn-image-", out_name(out))
}

fn out_name(out: &Path) -> String {
    out.file_name()
        .unwrap_or(out.as_os_str())
        .to_string_lossy()
        .into_owned()
}

/// The directory `out` is written in (beside it: staging, the lock).
pub fn parent_of(out: &Path) -> &Path {
    out.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Holds `out`'s lock (a file `.<name>.lock` beside it) until dropped, waiting (and
/// saying so) while another build of the same directory runs. Once held, staging
/// directories a killed build of `out` left behind are removed.
pub fn lock(out: &Path) -> Result<Flock<fs::File>, BuildError> {
    let parent = parent_of(out);
    let path = parent.join(format!(".{}.lock", out_name(out)));
    let fail = |source| BuildError::Output {
        path: path.clone(),
        source,
    };
    fs::create_dir_all(parent).map_err(fail)?;
    let file = fs::File::create(&path).map_err(fail)?;
    let held = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(held) => held,
        Err((file, _busy)) => {
            eprintln!(
                "cairn-image: waiting for another build of {}",
                out.display()
            );
            Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| fail(errno.into()))?
        }
    };
    remove_leftovers(out);
    Ok(held)
}

/// Staging directories of `out` no build is writing (its lock is ours).
fn remove_leftovers(out: &Path) {
    let prefix = staging_prefix(out);
    let Ok(entries) = fs::read_dir(parent_of(out)) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            eprintln!(
                "cairn-image: removing {}, left by an interrupted build",
                entry.path().display()
            );
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// The first key whose value differs between `now` and `kept`.
fn first_difference<'a>(
    now: impl Iterator<Item = (&'a String, &'a String)>,
    kept: impl Iterator<Item = (&'a String, &'a String)>,
) -> Option<String> {
    let now: BTreeMap<&String, &String> = now.collect();
    let kept: BTreeMap<&String, &String> = kept.collect();
    let keys: std::collections::BTreeSet<&String> =
        now.keys().chain(kept.keys()).copied().collect();
    keys.into_iter()
        .find_map(|key| match (now.get(key), kept.get(key)) {
            (Some(a), Some(b)) if a == b => None,
            (Some(_), Some(_)) => Some(format!("{key} changed")),
            (Some(_), None) => Some(format!("{key} is new")),
            (None, _) => Some(format!("{key} is gone")),
        })
}

fn stat(path: &Path) -> std::io::Result<String> {
    let meta = fs::metadata(path)?;
    Ok(format!(
        "{} size {} mtime {}.{:09} ino {}",
        path.display(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ino()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(pairs: &[(&str, &str)]) -> Facts {
        let mut facts = Facts::default();
        for (k, v) in pairs {
            facts.add(*k, *v);
        }
        facts
    }

    /// An image directory with one output file and the facts of a build of `inputs`.
    fn built(inputs: &Facts) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("initramfs.img"), b"archive").unwrap();
        let mut kept = inputs.clone();
        kept.add_outputs(dir.path(), &["initramfs.img"]).unwrap();
        fs::write(dir.path().join(FACTS_FILE), kept.to_text()).unwrap();
        dir
    }

    #[test]
    fn facts_survive_their_text_form() {
        let facts = facts(&[("config", "abc"), ("component/agent", "x size 1")]);
        assert_eq!(Facts::parse(&facts.to_text()), Some(facts));
        assert_eq!(Facts::parse("other format\nconfig\tabc\n"), None);
        assert_eq!(Facts::parse(&format!("{FORMAT}\nno tab here\n")), None);
    }

    #[test]
    fn the_same_inputs_and_untouched_outputs_are_current() {
        let inputs = facts(&[("config", "abc"), ("component/agent", "1")]);
        let dir = built(&inputs);
        assert_eq!(check(dir.path(), &inputs), Freshness::Current);
    }

    #[test]
    fn a_changed_new_or_gone_input_is_named() {
        let dir = built(&facts(&[("config", "abc"), ("component/agent", "1")]));
        let changed = facts(&[("config", "abc"), ("component/agent", "2")]);
        let new = facts(&[("config", "abc"), ("component/agent", "1"), ("kernel", "k")]);
        let gone = facts(&[("config", "abc")]);
        let stale = |f: &Facts| match check(dir.path(), f) {
            Freshness::Stale(why) => why,
            Freshness::Current => panic!("{f:?} taken as current"),
        };
        assert_eq!(stale(&changed), "component/agent changed");
        assert_eq!(stale(&new), "kernel is new");
        assert_eq!(stale(&gone), "component/agent is gone");
    }

    #[test]
    fn taking_the_lock_removes_only_this_outputs_leftover_staging() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("image");
        let mine = dir.path().join(format!("{}abc", staging_prefix(&out)));
        let other = dir
            .path()
            .join(format!("{}abc", staging_prefix(&dir.path().join("prod"))));
        for staged in [&mine, &other] {
            fs::create_dir_all(staged.join("sub")).unwrap();
            fs::write(staged.join("sub/initramfs.img"), b"half").unwrap();
        }
        let held = lock(&out).unwrap();
        assert!(!mine.exists(), "a killed build's staging directory is left");
        assert!(
            other.exists(),
            "another output's staging directory was removed"
        );
        drop(held);
    }

    #[test]
    fn a_rewritten_or_missing_output_or_facts_file_is_stale() {
        let inputs = facts(&[("config", "abc")]);
        let dir = built(&inputs);
        let img = dir.path().join("initramfs.img");
        // Rewritten in place with the same size: only its mtime tells.
        fs::write(&img, b"ARCHIVE").unwrap();
        let file = fs::File::options().write(true).open(&img).unwrap();
        file.set_modified(std::time::UNIX_EPOCH).unwrap();
        assert_eq!(
            check(dir.path(), &inputs),
            Freshness::Stale("initramfs.img was changed or removed since it was built".into())
        );
        fs::remove_file(&img).unwrap();
        assert!(matches!(check(dir.path(), &inputs), Freshness::Stale(_)));
        fs::remove_file(dir.path().join(FACTS_FILE)).unwrap();
        assert_eq!(
            check(dir.path(), &inputs),
            Freshness::Stale("no earlier build in this directory".into())
        );
    }
}
