//! The store service: IMAP (`imap`), LMTP (`lmtp`) and, later, POP3, over one [`hermes_store::Store`].
//!
//! CONTRACT between the modules of this crate (fixed; each module's owner fills in its body):
//! - [`run`] is the whole service: open the store, bind the listeners from the config, write
//!   `run/endpoints.d/store.json`, serve until SIGTERM/SIGINT, then stop accepting and let
//!   sessions finish (with a bound) before returning.
//! - `imap::serve(stream, peer, implicit_tls, ctx)` owns one IMAP connection from accept to close.
//! - `lmtp::serve(stream, peer, ctx)` owns one LMTP connection (TCP or unix socket).
//! - [`Context`] is everything a session needs, shared by all sessions of the process.
//! - [`deliver::deliver_command`] is `hermes deliver`: LMTP to the running service, or the
//!   store directly when none runs.
//!
//! What it is not: no protocol parsing (that is `hermes-proto`), no on-disk format (that is
//! `hermes-store`), no supervision (the supervisor restarts the process; it never daemonises).
//!
//! Invariants: the store is opened once per process (its lock makes a second opener fail);
//! every session watches [`Context::shutdown`] and ends promptly once it turns `true`.

pub mod control;
pub mod dedup;
pub mod deliver;
pub mod imap;
pub mod index;
pub mod lmtp;
pub mod pop3;
pub mod quota;
pub mod run;
pub mod sieve;

pub use run::{run, run_until};

use hermes_core::{config::Config, directory::Directory, paths::DataDir};
use hermes_runtime::listen::ConnectionLimiter;
use std::sync::{Arc, RwLock};

/// Shared by every session of the store process.
///
/// The config and the TLS acceptor can be replaced while the service runs (`reload` on the
/// control socket, SIGHUP: [`control`]): sessions read them through [`Context::config`] and
/// [`Context::tls`], which hand out the current value; a session that already holds one keeps
/// it (settings apply to what starts after the reload).
pub struct Context {
    config: RwLock<Arc<Config>>,
    pub data: DataDir,
    pub directory: Directory,
    pub store: hermes_store::Store,
    /// `None` only when no certificate could be loaded (then STARTTLS is not offered).
    tls: RwLock<Option<tokio_rustls::TlsAcceptor>>,
    /// Becomes `true` when the service shuts down: sessions say goodbye (`* BYE Server shutting
    /// down`, `421 4.3.2 ...`) and end. Clone it per session and `wait_for(|v| *v)` on it.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Cumulative counters since start (the control socket's `stats`).
    pub stats: control::Stats,
    /// LMTP duplicate suppression records (`XDEDUP`).
    pub dedup: dedup::DedupLog,
    /// Per-service connection caps (changed by a reload).
    pub limiters: Limiters,
    pub(crate) reload_lock: tokio::sync::Mutex<()>,
    /// Of the TLS files the current acceptor was loaded from ([`control::tls_fingerprint`]).
    pub(crate) tls_fingerprint: std::sync::Mutex<Option<u64>>,
}

/// The connection limiters of the store's listeners: each protocol has its own, so a flood of
/// IMAP clients cannot block mail delivery.
pub struct Limiters {
    pub imap: ConnectionLimiter,
    pub pop3: ConnectionLimiter,
    pub lmtp: ConnectionLimiter,
    pub managesieve: ConnectionLimiter,
}

impl Limiters {
    fn new(limits: &hermes_core::config::Limits) -> Limiters {
        Limiters {
            imap: ConnectionLimiter::from_limits(limits),
            pop3: ConnectionLimiter::from_limits(limits),
            lmtp: ConnectionLimiter::from_limits(limits),
            managesieve: ConnectionLimiter::from_limits(limits),
        }
    }

    pub(crate) fn set_limits(&self, limits: &hermes_core::config::Limits) {
        for l in [&self.imap, &self.pop3, &self.lmtp, &self.managesieve] {
            l.set_limits(limits.max_connections, limits.max_connections_per_ip);
        }
    }
}

impl Context {
    /// Builds the context; opens (and loads) the duplicate-suppression records under
    /// `DATA/store/dedup/`, and applies the config's store-wide settings to `store`.
    pub fn new(
        config: Config,
        data: DataDir,
        directory: Directory,
        store: hermes_store::Store,
        tls: Option<tokio_rustls::TlsAcceptor>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> std::io::Result<Context> {
        let dedup = dedup::DedupLog::open(&data.store_dir().join(dedup::DEDUP_DIR))?;
        store.set_quota_warning_percents(config.store.quota_warning_percents.clone());
        let tls_fingerprint = if tls.is_some() { control::tls_fingerprint(&data) } else { None };
        Ok(Context {
            limiters: Limiters::new(&config.limits),
            reload_lock: tokio::sync::Mutex::new(()),
            tls_fingerprint: std::sync::Mutex::new(tls_fingerprint),
            config: RwLock::new(Arc::new(config)),
            data,
            directory,
            store,
            tls: RwLock::new(tls),
            shutdown,
            stats: control::Stats::new(),
            dedup,
        })
    }

    /// The current configuration.
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.config.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The current TLS acceptor (`None`: no certificate).
    pub fn tls(&self) -> Option<tokio_rustls::TlsAcceptor> {
        self.tls.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn set_config(&self, config: Config) {
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
    }

    pub(crate) fn set_tls(&self, tls: Option<tokio_rustls::TlsAcceptor>) {
        *self.tls.write().unwrap_or_else(|p| p.into_inner()) = tls;
    }
}

pub type SharedContext = Arc<Context>;
