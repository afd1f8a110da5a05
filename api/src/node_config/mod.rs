//! The per-node config: settings one node gets at boot without a new image.
//!
//! A small TOML file (`version = 1`, unknown keys are errors) that the launcher hands
//! to the node as the QEMU firmware config item [`FW_CFG_NAME`] and the agent reads
//! from [`FW_CFG_PATH`] (docs/interfaces.md "Per-node config"). The image config's
//! `[[registry]]` tables are written into the image in the same format
//! ([`IMAGE_REGISTRIES_PATH`]), so one parser and one validator serve both.
//!
//! Parsing ([`NodeConfig::parse`]) is serde's job; [`NodeConfig::validate`] then
//! checks what types cannot say and names the field by its path (`registry[1].ca`).

use serde::{Deserialize, Serialize};

/// The firmware config item the launcher adds (`-fw_cfg name=…,file=…`).
pub const FW_CFG_NAME: &str = "opt/cairn/node.toml";
/// Where the guest kernel's `qemu_fw_cfg` driver shows that item.
pub const FW_CFG_PATH: &str = "/sys/firmware/qemu_fw_cfg/by_name/opt/cairn/node.toml/raw";
/// The image's own registry settings, written by the builder.
pub const IMAGE_REGISTRIES_PATH: &str = "/etc/cairn/registries.toml";
/// The only version this build reads.
pub const VERSION: u32 = 1;
/// The largest config accepted: far above any real one, it only stops nonsense.
pub const MAX_SIZE: usize = 1 << 20;

/// The file as written. The default is the empty config of the current version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The schema version; [`VERSION`].
    pub version: u32,
    /// Container registries: where pulls go and what they trust.
    #[serde(rename = "registry", default, skip_serializing_if = "Vec::is_empty")]
    pub registries: Vec<Registry>,
    /// Who operates the node through its node API. Per node only: the image's settings
    /// never carry it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// The node's address on a network shared with other nodes. Per node only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<Cluster>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            version: VERSION,
            registries: Vec::new(),
            owner: None,
            cluster: None,
        }
    }
}

/// The node on the cluster network: a second NIC that the nodes of one cluster share
/// (one L2 segment). Its address becomes the node's Kubernetes address (the Node's
/// InternalIP, what the apiserver advertises, what certificates name); the first NIC
/// (`ip=`) keeps the default route and the host's port forwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// `A.B.C.D/PREFIX` (IPv4, prefix 8-30), outside [`crate::names::network`]'s
    /// Service and pod networks.
    pub address: String,
    /// The NIC it goes on.
    #[serde(default = "Cluster::default_device")]
    pub device: String,
    /// What the node is in its cluster.
    #[serde(default, skip_serializing_if = "Role::is_control_plane")]
    pub role: Role,
    /// How a worker joins: what `dbg join-token` prints. Workers only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join: Option<Join>,
}

/// A node's part in its cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Runs the cluster: etcd, the control plane, and a kubelet of its own.
    #[default]
    ControlPlane,
    /// Runs pods for a control-plane node it joins: containerd, the kubelet and
    /// kube-proxy, with no cluster CA key and no etcd.
    Worker,
}

impl Role {
    fn is_control_plane(&self) -> bool {
        *self == Role::ControlPlane
    }
}

/// The join credential a control-plane node issues (`CreateJoinToken`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Join {
    /// The control plane's API, `A.B.C.D:PORT`.
    pub api: String,
    /// The bootstrap token, `<6 of [a-z0-9]>.<16 of [a-z0-9]>`.
    pub token: String,
    /// The cluster CA's public-key pin, `sha256:<64 lowercase hex>`.
    pub ca_hash: String,
    /// When the token stops authenticating, if known: the node then says "expired"
    /// rather than only "refused".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<toml::value::Datetime>,
}

impl Join {
    /// The API address, checked.
    pub fn api(&self) -> Result<std::net::SocketAddrV4, String> {
        self.api.parse().map_err(|_| {
            format!(
                "{:?} is not an IPv4 address and port (A.B.C.D:PORT)",
                self.api
            )
        })
    }

