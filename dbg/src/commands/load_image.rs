//! `dbg load-image FILE`: streams an image archive (an OCI image layout tar or a
//! `docker save` tar) to the node, which imports it into containerd (LoadImage), and
//! prints each reference it loaded with the image's digest.
//!
//! A thread reads the file in chunks so the runtime keeps driving the connection; the
//! node checks every blob as it arrives and answers once the images are unpacked. On
//! a terminal, an archive of [`PROGRESS_MIN`] or more gets a progress line on stderr
//! while it uploads; otherwise stderr gets one line at the end.

use std::fs::File;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_api::v1::load_image_request::Part;
use cairn_api::v1::{LoadImageHeader, LoadImageRequest, LoadImageResponse};
use cairn_api::validate::MAX_ARCHIVE_BYTES;
use tokio_stream::StreamExt;

use super::Context;
use crate::DbgError;

/// Bytes per data message (the node takes up to 1 MiB).
const CHUNK: usize = 512 << 10;
/// Smallest archive that gets a progress line.
pub const PROGRESS_MIN: u64 = 4 << 20;
/// Between two redraws of the progress line.
const REDRAW: Duration = Duration::from_millis(200);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The archive: an OCI image layout tar or a `docker save` tar.
    pub file: PathBuf,
    /// Seconds the whole load may take: upload, checks and unpacking.
    #[arg(long, default_value_t = 1800.0, value_parser = crate::seconds)]
    pub timeout: f64,
}

pub async fn run(args: Args, ctx: Context, out: &mut dyn Write) -> Result<(), DbgError> {
    let (file, size) = open(&args.file)?;
    let started = Instant::now();
    let (sender, chunks) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let reading = std::thread::spawn(move || send_chunks(file, &sender));
    let sent = Arc::new(AtomicU64::new(0));
    let interactive = std::io::stderr().is_terminal() && size >= PROGRESS_MIN;
    let drawn = Mutex::new(None::<Instant>);
    let counter = Arc::clone(&sent);
    let data = tokio_stream::wrappers::ReceiverStream::new(chunks).map(move |chunk| {
        let done = counter.fetch_add(chunk.len() as u64, Ordering::Relaxed) + chunk.len() as u64;
        if interactive {
            redraw(&drawn, done, size, started.elapsed());
        }
        LoadImageRequest {
            part: Some(Part::Data(chunk)),
        }
    });
    let header = LoadImageRequest {
        part: Some(Part::Header(LoadImageHeader { archive_size: size })),
    };
    let requests = tokio_stream::once(header).chain(data);
    let mut client = ctx.client.clone();
    let timeout = Duration::from_secs_f64(args.timeout);
    let answer = ctx
        .call("LoadImage", timeout, client.load_image(requests))
        .await;
    // A file that could not be read explains whatever the node said about it.
    if let Ok(Err(source)) = reading.join() {
        return Err(DbgError::ReadArchive {
            path: args.file,
            source,
        });
    }
    let response = answer.map_err(|err| match err {
        DbgError::Call {
            endpoint, status, ..
        } => DbgError::Load {
            path: args.file.clone(),
            endpoint,
            status,
        },
        other => other,
    })?;
    let summary = summary(size, started.elapsed());
    if interactive {
        eprintln!("\r{summary}\x1b[K");
    } else {
        eprintln!("{summary}");
    }
    for line in loaded_lines(&response) {
        writeln!(out, "{line}").map_err(DbgError::Output)?;
    }
    Ok(())
}

