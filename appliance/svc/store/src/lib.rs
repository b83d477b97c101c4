//! The store service: IMAP (`imap`), LMTP (`lmtp`) and, later, POP3, over one [`hermes_store::Store`].
//!
//! CONTRACT between the modules of this crate (fixed; each module's owner fills in its body):
//! - [`run`] is the whole service: open the store, bind the listeners from the config, write
//!   `run/endpoints.d/store.json`, serve until SIGTERM/SIGINT, then stop accepting and let
//!   sessions finish (with a bound) before returning.
//! - `imap::serve(stream, peer, implicit_tls, ctx)` owns one IMAP connection from accept to close.
//! - `lmtp::serve(stream, peer, ctx)` owns one LMTP connection (TCP or unix socket).
//! - [`Context`] is everything a session needs, shared by all sessions of the process.

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
}

pub type SharedContext = Arc<Context>;
