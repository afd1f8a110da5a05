//! Who may use the node API: the owner CA, pinned on the data disk at first boot.
//!
//! Trust on first use, as an SSH host key is: the first per-node config that carries an
//! `[owner]` table decides the owner, and the node keeps that CA at [`PINNED_CA`]
//! across boots. A later config offering another CA changes nothing (the condition's
//! reason says so, with both fingerprints): taking over a node needs more than the
//! ability to hand it a config at boot. Replacing the owner with a config signed by the
//! current owner is not built yet; until then a new owner means a new data disk.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};

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
    /// `owner.ca` (PEM).
    Ca(&'a str),
    /// A config (or none) without an `[owner]` table.
    Nothing,
    /// The config was malformed and ignored (`node-config` says why): whether it named
    /// an owner is unknown.
    ConfigIgnored,
}

/// Settles the owner from the pinned CA under `paths` and the one the node config
/// offers, pinning the offered one if none is pinned yet.
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
        Offered::Ca(pem) => Some((pem, fingerprint(pem))),
        Offered::Nothing | Offered::ConfigIgnored => None,
    };
    match (pinned, offered) {
        (Some((pem, pinned_fp)), None) => Decision::Serve {
            reason: format!("owner CA {pinned_fp} (pinned at first boot)"),
            ca_pem: pem,
        },
        (Some((pem, pinned_fp)), Some((_, Ok(offered_fp)))) if offered_fp == pinned_fp => {
            Decision::Serve {
                reason: format!("owner CA {pinned_fp} (pinned at first boot)"),
                ca_pem: pem,
            }
        }
        (Some((pem, pinned_fp)), Some((_, offered_fp))) => {
            let offered_fp = offered_fp.unwrap_or_else(|e| format!("(unreadable: {e})"));
            Decision::Serve {
                reason: format!(
                    "owner CA {pinned_fp} (pinned at first boot); the node config's \
                     owner.ca {offered_fp} is ignored: a pinned owner is kept"
                ),
                ca_pem: pem,
            }
        }
        (None, Some((pem, Ok(fp)))) => {
            let write = crate::atomic_write::write_atomic(&pinned_path, pem.as_bytes(), 0o644)
                .or_else(|_| {
                    let parent = pinned_path.parent().unwrap_or(Path::new("/"));
                    std::fs::create_dir_all(parent)?;
                    crate::atomic_write::write_atomic(&pinned_path, pem.as_bytes(), 0o644)
                });
            match write {
                Ok(()) => Decision::Serve {
                    reason: format!("owner CA {fp} pinned at this first boot"),
                    ca_pem: pem.to_owned(),
                },
                Err(err) => Decision::Off {
                    reason: format!(
                        "cannot pin the owner CA {fp} at {PINNED_CA}: {err}; the node API \
                         stays off"
                    ),
                },
            }
        }
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

/// `sha256:<hex>` of the first certificate's DER, as `dbg owner init` prints it.
pub fn fingerprint(pem: &str) -> Result<String, String> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|err| format!("holds no PEM certificate: {err}"))?;
    Ok(format!(
        "sha256:{}",
        hex::encode(Sha256::digest(der.as_ref()))
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca(name: &str) -> String {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.self_signed(&key).unwrap().pem()
    }

    fn pinned(paths: &Paths) -> Option<String> {
        std::fs::read_to_string(paths.resolve(PINNED_CA)).ok()
    }

    #[test]
    fn the_first_owner_is_pinned_and_kept_against_a_later_one() {
        let root = tempfile::tempdir().unwrap();
        let paths = Paths::under_root(root.path());
        let (first, second) = (ca("first"), ca("second"));
        let decision = settle(&paths, Offered::Ca(&first));
        assert!(
            matches!(&decision, Decision::Serve { ca_pem, reason }
                if *ca_pem == first && reason.contains("pinned at this first boot")),
            "{decision:?}"
        );
        assert_eq!(pinned(&paths).as_deref(), Some(first.as_str()));

        let decision = settle(&paths, Offered::Ca(&second));
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
        let decision = settle(&paths, Offered::Ca(&ca("intruder")));
        assert!(
            matches!(&decision, Decision::Off { reason } if reason.contains(PINNED_CA)),
            "{decision:?}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "garbage");
    }
}
