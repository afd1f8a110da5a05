//! Where the agent finds things, relative to one root.
//!
//! Boot steps never name `/proc` or `/etc` directly: they ask a [`Paths`], which is
//! rooted at `/` on a node and at a temporary directory in unit tests (firecracker's
//! `Env::new(..., PROC_MOUNTS)` does the same for its jailer).

use std::path::{Path, PathBuf};

/// Resolves the agent's well-known absolute paths under a root directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    root: PathBuf,
}

impl Paths {
    /// The node's own file system.
    pub fn system() -> Self {
        Self::under_root("/")
    }

    /// Every path resolved below `root` (a test fixture directory, say).
    pub fn under_root(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `absolute` (e.g. `/etc/os-release`) below the root.
    pub fn resolve(&self, absolute: impl AsRef<Path>) -> PathBuf {
        let absolute = absolute.as_ref();
        self.root
            .join(absolute.strip_prefix("/").unwrap_or(absolute))
    }

    /// os-release(5), stamped by the image builder.
    pub fn os_release(&self) -> PathBuf {
        self.resolve("/etc/os-release")
    }

    /// machine-id(5), written from the node ID.
    pub fn machine_id(&self) -> PathBuf {
        self.resolve("/etc/machine-id")
    }

    /// The builder's module list (docs/interfaces.md).
    pub fn modules_load(&self) -> PathBuf {
        self.resolve("/etc/cairn/modules.load")
    }

    /// proc(5) `/proc/modules`: the modules the kernel has loaded.
    pub fn proc_modules(&self) -> PathBuf {
        self.resolve("/proc/modules")
    }

    /// proc(5) `/proc/net/route`: the kernel's IPv4 routes (main table).
    pub fn proc_net_route(&self) -> PathBuf {
        self.resolve("/proc/net/route")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_absolute_paths_below_the_root() {
        let paths = Paths::under_root("/tmp/fixture");
        assert_eq!(paths.os_release(), Path::new("/tmp/fixture/etc/os-release"));
        assert_eq!(paths.resolve("/proc"), Path::new("/tmp/fixture/proc"));
        assert_eq!(
            Paths::system().modules_load(),
            Path::new("/etc/cairn/modules.load")
        );
    }
}
