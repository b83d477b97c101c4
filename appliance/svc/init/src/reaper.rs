//! Zombie reaping for PID 1: every child the kernel reparents to us, and our own children,
//! are collected with `waitpid(-1, WNOHANG)` on each SIGCHLD; exits of processes we started are
//! handed to whoever registered their pid.
//!
//! What it is not: tokio's process support, which waits for specific pids and would race with
//! reaping orphans. Init never uses `tokio::process`.
//!
//! Invariant: registration happens in the same synchronous step as the spawn ([`Reaper::spawn`]),
//! on the runtime's only thread, so an exit can never be reaped before its pid is registered
//! (std's spawn also waits for a child whose exec failed; that wait cannot race with ours).

use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::Mutex;
use tokio::sync::oneshot;

/// Registered children by pid.
#[derive(Default)]
pub struct Reaper {
    waiting: Mutex<HashMap<i32, oneshot::Sender<ExitStatus>>>,
}

/// `WaitStatus` → std's `ExitStatus` (a raw wait status).
pub fn exit_status(ws: &WaitStatus) -> Option<ExitStatus> {
    match ws {
        WaitStatus::Exited(_, code) => Some(ExitStatus::from_raw((code & 0xff) << 8)),
        WaitStatus::Signaled(_, sig, core) => Some(ExitStatus::from_raw(*sig as i32 | if *core { 0x80 } else { 0 })),
        _ => None,
    }
}

impl Reaper {
    /// Spawns `cmd` and registers its pid; the receiver yields its exit status.
    pub fn spawn(&self, cmd: &mut Command) -> std::io::Result<(Child, oneshot::Receiver<ExitStatus>)> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        let child = cmd.spawn()?;
        let (tx, rx) = oneshot::channel();
        waiting.insert(child.id() as i32, tx);
        Ok((child, rx))
    }

    /// Collects every exited child now; returns how many orphans (unregistered) were reaped.
    pub fn reap(&self) -> usize {
        let mut orphans = 0;
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return orphans,
                Ok(ws) => {
                    let (Some(pid), Some(status)) = (ws.pid(), exit_status(&ws)) else { continue };
                    let tx = self.waiting.lock().unwrap_or_else(|p| p.into_inner()).remove(&pid.as_raw());
                    match tx {
                        Some(tx) => {
                            let _ = tx.send(status);
                        }
                        None => orphans += 1,
                    }
                }
            }
        }
    }

    /// Reaps on every SIGCHLD (and every few seconds, in case one was coalesced away) forever.
    pub async fn run(self: std::sync::Arc<Self>) {
        use tokio::signal::unix::{SignalKind, signal};
        let mut sigchld = signal(SignalKind::child()).ok();
        loop {
            match &mut sigchld {
                Some(s) => {
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.recv()).await;
                }
                None => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
            }
            self.reap();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn statuses_convert() {
        let pid = nix::unistd::Pid::from_raw(5);
        assert_eq!(exit_status(&WaitStatus::Exited(pid, 3)).unwrap().code(), Some(3));
        let s = exit_status(&WaitStatus::Signaled(pid, nix::sys::signal::Signal::SIGKILL, false)).unwrap();
        assert_eq!(s.signal(), Some(9));
    }
}
