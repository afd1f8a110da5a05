//! Image size by component: what each component of the config adds to the initramfs
//! (from the build manifest: sizes of regular files; symlinks and directories are
//! negligible), uncompressed and as zstd level 3 would store it, with counts of files,
//! executables, shared libraries and kernel modules; and the whole initramfs as zstd-3
//! and as xz (preset 6, the format Talos publishes its initramfs size in).
//!
//! Per-component figures compress each component's files as one stream, so they add
//! up to a little more than the whole archive compressed. xz of ~250 MB costs minutes
//! of CPU; the result depends only on the archive's bytes, so it is kept in the work
//! directory under the archive's sha256 and reused while the image is unchanged.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use cairn_image::manifest::Manifest;
use cairn_initramfs::{Entry, FileType};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::node::Bench;
use crate::report::{self, mb, Machine};

pub const NAME: &str = "image-size";
const ZSTD_LEVEL: i32 = 3;
const XZ_PRESET: u32 = 6;

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Component {
    pub files: u64,
    pub executables: u64,
    pub shared_libraries: u64,
    pub kernel_modules: u64,
    pub bytes: u64,
    pub zstd3_bytes: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Results {
    pub machine: Machine,
    pub image_digest: String,
    /// How the built initramfs is stored (`none`: uncompressed).
    pub compression: String,
    pub initramfs_bytes: u64,
    /// The uncompressed cpio archive.
    pub cpio_bytes: u64,
    pub cpio_zstd3_bytes: u64,
    pub cpio_xz6_bytes: u64,
    pub files_bytes: u64,
    pub files: u64,
    pub executables: u64,
    pub shared_libraries: u64,
    pub kernel_modules: u64,
    pub symlinks: u64,
    pub components: BTreeMap<String, Component>,
}

pub fn run(bench: &Bench) -> Result<PathBuf, Error> {
    let manifest_path = bench.image_dir.join("manifest.json");
    let text = fs::read_to_string(&manifest_path).map_err(Error::read(&manifest_path))?;
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|e| Error::Json(manifest_path.clone(), e))?;
    let initramfs = bench.image_dir.join(&manifest.initramfs.file);
    let bytes = fs::read(&initramfs).map_err(Error::read(&initramfs))?;
    let entries = cairn_initramfs::read(&bytes).map_err(Error::initramfs(initramfs))?;
    let cpio = uncompressed_cpio(&manifest, bytes, &entries);
    let owners: BTreeMap<&str, &str> = manifest
        .files
        .iter()
        .map(|f| (f.path.trim_start_matches('/'), f.component.as_str()))
        .collect();
    let components = by_component(&entries, &owners);
    let (cpio_zstd3_bytes, cpio_xz6_bytes) = whole_archive(&bench.work, &cpio)?;
    let sum = |f: fn(&Component) -> u64| components.values().map(f).sum();
    let results = Results {
        machine: Machine::describe("none"),
        image_digest: manifest.image_digest,
        compression: manifest.initramfs.compression,
        initramfs_bytes: manifest.initramfs.size,
        cpio_bytes: cpio.len() as u64,
        cpio_zstd3_bytes,
        cpio_xz6_bytes,
        files_bytes: sum(|c| c.bytes),
        files: sum(|c| c.files),
        executables: sum(|c| c.executables),
        shared_libraries: sum(|c| c.shared_libraries),
        kernel_modules: sum(|c| c.kernel_modules),
        symlinks: entries
            .iter()
            .filter(|e| e.file_type() == FileType::Symlink)
            .count() as u64,
        components,
    };
    report::write(&bench.results, NAME, &markdown(&results), &results)
}

/// The archive as the kernel sees it after decompression. For a compressed image the
/// entries' contents stand in for it (headers are a few dozen KB of ~250 MB).
fn uncompressed_cpio(manifest: &Manifest, bytes: Vec<u8>, entries: &[Entry]) -> Vec<u8> {
    if manifest.initramfs.compression == "none" {
        return bytes;
    }
    entries
        .iter()
        .flat_map(|e| e.data.iter().copied())
        .collect()
}

/// Counts and sizes of regular files, grouped by the manifest's component.
fn by_component(entries: &[Entry], owners: &BTreeMap<&str, &str>) -> BTreeMap<String, Component> {
    let mut groups: BTreeMap<String, (Component, Vec<&[u8]>)> = BTreeMap::new();
    for entry in entries
        .iter()
        .filter(|e| e.file_type() == FileType::Regular)
    {
        let owner = owners
            .get(entry.path.as_str())
            .copied()
            .unwrap_or("unknown");
        let (component, data) = groups.entry(owner.to_owned()).or_default();
        count(component, entry);
        data.push(&entry.data);
    }
    groups
        .into_iter()
        .map(|(name, (mut component, data))| {
            component.zstd3_bytes = zstd_size(&data, ZSTD_LEVEL);
            (name, component)
        })
        .collect()
}

fn count(component: &mut Component, entry: &Entry) {
    let kind = FileKind::of(&entry.path, entry.mode, &entry.data);
    component.files += 1;
    component.bytes += entry.data.len() as u64;
    component.executables += u64::from(kind == FileKind::Executable);
    component.shared_libraries += u64::from(kind == FileKind::SharedLibrary);
    component.kernel_modules += u64::from(kind == FileKind::KernelModule);
}

/// What a regular file is, for the counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    KernelModule,
    SharedLibrary,
    /// Any file with an execute bit (ELF or script).
    Executable,
    Other,
}

