//! `/etc/hosts` and `/etc/resolv.conf`: etcd dies without a `localhost` entry, and
//! containerd's CRI cannot create a pod sandbox without either file (docs/architecture.md).

use std::fmt::Write as _;
use std::io;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use crate::atomic_write::write_atomic;
use crate::Paths;

/// hosts(5): localhost, and the node name on the node's address (on 127.0.1.1, the
/// Debian convention, when the node has none).
pub fn hosts(node_name: &str, address: Option<Ipv4Addr>) -> String {
    let node_address = address.unwrap_or(Ipv4Addr::new(127, 0, 1, 1));
    format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         {node_address}\t{node_name}\n"
    )
}

/// resolv.conf(5) with the given name servers (an empty file resolves nothing, which
/// is what a node without DNS can do).
pub fn resolv_conf(dns: &[Ipv4Addr]) -> String {
    let mut text = String::from("# written by cairn-agent from the kernel command line\n");
    for server in dns {
        let _ = writeln!(text, "nameserver {server}");
    }
    text
}

/// Writes both files below `paths`; returns the path that failed.
pub fn write(
    paths: &Paths,
    node_name: &str,
    address: Option<Ipv4Addr>,
    dns: &[Ipv4Addr],
) -> Result<(), (PathBuf, io::Error)> {
    let files = [
        ("/etc/hosts", hosts(node_name, address)),
        ("/etc/resolv.conf", resolv_conf(dns)),
    ];
    for (path, text) in files {
        let path = paths.resolve(path);
        write_atomic(&path, text.as_bytes(), 0o644).map_err(|e| (path, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_names_localhost_and_the_node() {
        let text = hosts("cairn-ab", Some(Ipv4Addr::new(10, 0, 2, 15)));
        assert!(text.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(text.ends_with("10.0.2.15\tcairn-ab\n"));
        assert!(hosts("cairn-ab", None).ends_with("127.0.1.1\tcairn-ab\n"));
    }

    #[test]
    fn files_are_written_below_the_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        let dns = [Ipv4Addr::new(10, 0, 2, 3)];
        write(&Paths::under_root(dir.path()), "n", None, &dns).unwrap();
        let resolv = std::fs::read_to_string(dir.path().join("etc/resolv.conf")).unwrap();
        assert!(resolv.ends_with("\nnameserver 10.0.2.3\n"));
        assert!(dir.path().join("etc/hosts").exists());
    }
}
