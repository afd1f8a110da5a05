//! `dbg kubectl [CREDENTIALS] ARGS…`: kubectl against the node, with fresh credentials.
//!
//! Fetches a debug kubeconfig (as `dbg kubeconfig`), writes it to a private temporary
//! file (mode 0600, removed when kubectl ends), runs the project-built kubectl with
//! `--kubeconfig FILE ARGS…` and exits with kubectl's status. SIGINT, SIGTERM and SIGHUP
//! sent to `dbg` go on to kubectl, so `kill`, `timeout` or a supervisor stops a
//! `dbg kubectl port-forward` like a bare kubectl, and `dbg` still outlives it to remove
//! the credentials. The kubectl is the `kube` multiplexer the Go build writes
//! (`$CAIRN_CACHE/go-out/bin/kube kubectl`, cache default `~/.cache/cairn`), or the
//! binary named by `CAIRN_KUBECTL`. Arguments after the first one that is not a
//! `dbg kubectl` option go to kubectl untouched; use `--` to pass one that `dbg` would
//! take (`dbg kubectl -- --help`).

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::{Path, PathBuf};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};

use super::kubeconfig::{fetch, Credentials};
use super::Context;
use crate::DbgError;

/// The environment variable naming a kubectl binary to use instead of the multiplexer.
pub const KUBECTL_ENV: &str = "CAIRN_KUBECTL";
/// The Go build's cache, as the Makefile exports it.
pub const CACHE_ENV: &str = "CAIRN_CACHE";

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub credentials: Credentials,
    /// Arguments for kubectl, e.g. `get pods -A`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub args: Vec<OsString>,
}

/// How to start kubectl: a program and the arguments that come before ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kubectl {
    pub program: PathBuf,
    pub leading: Vec<OsString>,
}

pub async fn run(args: Args, ctx: Context, _out: &mut dyn Write) -> Result<(), DbgError> {
    let kubectl = locate(
        std::env::var_os(KUBECTL_ENV).as_deref(),
        std::env::var_os(CACHE_ENV).as_deref(),
        std::env::var_os("HOME").as_deref(),
    )?;
    // Listening before the credentials exist: from here on a signal cannot end `dbg`
    // with the credentials left behind.
    let mut signals = Signals::listen()?;
    let text = tokio::select! {
        text = fetch(&args.credentials, &ctx) => text?,
        signal = signals.recv() => return Err(DbgError::Stopped(signal)),
    };
    let file = private_file(&text)?;
    let line = command_line(&kubectl, file.path(), &args.args);
    let code = run_kubectl(&kubectl, &line, &mut signals).await?;
    // `file` is removed here, after kubectl has ended.
    drop(file);
    match code {
        0 => Ok(()),
        code => Err(DbgError::KubectlExit(code)),
    }
}

/// The kubectl to run: `CAIRN_KUBECTL`, else `<cache>/go-out/bin/kube kubectl` where
/// the cache is `CAIRN_CACHE` or `$HOME/.cache/cairn`; an error if it does not exist.
pub fn locate(
    override_path: Option<&OsStr>,
    cache: Option<&OsStr>,
    home: Option<&OsStr>,
) -> Result<Kubectl, DbgError> {
    if let Some(path) = override_path.filter(|p| !p.is_empty()) {
        let program = PathBuf::from(path);
        if !program.is_file() {
            return Err(DbgError::NoKubectl {
                path: program,
                from_env: true,
            });
        }
        return Ok(Kubectl {
            program,
            leading: Vec::new(),
        });
    }
    let cache = match cache.filter(|c| !c.is_empty()) {
        Some(cache) => PathBuf::from(cache),
        None => Path::new(home.unwrap_or_default()).join(".cache/cairn"),
    };
    let program = cache.join("go-out/bin/kube");
    if !program.is_file() {
        return Err(DbgError::NoKubectl {
            path: program,
            from_env: false,
        });
    }
    Ok(Kubectl {
        program,
        leading: vec!["kubectl".into()],
    })
}

/// kubectl's arguments: the multiplexer's selector, our kubeconfig, then the user's.
pub fn command_line(kubectl: &Kubectl, kubeconfig: &Path, args: &[OsString]) -> Vec<OsString> {
    let mut line = kubectl.leading.clone();
    line.push("--kubeconfig".into());
    line.push(kubeconfig.into());
    line.extend(args.iter().cloned());
    line
}

/// The kubeconfig in a new file only the user can read (tempfile creates it 0600).
fn private_file(text: &str) -> Result<tempfile::NamedTempFile, DbgError> {
    let mut file = tempfile::Builder::new()
        .prefix("cairn-kubeconfig-")
        .tempfile()
        .map_err(DbgError::TempFile)?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.flush())
        .map_err(DbgError::TempFile)?;
    Ok(file)
}

/// The signals that stop a kubectl, as `dbg` receives them to pass on.
#[derive(Debug)]
pub struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Replaces the default action (ending `dbg`) with delivery to [`Signals::recv`].
    pub fn listen() -> Result<Self, DbgError> {
        let listen = |kind| signal(kind).map_err(DbgError::Runtime);
        Ok(Self {
            interrupt: listen(SignalKind::interrupt())?,
            terminate: listen(SignalKind::terminate())?,
            hangup: listen(SignalKind::hangup())?,
        })
    }

    /// The next signal received.
    pub async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.interrupt.recv() => Signal::SIGINT,
            _ = self.terminate.recv() => Signal::SIGTERM,
            _ = self.hangup.recv() => Signal::SIGHUP,
        }
    }
}

