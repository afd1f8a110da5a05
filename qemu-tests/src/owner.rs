//! The owner CA a launched node is given (docs/interfaces.md "Owner credentials").
//!
//! Unless told not to, the launcher puts the host's owner CA (`ca.crt` in the owner
//! directory that `dbg owner init` fills, [`cairn_dbg::owner`]) into the per-node config
//! as `[owner] ca`, so the node's API accepts this host's owner certificate. A node
//! config that names its own owner keeps it. The node pins the first owner CA it gets.

use std::path::{Path, PathBuf};

use cairn_api::node_config::{check_one_certificate, Owner};
use cairn_dbg::owner::{self as credentials, OwnerError, OwnerFiles};

use crate::config::Settings;

/// The owner CA found on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerCa {
    /// Its file (`ca.crt` in the owner directory).
    pub path: PathBuf,
    /// The certificate, PEM.
    pub pem: String,
    /// `sha256:<hex>` of its DER.
    pub fingerprint: String,
}

impl OwnerCa {
    /// `ca.crt` in `dir`, checked to hold exactly one certificate; `None` without one.
    pub fn load(dir: &Path) -> Result<Option<Self>, OwnerError> {
        let path = OwnerFiles::new(dir).ca_cert();
        let Some(pem) = credentials::load_ca_pem(dir)? else {
            return Ok(None);
        };
        check_one_certificate(&pem).map_err(|problem| OwnerError::NotACertificate {
            what: path.display().to_string(),
            problem,
        })?;
        let fingerprint = credentials::fingerprint(&pem)?;
        Ok(Some(OwnerCa {
            path,
            pem,
            fingerprint,
        }))
    }
}

/// What the node is told about its owner, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerChoice {
    /// `--no-owner`: the launcher adds none.
    Disabled,
    /// The given node config names its own owner; it is kept.
    FromNodeConfig,
    /// No owner CA on the host: no `ca.crt` in `dir`, or no directory could be named.
    NoCa {
        /// The owner directory looked in.
        dir: Option<PathBuf>,
    },
    /// The node is given this CA.
    Given(OwnerCa),
}

impl OwnerChoice {
    /// One line for the person starting the node.
    pub fn describe(&self) -> String {
        match self {
            OwnerChoice::Disabled => "owner CA: none given (--no-owner)".to_owned(),
            OwnerChoice::FromNodeConfig => {
                "owner CA: the one in the node config ([owner] ca)".to_owned()
            }
            OwnerChoice::NoCa { dir: Some(dir) } => format!(
                "owner CA: none in {} (`dbg owner init` creates one); the node gets no owner",
                dir.display()
            ),
            OwnerChoice::NoCa { dir: None } => format!(
                "owner CA: none (no owner directory: set {} or HOME); the node gets no owner",
                credentials::OWNER_DIR_ENV
            ),
            OwnerChoice::Given(ca) => format!(
                "owner CA: {} ({}) goes to the node, which pins it on first boot",
                ca.path.display(),
                ca.fingerprint
            ),
        }
    }
}

/// The owner directory a launch reads the CA from: `explicit` (`--owner-dir`, unless
/// empty), else none with `no_owner`, else the default one (if one can be named).
pub fn dir(explicit: Option<PathBuf>, no_owner: bool) -> Option<PathBuf> {
    match explicit.filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => Some(dir),
        None if no_owner => None,
        None => credentials::default_dir().ok(),
    }
}

/// [`decide`] with the owner CA read from `dir`'s `ca.crt`.
pub fn apply(
    settings: Option<Settings>,
    no_owner: bool,
    dir: Option<&Path>,
) -> Result<(Option<Settings>, OwnerChoice), OwnerError> {
    decide(settings, no_owner, dir, OwnerCa::load)
}

