//! The store service's process wiring: open the directory and the store, load TLS, bind IMAP,
//! IMAPS, POP3, POP3S, LMTP (TCP and unix socket), ManageSieve and the control socket (`run/store.sock`, for
//! `hermes undelete`), publish what was bound, accept connections under the connection
//! limits, purge expired retained mail hourly, and shut down gracefully.
//!
//! What it is not: no config loading or tracing set-up (`main` does that before calling
//! [`run`]), no supervision or restart (the supervisor's job), no privilege drop yet.
//!
//! Invariants:
//! - `run/endpoints.d/store.json` is written only after every listener is bound, with the
//!   addresses actually bound (port 0 in the config means the kernel's choice).
//! - Each connection holds a [`ConnectionGuard`] for its whole life: IMAP (plain and TLS) and
//!   LMTP have separate limiters (POP3 has its own too), so a flood of IMAP clients cannot block mail delivery.
//!   Their caps follow a config reload ([`crate::control`]), as do the TLS certificate and
//!   every setting read through [`crate::Context::config`].
//! - SIGHUP reloads the config exactly like `{"op":"reload"}` on the control socket.
//! - On shutdown the accept loops stop first, then sessions are told (via
//!   [`crate::Context::shutdown`]) and given [`DRAIN_TIMEOUT`] to finish; the LMTP socket file
//!   and control socket files are removed so `hermes deliver` and `hermes undelete` fall back
//!   to the store once the lock is free.
//! - The purge task runs [`Store::purge_expired`] once shortly after start and then every
//!   [`PURGE_INTERVAL`], one run at a time, in `spawn_blocking`; it stops at shutdown (a run in
//!   progress finishes: purges are safe to interrupt, but never need to be).

use crate::{Context, SharedContext};
use anyhow::Context as _;
use hermes_core::config::Config;
use hermes_core::directory::Directory;
use hermes_core::ipc::ServiceEndpoints;
use hermes_core::paths::DataDir;
use hermes_runtime::listen::{ConnectionGuard, ConnectionLimiter};
use hermes_runtime::listen::{LimitExceeded, bind_tcp, bind_unix};
use hermes_runtime::shutdown::{SessionToken, SessionTracker, Shutdown, Signals, triggered};
use hermes_store::{Store, StoreConfig, StoreError};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;

/// How long sessions get to finish after shutdown starts: long enough for an LMTP delivery in
/// flight to be fsync'd and acknowledged, short enough for a supervisor's stop timeout.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed accept (e.g. EMFILE) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long a refused client gets to read its refusal.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(5);
/// How often expired retained mail is purged: retention is counted in days, so an hour late
/// is nothing, and one pass over every user per hour costs little (users are loaded one at a
/// time; a pass with nothing to drop writes nothing).
pub const PURGE_INTERVAL: Duration = Duration::from_secs(60 * 60);
/// First purge after start: soon, but after the listeners are up and the first logins are in.
const FIRST_PURGE_DELAY: Duration = Duration::from_secs(60);
/// Concurrent control connections (`hermes undelete`): admin commands, a few at a time.
const MAX_CONTROL_CONNECTIONS: usize = 16;

/// The store's settings from the validated config (also used by `hermes deliver` and
/// `hermes undelete` when they open the store directly).
pub fn store_config(config: &Config) -> StoreConfig {
    StoreConfig {
        max_message_bytes: config.limits.max_message_bytes,
        zstd_level: config.store.zstd_level,
        retention_secs: config.store.retention_days.saturating_mul(24 * 60 * 60),
    }
}

/// The store service: serves until SIGTERM or SIGINT, then shuts down gracefully.
pub async fn run(data: DataDir, config: Config) -> anyhow::Result<()> {
    let mut signals = Signals::new().context("registering signal handlers")?;
    run_until(data, config, async move {
        let sig = signals.recv().await;
        tracing::info!(signal = sig, "shutting down");
    })
    .await
}

