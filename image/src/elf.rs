//! The shared-library closure of the image's executables, read from their ELF headers.
//!
//! The builder never runs `ldd` (it would execute the binary's loader on the build host
//! and report the host's libraries). Instead each input is parsed with goblin: its
//! `PT_INTERP` names the loader, its `DT_NEEDED` entries the sonames it links against.
//! Each soname is looked up the way `ld.so(8)` would on the node: first in the object's
//! own `DT_RUNPATH` (or `DT_RPATH` when it has no runpath; `$ORIGIN` is the object's
//! directory in the image), then in the multiarch default directories. The "filesystem"
//! searched is the set of unpacked Debian package roots, each tagged with the component
//! it is recorded under; for every directory the roots are tried in the order given.
//! Found libraries are parsed in turn, so the closure is transitive.
//!
//! Paths are resolved inside a package root, never on the host: bookworm's libc6 ships
//! `/lib64/ld-linux-x86-64.so.2` as a symlink to `/lib/x86_64-linux-gnu/...`, and both
//! the link and its target are returned, so the image path the binary names keeps
//! working. A candidate for a different machine or ELF class is skipped, as `ld.so`
//! skips it. Inputs without the ELF magic (scripts) are not ours to resolve and are
//! skipped; statically linked inputs need nothing. The result is sorted by image path.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use goblin::elf::Elf;
use thiserror::Error;
use tracing::debug;

/// The `ld.so` default directories for x86_64 Debian, in search order.
pub const DEFAULT_DIRS: [&str; 6] = [
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
];

/// Symlink hops allowed while resolving one path (Linux allows 40).
const MAX_SYMLINK_HOPS: usize = 40;

/// Why the library closure could not be computed.
#[derive(Debug, Error)]
pub enum ElfError {
    #[error("cannot parse ELF file {path}")]
    Parse {
        path: String,
        #[source]
        source: goblin::error::Error,
    },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("library {library} needed by {needed_by} not found in {searched}")]
    MissingLibrary {
        library: String,
        needed_by: String,
        searched: String,
    },
    #[error("interpreter {interpreter} needed by {needed_by} not found in {searched}")]
    MissingInterpreter {
        interpreter: String,
        needed_by: String,
        searched: String,
    },
    #[error("too many levels of symlinks resolving {path} in {component}")]
    SymlinkLoop { path: String, component: String },
}

/// One file (or symlink) the image needs besides its inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Absolute path inside the image, e.g. `/lib/x86_64-linux-gnu/libc.so.6`.
    pub image_path: String,
    /// The file (or the symlink itself) inside its unpacked package root.
    pub host_path: PathBuf,
    /// The component of the root it was found in.
    pub component: String,
    /// For a symlink, its target exactly as the package ships it.
    pub symlink_target: Option<String>,
}

/// The interpreters and libraries `inputs` need, transitively.
///
/// `inputs` are `(image path, file bytes)`; `roots` are `(unpacked package root,
/// component)`. Returns every needed file and symlink not already among the inputs,
/// sorted by image path.
pub fn closure<D: AsRef<[u8]>>(
    inputs: &[(String, D)],
    roots: &[(PathBuf, String)],
) -> Result<Vec<Resolved>, ElfError> {
    let mut search = Search {
        roots,
        inputs: inputs.iter().map(|(path, _)| path.as_str()).collect(),
        found: BTreeMap::new(),
        visited: BTreeSet::new(),
    };
    let mut queue: Vec<Object> = inputs
        .iter()
        .map(|(path, data)| (path.clone(), Cow::Borrowed(data.as_ref())))
        .collect();
    while let Some((path, data)) = queue.pop() {
        if search.visited.insert(path.clone()) {
            queue.extend(search.dependencies_of(&path, &data)?);
        }
    }
    let Search { found, inputs, .. } = search;
    Ok(found
        .into_values()
        .filter(|r| !inputs.contains(r.image_path.as_str()))
        .collect())
}

/// An object to scan: its image path and bytes (an input's, or read from a root).
type Object<'a> = (String, Cow<'a, [u8]>);

