//! The layout of a Hermes data folder. Every path a service opens is named here, once.
//!
//! ```text
//! DATA/
//!   config/hermes.toml        the configuration (config/history/ keeps earlier versions)
//!   directory/                domains and accounts (see `directory`)
//!   store/                    the mail store (see the hermes-store crate); only the store process writes it
//!   queue/                    the router's mail queue (see hermes-svc-router); only the router writes it
//!   tls/cert.pem, tls/key.pem the TLS certificate chain and key (self-signed on first start)
//!   run/endpoints.json        where each protocol listens, written by the supervisor
//!   run/endpoints.d/SVC.json  what each service bound, written by that service
//!   run/lmtp.sock             LMTP on a unix socket
//!   run/control.sock          the supervisor's control socket
//!   run/router.sock           the router's control socket (`hermes queue ...`)
//!   run/store.sock            the store service's control socket (`hermes undelete ...`)
//!   log/                      log files
//! ```

use std::path::{Path, PathBuf};

/// The data folder. Cheap to clone; holds only the root path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn config_dir(&self) -> PathBuf {
        self.root.join("config")
    }
    pub fn config_file(&self) -> PathBuf {
        self.config_dir().join("hermes.toml")
    }
    pub fn config_history_dir(&self) -> PathBuf {
        self.config_dir().join("history")
    }
    pub fn directory_dir(&self) -> PathBuf {
        self.root.join("directory")
    }
    pub fn store_dir(&self) -> PathBuf {
        self.root.join("store")
    }
    /// The router's mail queue.
    pub fn queue_dir(&self) -> PathBuf {
        self.root.join("queue")
    }
    pub fn tls_dir(&self) -> PathBuf {
        self.root.join("tls")
    }
    pub fn tls_cert(&self) -> PathBuf {
        self.tls_dir().join("cert.pem")
    }
    pub fn tls_key(&self) -> PathBuf {
        self.tls_dir().join("key.pem")
    }
    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }
    pub fn endpoints_file(&self) -> PathBuf {
        self.run_dir().join("endpoints.json")
    }
    /// What service `service` bound, written by that service once it listens.
    pub fn service_endpoints_file(&self, service: &str) -> PathBuf {
        self.run_dir().join("endpoints.d").join(format!("{service}.json"))
    }
    pub fn lmtp_socket(&self) -> PathBuf {
        self.run_dir().join("lmtp.sock")
    }
    /// The router's control socket (`hermes queue ...`).
    pub fn router_socket(&self) -> PathBuf {
        self.run_dir().join("router.sock")
    }
    /// The store service's control socket (`hermes undelete`).
    pub fn store_socket(&self) -> PathBuf {
        self.run_dir().join("store.sock")
    }
    pub fn control_socket(&self) -> PathBuf {
        self.run_dir().join("control.sock")
    }
    pub fn log_dir(&self) -> PathBuf {
        self.root.join("log")
    }
}
