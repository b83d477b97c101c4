//! Failed-AUTH throttling for SMTP, per client address: a delay that doubles per recent
//! failure, and a lockout after [`LOCKOUT_FAILURES`] failures within [`FAILURE_MEMORY`]
//! (the pattern of the store's IMAP login policy).
//!
//! What it is not: password checking (that is `Directory::authenticate`) or per-session limits
//! (the codec closes a session after `max_auth_failures`).
//!
//! Invariants: the map is bounded ([`MAX_TRACKED_ADDRESSES`], stale entries pruned first);
//! a success from an address clears its record; a locked-out address gets 454 4.7.0 without
//! its password being checked, so guessing stops costing us argon2 work.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// How long a failure counts against its address.
pub const FAILURE_MEMORY: Duration = Duration::from_secs(15 * 60);
/// Failures within [`FAILURE_MEMORY`] before the address is locked out (until it ages out):
/// a user who mistypes a few times is not locked out, a guessing run is.
pub const LOCKOUT_FAILURES: u32 = 10;
/// Addresses remembered at once (about 64 bytes each).
pub const MAX_TRACKED_ADDRESSES: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last: Instant,
}

static FAILURES: LazyLock<Mutex<HashMap<IpAddr, Record>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

fn map() -> std::sync::MutexGuard<'static, HashMap<IpAddr, Record>> {
    FAILURES.lock().unwrap_or_else(|e| e.into_inner())
}

/// True when `ip` is locked out now.
pub fn locked_out(ip: IpAddr) -> bool {
    map().get(&ip).is_some_and(|r| r.failures >= LOCKOUT_FAILURES && r.last.elapsed() < FAILURE_MEMORY)
}

/// Records a failure; returns the delay before answering (base doubling per failure, capped).
pub fn record_failure(ip: IpAddr, base: Duration, cap: Duration) -> Duration {
    let now = Instant::now();
    let mut m = map();
    if m.len() >= MAX_TRACKED_ADDRESSES {
        m.retain(|_, r| now.duration_since(r.last) < FAILURE_MEMORY);
        if m.len() >= MAX_TRACKED_ADDRESSES {
            m.clear();
        }
    }
    let r = m.entry(ip).or_insert(Record { failures: 0, last: now });
    if now.duration_since(r.last) >= FAILURE_MEMORY {
        r.failures = 0;
    }
    r.failures = r.failures.saturating_add(1);
    r.last = now;
    let shift = r.failures.saturating_sub(1).min(16);
    base.saturating_mul(1 << shift).min(cap)
}

pub fn record_success(ip: IpAddr) {
    map().remove(&ip);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_and_lockout_follows() {
        let ip: IpAddr = "203.0.113.77".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let b = Duration::from_millis(100);
        let cap = Duration::from_millis(1000);
        assert_eq!(record_failure(ip, b, cap), b);
        assert_eq!(record_failure(ip, b, cap), b * 2);
        for _ in 0..20 {
            assert!(record_failure(ip, b, cap) <= cap);
        }
        assert!(locked_out(ip));
        record_success(ip);
        assert!(!locked_out(ip));
    }
}
