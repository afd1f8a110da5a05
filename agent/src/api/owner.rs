//! Who may use the node API: the owner CA, pinned on the data disk at first boot.
//!
//! Trust on first use, as an SSH host key is: the first per-node config that carries an
//! `[owner]` table decides the owner, and the node keeps that CA at [`PINNED_CA`]
//! across boots. A later config offering another CA changes nothing (the condition's
//! reason says so, with both fingerprints): taking over a node needs more than the
//! ability to hand it a config at boot. It needs the current owner's consent: a
//! hand-over signature by the pinned CA's key over the new CA
//! ([`cairn_api::node_config::handover_message`]), which `dbg owner hand-over` makes.

use std::path::Path;

use cairn_api::node_config::{decode_handover_signature, handover_message, Owner};
use cairn_api::pem::fingerprint;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::Paths;

/// The pinned owner CA, on the data disk.
pub const PINNED_CA: &str = "/var/lib/cairn/owner/ca.crt";

/// What the node API does this boot, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Serve for this CA (PEM).
    Serve { ca_pem: String, reason: String },
    /// No node API this boot.
    Off { reason: String },
}

/// What this boot's node config says about the owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered<'a> {
    /// The `[owner]` table.
    Owner(&'a Owner),
    /// A config (or none) without an `[owner]` table.
    Nothing,
    /// The config was malformed and ignored (`node-config` says why): whether it named
    /// an owner is unknown.
    ConfigIgnored,
}

/// Settles the owner from the pinned CA under `paths` and the one the node config
/// offers: pins the offered one if none is pinned yet, or if the pinned owner signed
/// its hand-over.
pub fn settle(paths: &Paths, offered: Offered<'_>) -> Decision {
    let pinned_path = paths.resolve(PINNED_CA);
    let pinned = match read_pinned(&pinned_path) {
        Ok(pinned) => pinned,
        Err(problem) => {
            return Decision::Off {
                reason: format!(
                    "the pinned owner CA {PINNED_CA} {problem}; the node API stays off"
                ),
            }
        }
    };
    let ignored = offered == Offered::ConfigIgnored;
    let offered = match offered {
        Offered::Owner(owner) => Some((owner, fingerprint(&owner.ca))),
        Offered::Nothing | Offered::ConfigIgnored => None,
    };
    match (pinned, offered) {
        (Some((pem, pinned_fp)), None) => Decision::Serve {
            reason: format!("owner CA {pinned_fp} (pinned)"),
            ca_pem: pem,
        },
        (Some((pem, pinned_fp)), Some((_, Ok(offered_fp)))) if offered_fp == pinned_fp => {
            Decision::Serve {
                reason: format!("owner CA {pinned_fp} (pinned)"),
                ca_pem: pem,
            }
        }
        (Some((pem, pinned_fp)), Some((owner, Ok(offered_fp)))) => {
            let kept = |why: String| Decision::Serve {
                reason: format!(
                    "owner CA {pinned_fp} (pinned); the node config's owner.ca {offered_fp} \
                     is ignored: {why}"
                ),
                ca_pem: pem.clone(),
            };
            let Some(signature) = &owner.handover_signature else {
                return kept(
                    "a pinned owner is kept unless it signs a hand-over \
                     (owner.handover_signature)"
                        .to_owned(),
                );
            };
            if let Err(problem) = verify_handover(&pem, &owner.ca, signature) {
                return kept(format!("its owner.handover_signature {problem}"));
            }
            match pin(&pinned_path, &owner.ca) {
                Ok(()) => Decision::Serve {
                    reason: format!(
                        "owner CA {offered_fp} pinned at this boot, handed over by the \
                         owner CA {pinned_fp}"
                    ),
                    ca_pem: owner.ca.clone(),
                },
                Err(err) => kept(format!(
                    "its hand-over is signed, but it cannot be pinned at {PINNED_CA}: {err}"
                )),
            }
        }
        (Some((pem, pinned_fp)), Some((_, Err(problem)))) => Decision::Serve {
            reason: format!(
                "owner CA {pinned_fp} (pinned); the node config's owner.ca is ignored: it \
                 {problem}"
            ),
            ca_pem: pem,
        },
        (None, Some((owner, Ok(fp)))) => match pin(&pinned_path, &owner.ca) {
            Ok(()) => Decision::Serve {
                reason: format!("owner CA {fp} pinned at this first boot"),
                ca_pem: owner.ca.clone(),
            },
            Err(err) => Decision::Off {
                reason: format!(
                    "cannot pin the owner CA {fp} at {PINNED_CA}: {err}; the node API \
                     stays off"
                ),
            },
        },
        (None, Some((_, Err(problem)))) => Decision::Off {
            reason: format!("node config owner.ca {problem}; the node API stays off"),
        },
        (None, None) if ignored => Decision::Off {
            reason: "no owner: the node config was ignored (node-config says why), so it \
                     names no owner CA, and none is pinned; the node API stays off"
                .to_owned(),
        },
        (None, None) => Decision::Off {
            reason: "no owner: the node config has no [owner] table and no owner CA is \
                     pinned; the node API stays off"
                .to_owned(),
        },
    }
}