/// What one ELF object asks of the loader.
#[derive(Debug, Default)]
struct Needs {
    interpreter: Option<String>,
    libraries: Vec<String>,
    search_dirs: Vec<String>,
    machine: u16,
    is_64: bool,
}

/// The state of one closure computation.
struct Search<'a> {
    roots: &'a [(PathBuf, String)],
    inputs: BTreeSet<&'a str>,
    found: BTreeMap<String, Resolved>,
    visited: BTreeSet<String>,
}

/// A file located in the image's search space.
enum Hit {
    /// One of the inputs: already in the image, scanned as an input.
    Input,
    /// A file in a package root, with the symlinks crossed to reach it.
    Root {
        links: Vec<Resolved>,
        file: Resolved,
    },
}

impl<'a> Search<'a> {
    /// Records what `path` needs and returns the newly found objects to scan.
    fn dependencies_of(&mut self, path: &str, data: &[u8]) -> Result<Vec<Object<'a>>, ElfError> {
        let Some(needs) = parse_needs(path, data)? else {
            debug!(path, "not an ELF file, no libraries to resolve");
            return Ok(Vec::new());
        };
        let mut next = Vec::new();
        if let Some(interpreter) = &needs.interpreter {
            let hit =
                self.locate(interpreter, &needs)?
                    .ok_or_else(|| ElfError::MissingInterpreter {
                        interpreter: interpreter.clone(),
                        needed_by: path.to_string(),
                        searched: self.searched(),
                    })?;
            next.extend(self.record(hit)?);
        }
        for library in &needs.libraries {
            let hit =
                self.find_library(library, &needs)?
                    .ok_or_else(|| ElfError::MissingLibrary {
                        library: library.clone(),
                        needed_by: path.to_string(),
                        searched: self.searched(),
                    })?;
            next.extend(self.record(hit)?);
        }
        Ok(next)
    }

    /// A soname in the object's own search dirs, then the default dirs.
    fn find_library(&self, library: &str, needs: &Needs) -> Result<Option<Hit>, ElfError> {
        if library.contains('/') {
            return self.locate(library, needs);
        }
        let dirs = needs
            .search_dirs
            .iter()
            .map(String::as_str)
            .chain(DEFAULT_DIRS);
        for dir in dirs {
            if let Some(hit) =
                self.locate(&format!("{}/{library}", dir.trim_end_matches('/')), needs)?
            {
                return Ok(Some(hit));
            }
        }
        Ok(None)
    }

    /// `image_path` among the inputs, else in the first root holding a compatible file.
    fn locate(&self, image_path: &str, needs: &Needs) -> Result<Option<Hit>, ElfError> {
        if self.inputs.contains(image_path) {
            return Ok(Some(Hit::Input));
        }
        for (root, component) in self.roots {
            let Some((links, file)) = resolve_in_root(root, component, image_path)? else {
                continue;
            };
            if compatible(&file.host_path, needs)? {
                return Ok(Some(Hit::Root { links, file }));
            }
            debug!(path = %file.host_path.display(), "skipping library for another machine");
        }
        Ok(None)
    }

    /// Adds a hit to the result; returns the file to scan next if it is new.
    fn record(&mut self, hit: Hit) -> Result<Option<Object<'a>>, ElfError> {
        let Hit::Root { links, file } = hit else {
            return Ok(None);
        };
        for link in links {
            self.found.entry(link.image_path.clone()).or_insert(link);
        }
        if self.found.contains_key(&file.image_path) {
            return Ok(None);
        }
        let data = fs::read(&file.host_path).map_err(|source| ElfError::Read {
            path: file.host_path.clone(),
            source,
        })?;
        let path = file.image_path.clone();
        self.found.insert(path.clone(), file);
        Ok(Some((path, Cow::Owned(data))))
    }

    /// The components searched, for error messages.
    fn searched(&self) -> String {
        if self.roots.is_empty() {
            return "no library packages".to_string();
        }
        let names: Vec<&str> = self
            .roots
            .iter()
            .map(|(_, component)| component.as_str())
            .collect();
        names.join(", ")
    }
}

