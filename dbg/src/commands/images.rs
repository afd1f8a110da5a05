//! `dbg images`: the images in containerd's `k8s.io` namespace (reference, short
//! digest, size, pinned), then the content store's totals.

use std::io::Write;

use cairn_api::v1::{ListImagesRequest, ListImagesResponse};

use super::{table, Context};
use crate::DbgError;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args, ctx: Context, out: &mut dyn Write) -> Result<(), DbgError> {
    let mut client = ctx.client.clone();
    let response = ctx
        .call(
            "ListImages",
            ctx.call_timeout,
            client.list_images(ListImagesRequest {}),
        )
        .await?;
    table(out, &rows(&response)).map_err(DbgError::Output)?;
    writeln!(out, "{}", totals(&response)).map_err(DbgError::Output)
}

/// The header and a row per reference. The `sha256:<config digest>` ID record CRI adds
/// to an image it pulled is left out where the image has a name.
pub fn rows(response: &ListImagesResponse) -> Vec<Vec<String>> {
    let mut rows = vec![["REFERENCE", "DIGEST", "SIZE", "PINNED"]
        .map(str::to_owned)
        .to_vec()];
    for image in &response.images {
        let named: Vec<&String> = (image.references.iter())
            .filter(|r| !r.starts_with("sha256:"))
            .collect();
        let shown = match named.is_empty() {
            true => image.references.iter().collect(),
            false => named,
        };
        for reference in shown {
            rows.push(vec![
                reference.clone(),
                short_digest(&image.digest).to_owned(),
                size(image.size_bytes),
                if image.pinned { "yes" } else { "no" }.to_owned(),
            ]);
        }
    }
    rows
}

/// The content store's line: blobs, bytes, and writes in progress if any.
pub fn totals(response: &ListImagesResponse) -> String {
    let content = response.content.unwrap_or_default();
    let mut line = format!(
        "content store: {} blobs, {}",
        content.blobs,
        size(content.bytes)
    );
    if content.ingests > 0 {
        line.push_str(&format!(", {} writes in progress", content.ingests));
    }
    line
}

/// The first 12 hex digits, as `docker images` shows an ID.
pub fn short_digest(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, hex)| hex);
    &hex[..hex.len().min(12)]
}

/// `512B`, `4.0KiB`, `1.9MiB`, `1.2GiB`: one cell.
pub fn size(bytes: u64) -> String {
    let units = [(30, "GiB"), (20, "MiB"), (10, "KiB")];
    for (shift, unit) in units {
        if bytes >= 1 << shift {
            return format!("{:.1}{unit}", bytes as f64 / (1u64 << shift) as f64);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_api::v1::{ContentTotals, ImageSummary};

    #[test]
    fn rows_name_each_reference_and_hide_cri_ids() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let response = ListImagesResponse {
            images: vec![
                ImageSummary {
                    references: vec![
                        "localhost/cairn/toolbox:1".into(),
                        format!("sha256:{}", "cd".repeat(32)),
                    ],
                    digest: digest.clone(),
                    size_bytes: 2_000_000,
                    pinned: true,
                },
                ImageSummary {
                    references: vec![format!("sha256:{}", "ef".repeat(32))],
                    digest,
                    size_bytes: 100,
                    pinned: false,
                },
            ],
            content: Some(ContentTotals {
                blobs: 7,
                bytes: 3 << 20,
                ingests: 0,
            }),
        };
        let rows = rows(&response);
        assert_eq!(
            rows[1],
            ["localhost/cairn/toolbox:1", "abababababab", "1.9MiB", "yes"]
        );
        assert_eq!(rows[2][0], format!("sha256:{}", "ef".repeat(32)));
        assert_eq!(rows[2][3], "no");
        assert_eq!(rows.len(), 3);
        assert_eq!(totals(&response), "content store: 7 blobs, 3.0MiB");
    }

    #[test]
    fn sizes_are_one_cell() {
        assert_eq!(size(512), "512B");
        assert_eq!(size(4096), "4.0KiB");
        assert_eq!(size(3 << 30), "3.0GiB");
        assert_eq!(short_digest("sha256:0123456789abcdef"), "0123456789ab");
    }
}