/// Like [`run`], but shuts down when `shutdown` completes (tests, embedding).
pub async fn run_until(data: DataDir, config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let directory = Directory::open(&data).context("opening the directory")?;
    let store_config = store_config(&config);
    let store_dir = data.store_dir();
    let store = tokio::task::spawn_blocking(move || Store::open(&store_dir, store_config))
        .await
        .context("store open task")?
        .map_err(|e| match e {
            StoreError::Locked => anyhow::anyhow!("the store is locked: another store process is running"),
            e => anyhow::Error::new(e).context("opening the store"),
        })?;
    store.set_quota_warnings(crate::quota::warning_composer(&config.hostname));
    let tls = match hermes_runtime::tls::load_acceptor(&data) {
        Ok(a) => Some(a),
        Err(e) => {
            tracing::warn!(error = %e, "TLS unavailable: no STARTTLS, no IMAPS");
            None
        }
    };

    let ip = config.listen;
    let imap = bind_tcp(SocketAddr::new(ip, config.imap.port)).await.context("binding IMAP")?;
    let imaps = match tls {
        Some(_) => Some(bind_tcp(SocketAddr::new(ip, config.imap.tls_port)).await.context("binding IMAPS")?),
        None => None,
    };
    let pop3 = bind_tcp(SocketAddr::new(ip, config.pop3.port)).await.context("binding POP3")?;
    let pop3s = match tls {
        Some(_) => Some(bind_tcp(SocketAddr::new(ip, config.pop3.tls_port)).await.context("binding POP3S")?),
        None => None,
    };
    let lmtp = bind_tcp(SocketAddr::new(config.lmtp.listen, config.lmtp.port)).await.context("binding LMTP")?;
    // ManageSieve only edits filters: if its port is taken, mail service still starts (logged).
    let managesieve = match bind_tcp(SocketAddr::new(ip, config.managesieve.port)).await {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::error!(error = %e, port = config.managesieve.port, "cannot bind ManageSieve; continuing without it");
            None
        }
    };
    let socket_path = data.lmtp_socket();
    let lmtp_unix = bind_unix(&socket_path).with_context(|| format!("binding {}", socket_path.display()))?;
    let control_path = data.store_socket();
    let control = bind_unix(&control_path).with_context(|| format!("binding {}", control_path.display()))?;

    let mut endpoints = ServiceEndpoints { service: "store".into(), pid: std::process::id(), ..Default::default() };
    endpoints.tcp.insert("imap".into(), imap.local_addr()?.to_string());
    if let Some(l) = &imaps {
        endpoints.tcp.insert("imaps".into(), l.local_addr()?.to_string());
    }
    endpoints.tcp.insert("pop3".into(), pop3.local_addr()?.to_string());
    if let Some(l) = &pop3s {
        endpoints.tcp.insert("pop3s".into(), l.local_addr()?.to_string());
    }
    endpoints.tcp.insert("lmtp".into(), lmtp.local_addr()?.to_string());
    if let Some(l) = &managesieve {
        endpoints.tcp.insert("managesieve".into(), l.local_addr()?.to_string());
    }
    endpoints.unix.insert("lmtp".into(), socket_path.display().to_string());
    endpoints.unix.insert("control".into(), control_path.display().to_string());

    let signal = Shutdown::new();
    let ctx: SharedContext = Arc::new(
        Context::new(config.clone(), data.clone(), directory, store, tls, signal.subscribe())
            .context("opening the duplicate-suppression records")?,
    );
    let tracker = SessionTracker::new();
    let imap_limiter = ctx.limiters.imap.clone();
    let pop3_limiter = ctx.limiters.pop3.clone();
    let lmtp_limiter = ctx.limiters.lmtp.clone();
    let managesieve_limiter = ctx.limiters.managesieve.clone();

    let mut loops = JoinSet::new();
    loops.spawn(accept_tcp(
        imap,
        Protocol::Imap { implicit_tls: false },
        imap_limiter.clone(),
        ctx.clone(),
        tracker.token(),
    ));
    if let Some(l) = imaps {
        loops.spawn(accept_tcp(l, Protocol::Imap { implicit_tls: true }, imap_limiter, ctx.clone(), tracker.token()));
    }
    loops.spawn(accept_tcp(
        pop3,
        Protocol::Pop3 { implicit_tls: false },
        pop3_limiter.clone(),
        ctx.clone(),
        tracker.token(),
    ));
    if let Some(l) = pop3s {
        loops.spawn(accept_tcp(l, Protocol::Pop3 { implicit_tls: true }, pop3_limiter, ctx.clone(), tracker.token()));
    }
    loops.spawn(accept_tcp(lmtp, Protocol::Lmtp, lmtp_limiter.clone(), ctx.clone(), tracker.token()));
    if let Some(l) = managesieve {
        loops.spawn(accept_tcp(l, Protocol::ManageSieve, managesieve_limiter, ctx.clone(), tracker.token()));
    }
    loops.spawn(accept_unix(lmtp_unix, lmtp_limiter, ctx.clone(), tracker.token()));
    loops.spawn(accept_control(control, ctx.clone(), tracker.token()));
    loops.spawn(purge_loop(ctx.clone()));
    loops.spawn(reload_on_sighup(ctx.clone()));

    hermes_runtime::endpoints::write_service_endpoints(&data, &endpoints).context("writing endpoints")?;
    tracing::info!(endpoints = ?endpoints.tcp, socket = %socket_path.display(), "store service listening");

    shutdown.await;
    signal.trigger();
    // Accept loops see the signal and return, dropping their listeners.
    while loops.join_next().await.is_some() {}
    let _ = std::fs::remove_file(&socket_path);
    let _ = std::fs::remove_file(&control_path);
    drop(ctx);
    if tracker.drain(DRAIN_TIMEOUT).await {
        tracing::info!("all sessions ended");
    } else {
        tracing::warn!(timeout_secs = DRAIN_TIMEOUT.as_secs(), "sessions still running at shutdown; abandoning them");
    }
    // Queued delivery-time indexing holds no user alive (weak references): with the store
    // gone the queue empties at once; a job in progress finishes (it holds the store lock).
    let _ = tokio::task::spawn_blocking(|| crate::index::ingest::flush_within(DRAIN_TIMEOUT)).await;
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Protocol {
    Imap { implicit_tls: bool },
    Pop3 { implicit_tls: bool },
    Lmtp,
    ManageSieve,
}

