//! Graceful shutdown: SIGTERM/SIGINT become one broadcast that accept loops and sessions watch,
//! and a bounded wait for the sessions still running.
//!
//! The pattern (mini-redis `Shutdown`): the service owns a [`Shutdown`]; every accept loop and
//! session holds a [`tokio::sync::watch::Receiver<bool>`] from [`Shutdown::subscribe`] and
//! selects on `changed()`; each session also holds a [`SessionToken`] from a
//! [`SessionTracker`], and [`SessionTracker::drain`] waits until every token is dropped or the
//! timeout passes.
//!
//! What it is not: no reload (SIGHUP) handling yet, no process supervision; it never exits the
//! process itself — the service's `run` returns and `main` exits.
//!
//! Invariant: once triggered the signal stays triggered (`true`), so a session subscribing
//! late still sees it; `drain` never waits longer than its timeout.

use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// The service-wide shutdown broadcast.
#[derive(Debug)]
pub struct Shutdown {
    tx: watch::Sender<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        Shutdown { tx: watch::Sender::new(false) }
    }
    /// A receiver whose value becomes `true` when shutdown starts.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }
    /// Starts shutdown (idempotent).
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }
    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }
}

/// Resolves when `rx` says shutdown has started (or its sender is gone, which means the same).
pub async fn triggered(rx: &mut watch::Receiver<bool>) {
    // `wait_for` returns Err only when the sender is dropped: the service is going away.
    let _ = rx.wait_for(|v| *v).await;
}

/// SIGTERM and SIGINT, registered when created (so a failure shows at start-up, and a signal
/// arriving before anyone waits is not lost).
#[derive(Debug)]
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Registers the handlers. Must be called inside a tokio runtime.
    pub fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
    }

    /// Waits for the next SIGTERM or SIGINT and returns its name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Waits for SIGTERM or SIGINT and returns the signal's name.
pub async fn wait_for_signal() -> std::io::Result<&'static str> {
    Ok(Signals::new()?.recv().await)
}

/// Counts running sessions so shutdown can wait for them.
#[derive(Debug)]
pub struct SessionTracker {
    tx: Option<mpsc::Sender<()>>,
    rx: mpsc::Receiver<()>,
}

/// Held by one session; dropping it tells the tracker the session ended. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SessionToken {
    _tx: mpsc::Sender<()>,
}

impl Default for SessionTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl SessionTracker {
    pub fn new() -> Self {
        let (tx, rx) = mpsc::channel(1);
        SessionTracker { tx: Some(tx), rx }
    }

    /// A token for a new session. After [`SessionTracker::drain`] started, tokens are still
    /// handed out (a connection accepted in the same instant) and are waited for too.
    pub fn token(&self) -> SessionToken {
        match &self.tx {
            Some(tx) => SessionToken { _tx: tx.clone() },
            // Unreachable in practice: `drain` takes `self` by value.
            None => SessionToken { _tx: mpsc::channel(1).0 },
        }
    }

    /// Waits until every token is dropped, at most `timeout`. Returns whether all sessions ended.
    pub async fn drain(mut self, timeout: Duration) -> bool {
        self.tx = None;
        // No sender ever sends: `recv` returns `None` exactly when the last token is dropped.
        tokio::time::timeout(timeout, self.rx.recv()).await.is_ok()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[tokio::test]
    async fn late_subscribers_see_the_signal() {
        let s = Shutdown::new();
        s.trigger();
        let mut rx = s.subscribe();
        triggered(&mut rx).await;
        assert!(s.is_triggered());
    }

    #[tokio::test(start_paused = true)]
    async fn drain_waits_for_sessions_with_a_bound() {
        let s = Shutdown::new();
        let tracker = SessionTracker::new();
        let mut rx = s.subscribe();
        let token = tracker.token();
        tokio::spawn(async move {
            triggered(&mut rx).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            drop(token);
        });
        s.trigger();
        assert!(tracker.drain(Duration::from_secs(5)).await);

        let tracker = SessionTracker::new();
        let stuck = tracker.token();
        assert!(!tracker.drain(Duration::from_secs(5)).await);
        drop(stuck);
    }
}
