//! Kernel module closure, read from the modules themselves.
//!
//! Debian's kernel package ships no `modules.dep` (depmod runs at install time), so
//! the dependencies come from each module's ELF `.modinfo` section: NUL-separated
//! `key=value` strings, where `depends=a,b` lists the modules whose symbols it uses and
//! `softdep=pre: x y post: z` the ones modprobe loads around it. [`KernelTree`] indexes
//! an unpacked kernel package (`lib/modules/<release>/**/*.ko[.xz|.zst]` by module
//! name, `-` read as `_` as the kernel does, plus `modules.builtin`), and
//! [`KernelTree::closure`] expands the requested names: every `depends` entry must
//! exist (as a module or built in), `pre:` softdeps are followed when such a module
//! exists (they are often crypto aliases, which are not module names), `post:` softdeps
//! are not needed to load a module and are left out. Built-in names are dropped and
//! reported.
//!
//! The load order is a topological order with dependencies first, ties broken by
//! name, so it depends only on the set of modules, not on how the config lists them.
//! The kernel rejects circular `depends`, but softdeps could form a cycle; that is an
//! error naming the cycle instead of a hang.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use goblin::elf::Elf;
use thiserror::Error;
use tracing::warn;

/// Where kernel packages put modules, relative to the package root.
const MODULE_DIRS: [&str; 2] = ["lib/modules", "usr/lib/modules"];

/// Why a kernel tree could not be read or a module closure computed.
#[derive(Debug, Error)]
pub enum ModuleError {
    #[error("no kernel release under {root}/lib/modules with a matching boot/vmlinuz-<release>")]
    NoRelease { root: PathBuf },
    #[error("several kernel releases under {root}: {releases}")]
    ManyReleases { root: PathBuf, releases: String },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot parse kernel module {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: goblin::error::Error,
    },
    #[error("kernel module {path} has no .modinfo section")]
    NoModinfo { path: PathBuf },
    #[error("kernel {release} has no module `{name}` (neither a .ko file nor built in)")]
    Unknown { name: String, release: String },
    #[error(
        "kernel module `{module}` depends on `{dependency}`, which kernel {release} does not have"
    )]
    MissingDependency {
        module: String,
        dependency: String,
        release: String,
    },
    #[error("kernel {release} modules depend on each other in a cycle: {cycle}")]
    Cycle { cycle: String, release: String },
}

type Result<T> = std::result::Result<T, ModuleError>;

/// A module to load, at its path relative to the kernel tree's root (which is also
/// its path in the image, without the leading `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub name: String,
    pub path: PathBuf,
}

/// The modules to load for a request, and which requested names are built in.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Closure {
    /// In load order: every module after the modules it depends on.
    pub modules: Vec<Module>,
    /// Requested names (normalised) that are built into the kernel: nothing to load.
    pub builtin: Vec<String>,
}

/// An unpacked kernel package: its release, kernel image and module index.
#[derive(Debug, Clone)]
pub struct KernelTree {
    root: PathBuf,
    release: String,
    /// `lib/modules/<release>`, relative to `root`.
    modules_dir: PathBuf,
    /// Module name -> path relative to `root`.
    modules: BTreeMap<String, PathBuf>,
    builtin: BTreeSet<String>,
}

/// A module name as the kernel compares them: `-` and `_` are the same.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

