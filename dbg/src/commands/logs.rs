//! `dbg logs <component> [-n N] [-f] [--raw]`.

use std::io::Write;

use cairn_api::v1::{get_logs_response::Kind, GetLogsRequest, LogEntry, LogGap, LogStream};

use super::{boot_time, Context};
use crate::DbgError;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Component name (`dbg components` lists them).
    pub component: String,
    /// Only the last N lines (0: none, useful with -f) [default: all buffered].
    #[arg(short = 'n', long = "lines", value_name = "N")]
    pub lines: Option<u32>,
    /// Keep printing new lines as they are written.
    #[arg(short, long)]
    pub follow: bool,
    /// Print only the text of each line, without boot time and stream.
    #[arg(long)]
    pub raw: bool,
}

pub async fn run(args: Args, ctx: Context, out: &mut dyn Write) -> Result<(), DbgError> {
    let request = GetLogsRequest {
        component: args.component.clone(),
        tail_lines: args.lines,
        follow: args.follow,
    };
    let mut client = ctx.client.clone();
    let mut stream = ctx
        .call("GetLogs", ctx.call_timeout, client.get_logs(request))
        .await?;
    loop {
        let message = match stream.message().await {
            Ok(Some(message)) => message,
            Ok(None) => return Ok(()),
            Err(status) => return Err(ctx.failed("GetLogs", status)),
        };
        match message.kind {
            Some(Kind::Entry(entry)) => {
                writeln!(out, "{}", line(&entry, args.raw)).map_err(DbgError::Output)?
            }
            // On stderr, so `--raw` output stays the component's own lines.
            Some(Kind::Gap(gap)) => eprintln!("{}", gap_line(&gap)),
            None => {}
        }
        if args.follow {
            out.flush().map_err(DbgError::Output)?;
        }
    }
}

/// `<boot time> <stream> <text>`, or the text alone.
pub fn line(entry: &LogEntry, raw: bool) -> String {
    if raw {
        return entry.text.clone();
    }
    let stream = match entry.stream() {
        LogStream::Stdout => "stdout",
        LogStream::Stderr => "stderr",
        LogStream::Agent => "agent ",
        LogStream::Unspecified => "?     ",
    };
    format!("{} {stream} {}", boot_time(entry.boot_time_ns), entry.text)
}

/// The marker for lines the reader lost.
pub fn gap_line(gap: &LogGap) -> String {
    format!(
        "dbg: {} lines lost (seq {}..{}): the reader fell behind the log buffer",
        gap.count,
        gap.first_seq,
        gap.first_seq + gap.count
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn arguments_parse() {
        let cli =
            crate::Cli::try_parse_from(["dbg", "logs", "containerd", "-n", "10", "-f"]).unwrap();
        let crate::Command::Logs(args) = cli.command else {
            panic!("not logs")
        };
        assert_eq!(
            (args.component.as_str(), args.lines, args.follow, args.raw),
            ("containerd", Some(10), true, false)
        );
        let cli = crate::Cli::try_parse_from(["dbg", "logs", "agent", "--raw"]).unwrap();
        let crate::Command::Logs(args) = cli.command else {
            panic!("not logs")
        };
        assert_eq!((args.lines, args.raw), (None, true));
        assert!(crate::Cli::try_parse_from(["dbg", "logs"]).is_err());
        assert!(crate::Cli::try_parse_from(["dbg", "logs", "x", "-n", "-1"]).is_err());
    }

    #[test]
    fn lines_show_boot_time_and_stream() {
        let entry = LogEntry {
            seq: 7,
            boot_time_ns: 3_500_000_000,
            stream: LogStream::Stderr.into(),
            text: "time=\"x\" level=info".into(),
        };
        assert_eq!(
            line(&entry, false),
            "     3.500000 stderr time=\"x\" level=info"
        );
        assert_eq!(line(&entry, true), "time=\"x\" level=info");
        let gap = LogGap {
            first_seq: 10,
            count: 5,
        };
        assert!(gap_line(&gap).contains("5 lines lost (seq 10..15)"));
    }
}
