//! Admin sessions: server-side records keyed by a random id carried in a cookie.
//!
//! What it is not: persistent. Sessions live in the admin process's memory; a restart of the
//! admin service signs everyone out (acceptable for a local admin UI, and it means a stolen
//! session file cannot exist).
//!
//! Invariants:
//! - A session id is 256 random bits; the table is keyed by its SHA-256, so even a memory dump
//!   of the table does not yield a usable cookie. A new id is minted at every login (no
//!   fixation): ids are never accepted from a client unless they are in the table.
//! - A session expires [`IDLE_TIMEOUT`] after its last use and [`ABSOLUTE_TIMEOUT`] after the
//!   login, whichever comes first; an expired session is removed when seen.
//! - Each session has its own CSRF token (256 random bits), compared in constant time.
//! - A session carries at most one flash message (shown once, on the next page).
//! - At most [`MAX_SESSIONS`] sessions: the oldest is evicted first, so the table is bounded.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// OWASP Session Management: 15–30 minutes idle for an administrative interface.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// A working day plus margin: an admin signs in again at least once a day.
pub const ABSOLUTE_TIMEOUT: Duration = Duration::from_secs(12 * 60 * 60);
/// Concurrent sessions kept: a handful of admins with a few browsers each, with room to spare.
pub const MAX_SESSIONS: usize = 1000;

/// The session cookie. `__Host-` makes browsers refuse it unless Secure, Path=/ and no Domain.
pub const COOKIE_NAME: &str = "__Host-hermes_admin";

/// One signed-in admin.
#[derive(Debug, Clone)]
pub struct Session {
    pub admin: String,
    pub csrf: String,
    created: Instant,
    last_seen: Instant,
    flash: Option<Flash>,
}

/// A one-time message for the next page (after a POST redirects).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    pub ok: bool,
    pub text: String,
}

#[derive(Debug, Default)]
pub struct Sessions {
    table: Mutex<HashMap<[u8; 32], Session>>,
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a session for `admin`; returns (cookie value, the session). Any session whose id
    /// the browser presented before login (`previous`) is destroyed.
    pub fn create(&self, admin: &str, previous: Option<&str>, now: Instant) -> (String, Session) {
        let id = crate::admins::random_token();
        let session = Session {
            admin: admin.to_string(),
            csrf: crate::admins::random_token(),
            created: now,
            last_seen: now,
            flash: None,
        };
        let mut t = self.lock();
        if let Some(p) = previous {
            t.remove(&key(p));
        }
        t.retain(|_, s| !expired(s, now));
        while t.len() >= MAX_SESSIONS {
            let Some(oldest) = t.iter().min_by_key(|(_, s)| s.last_seen).map(|(k, _)| *k) else { break };
            t.remove(&oldest);
        }
        t.insert(key(&id), session.clone());
        (id, session)
    }

    /// The live session for cookie value `id`, refreshing its idle timer.
    pub fn get(&self, id: &str, now: Instant) -> Option<Session> {
        let mut t = self.lock();
        let k = key(id);
        let s = t.get_mut(&k)?;
        if expired(s, now) {
            t.remove(&k);
            return None;
        }
        s.last_seen = now;
        Some(s.clone())
    }

    /// Leaves a message for the session's next page.
    pub fn set_flash(&self, id: &str, ok: bool, text: impl Into<String>) {
        if let Some(s) = self.lock().get_mut(&key(id)) {
            s.flash = Some(Flash { ok, text: text.into() });
        }
    }

    /// Takes the session's pending message, if any.
    pub fn take_flash(&self, id: &str) -> Option<Flash> {
        self.lock().get_mut(&key(id)).and_then(|s| s.flash.take())
    }

    /// Ends a session (logout).
    pub fn destroy(&self, id: &str) {
        self.lock().remove(&key(id));
    }

    /// Ends every session of `admin` (password change).
    pub fn destroy_admin(&self, admin: &str) {
        self.lock().retain(|_, s| s.admin != admin);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn expired(s: &Session, now: Instant) -> bool {
    now.duration_since(s.last_seen) > IDLE_TIMEOUT || now.duration_since(s.created) > ABSOLUTE_TIMEOUT
}

/// The `Set-Cookie` value for a new session.
pub fn set_cookie(id: &str) -> String {
    format!("{COOKIE_NAME}={id}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}", ABSOLUTE_TIMEOUT.as_secs())
}

/// The `Set-Cookie` value that deletes the session cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE_NAME}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The session id from a `Cookie` header, if present and well-formed (43 base64url characters).
pub fn cookie_value(header: &str) -> Option<&str> {
    header.split(';').filter_map(|c| c.trim().split_once('=')).find_map(|(name, value)| {
        (name == COOKIE_NAME
            && value.len() == 43
            && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .then_some(value)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn idle_and_absolute_timeouts() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let (id, _) = s.create("root", None, t0);
        assert!(s.get(&id, t0 + Duration::from_secs(29 * 60)).is_some());
        // Kept alive by use every 29 minutes...
        let mut t = t0;
        while t < t0 + ABSOLUTE_TIMEOUT - Duration::from_secs(29 * 60) {
            t += Duration::from_secs(29 * 60);
            assert!(s.get(&id, t).is_some());
        }
        // ...but not past the absolute limit.
        assert!(s.get(&id, t0 + ABSOLUTE_TIMEOUT + Duration::from_secs(1)).is_none());
        let (id2, _) = s.create("root", None, t0);
        assert!(s.get(&id2, t0 + IDLE_TIMEOUT + Duration::from_secs(1)).is_none(), "idle");
    }

    #[test]
    fn login_replaces_the_presented_session() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let (old, _) = s.create("root", None, t0);
        let (new, _) = s.create("root", Some(&old), t0);
        assert_ne!(old, new);
        assert!(s.get(&old, t0).is_none());
        assert!(s.get(&new, t0).is_some());
    }

    #[test]
    fn flash_is_shown_once() {
        let s = Sessions::default();
        let (id, _) = s.create("root", None, Instant::now());
        s.set_flash(&id, true, "saved");
        assert_eq!(s.take_flash(&id), Some(Flash { ok: true, text: "saved".into() }));
        assert_eq!(s.take_flash(&id), None);
    }

    #[test]
    fn cookie_parsing() {
        let id = "a".repeat(43);
        assert_eq!(cookie_value(&format!("x=1; {COOKIE_NAME}={id}; y=2")), Some(id.as_str()));
        assert_eq!(cookie_value(&format!("{COOKIE_NAME}=short")), None);
        assert_eq!(cookie_value(&format!("{COOKIE_NAME}={}", "a;".repeat(20))), None);
        assert!(set_cookie(&id).contains("HttpOnly; SameSite=Strict"));
    }

    #[test]
    fn table_is_bounded() {
        let s = Sessions::default();
        let t0 = Instant::now();
        for _ in 0..MAX_SESSIONS + 10 {
            s.create("root", None, t0);
        }
        assert_eq!(s.len(), MAX_SESSIONS);
    }
}
