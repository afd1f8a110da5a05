//! The initramfs reader takes images from anywhere (`cairn-image inspect`): any bytes
//! must give entries or an error, never a panic or an unbounded allocation.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = cairn_initramfs::read(data) {
        let _ = cairn_initramfs::format_listing(&entries);
    }
});
