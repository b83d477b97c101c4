//! Messages between the supervisor and services: one JSON object per line on unix sockets.
//!
//! `endpoints.d/SVC.json` (written by a service once it listens) is a [`ServiceEndpoints`];
//! the supervisor merges them into `run/endpoints.json`, an [`Endpoints`].

use std::collections::BTreeMap;

/// What one service listens on: protocol name (`imap`, `imaps`, `lmtp`, ...) to `host:port`,
/// and unix sockets by name (`lmtp` → path).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServiceEndpoints {
    pub service: String,
    pub pid: u32,
    pub tcp: BTreeMap<String, String>,
    #[serde(default)]
    pub unix: BTreeMap<String, String>,
}

/// `run/endpoints.json`: every protocol → `host:port`, plus socket paths, so tests and tools
/// never guess a port. Flattened: `{"imap": "127.0.0.1:10143", ..., "lmtp_socket": "/.../lmtp.sock"}`.
pub type Endpoints = BTreeMap<String, String>;
