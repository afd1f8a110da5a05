//! A join credential from a control-plane node's debug service (docs/interfaces.md
//! "Join tokens"), for the workers the launcher or a test boots.

use std::time::{Duration, Instant};

use cairn_api::node_config::Join;
use cairn_api::v1::CreateJoinTokenRequest;

/// How long the credential authenticates.
pub const TTL_SECONDS: u32 = 3600;

/// Asks the debug service at `endpoint` for a join token until the control plane
/// issues one (its apiserver and bootstrap bindings may still be coming up) or
/// `within` passes.
pub fn join_credential(endpoint: &str, within: Duration) -> Result<Join, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| format!("tokio runtime: {err}"))?;
    runtime.block_on(async {
        let mut client = cairn_api::connect_within(endpoint, Duration::from_secs(30))
            .await
            .map_err(|err| cairn_api::error_chain(&err))?;
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
