//! A booted node: QEMU plus its state directory, with deadline-bounded waits.
//!
//! Every wait takes a timeout and fails with an error naming what it awaited and the
//! console tail, never hangs. Waits read the console log from its start, so waiting for a
//! line that was already printed returns at once. A guest reboot ends QEMU, and a
//! thread of the launcher starts a fresh one on the same disks and host ports at once
//! ([`crate::relaunch`]); the console log goes on. A clean stop marks the node as
//! stopping (no relaunch) and presses ctrl-alt-delete over QMP (the agent reboots
//! cleanly, so QEMU ends); if QEMU has not ended by the deadline its process group is
//! killed. Dropping a [`Node`] kills QEMU unless it was [detached](Node::detach).
//! Model: cloud-hypervisor `test_infra` (`wait_vm_boot`).

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::command::{PortForward, APISERVER_PORT, DEBUG_PORT, NODE_API_PORT};
use crate::config::NodeConfig;
use crate::console::{self, ConsoleError, ConsoleReader, ExitInfo, ReadyInfo};
use crate::ports::{self, PortError};
use crate::process::{ProcessError, QemuProcess, SpawnMode, POLL_INTERVAL};
use crate::qmp::{Qmp, QmpError};
use crate::relaunch::{self, Launch, RelaunchError};
use crate::state::{NodeRecord, StateDir, StateError};

/// Console lines quoted in error messages.
pub const TAIL_LINES: usize = 40;
/// Timeout of each QMP read and write.
const QMP_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Preparing or updating the state dir failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// Host ports for forwards could not be chosen.
    #[error(transparent)]
    Ports(#[from] PortError),
    /// Starting, waiting for or killing QEMU failed.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// The awaited event did not happen in time.
    #[error("timed out after {timeout:?} waiting for {awaited}\n--- console tail ---\n{tail}")]
    Timeout {
        /// What was awaited.
        awaited: String,
        /// How long.
        timeout: Duration,
        /// The console tail.
        tail: String,
    },
    /// QEMU ended before the awaited event.
    #[error("qemu exited ({status}) while waiting for {awaited}\n--- console tail ---\n{tail}\n--- qemu stderr ---\n{stderr}")]
    Exited {
        /// What was awaited.
        awaited: String,
        /// QEMU's exit status.
        status: ExitStatus,
        /// The console tail.
        tail: String,
        /// The tail of QEMU's own stderr.
        stderr: String,
    },
    /// The guest printed a malformed protocol line.
    #[error("bad console line while waiting for {awaited}\n--- console tail ---\n{tail}")]
    Console {
        /// What was awaited.
        awaited: String,
        /// The parse error.
        #[source]
        source: ConsoleError,
        /// The console tail.
        tail: String,
    },
    /// The clean-stop request could not be delivered.
    #[error("cannot request a clean stop of qemu (pid {0})")]
    Qmp(u32, #[source] QmpError),
    /// The guest rebooted and its QEMU could not be started again.
    #[error("the guest rebooted, and its qemu cannot be started again")]
    Relaunch(#[source] RelaunchError),
}

/// How QEMU ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exited {
    /// QEMU's exit status.
    pub status: ExitStatus,
    /// The agent's `CAIRN_EXIT` report, if it printed one.
    pub info: Option<ExitInfo>,
}

/// How a stop went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// QEMU ended after ctrl-alt-delete (or had already ended).
    Clean(Exited),
    /// QEMU was killed.
    Forced {
        /// How it ended.
        exited: Exited,
        /// Why the clean stop did not work.
        why: String,
    },
}

/// A running node.
#[derive(Debug)]
pub struct Node {
    machine: Arc<Mutex<Machine>>,
    monitor: Option<Monitor>,
    state: StateDir,
    record: NodeRecord,
    detached: bool,
}

/// The node's current QEMU, started again when the guest reboots.
#[derive(Debug)]
struct Machine {
    process: QemuProcess,
    state: StateDir,
    mode: SpawnMode,
    /// Asked to stop, or killed: the next end of QEMU is the node's.
    stopping: bool,
}

