//! The CNI network containerd's CRI plugin sets pods up with.
//!
//! One conflist: the `bridge` plugin (bridge `cni0`, the node as the pods' gateway,
//! outgoing traffic masqueraded with iptables) with `host-local` address management,
//! then `portmap` for `hostPort`s (it also programs iptables; docs/architecture.md has
//! both measured under iptables-nft). The loopback interface of each pod is set up by
//! containerd itself through the `loopback` plugin, so it is not listed.

use serde_json::json;

/// The conflist's file name in the CNI config directory (the lowest name wins).
pub const CONFLIST: &str = "10-cairn.conflist";
/// The network pods get addresses from; the bridge takes its first address.
pub const POD_SUBNET: &str = cairn_api::names::network::POD_CIDR;
pub const BRIDGE: &str = "cni0";

/// The conflist as JSON text.
pub fn render() -> String {
    let conflist = json!({
        "cniVersion": "1.0.0",
        "name": "cairn",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": POD_SUBNET }]],
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_with_masquerade_then_portmap() {
        let value: serde_json::Value = serde_json::from_str(&render()).unwrap();
        assert_eq!(value["cniVersion"], "1.0.0");
        let plugins = value["plugins"].as_array().unwrap();
        let types: Vec<&str> = plugins
            .iter()
            .map(|p| p["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["bridge", "portmap"]);
        assert_eq!(plugins[0]["bridge"], "cni0");
        assert_eq!(plugins[0]["ipMasq"], true);
        assert_eq!(plugins[0]["ipam"]["type"], "host-local");
        assert_eq!(plugins[0]["ipam"]["ranges"][0][0]["subnet"], POD_SUBNET);
        assert_eq!(plugins[1]["capabilities"]["portMappings"], true);
    }
}
