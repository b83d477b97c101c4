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

/// A request on the supervisor's control socket (`run/control.sock`), one JSON object per line:
/// `{"op":"status"}`. Unknown ops are answered with `ok: false`, never by closing the socket.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ControlRequest {
    Status,
}

/// The answer to [`ControlRequest::Status`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ControlResponse {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The supervisor's pid and start time (unix seconds).
    #[serde(default)]
    pub supervisor_pid: u32,
    #[serde(default)]
    pub started_at: i64,
    #[serde(default)]
    pub services: Vec<ServiceStatus>,
    /// The merged `run/endpoints.json` as last written.
    #[serde(default)]
    pub endpoints: Endpoints,
}

/// One supervised service as the supervisor sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    /// `None` while no process runs (between a crash and its restart).
    pub pid: Option<u32>,
    pub state: ServiceState,
    /// How many times the supervisor restarted it after a crash.
    pub restarts: u32,
    /// When the current process started (unix seconds).
    pub started_at: Option<i64>,
    /// How the previous process ended, e.g. `exit status 1` or `signal 9 (SIGKILL)`.
    #[serde(default)]
    pub last_exit: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    /// Started, not yet listening (its endpoints file is not written yet).
    Starting,
    /// Listening; its endpoints are in `run/endpoints.json`.
    Running,
    /// Crashed; waiting out the restart delay.
    Backoff,
    /// Asked to stop (shutdown in progress).
    Stopping,
    /// Not running (after shutdown).
    Stopped,
}
