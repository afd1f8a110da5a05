//! The image config: parsing and validation must reject anything malformed with an
//! error, never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = cairn_image::config::Config::parse(std::path::Path::new("fuzz.toml"), text);
    }
});
