//! Pod Security Admission defaults: the modern replacement for the seed's
//! PodSecurityPolicy (removed in Kubernetes 1.25).
//!
//! Two layers, as Talos does it: the apiserver's admission configuration sets the
//! cluster-wide defaults (enforce `baseline`, audit and warn `restricted`; `kube-system`
//! exempt, because node-level system pods legitimately need host access), and the
//! reconciler labels the `default` namespace with the same levels so the policy is
//! visible on the object and a relaxed label is put back.

use std::collections::BTreeMap;

use serde_json::json;

/// Pods that break this level are rejected.
pub const ENFORCE: &str = "baseline";
/// Pods that break this level are admitted with a warning and an audit annotation.
pub const AUDIT_AND_WARN: &str = "restricted";
/// Namespaces the defaults do not apply to.
pub const EXEMPT_NAMESPACES: &[&str] = &["kube-system"];

/// The apiserver's `--admission-control-config-file` content (JSON, which the
/// apiserver reads like YAML): the PodSecurity plugin's cluster defaults. The
/// kubernetes services write it next to the apiserver's other config files.
pub fn pod_security_admission_config() -> String {
    let config = json!({
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "AdmissionConfiguration",
        "plugins": [{
            "name": "PodSecurity",
            "configuration": {
                "apiVersion": "pod-security.admission.config.k8s.io/v1",
                "kind": "PodSecurityConfiguration",
                "defaults": {
                    "enforce": ENFORCE,
                    "enforce-version": "latest",
                    "audit": AUDIT_AND_WARN,
                    "audit-version": "latest",
                    "warn": AUDIT_AND_WARN,
                    "warn-version": "latest",
                },
                "exemptions": {
                    "usernames": [],
                    "runtimeClasses": [],
                    "namespaces": EXEMPT_NAMESPACES,
                },
            },
        }],
    });
    let mut text = serde_json::to_string_pretty(&config).unwrap_or_default();
    text.push('\n');
    text
}

/// The `pod-security.kubernetes.io/*` labels of a namespace held to the defaults.
pub fn namespace_labels() -> BTreeMap<String, String> {
    [
        ("enforce", ENFORCE),
        ("audit", AUDIT_AND_WARN),
        ("warn", AUDIT_AND_WARN),
    ]
    .into_iter()
    .map(|(mode, level)| {
        (
            format!("pod-security.kubernetes.io/{mode}"),
            level.to_owned(),
        )
    })
    .collect()
}
