//! Image size by component: what each component of the config adds to the initramfs,
//! read from the build manifest (sizes of regular files; symlinks and directories are
//! negligible), with file and executable counts and the archive's size on disk.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::node::{Bench, Error};
use crate::report::{self, Machine};

#[derive(Debug, Deserialize)]
struct Manifest {
    image_digest: String,
    initramfs: Initramfs,
    files: Vec<File>,
}

#[derive(Debug, Deserialize)]
struct Initramfs {
    compression: String,
    size: u64,
}

#[derive(Debug, Deserialize)]
struct File {
    kind: String,
    mode: String,
    size: u64,
    component: String,
}

#[derive(Debug, Default, Serialize)]
struct Component {
    files: u64,
    executables: u64,
    bytes: u64,
}

#[derive(Debug, Serialize)]
struct Results {
    machine: Machine,
    image_digest: String,
    compression: String,
    initramfs_bytes: u64,
    files_bytes: u64,
    files: u64,
    executables: u64,
    components: BTreeMap<String, Component>,
}

pub fn run(bench: &Bench) -> Result<PathBuf, Error> {
    let text = std::fs::read_to_string(bench.image_dir.join("manifest.json"))?;
    let manifest: Manifest = serde_json::from_str(&text)?;
    let mut components: BTreeMap<String, Component> = BTreeMap::new();
    for file in manifest.files.iter().filter(|f| f.kind == "file") {
        let entry = components.entry(file.component.clone()).or_default();
        entry.files += 1;
        entry.bytes += file.size;
        let mode = u32::from_str_radix(&file.mode, 8).unwrap_or(0);
        entry.executables += u64::from(mode & 0o111 != 0);
    }
    let results = Results {
        machine: Machine::describe("none"),
        image_digest: manifest.image_digest,
        compression: manifest.initramfs.compression,
        initramfs_bytes: manifest.initramfs.size,
        files_bytes: components.values().map(|c| c.bytes).sum(),
        files: components.values().map(|c| c.files).sum(),
        executables: components.values().map(|c| c.executables).sum(),
        components,
    };
    report::write(&bench.results, "image-size", &markdown(&results), &results)
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn markdown(results: &Results) -> String {
    let mut text = String::from("# Image size\n\n");
    let _ = writeln!(
        text,
        "Image `{}`: initramfs {:.1} MB on disk ({}), {:.1} MB in {} files, {} of them \
         executable.\n",
        results.image_digest,
        mb(results.initramfs_bytes),
        results.compression,
        mb(results.files_bytes),
        results.files,
        results.executables
    );
    text.push_str("| component | MB | files | executables |\n| --- | ---: | ---: | ---: |\n");
    let mut rows: Vec<_> = results.components.iter().collect();
    rows.sort_by_key(|(_, c)| std::cmp::Reverse(c.bytes));
    for (name, c) in rows {
        let _ = writeln!(
            text,
            "| {name} | {:.2} | {} | {} |",
            mb(c.bytes),
            c.files,
            c.executables
        );
    }
    text
}
