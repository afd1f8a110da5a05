//! Approves kubelet serving certificates for what each node is, on a control-plane
//! node (docs/interfaces.md "Workers").
//!
//! A worker's kubelet asks for its serving certificate by CSR (`serverTLSBootstrap`;
//! signer `kubernetes.io/kubelet-serving`), naming the addresses of its Node. The
//! controller-manager signs approved ones but never approves them itself: anyone with a
//! node's credentials could otherwise get a certificate for any name, and the
//! apiserver, which dials kubelets for `kubectl logs` and `exec`, would trust it. This
//! task approves a request only if all of these hold, and denies it with the reason
//! otherwise:
//! - it comes from a node (`system:node:<n>` in `system:nodes`) and names that node
//!   (subject CN = the user, O = `system:nodes` only), and its signature verifies;
//! - its usages are server auth (with digital signature, key encipherment) only;
//! - it asks for DNS names and IP addresses only, at least one, each one the Node `<n>`
//!   reports (Hostname/InternalDNS/ExternalDNS; InternalIP/ExternalIP), and no IP that
//!   another Node reports (a node writes its own addresses, so matching its Node alone
//!   would let it claim another's).
//!
//! Polls rather than watches, like `node-ready`: one small LIST every few seconds, no
//! watch to re-establish after an apiserver restart.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::api::core::v1::Node;
use kube::api::{ListParams, PostParams};
use kube::Api;

use cairn_api::error_chain;

pub const SIGNER: &str = "kubernetes.io/kubelet-serving";
const PERIOD: Duration = Duration::from_secs(3);
/// A node's user name: this, then the Node's name.
pub(super) const NODE_PREFIX: &str = "system:node:";
const NODES_GROUP: &str = "system:nodes";

/// What to do with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Approve(String),
    Deny(String),
}

/// Decides pending serving CSRs for good; spawn once the apiserver is ready.
pub async fn run(client: kube::Client) {
    let requests: Api<CertificateSigningRequest> = Api::all(client.clone());
    let nodes: Api<Node> = Api::all(client);
    let pending_only = ListParams::default().fields(&format!("spec.signerName={SIGNER}"));
    loop {
        tokio::time::sleep(PERIOD).await;
        let pending: Vec<_> = match requests.list(&pending_only).await {
            Ok(list) => list.items.into_iter().filter(undecided).collect(),
            Err(err) => {
                tracing::debug!("csr-approver: cannot list CSRs: {}", error_chain(&err));
                continue;
            }
        };
        if pending.is_empty() {
            continue;
        }
        let nodes = match nodes.list(&ListParams::default()).await {
            Ok(list) => list.items,
            Err(err) => {
                tracing::warn!("csr-approver: cannot list nodes: {}", error_chain(&err));
                continue;
            }
        };
        for csr in pending {
            let verdict = decide(&csr, &nodes);
            let name = csr.metadata.name.clone().unwrap_or_default();
            match record(&requests, csr, &verdict).await {
                Ok(()) => tracing::info!("csr-approver: {name}: {verdict:?}"),
                Err(err) => tracing::warn!("csr-approver: {name}: {verdict:?} not recorded: {err}"),
            }
        }
    }
}

fn undecided(csr: &CertificateSigningRequest) -> bool {
    let conditions = csr.status.as_ref().and_then(|s| s.conditions.as_ref());
    !conditions
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Approved" || c.type_ == "Denied")
}

/// Writes the verdict through the CSR's `approval` subresource.
async fn record(
    requests: &Api<CertificateSigningRequest>,
    mut csr: CertificateSigningRequest,
    verdict: &Verdict,
) -> Result<(), String> {
    let (type_, reason, message) = match verdict {
        Verdict::Approve(message) => ("Approved", "CairnNodeServing", message),
        Verdict::Deny(message) => ("Denied", "CairnNotThisNode", message),
    };
    let name = csr.metadata.name.clone().unwrap_or_default();
    let status = csr.status.get_or_insert_with(Default::default);
    status
        .conditions
        .get_or_insert_with(Vec::new)
        .push(CertificateSigningRequestCondition {
            type_: type_.to_owned(),
            status: "True".to_owned(),
            reason: Some(reason.to_owned()),
            message: Some(message.clone()),
            ..Default::default()
        });
    requests
        .replace_subresource("approval", &name, &PostParams::default(), &csr)
        .await
        .map(|_| ())
        .map_err(|err| error_chain(&err))
}

/// The verdict on `csr` given every Node of the cluster.
pub fn decide(csr: &CertificateSigningRequest, nodes: &[Node]) -> Verdict {
    match check(csr, nodes) {
        Ok(message) => Verdict::Approve(message),
        Err(message) => Verdict::Deny(message),
    }
}

