//! A minimal QMP client: just enough to press ctrl-alt-delete.
//!
//! QMP speaks one JSON object per line over the unix socket: a greeting, then a reply to
//! each command; asynchronous events may come in between and are skipped. Every read and
//! write has a timeout, so a wedged QEMU cannot hang the launcher.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The socket could not be connected.
    #[error("cannot connect to qmp socket {0}")]
    Connect(PathBuf, #[source] io::Error),
    /// Reading or writing the socket failed.
    #[error("qmp i/o on {0} failed")]
    Io(PathBuf, #[source] io::Error),
    /// QEMU closed the connection.
    #[error("qmp socket {0} closed while waiting for a reply to {1}")]
    Closed(PathBuf, String),
    /// QEMU sent something that is not JSON.
    #[error("qmp socket {0} sent a malformed message")]
    Malformed(PathBuf, #[source] serde_json::Error),
    /// QEMU refused a command.
    #[error("qmp command {command} failed: {error}")]
    Command {
        /// The command.
        command: String,
        /// QEMU's error object.
        error: String,
    },
}

/// A connected QMP session in command mode.
#[derive(Debug)]
pub struct Qmp {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connects, reads the greeting and enters command mode (`qmp_capabilities`).
    pub fn connect(path: &Path, timeout: Duration) -> Result<Self, QmpError> {
        let connect_error = |e| QmpError::Connect(path.to_owned(), e);
        let stream = UnixStream::connect(path).map_err(connect_error)?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(connect_error)?;
        stream
            .set_write_timeout(Some(timeout))
            .map_err(connect_error)?;
        let writer = stream.try_clone().map_err(connect_error)?;
        let mut qmp = Qmp {
            path: path.to_owned(),
            reader: BufReader::new(stream),
            writer,
        };
        qmp.read_message("greeting")?;
        qmp.execute("qmp_capabilities", json!({}))?;
        Ok(qmp)
    }

    /// Runs `command` and returns its `return` value.
    pub fn execute(&mut self, command: &str, arguments: Value) -> Result<Value, QmpError> {
        let mut request = json!({ "execute": command, "arguments": arguments }).to_string();
        request.push('\n');
        self.writer
            .write_all(request.as_bytes())
            .map_err(|e| QmpError::Io(self.path.clone(), e))?;
        loop {
            let mut reply = self.read_message(command)?;
            if let Some(value) = reply.get_mut("return") {
                return Ok(value.take());
            }
            if let Some(error) = reply.get("error") {
                return Err(QmpError::Command {
                    command: command.to_owned(),
                    error: error.to_string(),
                });
            }
            // Anything else is an event.
        }
    }

    /// From now on a guest reboot ends QEMU instead of resetting the machine
    /// (`set-action`, QEMU 6.0+): how a stop turns the agent's clean reboot into an exit.
    pub fn exit_on_reboot(&mut self) -> Result<(), QmpError> {
        self.execute("set-action", json!({ "reboot": "shutdown" }))?;
        Ok(())
    }

    /// Asks the guest to stop: reboots end QEMU, then ctrl-alt-delete, which the agent
    /// answers with a clean reboot (services stopped, disk unmounted).
    pub fn request_stop(&mut self) -> Result<(), QmpError> {
        self.exit_on_reboot()?;
        self.send_ctrl_alt_delete()
    }

    /// Presses ctrl-alt-delete on the guest's keyboard.
    pub fn send_ctrl_alt_delete(&mut self) -> Result<(), QmpError> {
        let keys: Vec<Value> = ["ctrl", "alt", "delete"]
            .iter()
            .map(|key| json!({ "type": "qcode", "data": key }))
            .collect();
        self.execute("send-key", json!({ "keys": keys }))?;
        Ok(())
    }

    fn read_message(&mut self, awaited: &str) -> Result<Value, QmpError> {
        let mut line = String::new();
        let read = self
            .reader
            .read_line(&mut line)
            .map_err(|e| QmpError::Io(self.path.clone(), e))?;
        if read == 0 {
            return Err(QmpError::Closed(self.path.clone(), awaited.to_owned()));
        }
        serde_json::from_str(&line).map_err(|e| QmpError::Malformed(self.path.clone(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::thread;

    /// A fake QEMU that greets, records requests and answers from a script.
    fn fake_qemu(path: &Path, replies: Vec<&'static str>) -> thread::JoinHandle<Vec<Value>> {
        let listener = UnixListener::bind(path).unwrap();
        thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut writer = stream.try_clone().unwrap();
            let mut reader = BufReader::new(stream);
            writer
                .write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n")
                .unwrap();
            let mut requests = Vec::new();
            for reply in replies {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                requests.push(serde_json::from_str(&line).unwrap());
                writer.write_all(reply.as_bytes()).unwrap();
            }
            requests
        })
    }

    #[test]
    fn ctrl_alt_delete_negotiates_then_sends_keys_skipping_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let server = fake_qemu(
            &path,
            vec![
                "{\"return\": {}}\n",
                "{\"event\": \"RESET\"}\n{\"return\": {}}\n",
            ],
        );
        let mut qmp = Qmp::connect(&path, Duration::from_secs(5)).unwrap();
        qmp.send_ctrl_alt_delete().unwrap();
        let requests = server.join().unwrap();
        assert_eq!(requests[0]["execute"], "qmp_capabilities");
        assert_eq!(requests[1]["execute"], "send-key");
        assert_eq!(requests[1]["arguments"]["keys"][2]["data"], "delete");
    }

    #[test]
    fn a_stop_makes_reboots_exit_before_pressing_the_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let ok = "{\"return\": {}}\n";
        let server = fake_qemu(&path, vec![ok, ok, ok]);
        let mut qmp = Qmp::connect(&path, Duration::from_secs(5)).unwrap();
        qmp.request_stop().unwrap();
        let requests = server.join().unwrap();
        assert_eq!(requests[1]["execute"], "set-action");
        assert_eq!(requests[1]["arguments"]["reboot"], "shutdown");
        assert_eq!(requests[2]["execute"], "send-key");
    }

    #[test]
    fn refused_commands_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let _server = fake_qemu(
            &path,
            vec![
                "{\"return\": {}}\n",
                "{\"error\": {\"class\": \"GenericError\", \"desc\": \"no\"}}\n",
            ],
        );
        let mut qmp = Qmp::connect(&path, Duration::from_secs(5)).unwrap();
        let err = qmp.send_ctrl_alt_delete().unwrap_err();
        assert!(
            err.to_string().starts_with("qmp command send-key failed"),
            "{err}"
        );
    }
}
