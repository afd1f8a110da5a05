//! The per-node config the agent reads at boot (PID 1): parsing and validation must
//! reject anything malformed with an error naming the field, never panic; what parses
//! writes back to text that parses to the same config; and the owner pinning decision
//! over it never panics either.
#![no_main]

use cairn_api::node_config::NodeConfig;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = NodeConfig::parse(text) else {
        return;
    };
    assert_eq!(NodeConfig::parse(&config.to_toml()).as_ref(), Ok(&config));
    if let Some(owner) = &config.owner {
        let root = tempfile::tempdir().unwrap();
        let paths = cairn_agent::Paths::under_root(root.path());
        let _ = cairn_agent::api::owner::settle(&paths, Some(&owner.ca));
    }
});
