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

pub mod deliver;
pub mod imap;
pub mod index;
pub mod pop3;
pub mod quota;
pub mod lmtp;
pub mod run;
pub mod sieve;

pub use run::{run, run_until};

use hermes_core::{config::Config, directory::Directory, paths::DataDir};
use std::sync::Arc;

/// Shared by every session of the store process.
pub struct Context {
    pub config: Config,
    pub data: DataDir,
    pub directory: Directory,
    pub store: hermes_store::Store,
    /// `None` only when no certificate could be loaded (then STARTTLS is not offered).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Becomes `true` when the service shuts down: sessions say goodbye (`* BYE Server shutting
    /// down`, `421 4.3.2 ...`) and end. Clone it per session and `wait_for(|v| *v)` on it.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

pub type SharedContext = Arc<Context>;
