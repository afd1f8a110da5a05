//! Image assembly against Debian's initramfs tools: the same payload ([`payload`]: the
//! built image's binaries and files, its kernel modules, their shared libraries)
//! assembled by cairn's builder, by `dracut` and by `mkinitramfs` (initramfs-tools),
//! each from the same Debian kernel, with the same compressor where the tool allows:
//! zstd level 3, and uncompressed. The peers compress on one thread, as they do in
//! their reproducible modes (dracut is given `-T1`; mkinitramfs drops zstd's `-T0`
//! when `SOURCE_DATE_EPOCH` is set); cairn uses every core, since zstd's multithreaded
//! frame does not depend on the number of threads (`cairn_initramfs`). CPU time shows
//! what that costs.
//!
//! Each tool runs `runs` times cold (page cache dropped before each run) and `runs`
//! times warm; cairn also from an empty unpack cache (its `.deb`s downloaded, nothing
//! unpacked: what a first build on a machine costs it), with zstd only since
//! unpacking does not depend on the compressor. Wall and CPU time
//! ([`crate::measure`]), output size, and whether every run gave the same bytes
//! (each tool in its reproducible mode: `SOURCE_DATE_EPOCH` for all, dracut's
//! `--reproducible`). Every output is read back to check the whole payload is in it
//! and to count what the tool added.
//!
//! The peers run from extracted packages in a private sandbox ([`sandbox`]); cairn's
//! builder runs as the `cairn-image` binary with a generated config ([`cairn_config`]).

mod cairn_config;
mod payload;
mod report;
mod sandbox;
mod tools;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use cairn_image::config::Config;
use cairn_image::manifest::Manifest;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::measure::Timed;
use crate::node::Bench;
use crate::report::Machine;
use crate::stats::Summary;
pub use report::{body, markdown};
use sandbox::Package;
use tools::Tools;

pub const NAME: &str = "assembly";
/// Every tool stamps files with this time (2024-01-01 UTC).
pub const SOURCE_DATE_EPOCH: u64 = 1_704_067_200;

/// A compressor setting every tool is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Setting {
    Zstd3,
    Uncompressed,
}

impl Setting {
    pub const ALL: [Setting; 2] = [Setting::Zstd3, Setting::Uncompressed];

    pub fn key(self) -> &'static str {
        match self {
            Setting::Zstd3 => "zstd3",
            Setting::Uncompressed => "none",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Setting::Zstd3 => "zstd level 3",
            Setting::Uncompressed => "uncompressed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tool {
    Cairn,
    Dracut,
    Mkinitramfs,
}

impl Tool {
    pub const ALL: [Tool; 3] = [Tool::Cairn, Tool::Dracut, Tool::Mkinitramfs];

    pub fn name(self) -> &'static str {
        match self {
            Tool::Cairn => "cairn",
            Tool::Dracut => "dracut",
            Tool::Mkinitramfs => "mkinitramfs",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Temperature {
    /// cairn only: page cache dropped and no unpacked package in its cache.
    ColdEmptyCache,
    /// Page cache dropped before each run.
    Cold,
    /// Right after other runs of the same tool.
    Warm,
}

impl Temperature {
    pub fn label(self) -> &'static str {
        match self {
            Temperature::ColdEmptyCache => "cold, empty unpack cache",
            Temperature::Cold => "cold",
            Temperature::Warm => "warm",
        }
    }
}

/// The runs of one tool, setting and temperature.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Case {
    pub tool: Tool,
    pub setting: Setting,
    pub temperature: Temperature,
    pub runs: Vec<Timed>,
    pub wall: Option<Summary>,
    pub cpu: Option<Summary>,
}

/// What a tool produced with one setting, over all its runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Output {
    pub tool: Tool,
    pub setting: Setting,
    /// Why the tool cannot do this setting, if it cannot.
    pub unsupported: Option<String>,
    /// The command line, as run.
    pub command: String,
    /// Size of the output file.
    pub bytes: u64,
    /// sha256 of every run's output, in run order.
    pub sha256s: Vec<String>,
    /// Every run gave the same bytes.
    pub identical: bool,
    pub contents: Option<Contents>,
}

/// What is inside an output.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Contents {
    pub entries: u64,
    pub files: u64,
    pub file_bytes: u64,
    pub kernel_modules: u64,
    /// Payload paths missing from the output (empty: all there).
    pub payload_missing: Vec<String>,
}

/// The payload, as counted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PayloadSummary {
    pub files: u64,
    pub elf_files: u64,
    pub symlinks: u64,
    pub bytes: u64,
    pub modules: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Results {
    pub machine: Machine,
    pub payload: PayloadSummary,
    pub kernel_release: String,
    pub runs: usize,
    /// Whether cold runs could drop the page cache (root only).
    pub page_cache_dropped: bool,
    pub source_date_epoch: u64,
    /// The peers' packages, as extracted into the sandbox.
    pub packages: Vec<Package>,
    pub outputs: Vec<Output>,
    pub cases: Vec<Case>,
}