/// The loader requests of an ELF file, or `None` when `data` is not ELF.
fn parse_needs(path: &str, data: &[u8]) -> Result<Option<Needs>, ElfError> {
    if !data.starts_with(b"\x7fELF") {
        return Ok(None);
    }
    let elf = Elf::parse(data).map_err(|source| ElfError::Parse {
        path: path.to_string(),
        source,
    })?;
    // ld.so ignores DT_RPATH when DT_RUNPATH is present.
    let paths = if elf.runpaths.is_empty() {
        &elf.rpaths
    } else {
        &elf.runpaths
    };
    Ok(Some(Needs {
        interpreter: elf.interpreter.map(str::to_string),
        libraries: elf.libraries.iter().map(|l| l.to_string()).collect(),
        search_dirs: expand_search_paths(path, paths),
        machine: elf.header.e_machine,
        is_64: elf.is_64,
    }))
}

/// Splits rpath/runpath entries on `:` and substitutes `$ORIGIN` (the directory of
/// `image_path`). Relative entries (relative to the process's working directory) and
/// other dynamic string tokens (`$LIB`, `$PLATFORM`) cannot be resolved at build time
/// and are dropped.
fn expand_search_paths(image_path: &str, paths: &[&str]) -> Vec<String> {
    let origin = Path::new(image_path)
        .parent()
        .and_then(Path::to_str)
        .unwrap_or("/");
    paths
        .iter()
        .flat_map(|entry| entry.split(':'))
        .map(|dir| dir.replace("${ORIGIN}", origin).replace("$ORIGIN", origin))
        .filter(|dir| dir.starts_with('/') && !dir.contains('$'))
        .map(|dir| normalize(&dir))
        .collect()
}

/// `a/./b/../c` -> `/a/c`, as an absolute image path.
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str().unwrap_or_default()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    format!("/{}", parts.join("/"))
}

/// Whether the ELF file at `host_path` suits an object with `needs`' machine and class.
fn compatible(host_path: &Path, needs: &Needs) -> Result<bool, ElfError> {
    let mut header = [0u8; 64];
    let read = fs::File::open(host_path).and_then(|mut f| read_up_to(&mut f, &mut header));
    let len = read.map_err(|source| ElfError::Read {
        path: host_path.to_path_buf(),
        source,
    })?;
    Ok(match Elf::parse_header(&header[..len]) {
        Ok(parsed) => parsed.e_machine == needs.machine && (parsed.e_ident[4] == 2) == needs.is_64,
        Err(_) => false,
    })
}

fn read_up_to(reader: &mut impl io::Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Resolves `image_path` inside `root` as if `root` were `/`: every symlink crossed is
/// read from the root (absolute targets restart at the root; `..` stops at it).
/// Returns the symlinks crossed and the regular file reached, or `None`.
fn resolve_in_root(
    root: &Path,
    component: &str,
    image_path: &str,
) -> Result<Option<(Vec<Resolved>, Resolved)>, ElfError> {
    let mut walk = Walk {
        root,
        component,
        pending: components(image_path).into_iter().rev().collect(),
        current: Vec::new(),
        links: Vec::new(),
    };
    while let Some(part) = walk.pending.pop() {
        if walk.links.len() > MAX_SYMLINK_HOPS {
            return Err(ElfError::SymlinkLoop {
                path: image_path.to_string(),
                component: component.to_string(),
            });
        }
        if !walk.step(part)? {
            return Ok(None);
        }
    }
    let file = Resolved {
        image_path: format!("/{}", walk.current.join("/")),
        host_path: root.join(walk.current.join("/")),
        component: component.to_string(),
        symlink_target: None,
    };
    Ok(Some((walk.links, file)))
}

/// Path resolution in progress inside one package root.
struct Walk<'a> {
    root: &'a Path,
    component: &'a str,
    /// Components still to resolve, the next one last.
    pending: Vec<String>,
    /// Components resolved so far, none of them a symlink.
    current: Vec<String>,
    links: Vec<Resolved>,
}