impl Machine {
    /// QEMU's exit status once the node has ended; a QEMU that ended because the guest
    /// rebooted is started again instead.
    fn poll(&mut self) -> Result<Option<ExitStatus>, NodeError> {
        let Some(status) = self.process.try_wait()? else {
            return Ok(None);
        };
        if self.stopping
            || !relaunch::wanted(&self.state, Some(status)).map_err(NodeError::Relaunch)?
        {
            return Ok(Some(status));
        }
        self.process = relaunch::relaunch(&self.state, self.mode).map_err(NodeError::Relaunch)?;
        Ok(None)
    }
}

/// The thread that relaunches QEMU while nobody waits on the node.
#[derive(Debug)]
struct Monitor {
    done: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Monitor {
    fn start(machine: Weak<Mutex<Machine>>) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&done);
        let thread = thread::Builder::new()
            .name("qemu-relaunch".to_owned())
            .spawn(move || {
                while !flag.load(Ordering::SeqCst) {
                    let Some(machine) = machine.upgrade() else {
                        return;
                    };
                    let polled = lock(&machine).poll();
                    match polled {
                        Ok(None) => {}
                        Ok(Some(_)) => return,
                        Err(err) => {
                            // The next wait on the node polls again and reports it.
                            tracing::warn!(error = %error_chain(&err), "qemu relaunch");
                            return;
                        }
                    }
                    drop(machine);
                    thread::sleep(POLL_INTERVAL);
                }
            })
            .expect("cannot start the qemu relaunch thread");
        Monitor { done, thread }
    }

    fn stop(self) {
        self.done.store(true, Ordering::SeqCst);
        if self.thread.join().is_err() {
            tracing::warn!("the qemu relaunch thread panicked");
        }
    }
}

