//! The router's process wiring: open the directory and the queue (recovering it), load TLS,
//! bind the MX, submission and submissions listeners and the control socket, publish what was
//! bound, start the queue runner, serve until shutdown.
//!
//! What it is not: config loading or tracing set-up (`main` does that), supervision.
//!
//! Invariants:
//! - `run/endpoints.d/router.json` is written only after every listener is bound.
//! - The queue is recovered before any listener accepts, so a restarted router delivers what
//!   a crashed one acknowledged.
//! - Each connection holds a [`ConnectionGuard`]; the three SMTP ports share one limiter
//!   (`limits.max_connections` total, `router.max_connections_per_ip` per client address).
//! - SIGHUP reloads the configuration (as `{"op":"reload"}` does; [`crate::reload`]).
//! - On shutdown: accept loops stop, sessions between transactions get 421 and in-transaction
//!   ones [`DRAIN_TIMEOUT`] to finish, the runner finishes deliveries in flight (bounded).

use crate::session::{Port, serve, too_many_connections};
use crate::{Context, Live, SharedContext, Stats};
use anyhow::Context as _;
use hermes_core::config::Config;
use hermes_core::directory::Directory;
use hermes_core::ipc::ServiceEndpoints;
use hermes_core::paths::DataDir;
use hermes_runtime::listen::{ConnectionGuard, ConnectionLimiter, bind_tcp, bind_unix};
use hermes_runtime::shutdown::{SessionToken, SessionTracker, Shutdown, Signals, triggered};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;

/// Time sessions and deliveries in flight get after shutdown starts: enough to fsync and
/// acknowledge a message being received, within the supervisor's 10 s stop timeout.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

pub async fn run(data: DataDir, config: Config) -> anyhow::Result<()> {
    let mut signals = Signals::new().context("registering signal handlers")?;
    run_until(data, config, async move {
        let sig = signals.recv().await;
        tracing::info!(signal = sig, "shutting down");
    })
    .await
}

pub async fn run_until(data: DataDir, config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    // First, so that a SIGHUP during start-up cannot end the process (its default action).
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    let directory = Directory::open(&data).context("opening the directory")?;
    let qdir = data.queue_dir();
    let (queue, recovered) = tokio::task::spawn_blocking(move || crate::queue::Queue::open(&qdir))
        .await
        .context("queue open task")?
        .context("opening the queue")?;
    tracing::info!(messages = recovered.len(), "queue recovered");
    let queue = Arc::new(queue);
    let tls = match hermes_runtime::tls::load_acceptor(&data) {
        Ok(a) => Some(a),
        Err(e) => {
            tracing::warn!(error = %e, "TLS unavailable: no STARTTLS, no submissions port");
            None
        }
    };
    let ip = config.listen;
    let r = &config.router;
    let smtp = bind_tcp(SocketAddr::new(ip, r.smtp_port)).await.context("binding SMTP")?;
    let submission = bind_tcp(SocketAddr::new(ip, r.submission_port)).await.context("binding submission")?;
    let submissions = match tls {
        Some(_) => Some(bind_tcp(SocketAddr::new(ip, r.submissions_port)).await.context("binding submissions")?),
        None => None,
    };
    let control_path = data.router_socket();
    let control = bind_unix(&control_path).with_context(|| format!("binding {}", control_path.display()))?;

    let mut endpoints = ServiceEndpoints { service: "router".into(), pid: std::process::id(), ..Default::default() };
    endpoints.tcp.insert("smtp".into(), smtp.local_addr()?.to_string());
    endpoints.tcp.insert("submission".into(), submission.local_addr()?.to_string());
    if let Some(l) = &submissions {
        endpoints.tcp.insert("submissions".into(), l.local_addr()?.to_string());
    }
    endpoints.unix.insert("router".into(), control_path.display().to_string());

    let srs_domain = config.router.srs_domain.clone().unwrap_or_else(|| config.hostname.clone());
    let srs = crate::srs::Srs::load_or_create(&data.queue_dir().join("srs.key"), &srs_domain).context("SRS key")?;
    let signal = Shutdown::new();
    let live = Live::new(config.clone(), tls, srs);
    let stats = Arc::new(Stats::default());
    let runner = crate::deliver::Runner::new(
        live.clone(),
        stats.clone(),
        data.clone(),
        directory.clone(),
        queue.clone(),
        recovered,
    );
    let ctx: SharedContext = Arc::new(Context {
        data: data.clone(),
        directory,
        live,
        queue,
        runner: runner.clone(),
        callouts: crate::callout::Callouts::new(&config.hostname),
        stats,
        shutdown: signal.subscribe(),
    });
    let tracker = SessionTracker::new();
    let limiter = ConnectionLimiter::new(config.limits.max_connections, config.router.max_connections_per_ip);
    let mut loops = JoinSet::new();
    loops.spawn(accept(smtp, Port::Mx, limiter.clone(), ctx.clone(), tracker.token()));
    loops.spawn(accept(submission, Port::Submission, limiter.clone(), ctx.clone(), tracker.token()));
    if let Some(l) = submissions {
        loops.spawn(accept(l, Port::Submissions, limiter, ctx.clone(), tracker.token()));
    }
    loops.spawn(crate::control::serve(control, ctx.clone(), signal.subscribe()));
    match hup {
        Ok(hup) => {
            loops.spawn(reload_on_sighup(hup, ctx.clone(), signal.subscribe()));
        }
        Err(e) => tracing::warn!(error = %e, "cannot handle SIGHUP; reload through the control socket only"),
    }
    let runner_task = tokio::spawn(runner.run(signal.subscribe()));

    hermes_runtime::endpoints::write_service_endpoints(&data, &endpoints).context("writing endpoints")?;
    tracing::info!(endpoints = ?endpoints.tcp, "router listening");

    shutdown.await;
    signal.trigger();
    while loops.join_next().await.is_some() {}
    let _ = std::fs::remove_file(&control_path);
    drop(ctx);
    if !tracker.drain(DRAIN_TIMEOUT).await {
        tracing::warn!("sessions still running at shutdown; abandoning them");
    }
    let _ = tokio::time::timeout(DRAIN_TIMEOUT * 2, runner_task).await;
    Ok(())
}

/// SIGHUP: reload the configuration (as `{"op":"reload"}` on the control socket).
async fn reload_on_sighup(
    mut hup: tokio::signal::unix::Signal,
    ctx: SharedContext,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = hup.recv() => {
                if r.is_none() {
                    return;
                }
                let report = crate::reload::reload(&ctx).await;
                tracing::info!(ok = report.ok, errors = ?report.errors, "SIGHUP reload");
            }
            _ = triggered(&mut shutdown) => return,
        }
    }
}

async fn accept(
    listener: tokio::net::TcpListener,
    port: Port,
    limiter: ConnectionLimiter,
    ctx: SharedContext,
    token: SessionToken,
) {
    let mut shutdown = ctx.shutdown.clone();
    loop {
        let (mut stream, peer) = tokio::select! {
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
                let text = too_many_connections(&ctx.config().hostname);
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(5), async {
                        let _ = stream.write_all(&text).await;
                        let _ = stream.shutdown().await;
                    })
                    .await;
                });
                continue;
            }
        };
        let ctx = ctx.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let _held: (ConnectionGuard, SessionToken) = (guard, token);
            serve(stream, peer, port, ctx).await
        });
    }
}
