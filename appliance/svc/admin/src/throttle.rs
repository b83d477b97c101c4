//! Login throttling, per client address and per admin name.
//!
//! After [`FREE_FAILURES_PER_ACCOUNT`] failed logins for one name (or
//! [`FREE_FAILURES_PER_IP`] from one address), further attempts are refused without checking
//! the password for a lock-out period that starts at [`FIRST_LOCKOUT`] and doubles with each
//! further failure up to [`MAX_LOCKOUT`]. A success clears both counters. Failures are
//! forgotten [`FORGET_AFTER`] after the last one.
//!
//! What it is not: a permanent account lock (that would let anyone lock the admin out forever);
//! the doubling delay makes guessing hopeless while a real admin waits minutes at worst.
//!
//! Invariants: the table holds at most [`MAX_ENTRIES`] keys (the least recently failing are
//! dropped first), so an attacker rotating addresses or names cannot grow memory without
//! bound; IPv4-mapped IPv6 addresses count as their IPv4 address; IPv6 clients are counted
//! per /64 (one host usually owns a whole /64).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Typos happen; five wrong passwords in a row do not.
pub const FREE_FAILURES_PER_ACCOUNT: u32 = 5;
/// One address may try a few names (several admins behind one NAT) before it waits.
pub const FREE_FAILURES_PER_IP: u32 = 10;
pub const FIRST_LOCKOUT: Duration = Duration::from_secs(60);
pub const MAX_LOCKOUT: Duration = Duration::from_secs(60 * 60);
pub const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);
pub const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Ip(IpAddr),
    Account(String),
}

#[derive(Debug, Clone)]
struct Entry {
    failures: u32,
    last_failure: Instant,
    locked_until: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct Throttle {
    table: Mutex<HashMap<Key, Entry>>,
}

/// The address as counted: IPv4 (mapped or not), or the IPv6 /64.
fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

impl Throttle {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Some(wait)` if a login for `account` from `ip` must be refused now.
    pub fn check(&self, ip: IpAddr, account: &str, now: Instant) -> Option<Duration> {
        let t = self.lock();
        [Key::Ip(ip_key(ip)), Key::Account(account.to_ascii_lowercase())]
            .iter()
            .filter_map(|k| t.get(k)?.locked_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max()
    }

    /// Records a failed login.
    pub fn failure(&self, ip: IpAddr, account: &str, now: Instant) {
        let mut t = self.lock();
        t.retain(|_, e| now.duration_since(e.last_failure) < FORGET_AFTER);
        while t.len() + 2 > MAX_ENTRIES {
            let Some(oldest) = t.iter().min_by_key(|(_, e)| e.last_failure).map(|(k, _)| k.clone()) else { break };
            t.remove(&oldest);
        }
        for (k, free) in [
            (Key::Ip(ip_key(ip)), FREE_FAILURES_PER_IP),
            (Key::Account(account.to_ascii_lowercase()), FREE_FAILURES_PER_ACCOUNT),
        ] {
            let e = t.entry(k).or_insert(Entry { failures: 0, last_failure: now, locked_until: None });
            e.failures = e.failures.saturating_add(1);
            e.last_failure = now;
            if e.failures >= free {
                let doublings = (e.failures - free).min(16);
                let lock = FIRST_LOCKOUT.saturating_mul(1 << doublings).min(MAX_LOCKOUT);
                e.locked_until = Some(now + lock);
            }
        }
    }

    /// Records a successful login: both counters start over.
    pub fn success(&self, ip: IpAddr, account: &str) {
        let mut t = self.lock();
        t.remove(&Key::Ip(ip_key(ip)));
        t.remove(&Key::Account(account.to_ascii_lowercase()));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn account_locks_after_free_failures_and_doubles() {
        let th = Throttle::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES_PER_ACCOUNT - 1 {
            th.failure(ip, "root", t0);
            assert!(th.check(ip, "root", t0).is_none());
        }
        th.failure(ip, "root", t0);
        assert_eq!(th.check(ip, "root", t0), Some(FIRST_LOCKOUT));
        // Another address is refused for that account too, but may use other names.
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(th.check(other, "root", t0).is_some());
        assert!(th.check(other, "bob", t0).is_none());
        th.failure(ip, "root", t0);
        assert_eq!(th.check(ip, "root", t0), Some(FIRST_LOCKOUT * 2));
        assert!(th.check(ip, "root", t0 + FIRST_LOCKOUT * 2).is_none());
        th.success(ip, "root");
        assert!(th.check(ip, "root", t0).is_none());
    }

    #[test]
    fn ip_locks_across_names() {
        let th = Throttle::default();
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..FREE_FAILURES_PER_IP {
            th.failure(ip, &format!("user{i}"), t0);
        }
        let same_64: IpAddr = "2001:db8::2".parse().unwrap();
        assert!(th.check(same_64, "someone-else", t0).is_some());
    }

    #[test]
    fn table_is_bounded() {
        let th = Throttle::default();
        let t0 = Instant::now();
        for i in 0..(MAX_ENTRIES as u32 + 100) {
            th.failure(IpAddr::from(i.to_be_bytes()), "x", t0);
        }
        assert!(th.lock().len() <= MAX_ENTRIES);
    }
}
