//! Which surface `dbg` talks to, and connecting to it.
//!
//! - `--endpoint URL` (or `CAIRN_DEBUG_ENDPOINT`): that debug service, plain HTTP/2.
//! - `--owner`, or `--node-api URL` (or `CAIRN_NODE_API_ENDPOINT`): the owner's node
//!   API with mTLS, as the owner in the owner dir ([`crate::owner`]); the endpoint is
//!   the flag's, else the node record's `node_api_endpoint`.
//! - Neither: the surface the node record says the node serves (`apis`, from its
//!   ready line), the node API as the owner if it serves only that, and a clear error
//!   at once if it serves none. Where both are served (or the record does not say):
//!   the debug service if it answers at once; else, when owner credentials and a node
//!   API endpoint exist, whichever of the two answers first. So a debug image is
//!   reached as before, and a production image through its node API, with no flag.
//!
//! The node's certificate is checked against the node CA pinned next to the node
//! record ([`NODE_API_CA_FILE`]); the first connection pins the CA the node sends
//! (trust on first use) and says so on stderr. A launcher that gives the node a new
//! data disk deletes the pin, since that node has a new CA.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_api::owner_client::{
    connect_owner_within, OwnerConnectError, OwnerConnection, OwnerIdentity, ServerTrust,
};
use cairn_api::NodeClient;

use crate::endpoint::{self, find_record};
use crate::{owner, Cli, DbgError};

/// The pin of the node's cluster CA, beside `node.json` in the launcher's state dir.
pub const NODE_API_CA_FILE: &str = "node-api-ca.pem";
/// How long the debug service gets to answer before the node API is considered.
const DEBUG_FIRST: Duration = Duration::from_secs(2);

/// A connected client and the endpoint it talks to.
#[derive(Debug)]
pub struct Connected {
    pub client: NodeClient,
    pub endpoint: String,
}

