//! The plan: every initramfs entry (image path -> content and component) before
//! anything is written. Two components wanting the same path with different content
//! is a conflict found here, not a silent overwrite in the archive; the manifest and
//! `build.json` are derived from the same entries that are archived.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Read;
use std::ops::Deref;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use memmap2::Mmap;

use super::{BuildError, BUILD_JSON};
use crate::config::Validated;
use crate::deb::Deb;
use crate::manifest::{self, ContainerImageInfo, FileInfo, SourceInfo};
use crate::osrelease::{self, BuildInfo};

/// Content of one planned initramfs entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Content {
    Dir,
    File(Bytes),
    Symlink(String),
    CharDevice(u32, u32),
}

/// A file's bytes: made by the builder, or mapped from an input file. The payload is
/// hundreds of megabytes read once for hashing and once for the archive; mapped, it is
/// neither copied into the builder's memory nor zero-filled for it first.
#[derive(Clone)]
pub(super) enum Bytes {
    Owned(Vec<u8>),
    Mapped(Arc<Mmap>),
}

impl Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Owned(bytes) => bytes,
            Bytes::Mapped(map) => map,
        }
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(bytes: Vec<u8>) -> Self {
        Bytes::Owned(bytes)
    }
}

impl PartialEq for Bytes {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for Bytes {}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = match self {
            Bytes::Owned(_) => "owned",
            Bytes::Mapped(_) => "mapped",
        };
        write!(f, "Bytes({how}, {} bytes)", self.len())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Planned {
    pub mode: u32,
    pub content: Content,
    pub component: String,
    /// sha256 of a file's content, taken once: `build.json`, the manifest and the
    /// sources all name it, and hundreds of megabytes are too many to hash thrice.
    sha256: OnceLock<String>,
}

impl Planned {
    /// sha256 (hex) of a file's content; `None` for anything else.
    pub fn sha256(&self) -> Option<&str> {
        match &self.content {
            Content::File(data) => Some(self.sha256.get_or_init(|| manifest::sha256_hex(data))),
            _ => None,
        }
    }
}

/// Everything going into the initramfs, keyed by absolute image path.
#[derive(Debug, Default)]
pub(super) struct Plan {
    pub entries: BTreeMap<String, Planned>,
    pub sources: Vec<SourceInfo>,
    pub images: Vec<ContainerImageInfo>,
    /// Sources named by an entry's content hash, not taken yet: index into `sources`
    /// and the entry's path.
    unhashed_sources: Vec<(usize, String)>,
}

impl Plan {
    /// Plans `path`; the same content planned twice is one entry (two packages may
    /// ship the same directory), different content is a [`BuildError::Conflict`].
    pub fn add(
        &mut self,
        path: &str,
        mode: u32,
        content: Content,
        component: &str,
    ) -> Result<(), BuildError> {
        let planned = Planned {
            mode,
            content,
            component: component.to_owned(),
            sha256: OnceLock::new(),
        };
        match self.entries.get(path) {
            Some(existing) if existing.content == planned.content => Ok(()),
            Some(existing) => Err(BuildError::Conflict {
                path: path.to_owned(),
                first: existing.component.clone(),
                second: component.to_owned(),
            }),
            None => {
                self.entries.insert(path.to_owned(), planned);
                Ok(())
            }
        }
    }

    pub fn add_host_file(
        &mut self,
        path: &str,
        host: &Path,
        mode: u32,
        component: &str,
    ) -> Result<(), BuildError> {
        self.add(path, mode, Content::File(read(host, component)?), component)
    }

    /// A built or repository file at `install`, recorded as a source of kind `kind`
    /// named `name`, hashed as it is planned.
    pub fn add_single_file(
        &mut self,
        install: &str,
        host: &Path,
        component: &str,
        (kind, name): (&str, String),
    ) -> Result<(), BuildError> {
        let data = read(host, component)?;
        self.add(install, 0o755, Content::File(data), component)?;
        // The entry now holds these bytes (added, or already there the same); its hash
        // is taken with all the others, on every core (see [`Plan::hash_files`]).
        self.unhashed_sources
            .push((self.sources.len(), install.to_owned()));
        self.sources.push(SourceInfo {
            component: component.to_owned(),
            kind: kind.to_owned(),
            name,
            version: None,
            sha256: String::new(),
        });
        Ok(())
    }

