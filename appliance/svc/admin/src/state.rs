//! What every request handler shares: the data folder, the config, the directory, the admin
//! store, sessions, the login throttle, the audit log and the account index.
//!
//! Invariant: built once at start ([`AppState::open`]); everything mutable inside is behind its
//! own lock, so handlers share one `Arc<AppState>`.

use crate::admins::AdminStore;
use crate::audit::AuditLog;
use crate::index::AccountIndex;
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
    /// Unix seconds when the service started.
    pub started_at: i64,
    /// Serialises config applies and rollbacks (read current, save history, replace).
    pub config_write: std::sync::Mutex<()>,
}

impl AppState {
    /// Opens the directory and `DATA/admin/` (creating them if missing).
    pub fn open(data: DataDir, config: Config) -> anyhow::Result<AppState> {
        let directory = Directory::open(&data).context("opening the directory")?;
        let admins = AdminStore::open(&data).context("opening DATA/admin")?;
        let audit = AuditLog::new(admins.root().join("audit.log"));
        Ok(AppState {
            index: AccountIndex::new(directory.clone()),
            directory,
            admins,
            sessions: Sessions::default(),
            throttle: Throttle::default(),
            audit,
            data,
            config,
            started_at: chrono::Utc::now().timestamp(),
            config_write: std::sync::Mutex::new(()),
        })
    }
}