/// Runs kubectl to the end, passing on every signal in `signals`, and returns its exit
/// code (128 + signal if killed, as a shell reports it). A Ctrl-C at a terminal reaches
/// kubectl twice, from the terminal's process group and from `dbg`; kubectl acts on the
/// first interrupt and ignores a repeat.
async fn run_kubectl(
    kubectl: &Kubectl,
    args: &[OsString],
    signals: &mut Signals,
) -> Result<u8, DbgError> {
    let spawn_error = |source| DbgError::RunKubectl {
        path: kubectl.program.clone(),
        source,
    };
    let mut child = tokio::process::Command::new(&kubectl.program)
        .args(args)
        .spawn()
        .map_err(spawn_error)?;
    // Until `wait` has reaped it the pid stays kubectl's, even once it has exited.
    let pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    loop {
        tokio::select! {
            status = child.wait() => return Ok(exit_code(status.map_err(spawn_error)?)),
            signal = signals.recv() => {
                if let Some(pid) = pid {
                    // ESRCH cannot happen before the reap; nothing else is worth reporting.
                    let _ = kill(pid, signal);
                }
            }
        }
    }
}

fn exit_code(status: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(1),
        (None, None) => 1,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::ExitStatusExt;

    use clap::Parser;

    use super::*;

    fn parse(argv: &[&str]) -> Args {
        match crate::Cli::try_parse_from(argv).unwrap().command {
            crate::Command::Kubectl(args) => args,
            _ => panic!("not kubectl"),
        }
    }

    #[test]
    fn kubectl_arguments_pass_through_untouched() {
        let args = parse(&[
            "dbg", "kubectl", "get", "pods", "-A", "-o", "yaml", "--user", "x",
        ]);
        assert_eq!(
            args.args,
            ["get", "pods", "-A", "-o", "yaml", "--user", "x"]
        );
        assert_eq!(args.credentials.user, "cairn-debug");

        let args = parse(&["dbg", "kubectl", "--user", "bob", "--", "--help"]);
        assert_eq!(args.credentials.user, "bob");
        assert_eq!(args.args, ["--help"]);
        assert!(crate::Cli::try_parse_from(["dbg", "kubectl"]).is_err());
    }

    #[test]
    fn the_kubeconfig_comes_first_after_the_selector() {
        let multiplexer = Kubectl {
            program: "/c/go-out/bin/kube".into(),
            leading: vec!["kubectl".into()],
        };
        let user: Vec<OsString> = vec!["get".into(), "ns".into()];
        let line = command_line(&multiplexer, Path::new("/tmp/k"), &user);
        assert_eq!(line, ["kubectl", "--kubeconfig", "/tmp/k", "get", "ns"]);
        let plain = Kubectl {
            program: "/usr/bin/kubectl".into(),
            leading: Vec::new(),
        };
        assert_eq!(
            command_line(&plain, Path::new("/tmp/k"), &user),
            ["--kubeconfig", "/tmp/k", "get", "ns"]
        );
    }

    #[test]
    fn kubectl_is_found_in_the_cache_or_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = locate(None, Some(dir.path().as_os_str()), None).unwrap_err();
        assert!(err.to_string().contains("go-out/bin/kube"), "{err}");
        assert!(err.to_string().contains("make image"), "{err}");
        let bin = dir.path().join("go-out/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("kube"), "").unwrap();
        let found = locate(None, Some(dir.path().as_os_str()), None).unwrap();
        assert_eq!(found.leading, ["kubectl"]);
        let home = locate(None, None, Some(OsStr::new("/nonexistent-home"))).unwrap_err();
        assert!(
            home.to_string().contains("/nonexistent-home/.cache/cairn"),
            "{home}"
        );
        let err = locate(Some(OsStr::new("/no/kubectl")), None, None).unwrap_err();
        assert!(err.to_string().contains(KUBECTL_ENV), "{err}");
        let named = locate(Some(bin.join("kube").as_os_str()), None, None).unwrap();
        assert!(named.leading.is_empty());
    }

    #[test]
    fn the_credentials_file_is_private_and_removed() {
        let file = private_file("secret").unwrap();
        let path = file.path().to_owned();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "secret");
        drop(file);
        assert!(!path.exists());
    }

    #[test]
    fn exit_codes_pass_through() {
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(1 << 8)), 1);
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(42 << 8)), 42);
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(9)), 137);
    }

    #[tokio::test]
    async fn the_status_of_the_real_process_is_returned() {
        let sh = Kubectl {
            program: "/bin/sh".into(),
            leading: Vec::new(),
        };
        let args: Vec<OsString> = vec!["-c".into(), "exit 7".into()];
        let mut signals = Signals::listen().unwrap();
        assert_eq!(run_kubectl(&sh, &args, &mut signals).await.unwrap(), 7);
    }
}
