//! kubeconfig files (the `clientcmd` v1 `Config` format) with everything embedded.
//!
//! One cluster, one user, one context, all named `cairn` except the user, and the CA,
//! certificate and key inline as base64 `*-data` fields: the file is self-contained,
//! so it can be written anywhere (a component's config dir, a temp file on the host)
//! and still works. Written by hand rather than through a YAML library: the shape is
//! fixed, and every variable string is emitted as a JSON string, which is a valid YAML
//! double-quoted scalar, so no name can break the document.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// Name of the cluster and the context in every kubeconfig the agent writes.
pub const CLUSTER: &str = "cairn";

/// A kubeconfig that reaches `server` (e.g. `https://127.0.0.1:6443`), trusts `ca_pem`
/// and authenticates with the client certificate `cert_pem` and its key `key_pem`.
/// `user` names the user entry (use the certificate's CN; it is only a label, the
/// apiserver reads the identity from the certificate).
///
/// Used for the Kubernetes components' kubeconfigs and for debug credentials. The text
/// holds a private key: write it mode 0600.
pub fn render(server: &str, ca_pem: &str, cert_pem: &str, key_pem: &str, user: &str) -> String {
    let b64 = |s: &str| STANDARD.encode(s.as_bytes());
    let credentials = format!(
        "    client-certificate-data: {}\n    client-key-data: {}\n",
        b64(cert_pem),
        b64(key_pem)
    );
    document(server, ca_pem, user, &credentials)
}

/// A kubeconfig that reaches `server`, trusts `ca_pem` and authenticates with the
/// bearer `token` (a worker's bootstrap kubeconfig). Holds a secret: mode 0600.
pub fn render_token(server: &str, ca_pem: &str, token: &str, user: &str) -> String {
    document(
        server,
        ca_pem,
        user,
        &format!("    token: {}\n", quote(token)),
    )
}

/// A JSON string: a valid YAML double-quoted scalar whatever it holds.
fn quote(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// The document around one user's `credentials` (its `user:` map's lines).
fn document(server: &str, ca_pem: &str, user: &str, credentials: &str) -> String {
    let (cluster, user) = (quote(CLUSTER), quote(user));
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {cluster}
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: {user}
  user:
{credentials}contexts:
- name: {cluster}
  context:
    cluster: {cluster}
    user: {user}
current-context: {cluster}
",
        server = quote(server),
        ca = STANDARD.encode(ca_pem.as_bytes()),
    )
}

#[cfg(test)]
mod tests {
    use ::kube::config::Kubeconfig;

    use super::*;

    #[test]
    fn kube_reads_back_what_render_writes() {
        let text = render(
            "https://127.0.0.1:6443",
            "CA PEM\n",
            "CERT PEM\n",
            "KEY PEM\n",
            "system:node:cairn-\"odd\" name",
        );
        let config = Kubeconfig::from_yaml(&text).unwrap();
        assert_eq!(config.current_context.as_deref(), Some("cairn"));
        let cluster = config.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:6443"));
        let ca = cluster.certificate_authority_data.as_deref().unwrap();
        assert_eq!(STANDARD.decode(ca).unwrap(), b"CA PEM\n");
        let user = &config.auth_infos[0];
        assert_eq!(user.name, "system:node:cairn-\"odd\" name");
        let auth = user.auth_info.as_ref().unwrap();
        let cert = auth.client_certificate_data.as_deref().unwrap();
        assert_eq!(STANDARD.decode(cert).unwrap(), b"CERT PEM\n");
        assert!(auth.client_key_data.is_some());
        let context = config.contexts[0].context.as_ref().unwrap();
        assert_eq!(context.user.as_deref(), Some(user.name.as_str()));
    }

    #[test]
    fn a_token_kubeconfig_carries_the_token_and_no_key() {
        let text = render_token(
            "https://192.168.100.10:6443",
            "CA\n",
            "abcdef.0123456789abcdef",
            "u",
        );
        let config = Kubeconfig::from_yaml(&text).unwrap();
        let auth = config.auth_infos[0].auth_info.as_ref().unwrap();
        assert!(auth.token.is_some());
        assert!(
            text.contains("    token: \"abcdef.0123456789abcdef\"\n"),
            "{text}"
        );
        assert!(auth.client_key_data.is_none());
        let cluster = config.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(
            cluster.server.as_deref(),
            Some("https://192.168.100.10:6443")
        );
    }
}
