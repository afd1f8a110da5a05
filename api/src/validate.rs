//! Limits on NodeDebugService requests.
//!
//! Requests come from the network into PID 1, so every field is checked before it is
//! used: names are short and of a fixed alphabet (so they can be echoed in messages and
//! logs safely), counts and timeouts are bounded, and signals come from an allowlist.

use std::fmt;

/// Longest component or condition name (a DNS subdomain's limit).
pub const MAX_NAME_LEN: usize = 253;
/// Largest `tail_lines`; far above any log buffer, so it only catches nonsense.
pub const MAX_TAIL_LINES: u32 = 1_000_000;
/// Longest `WaitCondition` timeout: one hour.
pub const MAX_WAIT_MS: u32 = 3_600_000;
/// Longest kubeconfig user or group: X.509's upper bound for a CN (RFC 5280
/// `ub-common-name`), applied to the O entries too.
pub const MAX_SUBJECT_LEN: usize = 64;
/// Most groups in one debug kubeconfig.
pub const MAX_GROUPS: usize = 16;
/// Shortest debug credential: one minute.
pub const MIN_VALIDITY_SECS: u32 = 60;
/// Longest debug credential: one day (they are for debugging, not for keeping).
pub const MAX_VALIDITY_SECS: u32 = 86_400;
/// A debug credential's lifetime when the request names none: one hour.
pub const DEFAULT_VALIDITY_SECS: u32 = 3_600;

/// A request field that breaks the limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidArgument {
    /// A name field is empty.
    #[error("{field} is empty")]
    EmptyName {
        /// The request field.
        field: &'static str,
    },
    /// A name field is too long.
    #[error("{field} is {len} bytes long, more than {MAX_NAME_LEN}")]
    NameTooLong {
        /// The request field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// A name field has characters outside `[a-z0-9._-]` or starts with a punctuation mark.
    #[error("{field} {name:?} must be [a-z0-9._-] starting with a letter or digit")]
    BadName {
        /// The request field.
        field: &'static str,
        /// The name (at most [`MAX_NAME_LEN`] bytes, shown escaped).
        name: String,
    },
    /// `tail_lines` is above [`MAX_TAIL_LINES`].
    #[error("tail_lines {0} is more than {MAX_TAIL_LINES}")]
    TailTooLong(u32),
    /// `timeout_ms` is above [`MAX_WAIT_MS`].
    #[error("timeout_ms {0} is more than {MAX_WAIT_MS} (one hour)")]
    TimeoutTooLong(u32),
    /// `image` is not an image reference.
    #[error("image {0:?} is not an image reference")]
    BadImage(String),
    /// `command` has too many or too long arguments.
    #[error("command has {count} arguments of {bytes} bytes; at most {MAX_COMMAND_ARGS} and {MAX_COMMAND_BYTES}")]
    CommandTooLong {
        /// Arguments given.
        count: usize,
        /// Their total length.
        bytes: usize,
    },
    /// `timeout_ms` of RunContainer is above [`MAX_RUN_MS`].
    #[error("timeout_ms {0} is more than {MAX_RUN_MS} (ten minutes)")]
    RunTooLong(u32),
    /// A kubeconfig user or group is empty, too long or has characters outside
    /// `[A-Za-z0-9._:@-]` (or starts with a punctuation mark).
    #[error("{field} {name:?} must be 1-{MAX_SUBJECT_LEN} bytes of [A-Za-z0-9._:@-] starting with a letter or digit")]
    BadSubject {
        /// The request field (`user` or `groups`).
        field: &'static str,
        /// The value (at most [`MAX_SUBJECT_LEN`] + 1 characters kept, shown escaped).
        name: String,
    },
    /// More groups than [`MAX_GROUPS`].
    #[error("{0} groups requested, at most {MAX_GROUPS} allowed")]
    TooManyGroups(usize),
    /// `validity_seconds` is outside [`MIN_VALIDITY_SECS`]..=[`MAX_VALIDITY_SECS`].
    #[error("validity_seconds {0} is not between {MIN_VALIDITY_SECS} and {MAX_VALIDITY_SECS}")]
    Validity(u32),
    /// The signal is not in the allowlist.
    #[error("signal {name:?} is not one of {}", DebugSignal::ALL.map(|s| s.name()).join(", "))]
    Signal {
        /// The requested name (at most 16 bytes kept).
        name: String,
    },
    /// A LoadImage archive larger than [`MAX_ARCHIVE_BYTES`].
    #[error("archive_size {0} is more than {MAX_ARCHIVE_BYTES} bytes (4 GiB)")]
    ArchiveTooLarge(u64),
    /// A LoadImage data message larger than [`MAX_LOAD_CHUNK`].
    #[error("a data message of {0} bytes is more than {MAX_LOAD_CHUNK}")]
    ChunkTooLarge(usize),
}

