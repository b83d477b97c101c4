//! Clients for the unix sockets the admin service talks to:
//! - the supervisor's `run/control.sock` (`{"op":"status"}`: services, restarts, endpoints);
//! - the store service's `run/store.sock` (`usage` and `undelete`; see
//!   `hermes_svc_store::quota::undelete`; `reload` and `stats`);
//! - the router's `run/router.sock` (the queue: `list`, `show`, `flush`, `delete`, `hold`,
//!   `release`, see `hermes_svc_router::control`; `reload` and `stats`).
//!
//! `reload` and `stats` are read as loose JSON ([`json_request`]): the admin shows what the
//! service says (`applied`, `restart_needed`, `errors`, counters) without sharing its types.
//!
//! What it is not: a way to open the store. The admin process never opens `DATA/store` (only
//! the store process writes it); when the store service is down, usage shows as unavailable.
//!
//! Invariants: every request has a timeout ([`REQUEST_TIMEOUT`]) and every answer a size bound,
//! so a stuck or hostile peer cannot hang or bloat a page render.

use hermes_core::ipc::{ControlRequest, ControlResponse};
use hermes_core::paths::DataDir;
use hermes_svc_store::quota::undelete::{Request as StoreRequest, Response as StoreResponse};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// A page waits at most this long for a service's answer (an undelete restore may take longer
/// for huge mailboxes: [`RESTORE_TIMEOUT`]).
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
pub const RESTORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);
/// Largest answer read from the supervisor.
const MAX_STATUS_ANSWER: u64 = 1024 * 1024;
/// Largest answer read from the store (a long undelete listing).
const MAX_STORE_ANSWER: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("the {0} is not running")]
    Unreachable(&'static str),
    #[error("the {0} did not answer in time")]
    Timeout(&'static str),
    #[error("the {0}'s answer was not understood")]
    BadAnswer(&'static str),
    #[error("{0}")]
    Refused(String),
}

async fn exchange(
    path: &std::path::Path,
    line: Vec<u8>,
    max: u64,
    who: &'static str,
    timeout: std::time::Duration,
) -> Result<Vec<u8>, ControlError> {
    let work = async {
        let mut s = tokio::net::UnixStream::connect(path).await.map_err(|_| ControlError::Unreachable(who))?;
        s.write_all(&line).await.map_err(|_| ControlError::Unreachable(who))?;
        let mut r = tokio::io::BufReader::new(s).take(max);
        let mut answer = Vec::new();
        r.read_until(b'\n', &mut answer).await.map_err(|_| ControlError::BadAnswer(who))?;
        if !answer.ends_with(b"\n") {
            return Err(ControlError::BadAnswer(who));
        }
        Ok(answer)
    };
    tokio::time::timeout(timeout, work).await.map_err(|_| ControlError::Timeout(who))?
}

/// The supervisor's status.
pub async fn supervisor_status(data: &DataDir) -> Result<ControlResponse, ControlError> {
    let mut line = serde_json::to_vec(&ControlRequest::Status).map_err(|_| ControlError::BadAnswer("supervisor"))?;
    line.push(b'\n');
    let answer = exchange(&data.control_socket(), line, MAX_STATUS_ANSWER, "supervisor", REQUEST_TIMEOUT).await?;
    let r: ControlResponse = serde_json::from_slice(&answer).map_err(|_| ControlError::BadAnswer("supervisor"))?;
    if !r.ok {
        return Err(ControlError::Refused(r.error.unwrap_or_else(|| "the supervisor refused".into())));
    }
    Ok(r)
}

/// One request to the store service.
pub async fn store_request(
    data: &DataDir,
    request: &StoreRequest,
    timeout: std::time::Duration,
) -> Result<StoreResponse, ControlError> {
    let mut line = serde_json::to_vec(request).map_err(|_| ControlError::BadAnswer("store service"))?;
    line.push(b'\n');
    let answer = exchange(&data.store_socket(), line, MAX_STORE_ANSWER, "store service", timeout).await?;
    let r: StoreResponse = serde_json::from_slice(&answer).map_err(|_| ControlError::BadAnswer("store service"))?;
    if !r.ok {
        return Err(ControlError::Refused(r.error.unwrap_or_else(|| "the store service refused".into())));
    }
    Ok(r)
}

/// Largest answer read for `reload`, `stats` and queue requests (a queue listing of 100,000
/// messages is about 30 MiB of JSON).
const MAX_JSON_ANSWER: u64 = 64 * 1024 * 1024;

/// One JSON request line to the socket at `path`, the answer as loose JSON. An answer with
/// `"ok": false` is returned as it is (the caller shows its `error`/`errors`).
pub async fn json_request(
    path: &std::path::Path,
    request: &serde_json::Value,
    who: &'static str,
    timeout: std::time::Duration,
) -> Result<serde_json::Value, ControlError> {
    let mut line = serde_json::to_vec(request).map_err(|_| ControlError::BadAnswer(who))?;
    line.push(b'\n');
    let answer = exchange(path, line, MAX_JSON_ANSWER, who, timeout).await?;
    let v: serde_json::Value = serde_json::from_slice(&answer).map_err(|_| ControlError::BadAnswer(who))?;
    if !v.is_object() {
        return Err(ControlError::BadAnswer(who));
    }
    Ok(v)
}

/// The services that reload a new configuration live, with their sockets and names.
pub fn live_services(data: &DataDir) -> [(&'static str, std::path::PathBuf, &'static str); 2] {
    [("store", data.store_socket(), "store service"), ("router", data.router_socket(), "router")]
}

/// What one service said to `{"op":"reload"}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReloadOutcome {
    pub service: &'static str,
    /// `applied` (ok), `failed` (the service refused: `errors`), `not running` (it reads the
    /// new file when it starts) or `no answer` (timeout or an answer not understood).
    pub state: &'static str,
    pub ok: bool,
    /// Settings now in force.
    pub applied: Vec<String>,
    /// Settings that changed but take effect only at the service's next start (e.g. ports).
    pub restart_needed: Vec<String>,
    pub errors: Vec<String>,
}

fn strings(v: Option<&serde_json::Value>) -> Vec<String> {
    match v {
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .take(200)
            .map(|x| match x {
                serde_json::Value::String(s) => s.chars().take(500).collect(),
                serde_json::Value::Object(o) => {
                    let path = o.get("path").and_then(|p| p.as_str()).unwrap_or("");
                    let msg = o.get("message").and_then(|p| p.as_str()).unwrap_or("");
                    let t = if path.is_empty() { msg.to_string() } else { format!("{path}: {msg}") };
                    t.chars().take(500).collect()
                }
                other => other.to_string().chars().take(500).collect(),
            })
            .collect(),
        Some(serde_json::Value::String(s)) => vec![s.chars().take(500).collect()],
        _ => Vec::new(),
    }
}

/// Interprets a `reload` answer.
pub fn reload_outcome(service: &'static str, answer: Result<serde_json::Value, ControlError>) -> ReloadOutcome {
    let mut o = ReloadOutcome {
        service,
        state: "applied",
        ok: true,
        applied: Vec::new(),
        restart_needed: Vec::new(),
        errors: Vec::new(),
    };
    match answer {
        Ok(v) => {
            o.applied = strings(v.get("applied"));
            o.restart_needed = strings(v.get("restart_needed"));
            if v.get("ok").and_then(|x| x.as_bool()) != Some(true) {
                o.ok = false;
                o.state = "failed";
                o.errors = strings(v.get("errors"));
                o.errors.extend(strings(v.get("error")));
                if o.errors.is_empty() {
                    o.errors.push("the service refused the new configuration".into());
                }
            }
        }
        Err(ControlError::Unreachable(_)) => {
            // It reads the new file when it starts: nothing to apply now.
            o.state = "not running";
        }
        Err(e) => {
            o.ok = false;
            o.state = "no answer";
            o.errors.push(e.to_string());
        }
    }
    o
}

/// How long a service may take to reload (re-reading TLS files and the config).
pub const RELOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Asks every live service to reload the configuration now in force, concurrently.
pub async fn reload_all(data: &DataDir) -> Vec<ReloadOutcome> {
    let req = serde_json::json!({ "op": "reload" });
    let [(n1, p1, w1), (n2, p2, w2)] = live_services(data);
    let (a, b) = tokio::join!(json_request(&p1, &req, w1, RELOAD_TIMEOUT), json_request(&p2, &req, w2, RELOAD_TIMEOUT));
    vec![reload_outcome(n1, a), reload_outcome(n2, b)]
}

/// A request to the router's control socket (the queue).
pub async fn router_request(data: &DataDir, request: &serde_json::Value) -> Result<serde_json::Value, ControlError> {
    json_request(&data.router_socket(), request, "router", REQUEST_TIMEOUT).await
}