/// The archive, opened, and its size, or why it cannot be sent.
fn open(path: &Path) -> Result<(File, u64), DbgError> {
    let read_error = |source| DbgError::ReadArchive {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(read_error)?;
    let metadata = file.metadata().map_err(read_error)?;
    if !metadata.is_file() {
        return Err(DbgError::NotAnArchive(path.to_owned()));
    }
    if metadata.len() > MAX_ARCHIVE_BYTES {
        return Err(DbgError::ArchiveTooLarge {
            path: path.to_owned(),
            size: metadata.len(),
        });
    }
    Ok((file, metadata.len()))
}

/// Reads the file into `sender` until its end, the receiver going away (the call
/// ended) or a read error.
fn send_chunks(mut file: File, sender: &tokio::sync::mpsc::Sender<Vec<u8>>) -> std::io::Result<()> {
    loop {
        let mut chunk = Vec::with_capacity(CHUNK);
        let n = (&mut file).take(CHUNK as u64).read_to_end(&mut chunk)?;
        if n == 0 || sender.blocking_send(chunk).is_err() {
            return Ok(());
        }
    }
}

fn redraw(drawn: &Mutex<Option<Instant>>, done: u64, total: u64, elapsed: Duration) {
    let mut last = drawn.lock().unwrap_or_else(|p| p.into_inner());
    let due = last.is_none_or(|at| at.elapsed() >= REDRAW) || done == total;
    if !due {
        return;
    }
    *last = Some(Instant::now());
    let mut line = progress_line(done, total, elapsed);
    if done == total {
        line.push_str("  (the node is checking and unpacking)");
    }
    eprint!("\r{line}\x1b[K");
}

/// `[#####-----]  42%  40.1/96.0 MiB  12.3 MiB/s`.
pub fn progress_line(done: u64, total: u64, elapsed: Duration) -> String {
    const WIDTH: u64 = 30;
    let filled = (done.min(total) * WIDTH)
        .checked_div(total)
        .unwrap_or(WIDTH) as usize;
    let percent = (done.min(total) * 100).checked_div(total).unwrap_or(100);
    format!(
        "[{}{}] {percent:>3}%  {:.1}/{:.1} MiB  {}",
        "#".repeat(filled),
        "-".repeat(WIDTH as usize - filled),
        mib(done),
        mib(total),
        rate(done, elapsed)
    )
}

/// The line stderr gets at the end.
pub fn summary(size: u64, elapsed: Duration) -> String {
    format!(
        "loaded {:.1} MiB in {:.1} s ({})",
        mib(size),
        elapsed.as_secs_f64(),
        rate(size, elapsed)
    )
}

/// `loaded <reference> <digest>`, one line per reference.
pub fn loaded_lines(response: &LoadImageResponse) -> Vec<String> {
    (response.images.iter())
        .map(|image| format!("loaded {} {}", image.reference, image.digest))
        .collect()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

fn rate(bytes: u64, elapsed: Duration) -> String {
    match elapsed.as_secs_f64() {
        secs if secs > 0.0 => format!("{:.1} MiB/s", mib(bytes) / secs),
        _ => "- MiB/s".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_api::v1::LoadedImage;

    #[test]
    fn progress_shows_the_share_sent_and_the_rate() {
        let line = progress_line(25 << 20, 100 << 20, Duration::from_secs(5));
        assert_eq!(
            line,
            format!(
                "[{}{}]  25%  25.0/100.0 MiB  5.0 MiB/s",
                "#".repeat(7),
                "-".repeat(23)
            )
        );
        assert!(progress_line(0, 0, Duration::ZERO).contains("100%"));
        assert!(progress_line(10, 10, Duration::ZERO).starts_with(&format!("[{}]", "#".repeat(30))));
    }

    #[test]
    fn each_loaded_reference_gets_a_line() {
        let image = |reference: &str| LoadedImage {
            reference: reference.to_owned(),
            digest: "sha256:ab".to_owned(),
            size_bytes: 1,
        };
        let response = LoadImageResponse {
            images: vec![image("docker.io/library/a:1"), image("localhost/b:2")],
            archive_bytes: 10,
        };
        assert_eq!(
            loaded_lines(&response),
            [
                "loaded docker.io/library/a:1 sha256:ab",
                "loaded localhost/b:2 sha256:ab"
            ]
        );
        assert_eq!(
            summary(2 << 20, Duration::from_secs(2)),
            "loaded 2.0 MiB in 2.0 s (1.0 MiB/s)"
        );
    }

    #[test]
    fn a_directory_or_a_missing_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = open(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains(&dir.path().display().to_string()),
            "{err}"
        );
        let missing = dir.path().join("missing.tar");
        let err = open(&missing).unwrap_err();
        assert!(err.to_string().contains("missing.tar"), "{err}");
        assert_eq!(err.exit_code(), 1);
    }
}
