//! What containerd holds in `k8s.io`: the image records grouped by target, each with
//! the size of the content it refers to and whether it is pinned, and the content
//! store's totals (blobs, bytes, writes in progress), which show that a failed load
//! left nothing behind.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::{
    ListContentRequest, ListImagesRequest, ListStatusesRequest, ReadContentRequest,
};
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::Status;

use super::client::{self, ClientError};
use super::import::PINNED;
use super::NAMESPACE;

/// Manifests and indexes larger than this are not read to size their content.
const MAX_JSON: i64 = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{call} failed")]
    Call {
        call: &'static str,
        #[source]
        source: Status,
    },
}

/// One image: every record with the same target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    /// The records' names, sorted.
    pub references: Vec<String>,
    /// The target's digest.
    pub digest: String,
    /// The content it refers to that the store holds, in bytes.
    pub size: u64,
    pub pinned: bool,
}

/// The content store in `k8s.io`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContentTotals {
    pub blobs: u64,
    pub bytes: u64,
    /// Writes in progress.
    pub ingests: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageList {
    /// Sorted by first reference.
    pub images: Vec<ImageSummary>,
    pub content: ContentTotals,
}

/// Lists the images and the content store through containerd at `socket`.
pub async fn list(socket: &Path) -> Result<ImageList, ListError> {
    let channel = client::connect(socket).await?;
    let sizes = content_sizes(&channel).await?;
    let statuses = ContentClient::new(channel.clone())
        .list_statuses(request(ListStatusesRequest::default()))
        .await
        .map_err(failed("content ListStatuses"))?
        .into_inner()
        .statuses;
    let records = ImagesClient::new(channel.clone())
        .list(request(ListImagesRequest::default()))
        .await
        .map_err(failed("images List"))?
        .into_inner()
        .images;
    let mut targets: BTreeMap<String, (String, Vec<String>, bool)> = BTreeMap::new();
    for record in records {
        let Some(target) = record.target else {
            continue;
        };
        let pinned = record.labels.get(PINNED.0).is_some_and(|v| v == PINNED.1);
        let entry = targets
            .entry(target.digest)
            .or_insert_with(|| (target.media_type, Vec::new(), false));
        entry.1.push(record.name);
        entry.2 |= pinned;
    }
    let mut images = Vec::new();
    for (digest, (media_type, mut references, pinned)) in targets {
        references.sort();
        let size = reachable_size(&channel, &media_type, &digest, &sizes).await?;
        images.push(ImageSummary {
            references,
            digest,
            size,
            pinned,
        });
    }
    images.sort_by(|a, b| a.references.cmp(&b.references));
    let content = ContentTotals {
        blobs: sizes.len() as u64,
        bytes: sizes.values().map(|s| (*s).max(0) as u64).sum(),
        ingests: statuses.len() as u64,
    };
    Ok(ImageList { images, content })
}

fn request<T>(message: T) -> containerd_client::tonic::Request<T> {
    client::request(message, NAMESPACE, None)
}

fn failed(call: &'static str) -> impl FnOnce(Status) -> ListError {
    move |source| ListError::Call { call, source }
}

/// Every blob's size, by digest.
async fn content_sizes(channel: &Channel) -> Result<HashMap<String, i64>, ListError> {
    let mut stream = ContentClient::new(channel.clone())
        .list(request(ListContentRequest::default()))
        .await
        .map_err(failed("content List"))?
        .into_inner();
    let mut sizes = HashMap::new();
    while let Some(batch) = stream.message().await.map_err(failed("content List"))? {
        sizes.extend(batch.info.into_iter().map(|info| (info.digest, info.size)));
    }
    Ok(sizes)
}

/// The bytes of the content a target refers to that the store holds: the target,
/// and through manifests and indexes, configs, layers and platform manifests.
async fn reachable_size(
    channel: &Channel,
    media_type: &str,
    digest: &str,
    sizes: &HashMap<String, i64>,
) -> Result<u64, ListError> {
    let mut seen = HashSet::new();
    let mut pending = vec![(media_type.to_owned(), digest.to_owned())];
    let mut total = 0u64;
    while let Some((media_type, digest)) = pending.pop() {
        let Some(size) = sizes.get(&digest).copied() else {
            continue;
        };
        if !seen.insert(digest.clone()) {
            continue;
        }
        total += size.max(0) as u64;
        let is_tree = media_type.contains("manifest") || media_type.contains("index");
        if !is_tree || size > MAX_JSON {
            continue;
        }
        let bytes = read_blob(channel, &digest).await?;
        let Ok(body) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        let children = (body
            .get("manifests")
            .and_then(|m| m.as_array())
            .into_iter()
            .flatten())
        .chain(body.get("config"))
        .chain(
            body.get("layers")
                .and_then(|l| l.as_array())
                .into_iter()
                .flatten(),
        );
        for child in children {
            let field = |name: &str| child.get(name).and_then(|v| v.as_str()).map(str::to_owned);
            if let (Some(media_type), Some(digest)) = (field("mediaType"), field("digest")) {
                pending.push((media_type, digest));
            }
        }
    }
    Ok(total)
}

async fn read_blob(channel: &Channel, digest: &str) -> Result<Vec<u8>, ListError> {
    let read = ReadContentRequest {
        digest: digest.to_owned(),
        offset: 0,
        size: 0,
    };
    let mut stream = ContentClient::new(channel.clone())
        .read(request(read))
        .await
        .map_err(failed("content Read"))?
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(part) = stream.message().await.map_err(failed("content Read"))? {
        bytes.extend_from_slice(&part.data);
    }
    Ok(bytes)
}
