//! Login policy for IMAP: the per-address failed-login delay, the per-user session limit, and
//! SASL PLAIN splitting (RFC 4616).
//!
//! What it is: process-wide bookkeeping shared by every IMAP session of this store process,
//! plus the pure splitting of a PLAIN response. What it is not: password checking — that is
//! [`hermes_core::directory::Directory::authenticate`], the only code that can mint an
//! `Authenticated` token — nor per-connection limits (the listener counts connections per IP).
//!
//! Invariants:
//! - The failure map is bounded: entries expire [`FAILURE_MEMORY`] after their last failure and
//!   are pruned whenever the map grows past a threshold, and the map never holds more than
//!   [`MAX_TRACKED_ADDRESSES`] addresses (the stalest are dropped first).
//! - The delay before answering a failed login from an address doubles per recent failure from
//!   that address, starting at `limits.auth_fail_delay_ms` and capped at
//!   `limits.max_auth_fail_delay_ms`. A success from the address clears its record.
//! - A [`SessionSlot`] holds one of the user's `max_sessions_per_user` slots for exactly as long
//!   as it lives (released on drop, so a panicking or cancelled session cannot leak a slot).

use hermes_core::config::Limits;
use hermes_core::directory::UserId;
use hermes_core::secret::Secret;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a failed login counts against its address: long enough to slow a guessing run,
/// short enough that a user who mistyped is not punished for the rest of the day.
pub const FAILURE_MEMORY: Duration = Duration::from_secs(15 * 60);
/// Upper bound of addresses remembered at once (about 64 bytes each: 8 MB at most), so a
/// distributed guessing run cannot grow the map without bound.
pub const MAX_TRACKED_ADDRESSES: usize = 131_072;
/// Failed authentication attempts tolerated in one session before `BYE`.
pub const MAX_FAILURES_PER_SESSION: u32 = 3;

#[derive(Debug, Clone, Copy)]
struct FailureRecord {
    failures: u32,
    last: Instant,
}

#[derive(Debug, Default)]
struct FailureMap {
    by_addr: HashMap<IpAddr, FailureRecord>,
}

static FAILURES: LazyLock<Mutex<FailureMap>> = LazyLock::new(|| Mutex::new(FailureMap::default()));

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means another session panicked while holding it; the map is still
    // consistent (every update is a single insert/remove), so keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Records a failed login from `addr`; returns how long to wait before answering.
pub fn record_failure(addr: IpAddr, limits: &Limits) -> Duration {
    let now = Instant::now();
    let mut map = lock(&FAILURES);
    if map.by_addr.len() >= MAX_TRACKED_ADDRESSES / 2 {
        map.by_addr.retain(|_, r| now.duration_since(r.last) < FAILURE_MEMORY);
        if map.by_addr.len() >= MAX_TRACKED_ADDRESSES {
            // Still full of live entries: drop the stalest half.
            let mut ages: Vec<Instant> = map.by_addr.values().map(|r| r.last).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            map.by_addr.retain(|_, r| r.last > cut);
        }
    }
    let rec = map.by_addr.entry(addr).or_insert(FailureRecord { failures: 0, last: now });
    if now.duration_since(rec.last) >= FAILURE_MEMORY {
        rec.failures = 0;
    }
    rec.failures = rec.failures.saturating_add(1);
    rec.last = now;
    delay_for(rec.failures, limits)
}

/// The delay for the `failures`-th recent failure: base × 2^(failures-1), capped.
pub fn delay_for(failures: u32, limits: &Limits) -> Duration {
    let shift = failures.saturating_sub(1).min(32);
    let ms = limits.auth_fail_delay_ms.saturating_mul(1u64 << shift).min(limits.max_auth_fail_delay_ms);
    Duration::from_millis(ms)
}

/// A login from `addr` succeeded: forget its failures.
pub fn record_success(addr: IpAddr) {
    lock(&FAILURES).by_addr.remove(&addr);
}

static SESSIONS: LazyLock<Mutex<HashMap<UserId, usize>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// One of a user's concurrent-session slots; released on drop.
#[derive(Debug)]
pub struct SessionSlot {
    user: UserId,
}