impl KernelTree {
    /// Indexes the kernel package unpacked at `root`.
    pub fn open(root: &Path) -> Result<KernelTree> {
        let (modules_dir, release) = find_release(root)?;
        let mut modules = BTreeMap::new();
        index_modules(root, &modules_dir, &mut modules)?;
        let builtin = read_builtin(&root.join(&modules_dir).join("modules.builtin"))?;
        Ok(KernelTree {
            root: root.to_path_buf(),
            release,
            modules_dir,
            modules,
            builtin,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The kernel release, e.g. `6.1.0-56-cloud-amd64`.
    pub fn release(&self) -> &str {
        &self.release
    }

    /// The kernel image, `boot/vmlinuz-<release>` under the root.
    pub fn vmlinuz(&self) -> PathBuf {
        self.root
            .join("boot")
            .join(format!("vmlinuz-{}", self.release))
    }

    /// `lib/modules/<release>`, relative to the root.
    pub fn modules_dir(&self) -> &Path {
        &self.modules_dir
    }

    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&normalize(name))
    }

    /// The path (relative to the root) of the module `name`, if it is one.
    pub fn module_path(&self, name: &str) -> Option<&Path> {
        self.modules.get(&normalize(name)).map(PathBuf::as_path)
    }

    /// The modules `names` need, dependencies first; built-in names are reported, not
    /// loaded.
    pub fn closure<S: AsRef<str>>(&self, names: &[S]) -> Result<Closure> {
        let mut closure = Closure::default();
        let mut wanted = Vec::new();
        for name in names.iter().map(|name| normalize(name.as_ref())) {
            if self.builtin.contains(&name) {
                if !closure.builtin.contains(&name) {
                    closure.builtin.push(name);
                }
            } else if self.modules.contains_key(&name) {
                wanted.push(name);
            } else {
                return Err(ModuleError::Unknown {
                    name,
                    release: self.release.clone(),
                });
            }
        }
        let graph = self.dependency_graph(wanted)?;
        closure.modules = self
            .load_order(&graph)?
            .into_iter()
            .map(|name| Module {
                path: self.modules[&name].clone(),
                name,
            })
            .collect();
        Ok(closure)
    }

    /// Every module reachable from `wanted`, each with the modules to load before it.
    fn dependency_graph(
        &self,
        mut wanted: Vec<String>,
    ) -> Result<BTreeMap<String, BTreeSet<String>>> {
        let mut graph = BTreeMap::new();
        while let Some(name) = wanted.pop() {
            if graph.contains_key(&name) {
                continue;
            }
            let deps = self.load_before(&name)?;
            wanted.extend(deps.iter().cloned());
            graph.insert(name, deps);
        }
        Ok(graph)
    }

    /// The modules (not built-ins) `name` needs loaded first.
    fn load_before(&self, name: &str) -> Result<BTreeSet<String>> {
        let info = read_modinfo(&self.root.join(&self.modules[name]))?;
        let mut deps = BTreeSet::new();
        for dependency in info.depends {
            if self.modules.contains_key(&dependency) {
                deps.insert(dependency);
            } else if !self.builtin.contains(&dependency) {
                return Err(ModuleError::MissingDependency {
                    module: name.to_string(),
                    dependency,
                    release: self.release.clone(),
                });
            }
        }
        let soft = info
            .softdep_pre
            .into_iter()
            .filter(|dep| self.modules.contains_key(dep));
        deps.extend(soft.filter(|dep| dep != name));
        Ok(deps)
    }

    /// Kahn's algorithm, always taking the smallest ready name.
    fn load_order(&self, graph: &BTreeMap<String, BTreeSet<String>>) -> Result<Vec<String>> {
        let mut waiting: BTreeMap<&str, usize> =
            graph.iter().map(|(n, d)| (n.as_str(), d.len())).collect();
        let mut ready: BTreeSet<&str> = waiting
            .iter()
            .filter(|(_, &n)| n == 0)
            .map(|(&m, _)| m)
            .collect();
        let mut order = Vec::with_capacity(graph.len());
        while let Some(name) = ready.pop_first() {
            waiting.remove(name);
            order.push(name.to_string());
            for (dependent, deps) in graph {
                let Some(count) = waiting.get_mut(dependent.as_str()) else {
                    continue;
                };
                if deps.contains(name) {
                    *count -= 1;
                    if *count == 0 {
                        ready.insert(dependent);
                    }
                }
            }
        }
        if !waiting.is_empty() {
            return Err(ModuleError::Cycle {
                cycle: find_cycle(graph, &waiting.keys().copied().collect()),
                release: self.release.clone(),
            });
        }
        Ok(order)
    }
}

/// A cycle among `stuck` (modules Kahn's algorithm could not order), as `a -> b -> a`.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>, stuck: &BTreeSet<&str>) -> String {
    // Every stuck module waits on another stuck one, so walking "first stuck
    // dependency" edges must revisit a module within `stuck.len()` steps.
    let Some(&start) = stuck.first() else {
        return String::new();
    };
    let mut path = vec![start];
    loop {
        let last = path[path.len() - 1];
        let next = graph[last]
            .iter()
            .map(String::as_str)
            .find(|dep| stuck.contains(dep));
        let Some(next) = next else {
            return path.join(" -> ");
        };
        if let Some(at) = path.iter().position(|&seen| seen == next) {
            let mut cycle = path.split_off(at);
            cycle.push(next);
            return cycle.join(" -> ");
        }
        path.push(next);
    }
}

