//! Debug credentials: GetDebugKubeconfig.
//!
//! The seed's debug kubeconfigs never expired; ours carry a fresh client certificate
//! valid for an hour by default and a day at most, so one that leaks from a test log
//! or a laptop soon stops working. The key is generated per request and never stored
//! on the node. The requester picks the identity (that is what a debug credential is
//! for), which is why the service exists only on debug images.

use std::time::Duration;

use cairn_api::v1::GetDebugKubeconfigResponse;
use cairn_api::validate;
use time::OffsetDateTime;

use super::error::RpcError;
use crate::kubernetes::client::LOCAL_APISERVER;
use crate::kubernetes::kubeconfig;
use crate::pki::Pki;

/// Validates the request and issues the kubeconfig, valid from `now`.
pub(super) fn issue(
    pki: Option<&Pki>,
    user: &str,
    groups: &[String],
    validity_seconds: Option<u32>,
    now: OffsetDateTime,
) -> Result<GetDebugKubeconfigResponse, RpcError> {
    let user = validate::subject("user", user)?;
    let groups = validate::groups(groups)?;
    let validity = validate::validity(validity_seconds)?;
    let pki = pki.ok_or(RpcError::PkiNotReady)?;
    let validity = time_duration(validity);
    let issued = pki
        .issue_client(user, groups, now, validity)
        .map_err(RpcError::IssueCredentials)?;
    let text = kubeconfig::render(
        LOCAL_APISERVER,
        pki.ca_pem(),
        &issued.cert_pem,
        &issued.key_pem,
        user,
    );
    tracing::debug!("issued a debug kubeconfig for {user} in {groups:?}, valid {validity}");
    Ok(GetDebugKubeconfigResponse {
        kubeconfig: text,
        expires_unix_seconds: (now + validity).unix_timestamp(),
        server: LOCAL_APISERVER.to_owned(),
    })
}

/// `validity` is at most a day (validated), far inside `time::Duration`'s range.
fn time_duration(validity: Duration) -> time::Duration {
    time::Duration::seconds(i64::try_from(validity.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use ::kube::config::Kubeconfig;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use x509_parser::prelude::*;

    use cairn_api::v1::GetDebugKubeconfigRequest;

    use super::*;
    use crate::pki::{self, NodeSubject};

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap()
    }

    fn node_pki(dir: &std::path::Path) -> Pki {
        let node = NodeSubject {
            node_name: "cairn-00".into(),
            node_ip: None,
            service_ip: "10.96.0.1".parse().unwrap(),
        };
        pki::ensure(dir, &node, now()).unwrap()
    }

    fn issue_req(
        pki: Option<&Pki>,
        request: &GetDebugKubeconfigRequest,
        now: OffsetDateTime,
    ) -> Result<GetDebugKubeconfigResponse, RpcError> {
        issue(
            pki,
            &request.user,
            &request.groups,
            request.validity_seconds,
            now,
        )
    }

    fn request(user: &str, groups: &[&str], validity: Option<u32>) -> GetDebugKubeconfigRequest {
        GetDebugKubeconfigRequest {
            user: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            validity_seconds: validity,
        }
    }

    /// The client certificate inside a kubeconfig, DER.
    fn client_cert(text: &str) -> Vec<u8> {
        let config = Kubeconfig::from_yaml(text).unwrap();
        let auth = config.auth_infos[0].auth_info.as_ref().unwrap();
        let pem = STANDARD
            .decode(auth.client_certificate_data.as_deref().unwrap())
            .unwrap();
        parse_x509_pem(&pem).unwrap().1.contents
    }

    #[test]
    fn the_certificate_names_the_user_and_groups_and_expires() {
        let dir = tempfile::tempdir().unwrap();
        let pki = node_pki(dir.path());
        let response = issue_req(
            Some(&pki),
            &request("cairn-debug", &["system:masters"], Some(60)),
            now(),
        )
        .unwrap();
        assert_eq!(response.expires_unix_seconds, now().unix_timestamp() + 60);
        let der = client_cert(&response.kubeconfig);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let subject = cert.subject().to_string();
        assert!(subject.contains("CN=cairn-debug"), "{subject}");
        assert!(subject.contains("O=system:masters"), "{subject}");
        assert_eq!(
            cert.validity().not_after.timestamp(),
            now().unix_timestamp() + 60
        );
        let config = Kubeconfig::from_yaml(&response.kubeconfig).unwrap();
        let cluster = config.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some(LOCAL_APISERVER));
        let ca = STANDARD
            .decode(cluster.certificate_authority_data.as_deref().unwrap())
            .unwrap();
        assert_eq!(ca, pki.ca_pem().as_bytes());
    }

    #[test]
    fn the_default_validity_is_an_hour() {
        let dir = tempfile::tempdir().unwrap();
        let pki = node_pki(dir.path());
        let response = issue_req(Some(&pki), &request("u", &[], None), now()).unwrap();
        assert_eq!(response.expires_unix_seconds, now().unix_timestamp() + 3600);
    }

    #[test]
    fn bad_requests_are_refused_before_the_pki_is_consulted() {
        let bad = [
            request("", &[], None),
            request("cairn debug", &[], None),
            request("u", &["a,O=system:masters"], None),
            request("u", &[], Some(30)),
            request("u", &[], Some(86_401)),
        ];
        for req in bad {
            let err = issue_req(None, &req, now()).unwrap_err();
            assert!(
                matches!(err, RpcError::InvalidArgument(_)),
                "{req:?}: {err}"
            );
        }
        let err = issue_req(None, &request("u", &[], None), now()).unwrap_err();
        assert!(matches!(err, RpcError::PkiNotReady), "{err}");
    }
}
