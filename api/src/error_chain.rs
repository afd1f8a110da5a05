//! Errors carry their causes in `source()`, not in their messages (the variant names
//! what failed, the source says why); this puts the whole chain back together for a
//! console line, a log record, a `tonic::Status` message or a CLI's last words.

use std::error::Error;

/// `err: cause: cause ...`, the whole `source()` chain on one line.
pub fn error_chain(err: &dyn Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("failed to mount proc on /proc")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("mount(2) failed")]
    struct Middle(#[source] io::Error);

    #[test]
    fn every_cause_is_joined() {
        let err = Outer(Middle(io::Error::other("no such device")));
        assert_eq!(
            error_chain(&err),
            "failed to mount proc on /proc: mount(2) failed: no such device"
        );
    }

    #[test]
    fn an_error_without_a_source_is_its_message() {
        assert_eq!(error_chain(&io::Error::other("x")), "x");
    }
}
