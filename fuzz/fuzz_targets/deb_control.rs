//! A package's `control` file (deb822 paragraphs, `Depends` relations): parsed from
//! every `.deb` the builder opens. `deb_open` reaches this parser only through a valid
//! ar archive and compressed tarball; this target feeds it text directly.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(control) =
            cairn_image::deb::Control::parse(std::path::Path::new("fuzz.deb"), text)
        {
            let _ = control.first_dependency_with_prefix("linux-image-");
        }
    }
});