    /// The token's id (what `system:bootstrap:<id>` names), once the token is checked.
    pub fn token_id(&self) -> Result<&str, String> {
        let form = || {
            "is not a bootstrap token (6 then 16 of [a-z0-9], joined by a dot; \
             `dbg join-token` prints one)"
                .to_owned()
        };
        let (id, secret) = self.token.split_once('.').ok_or_else(form)?;
        let chars = |s: &str, n: usize| {
            s.len() == n
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        match chars(id, 6) && chars(secret, 16) {
            true => Ok(id),
            false => Err(form()),
        }
    }

    /// The 32 bytes [`Join::ca_hash`] pins.
    pub fn ca_hash_bytes(&self) -> Result<[u8; 32], String> {
        let form = || format!("{:?} is not sha256:<64 lowercase hex>", self.ca_hash);
        let hex = self.ca_hash.strip_prefix("sha256:").ok_or_else(form)?;
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(form());
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| form())?;
        }
        Ok(bytes)
    }
}

impl Cluster {
    /// The second NIC in PCI order.
    pub const DEFAULT_DEVICE: &'static str = "eth1";

    fn default_device() -> String {
        Self::DEFAULT_DEVICE.to_owned()
    }

    /// The address and prefix length of [`Cluster::address`], checked.
    pub fn address(&self) -> Result<(std::net::Ipv4Addr, u8), String> {
        let (ip, prefix) = parse_cidr(&self.address)?;
        if !(8..=30).contains(&prefix) {
            return Err(format!("{:?}: prefix /{prefix} is not 8-30", self.address));
        }
        let host_bits = u32::from(ip) & (u32::MAX >> prefix);
        if host_bits == 0 || host_bits == u32::MAX >> prefix {
            return Err(format!(
                "{:?} is the network's own or broadcast address, not a host's",
                self.address
            ));
        }
        for (what, cidr) in [
            ("the Service network", crate::names::network::SERVICE_CIDR),
            ("the pod network", crate::names::network::POD_CIDR),
        ] {
            let (net, len) = parse_cidr(cidr).expect("the node's own networks parse");
            if overlaps((ip, prefix), (net, len)) {
                return Err(format!("{:?} overlaps {what} {cidr}", self.address));
            }
        }
        Ok((ip, prefix))
    }
}

/// `A.B.C.D/N`.
/// `A.B.C.D/N` as address and prefix length, or why not.
pub fn parse_cidr(text: &str) -> Result<(std::net::Ipv4Addr, u8), String> {
    let form = || format!("{text:?} is not an IPv4 address with a prefix (A.B.C.D/N)");
    let (ip, prefix) = text.split_once('/').ok_or_else(form)?;
    let ip = ip.parse().map_err(|_| form())?;
    let digits =
        !prefix.is_empty() && prefix.len() <= 2 && prefix.bytes().all(|b| b.is_ascii_digit());
    match prefix.parse::<u8>() {
        Ok(prefix) if digits && prefix <= 32 => Ok((ip, prefix)),
        _ => Err(form()),
    }
}

/// Whether two networks share an address.
pub fn overlaps(a: (std::net::Ipv4Addr, u8), b: (std::net::Ipv4Addr, u8)) -> bool {
    let len = a.1.min(b.1);
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(a.0) & mask == u32::from(b.0) & mask
}

/// The node's owner: the CA whose client certificates the node API accepts. The node
/// pins the first one it is given on its data disk (trust on first use) and keeps it
/// across boots; a different one in a later config is reported and ignored unless the
/// pinned owner handed the node over to it ([`Owner::handover_signature`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Owner {
    /// The owner CA certificate, PEM (`dbg owner init` writes it as `ca.crt`).
    pub ca: String,
    /// The current owner's consent to be replaced by `ca`: the base64 ed25519 signature,
    /// by the pinned owner CA's key, over [`handover_message`] of `ca`
    /// (`dbg owner hand-over` writes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handover_signature: Option<String>,
}

/// What a hand-over signature signs: a fixed context, so the signature cannot be taken
/// for anything else the owner CA's key signs (certificates), then the new owner CA's
/// DER.
pub const HANDOVER_CONTEXT: &[u8] = b"cairn owner handover v1\0";

/// The bytes the current owner signs to hand a node over to the owner CA `new_ca_pem`.
pub fn handover_message(new_ca_pem: &str) -> Result<Vec<u8>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let der = CertificateDer::from_pem_slice(new_ca_pem.as_bytes())
        .map_err(|err| format!("holds no PEM certificate: {err}"))?;
    Ok([HANDOVER_CONTEXT, der.as_ref()].concat())
}

/// Length of an ed25519 signature.
pub const HANDOVER_SIGNATURE_LEN: usize = 64;

/// Decodes a hand-over signature: base64 of 64 bytes.
pub fn decode_handover_signature(text: &str) -> Result<[u8; HANDOVER_SIGNATURE_LEN], String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|err| format!("is not base64: {err}"))?;
    <[u8; HANDOVER_SIGNATURE_LEN]>::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "is {} bytes; an ed25519 signature is {HANDOVER_SIGNATURE_LEN}",
            bytes.len()
        )
    })
}