/// Checks a component or condition name; `field` names the request field in the error.
pub fn name<'a>(field: &'static str, name: &'a str) -> Result<&'a str, InvalidArgument> {
    if name.is_empty() {
        return Err(InvalidArgument::EmptyName { field });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(InvalidArgument::NameTooLong {
            field,
            len: name.len(),
        });
    }
    let bytes = name.as_bytes();
    let allowed = |b: &u8| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-');
    if !bytes[0].is_ascii_alphanumeric() || !bytes.iter().all(allowed) {
        return Err(InvalidArgument::BadName {
            field,
            name: name.to_owned(),
        });
    }
    Ok(name)
}

/// Checks `tail_lines`.
pub fn tail_lines(tail: Option<u32>) -> Result<Option<u32>, InvalidArgument> {
    match tail {
        Some(n) if n > MAX_TAIL_LINES => Err(InvalidArgument::TailTooLong(n)),
        other => Ok(other),
    }
}

/// Checks `timeout_ms`.
pub fn timeout_ms(timeout: u32) -> Result<std::time::Duration, InvalidArgument> {
    if timeout > MAX_WAIT_MS {
        return Err(InvalidArgument::TimeoutTooLong(timeout));
    }
    Ok(std::time::Duration::from_millis(timeout.into()))
}

/// Longest accepted image reference (the registry grammar's practical limit).
pub const MAX_IMAGE_LEN: usize = 255;
/// Most arguments a RunContainer command may have.
pub const MAX_COMMAND_ARGS: usize = 64;
/// Most bytes a RunContainer command may have in all.
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;
/// Longest RunContainer timeout.
pub const MAX_RUN_MS: u32 = 600_000;
/// RunContainer timeout when the request gives none.
pub const DEFAULT_RUN_MS: u32 = 60_000;

/// Checks an image reference: `[A-Za-z0-9._/:@-]`, at most [`MAX_IMAGE_LEN`] bytes,
/// starting with an alphanumeric.
pub fn image(reference: &str) -> Result<&str, InvalidArgument> {
    let allowed = |b: &u8| b.is_ascii_alphanumeric() || b"._/:@-".contains(b);
    let ok = !reference.is_empty()
        && reference.len() <= MAX_IMAGE_LEN
        && reference.as_bytes()[0].is_ascii_alphanumeric()
        && reference.as_bytes().iter().all(allowed);
    if !ok {
        let shown: String = reference.chars().take(MAX_IMAGE_LEN).collect();
        return Err(InvalidArgument::BadImage(shown));
    }
    Ok(reference)
}

/// Checks a RunContainer command's size.
pub fn command(args: &[String]) -> Result<&[String], InvalidArgument> {
    let bytes: usize = args.iter().map(String::len).sum();
    if args.len() > MAX_COMMAND_ARGS || bytes > MAX_COMMAND_BYTES {
        return Err(InvalidArgument::CommandTooLong {
            count: args.len(),
            bytes,
        });
    }
    Ok(args)
}

/// Checks a RunContainer timeout; 0 means [`DEFAULT_RUN_MS`].
pub fn run_timeout_ms(timeout: u32) -> Result<std::time::Duration, InvalidArgument> {
    match timeout {
        0 => Ok(std::time::Duration::from_millis(DEFAULT_RUN_MS.into())),
        t if t > MAX_RUN_MS => Err(InvalidArgument::RunTooLong(t)),
        t => Ok(std::time::Duration::from_millis(t.into())),
    }
}

/// Largest image archive LoadImage accepts: 4 GiB (half the default data disk).
pub const MAX_ARCHIVE_BYTES: u64 = 4 << 30;
/// Largest data message of a LoadImage stream.
pub const MAX_LOAD_CHUNK: usize = 1 << 20;

/// Checks a LoadImage archive's declared size.
pub fn archive_size(size: u64) -> Result<u64, InvalidArgument> {
    if size > MAX_ARCHIVE_BYTES {
        return Err(InvalidArgument::ArchiveTooLarge(size));
    }
    Ok(size)
}

/// Checks the size of one LoadImage data message.
pub fn load_chunk(data: &[u8]) -> Result<&[u8], InvalidArgument> {
    if data.len() > MAX_LOAD_CHUNK {
        return Err(InvalidArgument::ChunkTooLarge(data.len()));
    }
    Ok(data)
}

