//! Recipient callout verification for departmental routes, as Exim's `verify = recipient/callout`
//! and Postfix's `reject_unverified_recipient` do: at RCPT time, ask the departmental server
//! (EHLO, MAIL FROM:<>, RCPT TO:<addr>, QUIT) whether it would accept the recipient, so mail
//! for unknown users is refused at our door instead of bouncing later.
//!
//! What it is not: no verification of MX (internet) destinations — only configured routes,
//! whose servers we know; no sender verification.
//!
//! Invariants:
//! - Results are cached: accepted for [`POSITIVE_TTL`], refused (5xx) for [`NEGATIVE_TTL`];
//!   the cache holds at most [`MAX_CACHE`] entries (expired ones pruned first, then cleared).
//! - At most [`MAX_CONCURRENT`] callouts run at once; a callout that cannot get a slot within
//!   [`SLOT_WAIT`], or whose server is unreachable or answers 4xx, **accepts** the recipient
//!   (fail open): the message is queued and the route's own answer decides later, so a
//!   departmental outage never turns into refused mail.
//! - A callout never sends DATA: nothing is delivered by verifying.

use crate::client::Client;
use hermes_core::config::{Route, RouteTls};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Postfix's address_verify_positive_expire_time is 31 days; users come and go faster in a
/// university, so an hour.
pub const POSITIVE_TTL: Duration = Duration::from_secs(3600);
/// Postfix's negative refresh is 3 hours; 10 minutes lets a newly created user get mail soon.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(600);
pub const MAX_CACHE: usize = 100_000;
/// Parallel callouts: protects departmental servers from a dictionary attack through us.
pub const MAX_CONCURRENT: usize = 20;
pub const SLOT_WAIT: Duration = Duration::from_secs(5);
/// A whole callout (connect to QUIT); a slow server should not hold the client's RCPT long.
pub const CALLOUT_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// 5xx from the departmental server (its text kept for the log).
    Reject,
}

pub struct Callouts {
    cache: Mutex<HashMap<String, (Verdict, Instant)>>,
    slots: Semaphore,
    helo: Mutex<String>,
}

impl Callouts {
    pub fn new(helo: &str) -> Self {
        Callouts {
            cache: Mutex::new(HashMap::new()),
            slots: Semaphore::new(MAX_CONCURRENT),
            helo: Mutex::new(helo.to_string()),
        }
    }

    /// The name said in EHLO (after a reload changed `server.hostname`).
    pub fn set_helo(&self, helo: &str) {
        *self.helo.lock().unwrap_or_else(|e| e.into_inner()) = helo.to_string();
    }

    /// Forgets cached verdicts (the routes changed).
    pub fn clear(&self) {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn cached(&self, key: &str) -> Option<Verdict> {
        let c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        c.get(key).and_then(|(v, at)| {
            let ttl = if *v == Verdict::Accept { POSITIVE_TTL } else { NEGATIVE_TTL };
            (at.elapsed() < ttl).then_some(*v)
        })
    }

    fn store(&self, key: String, v: Verdict) {
        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if c.len() >= MAX_CACHE {
            c.retain(|_, (v, at)| at.elapsed() < if *v == Verdict::Accept { POSITIVE_TTL } else { NEGATIVE_TTL });
            if c.len() >= MAX_CACHE {
                c.clear();
            }
        }
        c.insert(key, (v, Instant::now()));
    }

    /// Verifies `address` at `route`.
    pub async fn verify(&self, route: &Route, address: &str) -> Verdict {
        let key = address.to_ascii_lowercase();
        if let Some(v) = self.cached(&key) {
            return v;
        }
        let Ok(Ok(_permit)) = tokio::time::timeout(SLOT_WAIT, self.slots.acquire()).await else {
            tracing::info!(rcpt = %address, "callout slots busy; accepting unverified");
            return Verdict::Accept;
        };
        let result = tokio::time::timeout(CALLOUT_TIMEOUT, self.ask(route, address)).await;
        match result {
            Ok(Some(v)) => {
                tracing::info!(rcpt = %address, verdict = ?v, "callout");
                self.store(key, v);
                v
            }
            _ => {
                tracing::info!(rcpt = %address, "callout inconclusive; accepting unverified");
                Verdict::Accept
            }
        }
    }

    /// `None`: no definite answer.
    async fn ask(&self, route: &Route, address: &str) -> Option<Verdict> {
        let helo = self.helo.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for (host, port) in &route.hosts {
            let Ok(tcp) = tokio::net::TcpStream::connect((host.as_str(), *port)).await else { continue };
            let mut c = Client::new(Box::new(tcp));
            if c.hello(&helo, false, true).await.is_err() {
                continue;
            }
            if route.tls != RouteTls::None && c.has("STARTTLS") {
                c = match c.starttls(host, &helo).await {
                    Ok(c) => c,
                    Err(_) => continue,
                };
            }
            let mail = c.command("MAIL FROM:<>").await.ok()?;
            if mail.code / 100 != 2 {
                c.quit().await;
                return None;
            }
            let rcpt = c.command(&format!("RCPT TO:<{address}>")).await.ok()?;
            let _ = c.command("RSET").await;
            c.quit().await;
            return match rcpt.code / 100 {
                2 => Some(Verdict::Accept),
                5 => Some(Verdict::Reject),
                _ => None,
            };
        }
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn cache_expiry_and_bound() {
        let c = Callouts::new("h");
        c.store("a@x".into(), Verdict::Reject);
        assert_eq!(c.cached("a@x"), Some(Verdict::Reject));
        c.cache.lock().unwrap().insert("b@x".into(), (Verdict::Reject, Instant::now() - NEGATIVE_TTL));
        assert_eq!(c.cached("b@x"), None, "negative entries expire");
        for i in 0..MAX_CACHE + 10 {
            c.store(format!("{i}@x"), Verdict::Accept);
        }
        assert!(c.cache.lock().unwrap().len() <= MAX_CACHE);
    }

    #[tokio::test]
    async fn unreachable_route_fails_open() {
        let c = Callouts::new("h");
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let route = Route {
            domain: "d.example".into(),
            hosts: vec![("127.0.0.1".into(), port)],
            tls: RouteTls::None,
            auth: None,
            verify_recipients: true,
        };
        assert_eq!(c.verify(&route, "u@d.example").await, Verdict::Accept);
    }
}
