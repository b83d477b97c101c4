//! The store service's control socket `run/store.sock`: one JSON request per line, one JSON
//! answer per line. The request and answer types are in [`crate::quota::undelete`]
//! ([`Request`], [`Response`]); this module serves them, and implements the two ops that
//! concern the running service itself:
//!
//! - `{"op":"reload"}` (and SIGHUP, which does the same): re-reads `DATA/config/hermes.toml`.
//!   An invalid file is refused (`{"ok":false,"error":...,"errors":["path: message",...]}`)
//!   and the running config stays. Otherwise every setting that can change without dropping a
//!   connection is applied at once and named in `applied`; changed settings that need a
//!   restart (listen addresses and ports, the store engine's message size bound and
//!   compression level) are named in `restart_needed` and keep their old value until then.
//!   The TLS certificate and key (`DATA/tls/`) are re-read too: new connections use them.
//! - `{"op":"stats"}`: cumulative counters since start ([`Stats`]) for the admin dashboard.
//!
//! What it is not: an authenticated API (the socket is mode 0660 in the data folder's `run/`).
//!
//! Invariants:
//! - A request line is at most [`MAX_REQUEST`] bytes; a longer one is answered with an error
//!   and the connection closed; a silent connection is closed after [`REQUEST_TIMEOUT`].
//! - Reloads run one at a time; a session reads the config when it needs a setting, so a
//!   reload never changes a setting half-way through a command.

use crate::SharedContext;
use crate::quota::undelete::{MAX_REQUEST, error};
pub use crate::quota::undelete::{Request, Response};
use hermes_core::config::Config;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// How long the server waits for a request line before closing the connection.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Cumulative counters since the service started (relaxed atomics: rates, not accounting).
#[derive(Debug)]
pub struct Stats {
    started_at: i64,
    pub logins_ok: AtomicU64,
    pub logins_failed: AtomicU64,
    pub imap_sessions: AtomicU64,
    pub pop3_sessions: AtomicU64,
    /// LMTP recipients answered 250 after DATA (duplicates suppressed included).
    pub lmtp_delivered: AtomicU64,
    /// LMTP recipients refused, at RCPT or after DATA.
    pub lmtp_rejected: AtomicU64,
    /// Messages stored by IMAP APPEND (each message of a MULTIAPPEND counts).
    pub messages_appended: AtomicU64,
}

/// What `stats` answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    pub started_at: i64,
    pub logins_ok: u64,
    pub logins_failed: u64,
    pub imap_sessions: u64,
    pub pop3_sessions: u64,
    pub lmtp_delivered: u64,
    pub lmtp_rejected: u64,
    pub messages_appended: u64,
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            started_at: chrono::Utc::now().timestamp(),
            logins_ok: AtomicU64::new(0),
            logins_failed: AtomicU64::new(0),
            imap_sessions: AtomicU64::new(0),
            pop3_sessions: AtomicU64::new(0),
            lmtp_delivered: AtomicU64::new(0),
            lmtp_rejected: AtomicU64::new(0),
            messages_appended: AtomicU64::new(0),
        }
    }

    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            started_at: self.started_at,
            logins_ok: get(&self.logins_ok),
            logins_failed: get(&self.logins_failed),
            imap_sessions: get(&self.imap_sessions),
            pop3_sessions: get(&self.pop3_sessions),
            lmtp_delivered: get(&self.lmtp_delivered),
            lmtp_rejected: get(&self.lmtp_rejected),
            messages_appended: get(&self.messages_appended),
        }
    }
}

impl Default for Stats {
    fn default() -> Stats {
        Stats::new()
    }
}

