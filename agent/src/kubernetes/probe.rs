//! Readiness probes over each component's own health endpoint, through kube-rs's
//! client (rustls, ring): it speaks HTTPS with the agent's client certificate to etcd
//! and the apiserver, HTTPS without verification to the loopback-only self-signed
//! endpoints of the controller-manager and scheduler, and plain HTTP to the kubelet's
//! healthz port. A fresh client per attempt: probes run once a second, and a client
//! that outlived a restart of its server would only carry dead connections.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ::kube::Client;

use crate::supervisor::{probe_fn, Probe, Readiness};
use cairn_api::error_chain;

/// How the probe authenticates and what it trusts.
#[derive(Debug, Clone)]
pub enum Access {
    /// The agent's client certificate; trusts only the cluster CA.
    Agent(PathBuf),
    /// No credentials, any server certificate: loopback endpoints with self-signed
    /// certificates whose health paths need no authentication. The PKI directory is
    /// still needed: a client with no root certificate at all falls back to the
    /// system's roots, which a node does not have, and fails before connecting.
    Insecure(PathBuf),
}

/// A probe that GETs `url` + `path` and passes when the status is 2xx and `check`
/// accepts the body.
pub fn get(
    access: Access,
    url: &str,
    path: &'static str,
    check: fn(&str) -> Result<(), String>,
) -> Arc<dyn Probe> {
    let url = url.to_owned();
    probe_fn(move || {
        let (access, url) = (access.clone(), url.clone());
        async move {
            let client = client(&access, &url)?;
            let body = fetch(&client, path).await?;
            check(&body)
        }
    })
}

/// Readiness of a component's own loopback `/healthz` (any 2xx), checked every
/// second: controller-manager, scheduler and kubelet, whose health paths need no
/// credentials.
pub fn healthz(pki_dir: &Path, url: &str) -> Readiness {
    local(pki_dir, url, "/healthz")
}

/// [`healthz`], once `needed` exists: a worker's kubelet answers its healthz before
/// its TLS bootstrap has brought its client certificate, which kube-proxy and
/// `node-ready` use.
pub fn healthz_with(pki_dir: &Path, url: &str, needed: PathBuf) -> Readiness {
    let health = healthz(pki_dir, url);
    let probe = health.probe.clone();
    Readiness {
        probe: probe_fn(move || {
            let (probe, needed) = (probe.clone(), needed.clone());
            async move {
                if !needed.exists() {
                    return Err(format!("waiting for {}", needed.display()));
                }
                probe.check().await.map(|_| ())
            }
        }),
        ..health
    }
}

/// Readiness of a loopback endpoint `url` + `path` that needs no credentials (any
/// 2xx), checked every second.
pub fn local(pki_dir: &Path, url: &str, path: &'static str) -> Readiness {
    Readiness::new(get(
        Access::Insecure(pki_dir.to_owned()),
        url,
        path,
        any_body,
    ))
    .interval(Duration::from_secs(1))
    .timeout(Duration::from_secs(3))
}

/// Accepts any body (the status code already said ok).
pub fn any_body(_: &str) -> Result<(), String> {
    Ok(())
}

fn client(access: &Access, url: &str) -> Result<Client, String> {
    let config = match access {
        Access::Agent(pki_dir) => {
            super::client::config(Path::new(pki_dir), url).map_err(|e| error_chain(&e))?
        }
        Access::Insecure(pki_dir) => {
            let mut config = super::client::anonymous_config(Path::new(pki_dir), url)
                .map_err(|e| error_chain(&e))?;
            config.accept_invalid_certs = true;
            config
        }
    };
    Client::try_from(config).map_err(|e| error_chain(&e))
}

/// A client with the agent's certificate, for repeated requests to `url`.
pub fn agent_client(pki_dir: &Path, url: &str) -> Result<Client, String> {
    client(&Access::Agent(pki_dir.to_owned()), url)
}

/// The body at `path` whatever the status (a failing `/readyz?verbose` lists its
/// checks in the body of a 500); `None` when there is no answer at all.
pub async fn body_any_status(client: &Client, path: &str) -> Option<String> {
    let request = http::Request::get(path).body(Vec::new()).ok()?;
    match client.request_text(request).await {
        Ok(body) => Some(body),
        Err(::kube::Error::Api(status)) => Some(status.message),
        Err(_) => None,
    }
}

async fn fetch(client: &Client, path: &str) -> Result<String, String> {
    let request = http::Request::get(path)
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    client
        .request_text(request)
        .await
        .map_err(|e| short(&error_chain(&e)))
}

/// Condition reasons stay one readable line: a failing /readyz returns its whole
/// check list as the error body.
fn short(text: &str) -> String {
    const MAX: usize = 300;
    let line = text.replace('\n', " ");
    match line.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}...", &line[..at]),
        None => line,
    }
}
