//! Listening sockets and the connection limiter.
//!
//! - [`bind_tcp`]: a TCP listener (port 0: the kernel chooses; the caller reports the bound
//!   address).
//! - [`bind_unix`]: a unix-domain listener; a stale socket file left by a crashed process is
//!   removed first, and the socket gets mode 0660 (owner and group: the local MTA's group).
//! - [`ConnectionLimiter`]: at most `max_total` concurrent connections per service and at most
//!   `max_per_ip` from one client address. [`ConnectionLimiter::try_acquire`] returns a
//!   [`ConnectionGuard`] the session holds for its whole life; dropping it frees the slot.
//!   Over a limit the caller is told which one, so it can send its protocol's refusal
//!   (`* BYE Too many connections`, `421 4.7.0 ...`) before closing.
//!
//! What it is not: no accept loop (each service owns its own, so it can speak its protocol's
//! refusal), no rate limiting over time (login throttling lives with authentication).
//!
//! Invariants: the counters equal the number of live guards (decremented in `Drop`, so a
//! panicking or cancelled session frees its slot too); the per-IP table holds an entry only
//! for addresses with at least one live connection, so it cannot grow without bound.
//! [`bind_unix`] removes an existing path only if it is a socket, never a regular file.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Binds a TCP listener with `SO_REUSEADDR` (so a restart does not wait out TIME_WAIT).
pub async fn bind_tcp(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    // 1024: the kernel caps it at somaxconn anyway; enough for a burst of reconnecting clients.
    socket.listen(1024)
}

/// Binds a unix-domain listener at `path` with mode 0660, replacing a stale socket file.
/// Must be called from inside a tokio runtime.
pub fn bind_unix(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

/// Which limit refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    #[error("too many connections")]
    Total,
    #[error("too many connections from this address")]
    PerIp,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

#[derive(Debug)]
struct Inner {
    max_total: AtomicUsize,
    max_per_ip: AtomicUsize,
    counts: Mutex<Counts>,
}

/// Counts live connections of one service. Cheap to clone (shared counters).
#[derive(Debug, Clone)]
pub struct ConnectionLimiter {
    inner: Arc<Inner>,
}

/// One admitted connection; dropping it frees its slot.
#[derive(Debug)]
pub struct ConnectionGuard {
    inner: Arc<Inner>,
    ip: Option<IpAddr>,
}

fn lock(m: &Mutex<Counts>) -> std::sync::MutexGuard<'_, Counts> {
    // The critical sections cannot panic, but a poisoned lock must not take the service down.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ConnectionLimiter {
    pub fn new(max_total: usize, max_per_ip: usize) -> Self {
        ConnectionLimiter {
            inner: Arc::new(Inner {
                max_total: AtomicUsize::new(max_total),
                max_per_ip: AtomicUsize::new(max_per_ip),
                counts: Mutex::new(Counts::default()),
            }),
        }
    }

    /// New caps (a config reload), for connections admitted from now on: lowering one never
    /// closes a connection, it only refuses new ones until the count is below it.
    pub fn set_limits(&self, max_total: usize, max_per_ip: usize) {
        self.inner.max_total.store(max_total, Ordering::Relaxed);
        self.inner.max_per_ip.store(max_per_ip, Ordering::Relaxed);
    }

    /// From the config's `[limits]`.
    pub fn from_limits(limits: &hermes_core::config::Limits) -> Self {
        Self::new(limits.max_connections, limits.max_connections_per_ip)
    }

    /// Admits a connection from `ip` (`None`: a unix-socket peer, counted only in the total).
    pub fn try_acquire(&self, ip: Option<IpAddr>) -> Result<ConnectionGuard, LimitExceeded> {
        let ip = ip.map(canonical_ip);
        let mut c = lock(&self.inner.counts);
        if c.total >= self.inner.max_total.load(Ordering::Relaxed) {
            return Err(LimitExceeded::Total);
        }
        if let Some(ip) = ip {
            let n = c.per_ip.entry(ip).or_insert(0);
            if *n >= self.inner.max_per_ip.load(Ordering::Relaxed) {
                if *n == 0 {
                    c.per_ip.remove(&ip);
                }
                return Err(LimitExceeded::PerIp);
            }
            *n += 1;
        }
        c.total += 1;
        Ok(ConnectionGuard { inner: self.inner.clone(), ip })
    }

    /// Live connections in total.
    pub fn active(&self) -> usize {
        lock(&self.inner.counts).total
    }

    /// Live connections from `ip`.
    pub fn active_from(&self, ip: IpAddr) -> usize {
        lock(&self.inner.counts).per_ip.get(&canonical_ip(ip)).copied().unwrap_or(0)
    }
}