impl SessionSlot {
    /// Takes a slot for `user`, or `None` when the user already has `max` sessions.
    pub fn acquire(user: &UserId, max: usize) -> Option<SessionSlot> {
        let mut map = lock(&SESSIONS);
        let n = map.entry(user.clone()).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(SessionSlot { user: user.clone() })
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut map = lock(&SESSIONS);
        if let Some(n) = map.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.user);
            }
        }
    }
}

/// Why a SASL PLAIN response was refused before any password check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlainError {
    /// Not base64, not three NUL-separated fields, or not UTF-8.
    Malformed,
    /// An authorization identity other than the login itself (no proxy authorization).
    AuthzMismatch,
}

/// Splits a decoded SASL PLAIN response (`authzid NUL authcid NUL passwd`; the IMAP parser
/// already removed the base64) into the login and the password. An empty response is malformed.
pub fn decode_plain(raw: &[u8]) -> Result<(String, Secret<String>), PlainError> {
    let mut parts = raw.splitn(3, |&b| b == 0);
    let (Some(authz), Some(authc), Some(pass)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(PlainError::Malformed);
    };
    let authz = std::str::from_utf8(authz).map_err(|_| PlainError::Malformed)?;
    let authc = std::str::from_utf8(authc).map_err(|_| PlainError::Malformed)?;
    let pass = std::str::from_utf8(pass).map_err(|_| PlainError::Malformed)?;
    if authc.is_empty() || pass.contains('\0') {
        return Err(PlainError::Malformed);
    }
    if !authz.is_empty() && !authz.eq_ignore_ascii_case(authc) {
        return Err(PlainError::AuthzMismatch);
    }
    Ok((authc.to_string(), Secret::new(pass.to_string())))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;

    fn raw(s: &[u8]) -> Vec<u8> {
        s.to_vec()
    }

    #[test]
    fn plain_decodes_rfc4616_examples() {
        let (u, p) = decode_plain(&raw(b"\0tim\0tanstaaftanstaaf")).unwrap();
        assert_eq!(u, "tim");
        assert_eq!(p.expose(), "tanstaaftanstaaf");
        let (u, _) = decode_plain(&raw(b"Ursel\0Ursel\0secret")).unwrap();
        assert_eq!(u, "Ursel");
    }

    #[test]
    fn plain_refuses_garbage_and_proxy_authz() {
        assert_eq!(decode_plain(b"\xff\0a\0b").unwrap_err(), PlainError::Malformed);
        assert_eq!(decode_plain(&raw(b"only-one-field")).unwrap_err(), PlainError::Malformed);
        assert_eq!(decode_plain(&raw(b"\0\0pw")).unwrap_err(), PlainError::Malformed);
        assert_eq!(decode_plain(&raw(b"admin\0tim\0pw")).unwrap_err(), PlainError::AuthzMismatch);
        assert_eq!(decode_plain(b"").unwrap_err(), PlainError::Malformed);
    }

    #[test]
    fn delay_doubles_and_caps() {
        let mut l = hermes_core::config::Config::host_default().limits;
        l.auth_fail_delay_ms = 100;
        l.max_auth_fail_delay_ms = 1000;
        assert_eq!(delay_for(1, &l), Duration::from_millis(100));
        assert_eq!(delay_for(2, &l), Duration::from_millis(200));
        assert_eq!(delay_for(4, &l), Duration::from_millis(800));
        assert_eq!(delay_for(5, &l), Duration::from_millis(1000));
        assert_eq!(delay_for(u32::MAX, &l), Duration::from_millis(1000));
    }

    #[test]
    fn session_slots_are_released_on_drop() {
        let user = UserId::parse("0123456789abcdef0123456789abcdef").unwrap();
        let a = SessionSlot::acquire(&user, 2).unwrap();
        let b = SessionSlot::acquire(&user, 2).unwrap();
        assert!(SessionSlot::acquire(&user, 2).is_none());
        drop(a);
        let c = SessionSlot::acquire(&user, 2).unwrap();
        drop((b, c));
        assert!(lock(&SESSIONS).get(&user).is_none());
    }
}