/// Serves one control connection: request lines until EOF, each answered with one line.
pub async fn serve_connection(stream: tokio::net::UnixStream, ctx: SharedContext) {
    let (r, mut w) = stream.into_split();
    let mut r = tokio::io::BufReader::new(r);
    loop {
        let mut line = Vec::new();
        let read =
            tokio::time::timeout(REQUEST_TIMEOUT, (&mut r).take(MAX_REQUEST + 1).read_until(b'\n', &mut line)).await;
        let n = match read {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "control connection read failed");
                return;
            }
            Err(_) => return, // idle: close
        };
        if n == 0 {
            return;
        }
        let too_long = line.len() as u64 > MAX_REQUEST;
        let response = if too_long {
            error("request too long")
        } else {
            match serde_json::from_slice::<Request>(&line) {
                Ok(Request::Reload {}) => reload(&ctx).await,
                Ok(Request::Stats {}) => {
                    Response { ok: true, stats: Some(ctx.stats.snapshot()), ..Response::default() }
                }
                Ok(req) => {
                    let ctx = ctx.clone();
                    let settings = ctx.config().store.clone();
                    match tokio::task::spawn_blocking(move || {
                        crate::quota::undelete::execute(&ctx.store, &ctx.directory, &settings, &req)
                    })
                    .await
                    {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::error!(error = %e, "control request task failed");
                            error("internal error")
                        }
                    }
                }
                Err(e) => error(format!("bad request: {e}")),
            }
        };
        let mut out = match serde_json::to_vec(&response) {
            Ok(v) => v,
            Err(_) => br#"{"ok":false,"error":"internal error"}"#.to_vec(),
        };
        out.push(b'\n');
        if w.write_all(&out).await.is_err() || too_long {
            return;
        }
    }
}

/// What a reload found to do.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub applied: Vec<String>,
    pub restart_needed: Vec<String>,
}

/// Compares the running config with a new one. Settings the store does not use (`[router]`,
/// `[admin]`) are not listed.
pub fn changes(old: &Config, new: &Config) -> Changes {
    let mut c = Changes::default();
    macro_rules! check {
        ($list:ident, $name:literal, $($field:tt)+) => {
            if old.$($field)+ != new.$($field)+ {
                c.$list.push($name.to_string());
            }
        };
    }
    // Bound once at start.
    check!(restart_needed, "server.listen", listen);
    check!(restart_needed, "imap.port", imap.port);
    check!(restart_needed, "imap.tls_port", imap.tls_port);
    check!(restart_needed, "pop3.port", pop3.port);
    check!(restart_needed, "pop3.tls_port", pop3.tls_port);
    check!(restart_needed, "lmtp.listen", lmtp.listen);
    check!(restart_needed, "lmtp.port", lmtp.port);
    check!(restart_needed, "managesieve.port", managesieve.port);
    // Fixed in the open store engine.
    check!(restart_needed, "limits.max_message_bytes", limits.max_message_bytes);
    check!(restart_needed, "store.zstd_level", store.zstd_level);
    // Read where they are used: live.
    check!(applied, "server.hostname", hostname);
    check!(applied, "imap.plaintext_auth_on_loopback", imap.plaintext_auth_on_loopback);
    check!(applied, "pop3.plaintext_auth_on_loopback", pop3.plaintext_auth_on_loopback);
    check!(applied, "limits.max_line", limits.max_line);
    check!(applied, "limits.max_literals_per_command", limits.max_literals_per_command);
    check!(applied, "limits.max_sessions_per_user", limits.max_sessions_per_user);
    check!(applied, "limits.max_connections_per_ip", limits.max_connections_per_ip);
    check!(applied, "limits.max_connections", limits.max_connections);
    check!(applied, "limits.auth_fail_delay_ms", limits.auth_fail_delay_ms);
    check!(applied, "limits.max_auth_fail_delay_ms", limits.max_auth_fail_delay_ms);
    check!(applied, "limits.idle_timeout_secs", limits.idle_timeout_secs);
    check!(applied, "limits.prelogin_timeout_secs", limits.prelogin_timeout_secs);
    check!(applied, "store.retention_days", store.retention_days);
    check!(applied, "store.quota_permanent_failure", store.quota_permanent_failure);
    check!(applied, "store.default_quota_messages", store.default_quota_messages);
    check!(applied, "store.quota_warning_percents", store.quota_warning_percents);
    check!(applied, "sieve", sieve);
    if old.managesieve.port == new.managesieve.port {
        check!(applied, "managesieve", managesieve);
    } else {
        let mut o = old.managesieve.clone();
        o.port = new.managesieve.port;
        if o != new.managesieve {
            c.applied.push("managesieve".into());
        }
    }
    c
}

/// A fingerprint of the TLS certificate and key files (content hash), to tell whether a
/// reload brings a new certificate. `None` when either cannot be read.
pub(crate) fn tls_fingerprint(data: &hermes_core::paths::DataDir) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let cert = std::fs::read(data.tls_cert()).ok()?;
    let key = std::fs::read(data.tls_key()).ok()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    cert.hash(&mut h);
    key.hash(&mut h);
    Some(h.finish())
}

