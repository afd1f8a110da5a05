//! A node's state directory: where a running QEMU can be found again.
//!
//! Layout: `qemu.pid`, `console.log` (serial capture), `qmp.sock`, `qemu.log` (QEMU's own
//! stderr) and `node.json` ([`NodeRecord`]). The launcher writes them when it starts QEMU;
//! `cairn-qemu stop` and other tools read them. `node-api-ca.pem` ([`NODE_API_CA_FILE`])
//! is `dbg`'s pin of the node's cluster CA, which it trusts for the node API on first
//! use; the launcher removes it when the node gets a new data disk (a new cluster CA). A recorded pid only counts as running
//! while `/proc/<pid>` is a live process whose command line names this directory's QMP
//! socket, so a recycled pid is never signalled.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::command::{Accel, PortForward};

/// `dbg`'s trust-on-first-use pin of the node's cluster CA, which serves the node API
/// ([`StateDir::node_api_ca`]).
pub use cairn_dbg::connect::NODE_API_CA_FILE;

/// Longest unix socket path the kernel accepts (`sun_path` is 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Creating the directory failed.
    #[error("cannot create state dir {0}")]
    Create(PathBuf, #[source] io::Error),
    /// A state file could not be written.
    #[error("cannot write {0}")]
    Write(PathBuf, #[source] io::Error),
    /// A state file could not be read.
    #[error("cannot read {0}")]
    Read(PathBuf, #[source] io::Error),
    /// A state file could not be removed.
    #[error("cannot remove {0}")]
    Remove(PathBuf, #[source] io::Error),
    /// An earlier boot's log could not be moved aside.
    #[error("cannot move {0} aside (kept logs are numbered .1, .2, …)")]
    Rotate(PathBuf, #[source] io::Error),
    /// `node.json` is not a node record.
    #[error("malformed node record {0}")]
    Parse(PathBuf, #[source] serde_json::Error),
    /// The QMP socket path is too long for a unix socket.
    #[error("qmp socket path {0} is longer than {MAX_SOCKET_PATH} bytes; use a shorter state dir")]
    SocketPathTooLong(PathBuf),
    /// Another node still runs from this directory.
    #[error("a node (pid {pid}) is still running from state dir {dir}; stop it first")]
    Busy {
        /// The directory.
        dir: PathBuf,
        /// The running QEMU.
        pid: u32,
    },
}

/// What `node.json` records about a running node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRecord {
    /// QEMU's pid (also its process group).
    pub pid: u32,
    /// Accelerator it runs with.
    pub accel: Accel,
    /// Host-to-guest TCP forwards.
    pub forwards: Vec<PortForward>,
    /// Serial console capture.
    pub console_log: PathBuf,
    /// QMP socket.
    pub qmp_socket: PathBuf,
    /// Node ID from `CAIRN_READY`, once the guest printed it.
    pub node_id: Option<String>,
    /// `http://127.0.0.1:PORT` of the forwarded NodeDebugService, if forwarded (the
    /// default `dbg` endpoint).
    #[serde(default)]
    pub debug_endpoint: Option<String>,
    /// `https://127.0.0.1:PORT` of the forwarded kube-apiserver, if forwarded (what
    /// `dbg kubeconfig` and `dbg kubectl` point the kubeconfig at).
    #[serde(default)]
    pub api_endpoint: Option<String>,
    /// `https://127.0.0.1:PORT` of the forwarded node API (the owner's mTLS API), if
    /// forwarded.
    #[serde(default)]
    pub node_api_endpoint: Option<String>,
    /// The per-node config file the node was started with, if any (`node.toml` in the
    /// state dir).
    #[serde(default)]
    pub node_config: Option<PathBuf>,
    /// The management APIs the node said it serves (`CAIRN_READY`'s `apis`), once it
    /// printed them: what `dbg` may connect to.
    #[serde(default)]
    pub apis: Option<Vec<String>>,
}

impl NodeRecord {
    /// The host endpoint of the forward to guest port `guest`, as an `http://` URL.
    pub fn endpoint_for(forwards: &[PortForward], guest: u16) -> Option<String> {
        Self::url_for(forwards, guest, "http")
    }

    /// The host endpoint of the forward to guest port `guest`, as a `https://` URL.
    pub fn tls_endpoint_for(forwards: &[PortForward], guest: u16) -> Option<String> {
        Self::url_for(forwards, guest, "https")
    }

    fn url_for(forwards: &[PortForward], guest: u16, scheme: &str) -> Option<String> {
        (forwards.iter())
            .find(|f| f.guest == guest)
            .map(|f| format!("{scheme}://127.0.0.1:{}", f.host))
    }
}

/// The files of one node's state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// The state directory at `root` (not created yet).
    pub fn new(root: &Path) -> Self {
        StateDir {
            root: root.to_owned(),
        }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Serial console capture file.
    pub fn console_log(&self) -> PathBuf {
        self.root.join("console.log")
    }

    /// QMP unix socket.
    pub fn qmp_socket(&self) -> PathBuf {
        self.root.join("qmp.sock")
    }

    /// QEMU's own stderr.
    pub fn qemu_log(&self) -> PathBuf {
        self.root.join("qemu.log")
    }

    /// Pid file.
    pub fn pid_file(&self) -> PathBuf {
        self.root.join("qemu.pid")
    }

    /// The per-node config QEMU hands the guest (`-fw_cfg`), when one is given.
    pub fn node_config(&self) -> PathBuf {
        self.root.join("node.toml")
    }

    /// The node record.
    pub fn record_file(&self) -> PathBuf {
        self.root.join("node.json")
    }

    /// `dbg`'s pin of the node's cluster CA for the node API ([`NODE_API_CA_FILE`]).
    /// Kept across runs; only a new data disk (a new cluster CA) removes it.
    pub fn node_api_ca(&self) -> PathBuf {
        self.root.join(NODE_API_CA_FILE)
    }

    /// Removes the node API pin, as for a node with a new cluster CA; whether there was
    /// one.
    pub fn forget_node_api_ca(&self) -> Result<bool, StateError> {
        let path = self.node_api_ca();
        let existed = path.exists();
        remove_if_exists(&path)?;
        Ok(existed)
    }

    /// Creates the directory for a new node: refuses while a node runs from it, and moves
    /// the previous boots' console and QEMU logs aside (`console.log.1` is the last
    /// boot's, up to [`KEPT_LOGS`]) so waits never see old lines and a boot that failed
    /// keeps its evidence.
    pub fn prepare(&self) -> Result<(), StateError> {
        if let Some(pid) = self.running_pid()? {
            return Err(StateError::Busy {
                dir: self.root.clone(),
                pid,
            });
        }
        let socket = self.qmp_socket();
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(StateError::SocketPathTooLong(socket));
        }
        fs::create_dir_all(&self.root).map_err(|e| StateError::Create(self.root.clone(), e))?;
        self.clear()?;
        rotate(&self.console_log(), KEPT_LOGS)?;
        rotate(&self.qemu_log(), KEPT_LOGS)?;
        remove_if_exists(&self.node_config())
    }

    /// Writes the pid file and `node.json` (atomically: temporary file, then rename).
    pub fn write(&self, record: &NodeRecord) -> Result<(), StateError> {
        write_atomic(&self.pid_file(), format!("{}\n", record.pid).as_bytes())?;
        let json = serde_json::to_vec_pretty(record).expect("node record serialises");
        write_atomic(&self.record_file(), &json)
    }

    /// The recorded node, if `node.json` exists.
    pub fn read(&self) -> Result<Option<NodeRecord>, StateError> {
        let path = self.record_file();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(StateError::Read(path, err)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StateError::Parse(path, e))
    }

    /// The recorded pid if that process is still the QEMU of this directory.
    pub fn running_pid(&self) -> Result<Option<u32>, StateError> {
        let path = self.pid_file();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(StateError::Read(path, err)),
        };
        let Ok(pid) = text.trim().parse::<u32>() else {
            return Ok(None);
        };
        Ok(is_our_qemu(Path::new("/proc"), pid, &self.qmp_socket()).then_some(pid))
    }

    /// Removes the pid files, records and socket; keeps the logs for post-mortems.
    pub fn clear(&self) -> Result<(), StateError> {
        let launch = self.root.join(crate::relaunch::LAUNCH_FILE);
        let watcher = self.root.join(crate::watch::PID_FILE);
        for path in [
            self.pid_file(),
            self.record_file(),
            self.qmp_socket(),
            launch,
            watcher,
        ] {
            remove_if_exists(&path)?;
        }
        Ok(())
    }
}

/// Whether `pid` under `proc_root` is alive (not a zombie) and was started with `socket`
/// on its command line.
pub fn is_our_qemu(proc_root: &Path, pid: u32, socket: &Path) -> bool {
    let Some(cmdline) = live_cmdline(proc_root, pid) else {
        return false;
    };
    let needle = socket.as_os_str().as_encoded_bytes();
    cmdline.windows(needle.len()).any(|window| window == needle)
}

/// The command line (NUL-separated arguments) of `pid` under `proc_root`, if that
/// process is alive and not a zombie.
pub(crate) fn live_cmdline(proc_root: &Path, pid: u32) -> Option<Vec<u8>> {
    let dir = proc_root.join(pid.to_string());
    let stat = fs::read_to_string(dir.join("stat")).ok()?;
    // The state letter follows the parenthesised command name, which may contain spaces.
    let state = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next());
    if matches!(state, None | Some('Z') | Some('X')) {
        return None;
    }
    fs::read(dir.join("cmdline")).ok()
}

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes).map_err(|e| StateError::Write(tmp.clone(), e))?;
    fs::rename(&tmp, path).map_err(|e| StateError::Write(path.to_owned(), e))
}

