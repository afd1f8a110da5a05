//! The kernel command line's `ip=` parameter configures the node's network; a bad one
//! must give an error naming the field, never a panic in PID 1.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = cairn_agent::network::ipconfig::parse(text);
        let _ = cairn_agent::network::ipconfig::find(text);
    }
});