fn check(csr: &CertificateSigningRequest, nodes: &[Node]) -> Result<String, String> {
    let spec = &csr.spec;
    if spec.signer_name != SIGNER {
        return Err(format!("signer {} is not {SIGNER}", spec.signer_name));
    }
    let user = spec.username.as_deref().unwrap_or_default();
    let groups = spec.groups.as_deref().unwrap_or_default();
    let node_name = user
        .strip_prefix(NODE_PREFIX)
        .filter(|_| groups.iter().any(|g| g == NODES_GROUP))
        .ok_or_else(|| format!("requested by {user:?}, not by a node"))?;
    let request = Request::parse(&spec.request.0)?;
    if request.common_name.as_deref() != Some(user) || request.organizations != [NODES_GROUP] {
        return Err(format!(
            "the request names CN {:?} O {:?}; a node's is CN {user:?} O [\"{NODES_GROUP}\"]",
            request.common_name.unwrap_or_default(),
            request.organizations
        ));
    }
    let usages: BTreeSet<&str> = spec.usages.iter().flatten().map(String::as_str).collect();
    let allowed = ["digital signature", "key encipherment", "server auth"];
    if !usages.contains("server auth") || usages.iter().any(|u| !allowed.contains(u)) {
        return Err(format!(
            "usages {usages:?} are not server auth (with digital signature, key encipherment)"
        ));
    }
    if request.dns.is_empty() && request.ips.is_empty() {
        return Err("the request names no DNS name or IP address".to_owned());
    }
    let node = nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(node_name))
        .ok_or_else(|| format!("no Node {node_name}"))?;
    let has = |types: &[&str]| -> BTreeSet<String> {
        let addresses = node.status.as_ref().and_then(|s| s.addresses.as_ref());
        (addresses.into_iter().flatten())
            .filter(|a| types.contains(&a.type_.as_str()))
            .map(|a| a.address.clone())
            .collect()
    };
    let names = has(&["Hostname", "InternalDNS", "ExternalDNS"]);
    let ips = has(&["InternalIP", "ExternalIP"]);
    if let Some(name) = request.dns.iter().find(|d| !names.contains(*d)) {
        return Err(format!("Node {node_name} does not report the name {name}"));
    }
    for ip in &request.ips {
        if !ips.contains(&ip.to_string()) {
            return Err(format!("Node {node_name} does not report the address {ip}"));
        }
        let claimed = nodes
            .iter()
            .filter(|n| n.metadata.name.as_deref() != Some(node_name))
            .find(|n| {
                let addresses = n.status.as_ref().and_then(|s| s.addresses.as_ref());
                (addresses.into_iter().flatten()).any(|a| a.address == ip.to_string())
            });
        if let Some(other) = claimed {
            return Err(format!(
                "the address {ip} is also Node {}'s",
                other.metadata.name.as_deref().unwrap_or_default()
            ));
        }
    }
    Ok(format!(
        "node {node_name}: names {:?} and addresses {:?} are its own",
        request.dns,
        request
            .ips
            .iter()
            .map(IpAddr::to_string)
            .collect::<Vec<_>>()
    ))
}

/// What a PKCS#10 request asks for.
#[derive(Debug, Default)]
pub(super) struct Request {
    pub(super) common_name: Option<String>,
    organizations: Vec<String>,
    dns: Vec<String>,
    ips: Vec<IpAddr>,
}

impl Request {
    /// From the PEM `CERTIFICATE REQUEST` of a CSR; checks its signature.
    pub(super) fn parse(pem: &[u8]) -> Result<Self, String> {
        use x509_parser::certification_request::X509CertificationRequest;
        use x509_parser::extensions::{GeneralName, ParsedExtension};
        use x509_parser::prelude::FromDer;
        let (_, block) = x509_parser::pem::parse_x509_pem(pem)
            .map_err(|err| format!("the request is not PEM: {err}"))?;
        let (_, csr) = X509CertificationRequest::from_der(&block.contents)
            .map_err(|err| format!("the request does not parse: {err}"))?;
        csr.verify_signature()
            .map_err(|err| format!("the request's signature does not verify: {err}"))?;
        let subject = &csr.certification_request_info.subject;
        let text = |attr: &x509_parser::x509::AttributeTypeAndValue| {
            attr.as_str().map(str::to_owned).unwrap_or_default()
        };
        let mut request = Request {
            common_name: subject.iter_common_name().next().map(text),
            organizations: subject.iter_organization().map(text).collect(),
            ..Request::default()
        };
        for extension in csr.requested_extensions().into_iter().flatten() {
            let ParsedExtension::SubjectAlternativeName(san) = extension else {
                continue;
            };
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(dns) => request.dns.push((*dns).to_owned()),
                    GeneralName::IPAddress(bytes) => request.ips.push(ip(bytes)?),
                    other => return Err(format!("the request asks for {other:?}; only DNS names and IP addresses are served")),
                }
            }
        }
        Ok(request)
    }
}

fn ip(bytes: &[u8]) -> Result<IpAddr, String> {
    match bytes.len() {
        4 => Ok(IpAddr::from(<[u8; 4]>::try_from(bytes).expect("4 bytes"))),
        16 => Ok(IpAddr::from(<[u8; 16]>::try_from(bytes).expect("16 bytes"))),
        n => Err(format!("an IP address SAN of {n} bytes")),
    }
}

#[cfg(test)]
#[path = "csr_approver_tests.rs"]
mod tests;