/// An IPv4-mapped IPv6 address counts as the IPv4 address (dual-stack listeners).
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut c = lock(&self.inner.counts);
        c.total = c.total.saturating_sub(1);
        if let Some(ip) = self.ip
            && let Some(n) = c.per_ip.get_mut(&ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.per_ip.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn per_ip_and_total_limits() {
        let l = ConnectionLimiter::new(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let g1 = l.try_acquire(Some(a)).unwrap();
        let g2 = l.try_acquire(Some(a)).unwrap();
        assert_eq!(l.try_acquire(Some(a)).unwrap_err(), LimitExceeded::PerIp);
        let g3 = l.try_acquire(Some(b)).unwrap();
        assert_eq!(l.try_acquire(None).unwrap_err(), LimitExceeded::Total);
        drop(g1);
        assert_eq!(l.active_from(a), 1);
        let _g4 = l.try_acquire(None).unwrap();
        drop((g2, g3));
        assert_eq!(l.active(), 1);
        assert_eq!(l.active_from(a), 0);
        assert!(lock(&l.inner.counts).per_ip.is_empty(), "table shrinks with the connections");
    }

    #[test]
    fn limits_change_for_new_connections_only() {
        let l = ConnectionLimiter::new(3, 2);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = l.try_acquire(Some(ip)).unwrap();
        let _b = l.try_acquire(Some("::ffff:192.0.2.1".parse().unwrap())).unwrap();
        assert_eq!(l.try_acquire(Some(ip)).unwrap_err(), LimitExceeded::PerIp);
        let _c = l.try_acquire(None).unwrap();
        assert_eq!(l.try_acquire(None).unwrap_err(), LimitExceeded::Total);
        l.set_limits(10, 3);
        let _d = l.try_acquire(Some(ip)).unwrap();
        l.set_limits(10, 1);
        drop(a);
        assert_eq!(l.try_acquire(Some(ip)).unwrap_err(), LimitExceeded::PerIp, "still 2 from it, cap 1");
        assert_eq!(l.active_from(ip), 2, "lowering a cap closes nothing");
    }

    #[test]
    fn mapped_ipv4_counts_as_ipv4() {
        let l = ConnectionLimiter::new(10, 1);
        let _g = l.try_acquire(Some("192.0.2.1".parse().unwrap())).unwrap();
        assert_eq!(l.try_acquire(Some("::ffff:192.0.2.1".parse().unwrap())).unwrap_err(), LimitExceeded::PerIp);
    }

    #[tokio::test]
    async fn unix_socket_replaces_stale_socket_but_not_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("run/x.sock");
        let l1 = bind_unix(&p).unwrap();
        drop(l1); // leaves the socket file behind, as a crash would
        let _l2 = bind_unix(&p).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        let f = dir.path().join("file");
        std::fs::write(&f, b"precious").unwrap();
        assert!(bind_unix(&f).is_err());
        assert_eq!(std::fs::read(&f).unwrap(), b"precious");
    }

    #[tokio::test]
    async fn tcp_port_zero_reports_real_port() {
        let l = bind_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
        assert_ne!(l.local_addr().unwrap().port(), 0);
    }
}