impl Walk<'_> {
    /// Resolves one component; `false` when the path does not exist as a file.
    fn step(&mut self, part: String) -> Result<bool, ElfError> {
        if part == ".." {
            self.current.pop();
            return Ok(true);
        }
        self.current.push(part);
        let host = self.root.join(self.current.join("/"));
        let Ok(meta) = fs::symlink_metadata(&host) else {
            return Ok(false);
        };
        if !meta.file_type().is_symlink() {
            let last = self.pending.is_empty();
            return Ok(if last { meta.is_file() } else { meta.is_dir() });
        }
        let link = read_symlink(&host, &self.current, self.component)?;
        let target = link.symlink_target.clone().unwrap_or_default();
        self.current.pop();
        if target.starts_with('/') {
            self.current.clear();
        }
        self.pending.extend(components(&target).into_iter().rev());
        self.links.push(link);
        Ok(true)
    }
}

/// The symlink at `host` (image path `/current...`) as a [`Resolved`] entry.
fn read_symlink(host: &Path, current: &[String], component: &str) -> Result<Resolved, ElfError> {
    let target = fs::read_link(host).map_err(|source| ElfError::Read {
        path: host.to_path_buf(),
        source,
    })?;
    Ok(Resolved {
        image_path: format!("/{}", current.join("/")),
        host_path: host.to_path_buf(),
        component: component.to_string(),
        symlink_target: Some(target.to_string_lossy().into_owned()),
    })
}

