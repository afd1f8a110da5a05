//! A join credential from a control-plane node (docs/interfaces.md "Join tokens"), for
//! the workers the launcher or a test boots: through its debug service, or its owner's
//! node API on a production image.

use std::path::Path;
use std::time::{Duration, Instant};

use cairn_api::node_config::Join;
use cairn_api::v1::CreateJoinTokenRequest;
use cairn_api::NodeClient;

/// How long the credential authenticates.
pub const TTL_SECONDS: u32 = 3600;
/// How long connecting to the control-plane node may take.
const CONNECT_WITHIN: Duration = Duration::from_secs(30);

/// Asks the debug service at `endpoint` for a join token until the control plane
/// issues one (its apiserver and bootstrap bindings may still be coming up) or
/// `within` passes.
pub fn join_credential(endpoint: &str, within: Duration) -> Result<Join, String> {
    issue(within, async {
        let client = cairn_api::connect_within(endpoint, CONNECT_WITHIN)
            .await
            .map_err(|err| cairn_api::error_chain(&err))?;
        Ok((NodeClient::Debug(client), endpoint.to_owned()))
    })
}

/// [`join_credential`] from the node the launcher recorded in `record`: through its
/// debug service if it serves one, else through its node API as the owner in
/// `owner_dir` (a production control plane; `dbg join-token` over the owner API).
pub fn join_credential_from_record(
    record: &Path,
    owner_dir: Option<&Path>,
    within: Duration,
) -> Result<Join, String> {
    issue(within, async {
        let connected = cairn_dbg::connect::to_record(record, owner_dir, CONNECT_WITHIN)
            .await
            .map_err(|err| cairn_api::error_chain(&err))?;
        Ok((connected.client, connected.endpoint))
    })
}

/// Runs `connect` (a client and the endpoint it talks to), then asks for a token until
/// one is issued or `within` passes.
fn issue(
    within: Duration,
    connect: impl std::future::Future<Output = Result<(NodeClient, String), String>>,
) -> Result<Join, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| format!("tokio runtime: {err}"))?;
    runtime.block_on(async {
        let (mut client, endpoint) = connect.await?;
        let deadline = Instant::now() + within;
        loop {
            let request = CreateJoinTokenRequest {
                ttl_seconds: Some(TTL_SECONDS),
            };
            match client.create_join_token(request).await {
                Ok(created) => {
                    let created = created.into_inner();
                    return Ok(Join {
                        api: created.api,
                        token: created.token,
                        ca_hash: created.ca_hash,
                        expires: None,
                    });
                }
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                Err(status) => {
                    return Err(format!(
                        "no join token from {endpoint} within {within:?}: {}",
                        status.message()
                    ))
                }
            }
        }
    })
}
