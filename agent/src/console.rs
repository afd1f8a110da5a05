//! Console output: `tracing` set up once, every line prefixed `cairn: ` and also kept
//! in the `agent` log buffer, and single-write lines for the machine-readable protocol.
//!
//! The kernel opens `/dev/console` as PID 1's stdin, stdout and stderr before running
//! init (Documentation/admin-guide/serial-console.rst), so stderr *is* the console and
//! stays open after devtmpfs hides the initramfs's `/dev/console` node. A single
//! write(2) to a tty is not interleaved with other writers' output, which is what keeps
//! a `CAIRN_READY` line whole.

use std::fmt;
use std::io::{self, Write};

use tracing::level_filters::LevelFilter;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

use crate::logbuf::{LogBuffer, Stream};

/// Prefix of every human-readable line (docs/interfaces.md).
pub const PREFIX: &str = "cairn: ";

/// Environment variable holding the log level (`error` .. `trace`). The kernel passes
/// unknown `key=value` command-line words to init as environment, so `CAIRN_LOG=debug`
/// on the kernel command line turns on debug output.
pub const LEVEL_ENV: &str = "CAIRN_LOG";

/// Installs the console subscriber, which also copies every line into `agent_log`
/// (the component `agent`); a second call in the same process is a no-op.
pub fn init_logging(agent_log: LogBuffer) {
    let level = std::env::var(LEVEL_ENV)
        .ok()
        .and_then(|level| level.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    let tee = Tee {
        log: agent_log,
        console: io::stderr,
    };
    let _ = tracing::subscriber::set_global_default(subscriber(level, tee));
}

/// A [`MakeWriter`] that sends each formatted event to the console and to a log
/// buffer (without the console prefix, which the buffer's component name replaces).
#[derive(Debug)]
struct Tee<C> {
    log: LogBuffer,
    console: C,
}

impl<'a, C> MakeWriter<'a> for Tee<C>
where
    C: MakeWriter<'a>,
{
    type Writer = TeeLine<'a, C::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        TeeLine {
            log: &self.log,
            console: self.console.make_writer(),
            text: Vec::new(),
        }
    }
}

/// One event: collected, then written out whole when the formatter drops it, so the
/// console gets it in one write(2).
struct TeeLine<'a, W: Write> {
    log: &'a LogBuffer,
    console: W,
    text: Vec<u8>,
}

impl<W: Write> Write for TeeLine<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.text.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for TeeLine<'_, W> {
    fn drop(&mut self) {
        if self.text.is_empty() {
            return;
        }
        let _ = self.console.write_all(&self.text);
        let _ = self.console.flush();
        for line in String::from_utf8_lossy(&self.text).lines() {
            self.log
                .push(Stream::Agent, line.strip_prefix(PREFIX).unwrap_or(line));
        }
    }
}

fn subscriber<W>(level: LevelFilter, writer: W) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::layer::SubscriberExt;
    // kube-rs's per-request trace layer logs every failed request at ERROR with no
    // context ("failed with status 500"): while the apiserver starts, the probes and
    // the reconciler make such requests every second, and report failures themselves.
    // Its TLS code warns on every connection of the kubelet probe, which skips server
    // verification on purpose (kubernetes/probe.rs says why).
    let targets = tracing_subscriber::filter::Targets::new()
        .with_default(level)
        .with_target("kube_client::client::builder", LevelFilter::OFF)
        .with_target("kube_client::client::tls", LevelFilter::ERROR);
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_writer(writer)
        .event_format(ConsoleFormat)
        .finish()
        .with(targets)
}

/// `cairn: LEVEL message key=value...`: no timestamps, the kernel's own printk
/// timestamps and the launcher's serial capture already order the lines.
#[derive(Debug)]
struct ConsoleFormat;

impl<S, N> FormatEvent<S, N> for ConsoleFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "{PREFIX}{} ", event.metadata().level())?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Writes `line` (which must end in a newline) to the console in one write(2).
pub fn write_line(out: &mut dyn Write, line: &str) {
    // Nothing sensible is left to do if the console itself fails.
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn log_lines_carry_the_prefix() {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let make_writer = move || SharedBuffer(sink.clone());
        let subscriber = subscriber(LevelFilter::INFO, make_writer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(count = 8, "mounted");
            tracing::debug!("hidden");
        });
        let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "cairn: INFO mounted count=8\n");
    }

    struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

    impl Write for SharedBuffer {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().write(bytes)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn log_lines_also_reach_the_agent_buffer() {
        let console = Arc::new(Mutex::new(Vec::new()));
        let sink = console.clone();
        let log = LogBuffer::new("agent", Default::default());
        let tee = Tee {
            log: log.clone(),
            console: move || SharedBuffer(sink.clone()),
        };
        tracing::subscriber::with_default(subscriber(LevelFilter::INFO, tee), || {
            tracing::info!("network up");
            tracing::warn!(device = "eth0", "slow");
        });
        let text = String::from_utf8(console.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "cairn: INFO network up\ncairn: WARN slow device=\"eth0\"\n"
        );
        let entries: Vec<_> = log.tail(None).iter().map(|e| e.text.clone()).collect();
        assert_eq!(entries, ["INFO network up", "WARN slow device=\"eth0\""]);
        assert!(log.tail(None).iter().all(|e| e.stream == Stream::Agent));
    }

    #[test]
    fn write_line_writes_once() {
        let mut out = Vec::new();
        write_line(&mut out, "CAIRN_READY {}\n");
        assert_eq!(out, b"CAIRN_READY {}\n");
    }
}
