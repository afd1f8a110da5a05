//! The serial console: the agent's machine-readable lines and reading the capture file.
//!
//! The agent prints `CAIRN_READY {json}` when boot is complete and `CAIRN_EXIT {json}`
//! just before reboot(2) (see `docs/interfaces.md`). The kernel shares the console, so a
//! line may carry noise: carriage returns, a timestamp, or a printk in front. A keyword
//! counts when it stands as a word followed by a space and `{`; the JSON object is parsed
//! up to its end and anything after it is ignored.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Keyword of the line the agent prints once boot is complete.
pub const READY_KEYWORD: &str = "CAIRN_READY";
/// Keyword of the line the agent prints just before it reboots or powers off.
pub const EXIT_KEYWORD: &str = "CAIRN_EXIT";

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// A protocol line whose JSON did not parse.
    #[error("malformed {keyword} line from the guest: {line:?}")]
    Malformed {
        /// The keyword that was recognised.
        keyword: &'static str,
        /// The whole console line.
        line: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The capture file could not be read.
    #[error("cannot read console log {path}")]
    Read {
        /// The capture file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// What the agent reports in `CAIRN_READY`. Unknown fields are ignored so the agent may add
/// some before the launcher knows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyInfo {
    /// Lowercase hex of the first 16 bytes of `public_key`.
    pub node_id: String,
    /// The node's ed25519 public key, hex.
    pub public_key: String,
    /// `VERSION` from os-release.
    pub version: String,
    /// Contents of `/etc/machine-id` without the newline.
    pub machine_id: String,
    /// The guest's hostname.
    pub hostname: String,
    /// Module names from `/proc/modules`.
    pub modules: Vec<String>,
    /// Full text of `/etc/os-release`.
    pub os_release: String,
    /// Every address the guest's kernel has: `<interface> <address>/<prefix>`.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// The guest's IPv4 routes (main table): `default via <gw> dev <if>`, `<net> dev <if>`.
    #[serde(default)]
    pub routes: Vec<String>,
    /// The management APIs the boot serves (`debug`, `node`); `None` from agents that
    /// predate the field.
    #[serde(default)]
    pub apis: Option<Vec<String>>,
}

/// What the agent is about to do in `CAIRN_EXIT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExitAction {
    /// The agent powers the machine off.
    Poweroff,
    /// The agent reboots; QEMU exits (`-action reboot=shutdown`) and the launcher
    /// starts a fresh one ([`crate::relaunch`]).
    Reboot,
}

/// What the agent reports in `CAIRN_EXIT`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// Power action.
    pub action: ExitAction,
    /// 0 after a requested shutdown, non-zero after a panic or fatal boot error.
    pub code: i32,
    /// Why, in words.
    pub reason: String,
}

/// Parses `line` as a `CAIRN_READY` line; `None` if it is not one.
pub fn parse_ready(line: &str) -> Option<Result<ReadyInfo, ConsoleError>> {
    parse_keyword(line, READY_KEYWORD)
}

/// Parses `line` as a `CAIRN_EXIT` line; `None` if it is not one.
pub fn parse_exit(line: &str) -> Option<Result<ExitInfo, ConsoleError>> {
    parse_keyword(line, EXIT_KEYWORD)
}

fn parse_keyword<T: DeserializeOwned>(
    line: &str,
    keyword: &'static str,
) -> Option<Result<T, ConsoleError>> {
    let json = find_payload(line, keyword)?;
    let mut values = serde_json::Deserializer::from_str(json).into_iter::<T>();
    let parsed = values.next()?;
    Some(parsed.map_err(|source| ConsoleError::Malformed {
        keyword,
        line: line.to_owned(),
        source,
    }))
}

/// The text from the `{` after `keyword ` to the end of the line.
fn find_payload<'a>(line: &'a str, keyword: &str) -> Option<&'a str> {
    let mut search = 0;
    while let Some(found) = line[search..].find(keyword) {
        let start = search + found;
        let after = &line[start + keyword.len()..];
        let word_start = line[..start]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        if word_start && after.starts_with(" {") {
            return Some(&after[1..]);
        }
        search = start + keyword.len();
    }
    None
}

/// Reads the console capture file line by line while QEMU keeps appending to it.
#[derive(Debug)]
pub struct ConsoleReader {
    path: PathBuf,
    file: Option<File>,
    partial: Vec<u8>,
}