/// Writes a refusal and closes, without holding up the accept loop.
fn refuse<S: tokio::io::AsyncWrite + Unpin + Send + 'static>(mut stream: S, text: Vec<u8>) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(REFUSAL_TIMEOUT, async {
            let _ = stream.write_all(&text).await;
            let _ = stream.shutdown().await;
        })
        .await;
    });
}

fn refusal(protocol: Protocol, why: LimitExceeded, hostname: &str) -> Vec<u8> {
    match protocol {
        Protocol::Imap { .. } => match why {
            LimitExceeded::Total => b"* BYE Too many connections\r\n".to_vec(),
            LimitExceeded::PerIp => b"* BYE Too many connections from your address\r\n".to_vec(),
        },
        Protocol::Pop3 { .. } => match why {
            LimitExceeded::Total => b"-ERR [SYS/TEMP] Too many connections\r\n".to_vec(),
            LimitExceeded::PerIp => b"-ERR [SYS/TEMP] Too many connections from your address\r\n".to_vec(),
        },
        Protocol::Lmtp => crate::lmtp::too_many_connections(hostname),
        Protocol::ManageSieve => crate::sieve::managesieve::too_many_connections(),
    }
}

async fn accept_tcp(
    listener: tokio::net::TcpListener,
    protocol: Protocol,
    limiter: ConnectionLimiter,
    ctx: SharedContext,
    token: SessionToken,
) {
    let mut shutdown = ctx.shutdown.clone();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = triggered(&mut shutdown) => return,
        };
        let _ = stream.set_nodelay(true);
        let guard = match limiter.try_acquire(Some(peer.ip())) {
            Ok(g) => g,
            Err(why) => {
                tracing::info!(peer = %peer, reason = %why, "connection refused");
                refuse(stream, refusal(protocol, why, &ctx.config().hostname));
                continue;
            }
        };
        let ctx = ctx.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let _held: (ConnectionGuard, SessionToken) = (guard, token);
            match protocol {
                Protocol::Imap { implicit_tls } => crate::imap::serve(stream, peer, implicit_tls, ctx).await,
                Protocol::Pop3 { implicit_tls } => crate::pop3::serve(stream, peer, implicit_tls, ctx).await,
                Protocol::Lmtp => crate::lmtp::serve(stream, crate::lmtp::Peer::Tcp(peer), ctx).await,
                Protocol::ManageSieve => crate::sieve::managesieve::serve(stream, peer, ctx).await,
            }
        });
    }
}

