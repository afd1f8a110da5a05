//! LoadImage and ListImages: the node API's side of image loading (the importer is
//! `containerd/import.rs`).
//!
//! A load takes the one load slot (a second load at the same time is refused, not
//! queued), reads the header and checks the declared size against the limit and the
//! data disk's free space, then pumps the client's data messages through a small
//! bounded channel into the importer's blocking reader ([`StreamReader`]): the archive
//! streams from the client into containerd with a few chunks in memory. The import
//! runs in a task of its own, so a client that goes away mid-load still gets its lease
//! deleted and its content collected. A client that sends nothing for
//! [`IDLE_TIMEOUT`] is dropped.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::path::Path;
use std::time::Duration;

use cairn_api::v1::load_image_request::Part;
use cairn_api::v1::{
    ContentTotals, ImageSummary, ListImagesResponse, LoadImageRequest, LoadImageResponse,
    LoadedImage,
};
use cairn_api::validate;
use tokio::sync::{mpsc, Semaphore};
use tonic::Streaming;

use super::error::RpcError;
use super::ApiState;
use crate::containerd::{self, images, import};

/// How long a loading client may stay silent.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Data messages waiting for the importer.
const QUEUED_CHUNKS: usize = 4;

/// LoadImage: the archive in `stream` into containerd.
pub async fn load(
    state: &ApiState,
    slot: &Semaphore,
    mut stream: Streaming<LoadImageRequest>,
) -> Result<LoadImageResponse, RpcError> {
    let _permit = slot.try_acquire().map_err(|_| RpcError::LoadBusy)?;
    let size = match next(&mut stream).await?.and_then(|m| m.part) {
        Some(Part::Header(header)) => validate::archive_size(header.archive_size)?,
        _ => {
            return Err(RpcError::LoadProtocol(
                "the first message must be the header",
            ))
        }
    };
    check_space(&state.paths.resolve(containerd::ROOT), size)?;
    tracing::info!("loading an image archive of {size} bytes for a debug client");
    let started = std::time::Instant::now();
    let (chunks, queue) = mpsc::channel(QUEUED_CHUNKS);
    let socket = state.paths.resolve(containerd::SOCKET);
    let mut loading =
        tokio::spawn(
            async move { import::load_archive(&socket, StreamReader::new(queue), size).await },
        );
    let pumping = pump(stream, chunks);
    tokio::pin!(pumping);
    // Whichever ends first: the client's failure explains the archive's; a load
    // that ended (failed) first makes whatever the client still sends moot.
    let (pumped, loaded) = tokio::select! {
        pumped = &mut pumping => (pumped, (&mut loading).await),
        loaded = &mut loading => (Ok(()), loaded),
    };
    pumped?;
    let imported = loaded
        .map_err(RpcError::LoadTask)?
        .map_err(RpcError::Load)?;
    let images: Vec<LoadedImage> = imported
        .into_iter()
        .map(|image| LoadedImage {
            reference: image.reference,
            digest: image.digest,
            size_bytes: image.size,
        })
        .collect();
    let names: Vec<&str> = images.iter().map(|i| i.reference.as_str()).collect();
    let took = started.elapsed().as_secs_f64();
    tracing::info!("loaded {} in {took:.2} s", names.join(", "));
    Ok(LoadImageResponse {
        images,
        archive_bytes: size,
    })
}

/// The next message, within [`IDLE_TIMEOUT`].
async fn next(
    stream: &mut Streaming<LoadImageRequest>,
) -> Result<Option<LoadImageRequest>, RpcError> {
    match tokio::time::timeout(IDLE_TIMEOUT, stream.message()).await {
        Ok(result) => result.map_err(RpcError::LoadStream),
        Err(_) => Err(RpcError::LoadIdle(IDLE_TIMEOUT)),
    }
}

/// Feeds the data messages to the importer until the stream ends (the importer then
/// sees the archive's end) or the importer stops taking them. A failure is passed on
/// to the importer as a read error, so it stops too, and returned.
async fn pump(
    mut stream: Streaming<LoadImageRequest>,
    chunks: mpsc::Sender<io::Result<Vec<u8>>>,
) -> Result<(), RpcError> {
    loop {
        let outcome = match next(&mut stream).await {
            Ok(None) => return Ok(()),
            Ok(Some(LoadImageRequest {
                part: Some(Part::Data(data)),
            })) => match validate::load_chunk(&data) {
                Ok(_) => Ok(data),
                Err(invalid) => Err(RpcError::from(invalid)),
            },
            Ok(Some(_)) => Err(RpcError::LoadProtocol(
                "only the first message may be a header",
            )),
            Err(err) => Err(err),
        };
        match outcome {
            Ok(data) => {
                if chunks.send(Ok(data)).await.is_err() {
                    // The importer is done: it has its reason.
                    return Ok(());
                }
            }
            Err(err) => {
                let reason = io::Error::other(cairn_api::error_chain(&err));
                let _ = chunks.send(Err(reason)).await;
                return Err(err);
            }
        }
    }
}

/// Refuses an archive unless the filesystem of `root` has room for it twice: its
/// blobs in the content store and its unpacked layers.
fn check_space(root: &Path, size: u64) -> Result<(), RpcError> {
    let need = size.saturating_mul(2);
    let Some(free) = free_bytes(root) else {
        return Ok(());
    };
    if free < need {
        return Err(RpcError::NoSpace { need, free });
    }
    Ok(())
}

/// Free bytes for unprivileged writers on the filesystem of `path` (or of its nearest
/// existing ancestor).
fn free_bytes(path: &Path) -> Option<u64> {
    let existing = path.ancestors().find(|p| p.exists())?;
    let stat = nix::sys::statvfs::statvfs(existing).ok()?;
    Some(stat.blocks_available().saturating_mul(stat.fragment_size()))
}

/// The importer's blocking view of the pumped chunks: `Read` over a channel.
struct StreamReader {
    queue: mpsc::Receiver<io::Result<Vec<u8>>>,
    current: VecDeque<u8>,
}

impl StreamReader {
    fn new(queue: mpsc::Receiver<io::Result<Vec<u8>>>) -> Self {
        Self {
            queue,
            current: VecDeque::new(),
        }
    }
}

impl Read for StreamReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.queue.blocking_recv() {
                Some(chunk) => self.current = VecDeque::from(chunk?),
                None => return Ok(0),
            }
        }
        self.current.read(buf)
    }
}

/// ListImages.
pub async fn list(state: &ApiState) -> Result<ListImagesResponse, RpcError> {
    let list = images::list(&state.paths.resolve(containerd::SOCKET))
        .await
        .map_err(RpcError::ListImages)?;
    Ok(ListImagesResponse {
        images: list
            .images
            .into_iter()
            .map(|image| ImageSummary {
                references: image.references,
                digest: image.digest,
                size_bytes: image.size,
                pinned: image.pinned,
            })
            .collect(),
        content: Some(ContentTotals {
            blobs: list.content.blobs,
            bytes: list.content.bytes,
            ingests: list.content.ingests,
        }),
    })
}
