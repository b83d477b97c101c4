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
//!   [`queue::Queue::enqueue`] returned (message, envelope, log and folder fsync'd); a
//!   recipient leaves the queue only after its final result is durable in the status log.
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
pub mod resolve;
pub mod run;
pub mod session;
pub mod srs;

pub use run::{run, run_until};

use hermes_core::{config::Config, directory::Directory, paths::DataDir};
use std::sync::Arc;

/// Shared by every session and the runner.
pub struct Context {
    pub config: Config,
    pub data: DataDir,
    pub directory: Directory,
    /// `None` when no certificate could be loaded (no STARTTLS, no port 465).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub queue: Arc<queue::Queue>,
    pub runner: Arc<deliver::Runner>,
    /// Sender rewriting for forwarded mail; reverses bounces to SRS addresses.
    pub srs: srs::Srs,
    /// Recipient verification against departmental routes.
    pub callouts: callout::Callouts,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

pub type SharedContext = Arc<Context>;

/// Unix seconds now.
pub fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

/// RFC 5322 date-time, local zone.
pub fn rfc2822_now() -> String {
    chrono::Local::now().to_rfc2822()
}