pub fn run(bench: &Bench, runs: usize) -> Result<PathBuf, Error> {
    let config = Config::load(&bench.config)
        .map_err(|e| Error::Config(bench.config.clone(), Box::new(e)))?;
    let manifest = load_manifest(&bench.image_dir)?;
    let bench_dir = bench.work.join("bench");
    let payload = payload::Payload::extract(
        &bench.image_dir,
        &config,
        &manifest,
        &bench_dir.join(cairn_config::PAYLOAD_DIR),
    )?;
    let sandbox = sandbox::Sandbox::prepare(
        &bench.work,
        &manifest.kernel,
        &config.libraries.packages,
        &payload,
    )?;
    for setting in Setting::ALL {
        let path = bench_dir.join(format!("cairn-{}.toml", setting.key()));
        let text = cairn_config::render(&config, &manifest, &payload, setting);
        fs::write(&path, text).map_err(Error::write(&path))?;
    }
    let tools = Tools::new(&bench.work, sandbox.clone())?;
    eprintln!("cairn-bench: assembly: priming cairn's package cache");
    tools.run_untimed(Tool::Cairn, Setting::Zstd3)?;
    let mut measured = Measured::default();
    for setting in Setting::ALL {
        for tool in Tool::ALL {
            measure_tool(&tools, &payload, tool, setting, runs, &mut measured)?;
        }
    }
    let results = Results {
        machine: Machine::describe("none"),
        payload: PayloadSummary {
            files: payload.files.len() as u64,
            elf_files: payload.files.iter().filter(|f| f.elf).count() as u64,
            symlinks: payload.symlinks.len() as u64,
            bytes: payload.bytes(),
            modules: payload.modules.clone(),
        },
        kernel_release: sandbox.release.clone(),
        runs,
        page_cache_dropped: measured.dropped,
        source_date_epoch: SOURCE_DATE_EPOCH,
        packages: sandbox.packages.clone(),
        outputs: measured.outputs,
        cases: measured.cases,
    };
    crate::report::write(&bench.results, NAME, &markdown(&results), &results)
}

fn load_manifest(image_dir: &Path) -> Result<Manifest, Error> {
    let path = image_dir.join("manifest.json");
    let text = fs::read_to_string(&path).map_err(Error::read(&path))?;
    serde_json::from_str(&text).map_err(|e| Error::Json(path, e))
}

#[derive(Debug)]
struct Measured {
    outputs: Vec<Output>,
    cases: Vec<Case>,
    /// Every cold run could drop the page cache.
    dropped: bool,
}

impl Default for Measured {
    fn default() -> Self {
        Measured {
            outputs: Vec::new(),
            cases: Vec::new(),
            dropped: true,
        }
    }
}

fn measure_tool(
    tools: &Tools,
    payload: &payload::Payload,
    tool: Tool,
    setting: Setting,
    runs: usize,
    measured: &mut Measured,
) -> Result<(), Error> {
    let mut output = Output {
        tool,
        setting,
        unsupported: tools.unsupported(tool, setting),
        command: tools.command_line(tool, setting),
        bytes: 0,
        sha256s: Vec::new(),
        identical: false,
        contents: None,
    };
    if output.unsupported.is_some() {
        measured.outputs.push(output);
        return Ok(());
    }
    for &temperature in temperatures(tool, setting) {
        eprintln!(
            "cairn-bench: assembly: {} ({}), {}, {runs} runs",
            tool.name(),
            setting.label(),
            temperature.label()
        );
        let mut timed = Vec::new();
        for _ in 0..runs {
            measured.dropped &= tools.prepare(tool, temperature)?;
            timed.push(tools.run_timed(tool, setting)?);
            let file = tools.output_file(tool, setting);
            let bytes = fs::read(&file).map_err(Error::read(&file))?;
            output.bytes = bytes.len() as u64;
            output
                .sha256s
                .push(cairn_image::manifest::sha256_hex(&bytes));
            if output.contents.is_none() {
                output.contents = Some(contents(&file, &bytes, payload)?);
            }
        }
        measured.cases.push(case(tool, setting, temperature, timed));
    }
    output.identical = output.sha256s.windows(2).all(|w| w[0] == w[1]);
    tools.remove_output(tool)?;
    measured.outputs.push(output);
    Ok(())
}

/// Cold then warm; cairn's empty-cache case once, with the first setting (unpacking
/// costs the same whatever the compressor).
fn temperatures(tool: Tool, setting: Setting) -> &'static [Temperature] {
    match (tool, setting) {
        (Tool::Cairn, Setting::Zstd3) => &[
            Temperature::ColdEmptyCache,
            Temperature::Cold,
            Temperature::Warm,
        ],
        _ => &[Temperature::Cold, Temperature::Warm],
    }
}