/// One registry, by the host name image references use (`HOST/NAME:TAG`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    /// `host` or `host:port` as in image references (`docker.io`, `10.0.2.2:5000`).
    pub host: String,
    /// Endpoints tried in order before the host itself, as `https://host[:port][/path]`
    /// (`http://` only with `plain_http`). A pull succeeds through a mirror even when
    /// the registry's own name does not resolve.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<String>,
    /// PEM certificates trusted for the registry and its mirrors, besides none: the node
    /// has no system trust store, so a registry with a public CA needs it here too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// PEM client certificate (chain) presented to the registry and its mirrors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    /// PEM private key of `client_certificate`. Per node only: the builder refuses it,
    /// since a key in an image is shared by every node booted from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<String>,
    /// Contact the registry over plain HTTP (and allow `http://` mirrors). Off unless
    /// said: credentials and layers then cross the network unprotected.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub plain_http: bool,
}

/// Why a config was refused; names the field by its path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeConfigError {
    #[error("config is {0} bytes, more than {MAX_SIZE}")]
    TooLarge(usize),
    #[error("{0}")]
    Parse(String),
    #[error("field `{field}`: {problem}")]
    Field { field: String, problem: String },
}

fn field(field: impl Into<String>, problem: impl Into<String>) -> NodeConfigError {
    NodeConfigError::Field {
        field: field.into(),
        problem: problem.into(),
    }
}

impl NodeConfig {
    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Self, NodeConfigError> {
        if text.len() > MAX_SIZE {
            return Err(NodeConfigError::TooLarge(text.len()));
        }
        let config: NodeConfig =
            toml::from_str(text).map_err(|err| NodeConfigError::Parse(err.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// The file text (what the launcher writes and the builder embeds).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a NodeConfig always serializes")
    }

    /// Checks what the types cannot.
    pub fn validate(&self) -> Result<(), NodeConfigError> {
        if self.version != VERSION {
            return Err(field(
                "version",
                format!(
                    "{} is not supported; this node reads version {VERSION}",
                    self.version
                ),
            ));
        }
        let mut hosts = std::collections::BTreeSet::new();
        for (i, registry) in self.registries.iter().enumerate() {
            registry.validate(&format!("registry[{i}]"))?;
            if !hosts.insert(registry.host.as_str()) {
                return Err(field(
                    format!("registry[{i}].host"),
                    format!("{:?} is declared twice", registry.host),
                ));
            }
        }
        if let Some(cluster) = &self.cluster {
            cluster.address().map_err(|p| field("cluster.address", p))?;
            check_device(&cluster.device).map_err(|p| field("cluster.device", p))?;
            match (cluster.role, &cluster.join) {
                (Role::Worker, None) => {
                    return Err(field(
                        "cluster.join",
                        "missing: a worker joins with the credential `dbg join-token` \
                         prints on its control-plane node",
                    ))
                }
                (Role::ControlPlane, Some(_)) => {
                    return Err(field(
                        "cluster.join",
                        "only a worker joins; set cluster.role = \"worker\"",
                    ))
                }
                (_, Some(join)) => {
                    join.api().map_err(|p| field("cluster.join.api", p))?;
                    join.token_id()
                        .map_err(|p| field("cluster.join.token", p))?;
                    join.ca_hash_bytes()
                        .map_err(|p| field("cluster.join.ca_hash", p))?;
                    if let Some(expires) = &join.expires {
                        if expires.date.is_none()
                            || expires.time.is_none()
                            || expires.offset.is_none()
                        {
                            return Err(field(
                                "cluster.join.expires",
                                format!("{expires} is not a date and time with an offset"),
                            ));
                        }
                    }
                }
                (Role::ControlPlane, None) => {}
            }
        }
        if let Some(owner) = &self.owner {
            check_one_certificate(&owner.ca).map_err(|p| field("owner.ca", p))?;
            if let Some(signature) = &owner.handover_signature {
                decode_handover_signature(signature)
                    .map_err(|p| field("owner.handover_signature", p))?;
            }
        }
        Ok(())
    }

    /// `self` with `other`'s registries added; one of `other` replaces one of `self`
    /// with the same host (the node's setting wins over the image's). The owner is
    /// `other`'s alone.
    pub fn merged_with(&self, other: &NodeConfig) -> NodeConfig {
        let mut registries: Vec<Registry> = self
            .registries
            .iter()
            .filter(|r| other.registries.iter().all(|o| o.host != r.host))
            .cloned()
            .collect();
        registries.extend(other.registries.iter().cloned());
        NodeConfig {
            version: VERSION,
            registries,
            // The image's settings never name an owner or a cluster address: every
            // node booted from it would share them.
            owner: other.owner.clone(),
            cluster: other.cluster.clone(),
        }
    }
}

impl Registry {
    /// Checks one entry; errors name its fields under `path` (`registry[2]`).
    pub fn validate(&self, path: &str) -> Result<(), NodeConfigError> {
        check_host(&self.host).map_err(|p| field(format!("{path}.host"), p))?;
        for (i, mirror) in self.mirrors.iter().enumerate() {
            check_endpoint(mirror, self.plain_http)
                .map_err(|p| field(format!("{path}.mirrors[{i}]"), p))?;
        }
        if let Some(ca) = &self.ca {
            check_certificates(ca).map_err(|p| field(format!("{path}.ca"), p))?;
        }
        match (&self.client_certificate, &self.client_key) {
            (None, None) => {}
            (Some(cert), Some(key)) => {
                check_certificates(cert)
                    .map_err(|p| field(format!("{path}.client_certificate"), p))?;
                check_private_key(key).map_err(|p| field(format!("{path}.client_key"), p))?;
            }
            (Some(_), None) => {
                return Err(field(
                    format!("{path}.client_key"),
                    "missing: client_certificate needs its key",
                ))
            }
            (None, Some(_)) => {
                return Err(field(
                    format!("{path}.client_certificate"),
                    "missing: client_key needs its certificate",
                ))
            }
        }
        Ok(())
    }
}

/// `host` or `host:port`: a DNS name or IPv4 address (lowercase, as image references
/// are), no scheme, path or user.
pub fn check_host(host: &str) -> Result<(), String> {
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(p) if p > 0 && !port.starts_with('0') => {}
            _ => return Err(format!("{host:?}: port {port:?} is not 1-65535")),
        }
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!(
            "{host:?} is not `host` or `host:port` (a lowercase DNS name or IPv4 address; \
             no scheme or path)"
        ));
    }
    Ok(())
}