/// Earlier boots' logs kept beside the current one (`console.log.1` … `.5`).
pub const KEPT_LOGS: usize = 5;

/// Moves `path` to `path.1`, `path.1` to `path.2` and so on, dropping `path.<keep>`.
fn rotate(path: &Path, keep: usize) -> Result<(), StateError> {
    let numbered = |n: usize| {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    };
    remove_if_exists(&numbered(keep))?;
    for n in (1..=keep).rev() {
        let from = if n == 1 {
            path.to_owned()
        } else {
            numbered(n - 1)
        };
        match fs::rename(&from, numbered(n)) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => {
                return Err(StateError::Rotate(from, err));
            }
            _ => {}
        }
    }
    Ok(())
}

pub(crate) fn remove_if_exists(path: &Path) -> Result<(), StateError> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => {
            Err(StateError::Remove(path.to_owned(), err))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(state: &StateDir) -> NodeRecord {
        NodeRecord {
            pid: 4242,
            accel: Accel::Tcg,
            forwards: vec![
                PortForward {
                    host: 40000,
                    guest: 7837,
                },
                PortForward {
                    host: 40001,
                    guest: 6443,
                },
                PortForward {
                    host: 40002,
                    guest: 7838,
                },
            ],
            console_log: state.console_log(),
            qmp_socket: state.qmp_socket(),
            node_id: Some("00112233445566778899aabbccddeeff".to_owned()),
            debug_endpoint: Some("http://127.0.0.1:40000".to_owned()),
            api_endpoint: Some("https://127.0.0.1:40001".to_owned()),
            node_api_endpoint: Some("https://127.0.0.1:40002".to_owned()),
            node_config: None,
            apis: Some(vec!["debug".to_owned(), "node".to_owned()]),
        }
    }

    #[test]
    fn record_round_trips_and_clear_keeps_logs() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(&dir.path().join("node"));
        state.prepare().unwrap();
        assert_eq!(state.read().unwrap(), None);
        let written = record(&state);
        state.write(&written).unwrap();
        fs::write(state.console_log(), "boot\n").unwrap();
        assert_eq!(state.read().unwrap(), Some(written));
        assert_eq!(fs::read_to_string(state.pid_file()).unwrap(), "4242\n");
        state.clear().unwrap();
        assert_eq!(state.read().unwrap(), None);
        assert!(state.console_log().exists());
    }

    #[test]
    fn each_start_keeps_the_previous_boots_console_logs_up_to_a_bound() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(&dir.path().join("node"));
        for boot in 1..=KEPT_LOGS + 2 {
            state.prepare().unwrap();
            assert!(!state.console_log().exists(), "a new boot starts a new log");
            fs::write(state.console_log(), format!("boot {boot}\n")).unwrap();
        }
        let last = KEPT_LOGS + 2;
        let kept = |n: usize| {
            let path = dir.path().join(format!("node/console.log.{n}"));
            fs::read_to_string(path).ok()
        };
        state.prepare().unwrap();
        assert_eq!(kept(1).as_deref(), Some(format!("boot {last}\n").as_str()));
        assert_eq!(
            kept(KEPT_LOGS).as_deref(),
            Some(format!("boot {}\n", last + 1 - KEPT_LOGS).as_str())
        );
        assert_eq!(kept(KEPT_LOGS + 1), None, "more than {KEPT_LOGS} kept");
    }

    /// The launcher writes `node.json`; `dbg` reads it with its own, smaller type. Both
    /// must agree on the file, with and without the endpoint fields.
    #[test]
    fn dbg_reads_the_record_the_launcher_writes() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(&dir.path().join("node"));
        state.prepare().unwrap();
        let mut written = record(&state);
        written.forwards[0].host = 41000;
        written.forwards[1].host = 41001;
        written.debug_endpoint = Some("http://127.0.0.1:42000".to_owned());
        written.api_endpoint = Some("https://127.0.0.1:42001".to_owned());
        state.write(&written).unwrap();
        let path = state.record_file();
        let endpoint = cairn_dbg::endpoint::from_record(&path);
        assert_eq!(endpoint.as_deref(), Some("http://127.0.0.1:42000"));
        let api = cairn_dbg::endpoint::api_from_record(&path);
        assert_eq!(api.as_deref(), Some("https://127.0.0.1:42001"));
        // Without the endpoint fields dbg falls back to the forwards.
        written.debug_endpoint = None;
        written.api_endpoint = None;
        state.write(&written).unwrap();
        let endpoint = cairn_dbg::endpoint::from_record(&path);
        assert_eq!(endpoint.as_deref(), Some("http://127.0.0.1:41000"));
        let api = cairn_dbg::endpoint::api_from_record(&path);
        assert_eq!(api.as_deref(), Some("https://127.0.0.1:41001"));
    }

    #[test]
    fn record_json_uses_lowercase_accel() {
        let state = StateDir::new(Path::new("/s"));
        let json = serde_json::to_value(record(&state)).unwrap();
        assert_eq!(json["accel"], "tcg");
        assert_eq!(json["forwards"][0]["guest"], 7837);
    }

    #[test]
    fn endpoints_name_the_host_port_of_the_guest_port() {
        let state = StateDir::new(Path::new("/s"));
        let forwards = record(&state).forwards;
        assert_eq!(
            NodeRecord::endpoint_for(&forwards, 7837).as_deref(),
            Some("http://127.0.0.1:40000")
        );
        assert_eq!(
            NodeRecord::tls_endpoint_for(&forwards, 6443).as_deref(),
            Some("https://127.0.0.1:40001")
        );
        assert_eq!(
            NodeRecord::tls_endpoint_for(&forwards, 7838).as_deref(),
            Some("https://127.0.0.1:40002")
        );
        assert_eq!(NodeRecord::endpoint_for(&forwards, 22), None);
    }

    #[test]
    fn records_without_an_api_endpoint_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let mut json = serde_json::to_value(record(&state)).unwrap();
        json.as_object_mut().unwrap().remove("api_endpoint");
        json.as_object_mut().unwrap().remove("node_api_endpoint");
        fs::write(state.record_file(), json.to_string()).unwrap();
        let read = state.read().unwrap().unwrap();
        assert_eq!(read.api_endpoint, None);
        assert_eq!(read.node_api_endpoint, None);
    }

    #[test]
    fn the_record_names_the_node_api_endpoint() {
        let state = StateDir::new(Path::new("/s"));
        let json = serde_json::to_value(record(&state)).unwrap();
        assert_eq!(json["node_api_endpoint"], "https://127.0.0.1:40002");
    }

    #[test]
    fn the_node_api_pin_survives_prepare_and_clear_until_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        assert_eq!(state.node_api_ca(), dir.path().join(NODE_API_CA_FILE));
        assert_eq!(NODE_API_CA_FILE, "node-api-ca.pem");
        fs::write(state.node_api_ca(), "pinned CA").unwrap();
        state.prepare().unwrap();
        state.clear().unwrap();
        assert!(state.node_api_ca().exists());
        assert!(state.forget_node_api_ca().unwrap());
        assert!(!state.node_api_ca().exists());
        assert!(!state.forget_node_api_ca().unwrap());
    }

    #[test]
    fn prepare_removes_the_previous_console_log() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        fs::write(state.console_log(), "old boot\n").unwrap();
        fs::write(state.pid_file(), "999999999\n").unwrap();
        state.prepare().unwrap();
        assert!(!state.console_log().exists());
        assert!(!state.pid_file().exists());
    }

    #[test]
    fn long_socket_paths_are_refused() {
        let long = PathBuf::from(format!("/tmp/{}", "x".repeat(120)));
        let err = StateDir::new(&long).prepare().unwrap_err();
        assert!(matches!(err, StateError::SocketPathTooLong(_)), "{err}");
    }

    #[test]
    fn liveness_needs_a_live_process_naming_the_socket() {
        let proc_root = tempfile::tempdir().unwrap();
        let write = |pid: &str, stat: &str, cmdline: &[u8]| {
            let dir = proc_root.path().join(pid);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("stat"), stat).unwrap();
            fs::write(dir.join("cmdline"), cmdline).unwrap();
        };
        let socket = Path::new("/s/qmp.sock");
        write("10", "10 (qemu sys) S 1 10", b"qemu\0path=/s/qmp.sock\0");
        write("11", "11 (qemu) Z 1 11", b"qemu\0path=/s/qmp.sock\0");
        write("12", "12 (bash) S 1 12", b"bash\0");
        assert!(is_our_qemu(proc_root.path(), 10, socket));
        assert!(!is_our_qemu(proc_root.path(), 11, socket));
        assert!(!is_our_qemu(proc_root.path(), 12, socket));
        assert!(!is_our_qemu(proc_root.path(), 13, socket));
    }
}