/// The machine, also after a thread panicked holding it (its state stays consistent:
/// every change is one assignment).
fn lock(machine: &Mutex<Machine>) -> MutexGuard<'_, Machine> {
    machine
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Node {
    /// Prepares the state dir, picks host ports, starts QEMU and records it. A node
    /// with a new data disk, or none, makes a new cluster CA: `dbg`'s pin of the old one
    /// ([`StateDir::node_api_ca`]) is removed.
    pub fn start(config: &NodeConfig) -> Result<Self, NodeError> {
        // Absolute, so that QEMU's command line names its QMP socket as every later
        // look finds it (a watcher, `stop` from another directory).
        let root = std::path::absolute(&config.state_dir)
            .map_err(|e| StateError::Create(config.state_dir.clone(), e))?;
        let state = StateDir::new(&root);
        state.prepare()?;
        ensure_data_disk(config, &state)?;
        let text = match (&config.raw_settings, &config.settings) {
            (Some(raw), _) => Some(raw.clone()),
            (None, Some(settings)) => Some(settings.to_toml()),
            (None, None) => None,
        };
        let node_config = match text {
            Some(text) => {
                let path = state.node_config();
                std::fs::write(&path, text).map_err(|e| StateError::Write(path.clone(), e))?;
                Some(path)
            }
            None => None,
        };
        let forwards = ports::resolve(&config.forward_requests())?;
        let qemu = config.qemu_command(&state, forwards.clone());
        Launch::first(qemu.clone())
            .write(&state)
            .map_err(NodeError::Relaunch)?;
        let process = QemuProcess::spawn(&qemu, &state.qemu_log(), config.mode)?;
        let record = new_record(process.pid(), config, &state, forwards, node_config);
        let machine = Arc::new(Mutex::new(Machine {
            process,
            state: state.clone(),
            mode: config.mode,
            stopping: false,
        }));
        let monitor = Some(Monitor::start(Arc::downgrade(&machine)));
        let node = Node {
            machine,
            monitor,
            state,
            record,
            detached: false,
        };
        node.state.write(&node.record)?;
        tracing::info!(pid = node.record.pid, accel = %config.accel, "qemu started");
        Ok(node)
    }

    /// What `node.json` says about this node.
    pub fn record(&self) -> &NodeRecord {
        &self.record
    }

    /// `http://127.0.0.1:PORT` reaching the guest's NodeDebugService, if forwarded.
    pub fn debug_endpoint(&self) -> Option<&str> {
        self.record.debug_endpoint.as_deref()
    }

    /// `https://127.0.0.1:PORT` reaching the guest's kube-apiserver, if forwarded.
    pub fn api_endpoint(&self) -> Option<&str> {
        self.record.api_endpoint.as_deref()
    }

    /// `https://127.0.0.1:PORT` reaching the guest's node API (the owner's), if
    /// forwarded.
    pub fn node_api_endpoint(&self) -> Option<&str> {
        self.record.node_api_endpoint.as_deref()
    }

    /// The state directory.
    pub fn state(&self) -> &StateDir {
        &self.state
    }

    /// The serial console capture.
    pub fn console_log(&self) -> &Path {
        &self.record.console_log
    }

    /// The last `lines` console lines.
    pub fn console_tail(&self, lines: usize) -> String {
        console::tail(self.console_log(), lines)
    }

    /// QEMU's exit status if the node has ended (a guest reboot does not end it: QEMU
    /// is started again).
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, NodeError> {
        let mut machine = lock(&self.machine);
        let polled = machine.poll();
        self.record.pid = machine.process.pid();
        polled
    }

    /// The pid of the node's current QEMU (a new one after each guest reboot).
    pub fn pid(&self) -> u32 {
        lock(&self.machine).process.pid()
    }

    /// Waits for a console line matching `predicate` and returns it.
    pub fn wait_for_line(
        &mut self,
        awaited: &str,
        mut predicate: impl FnMut(&str) -> bool,
        timeout: Duration,
    ) -> Result<String, NodeError> {
        self.wait_for(
            awaited,
            |line| predicate(line).then(|| Ok(line.to_owned())),
            timeout,
        )
    }

    /// Waits for `CAIRN_READY` and records the node ID in `node.json`.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<ReadyInfo, NodeError> {
        self.wait_boot_ready(1, timeout)
    }

    /// Waits for the `boot`-th `CAIRN_READY` line of this node (1 = the first boot;
    /// each guest reboot prints another one in the same console log).
    pub fn wait_boot_ready(
        &mut self,
        boot: usize,
        timeout: Duration,
    ) -> Result<ReadyInfo, NodeError> {
        let awaited = format!("CAIRN_READY of boot {boot}");
        let mut seen = 0;
        let ready = self.wait_for(
            &awaited,
            |line| {
                let parsed = console::parse_ready(line)?;
                seen += 1;
                (seen == boot).then_some(parsed)
            },
            timeout,
        )?;
        self.record_ready(&ready)?;
        Ok(ready)
    }

    /// Presses ctrl-alt-delete: the agent reboots the node cleanly, and a fresh QEMU
    /// boots it again (unless the node is stopping).
    pub fn press_ctrl_alt_delete(&self) -> Result<(), NodeError> {
        let pid = self.pid();
        Qmp::connect(&self.record.qmp_socket, QMP_TIMEOUT)
            .and_then(|mut qmp| qmp.send_ctrl_alt_delete())
            .map_err(|e| NodeError::Qmp(pid, e))
    }

    /// Writes the node ID and the APIs it serves from `ready` into `node.json`.
    pub fn record_ready(&mut self, ready: &ReadyInfo) -> Result<(), NodeError> {
        self.record.node_id = Some(ready.node_id.clone());
        self.record.apis = ready.apis.clone();
        Ok(self.state.write(&self.record)?)
    }

    /// Waits for the node to end (QEMU exits and is not started again) and returns its
    /// status with the agent's `CAIRN_EXIT` report.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Exited, NodeError> {
        let awaited = "qemu to exit";
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.try_wait()? {
                break status;
            }
            if Instant::now() >= deadline {
                return Err(self.timeout(awaited, timeout));
            }
            thread::sleep(POLL_INTERVAL);
        };
        let info = self.last_exit_info().map_err(|source| NodeError::Console {
            awaited: awaited.to_owned(),
            source,
            tail: self.console_tail(TAIL_LINES),
        })?;
        Ok(Exited { status, info })
    }

    /// Marks the node as stopping (no relaunch), then over QMP: guest reboots end QEMU,
    /// and ctrl-alt-delete (the agent reboots cleanly, so QEMU exits). Does not wait for
    /// the result.
    pub fn request_stop(&self) -> Result<(), NodeError> {
        let pid = {
            let mut machine = lock(&self.machine);
            machine.stopping = true;
            machine.process.pid()
        };
        let mut qmp = Qmp::connect(&self.record.qmp_socket, QMP_TIMEOUT)
            .map_err(|e| NodeError::Qmp(pid, e))?;
        qmp.request_stop().map_err(|e| NodeError::Qmp(pid, e))
    }

    /// Clean stop with a deadline, then SIGKILL.
    pub fn stop(&mut self, timeout: Duration) -> Result<Stop, NodeError> {
        if self.try_wait()?.is_some() {
            return Ok(Stop::Clean(self.wait_exit(Duration::ZERO)?));
        }
        let why = match self.request_stop() {
            Ok(()) => match self.wait_exit(timeout) {
                Ok(exited) => return Ok(Stop::Clean(exited)),
                Err(NodeError::Timeout { .. }) => {
                    format!("qemu still running {timeout:?} after ctrl-alt-delete")
                }
                Err(err) => return Err(err),
            },
            Err(err) => error_chain(&err),
        };
        self.kill()?;
        Ok(Stop::Forced {
            exited: self.wait_exit(Duration::ZERO)?,
            why,
        })
    }

    /// SIGKILLs QEMU's process group; the node ends (no relaunch).
    pub fn kill(&mut self) -> Result<ExitStatus, NodeError> {
        let mut machine = lock(&self.machine);
        machine.stopping = true;
        Ok(machine.process.kill()?)
    }

    /// Lets QEMU outlive this handle (and this process); its state files stay. From now
    /// on a guest reboot ends QEMU unless a watcher process ([`crate::watch`]) starts it
    /// again.
    pub fn detach(mut self) -> NodeRecord {
        if let Some(monitor) = self.monitor.take() {
            monitor.stop();
        }
        let mut machine = lock(&self.machine);
        machine.process.disarm();
        self.record.pid = machine.process.pid();
        drop(machine);
        self.detached = true;
        self.record.clone()
    }

    fn wait_for<T>(
        &mut self,
        awaited: &str,
        mut parse: impl FnMut(&str) -> Option<Result<T, ConsoleError>>,
        timeout: Duration,
    ) -> Result<T, NodeError> {
        let deadline = Instant::now() + timeout;
        let mut reader = ConsoleReader::new(self.console_log());
        loop {
            // Check for exit before reading, so the last read sees everything QEMU wrote.
            let status = self.try_wait()?;
            let mut lines = reader
                .new_lines()
                .map_err(|e| self.console_error(awaited, e))?;
            if status.is_some() {
                lines.extend(reader.take_partial());
            }
            for line in &lines {
                if let Some(found) = parse(line) {
                    return found.map_err(|e| self.console_error(awaited, e));
                }
            }
            if let Some(status) = status {
                return Err(self.exited(awaited, status));
            }
            if Instant::now() >= deadline {
                return Err(self.timeout(awaited, timeout));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    fn last_exit_info(&self) -> Result<Option<ExitInfo>, ConsoleError> {
        let mut reader = ConsoleReader::new(self.console_log());
        let mut lines = reader.new_lines()?;
        lines.extend(reader.take_partial());
        lines
            .iter()
            .rev()
            .find_map(|line| console::parse_exit(line))
            .transpose()
    }

    fn timeout(&self, awaited: &str, timeout: Duration) -> NodeError {
        let tail = self.console_tail(TAIL_LINES);
        NodeError::Timeout {
            awaited: awaited.to_owned(),
            timeout,
            tail,
        }
    }

    fn exited(&self, awaited: &str, status: ExitStatus) -> NodeError {
        NodeError::Exited {
            awaited: awaited.to_owned(),
            status,
            tail: self.console_tail(TAIL_LINES),
            stderr: console::tail(&self.state.qemu_log(), 10),
        }
    }

    fn console_error(&self, awaited: &str, source: ConsoleError) -> NodeError {
        let tail = self.console_tail(TAIL_LINES);
        NodeError::Console {
            awaited: awaited.to_owned(),
            source,
            tail,
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(monitor) = self.monitor.take() {
            monitor.stop();
        }
        if !self.detached {
            // QemuProcess's own Drop kills QEMU right after this.
            if let Err(err) = self.state.clear() {
                tracing::warn!(error = %err, "cannot clear state dir");
            }
        }
    }
}

/// Creates the data disk if missing. A new data disk, or none (an ephemeral node), means
/// a new cluster CA: `dbg`'s pin of the old one ([`StateDir::node_api_ca`]) goes.
fn ensure_data_disk(config: &NodeConfig, state: &StateDir) -> Result<(), StateError> {
    let new_cluster_ca = match &config.data_disk {
        Some(data) => {
            let created = data
                .ensure()
                .map_err(|e| StateError::Create(data.path.clone(), e))?;
            tracing::debug!(path = %data.path.display(), created, "data disk");
            created
        }
        None => true,
    };
    if new_cluster_ca && state.forget_node_api_ca()? {
        tracing::info!(
            path = %state.node_api_ca().display(),
            "new node state: removed the node API's pinned cluster CA"
        );
    }
    Ok(())
}

/// The record of a just-started QEMU, with the endpoints its forwards reach.
fn new_record(
    pid: u32,
    config: &NodeConfig,
    state: &StateDir,
    forwards: Vec<PortForward>,
    node_config: Option<PathBuf>,
) -> NodeRecord {
    NodeRecord {
        pid,
        accel: config.accel,
        debug_endpoint: NodeRecord::endpoint_for(&forwards, DEBUG_PORT),
        api_endpoint: NodeRecord::tls_endpoint_for(&forwards, APISERVER_PORT),
        node_api_endpoint: NodeRecord::tls_endpoint_for(&forwards, NODE_API_PORT),
        forwards,
        console_log: state.console_log(),
        qmp_socket: state.qmp_socket(),
        node_id: None,
        node_config,
        apis: None,
    }
}

/// `err` and all its causes on one line, for reasons stored as text; here for the boot
/// tests' and the bench's `use` lines.
pub use cairn_api::error_chain;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Accel;
    use crate::config::DataDisk;
    use crate::image::Image;
    use crate::ports::ForwardRequest;

    fn config(state_dir: &Path) -> NodeConfig {
        let image = Image {
            dir: "/img".into(),
            kernel: "/img/vmlinuz".into(),
            initrd: "/img/initramfs.img".into(),
            cmdline: "console=ttyS0".into(),
        };
        NodeConfig::new(image, Accel::Tcg, state_dir)
    }

    #[test]
    fn the_record_names_each_forwarded_api() {
        let state = StateDir::new(Path::new("/state"));
        let config = config(state.root());
        let forwards: Vec<PortForward> = (config.forward_requests().iter())
            .zip(40000..)
            .map(|(r, host): (&ForwardRequest, u16)| PortForward {
                host,
                guest: r.guest,
            })
            .collect();
        let host = |guest| forwards.iter().find(|f| f.guest == guest).unwrap().host;
        let record = new_record(7, &config, &state, forwards.clone(), None);
        assert_eq!(
            record.node_api_endpoint,
            Some(format!("https://127.0.0.1:{}", host(NODE_API_PORT)))
        );
        assert_eq!(
            record.api_endpoint,
            Some(format!("https://127.0.0.1:{}", host(APISERVER_PORT)))
        );
        assert_eq!(
            record.debug_endpoint,
            Some(format!("http://127.0.0.1:{}", host(DEBUG_PORT)))
        );
        let record = new_record(7, &config, &state, Vec::new(), None);
        assert_eq!(record.node_api_endpoint, None);
    }

    #[test]
    fn only_new_node_state_drops_the_node_api_pin() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let mut config = config(dir.path());
        let pin = |text: &str| std::fs::write(state.node_api_ca(), text).unwrap();

        pin("old cluster CA");
        ensure_data_disk(&config, &state).unwrap();
        assert!(dir.path().join(DataDisk::FILE_NAME).exists());
        assert!(!state.node_api_ca().exists(), "a new data disk, a new CA");

        pin("this disk's cluster CA");
        ensure_data_disk(&config, &state).unwrap();
        let kept = std::fs::read_to_string(state.node_api_ca()).unwrap();
        assert_eq!(kept, "this disk's cluster CA", "same disk, same CA");

        config.data_disk = None;
        ensure_data_disk(&config, &state).unwrap();
        assert!(!state.node_api_ca().exists(), "an ephemeral node, a new CA");
    }
}
