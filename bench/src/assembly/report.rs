//! The assembly benchmark's Markdown: per compressor setting, time per tool and
//! temperature with cairn/peer ratios, then what each output holds.

use std::fmt::Write as _;

use super::{median, output, Case, Results, Setting, Tool};
use crate::report::{mb, num, ratio};
use crate::stats::Summary;

pub fn markdown(results: &Results) -> String {
    let mut text = String::from("# Image assembly: cairn vs dracut vs mkinitramfs\n\n");
    text.push_str(&results.machine.markdown());
    text.push('\n');
    text.push_str(&body(results, "##"));
    text.push_str("\n## Commands\n\n");
    for output in &results.outputs {
        let _ = writeln!(
            text,
            "- {} ({}): `{}`{}",
            output.tool.name(),
            output.setting.label(),
            output.command,
            output
                .unsupported
                .as_ref()
                .map_or(String::new(), |why| format!(" — not measured: {why}"))
        );
    }
    text
}

/// The explanation and both settings' tables, under headings of level `heading`.
pub fn body(results: &Results, heading: &str) -> String {
    let mut text = preamble(results);
    for setting in Setting::ALL {
        let _ = writeln!(text, "\n{heading} {}\n", setting.label());
        text.push_str(&times_table(results, setting));
        text.push('\n');
        text.push_str(&outputs_table(results, setting));
    }
    text
}

fn preamble(results: &Results) -> String {
    let p = &results.payload;
    let packages: Vec<String> = results
        .packages
        .iter()
        .filter(|p| p.name.starts_with("dracut") || p.name.starts_with("initramfs-tools"))
        .map(|p| format!("{} {}", p.name, p.version))
        .collect();
    let cold = match results.page_cache_dropped {
        true => "cold runs start with the page cache dropped",
        false => "**cold runs could not drop the page cache (not root): they are warm runs**",
    };
    format!(
        "The same payload for every tool: {} files ({:.1} MB; {} ELF, whose shared \
         libraries each tool resolves itself), {} symlinks, and the {} kernel modules the \
         image config names (each tool adds their dependencies), for kernel {}. \
         {} runs per tool and temperature; {cold}. Times are medians (min-max) in \
         seconds; CPU is user + system of the tool and all its children. Every tool \
         runs in its reproducible mode (SOURCE_DATE_EPOCH={}); *identical* means every \
         run of that tool gave the same bytes. Ratios are cairn / peer at the same \
         temperature: below 1 means cairn is faster or smaller. zstd runs on one \
         thread in the peers' reproducible modes (dracut is given `-T1`; mkinitramfs \
         drops `-T0` when SOURCE_DATE_EPOCH is set) and on every core in cairn's, \
         whose output does not depend on the number of threads. Peers: {} (Debian \
         packages, run from extracted copies in a private mount namespace, see \
         `bench/src/assembly/sandbox.rs`).\n",
        p.files,
        mb(p.bytes),
        p.elf_files,
        p.symlinks,
        p.modules.len(),
        results.kernel_release,
        results.runs,
        results.source_date_epoch,
        packages.join(", ")
    )
}

fn span(summary: Option<Summary>) -> String {
    summary.map_or_else(
        || "n/a".to_owned(),
        |s| format!("{:.2} ({:.2}-{:.2})", s.median, s.min, s.max),
    )
}

fn times_table(results: &Results, setting: Setting) -> String {
    let mut text = String::from(
        "| tool | run | wall s | CPU s | wall cairn/tool | CPU cairn/tool |\n\
         | --- | --- | ---: | ---: | ---: | ---: |\n",
    );
    let cases: Vec<&Case> = results
        .cases
        .iter()
        .filter(|c| c.setting == setting)
        .collect();
    for case in cases {
        let (wall_ratio, cpu_ratio) = match case.tool {
            Tool::Cairn => ("".to_owned(), "".to_owned()),
            tool => {
                let theirs = median(results, tool, setting, case.temperature);
                let ours = median(results, Tool::Cairn, setting, case.temperature);
                (
                    ratio(ours.map(|o| o.0), theirs.map(|t| t.0)),
                    ratio(ours.map(|o| o.1), theirs.map(|t| t.1)),
                )
            }
        };
        let _ = writeln!(
            text,
            "| {} | {} | {} | {} | {wall_ratio} | {cpu_ratio} |",
            case.tool.name(),
            case.temperature.label(),
            span(case.wall),
            span(case.cpu)
        );
    }
    text
}