/// Checks a kubeconfig user or group name (it becomes a certificate's CN or O):
/// Kubernetes' own names (`system:masters`, `system:node:cairn-...`) and e-mail-like
/// users pass; spaces, commas, slashes, quotes and control characters do not.
pub fn subject<'a>(field: &'static str, name: &'a str) -> Result<&'a str, InvalidArgument> {
    let bytes = name.as_bytes();
    let allowed =
        |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-');
    let ok = !name.is_empty()
        && name.len() <= MAX_SUBJECT_LEN
        && bytes[0].is_ascii_alphanumeric()
        && bytes.iter().all(allowed);
    if !ok {
        return Err(InvalidArgument::BadSubject {
            field,
            name: name.chars().take(MAX_SUBJECT_LEN + 1).collect(),
        });
    }
    Ok(name)
}

/// Checks the groups of a debug kubeconfig.
pub fn groups(groups: &[String]) -> Result<&[String], InvalidArgument> {
    if groups.len() > MAX_GROUPS {
        return Err(InvalidArgument::TooManyGroups(groups.len()));
    }
    for group in groups {
        subject("groups", group)?;
    }
    Ok(groups)
}

/// Checks `validity_seconds`; absent means [`DEFAULT_VALIDITY_SECS`].
pub fn validity(seconds: Option<u32>) -> Result<std::time::Duration, InvalidArgument> {
    let seconds = seconds.unwrap_or(DEFAULT_VALIDITY_SECS);
    if !(MIN_VALIDITY_SECS..=MAX_VALIDITY_SECS).contains(&seconds) {
        return Err(InvalidArgument::Validity(seconds));
    }
    Ok(std::time::Duration::from_secs(seconds.into()))
}

/// The signals `SignalComponent` may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DebugSignal {
    /// SIGTERM.
    Term,
    /// SIGKILL.
    Kill,
    /// SIGINT.
    Int,
    /// SIGHUP.
    Hup,
    /// SIGQUIT.
    Quit,
    /// SIGUSR1.
    Usr1,
    /// SIGUSR2.
    Usr2,
    /// SIGSTOP.
    Stop,
    /// SIGCONT.
    Cont,
}

impl DebugSignal {
    /// Every allowed signal.
    pub const ALL: [DebugSignal; 9] = [
        DebugSignal::Term,
        DebugSignal::Kill,
        DebugSignal::Int,
        DebugSignal::Hup,
        DebugSignal::Quit,
        DebugSignal::Usr1,
        DebugSignal::Usr2,
        DebugSignal::Stop,
        DebugSignal::Cont,
    ];

    /// Its name, e.g. `SIGKILL`.
    pub fn name(self) -> &'static str {
        match self {
            DebugSignal::Term => "SIGTERM",
            DebugSignal::Kill => "SIGKILL",
            DebugSignal::Int => "SIGINT",
            DebugSignal::Hup => "SIGHUP",
            DebugSignal::Quit => "SIGQUIT",
            DebugSignal::Usr1 => "SIGUSR1",
            DebugSignal::Usr2 => "SIGUSR2",
            DebugSignal::Stop => "SIGSTOP",
            DebugSignal::Cont => "SIGCONT",
        }
    }
}

