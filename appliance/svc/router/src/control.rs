//! The router's control socket `run/router.sock` (JSON lines) and the client side used by
//! `hermes queue list|show|flush|delete|hold|release`.
//!
//! One request line, one response line. When no router answers, [`request`] operates on the
//! queue folder directly (taking the queue lock, so it can never race a running router).
//!
//! What it is not: an authenticated API — the socket is mode 0660 inside the 0700 `run/`
//! folder, so only the data folder's owner reaches it.
//!
//! Invariants: requests are bounded ([`MAX_REQUEST`]); hold/release/delete are durable
//! before the response says ok.

use crate::deliver::{Runner, Summary};
use crate::queue::{Envelope, LogRecord, MessageState, Queue, QueueError};
use hermes_core::paths::DataDir;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// Longest request line: ids are 20 characters; 4 KiB is plenty.
pub const MAX_REQUEST: u64 = 4096;
/// Longest response read by the client: a queue of 100,000 messages in JSON.
const MAX_RESPONSE: u64 = 256 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    List,
    /// One page of the queue, oldest first, filtered by `q` (id, sender or last reply contains,
    /// case-insensitive): the admin UI's view, so a page of a 100,000-message queue is one small
    /// answer and not the whole list ([`page_of`]).
    ListPage {
        #[serde(default)]
        q: String,
        #[serde(default = "first_page")]
        page: usize,
        #[serde(default = "default_per_page")]
        per_page: usize,
    },
    Show {
        id: String,
    },
    Flush {
        id: Option<String>,
    },
    Delete {
        id: String,
    },
    Hold {
        id: String,
    },
    Release {
        id: String,
    },
    /// Re-read `hermes.toml` and apply it ([`crate::reload`]); SIGHUP does the same.
    Reload,
    /// Cumulative counters since start ([`crate::Stats`]).
    Stats,
}

fn first_page() -> usize {
    1
}

fn default_per_page() -> usize {
    50
}

/// Most messages one `list_page` answer holds.
pub const MAX_PER_PAGE: usize = 500;

/// `list_page`'s counts: matching messages, how many of them are held, and the page served
/// (clamped to the last one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageInfo {
    pub total: usize,
    pub held: usize,
    pub page: usize,
    pub per_page: usize,
}

/// Filters, sorts (arrival, then id) and pages `all`.
pub fn page_of(mut all: Vec<Summary>, q: &str, page: usize, per_page: usize) -> (Vec<Summary>, PageInfo) {
    let per_page = per_page.clamp(1, MAX_PER_PAGE);
    let needle = q.trim().to_lowercase();
    if !needle.is_empty() {
        all.retain(|m| {
            m.id.to_lowercase().contains(&needle)
                || m.from.to_lowercase().contains(&needle)
                || m.last_reply.to_lowercase().contains(&needle)
        });
    }
    let total = all.len();
    let held = all.iter().filter(|m| m.hold).count();
    let pages = total.div_ceil(per_page).max(1);
    let page = page.clamp(1, pages);
    let skip = (page - 1) * per_page;
    // Only the page is sorted in full: two selections (O(n) each) put the page's messages
    // between `skip` and `skip + per_page`, then only those are sorted.
    let order = |a: &Summary, b: &Summary| a.arrival.cmp(&b.arrival).then_with(|| a.id.cmp(&b.id));
    if skip > 0 && skip < all.len() {
        all.select_nth_unstable_by(skip, order);
        all.drain(..skip);
    }
    if per_page < all.len() {
        all.select_nth_unstable_by(per_page - 1, order);
        all.truncate(per_page);
    }
    all.sort_unstable_by(order);
    let messages = all;
    (messages, PageInfo { total, held, page, per_page })
}

/// `{"op":"stats"}`'s figures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsView {
    pub started_at: i64,
    pub accepted: u64,
    pub rejected: u64,
    pub delivered: u64,
    pub deferred: u64,
    pub bounced: u64,
    pub queue_size: u64,
    pub auth_failed: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Detail {
    pub envelope: Envelope,
    pub state: MessageState,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<Summary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Detail>,
    /// Messages affected (flush).
    #[serde(default)]
    pub count: usize,
    /// True when the answer came from the queue folder (no router running).
    #[serde(default)]
    pub offline: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<StatsView>,
    /// Reload: configuration errors (the running configuration stays).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Reload: settings applied live, and settings that need a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_needed: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// `list_page`: the counts beside `messages`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<PageInfo>,
}

fn err(e: impl std::fmt::Display) -> Response {
    Response { ok: false, error: Some(e.to_string()), ..Default::default() }
}

