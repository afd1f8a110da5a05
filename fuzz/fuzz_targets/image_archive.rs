//! Image archives arrive over the node API (LoadImage) into PID 1: the streaming tar
//! reader and the layout checks behind `cairn_agent::containerd::archive` must refuse
//! any input with an error, never panic or allocate what an entry merely claims.
#![no_main]

use cairn_agent::containerd::archive::{self, BlobSink, Limits, Stopped};

/// Takes every blob and forgets it.
struct Discard;

impl BlobSink for Discard {
    fn begin(&mut self, _size: u64, _expected: Option<&str>) -> Result<(), Stopped> {
        Ok(())
    }
    fn data(&mut self, _chunk: Vec<u8>) -> Result<(), Stopped> {
        Ok(())
    }
    fn commit(&mut self, _digest: &str) -> Result<(), Stopped> {
        Ok(())
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        entries: 256,
        ..Limits::default()
    };
    if let Ok(contents) = archive::read(data, data.len() as u64, &limits, &mut Discard) {
        let _ = archive::images(&contents);
    }
});