fn case(tool: Tool, setting: Setting, temperature: Temperature, runs: Vec<Timed>) -> Case {
    let wall: Vec<f64> = runs.iter().map(|t| t.wall_s).collect();
    let cpu: Vec<f64> = runs.iter().map(|t| t.cpu_s).collect();
    Case {
        tool,
        setting,
        temperature,
        wall: Summary::of(&wall),
        cpu: Summary::of(&cpu),
        runs,
    }
}

/// Reads an output back: its entries, and which payload paths it lacks.
fn contents(file: &Path, bytes: &[u8], payload: &payload::Payload) -> Result<Contents, Error> {
    let entries = cairn_initramfs::read(bytes).map_err(Error::initramfs(file))?;
    let present: BTreeSet<String> = entries.iter().map(|e| format!("/{}", e.path)).collect();
    let links: BTreeMap<String, String> = entries
        .iter()
        .filter(|e| e.file_type() == cairn_initramfs::FileType::Symlink)
        .map(|e| {
            let target = String::from_utf8_lossy(&e.data).into_owned();
            (format!("/{}", e.path), target)
        })
        .collect();
    let mut contents = Contents {
        entries: entries.len() as u64,
        ..Contents::default()
    };
    for entry in &entries {
        if entry.file_type() == cairn_initramfs::FileType::Regular {
            contents.files += 1;
            contents.file_bytes += entry.data.len() as u64;
            contents.kernel_modules += u64::from(entry.path.ends_with(".ko"));
        }
    }
    contents.payload_missing = payload
        .files
        .iter()
        .map(|f| &f.path)
        .chain(payload.symlinks.iter().map(|(p, _)| p))
        .filter(|p| !present.contains(&through_links(p, &links)))
        .cloned()
        .collect();
    Ok(contents)
}

/// `path` with its directories resolved through the archive's symlinks (`/sbin` ->
/// `usr/sbin` in a usr-merged image), the last component kept as it is.
pub fn through_links(path: &str, links: &BTreeMap<String, String>) -> String {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    let mut resolved = String::new();
    let mut pending: Vec<String> = dir.split('/').rev().map(str::to_owned).collect();
    // A bound on links followed, as the kernel's own (40, path_resolution(7)).
    let mut budget = 40;
    while let Some(part) = pending.pop() {
        match part.as_str() {
            "" | "." => continue,
            ".." => {
                resolved.truncate(resolved.rfind('/').unwrap_or(0));
                continue;
            }
            _ => {}
        }
        let next = format!("{resolved}/{part}");
        match links.get(&next) {
            Some(target) if budget > 0 => {
                budget -= 1;
                if target.starts_with('/') {
                    resolved.clear();
                }
                pending.extend(target.split('/').rev().map(str::to_owned));
            }
            _ => resolved = next,
        }
    }
    format!("{resolved}/{name}")
}

/// The median of `tool`'s runs for `setting` at `temperature`.
pub fn median(
    results: &Results,
    tool: Tool,
    setting: Setting,
    temperature: Temperature,
) -> Option<(f64, f64)> {
    let case = results
        .cases
        .iter()
        .find(|c| c.tool == tool && c.setting == setting && c.temperature == temperature)?;
    Some((case.wall?.median, case.cpu?.median))
}

/// `tool`'s output with `setting`, if it was measured.
pub fn output(results: &Results, tool: Tool, setting: Setting) -> Option<&Output> {
    results
        .outputs
        .iter()
        .find(|o| o.tool == tool && o.setting == setting && o.unsupported.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_through_directory_links_but_not_the_last_one() {
        let links = BTreeMap::from([
            ("/sbin".to_owned(), "usr/sbin".to_owned()),
            ("/lib64".to_owned(), "/usr/lib64".to_owned()),
            (
                "/usr/sbin/iptables".to_owned(),
                "xtables-nft-multi".to_owned(),
            ),
            ("/a".to_owned(), "b".to_owned()),
            ("/b".to_owned(), "a".to_owned()),
        ]);
        assert_eq!(through_links("/sbin/mke2fs", &links), "/usr/sbin/mke2fs");
        assert_eq!(through_links("/lib64/ld.so", &links), "/usr/lib64/ld.so");
        assert_eq!(
            through_links("/sbin/iptables", &links),
            "/usr/sbin/iptables"
        );
        assert_eq!(through_links("/init", &links), "/init");
        assert_eq!(through_links("/usr/../sbin/x", &links), "/usr/sbin/x");
        // A loop ends when the budget does, without hanging.
        assert!(through_links("/a/x", &links).ends_with("/x"));
    }
}