/// A Linux interface name: 1-15 bytes of `[A-Za-z0-9_.-]`.
fn check_device(name: &str) -> Result<(), String> {
    let ok = (1..=15).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    match ok {
        true => Ok(()),
        false => Err(format!(
            "{name:?} is not an interface name (1-15 of [A-Za-z0-9_.-])"
        )),
    }
}

/// `https://host[:port][/path]`, or `http://…` when plain HTTP is allowed.
fn check_endpoint(url: &str, plain_http: bool) -> Result<(), String> {
    let rest = if let Some(rest) = url.strip_prefix("https://") {
        rest
    } else if let Some(rest) = url.strip_prefix("http://") {
        if !plain_http {
            return Err(format!(
                "{url:?} is plain HTTP; set plain_http = true to allow it"
            ));
        }
        rest
    } else {
        return Err(format!("{url:?} must start with https:// (or http://)"));
    };
    let (host, path) = match rest.split_once('/') {
        Some((host, path)) => (host, Some(path)),
        None => (rest, None),
    };
    check_host(host).map_err(|problem| format!("{url:?}: {problem}"))?;
    if let Some(path) = path {
        let ok = path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~/".contains(&b));
        if !ok || path.split('/').any(|s| s == "..") {
            return Err(format!(
                "{url:?}: the path may only hold [A-Za-z0-9-._~/] (no query, no ..)"
            ));
        }
    }
    Ok(())
}

/// At least one PEM certificate, and nothing in a CERTIFICATE block that does not
/// decode.
pub fn check_certificates(pem: &str) -> Result<(), String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        cert.map_err(|err| format!("not PEM certificates: {err}"))?;
        count += 1;
    }
    if count == 0 {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned());
    }
    Ok(())
}

/// Exactly one PEM certificate.
pub fn check_one_certificate(pem: &str) -> Result<(), String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    check_certificates(pem)?;
    match CertificateDer::pem_slice_iter(pem.as_bytes()).count() {
        1 => Ok(()),
        n => Err(format!(
            "holds {n} certificates; give the one CA certificate"
        )),
    }
}

fn check_private_key(pem: &str) -> Result<(), String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::PrivateKeyDer;
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map(|_| ())
        .map_err(|err| format!("not a PEM private key: {err}"))
}

#[cfg(test)]
mod tests;