/// Serves the control socket until shutdown.
pub async fn serve(
    listener: tokio::net::UnixListener,
    ctx: crate::SharedContext,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(_) => { tokio::time::sleep(std::time::Duration::from_millis(100)).await; continue; }
            },
            _ = hermes_runtime::shutdown::triggered(&mut shutdown) => return,
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let (r, mut w) = stream.into_split();
            let mut line = String::new();
            let mut reader = tokio::io::BufReader::new(r.take(MAX_REQUEST));
            let resp = match tokio::time::timeout(std::time::Duration::from_secs(10), reader.read_line(&mut line)).await
            {
                Ok(Ok(_)) => match serde_json::from_str::<Request>(line.trim()) {
                    Ok(req) => handle(&ctx, req).await,
                    Err(e) => err(format!("bad request: {e}")),
                },
                _ => return,
            };
            if let Ok(mut bytes) = serde_json::to_vec(&resp) {
                bytes.push(b'\n');
                let _ = w.write_all(&bytes).await;
            }
        });
    }
}

async fn handle(ctx: &crate::SharedContext, req: Request) -> Response {
    let runner: &Runner = &ctx.runner;
    match req {
        Request::Reload => {
            let r = crate::reload::reload(ctx).await;
            let (applied, restart_needed) = if r.ok { (Some(r.applied), Some(r.restart_needed)) } else { (None, None) };
            Response {
                ok: r.ok,
                error: (!r.ok).then(|| "invalid configuration; the running one is kept".to_string()),
                errors: r.errors,
                applied,
                restart_needed,
                warnings: r.warnings,
                ..Default::default()
            }
        }
        Request::Stats => {
            let s = &ctx.stats;
            let g = crate::Stats::get;
            Response {
                ok: true,
                stats: Some(StatsView {
                    started_at: s.started_at,
                    accepted: g(&s.accepted),
                    rejected: g(&s.rejected),
                    delivered: g(&s.delivered),
                    deferred: g(&s.deferred),
                    bounced: g(&s.bounced),
                    queue_size: runner.queue_size() as u64,
                    auth_failed: g(&s.auth_failed),
                }),
                ..Default::default()
            }
        }
        Request::List => Response { ok: true, messages: runner.summaries(), ..Default::default() },
        Request::ListPage { q, page, per_page } => {
            let (messages, info) = page_of(runner.summaries(), &q, page, per_page);
            Response { ok: true, messages, page: Some(info), ..Default::default() }
        }
        Request::Show { id } => match runner.show(&id) {
            Some(e) => Response {
                ok: true,
                detail: Some(Detail { envelope: (*e.envelope).clone(), state: e.state }),
                ..Default::default()
            },
            None => err(QueueError::NotFound(id)),
        },
        Request::Flush { id } => {
            let count = runner.flush(id.as_deref());
            if id.is_some() && count == 0 {
                return err(format!("no such queued message (or held): {}", id.unwrap_or_default()));
            }
            Response { ok: true, count, ..Default::default() }
        }
        Request::Delete { id } => match runner.delete(&id).await {
            Ok(()) => Response { ok: true, count: 1, ..Default::default() },
            Err(e) => err(e),
        },
        Request::Hold { id } => match runner.hold(&id, true).await {
            Ok(()) => Response { ok: true, count: 1, ..Default::default() },
            Err(e) => err(e),
        },
        Request::Release { id } => match runner.hold(&id, false).await {
            Ok(()) => Response { ok: true, count: 1, ..Default::default() },
            Err(e) => err(e),
        },
    }
}

/// Sends `req` to the running router, or performs it on the queue folder when none runs.
pub fn request(data: &DataDir, req: &Request) -> anyhow::Result<Response> {
    match std::os::unix::net::UnixStream::connect(data.router_socket()) {
        Ok(mut s) => {
            s.set_read_timeout(Some(std::time::Duration::from_secs(60)))?;
            let mut line = serde_json::to_vec(req)?;
            line.push(b'\n');
            s.write_all(&line)?;
            let mut resp = String::new();
            BufReader::new(s.take(MAX_RESPONSE)).read_line(&mut resp)?;
            Ok(serde_json::from_str(resp.trim())?)
        }
        Err(_) => offline(data, req),
    }
}