fn outputs_table(results: &Results, setting: Setting) -> String {
    let mut text = String::from(
        "| tool | output MB | size cairn/tool | identical bytes | entries | files | MB of files | kernel modules | whole payload in it |\n\
         | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- |\n",
    );
    let cairn_bytes = output(results, Tool::Cairn, setting).map(|o| o.bytes as f64);
    for tool in Tool::ALL {
        let Some(out) = output(results, tool, setting) else {
            let _ = writeln!(text, "| {} | not supported | | | | | | | |", tool.name());
            continue;
        };
        let size_ratio = match tool {
            Tool::Cairn => String::new(),
            _ => ratio(cairn_bytes, Some(out.bytes as f64)),
        };
        let contents = out.contents.clone().unwrap_or_default();
        let complete = match contents.payload_missing.as_slice() {
            [] => "yes".to_owned(),
            missing => format!("no: {} missing ({})", missing.len(), missing[0]),
        };
        let _ = writeln!(
            text,
            "| {} | {} | {size_ratio} | {} ({} runs) | {} | {} | {} | {} | {complete} |",
            tool.name(),
            num(Some(mb(out.bytes)), 1),
            if out.identical { "yes" } else { "no" },
            out.sha256s.len(),
            contents.entries,
            contents.files,
            num(Some(mb(contents.file_bytes)), 1),
            contents.kernel_modules
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::super::{Contents, Output, PayloadSummary, Temperature};
    use super::*;
    use crate::measure::Timed;
    use crate::report::Machine;

    fn case(tool: Tool, temperature: Temperature, wall: f64, cpu: f64) -> Case {
        super::super::case(
            tool,
            Setting::Zstd3,
            temperature,
            vec![Timed {
                wall_s: wall,
                cpu_s: cpu,
            }],
        )
    }

    fn output(tool: Tool, bytes: u64, unsupported: bool) -> Output {
        Output {
            tool,
            setting: Setting::Zstd3,
            unsupported: unsupported.then(|| "no".to_owned()),
            command: format!("{} ...", tool.name()),
            bytes,
            sha256s: vec!["a".into(), "a".into()],
            identical: true,
            contents: Some(Contents {
                entries: 10,
                files: 8,
                file_bytes: 2_000_000,
                kernel_modules: 3,
                payload_missing: if tool == Tool::Dracut {
                    vec!["/init".into()]
                } else {
                    Vec::new()
                },
            }),
        }
    }

    fn results() -> Results {
        Results {
            machine: Machine::describe("none"),
            payload: PayloadSummary {
                files: 2,
                elf_files: 1,
                symlinks: 1,
                bytes: 3_000_000,
                modules: vec!["overlay".into()],
            },
            kernel_release: "6.1.0-40-cloud-amd64".into(),
            runs: 1,
            page_cache_dropped: true,
            source_date_epoch: 1,
            packages: Vec::new(),
            outputs: vec![
                output(Tool::Cairn, 50_000_000, false),
                output(Tool::Dracut, 100_000_000, false),
                output(Tool::Mkinitramfs, 0, true),
            ],
            cases: vec![
                case(Tool::Cairn, Temperature::Warm, 2.0, 1.0),
                case(Tool::Dracut, Temperature::Warm, 8.0, 4.0),
            ],
        }
    }

    #[test]
    fn times_carry_cairn_over_peer_ratios() {
        let text = markdown(&results());
        assert!(
            text.contains(
                "| dracut | warm | 8.00 (8.00-8.00) | 4.00 (4.00-4.00) | 0.25× | 0.25× |"
            ),
            "{text}"
        );
        assert!(text.contains("| cairn | warm | 2.00 (2.00-2.00) | 1.00 (1.00-1.00) |  |  |"));
    }

    #[test]
    fn outputs_show_size_ratio_reproducibility_and_missing_payload() {
        let text = markdown(&results());
        assert!(
            text.contains("| dracut | 100.0 | 0.50× | yes (2 runs) |"),
            "{text}"
        );
        assert!(text.contains("no: 1 missing (/init)"), "{text}");
        assert!(text.contains("| mkinitramfs | not supported |"), "{text}");
        assert!(text.contains("not measured: no"), "{text}");
    }
}