/// Writes `pem` as the pinned owner CA, whole or not at all.
fn pin(path: &Path, pem: &str) -> std::io::Result<()> {
    crate::atomic_write::write_atomic(path, pem.as_bytes(), 0o644).or_else(|_| {
        std::fs::create_dir_all(path.parent().unwrap_or(Path::new("/")))?;
        crate::atomic_write::write_atomic(path, pem.as_bytes(), 0o644)
    })
}

/// Checks that `signature` (base64) is the pinned owner CA's ed25519 signature over the
/// hand-over message of `new_ca_pem`; `Err` completes "its signature ...".
fn verify_handover(pinned_pem: &str, new_ca_pem: &str, signature: &str) -> Result<(), String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let der = CertificateDer::from_pem_slice(pinned_pem.as_bytes())
        .map_err(|err| format!("cannot be checked: the pinned CA is unreadable: {err}"))?;
    let (_, cert) = X509Certificate::from_der(der.as_ref())
        .map_err(|err| format!("cannot be checked: the pinned CA does not parse: {err}"))?;
    let spki = cert.public_key();
    if spki.algorithm.algorithm != x509_parser::oid_registry::OID_SIG_ED25519 {
        return Err(format!(
            "cannot be checked: the pinned owner CA's key is {}, and hand-overs are \
             signed with ed25519 keys only",
            spki.algorithm.algorithm
        ));
    }
    let key = <[u8; 32]>::try_from(spki.subject_public_key.data.as_ref())
        .ok()
        .and_then(|key| ed25519_dalek::VerifyingKey::from_bytes(&key).ok())
        .ok_or("cannot be checked: the pinned owner CA's ed25519 key is malformed")?;
    let signature = decode_handover_signature(signature)?;
    let message = handover_message(new_ca_pem)?;
    key.verify_strict(&message, &ed25519_dalek::Signature::from_bytes(&signature))
        .map_err(|_| "is not the pinned owner CA's signature of this owner.ca".to_owned())
}

