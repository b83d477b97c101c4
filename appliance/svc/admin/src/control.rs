//! Clients for the two unix sockets the admin service talks to:
//! - the supervisor's `run/control.sock` (`{"op":"status"}`: services, restarts, endpoints);
//! - the store service's `run/store.sock` (`usage` and `undelete`; see
//!   `hermes_svc_store::quota::undelete`).
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
