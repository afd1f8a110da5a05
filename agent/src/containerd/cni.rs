//! The CNI network containerd's CRI plugin sets pods up with (docs/architecture.md
//! "Pod network").
//!
//! On a node with a cluster network, each node's pods take addresses from the node's
//! own pod CIDR, a /24 of [`POD_SUBNET`] the controller-manager allocates to its Node
//! (`spec.podCIDR`). The agent does not know it at boot: it writes a conflist
//! *template* ([`TEMPLATE`]) that containerd renders into `10-containerd-net.conflist`
//! when the kubelet passes the Node's pod CIDR down (CRI `UpdateRuntimeConfig`;
//! containerd's `conf_template`, which it only does while no loadable conflist exists,
//! and `/etc/cni/net.d` is in RAM). Until then the runtime's network is not ready and
//! no pod starts.
//!
//! A node without a cluster network can have no other node's pods to tell apart from
//! its own: it writes the conflist itself ([`CONFLIST`], all of [`POD_SUBNET`]), and
//! its pods do not wait for the controller-manager's allocation, which comes well
//! after the kubelet is up on a booting node.
//!
//! One network: the `bridge` plugin (bridge `cni0`, the node as the pods' gateway at
//! the CIDR's first address) with `host-local` address management, then `portmap` for
//! `hostPort`s (it programs iptables; docs/architecture.md has it measured under
//! iptables-nft). The loopback interface of each pod is set up by containerd itself.
//!
//! The bridge's own masquerade is off: it would leave only the node's /24 un-NATed, so
//! a pod reaching a pod on another node would arrive from that node's address. One
//! nftables rule of the agent's ([`masquerade_ruleset`]) masquerades pod traffic that
//! leaves the pod network instead; between pods, addresses stay the pods' own (the
//! routes between nodes: [`crate::network::pod_routes`]).

use std::net::Ipv4Addr;

use serde_json::json;

use crate::atomic_write::write_atomic;
use crate::syscall::Syscall;
use crate::Paths;

/// Where the template is; containerd's config names it (`conf_template`).
pub const TEMPLATE: &str = "/etc/cni/cairn.conflist.tmpl";
/// The conflist containerd renders from it into the CNI config directory.
pub const RENDERED: &str = "10-containerd-net.conflist";
/// The conflist a node without a cluster network gets from the agent.
pub const CONFLIST: &str = "10-cairn.conflist";
/// The network every node's pod CIDR is part of.
pub const POD_SUBNET: &str = cairn_api::names::network::POD_CIDR;
pub const BRIDGE: &str = "cni0";
/// containerd's template placeholder for the Node's (first) pod CIDR.
const POD_CIDR_PLACEHOLDER: &str = "{{.PodCIDR}}";
/// nft(8), in the image for kube-proxy's nftables mode.
pub const NFT: &str = "/usr/sbin/nft";
/// The nftables table that holds the agent's rule.
pub const NAT_TABLE: &str = "cairn";

/// The conflist template as JSON text (containerd's Go template syntax in one value).
pub fn render_template() -> String {
    render(POD_CIDR_PLACEHOLDER)
}

/// The conflist of a node without a cluster network: its pods use all of
/// [`POD_SUBNET`].
pub fn render_single() -> String {
    render(POD_SUBNET)
}

/// The conflist with `subnet` as the pods' subnet.
fn render(subnet: &str) -> String {
    let conflist = json!({
        "cniVersion": "1.0.0",
        "name": "cairn",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": subnet }]],
                    "routes": [{ "dst": "0.0.0.0/0" }]
                }
            },
            {
                "type": "portmap",
                "capabilities": { "portMappings": true }
            }
        ]
    });
    let mut text = serde_json::to_string_pretty(&conflist).expect("json serializes");
    text.push('\n');
    text
}

/// The nftables ruleset for `nft -f`: pod traffic to anywhere outside the pod
/// network leaves with the node's address, but for traffic to the cluster network
/// (`cluster`, address and prefix), whose nodes route every pod CIDR back: there a pod
/// stays a pod, which the node services that refuse pods rely on. Replaces the table
/// whole, so applying it again changes nothing.
pub fn masquerade_ruleset(cluster: Option<(Ipv4Addr, u8)>) -> String {
    let spared = match cluster {
        Some(network) => format!(" ip daddr != {}", network_of(network)),
        None => String::new(),
    };
    format!(
        "table ip {NAT_TABLE}\n\
         delete table ip {NAT_TABLE}\n\
         table ip {NAT_TABLE} {{\n\
         \tchain pod-masquerade {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip saddr {POD_SUBNET} ip daddr != {POD_SUBNET}{spared} masquerade\n\
         \t}}\n\
         }}\n"
    )
}