/// The one `<dir>/<release>` with a `boot/vmlinuz-<release>` beside it.
fn find_release(root: &Path) -> Result<(PathBuf, String)> {
    let mut found = Vec::new();
    for dir in MODULE_DIRS {
        let Ok(entries) = fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries.filter_map(|entry| entry.ok()) {
            let release = entry.file_name().to_string_lossy().into_owned();
            if root
                .join("boot")
                .join(format!("vmlinuz-{release}"))
                .is_file()
            {
                found.push((Path::new(dir).join(&release), release));
            }
        }
    }
    found.sort();
    match found.len() {
        0 => Err(ModuleError::NoRelease {
            root: root.to_path_buf(),
        }),
        1 => Ok(found.remove(0)),
        _ => Err(ModuleError::ManyReleases {
            root: root.to_path_buf(),
            releases: found
                .into_iter()
                .map(|(_, r)| r)
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Adds every module file under `root/dir` to `modules`, by name; on a duplicate name
/// the first path in sorted order wins.
fn index_modules(root: &Path, dir: &Path, modules: &mut BTreeMap<String, PathBuf>) -> Result<()> {
    let host = root.join(dir);
    let entries = fs::read_dir(&host).map_err(|source| ModuleError::Read {
        path: host.clone(),
        source,
    })?;
    let mut entries: Vec<_> = entries.filter_map(|entry| entry.ok()).collect();
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let rel = dir.join(entry.file_name());
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            index_modules(root, &rel, modules)?;
        } else if let Some(name) = module_name(&entry.file_name().to_string_lossy()) {
            if let Some(first) = modules.get(&name) {
                warn!(module = %name, kept = %first.display(), ignored = %rel.display(), "duplicate module");
                continue;
            }
            modules.insert(name, rel);
        }
    }
    Ok(())
}

/// The module name of a module file name (`virtio-rng.ko` -> `virtio_rng`).
fn module_name(file_name: &str) -> Option<String> {
    let stem = [".ko", ".ko.xz", ".ko.zst"]
        .iter()
        .find_map(|ext| file_name.strip_suffix(ext))?;
    Some(normalize(stem))
}

/// The names in `modules.builtin` (one `kernel/.../name.ko` per line); a kernel
/// without the file has no built-in modules we could know of.
fn read_builtin(path: &Path) -> Result<BTreeSet<String>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(source) => {
            return Err(ModuleError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    Ok(text
        .lines()
        .filter_map(|line| {
            Path::new(line.trim())
                .file_name()?
                .to_str()
                .and_then(module_name)
        })
        .collect())
}

/// What `.modinfo` says about loading a module.
#[derive(Debug, Default, PartialEq, Eq)]
struct ModInfo {
    depends: Vec<String>,
    softdep_pre: Vec<String>,
}

/// Reads a module file (decompressing `.ko.xz`/`.ko.zst`) and parses its `.modinfo`.
fn read_modinfo(path: &Path) -> Result<ModInfo> {
    let read_error = |source| ModuleError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = fs::File::open(path).map_err(read_error)?;
    let mut data = Vec::new();
    let name = path.to_string_lossy();
    if name.ends_with(".xz") {
        xz2::read::XzDecoder::new(file).read_to_end(&mut data)
    } else if name.ends_with(".zst") {
        zstd::stream::read::Decoder::new(file).and_then(|mut d| d.read_to_end(&mut data))
    } else {
        { file }.read_to_end(&mut data)
    }
    .map_err(read_error)?;
    let section = modinfo_section(path, &data)?;
    Ok(parse_modinfo(section))
}

/// The bytes of the `.modinfo` section of an ELF relocatable.
fn modinfo_section<'a>(path: &Path, data: &'a [u8]) -> Result<&'a [u8]> {
    let elf = Elf::parse(data).map_err(|source| ModuleError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    let no_modinfo = || ModuleError::NoModinfo {
        path: path.to_path_buf(),
    };
    let header = elf
        .section_headers
        .iter()
        .find(|sh| elf.shdr_strtab.get_at(sh.sh_name) == Some(".modinfo"))
        .ok_or_else(no_modinfo)?;
    let start = usize::try_from(header.sh_offset).map_err(|_| no_modinfo())?;
    let len = usize::try_from(header.sh_size).map_err(|_| no_modinfo())?;
    data.get(start..start.checked_add(len).ok_or_else(no_modinfo)?)
        .ok_or_else(no_modinfo)
}

/// Parses NUL-separated `key=value` strings.
fn parse_modinfo(section: &[u8]) -> ModInfo {
    let mut info = ModInfo::default();
    for entry in section.split(|&b| b == 0) {
        let entry = String::from_utf8_lossy(entry);
        let Some((key, value)) = entry.split_once('=') else {
            continue;
        };
        match key {
            "depends" => info.depends.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .map(normalize),
            ),
            "softdep" => info.softdep_pre.extend(softdep_pre(value)),
            _ => {}
        }
    }
    info
}

/// The `pre:` names of a softdep value (`pre: a b post: c`); names before any
/// `pre:`/`post:` are ignored, as modprobe does.
fn softdep_pre(value: &str) -> Vec<String> {
    let mut pre = false;
    let mut names = Vec::new();
    for token in value.split_whitespace() {
        match token {
            "pre:" => pre = true,
            "post:" => pre = false,
            name if pre => names.push(normalize(name)),
            _ => {}
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELEASE: &str = "6.1.0-test-amd64";

    /// A minimal ELF64 relocatable holding one `.modinfo` section: the ELF header,
    /// the section bytes, the section-name table, then three section headers
    /// (null, `.modinfo`, `.shstrtab`).
    fn module_elf(modinfo: &str) -> Vec<u8> {
        let shstrtab = b"\0.modinfo\0.shstrtab\0";
        let modinfo_off = 64u64;
        let shstrtab_off = modinfo_off + modinfo.len() as u64;
        let shoff = (shstrtab_off + shstrtab.len() as u64).next_multiple_of(8);
        let mut elf = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        for (value, size) in [
            (1u64, 2),
            (62, 2),
            (1, 4),
            (0, 8),
            (0, 8),
            (shoff, 8),
            (0, 4),
        ] {
            elf.extend_from_slice(&value.to_le_bytes()[..size]); // type .. flags
        }
        for value in [64u16, 0, 0, 64, 3, 2] {
            elf.extend_from_slice(&value.to_le_bytes()); // ehsize .. shstrndx
        }
        elf.extend_from_slice(modinfo.as_bytes());
        elf.extend_from_slice(shstrtab);
        elf.resize(shoff as usize + 64, 0); // padding and the null section header
        let sections = [
            (1u32, 1u32, 2u64, modinfo_off, modinfo.len()),
            (10, 3, 0, shstrtab_off, shstrtab.len()),
        ];
        for (name, kind, flags, offset, size) in sections {
            elf.extend_from_slice(&name.to_le_bytes());
            elf.extend_from_slice(&kind.to_le_bytes());
            for value in [flags, 0, offset, size as u64, 0, 1, 0] {
                elf.extend_from_slice(&value.to_le_bytes()); // flags addr offset size link+info align entsize
            }
        }
        elf
    }

    /// A kernel tree with modules `(relative path, modinfo)` and built-in names.
    fn tree(modules: &[(&str, &str)], builtin: &[&str]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("lib/modules").join(RELEASE);
        for (path, modinfo) in modules {
            let path = dir.join("kernel").join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, module_elf(&modinfo.replace(';', "\0"))).unwrap();
        }
        let builtin: String = builtin
            .iter()
            .map(|name| format!("kernel/builtin/{name}.ko\n"))
            .collect();
        fs::write(dir.join("modules.builtin"), builtin).unwrap();
        fs::create_dir(root.path().join("boot")).unwrap();
        fs::write(
            root.path().join("boot").join(format!("vmlinuz-{RELEASE}")),
            b"kernel",
        )
        .unwrap();
        root
    }

    fn names(closure: &Closure) -> Vec<&str> {
        closure.modules.iter().map(|m| m.name.as_str()).collect()
    }

    /// The virtio-net stack as the Debian cloud kernel ships it.
    fn virtio() -> tempfile::TempDir {
        tree(
            &[
                ("net/core/failover.ko", "license=GPL;depends=;name=failover"),
                (
                    "drivers/net/net_failover.ko",
                    "depends=failover;name=net_failover",
                ),
                ("drivers/virtio/virtio_ring.ko", "depends=;name=virtio_ring"),
                (
                    "drivers/virtio/virtio.ko",
                    "depends=virtio_ring;name=virtio",
                ),
                (
                    "drivers/net/virtio_net.ko",
                    "depends=virtio_ring,virtio,net_failover",
                ),
                (
                    "drivers/char/hw_random/virtio-rng.ko",
                    "depends=virtio,virtio_ring,rng_core",
                ),
                (
                    "lib/libcrc32c.ko",
                    "softdep=pre: crc32c nonexistent-alias;depends=",
                ),
            ],
            &["rng-core", "ext4", "crc32c_generic"],
        )
    }

    #[test]
    fn opens_the_tree() {
        let root = virtio();
        let kernel = KernelTree::open(root.path()).unwrap();
        assert_eq!(kernel.release(), RELEASE);
        assert_eq!(
            kernel.vmlinuz(),
            root.path().join(format!("boot/vmlinuz-{RELEASE}"))
        );
        assert!(kernel.is_builtin("rng_core"));
        let rng = format!("lib/modules/{RELEASE}/kernel/drivers/char/hw_random/virtio-rng.ko");
        assert_eq!(kernel.module_path("virtio-rng"), Some(Path::new(&rng)));
    }

    #[test]
    fn closure_is_transitive_and_dependencies_come_first() {
        let root = virtio();
        let kernel = KernelTree::open(root.path()).unwrap();
        let closure = kernel.closure(&["virtio_net"]).unwrap();
        let expected = [
            "failover",
            "net_failover",
            "virtio_ring",
            "virtio",
            "virtio_net",
        ];
        assert_eq!(names(&closure), expected);
        let net = format!("lib/modules/{RELEASE}/kernel/drivers/net/virtio_net.ko");
        assert_eq!(closure.modules[4].path, Path::new(&net));
        assert!(closure.builtin.is_empty());
    }

    #[test]
    fn order_does_not_depend_on_request_order() {
        let root = virtio();
        let kernel = KernelTree::open(root.path()).unwrap();
        let one = kernel
            .closure(&["virtio_net", "virtio-rng", "failover"])
            .unwrap();
        let two = kernel
            .closure(&["failover", "virtio_rng", "virtio_net", "virtio_net"])
            .unwrap();
        assert_eq!(one.modules, two.modules);
        let expected = [
            "failover",
            "net_failover",
            "virtio_ring",
            "virtio",
            "virtio_net",
            "virtio_rng",
        ];
        assert_eq!(names(&one), expected);
    }

    #[test]
    fn built_ins_are_reported_not_loaded() {
        let root = virtio();
        let kernel = KernelTree::open(root.path()).unwrap();
        let closure = kernel
            .closure(&["ext4", "virtio-rng", "rng-core", "ext4"])
            .unwrap();
        assert_eq!(closure.builtin, ["ext4", "rng_core"]);
        assert_eq!(names(&closure), ["virtio_ring", "virtio", "virtio_rng"]);
    }

    #[test]
    fn softdeps_follow_modules_only() {
        let root = tree(
            &[
                ("a.ko", "softdep=pre: b-mod alias-only post: c;depends="),
                ("b_mod.ko", "depends="),
                ("c.ko", "depends="),
                ("d.ko", "softdep=b_mod;depends="),
            ],
            &[],
        );
        let kernel = KernelTree::open(root.path()).unwrap();
        assert_eq!(names(&kernel.closure(&["a"]).unwrap()), ["b_mod", "a"]);
        assert_eq!(names(&kernel.closure(&["d"]).unwrap()), ["d"]);
    }

    #[test]
    fn unknown_modules_and_dependencies_are_errors() {
        let root = virtio();
        let kernel = KernelTree::open(root.path()).unwrap();
        let err = kernel.closure(&["virtio_nett"]).unwrap_err();
        let expected = format!(
            "kernel {RELEASE} has no module `virtio_nett` (neither a .ko file nor built in)"
        );
        assert_eq!(err.to_string(), expected);
        let root = tree(&[("a.ko", "depends=gone")], &[]);
        let err = KernelTree::open(root.path())
            .unwrap()
            .closure(&["a"])
            .unwrap_err();
        assert!(
            matches!(err, ModuleError::MissingDependency { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("`gone`"), "{err}");
    }

    #[test]
    fn cycles_are_errors_naming_the_cycle() {
        let root = tree(
            &[
                ("top.ko", "depends=a"),
                ("a.ko", "depends=b"),
                ("b.ko", "softdep=pre: c;depends="),
                ("c.ko", "depends=a"),
            ],
            &[],
        );
        let kernel = KernelTree::open(root.path()).unwrap();
        let err = kernel.closure(&["top"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("kernel {RELEASE} modules depend on each other in a cycle: a -> b -> c -> a")
        );
    }

    #[test]
    fn malformed_modules_are_errors_naming_the_file() {
        let root = tree(&[("a.ko", "depends=")], &[]);
        let path = root
            .path()
            .join("lib/modules")
            .join(RELEASE)
            .join("kernel/a.ko");
        let elf = module_elf("depends=");
        for bytes in [
            b"not elf".to_vec(),
            elf[..100].to_vec(),
            elf[..elf.len() - 10].to_vec(),
        ] {
            fs::write(&path, bytes).unwrap();
            let err = KernelTree::open(root.path())
                .unwrap()
                .closure(&["a"])
                .unwrap_err();
            assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
        }
    }

    #[test]
    fn compressed_modules_are_indexed_and_read() {
        let root = tree(&[("b.ko", "depends=")], &[]);
        let dir = root.path().join("lib/modules").join(RELEASE).join("kernel");
        let mut xz = Vec::new();
        let elf = module_elf("depends=b,c");
        xz2::read::XzEncoder::new(&elf[..], 6)
            .read_to_end(&mut xz)
            .unwrap();
        fs::write(dir.join("a.ko.xz"), xz).unwrap();
        let zst = zstd::stream::encode_all(&module_elf("depends=")[..], 3).unwrap();
        fs::write(dir.join("c.ko.zst"), zst).unwrap();
        let kernel = KernelTree::open(root.path()).unwrap();
        assert_eq!(names(&kernel.closure(&["a"]).unwrap()), ["b", "c", "a"]);
    }

    #[test]
    fn a_tree_without_a_kernel_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("lib/modules").join(RELEASE)).unwrap();
        let err = KernelTree::open(root.path()).unwrap_err();
        assert!(matches!(err, ModuleError::NoRelease { .. }), "{err}");
    }

    #[test]
    fn parses_modinfo_strings() {
        let info = parse_modinfo(b"license=GPL\0depends=a,b-c,\0softdep=pre: x post: y\0\0junk\0");
        assert_eq!(info.depends, ["a", "b_c"]);
        assert_eq!(info.softdep_pre, ["x"]);
    }
}
