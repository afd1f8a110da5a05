//! The agent reads /etc/os-release for its ready line and build info, through the
//! `os-release` crate behind `cairn_agent::os_release` (which must never panic).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let release = cairn_agent::os_release::parse(text);
        let _ = cairn_agent::os_release::fields(&release);
    }
});
