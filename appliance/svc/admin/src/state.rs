//! What every request handler shares: the data folder, the config, the directory, the admin
//! store, sessions, the login throttle, the audit log and the account and alias indexes.
//!
//! Invariant: built once at start ([`AppState::open`]); everything mutable inside is behind its
//! own lock, so handlers share one `Arc<AppState>`.

use crate::admins::AdminStore;
use crate::audit::AuditLog;
use crate::index::{AccountIndex, AliasIndex};
use crate::sessions::Sessions;
use crate::throttle::Throttle;
use anyhow::Context as _;
use hermes_core::config::Config;
use hermes_core::directory::Directory;
use hermes_core::paths::DataDir;

#[derive(Debug)]
pub struct AppState {
    pub data: DataDir,
    pub config: Config,
    pub directory: Directory,
    pub admins: AdminStore,
    pub sessions: Sessions,
    pub throttle: Throttle,
    pub audit: AuditLog,
    pub index: AccountIndex,
    /// The alias list the Aliases page and API page and search (writes go to the directory).
    pub alias_index: AliasIndex,
    /// Unix seconds when the service started.
    pub started_at: i64,
    /// Serialises config applies and rollbacks (read current, save history, replace).
    pub config_write: std::sync::Mutex<()>,
    /// What the services said when asked to reload each version applied since this process
    /// started (newest last, at most [`MAX_RELOADS_KEPT`]); the Config page shows it beside
    /// the version. The audit log keeps it for good (`config.reload`).
    pub reloads: std::sync::Mutex<std::collections::VecDeque<(String, Vec<crate::control::ReloadOutcome>)>>,
    /// The admin UI's own TLS acceptor; replaced when a certificate is installed (new
    /// connections use the new one, open ones keep theirs).
    pub tls: SwappableAcceptor,
    /// The dashboard's rate samples (filled every 10 s by [`crate::rates::sampler`]).
    pub rates: crate::rates::Rates,
}

/// The admin UI's TLS acceptor behind a lock (Debug without the key material).
pub struct SwappableAcceptor(pub std::sync::RwLock<Option<tokio_rustls::TlsAcceptor>>);

impl std::fmt::Debug for SwappableAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SwappableAcceptor")
    }
}

/// Reload results kept in memory.
pub const MAX_RELOADS_KEPT: usize = 100;

impl AppState {
    /// Remembers a version's reload results.
    pub fn remember_reload(&self, version: &str, outcomes: &[crate::control::ReloadOutcome]) {
        let mut r = self.reloads.lock().unwrap_or_else(|p| p.into_inner());
        r.retain(|(v, _)| v != version);
        if r.len() >= MAX_RELOADS_KEPT {
            r.pop_front();
        }
        r.push_back((version.to_string(), outcomes.to_vec()));
    }
    pub fn acceptor(&self) -> Option<tokio_rustls::TlsAcceptor> {
        self.tls.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
    pub fn set_acceptor(&self, a: tokio_rustls::TlsAcceptor) {
        *self.tls.0.write().unwrap_or_else(|p| p.into_inner()) = Some(a);
    }
    /// The reload results of `version`, if it was applied since this process started.
    pub fn reload_of(&self, version: &str) -> Option<Vec<crate::control::ReloadOutcome>> {
        let r = self.reloads.lock().unwrap_or_else(|p| p.into_inner());
        r.iter().rev().find(|(v, _)| v == version).map(|(_, o)| o.clone())
    }
}

impl AppState {
    /// Opens the directory and `DATA/admin/` (creating them if missing).
    pub fn open(data: DataDir, config: Config) -> anyhow::Result<AppState> {
        let directory = Directory::open(&data).context("opening the directory")?;
        let admins = AdminStore::open(&data).context("opening DATA/admin")?;
        let audit = AuditLog::new(admins.root().join("audit.log"));
        Ok(AppState {
            index: AccountIndex::new(directory.clone()),
            alias_index: AliasIndex::new(directory.clone()),
            directory,
            admins,
            sessions: Sessions::default(),
            throttle: Throttle::default(),
            audit,
            data,
            config,
            started_at: chrono::Utc::now().timestamp(),
            config_write: std::sync::Mutex::new(()),
            reloads: std::sync::Mutex::new(std::collections::VecDeque::new()),
            rates: crate::rates::Rates::default(),
            tls: SwappableAcceptor(std::sync::RwLock::new(None)),
        })
    }
}
