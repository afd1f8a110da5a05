//! The agent reads /etc/os-release for its ready line and build info.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        for key in ["VERSION", "ID", "PRETTY_NAME", ""] {
            let _ = cairn_agent::ready::os_release_value(text, key);
        }
    }
});