fn offline(data: &DataDir, req: &Request) -> anyhow::Result<Response> {
    let dir = data.queue_dir();
    if !dir.exists() {
        return Ok(match req {
            Request::List | Request::ListPage { .. } | Request::Flush { .. } => {
                Response { ok: true, offline: true, ..Default::default() }
            }
            _ => Response { offline: true, ..err("the queue is empty") },
        });
    }
    let (queue, found) = match Queue::open(&dir) {
        Ok(x) => x,
        Err(QueueError::Locked) => {
            anyhow::bail!(
                "the router holds the queue but its control socket {} does not answer",
                data.router_socket().display()
            )
        }
        Err(e) => return Err(e.into()),
    };
    let find = |id: &str| found.iter().find(|q| q.envelope.id == id);
    let summaries = || -> Vec<Summary> {
        found
            .iter()
            .map(|q| {
                let e = crate::deliver::Entry {
                    envelope: Arc::new(q.envelope.clone()),
                    state: q.state.clone(),
                    busy: false,
                };
                crate::deliver::summary_of(&e)
            })
            .collect()
    };
    let mut resp = match req {
        Request::List => Response { ok: true, messages: summaries(), ..Default::default() },
        Request::ListPage { q, page, per_page } => {
            let (messages, info) = page_of(summaries(), q, *page, *per_page);
            Response { ok: true, messages, page: Some(info), ..Default::default() }
        }
        Request::Show { id } => match find(id) {
            Some(q) => Response {
                ok: true,
                detail: Some(Detail { envelope: q.envelope.clone(), state: q.state.clone() }),
                ..Default::default()
            },
            None => err(QueueError::NotFound(id.clone())),
        },
        Request::Reload | Request::Stats => err("no router is running"),
        // Nothing to do without a router: everything is tried when it starts.
        Request::Flush { .. } => Response { ok: true, count: 0, ..Default::default() },
        Request::Delete { id } => match queue.remove(id) {
            Ok(()) => Response { ok: true, count: 1, ..Default::default() },
            Err(e) => err(e),
        },
        Request::Hold { id } | Request::Release { id } => {
            let on = matches!(req, Request::Hold { .. });
            match find(id).map(|_| queue.append(id, &[LogRecord::Hold { on }])) {
                Some(Ok(())) => Response { ok: true, count: 1, ..Default::default() },
                Some(Err(e)) => err(e),
                None => err(QueueError::NotFound(id.clone())),
            }
        }
    };
    resp.offline = true;
    Ok(resp)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    /// A page of a 100,000-message queue: oldest first across pages, filter, held count, the
    /// page clamped to the last one.
    #[test]
    fn pages_of_a_large_queue() {
        let all: Vec<Summary> = (0..100_000u32)
            .map(|i| {
                // Arrivals out of order, some equal (ties broken by id).
                let k = (i.wrapping_mul(7919)) % 100_000;
                Summary {
                    id: format!("q{k:06}"),
                    from: if k % 10 == 0 { format!("list{k}@lists.example.org") } else { format!("u{k}@example.org") },
                    arrival: i64::from(k / 2),
                    hold: k % 1000 == 0,
                    ..Default::default()
                }
            })
            .collect();
        let (first, info) = page_of(all.clone(), "", 1, 50);
        assert_eq!(info, PageInfo { total: 100_000, held: 100, page: 1, per_page: 50 });
        assert_eq!(first[0].id, "q000000");
        assert_eq!(first[1].id, "q000001");
        assert_eq!(first[49].id, "q000049");
        let (mid, _) = page_of(all.clone(), "", 1001, 50);
        assert_eq!(mid[0].id, "q050000");
        let (last, info) = page_of(all.clone(), "", 99_999, 50);
        assert_eq!(info.page, 2000, "clamped to the last page");
        assert_eq!(last.last().unwrap().id, "q099999");
        let (lists, info) = page_of(all.clone(), "@LISTS.", 2, 500);
        assert_eq!((info.total, info.held, lists.len()), (10_000, 100, 500));
        assert!(lists.windows(2).all(|w| (w[0].arrival, &w[0].id) <= (w[1].arrival, &w[1].id)));
        let (none, info) = page_of(all, "nothing-matches", 1, 50);
        assert!(none.is_empty());
        assert_eq!((info.total, info.page), (0, 1));
    }
    use crate::queue::{EnvRecipient, new_id};

    #[test]
    fn offline_requests_work_on_the_queue_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::new(tmp.path());
        assert!(request(&data, &Request::List).unwrap().messages.is_empty());
        let id = new_id();
        {
            let (q, _) = Queue::open(&data.queue_dir()).unwrap();
            let mut e = Envelope {
                id: id.clone(),
                from: "s@x.org".into(),
                recipients: vec![EnvRecipient {
                    address: "a@y.org".into(),
                    original: "a@y.org".into(),
                    local: false,
                    notify: None,
                    orcpt: None,
                }],
                ret: None,
                envid: None,
                arrival: 1,
                helo: "h".into(),
                client: "192.0.2.1".into(),
                auth_user: None,
                smtputf8: false,
                eightbit: false,
                size: 0,
                is_dsn: false,
            };
            q.enqueue(&mut e, &[b"x\r\n"]).unwrap();
        }
        let l = request(&data, &Request::List).unwrap();
        assert!(l.ok && l.offline);
        assert_eq!(l.messages[0].id, id);
        assert!(request(&data, &Request::Hold { id: id.clone() }).unwrap().ok);
        let s = request(&data, &Request::Show { id: id.clone() }).unwrap();
        assert!(s.detail.unwrap().state.hold, "hold is durable");
        assert!(!request(&data, &Request::Delete { id: "00".into() }).unwrap().ok);
        assert!(request(&data, &Request::Delete { id: id.clone() }).unwrap().ok);
        assert!(request(&data, &Request::List).unwrap().messages.is_empty());
        // While the queue is locked by a (pretend) router without a socket: a clear error.
        let (_q, _) = Queue::open(&data.queue_dir()).unwrap();
        assert!(request(&data, &Request::List).is_err());
    }
}