    pub fn add_deb_source(&mut self, component: &str, deb: &Deb) {
        self.sources.push(SourceInfo {
            component: component.to_owned(),
            kind: "deb".to_owned(),
            name: deb.control.package.clone(),
            version: Some(deb.control.version.clone()),
            sha256: deb.sha256.clone(),
        });
    }

    /// Hashes every file not hashed yet, on all cores: one thread per core takes the
    /// next unhashed file until none is left. Then the sources that name a file by its
    /// hash get it.
    pub fn hash_files(&mut self) {
        self.hash_entries();
        for (index, path) in std::mem::take(&mut self.unhashed_sources) {
            let sha256 = self.entries[&path].sha256().expect("a source names a file");
            self.sources[index].sha256 = sha256.to_owned();
        }
    }

    fn hash_entries(&self) {
        let files: Vec<&Planned> = self
            .entries
            .values()
            .filter(|p| matches!(p.content, Content::File(_)) && p.sha256.get().is_none())
            .collect();
        let next = AtomicUsize::new(0);
        let work = || {
            while let Some(planned) = files.get(next.fetch_add(1, Ordering::Relaxed)) {
                planned.sha256();
            }
        };
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        std::thread::scope(|scope| {
            for _ in 1..threads.min(files.len()) {
                scope.spawn(work);
            }
            work();
        });
    }