impl FileKind {
    pub fn of(path: &str, mode: u32, data: &[u8]) -> Self {
        let elf = data.starts_with(b"\x7fELF");
        let name = path.rsplit('/').next().unwrap_or(path);
        if elf && name.ends_with(".ko") {
            FileKind::KernelModule
        } else if elf && (name.ends_with(".so") || name.contains(".so.")) {
            FileKind::SharedLibrary
        } else if mode & 0o111 != 0 {
            FileKind::Executable
        } else {
            FileKind::Other
        }
    }
}

/// zstd-3 and xz-6 sizes of the whole archive, cached by its sha256.
fn whole_archive(work: &Path, cpio: &[u8]) -> Result<(u64, u64), Error> {
    let zstd3 = zstd_size(&[cpio], ZSTD_LEVEL);
    let cache = work
        .join("xz-sizes")
        .join(cairn_image::manifest::sha256_hex(cpio));
    if let Some(size) = fs::read_to_string(&cache)
        .ok()
        .and_then(|t| t.trim().parse().ok())
    {
        return Ok((zstd3, size));
    }
    eprintln!(
        "cairn-bench: xz -{XZ_PRESET} of the {:.0} MB archive (minutes; cached afterwards)",
        mb(cpio.len() as u64)
    );
    let xz = xz_size(cpio, XZ_PRESET)?;
    if let Some(dir) = cache.parent() {
        fs::create_dir_all(dir).map_err(Error::write(dir))?;
    }
    fs::write(&cache, format!("{xz}\n")).map_err(Error::write(&cache))?;
    Ok((zstd3, xz))
}

/// A sink that only counts.
#[derive(Debug, Default)]
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Compressed size of `chunks` as one zstd stream at `level`, single-threaded.
pub fn zstd_size(chunks: &[&[u8]], level: i32) -> u64 {
    let compress = || -> io::Result<u64> {
        let mut encoder = zstd::Encoder::new(Counter::default(), level)?;
        for chunk in chunks {
            encoder.write_all(chunk)?;
        }
        Ok(encoder.finish()?.0)
    };
    // Writing to a counter cannot fail; an encoder that cannot start shows as 0.
    compress().unwrap_or(0)
}

/// Compressed size of `data` as xz at `preset`, on every core (blocks of 3 × the
/// dictionary, as `xz -T0` does: within a fraction of a percent of one stream).
pub fn xz_size(data: &[u8], preset: u32) -> Result<u64, Error> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let stream = xz2::stream::MtStreamBuilder::new()
        .preset(preset)
        .threads(threads)
        .check(xz2::stream::Check::Crc32)
        .encoder()
        .map_err(|e| Error::Unmeasurable(format!("cannot start the xz encoder: {e}")))?;
    let mut encoder = xz2::write::XzEncoder::new_stream(Counter::default(), stream);
    encoder
        .write_all(data)
        .and_then(|()| encoder.finish())
        .map(|counter| counter.0)
        .map_err(|e| Error::Unmeasurable(format!("xz compression failed: {e}")))
}

pub fn markdown(results: &Results) -> String {
    let mut text = String::from("# Image size\n\n");
    text.push_str(&body(results));
    text
}

/// The figures without title, for RESULTS.md too.
pub fn body(results: &Results) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "Image `{}`: initramfs {:.1} MB on disk (compression: {}). As one archive: {:.1} MB \
         uncompressed, {:.1} MB zstd-{ZSTD_LEVEL}, {:.1} MB xz-{XZ_PRESET}. {:.1} MB in {} \
         files: {} executables, {} shared libraries, {} kernel modules; {} symlinks.\n",
        results.image_digest,
        mb(results.initramfs_bytes),
        results.compression,
        mb(results.cpio_bytes),
        mb(results.cpio_zstd3_bytes),
        mb(results.cpio_xz6_bytes),
        mb(results.files_bytes),
        results.files,
        results.executables,
        results.shared_libraries,
        results.kernel_modules,
        results.symlinks
    );
    text.push_str(
        "| component | MB | MB zstd-3 | files | executables | shared libs | modules |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let mut rows: Vec<_> = results.components.iter().collect();
    rows.sort_by_key(|(_, c)| std::cmp::Reverse(c.bytes));
    for (name, c) in rows {
        let _ = writeln!(
            text,
            "| {name} | {:.2} | {:.2} | {} | {} | {} | {} |",
            mb(c.bytes),
            mb(c.zstd3_bytes),
            c.files,
            c.executables,
            c.shared_libraries,
            c.kernel_modules
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_classified() {
        let elf = b"\x7fELF....";
        assert_eq!(
            FileKind::of("/lib/modules/6.1/kernel/net/bridge.ko", 0o644, elf),
            FileKind::KernelModule
        );
        assert_eq!(
            FileKind::of("/usr/lib/x86_64-linux-gnu/libc.so.6", 0o755, elf),
            FileKind::SharedLibrary
        );
        assert_eq!(
            FileKind::of("/usr/lib/xtables/libxt_mark.so", 0o644, elf),
            FileKind::SharedLibrary
        );
        assert_eq!(FileKind::of("/init", 0o755, elf), FileKind::Executable);
        assert_eq!(
            FileKind::of("/etc/os-release", 0o644, b"NAME=cairn"),
            FileKind::Other
        );
    }

    #[test]
    fn compressed_sizes_are_smaller_for_redundant_data() {
        let data = vec![7u8; 1 << 20];
        let zstd = zstd_size(&[&data[..512 << 10], &data[512 << 10..]], 3);
        assert!(zstd > 0 && zstd < 1000, "{zstd}");
        let xz = xz_size(&data, 1).unwrap();
        assert!(xz > 0 && xz < 1000, "{xz}");
    }
}