/// `Ok(None)` when nothing is pinned; `Err` says what is wrong with the file.
fn read_pinned(path: &Path) -> Result<Option<(String, String)>, String> {
    match std::fs::read_to_string(path) {
        Ok(pem) => {
            let fp = fingerprint(&pem)?;
            Ok(Some((pem, fp)))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(format!("cannot be read: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_with_key(name: &str) -> (String, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        (params.self_signed(&key).unwrap().pem(), key)
    }

    fn ca(name: &str) -> String {
        ca_with_key(name).0
    }

    fn owner(ca: &str) -> Owner {
        Owner {
            ca: ca.to_owned(),
            handover_signature: None,
        }
    }

    /// `to` with a hand-over signed by `key`, as `dbg owner hand-over` writes it.
    fn handed_over(to: &str, key: &rcgen::KeyPair) -> Owner {
        use base64::Engine as _;
        use rcgen::SigningKey as _;
        let signature = key.sign(&handover_message(to).unwrap()).unwrap();
        Owner {
            ca: to.to_owned(),
            handover_signature: Some(base64::engine::general_purpose::STANDARD.encode(signature)),
        }
    }

    fn pinned(paths: &Paths) -> Option<String> {
        std::fs::read_to_string(paths.resolve(PINNED_CA)).ok()
    }

    #[test]
    fn the_first_owner_is_pinned_and_kept_against_a_later_one() {
        let root = tempfile::tempdir().unwrap();
        let paths = Paths::under_root(root.path());
        let (first, second) = (ca("first"), ca("second"));
        let decision = settle(&paths, Offered::Owner(&owner(&first)));
        assert!(
            matches!(&decision, Decision::Serve { ca_pem, reason }
                if *ca_pem == first && reason.contains("pinned at this first boot")),
            "{decision:?}"
        );
        assert_eq!(pinned(&paths).as_deref(), Some(first.as_str()));

        let decision = settle(&paths, Offered::Owner(&owner(&second)));
        let Decision::Serve { ca_pem, reason } = decision else {
            panic!("{decision:?}")
        };
        assert_eq!(ca_pem, first);
        assert!(reason.contains(&fingerprint(&first).unwrap()), "{reason}");
        assert!(reason.contains(&fingerprint(&second).unwrap()), "{reason}");
        assert!(reason.contains("ignored"), "{reason}");
        assert_eq!(pinned(&paths).as_deref(), Some(first.as_str()));

        // No config at all: the pinned owner still serves.
        assert!(
            matches!(settle(&paths, Offered::Nothing), Decision::Serve { ca_pem, .. } if ca_pem == first)
        );
    }

    #[test]
    fn the_pinned_owner_hands_the_node_over_by_signing_the_new_ca() {
        let root = tempfile::tempdir().unwrap();
        let paths = Paths::under_root(root.path());
        let (first, first_key) = ca_with_key("first");
        let (second, second_key) = ca_with_key("second");
        settle(&paths, Offered::Owner(&owner(&first)));

        // Signed by the new owner itself, or by the old owner for another CA: kept.
        for (forged, by) in [
            (handed_over(&second, &second_key), "the new owner"),
            (
                Owner {
                    ca: second.clone(),
                    handover_signature: handed_over(&ca("third"), &first_key).handover_signature,
                },
                "the owner, for another CA",
            ),
        ] {
            let Decision::Serve { ca_pem, reason } = settle(&paths, Offered::Owner(&forged)) else {
                panic!("{by}: the node API went off")
            };
            assert_eq!(ca_pem, first, "{by}");
            assert!(
                reason.ends_with(
                    "its owner.handover_signature is not the pinned owner CA's signature \
                     of this owner.ca"
                ),
                "{by}: {reason}"
            );
            assert_eq!(pinned(&paths).as_deref(), Some(first.as_str()), "{by}");
        }

        // Signed by the pinned owner: the new CA is pinned and served.
        let decision = settle(&paths, Offered::Owner(&handed_over(&second, &first_key)));
        let Decision::Serve { ca_pem, reason } = decision else {
            panic!("{decision:?}")
        };
        assert_eq!(ca_pem, second);
        assert_eq!(
            reason,
            format!(
                "owner CA {} pinned at this boot, handed over by the owner CA {}",
                fingerprint(&second).unwrap(),
                fingerprint(&first).unwrap()
            )
        );
        assert_eq!(pinned(&paths).as_deref(), Some(second.as_str()));
        // The old owner's hand-over to itself no longer moves it back.
        let back = settle(&paths, Offered::Owner(&handed_over(&first, &first_key)));
        assert!(
            matches!(&back, Decision::Serve { ca_pem, .. } if *ca_pem == second),
            "{back:?}"
        );
    }

    #[test]
    fn a_handover_from_a_non_ed25519_owner_is_refused_with_why() {
        let root = tempfile::tempdir().unwrap();
        let paths = Paths::under_root(root.path());
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let first = params.self_signed(&key).unwrap().pem();
        settle(&paths, Offered::Owner(&owner(&first)));
        let second = ca("second");
        let decision = settle(&paths, Offered::Owner(&handed_over(&second, &key)));
        let Decision::Serve { ca_pem, reason } = decision else {
            panic!("{decision:?}")
        };
        assert_eq!(ca_pem, first);
        assert!(reason.contains("signed with ed25519 keys only"), "{reason}");
    }

    #[test]
    fn no_owner_means_no_api_and_says_why() {
        let root = tempfile::tempdir().unwrap();
        let paths = Paths::under_root(root.path());
        let Decision::Off { reason } = settle(&paths, Offered::Nothing) else {
            panic!("served without an owner")
        };
        assert!(
            reason.contains("no owner: the node config has no [owner] table"),
            "{reason}"
        );
        assert_eq!(pinned(&paths), None);
        // A malformed config is not "no [owner] table": it says the config was ignored.
        let Decision::Off { reason } = settle(&paths, Offered::ConfigIgnored) else {
            panic!("served without an owner")
        };
        assert!(
            reason.contains("no owner: the node config was ignored"),
            "{reason}"
        );
        assert_eq!(pinned(&paths), None);
    }

    #[test]
    fn a_corrupt_pin_turns_the_api_off_instead_of_trusting_the_config() {
        let root = tempfile::tempdir().unwrap();
        let paths = Paths::under_root(root.path());
        let path = paths.resolve(PINNED_CA);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "garbage").unwrap();
        let decision = settle(&paths, Offered::Owner(&owner(&ca("intruder"))));
        assert!(
            matches!(&decision, Decision::Off { reason } if reason.contains(PINNED_CA)),
            "{decision:?}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "garbage");
    }
}