impl ConsoleReader {
    /// A reader starting at the beginning of `path`, which need not exist yet.
    pub fn new(path: &Path) -> Self {
        ConsoleReader {
            path: path.to_owned(),
            file: None,
            partial: Vec::new(),
        }
    }

    /// The complete lines appended since the last call, carriage returns removed.
    pub fn new_lines(&mut self) -> Result<Vec<String>, ConsoleError> {
        let bytes = self.new_bytes()?;
        self.partial.extend_from_slice(&bytes);
        let Some(last_newline) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return Ok(Vec::new());
        };
        let rest = self.partial.split_off(last_newline + 1);
        let complete = std::mem::replace(&mut self.partial, rest);
        Ok(complete[..last_newline]
            .split(|&b| b == b'\n')
            .map(clean_line)
            .collect())
    }

    /// The unterminated last line, once the writer is gone.
    pub fn take_partial(&mut self) -> Option<String> {
        let partial = std::mem::take(&mut self.partial);
        (!partial.is_empty()).then(|| clean_line(&partial))
    }

    /// Raw bytes appended since the last call (for echoing the console as it is).
    pub fn new_bytes(&mut self) -> Result<Vec<u8>, ConsoleError> {
        let read_error = |source| ConsoleError::Read {
            path: self.path.clone(),
            source,
        };
        if self.file.is_none() {
            match File::open(&self.path) {
                Ok(file) => self.file = Some(file),
                Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(err) => return Err(read_error(err)),
            }
        }
        let mut bytes = Vec::new();
        if let Some(file) = &mut self.file {
            file.read_to_end(&mut bytes).map_err(read_error)?;
        }
        Ok(bytes)
    }
}

/// Console text as a person reads it: carriage returns dropped, invalid UTF-8 replaced.
fn clean_line(bytes: &[u8]) -> String {
    let text: Vec<u8> = bytes.iter().copied().filter(|&b| b != b'\r').collect();
    String::from_utf8_lossy(&text).into_owned()
}

/// Kernel lines that open a report worth reading whole (a lockup's or an oops's
/// registers and call trace). With several, the first tells the cause; the tail
/// often shows only the last repeat, long after it.
const KERNEL_REPORTS: &[&str] = &[
    "BUG: soft lockup",
    "self-detected stall",
    "rcu_sched detected stalls",
    "blocked for more than",
    "BUG: kernel NULL pointer",
    "general protection fault",
    "Kernel panic",
    "Oops:",
];
/// Lines shown from the first kernel report on.
const REPORT_LINES: usize = 50;

/// The last `lines` lines of the capture file, for failure messages, after the first
/// kernel report in it (see [`KERNEL_REPORTS`]) when that starts before the tail.
/// Never fails: a missing or unreadable file is described in the returned text.
pub fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => excerpt(&bytes, lines),
        Err(err) => format!("(console log {} unreadable: {err})", path.display()),
    }
}

