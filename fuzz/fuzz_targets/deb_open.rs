//! A .deb from the cache or a download: the ar container, the control tarball and the
//! data tarball are parsed and unpacked by our code. Unpacking must stay inside its
//! destination whatever the archive says.
#![no_main]

use std::io::Write;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("fuzz.deb");
    let Ok(mut file) = std::fs::File::create(&path) else { return };
    if file.write_all(data).is_err() {
        return;
    }
    if let Ok(deb) = cairn_image::deb::Deb::open(&path) {
        let dest = dir.path().join("root");
        let _ = cairn_image::deb::unpack(&deb, &dest);
        // Nothing may have been written outside `dest`.
        for entry in std::fs::read_dir(dir.path()).into_iter().flatten().flatten() {
            let name = entry.file_name();
            assert!(name == "fuzz.deb" || name == "root", "wrote {name:?} outside dest");
        }
    }
});