/// `A.B.C.D/N` of the network `address` is in.
fn network_of((address, prefix): (Ipv4Addr, u8)) -> String {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    format!("{}/{prefix}", Ipv4Addr::from(u32::from(address) & mask))
}

/// Where the agent writes the ruleset it hands nft (for a person to read, too).
pub const RULESET_FILE: &str = "/run/cairn/pod-masquerade.nft";
/// IPv4 forwarding: the node routes between its pods, its NICs and other nodes' pods.
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Turns IPv4 forwarding on and installs [`masquerade_ruleset`] with nft. A boot step
/// before any pod exists (after the netfilter modules), so no pod ever leaves un-NATed.
pub fn prepare_pod_network(
    sys: &dyn Syscall,
    paths: &Paths,
    cluster: Option<(Ipv4Addr, u8)>,
) -> Result<String, String> {
    let forward = paths.resolve(IP_FORWARD);
    std::fs::write(&forward, "1\n")
        .map_err(|err| format!("cannot enable forwarding in {}: {err}", forward.display()))?;
    let file = paths.resolve(RULESET_FILE);
    let failed = |what: String| format!("pod masquerade rule: {what}");
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|err| failed(format!("cannot create {}: {err}", dir.display())))?;
    }
    write_atomic(&file, masquerade_ruleset(cluster).as_bytes(), 0o644)
        .map_err(|err| failed(format!("cannot write {}: {err}", file.display())))?;
    let nft = paths.resolve(NFT);
    let output = sys
        .run_tool(&nft, &["-f".as_ref(), file.as_os_str()])
        .map_err(|err| failed(format!("cannot run {}: {err}", nft.display())))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(failed(format!(
            "nft -f {} {}: {}",
            file.display(),
            output.status,
            stderr.trim()
        )));
    }
    let spared = match cluster {
        Some(network) => format!(" but to the cluster network {}", network_of(network)),
        None => String::new(),
    };
    Ok(format!(
        "forwarding on; pod traffic leaving {POD_SUBNET} masqueraded{spared} (nft table ip \
         {NAT_TABLE})"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_on_the_nodes_pod_cidr_without_masquerade_then_portmap() {
        let value: serde_json::Value = serde_json::from_str(&render_template()).unwrap();
        assert_eq!(value["cniVersion"], "1.0.0");
        let plugins = value["plugins"].as_array().unwrap();
        let types: Vec<&str> = plugins
            .iter()
            .map(|p| p["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["bridge", "portmap"]);
        assert_eq!(plugins[0]["bridge"], "cni0");
        assert_eq!(plugins[0]["ipMasq"], false);
        assert_eq!(plugins[0]["ipam"]["type"], "host-local");
        assert_eq!(plugins[0]["ipam"]["ranges"][0][0]["subnet"], "{{.PodCIDR}}");
        assert_eq!(plugins[1]["capabilities"]["portMappings"], true);
        let single: serde_json::Value = serde_json::from_str(&render_single()).unwrap();
        assert_eq!(
            single["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "10.88.0.0/16"
        );
        assert_eq!(single["plugins"][0]["ipMasq"], false);
    }

    #[test]
    fn masquerade_spares_pod_to_pod_traffic_and_replaces_its_table() {
        let rules = masquerade_ruleset(None);
        let lines: Vec<&str> = rules.lines().map(str::trim).collect();
        assert_eq!(lines[..2], ["table ip cairn", "delete table ip cairn"]);
        assert!(lines.contains(&"type nat hook postrouting priority srcnat; policy accept;"));
        assert!(lines.contains(&"ip saddr 10.88.0.0/16 ip daddr != 10.88.0.0/16 masquerade"));
    }

    #[test]
    fn masquerade_spares_the_cluster_network_too() {
        let address = "192.168.100.11".parse().unwrap();
        let rules = masquerade_ruleset(Some((address, 24)));
        let rule = "ip saddr 10.88.0.0/16 ip daddr != 10.88.0.0/16 ip daddr != 192.168.100.0/24 \
                    masquerade";
        assert!(rules.lines().any(|l| l.trim() == rule), "{rules}");
    }
}