fn excerpt(bytes: &[u8], lines: usize) -> String {
    let all: Vec<String> = bytes.split(|&b| b == b'\n').map(clean_line).collect();
    let all = match all.last() {
        Some(last) if last.is_empty() => &all[..all.len() - 1],
        _ => &all[..],
    };
    let tail_start = all.len().saturating_sub(lines);
    let tail = all[tail_start..].join("\n");
    let first_report = all
        .iter()
        .position(|line| KERNEL_REPORTS.iter().any(|marker| line.contains(marker)));
    match first_report {
        Some(start) if start < tail_start => {
            let end = (start + REPORT_LINES).min(tail_start);
            format!(
                "(the first kernel report, console line {}:)\n{}\n(... the last {} lines:)\n{tail}",
                start + 1,
                all[start..end].join("\n"),
                all.len() - tail_start,
            )
        }
        _ => tail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const READY: &str = r#"CAIRN_READY {"node_id":"00112233445566778899aabbccddeeff","public_key":"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff","version":"0.1.0","machine_id":"00112233445566778899aabbccddeeff","hostname":"cairn-00112233445566778899aabbccddeeff","modules":["virtio_net","overlay"],"os_release":"NAME=cairn\nVERSION=0.1.0\n"}"#;

    #[test]
    fn ready_line_parses_with_all_fields() {
        let info = parse_ready(READY).unwrap().unwrap();
        assert_eq!(info.node_id, "00112233445566778899aabbccddeeff");
        assert_eq!(info.modules, ["virtio_net", "overlay"]);
        assert_eq!(info.os_release, "NAME=cairn\nVERSION=0.1.0\n");
    }

    #[test]
    fn ready_line_tolerates_carriage_return_and_kernel_prefix() {
        let noisy = format!("[    4.123456] random: crng init done {READY}\r");
        assert!(parse_ready(&noisy).unwrap().is_ok());
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let line = r#"CAIRN_EXIT {"action":"reboot","code":0,"reason":"ctrl-alt-del","extra":1}"#;
        let info = parse_exit(line).unwrap().unwrap();
        assert_eq!(info.action, ExitAction::Reboot);
        assert_eq!(info.code, 0);
    }

    #[test]
    fn exit_line_parses_poweroff_with_code() {
        let line = r#"CAIRN_EXIT {"action":"poweroff","code":3,"reason":"panic: boom"}"#;
        let info = parse_exit(line).unwrap().unwrap();
        assert_eq!(
            info,
            ExitInfo {
                action: ExitAction::Poweroff,
                code: 3,
                reason: "panic: boom".to_owned()
            }
        );
    }

    #[test]
    fn kernel_noise_and_prose_are_not_protocol_lines() {
        for line in [
            "[    0.000000] Linux version 6.1.0-56-cloud-amd64",
            "cairn: will print CAIRN_READY when boot completes",
            "XCAIRN_READY {\"node_id\":\"x\"}",
            "CAIRN_READY",
            "",
        ] {
            assert!(parse_ready(line).is_none(), "{line:?}");
            assert!(parse_exit(line).is_none(), "{line:?}");
        }
    }

    #[test]
    fn garbled_json_is_an_error_naming_the_line() {
        let err = parse_exit("CAIRN_EXIT {\"action\":\"explode\"}")
            .unwrap()
            .unwrap_err();
        assert!(
            err.to_string().contains("malformed CAIRN_EXIT line"),
            "{err}"
        );
    }

    #[test]
    fn reader_returns_complete_lines_as_the_file_grows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        let mut reader = ConsoleReader::new(&path);
        assert!(reader.new_lines().unwrap().is_empty());
        let mut file = File::create(&path).unwrap();
        file.write_all(b"first\r\nsec").unwrap();
        assert_eq!(reader.new_lines().unwrap(), ["first"]);
        file.write_all(b"ond\r\r\nthird").unwrap();
        assert_eq!(reader.new_lines().unwrap(), ["second"]);
        assert_eq!(reader.take_partial().as_deref(), Some("third"));
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        std::fs::write(&path, "a\r\nb\r\nc\r\nd\r\n").unwrap();
        assert_eq!(tail(&path, 2), "c\nd");
        assert_eq!(tail(&path, 10), "a\nb\nc\nd");
        assert!(tail(&dir.path().join("missing"), 3).contains("unreadable"));
    }

    /// A lockup repeats its report every ~20 s; the tail keeps only the last one, the
    /// first (with the task and place that started it) is shown ahead of it.
    #[test]
    fn the_first_kernel_report_precedes_the_tail() {
        let mut console = vec!["boot".to_owned()];
        console.push("watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [containerd:122]".into());
        console.push("RIP: 0010:kmem_cache_alloc+0x5d/0x300".into());
        console.extend((0..100).map(|i| format!("noise {i}")));
        let text = console.join("\n") + "\n";
        let shown = excerpt(text.as_bytes(), 3);
        let expected_head = "(the first kernel report, console line 2:)\n\
                             watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [containerd:122]\n\
                             RIP: 0010:kmem_cache_alloc+0x5d/0x300\n\
                             noise 0\n";
        assert!(shown.starts_with(expected_head), "{shown}");
        assert!(shown.ends_with("(... the last 3 lines:)\nnoise 97\nnoise 98\nnoise 99"));
        assert_eq!(shown.lines().count(), 1 + 50 + 1 + 3);
        // A report inside the tail is shown once, as part of it.
        assert_eq!(excerpt(text.as_bytes(), 200), text.trim_end());
    }
}