/// Connects as the flags say (module docs), within `timeout`.
pub async fn connect(cli: &Cli, timeout: Duration) -> Result<Connected, DbgError> {
    let cwd = std::env::current_dir().unwrap_or_default();
    let record = find_record(&cwd).filter(|path| path.is_file());
    let owner_wanted = cli.owner || cli.node_api.is_some();
    if !owner_wanted {
        if let Some(explicit) = cli.endpoint.as_deref().filter(|e| !e.is_empty()) {
            return debug(explicit, timeout).await;
        }
    }
    let node_api = (cli.node_api.clone())
        .filter(|e| !e.is_empty())
        .or_else(|| record.as_deref().and_then(endpoint::node_api_from_record));
    let pin = record
        .as_deref()
        .and_then(Path::parent)
        .map(|dir| dir.join(NODE_API_CA_FILE));
    if owner_wanted {
        let node_api = node_api.ok_or_else(|| DbgError::NoNodeApiEndpoint {
            record: record.as_ref().map(|p| p.display().to_string()),
        })?;
        let identity = identity(cli.owner_dir.as_deref())?;
        return owner_within(&node_api, &identity, pin.as_deref(), timeout).await;
    }
    let debug_endpoint = endpoint::resolve(None);
    let recorded = || {
        record
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    match served(
        record
            .as_deref()
            .and_then(endpoint::apis_from_record)
            .as_deref(),
    ) {
        Served::Nothing => return Err(DbgError::NoApi { record: recorded() }),
        Served::DebugOnly => return debug(&debug_endpoint, timeout).await,
        Served::NodeOnly => {
            let node_api = node_api.ok_or_else(|| DbgError::NoNodeApiEndpoint {
                record: Some(recorded()),
            })?;
            let identity = owner_only_identity(cli.owner_dir.as_deref(), recorded())?;
            return owner_within(&node_api, &identity, pin.as_deref(), timeout).await;
        }
        Served::Both | Served::Unknown => {}
    }
    let identity = identity(cli.owner_dir.as_deref()).ok();
    let (Some(node_api), Some(identity)) = (node_api, identity) else {
        return debug(&debug_endpoint, timeout).await;
    };
    auto(
        &debug_endpoint,
        &node_api,
        &identity,
        pin.as_deref(),
        timeout,
    )
    .await
}

/// The node the launcher recorded in `record` (its `node.json`), for programs that
/// manage nodes (the cluster launcher): its debug service when it serves one, else its
/// node API as the owner in `owner_dir` (else the default owner dir), checking the node
/// against the CA pinned beside the record (pinned now if none is).
pub async fn to_record(
    record: &Path,
    owner_dir: Option<&Path>,
    timeout: Duration,
) -> Result<Connected, DbgError> {
    let debug_endpoint = endpoint::from_record(record);
    let recorded = || record.display().to_string();
    match (
        served(endpoint::apis_from_record(record).as_deref()),
        debug_endpoint,
    ) {
        (Served::Nothing, _) => Err(DbgError::NoApi { record: recorded() }),
        (Served::Both | Served::DebugOnly | Served::Unknown, Some(endpoint)) => {
            debug(&endpoint, timeout).await
        }
        _ => {
            let node_api = endpoint::node_api_from_record(record).ok_or_else(|| {
                DbgError::NoNodeApiEndpoint {
                    record: Some(recorded()),
                }
            })?;
            let identity = owner_only_identity(owner_dir, recorded())?;
            let pin = record.parent().map(|dir| dir.join(NODE_API_CA_FILE));
            owner_within(&node_api, &identity, pin.as_deref(), timeout).await
        }
    }
}

async fn debug(endpoint: &str, timeout: Duration) -> Result<Connected, DbgError> {
    let client = cairn_api::connect_within(endpoint, timeout).await?;
    Ok(Connected {
        client: NodeClient::Debug(client),
        endpoint: endpoint.to_owned(),
    })
}

/// The debug service if it answers within [`DEBUG_FIRST`]; else whichever surface
/// answers first.
async fn auto(
    debug_endpoint: &str,
    node_api: &str,
    identity: &OwnerIdentity,
    pin: Option<&Path>,
    timeout: Duration,
) -> Result<Connected, DbgError> {
    let owner = owner_within(node_api, identity, pin, timeout);
    tokio::pin!(owner);
    let first = cairn_api::connect(debug_endpoint, DEBUG_FIRST.min(timeout));
    if let Ok(client) = first.await {
        return Ok(Connected {
            client: NodeClient::Debug(client),
            endpoint: debug_endpoint.to_owned(),
        });
    }
    let debug = debug(debug_endpoint, timeout);
    tokio::pin!(debug);
    tokio::select! {
        owner_result = &mut owner => match owner_result {
            Ok(connected) => Ok(connected),
            Err(owner_err) => debug.await.map_err(|debug_err| pick(owner_err, debug_err)),
        },
        debug_result = &mut debug => match debug_result {
            Ok(connected) => Ok(connected),
            Err(debug_err) => owner.await.map_err(|owner_err| pick(owner_err, debug_err)),
        },
    }
}

/// Which surfaces a node serves, from the `apis` its record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Served {
    /// The record does not say (older launcher or agent).
    Unknown,
    Both,
    DebugOnly,
    NodeOnly,
    Nothing,
}

fn served(apis: Option<&[String]>) -> Served {
    use cairn_api::names::api::{DEBUG, NODE};
    let Some(apis) = apis else {
        return Served::Unknown;
    };
    let has = |api: &str| apis.iter().any(|a| a == api);
    match (has(DEBUG), has(NODE)) {
        (true, true) => Served::Both,
        (true, false) => Served::DebugOnly,
        (false, true) => Served::NodeOnly,
        (false, false) => Served::Nothing,
    }
}

/// Both surfaces failed: a refusal says more than "nothing answers".
fn pick(owner_err: DbgError, debug_err: DbgError) -> DbgError {
    match &owner_err {
        DbgError::OwnerConnect(
            OwnerConnectError::Refused(..) | OwnerConnectError::ServerCertificate(..),
        ) => owner_err,
        _ => debug_err,
    }
}