    /// Every entry as the manifest lists it, sorted by path.
    pub fn files(&self) -> Vec<FileInfo> {
        self.entries
            .iter()
            .map(|(path, planned)| file_info(path, planned))
            .collect()
    }
}

/// Inputs at least this large are mapped rather than read.
const MAP_AT: u64 = 64 << 10;

/// `host`'s bytes, mapped when large (see [`Bytes`]).
fn read(host: &Path, component: &str) -> Result<Bytes, BuildError> {
    let read_err = |source| BuildError::ReadInput {
        component: component.to_owned(),
        path: host.to_owned(),
        source,
    };
    let file = fs::File::open(host).map_err(read_err)?;
    let size = file.metadata().map_err(read_err)?.len();
    if size < MAP_AT {
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        (&file).read_to_end(&mut bytes).map_err(read_err)?;
        return Ok(Bytes::Owned(bytes));
    }
    // SAFETY: a private read-only mapping; the builder never writes through it. Its
    // bytes change only if another process rewrites the input during the build, which
    // the image would not survive either way (the same as a file read while being
    // written): inputs are build outputs and packages the builder itself unpacked.
    let map = unsafe { Mmap::map(&file) }.map_err(read_err)?;
    Ok(Bytes::Mapped(Arc::new(map)))
}

/// Mount points, the console node the kernel opens for PID 1, and os-release.
pub(super) fn add_base(
    plan: &mut Plan,
    config: &Validated,
    info: &BuildInfo,
) -> Result<(), BuildError> {
    for dir in [
        "/dev",
        "/etc",
        "/etc/cairn",
        "/proc",
        "/run",
        "/sys",
        "/tmp",
        "/var",
    ] {
        let mode = if dir == "/tmp" { 0o1777 } else { 0o755 };
        plan.add(dir, mode, Content::Dir, "base")?;
    }
    plan.add("/dev/console", 0o600, Content::CharDevice(5, 1), "base")?;
    let os_release = osrelease::render(&config.os_release, info);
    plan.add(
        "/etc/os-release",
        0o644,
        Content::File(os_release.into_bytes().into()),
        "os-release",
    )
}

/// `/etc/cairn/registries.toml` (cairn_api's per-node config format, registries only)
/// when the config declares any: each CA file is read, relative to the config file,
/// and checked as the agent will check it (host and mirrors were checked with the
/// config). Without registries there is no file, so an image that declares none is the
/// same image as before the table existed.
pub(super) fn add_registries(
    plan: &mut Plan,
    config: &Validated,
    config_path: &Path,
) -> Result<(), BuildError> {
    use cairn_api::node_config::{check_certificates, NodeConfig, Registry, IMAGE_REGISTRIES_PATH};
    if config.registries.is_empty() {
        return Ok(());
    }
    let config_dir = config_path.parent().unwrap_or(Path::new("."));
    let mut settings = NodeConfig::default();
    for (i, registry) in config.registries.iter().enumerate() {
        let ca = match &registry.ca_file {
            Some(file) => {
                let bytes = read(&config_dir.join(file), "registries")?;
                let checked = String::from_utf8(bytes.to_vec())
                    .map_err(|_| "is not UTF-8 PEM".to_owned())
                    .and_then(|text| check_certificates(&text).map(|()| text));
                let text = checked.map_err(|problem| crate::config::ConfigError::Field {
                    path: config_path.to_owned(),
                    field: format!("registry[{i}].ca_file"),
                    problem: format!("{}: {problem}", file.display()),
                })?;
                Some(text)
            }
            None => None,
        };
        settings.registries.push(Registry {
            host: registry.host.clone(),
            mirrors: registry.mirrors.clone(),
            ca,
            plain_http: registry.plain_http,
            ..Default::default()
        });
    }
    let text = format!(
        "# The image's registries (image config [[registry]]), read by the agent at boot.\n{}",
        settings.to_toml()
    );
    plan.add(
        IMAGE_REGISTRIES_PATH,
        0o644,
        Content::File(text.into_bytes().into()),
        "registries",
    )
}

/// `/etc/cairn/build.json`: the os-release version fields and a digest over every
/// other initramfs entry, so the running node can name exactly what it booted (the
/// same value is in manifest.json). Added last, after everything it covers.
pub(super) fn add_build_json(plan: &mut Plan, info: &BuildInfo) -> Result<String, BuildError> {
    plan.hash_files();
    let mut text = String::new();
    for (path, planned) in &plan.entries {
        let info = file_info(path, planned);
        let what = info.sha256.or(info.target).unwrap_or_default();
        text.push_str(&format!("{path} {} {} {what}\n", info.kind, info.mode));
    }
    let digest = format!("sha256:{}", manifest::sha256_hex(text.as_bytes()));
    let json = serde_json::json!({
        "version": info.version,
        "version_id": info.version_id,
        "build_id": info.build_id,
        "source_date_epoch": info.source_date_epoch,
        "cargo_profile": info.cargo_profile,
        "content_digest": digest,
    });
    let mut bytes = serde_json::to_vec_pretty(&json).expect("json serializes");
    bytes.push(b'\n');
    plan.add(BUILD_JSON, 0o644, Content::File(bytes.into()), "os-release")?;
    Ok(digest)
}

fn file_info(path: &str, planned: &Planned) -> FileInfo {
    let (kind, size, sha256, target) = match &planned.content {
        Content::Dir => ("dir", 0, None, None),
        Content::File(data) => (
            "file",
            data.len() as u64,
            planned.sha256().map(str::to_owned),
            None,
        ),
        Content::Symlink(target) => ("symlink", target.len() as u64, None, Some(target.clone())),
        Content::CharDevice(..) => ("char", 0, None, None),
    };
    FileInfo {
        path: path.to_owned(),
        kind: kind.to_owned(),
        mode: format!("{:04o}", planned.mode),
        size,
        sha256,
        target,
        component: planned.component.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(bytes: &[u8]) -> Content {
        Content::File(bytes.to_vec().into())
    }

    #[test]
    fn different_content_at_one_path_is_a_conflict_naming_both_components() {
        let mut plan = Plan::default();
        plan.add("/usr/bin/tool", 0o755, file(b"a"), "first")
            .unwrap();
        let err = plan
            .add("/usr/bin/tool", 0o755, file(b"b"), "second")
            .unwrap_err();
        assert!(
            matches!(&err, BuildError::Conflict { path, first, second }
                if path == "/usr/bin/tool" && first == "first" && second == "second"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "/usr/bin/tool is provided by both `first` and `second`"
        );
        // The first claim stands.
        assert_eq!(plan.entries["/usr/bin/tool"].content, file(b"a"));
    }

    #[test]
    fn a_file_and_a_symlink_or_directory_at_one_path_conflict() {
        let mut plan = Plan::default();
        plan.add("/bin/sh", 0o755, file(b"sh"), "busybox").unwrap();
        let link = Content::Symlink("dash".into());
        assert!(plan.add("/bin/sh", 0o777, link, "dash").is_err());
        assert!(plan.add("/bin/sh", 0o755, Content::Dir, "dir").is_err());
    }

    #[test]
    fn the_same_content_twice_is_one_entry_owned_by_the_first() {
        let mut plan = Plan::default();
        plan.add("/usr/lib", 0o755, Content::Dir, "libc6").unwrap();
        plan.add("/usr/lib", 0o755, Content::Dir, "iptables")
            .unwrap();
        plan.add("/etc/x", 0o644, file(b"same"), "a").unwrap();
        plan.add("/etc/x", 0o644, file(b"same"), "b").unwrap();
        assert_eq!(plan.entries.len(), 2);
        assert_eq!(plan.entries["/usr/lib"].component, "libc6");
        assert_eq!(plan.entries["/etc/x"].component, "a");
    }

    #[test]
    fn a_single_file_is_recorded_as_a_source_hashed_as_planned() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("agent");
        fs::write(&host, b"binary").unwrap();
        let mut plan = Plan::default();
        let source = ("cargo", "cairn-agent".to_owned());
        plan.add_single_file("/init", &host, "agent", source)
            .unwrap();
        assert_eq!(plan.entries["/init"].mode, 0o755);
        plan.hash_files();
        let [recorded] = plan.sources.as_slice() else {
            panic!("{:?}", plan.sources);
        };
        assert_eq!(recorded.sha256, manifest::sha256_hex(b"binary"));
        assert_eq!(
            (recorded.kind.as_str(), recorded.name.as_str()),
            ("cargo", "cairn-agent")
        );

        let missing = dir.path().join("missing");
        let err = plan
            .add_single_file("/x", &missing, "x", ("file", "missing".into()))
            .unwrap_err();
        assert!(matches!(err, BuildError::ReadInput { .. }), "{err:?}");
    }

    #[test]
    fn large_inputs_are_mapped_small_ones_read() {
        let dir = tempfile::tempdir().unwrap();
        let large: Vec<u8> = (0..MAP_AT + 3).map(|i| (i % 251) as u8).collect();
        let (big, small) = (dir.path().join("big"), dir.path().join("small"));
        fs::write(&big, &large).unwrap();
        fs::write(&small, b"small").unwrap();
        let mapped = read(&big, "x").unwrap();
        assert!(matches!(mapped, Bytes::Mapped(_)), "{mapped:?}");
        assert_eq!(&mapped[..], &large[..]);
        let owned = read(&small, "x").unwrap();
        assert!(matches!(owned, Bytes::Owned(_)), "{owned:?}");
        // Equal content is equal however it is held (conflict checks compare bytes).
        assert_eq!(owned, Bytes::Owned(b"small".to_vec()));
        assert_eq!(mapped, Bytes::Owned(large));
    }

    #[test]
    fn hash_files_hashes_every_file_once_for_build_json_and_the_manifest() {
        let mut plan = Plan::default();
        for i in 0..9 {
            let data = format!("file {i}");
            plan.add(&format!("/f{i}"), 0o644, file(data.as_bytes()), "x")
                .unwrap();
        }
        plan.add("/d", 0o755, Content::Dir, "x").unwrap();
        plan.hash_files();
        for planned in plan.entries.values() {
            match &planned.content {
                Content::File(data) => {
                    let expected = manifest::sha256_hex(data);
                    assert_eq!(planned.sha256.get(), Some(&expected));
                }
                _ => assert_eq!(planned.sha256(), None),
            }
        }
        let listed = plan.files();
        assert_eq!(listed[1].sha256, Some(manifest::sha256_hex(b"file 0")));
    }

    #[test]
    fn files_list_every_kind_with_its_mode() {
        let mut plan = Plan::default();
        plan.add("/dev/console", 0o600, Content::CharDevice(5, 1), "base")
            .unwrap();
        plan.add(
            "/lib64/ld.so",
            0o777,
            Content::Symlink("/lib/ld.so".into()),
            "libc6",
        )
        .unwrap();
        let files = plan.files();
        assert_eq!(files[0].kind, "char");
        assert_eq!(files[0].mode, "0600");
        assert_eq!(files[1].kind, "symlink");
        assert_eq!(files[1].target.as_deref(), Some("/lib/ld.so"));
        assert_eq!(files[1].size, "/lib/ld.so".len() as u64);
    }
}
