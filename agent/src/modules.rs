//! Boot step: load the kernel modules the image builder listed.
//!
//! `/etc/cairn/modules.load` holds one absolute `.ko` path per line, dependencies first
//! (the builder resolves the order from each module's `.modinfo`; Debian ships no
//! `modules.dep`). Each is loaded with finit_module(2) from an open file, so the kernel
//! reads it itself and the agent needs no decompression or symbol resolution.

use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::syscall::Syscall;
use crate::Paths;

#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("failed to read {}", .0.display())]
    Read(PathBuf, #[source] io::Error),
    #[error("invalid entry at {}:{}", .0.display(), .1.line)]
    Parse(PathBuf, #[source] ParseError),
    #[error("failed to load kernel module {}", .0.display())]
    Load(PathBuf, #[source] Errno),
}

/// A line of `modules.load` that is not an absolute `.ko` path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {text:?}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    pub text: String,
    pub reason: &'static str,
}

/// The module paths in `text`, in order. `#` starts a comment; blank lines are skipped.
pub fn parse_modules_load(text: &str) -> Result<Vec<PathBuf>, ParseError> {
    let mut modules = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let entry = raw.split('#').next().unwrap_or_default().trim();
        if entry.is_empty() {
            continue;
        }
        let reason = if !entry.starts_with('/') {
            Some("not an absolute path")
        } else if !entry.ends_with(".ko") {
            Some("not an uncompressed .ko file")
        } else if entry.contains(char::is_whitespace) {
            Some("more than one path on a line")
        } else {
            None
        };
        if let Some(reason) = reason {
            let text = raw.to_owned();
            return Err(ParseError {
                line: index + 1,
                text,
                reason,
            });
        }
        modules.push(PathBuf::from(entry));
    }
    Ok(modules)
}

/// How many modules were loaded now and how many the kernel already had.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadSummary {
    pub loaded: usize,
    pub already_loaded: usize,
}

/// Loads every module `modules.load` lists, in order; stops at the first failure.
/// A missing list means an image without loadable modules, which is allowed.
pub fn load_listed(sys: &dyn Syscall, paths: &Paths) -> Result<LoadSummary, ModuleError> {
    let list = paths.modules_load();
    let text = match std::fs::read_to_string(&list) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            tracing::warn!("{} is missing; loading no modules", list.display());
            return Ok(LoadSummary::default());
        }
        Err(err) => return Err(ModuleError::Read(list, err)),
    };
    let modules = parse_modules_load(&text).map_err(|e| ModuleError::Parse(list, e))?;
    let mut summary = LoadSummary::default();
    for module in &modules {
        if load_one(sys, paths, module)? {
            summary.loaded += 1;
        } else {
            summary.already_loaded += 1;
        }
    }
    Ok(summary)
}

/// Loads one module; `Ok(false)` if the kernel already had it (EEXIST, init_module(2)).
fn load_one(sys: &dyn Syscall, paths: &Paths, module: &Path) -> Result<bool, ModuleError> {
    match sys.finit_module(&paths.resolve(module)) {
        Ok(()) => {
            tracing::debug!("loaded {}", module.display());
            Ok(true)
        }
        Err(Errno::EEXIST) => {
            tracing::debug!("{} was already loaded", module.display());
            Ok(false)
        }
        Err(errno) => Err(ModuleError::Load(module.to_owned(), errno)),
    }
}

/// Module names in proc(5) `/proc/modules` text: the first field of each line.
pub fn loaded_module_names(proc_modules: &str) -> Vec<String> {
    proc_modules
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
#[path = "modules_tests.rs"]
mod tests;