/// The named components of a path, keeping `..` (resolved against symlinks later).
fn components(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    //! These read the build host's own binaries and libraries in place: the host is
    //! Debian bookworm (x86_64), like the images we build.
    use super::*;
    use std::os::unix::fs::symlink;

    const MULTIARCH: &str = "/lib/x86_64-linux-gnu";

    /// A package root laid out like bookworm's libc6 (plus any extra host libraries).
    fn libc_root(extra: &[&str]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("lib/x86_64-linux-gnu");
        fs::create_dir_all(&dir).unwrap();
        for name in ["libc.so.6", "ld-linux-x86-64.so.2"].iter().chain(extra) {
            fs::copy(Path::new(MULTIARCH).join(name), dir.join(name)).unwrap();
        }
        fs::create_dir(root.path().join("lib64")).unwrap();
        let ld = root.path().join("lib64/ld-linux-x86-64.so.2");
        symlink("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", ld).unwrap();
        root
    }

    fn input(image_path: &str, host: &str) -> (String, Vec<u8>) {
        (image_path.to_string(), fs::read(host).unwrap())
    }

    fn summary(resolved: &[Resolved]) -> Vec<(&str, &str, Option<&str>)> {
        resolved
            .iter()
            .map(|r| {
                (
                    r.image_path.as_str(),
                    r.component.as_str(),
                    r.symlink_target.as_deref(),
                )
            })
            .collect()
    }

    #[test]
    fn resolves_loader_symlink_and_libc() {
        let root = libc_root(&[]);
        let roots = [(root.path().to_path_buf(), "libc6".to_string())];
        let resolved = closure(&[input("/usr/bin/true", "/bin/true")], &roots).unwrap();
        let loader = "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2";
        assert_eq!(
            summary(&resolved),
            [
                (loader, "libc6", None),
                ("/lib/x86_64-linux-gnu/libc.so.6", "libc6", None),
                ("/lib64/ld-linux-x86-64.so.2", "libc6", Some(loader)),
            ]
        );
        assert_eq!(
            resolved[1].host_path,
            root.path().join("lib/x86_64-linux-gnu/libc.so.6")
        );
    }

    #[test]
    fn closure_is_transitive_across_roots() {
        let libc = libc_root(&[]);
        let selinux = tempfile::tempdir().unwrap();
        let dir = selinux.path().join("usr/lib/x86_64-linux-gnu");
        fs::create_dir_all(&dir).unwrap();
        for name in ["libselinux.so.1", "libpcre2-8.so.0"] {
            fs::copy(Path::new(MULTIARCH).join(name), dir.join(name)).unwrap();
        }
        let roots = [
            (selinux.path().to_path_buf(), "selinux".to_string()),
            (libc.path().to_path_buf(), "libc6".to_string()),
        ];
        let resolved = closure(&[input("/bin/ls", "/bin/ls")], &roots).unwrap();
        let paths: Vec<_> = summary(&resolved)
            .into_iter()
            .map(|(p, c, _)| (p, c))
            .collect();
        assert_eq!(
            paths,
            [
                ("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "libc6"),
                ("/lib/x86_64-linux-gnu/libc.so.6", "libc6"),
                ("/lib64/ld-linux-x86-64.so.2", "libc6"),
                ("/usr/lib/x86_64-linux-gnu/libpcre2-8.so.0", "selinux"),
                ("/usr/lib/x86_64-linux-gnu/libselinux.so.1", "selinux"),
            ]
        );
    }

    #[test]
    fn missing_library_names_binary_and_library() {
        let root = libc_root(&[]);
        let roots = [(root.path().to_path_buf(), "libc6".to_string())];
        let err = closure(&[input("/bin/ls", "/bin/ls")], &roots).unwrap_err();
        assert_eq!(
            err.to_string(),
            "library libselinux.so.1 needed by /bin/ls not found in libc6"
        );
        let err = closure(&[input("/bin/true", "/bin/true")], &[]).unwrap_err();
        let expected = "interpreter /lib64/ld-linux-x86-64.so.2 needed by /bin/true \
            not found in no library packages";
        assert_eq!(err.to_string(), expected);
    }

    #[test]
    fn static_binaries_and_scripts_need_nothing() {
        let inputs = [
            input("/sbin/ldconfig", "/sbin/ldconfig"),
            ("/bin/script".to_string(), b"#!/bin/sh\necho hi\n".to_vec()),
        ];
        assert_eq!(closure(&inputs, &[]).unwrap(), []);
    }

    #[test]
    fn inputs_satisfy_needs_and_are_not_returned() {
        let root = libc_root(&[]);
        let roots = [(root.path().to_path_buf(), "libc6".to_string())];
        let libc = input(
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/lib/x86_64-linux-gnu/libc.so.6",
        );
        let resolved = closure(&[input("/bin/true", "/bin/true"), libc], &roots).unwrap();
        let paths: Vec<_> = resolved.iter().map(|r| r.image_path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
                "/lib64/ld-linux-x86-64.so.2"
            ]
        );
    }

    #[test]
    fn skips_libraries_for_another_machine() {
        let good = libc_root(&[]);
        let bad = tempfile::tempdir().unwrap();
        let dir = bad.path().join("lib/x86_64-linux-gnu");
        fs::create_dir_all(&dir).unwrap();
        let mut libc = fs::read(Path::new(MULTIARCH).join("libc.so.6")).unwrap();
        libc[18] = 0xb7; // e_machine = EM_AARCH64
        fs::write(dir.join("libc.so.6"), libc).unwrap();
        let roots = [
            (bad.path().to_path_buf(), "foreign".to_string()),
            (good.path().to_path_buf(), "libc6".to_string()),
        ];
        let resolved = closure(&[input("/bin/true", "/bin/true")], &roots).unwrap();
        assert!(
            resolved.iter().all(|r| r.component == "libc6"),
            "{resolved:?}"
        );
    }

    #[test]
    fn symlink_loops_are_errors() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("lib64")).unwrap();
        symlink("loop", root.path().join("lib64/ld-linux-x86-64.so.2")).unwrap();
        symlink("ld-linux-x86-64.so.2", root.path().join("lib64/loop")).unwrap();
        let roots = [(root.path().to_path_buf(), "libc6".to_string())];
        let err = closure(&[input("/bin/true", "/bin/true")], &roots).unwrap_err();
        assert!(matches!(err, ElfError::SymlinkLoop { .. }), "{err}");
    }

    #[test]
    fn malformed_elf_is_an_error_naming_it() {
        let mut data = fs::read("/bin/true").unwrap();
        data.truncate(200);
        let err = closure(&[("/bin/broken".to_string(), data)], &[]).unwrap_err();
        assert!(err.to_string().contains("/bin/broken"), "{err}");
    }

    #[test]
    fn expands_origin_in_runpath() {
        let dirs = expand_search_paths(
            "/opt/app/bin/tool",
            &[
                "$ORIGIN/../lib:/usr/local/lib",
                "${ORIGIN}",
                "relative",
                "$LIB/x",
            ],
        );
        assert_eq!(dirs, ["/opt/app/lib", "/usr/local/lib", "/opt/app/bin"]);
    }
}