impl fmt::Display for DebugSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses a signal name: `SIGKILL` or `KILL`, any case.
pub fn signal(name: &str) -> Result<DebugSignal, InvalidArgument> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    DebugSignal::ALL
        .into_iter()
        .find(|s| &s.name()[3..] == bare)
        .ok_or_else(|| InvalidArgument::Signal {
            name: name.chars().take(16).collect(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_container_input_is_bounded() {
        assert!(image("localhost/cairn/toolbox:1").is_ok());
        assert!(image("sha256:0123abcd").is_ok());
        for bad in ["", "/abs", "a b", "x;rm", &"a".repeat(256)] {
            assert!(image(bad).is_err(), "{bad:?} accepted");
        }
        assert!(command(&["sh".into(), "-c".into(), "echo".into()]).is_ok());
        assert!(command(&vec![String::new(); 65]).is_err());
        assert!(command(&["x".repeat(64 * 1024 + 1)]).is_err());
        assert_eq!(run_timeout_ms(0).unwrap().as_secs(), 60);
        assert!(run_timeout_ms(MAX_RUN_MS + 1).is_err());
    }

    #[test]
    fn names_of_the_node_pass() {
        for good in [
            "agent",
            "containerd",
            "kube-apiserver",
            "node-ready",
            "a",
            "x.y_z",
        ] {
            assert_eq!(name("component", good), Ok(good));
        }
        assert_eq!(
            name("component", &"a".repeat(MAX_NAME_LEN)).map(str::len),
            Ok(253)
        );
    }

    #[test]
    fn malformed_names_are_refused_naming_the_field() {
        assert_eq!(
            name("condition", ""),
            Err(InvalidArgument::EmptyName { field: "condition" })
        );
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert_eq!(
            name("component", &long),
            Err(InvalidArgument::NameTooLong {
                field: "component",
                len: 254
            })
        );
        for bad in ["Agent", "-x", ".x", "a b", "a/b", "ä", "a\n", "../etc"] {
            let err = name("component", bad).unwrap_err();
            assert!(matches!(err, InvalidArgument::BadName { .. }), "{bad:?}");
            assert!(err.to_string().starts_with("component "), "{err}");
        }
    }

    #[test]
    fn counts_and_timeouts_are_bounded() {
        assert_eq!(tail_lines(None), Ok(None));
        assert_eq!(tail_lines(Some(0)), Ok(Some(0)));
        assert_eq!(tail_lines(Some(MAX_TAIL_LINES)), Ok(Some(MAX_TAIL_LINES)));
        assert_eq!(
            tail_lines(Some(u32::MAX)),
            Err(InvalidArgument::TailTooLong(u32::MAX))
        );
        assert_eq!(timeout_ms(0), Ok(std::time::Duration::ZERO));
        assert_eq!(timeout_ms(MAX_WAIT_MS).map(|d| d.as_secs()), Ok(3600));
        assert!(timeout_ms(MAX_WAIT_MS + 1).is_err());
    }

    #[test]
    fn image_archives_and_their_chunks_are_bounded() {
        assert_eq!(archive_size(0), Ok(0));
        assert_eq!(archive_size(MAX_ARCHIVE_BYTES), Ok(MAX_ARCHIVE_BYTES));
        let err = archive_size(MAX_ARCHIVE_BYTES + 1).unwrap_err();
        assert!(err.to_string().contains("4 GiB"), "{err}");
        assert!(load_chunk(&vec![0; MAX_LOAD_CHUNK]).is_ok());
        assert_eq!(
            load_chunk(&vec![0; MAX_LOAD_CHUNK + 1]),
            Err(InvalidArgument::ChunkTooLarge(MAX_LOAD_CHUNK + 1))
        );
    }

    #[test]
    fn kubeconfig_subjects_are_kubernetes_names() {
        for good in [
            "cairn-debug",
            "system:masters",
            "system:node:cairn-0a",
            "a@b.c",
            "x_1",
        ] {
            assert_eq!(subject("user", good), Ok(good));
        }
        let long = "a".repeat(MAX_SUBJECT_LEN + 10);
        for bad in [
            "",
            ":x",
            "a b",
            "a,O=system:masters",
            "a/b",
            "a\"b",
            "ü",
            "a\n",
            &long,
        ] {
            let err = subject("user", bad).unwrap_err();
            assert!(err.to_string().starts_with("user "), "{err}");
            if let InvalidArgument::BadSubject { name, .. } = err {
                assert!(name.chars().count() <= MAX_SUBJECT_LEN + 1);
            }
        }
        let many: Vec<String> = (0..=MAX_GROUPS).map(|i| format!("g{i}")).collect();
        assert_eq!(groups(&many), Err(InvalidArgument::TooManyGroups(17)));
        assert!(groups(&many[..MAX_GROUPS]).is_ok());
        let bad = vec!["ok".to_owned(), "not ok".to_owned()];
        assert!(groups(&bad).unwrap_err().to_string().starts_with("groups "));
    }

    #[test]
    fn validity_defaults_to_an_hour_and_is_bounded() {
        assert_eq!(validity(None).map(|d| d.as_secs()), Ok(3600));
        assert_eq!(validity(Some(60)).map(|d| d.as_secs()), Ok(60));
        assert_eq!(validity(Some(86_400)).map(|d| d.as_secs()), Ok(86_400));
        for bad in [0, 59, 86_401, u32::MAX] {
            assert_eq!(validity(Some(bad)), Err(InvalidArgument::Validity(bad)));
        }
    }

    #[test]
    fn signals_come_from_the_allowlist() {
        assert_eq!(signal("SIGKILL"), Ok(DebugSignal::Kill));
        assert_eq!(signal("kill"), Ok(DebugSignal::Kill));
        assert_eq!(signal("SigTerm"), Ok(DebugSignal::Term));
        for bad in ["", "SIG", "SIGSEGV", "9", "SIGKILLX", &"A".repeat(1000)] {
            let err = signal(bad).unwrap_err();
            assert!(err.to_string().contains("SIGKILL"), "{err}");
            if let InvalidArgument::Signal { name } = err {
                assert!(name.len() <= 16);
            }
        }
    }
}
