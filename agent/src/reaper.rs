//! The zombie reaper. As PID 1 the agent inherits every orphaned process (credentials(7),
//! "init reaps orphans"), and each stays a zombie until someone waits for it.
//!
//! The reaper owns `waitpid(-1, WNOHANG)`: on every SIGCHLD it collects all exited
//! children and dispatches each exit to whoever [`Reaper::watch`]ed that pid (the
//! supervisor, for the services it spawns); exits nobody claimed are orphans, logged and
//! kept in a short history. Because `waitpid(-1)` takes any child, nothing else in the
//! agent may wait for its children itself (no `Child::wait`): spawn, then `watch`, while
//! holding the reaper's lock, so the exit cannot be reaped before it is claimed.

use std::collections::{HashMap, VecDeque};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;
use tokio::sync::oneshot;

use crate::syscall::Syscall;

/// How many unclaimed exits are remembered.
pub const ORPHAN_HISTORY: usize = 64;

/// How a child ended (wait(2)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(i32),
    Signaled(Signal),
}

/// One reaped child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub pid: Pid,
    pub status: ExitStatus,
}

/// Whether an exit reached a watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Claimed,
    Orphan,
}

/// Dispatches reaped exits to registered watchers.
#[derive(Debug, Default)]
pub struct Reaper {
    watchers: HashMap<Pid, oneshot::Sender<ExitStatus>>,
    orphans: VecDeque<Exit>,
}

impl Reaper {
    /// Registers interest in `pid`'s exit. Call it before the reaper can run again
    /// after spawning `pid` (see the module docs).
    pub fn watch(&mut self, pid: Pid) -> oneshot::Receiver<ExitStatus> {
        let (sender, receiver) = oneshot::channel();
        self.watchers.insert(pid, sender);
        receiver
    }

    /// Hands `exit` to its watcher, or records it as an orphan.
    pub fn dispatch(&mut self, exit: Exit) -> Delivery {
        if let Some(sender) = self.watchers.remove(&exit.pid) {
            if sender.send(exit.status).is_ok() {
                return Delivery::Claimed;
            }
        }
        tracing::debug!("reaped orphan {} ({:?})", exit.pid, exit.status);
        if self.orphans.len() == ORPHAN_HISTORY {
            self.orphans.pop_front();
        }
        self.orphans.push_back(exit);
        Delivery::Orphan
    }

    /// The most recent unclaimed exits, oldest first.
    pub fn orphans(&self) -> impl Iterator<Item = &Exit> {
        self.orphans.iter()
    }

    /// Waits for every child that has exited, without blocking; returns how many.
    pub fn reap(&mut self, sys: &dyn Syscall) -> usize {
        let mut reaped = 0;
        loop {
            let status = match sys.wait_any() {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return reaped,
                Err(Errno::EINTR) => continue,
                Err(errno) => {
                    tracing::warn!("waitpid(-1): {errno}");
                    return reaped;
                }
                Ok(status) => status,
            };
            if let Some(exit) = exit_of(status) {
                self.dispatch(exit);
                reaped += 1;
            }
        }
    }
}

/// Exits in a wait status; stops and continues are not exits (and are not requested).
fn exit_of(status: WaitStatus) -> Option<Exit> {
    match status {
        WaitStatus::Exited(pid, code) => Some(Exit {
            pid,
            status: ExitStatus::Exited(code),
        }),
        WaitStatus::Signaled(pid, signal, _) => Some(Exit {
            pid,
            status: ExitStatus::Signaled(signal),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::fake::RecordingSyscall;

    fn pid(raw: i32) -> Pid {
        Pid::from_raw(raw)
    }

    #[test]
    fn watched_exits_reach_their_watcher_and_others_are_orphans() {
        let mut reaper = Reaper::default();
        let mut receiver = reaper.watch(pid(10));
        let exit = Exit {
            pid: pid(10),
            status: ExitStatus::Exited(3),
        };

        assert_eq!(reaper.dispatch(exit), Delivery::Claimed);
        assert_eq!(receiver.try_recv(), Ok(ExitStatus::Exited(3)));

        let orphan = Exit {
            pid: pid(10),
            status: ExitStatus::Exited(0),
        };
        assert_eq!(reaper.dispatch(orphan), Delivery::Orphan);
        assert_eq!(reaper.orphans().collect::<Vec<_>>(), [&orphan]);
    }

    #[test]
    fn a_dropped_watcher_leaves_an_orphan() {
        let mut reaper = Reaper::default();
        drop(reaper.watch(pid(5)));
        let exit = Exit {
            pid: pid(5),
            status: ExitStatus::Signaled(Signal::SIGKILL),
        };
        assert_eq!(reaper.dispatch(exit), Delivery::Orphan);
    }

    #[test]
    fn orphan_history_is_bounded() {
        let mut reaper = Reaper::default();
        for raw in 0..(ORPHAN_HISTORY as i32 + 5) {
            reaper.dispatch(Exit {
                pid: pid(raw + 2),
                status: ExitStatus::Exited(0),
            });
        }
        assert_eq!(reaper.orphans().count(), ORPHAN_HISTORY);
        assert_eq!(reaper.orphans().next().unwrap().pid, pid(7));
    }

    #[test]
    fn reap_collects_until_no_child_is_left() {
        let sys = RecordingSyscall::new();
        sys.queue_waits([
            Ok(WaitStatus::Exited(pid(20), 0)),
            Err(Errno::EINTR),
            Ok(WaitStatus::Stopped(pid(22), Signal::SIGSTOP)),
            Ok(WaitStatus::Signaled(pid(21), Signal::SIGTERM, false)),
            Ok(WaitStatus::StillAlive),
            Ok(WaitStatus::Exited(pid(23), 0)),
        ]);
        let mut reaper = Reaper::default();
        let mut watched = reaper.watch(pid(21));

        assert_eq!(reaper.reap(&sys), 2);
        assert_eq!(
            watched.try_recv(),
            Ok(ExitStatus::Signaled(Signal::SIGTERM))
        );
        assert_eq!(
            reaper.orphans().map(|e| e.pid).collect::<Vec<_>>(),
            [pid(20)]
        );
        // The queued exit after StillAlive waits for the next SIGCHLD.
        assert_eq!(reaper.reap(&sys), 1);
        assert_eq!(reaper.reap(&sys), 0);
    }
}