/// The node config to hand over and what it says about the owner: unchanged with
/// `no_owner` or when it names an owner already; else with the CA `load` finds in
/// `dir` (a default config if there was none), or unchanged when there is no CA.
/// `load` runs only when its answer matters.
pub fn decide(
    settings: Option<Settings>,
    no_owner: bool,
    dir: Option<&Path>,
    load: impl FnOnce(&Path) -> Result<Option<OwnerCa>, OwnerError>,
) -> Result<(Option<Settings>, OwnerChoice), OwnerError> {
    if no_owner {
        return Ok((settings, OwnerChoice::Disabled));
    }
    if settings.as_ref().is_some_and(|s| s.owner.is_some()) {
        return Ok((settings, OwnerChoice::FromNodeConfig));
    }
    let found = match dir {
        Some(dir) => load(dir)?,
        None => None,
    };
    match found {
        Some(ca) => {
            let mut settings = settings.unwrap_or_default();
            settings.owner = Some(Owner {
                ca: ca.pem.clone(),
                handover_signature: None,
            });
            Ok((Some(settings), OwnerChoice::Given(ca)))
        }
        None => Ok((
            settings,
            OwnerChoice::NoCa {
                dir: dir.map(Path::to_owned),
            },
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_api::node_config::Registry;

    fn ca(pem: &str) -> OwnerCa {
        OwnerCa {
            path: "/owner/ca.crt".into(),
            pem: pem.to_owned(),
            fingerprint: format!("sha256:{}", "ab".repeat(32)),
        }
    }

    fn registries() -> Settings {
        Settings {
            registries: vec![Registry {
                host: "registry.test".to_owned(),
                ..Registry::default()
            }],
            ..Settings::default()
        }
    }

    fn never(_: &Path) -> Result<Option<OwnerCa>, OwnerError> {
        panic!("the owner dir is not read when its CA would not be used")
    }

    #[test]
    fn an_explicit_owner_dir_wins_and_no_owner_names_none() {
        let explicit = PathBuf::from("/o");
        assert_eq!(dir(Some(explicit.clone()), true), Some(explicit.clone()));
        assert_eq!(dir(Some(explicit.clone()), false), Some(explicit));
        assert_eq!(dir(None, true), None);
        assert_eq!(
            dir(Some(PathBuf::new()), true),
            None,
            "an empty flag is no flag"
        );
    }

    #[test]
    fn the_owner_ca_goes_into_the_node_config_when_present() {
        let dir = Path::new("/owner");
        // No node config given: a default one carries the owner.
        let (settings, choice) = decide(None, false, Some(dir), |d| {
            assert_eq!(d, dir);
            Ok(Some(ca("CA PEM")))
        })
        .unwrap();
        let settings = settings.unwrap();
        assert_eq!(
            settings.owner,
            Some(Owner {
                ca: "CA PEM".into(),
                handover_signature: None,
            })
        );
        assert_eq!(settings.registries, Vec::new());
        assert_eq!(choice, OwnerChoice::Given(ca("CA PEM")));
        let line = choice.describe();
        assert!(line.contains("/owner/ca.crt") && line.contains(&"ab".repeat(32)));

        // A node config without an owner keeps the rest and gains the owner.
        let given = registries();
        let (settings, _) = decide(Some(given.clone()), false, Some(dir), |_| {
            Ok(Some(ca("CA PEM")))
        })
        .unwrap();
        let settings = settings.unwrap();
        assert_eq!(settings.registries, given.registries);
        assert_eq!(settings.owner.unwrap().ca, "CA PEM");
    }

    #[test]
    fn no_owner_leaves_the_node_config_alone() {
        let (settings, choice) = decide(None, true, Some(Path::new("/owner")), never).unwrap();
        assert_eq!((settings, choice), (None, OwnerChoice::Disabled));
        let given = registries();
        let (settings, choice) = decide(Some(given.clone()), true, None, never).unwrap();
        assert_eq!((settings, choice), (Some(given), OwnerChoice::Disabled));
    }

    #[test]
    fn an_owner_in_the_node_config_is_kept() {
        let mut given = registries();
        given.owner = Some(Owner {
            ca: "FILE'S CA".into(),
            handover_signature: None,
        });
        let dir = Some(Path::new("/owner"));
        let (settings, choice) = decide(Some(given.clone()), false, dir, never).unwrap();
        assert_eq!(
            (settings, choice),
            (Some(given), OwnerChoice::FromNodeConfig)
        );
    }

    #[test]
    fn without_a_ca_nothing_is_added() {
        let dir = Path::new("/owner");
        let (settings, choice) = decide(None, false, Some(dir), |_| Ok(None)).unwrap();
        assert_eq!(settings, None);
        assert_eq!(
            choice,
            OwnerChoice::NoCa {
                dir: Some(dir.into())
            }
        );
        assert!(choice.describe().contains("dbg owner init"));
        let given = registries();
        let (settings, _) = decide(Some(given.clone()), false, Some(dir), |_| Ok(None)).unwrap();
        assert_eq!(settings, Some(given));
        let (settings, choice) = decide(None, false, None, never).unwrap();
        assert_eq!((settings, choice), (None, OwnerChoice::NoCa { dir: None }));
    }

    #[test]
    fn a_load_error_stops_the_start() {
        let err = decide(None, false, Some(Path::new("/owner")), |_| {
            Err(OwnerError::NoDir)
        });
        assert!(err.is_err());
    }

    #[test]
    fn the_ca_from_dbg_owner_init_is_read_and_valid_in_a_node_config() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(OwnerCa::load(root.path()).unwrap(), None);
        let created = cairn_dbg::owner::init(root.path(), false).unwrap();
        let (settings, choice) = apply(None, false, Some(root.path())).unwrap();
        let OwnerChoice::Given(ca) = choice else {
            panic!("{choice:?}")
        };
        assert_eq!(ca.path, created.files.ca_cert());
        assert_eq!(ca.fingerprint, created.ca_fingerprint);
        let settings = settings.unwrap();
        settings.validate().unwrap();
        let text = settings.to_toml();
        assert_eq!(Settings::parse(&text).unwrap(), settings);

        std::fs::write(created.files.ca_cert(), "not a certificate\n").unwrap();
        let err = OwnerCa::load(root.path()).unwrap_err().to_string();
        assert!(err.contains("ca.crt"), "{err}");
    }
}
