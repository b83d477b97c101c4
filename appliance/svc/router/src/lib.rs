//! The router service: the SMTP hub (issue 4) — MX, submission and implicit-TLS submission
//! listeners, the durable queue, and the queue runner that delivers to the local store over
//! LMTP and to departmental servers over SMTP.
//!
//! Pipeline (maddy's shape): SMTP session ([`session`], over the sans-I/O
//! `hermes_proto::smtp::Server`) → RCPT checks and routing ([`resolve`]) → trace headers
//! ([`headers`]) → durable queue ([`queue`]) → runner ([`deliver`]) → LMTP/SMTP client
//! ([`client`]) → per-recipient results, DSNs ([`dsn`]). `hermes queue ...` talks to the
//! runner over `run/router.sock` ([`control`]).
//!
//! What it is not: no anti-spam (SPF/DKIM/DMARC are a later issue; see `docs/router.md`).
//!
//! Invariants:
//! - **Nothing acknowledged is lost**: a 250 after DATA/BDAT is sent only after
//!   [`queue::Queue::enqueue`] returned (message, envelope and folder fsync'd); a
//!   recipient leaves the queue only after its final result is durable in the status log, or
//!   (local delivery to a store that advertised XDEDUP) is held by the store under the queue id.
//! - Only the router process writes `DATA/queue` (the queue lock enforces it).
//! - Relay is allowed only to authenticated clients and configured `relay_networks`.

pub mod auth_limit;
pub mod callout;
pub mod client;
pub mod control;
pub mod deliver;
pub mod dsn;
pub mod headers;
pub mod mx;
pub mod queue;
pub mod reload;
pub mod resolve;
pub mod run;
pub mod session;
pub mod srs;

pub use run::{run, run_until};

use hermes_core::{config::Config, directory::Directory, paths::DataDir};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Shared by every session and the runner.
pub struct Context {
    pub data: DataDir,
    pub directory: Directory,
    /// The settings a reload can replace (config, TLS, SRS); read a snapshot per use.
    pub live: Arc<Live>,
    pub queue: Arc<queue::Queue>,
    pub runner: Arc<deliver::Runner>,
    /// Recipient verification against departmental routes.
    pub callouts: callout::Callouts,
    pub stats: Arc<Stats>,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

impl Context {
    pub fn config(&self) -> Arc<Config> {
        self.live.config()
    }
    /// `None` when no certificate could be loaded (no STARTTLS, no port 465).
    pub fn tls(&self) -> Option<tokio_rustls::TlsAcceptor> {
        self.live.tls()
    }
    /// Sender rewriting for forwarded mail; reverses bounces to SRS addresses.
    pub fn srs(&self) -> Arc<srs::Srs> {
        self.live.srs()
    }
}

pub type SharedContext = Arc<Context>;

/// What `{"op":"reload"}` (and SIGHUP) swaps: readers take an `Arc` snapshot, so a session or
/// delivery in progress keeps the settings it started with and the next one sees the new ones.
pub struct Live {
    config: RwLock<Arc<Config>>,
    tls: RwLock<Option<tokio_rustls::TlsAcceptor>>,
    srs: RwLock<Arc<srs::Srs>>,
}

fn read<T: Clone>(l: &RwLock<T>) -> T {
    l.read().unwrap_or_else(|e| e.into_inner()).clone()
}

fn write<T>(l: &RwLock<T>, v: T) {
    *l.write().unwrap_or_else(|e| e.into_inner()) = v;
}

impl Live {
    pub fn new(config: Config, tls: Option<tokio_rustls::TlsAcceptor>, srs: srs::Srs) -> Arc<Live> {
        Arc::new(Live { config: RwLock::new(Arc::new(config)), tls: RwLock::new(tls), srs: RwLock::new(Arc::new(srs)) })
    }
    pub fn config(&self) -> Arc<Config> {
        read(&self.config)
    }
    pub fn tls(&self) -> Option<tokio_rustls::TlsAcceptor> {
        read(&self.tls)
    }
    pub fn srs(&self) -> Arc<srs::Srs> {
        read(&self.srs)
    }
    pub fn set_config(&self, c: Config) {
        write(&self.config, Arc::new(c));
    }
    pub fn set_tls(&self, t: Option<tokio_rustls::TlsAcceptor>) {
        write(&self.tls, t);
    }
    pub fn set_srs(&self, s: srs::Srs) {
        write(&self.srs, Arc::new(s));
    }
}

/// Cumulative counters since the router started (`{"op":"stats"}`, the admin dashboard).
///
/// - `accepted`: messages queued (250 after DATA/BDAT);
/// - `rejected`: MAIL and RCPT commands the router refused, and messages it could not queue;
/// - `delivered` / `deferred` / `bounced`: recipient delivery results (deferred counts attempts);
/// - `auth_failed`: failed AUTH attempts (including refusals during a lockout).
#[derive(Debug)]
pub struct Stats {
    pub started_at: i64,
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub delivered: AtomicU64,
    pub deferred: AtomicU64,
    pub bounced: AtomicU64,
    pub auth_failed: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started_at: now_unix(),
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            deferred: AtomicU64::new(0),
            bounced: AtomicU64::new(0),
            auth_failed: AtomicU64::new(0),
        }
    }
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Unix seconds now.
pub fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

/// RFC 5322 date-time, local zone.
pub fn rfc2822_now() -> String {
    chrono::Local::now().to_rfc2822()
}