/// Reloads the config and the TLS certificate (the `reload` op and SIGHUP).
pub async fn reload(ctx: &SharedContext) -> Response {
    let _one = ctx.reload_lock.lock().await;
    let data = ctx.data.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        let path = data.config_file();
        let config = match std::fs::read_to_string(&path) {
            Ok(text) => {
                Config::from_toml(&text).map_err(|e| e.0.iter().map(|e| format!("{}: {}", e.path, e.message)).collect())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::host_default()),
            Err(e) => Err(vec![format!("cannot read the config file: {}", e.kind())]),
        };
        let tls =
            tls_fingerprint(&data).map(|fp| (fp, hermes_runtime::tls::load_acceptor(&data).map_err(|e| e.to_string())));
        (config, tls)
    })
    .await;
    let (config, tls) = match loaded {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(error = %e, "reload task failed");
            return error("internal error");
        }
    };
    let new = match config {
        Ok(c) => c,
        Err(errors) => {
            tracing::warn!(errors = ?errors, "reload refused: the config is invalid; the running config stays");
            return Response {
                ok: false,
                error: Some("invalid configuration; nothing was changed".into()),
                errors,
                ..Response::default()
            };
        }
    };
    let old = ctx.config();
    let mut c = changes(&old, &new);
    // TLS: a changed certificate that loads is used by new connections; a broken one is
    // refused (the running one stays) and reported like a config error.
    let mut tls_note = None;
    if let Some((fp, acceptor)) = tls {
        let mut known = ctx.tls_fingerprint.lock().unwrap_or_else(|p| p.into_inner());
        if *known != Some(fp) {
            match acceptor {
                Ok(a) => {
                    let had_tls = ctx.tls().is_some();
                    ctx.set_tls(Some(a));
                    *known = Some(fp);
                    c.applied.push("tls.certificate".into());
                    if !had_tls {
                        // STARTTLS works now; the IMAPS and POP3S listeners were never bound.
                        c.restart_needed.push("imap.tls_port".into());
                        c.restart_needed.push("pop3.tls_port".into());
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reload: the new TLS certificate does not load; the running one stays");
                    tls_note = Some(format!("tls: {e}"));
                }
            }
        }
    }
    if let Some(note) = tls_note {
        return Response {
            ok: false,
            error: Some("the TLS certificate or key does not load; nothing was changed".into()),
            errors: vec![note],
            ..Response::default()
        };
    }
    // Apply: the store's own settings first, then the config everyone reads.
    ctx.store.set_retention_secs(new.store.retention_days.saturating_mul(24 * 60 * 60));
    ctx.store.set_quota_warning_percents(new.store.quota_warning_percents.clone());
    ctx.limiters.set_limits(&new.limits);
    // Settings that need a restart keep their running value, so what the process reports
    // (and binds) stays consistent until then.
    let mut effective = new;
    effective.listen = old.listen;
    effective.imap.port = old.imap.port;
    effective.imap.tls_port = old.imap.tls_port;
    effective.pop3.port = old.pop3.port;
    effective.pop3.tls_port = old.pop3.tls_port;
    effective.lmtp.listen = old.lmtp.listen;
    effective.lmtp.port = old.lmtp.port;
    effective.managesieve.port = old.managesieve.port;
    effective.limits.max_message_bytes = old.limits.max_message_bytes;
    effective.store.zstd_level = old.store.zstd_level;
    ctx.set_config(effective);
    tracing::info!(applied = ?c.applied, restart_needed = ?c.restart_needed, "configuration reloaded");
    Response { ok: true, applied: Some(c.applied), restart_needed: Some(c.restart_needed), ..Response::default() }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn changes_are_sorted_into_live_and_restart() {
        let old = Config::host_default();
        assert_eq!(changes(&old, &old), Changes::default());
        let new = Config::from_toml(
            "[server]\nlisten = \"127.0.0.2\"\n[imap]\nport = 1143\n[store]\nretention_days = 3\nquota_permanent_failure = true\n\
             [limits]\nmax_connections = 10\n",
        )
        .unwrap();
        let c = changes(&old, &new);
        assert_eq!(c.restart_needed, ["server.listen", "imap.port"]);
        assert_eq!(c.applied, ["limits.max_connections", "store.retention_days", "store.quota_permanent_failure"]);
    }
}