async fn accept_unix(
    listener: tokio::net::UnixListener,
    limiter: ConnectionLimiter,
    ctx: SharedContext,
    token: SessionToken,
) {
    let mut shutdown = ctx.shutdown.clone();
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = triggered(&mut shutdown) => return,
        };
        let guard = match limiter.try_acquire(None) {
            Ok(g) => g,
            Err(why) => {
                refuse(stream, refusal(Protocol::Lmtp, why, &ctx.config().hostname));
                continue;
            }
        };
        let ctx = ctx.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let _held: (ConnectionGuard, SessionToken) = (guard, token);
            crate::lmtp::serve(stream, crate::lmtp::Peer::Unix, ctx).await
        });
    }
}

/// Accepts control connections (`hermes undelete`) until shutdown.
async fn accept_control(listener: tokio::net::UnixListener, ctx: SharedContext, token: SessionToken) {
    let mut shutdown = ctx.shutdown.clone();
    let limiter = Arc::new(tokio::sync::Semaphore::new(MAX_CONTROL_CONNECTIONS));
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "control accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = triggered(&mut shutdown) => return,
        };
        let Ok(permit) = Arc::clone(&limiter).try_acquire_owned() else {
            refuse(stream, b"{\"ok\":false,\"error\":\"too many control connections\"}\n".to_vec());
            continue;
        };
        let ctx = ctx.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let _held = (permit, token);
            crate::control::serve_connection(stream, ctx).await
        });
    }
}

/// SIGHUP: reload the config, as the control socket's `reload` does (the result is logged).
async fn reload_on_sighup(ctx: SharedContext) {
    let mut shutdown = ctx.shutdown.clone();
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot handle SIGHUP; reload through the control socket only");
            return;
        }
    };
    loop {
        tokio::select! {
            r = hup.recv() => {
                if r.is_none() {
                    return;
                }
                tracing::info!("SIGHUP: reloading the configuration");
                let answer = crate::control::reload(&ctx).await;
                if !answer.ok {
                    tracing::warn!(errors = ?answer.errors, "SIGHUP reload refused");
                }
            }
            _ = triggered(&mut shutdown) => return,
        }
    }
}

/// Purges expired retained mail shortly after start and then every [`PURGE_INTERVAL`].
async fn purge_loop(ctx: SharedContext) {
    let mut shutdown = ctx.shutdown.clone();
    let mut next = tokio::time::Instant::now() + FIRST_PURGE_DELAY;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = triggered(&mut shutdown) => return,
        }
        next = tokio::time::Instant::now() + PURGE_INTERVAL;
        let store = ctx.store.clone();
        let started = std::time::Instant::now();
        let now = chrono::Utc::now().timestamp();
        match tokio::task::spawn_blocking(move || store.purge_expired(now)).await {
            Ok(Ok(report)) => {
                let elapsed_ms = started.elapsed().as_millis() as u64;
                if report.failed.is_empty() {
                    tracing::info!(
                        users = report.users,
                        messages = report.messages,
                        bytes = report.bytes,
                        files_removed = report.files_removed,
                        elapsed_ms,
                        "purged expired messages"
                    );
                } else {
                    tracing::warn!(
                        users = report.users,
                        messages = report.messages,
                        bytes = report.bytes,
                        files_removed = report.files_removed,
                        failed = report.failed.len(),
                        elapsed_ms,
                        "purged expired messages; some users failed and are retried at the next run"
                    );
                }
            }
            Ok(Err(e)) => tracing::error!(error = %e, "purge of expired messages failed; retried at the next run"),
            Err(e) => tracing::error!(error = %e, "purge task failed; retried at the next run"),
        }
        // XDEDUP records live as long as retained mail.
        let retention = i64::try_from(ctx.config().store.retention_days.saturating_mul(86_400)).unwrap_or(i64::MAX);
        let ctx2 = ctx.clone();
        match tokio::task::spawn_blocking(move || ctx2.dedup.purge(now.saturating_sub(retention))).await {
            Ok(Ok(dropped)) => {
                tracing::info!(dropped, kept = ctx.dedup.len(), "purged expired duplicate-suppression records")
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "purge of duplicate-suppression records failed; retried at the next run")
            }
            Err(e) => tracing::error!(error = %e, "dedup purge task failed; retried at the next run"),
        }
    }
}
