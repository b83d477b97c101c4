//! Connection limits that a config reload can change: the total and per-address caps of one
//! service's listeners, checked at accept.
//!
//! What it is not: a rate limiter (failed-login delays live in `imap::auth`).
//!
//! Invariants: a [`Slot`] is counted from admission until dropped; lowering a limit never
//! closes a connection (it only refuses new ones until the count is below the new cap); an
//! IPv4-mapped IPv6 address counts as its IPv4 address.

use hermes_runtime::listen::LimitExceeded;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

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

/// Live connections of one service, under limits that may change. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Limiter {
    inner: Arc<Inner>,
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct Slot {
    inner: Arc<Inner>,
    ip: Option<IpAddr>,
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

impl Limiter {
    pub fn new(limits: &hermes_core::config::Limits) -> Limiter {
        Limiter {
            inner: Arc::new(Inner {
                max_total: AtomicUsize::new(limits.max_connections),
                max_per_ip: AtomicUsize::new(limits.max_connections_per_ip),
                counts: Mutex::new(Counts::default()),
            }),
        }
    }

    /// New caps, for connections admitted from now on.
    pub fn set_limits(&self, limits: &hermes_core::config::Limits) {
        self.inner.max_total.store(limits.max_connections, Ordering::Relaxed);
        self.inner.max_per_ip.store(limits.max_connections_per_ip, Ordering::Relaxed);
    }

    /// Admits a connection from `ip` (`None`: a unix-socket peer, counted only in the total).
    pub fn try_acquire(&self, ip: Option<IpAddr>) -> Result<Slot, LimitExceeded> {
        let ip = ip.map(canonical);
        let mut c = self.inner.counts.lock().unwrap_or_else(|p| p.into_inner());
        if c.total >= self.inner.max_total.load(Ordering::Relaxed) {
            return Err(LimitExceeded::Total);
        }
        if let Some(ip) = ip {
            let n = c.per_ip.get(&ip).copied().unwrap_or(0);
            if n >= self.inner.max_per_ip.load(Ordering::Relaxed) {
                return Err(LimitExceeded::PerIp);
            }
            c.per_ip.insert(ip, n + 1);
        }
        c.total += 1;
        Ok(Slot { inner: Arc::clone(&self.inner), ip })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.inner.counts.lock().unwrap_or_else(|p| p.into_inner());
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
    fn limits_change_for_new_connections() {
        let mut limits = hermes_core::config::Config::host_default().limits;
        limits.max_connections = 3;
        limits.max_connections_per_ip = 2;
        let l = Limiter::new(&limits);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = l.try_acquire(Some(ip)).unwrap();
        let _b = l.try_acquire(Some("::ffff:192.0.2.1".parse().unwrap())).unwrap();
        assert!(matches!(l.try_acquire(Some(ip)), Err(LimitExceeded::PerIp)));
        let _c = l.try_acquire(None).unwrap();
        assert!(matches!(l.try_acquire(None), Err(LimitExceeded::Total)));
        limits.max_connections = 10;
        limits.max_connections_per_ip = 3;
        l.set_limits(&limits);
        let _d = l.try_acquire(Some(ip)).unwrap();
        limits.max_connections_per_ip = 1;
        l.set_limits(&limits);
        drop(a);
        assert!(matches!(l.try_acquire(Some(ip)), Err(LimitExceeded::PerIp)), "still 2 from it, cap 1");
    }
}
