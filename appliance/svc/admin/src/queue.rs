//! The mail queue, through the router's control socket `run/router.sock` (the requests of
//! `hermes_svc_router::control::Request`: `list`, `show`, `flush`, `delete`, `hold`,
//! `release`), shared by the Queue page and `/api/queue`.
//!
//! What it is not: a reader of the queue folder. When the router is not running, the page
//! says so (the CLI's offline mode takes the queue lock, which the admin service must not).
//!
//! Invariants: message ids are checked before they are sent (letters and digits, at most
//! [`MAX_ID_LEN`]); listing is paged by the router (`list_page`: one page per answer);
//! every change is audited (`queue.flush`, `queue.delete`, `queue.hold`,
//! `queue.release`).

use crate::ops::{Actor, OpError};
use crate::state::AppState;
use std::sync::Arc;

pub const DEFAULT_PER_PAGE: usize = 50;
pub const MAX_PER_PAGE: usize = 500;
pub const MAX_ID_LEN: usize = 64;

/// One queued message as `list` reports it (`hermes_svc_router::deliver::Summary`).
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct Summary {
    pub id: String,
    pub from: String,
    pub size: u64,
    pub arrival: i64,
    pub recipients: usize,
    pub pending: usize,
    pub attempts: u32,
    pub next_retry: i64,
    pub hold: bool,
    pub last_reply: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct QueuePage {
    pub total: usize,
    pub held: usize,
    pub page: usize,
    pub per_page: usize,
    pub messages: Vec<Summary>,
}

/// One message's envelope and delivery state (`show`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Detail {
    pub id: String,
    pub from: String,
    pub size: u64,
    pub arrival: i64,
    pub client: String,
    pub helo: String,
    pub auth_user: Option<String>,
    pub recipients: Vec<String>,
    /// The router's delivery state as it reports it (attempts, hold, per-recipient results).
    pub state: serde_json::Map<String, serde_json::Value>,
}

impl Detail {
    /// The state as (key, compact JSON) lines, bounded for display.
    pub fn state_lines(&self) -> Vec<(String, String)> {
        self.state
            .iter()
            .take(50)
            .map(|(k, v)| {
                let t = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), t.chars().take(2000).collect())
            })
            .collect()
    }
}

pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn router_error(e: crate::control::ControlError) -> OpError {
    match e {
        crate::control::ControlError::Unreachable(_) => {
            OpError::Unavailable("the router is not running, so the queue cannot be shown or changed".into())
        }
        e => OpError::Unavailable(e.to_string()),
    }
}

/// Sends one request; an `ok: false` answer becomes NotFound (unknown id) or Conflict.
async fn ask(st: &Arc<AppState>, req: serde_json::Value) -> Result<serde_json::Value, OpError> {
    let v = crate::control::router_request(&st.data, &req).await.map_err(router_error)?;
    if v.get("ok").and_then(|o| o.as_bool()) == Some(true) {
        return Ok(v);
    }
    let text: String =
        v.get("error").and_then(|e| e.as_str()).unwrap_or("the router refused").chars().take(500).collect();
    if text.contains("no such") || text.contains("not found") || text.contains("unknown") {
        Err(OpError::NotFound(text))
    } else {
        Err(OpError::Conflict(text))
    }
}

/// One page of the queue, oldest first; `q` filters on id, sender and last reply. The router
/// filters, sorts and pages (`list_page`), so a page of a 100,000-message queue is one small
/// answer.
pub async fn list(st: &Arc<AppState>, q: &str, page: usize, per_page: usize) -> Result<QueuePage, OpError> {
    let per_page = per_page.clamp(1, MAX_PER_PAGE);
    let v = ask(st, serde_json::json!({ "op": "list_page", "q": q.trim(), "page": page.max(1), "per_page": per_page }))
        .await?;
    let bad = || OpError::Unavailable("the router's answer was not understood".into());
    let messages: Vec<Summary> = match v.get("messages") {
        Some(m) => serde_json::from_value(m.clone()).map_err(|_| bad())?,
        None => Vec::new(),
    };
    let count = |k: &str| v.get("page").and_then(|p| p.get(k)).and_then(|x| x.as_u64()).map(|x| x as usize);
    Ok(QueuePage {
        total: count("total").unwrap_or(messages.len()),
        held: count("held").unwrap_or(0),
        page: count("page").unwrap_or(1),
        per_page: count("per_page").unwrap_or(per_page),
        messages,
    })
}

/// One message's envelope and state.
pub async fn show(st: &Arc<AppState>, id: &str) -> Result<Detail, OpError> {
    if !valid_id(id) {
        return Err(OpError::NotFound("no such queued message".into()));
    }
    let v = ask(st, serde_json::json!({ "op": "show", "id": id })).await?;
    let d = v.get("detail").ok_or_else(|| OpError::NotFound("no such queued message".into()))?;
    let env = d.get("envelope").cloned().unwrap_or_default();
    let s = |k: &str| env.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
    let recipients = env
        .get("recipients")
        .and_then(|r| r.as_array())
        .map(|a| {
            a.iter()
                .take(10_000)
                .filter_map(|r| r.get("address").and_then(|x| x.as_str()))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Ok(Detail {
        id: id.to_string(),
        from: s("from"),
        size: env.get("size").and_then(|x| x.as_u64()).unwrap_or(0),
        arrival: env.get("arrival").and_then(|x| x.as_i64()).unwrap_or(0),
        client: s("client"),
        helo: s("helo"),
        auth_user: env.get("auth_user").and_then(|x| x.as_str()).map(str::to_string),
        recipients,
        state: d.get("state").and_then(|x| x.as_object()).cloned().unwrap_or_default(),
    })
}

/// `flush` (all when `id` is `None`), `delete`, `hold` or `release`; the count affected.
pub async fn action(st: &Arc<AppState>, actor: &Actor, op: &'static str, id: Option<String>) -> Result<usize, OpError> {
    let result = async {
        if let Some(i) = &id
            && !valid_id(i)
        {
            return Err(OpError::NotFound("no such queued message".into()));
        }
        if id.is_none() && op != "flush" {
            return Err(OpError::invalid("id", "a message id is needed"));
        }
        let req = match &id {
            Some(i) => serde_json::json!({ "op": op, "id": i }),
            None => serde_json::json!({ "op": op, "id": null }),
        };
        let v = ask(st, req).await?;
        Ok(v.get("count").and_then(|c| c.as_u64()).unwrap_or(0) as usize)
    }
    .await;
    let action = match op {
        "flush" => "queue.flush",
        "delete" => "queue.delete",
        "hold" => "queue.hold",
        _ => "queue.release",
    };
    crate::ops::audit_result(st, actor, action, id.as_deref().unwrap_or("(all)"), result).await
}