/// The owner's client certificate from `dir` (else the default owner dir).
fn identity(dir: Option<&Path>) -> Result<OwnerIdentity, DbgError> {
    let dir = match dir {
        Some(dir) => dir.to_owned(),
        None => owner::default_dir()?,
    };
    let credentials = owner::load(&dir)?;
    Ok(OwnerIdentity {
        cert_pem: credentials.cert_pem,
        key_pem: credentials.key_pem,
    })
}

/// [`identity`] for the node recorded in `record`, which serves only the node API: a
/// missing or unreadable owner dir says so.
fn owner_only_identity(dir: Option<&Path>, record: String) -> Result<OwnerIdentity, DbgError> {
    identity(dir).map_err(|err| match err {
        DbgError::Owner(source) => DbgError::OwnerOnly { record, source },
        other => other,
    })
}

/// [`connect_owner_within`]; pins the node CA on first use.
async fn owner_within(
    endpoint: &str,
    identity: &OwnerIdentity,
    pin: Option<&Path>,
    within: Duration,
) -> Result<Connected, DbgError> {
    let trust = match pin.map(std::fs::read_to_string) {
        Some(Ok(pem)) => ServerTrust::Pinned(pem),
        Some(Err(err)) if err.kind() != std::io::ErrorKind::NotFound => {
            return Err(DbgError::Pin(pin.unwrap_or(Path::new("")).to_owned(), err))
        }
        _ => ServerTrust::FirstUse,
    };
    let connection = connect_owner_within(endpoint, identity, &trust, within).await?;
    if trust == ServerTrust::FirstUse {
        pin_first_use(pin, &connection)?;
    }
    Ok(Connected {
        client: NodeClient::Owner(connection.client),
        endpoint: endpoint.to_owned(),
    })
}

fn pin_first_use(pin: Option<&Path>, connection: &OwnerConnection) -> Result<(), DbgError> {
    let fingerprint = owner::fingerprint(&connection.server_ca_pem).unwrap_or_default();
    match pin {
        Some(path) => {
            write_pin(path, &connection.server_ca_pem)
                .map_err(|err| DbgError::Pin(path.to_owned(), err))?;
            eprintln!(
                "dbg: first connection to this node's API: pinned its CA {fingerprint} in {}",
                path.display()
            );
        }
        None => eprintln!(
            "dbg: the node's CA {fingerprint} is trusted on first use and not pinned (no node \
             record to keep it beside)"
        ),
    }
    Ok(())
}

fn write_pin(path: &Path, pem: &str) -> std::io::Result<()> {
    let temporary: PathBuf = path.with_extension("pem.tmp");
    std::fs::write(&temporary, pem)?;
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> DbgError {
        OwnerConnectError::Refused("https://n".into(), "received fatal alert: UnknownCA".into())
            .into()
    }

    fn unreachable() -> DbgError {
        DbgError::Pin(PathBuf::from("p"), std::io::ErrorKind::NotFound.into())
    }

    #[test]
    fn the_recorded_apis_decide_the_surface() {
        let apis = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        assert_eq!(served(None), Served::Unknown);
        assert_eq!(served(Some(&apis(&["debug", "node"]))), Served::Both);
        assert_eq!(served(Some(&apis(&["debug"]))), Served::DebugOnly);
        assert_eq!(served(Some(&apis(&["node"]))), Served::NodeOnly);
        assert_eq!(served(Some(&apis(&[]))), Served::Nothing);
    }

    #[test]
    fn when_both_surfaces_fail_a_tls_refusal_is_the_error_reported() {
        // The owner connection was refused: that says more than the debug side's silence.
        assert!(matches!(
            pick(refused(), unreachable()),
            DbgError::OwnerConnect(OwnerConnectError::Refused(..))
        ));
        // Nothing answered on the node API either: the debug side's error stands.
        let timeout = OwnerConnectError::Timeout("https://n".into(), Duration::from_secs(1)).into();
        assert!(matches!(pick(timeout, unreachable()), DbgError::Pin(..)));
    }
}
