//! The admin service's process wiring: load TLS, bind HTTPS on `[admin] port`, publish
//! `run/endpoints.d/admin.json` (`"admin": host:port`), accept connections under the connection
//! limits, complete TLS handshakes off the accept loop, serve HTTP/1.1 with axum, and shut down
//! gracefully.
//!
//! What it is not: no plain-HTTP listener (the admin UI is HTTPS only; a browser is told to
//! stay on HTTPS by HSTS), no config loading or tracing set-up (`main` does those).
//!
//! Invariants:
//! - The endpoints file is written only after the listener is bound, with the real address.
//! - Each connection holds a [`ConnectionGuard`] (at most [`MAX_CONNECTIONS`] in total and
//!   [`MAX_CONNECTIONS_PER_IP`] per client) from accept to close, including its handshake.
//! - A TLS handshake must finish within [`HANDSHAKE_TIMEOUT`], and a connection that neither
//!   reads nor writes for [`IDLE_TIMEOUT`] is closed (slow-loris clients cannot pin slots).
//! - On shutdown the accept loop stops, idle keep-alive connections close, requests in flight
//!   get [`DRAIN_TIMEOUT`] to finish.

use crate::state::AppState;
use anyhow::Context as _;
use hermes_core::config::Config;
use hermes_core::ipc::ServiceEndpoints;
use hermes_core::paths::DataDir;
use hermes_runtime::listen::{ConnectionGuard, ConnectionLimiter, bind_tcp};
use hermes_runtime::shutdown::{Shutdown, Signals, triggered};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

/// A local admin UI has a few users: 256 connections is generous and bounds memory.
pub const MAX_CONNECTIONS: usize = 256;
/// Browsers open up to 6 connections per origin; a few tabs and an API script fit in 32.
pub const MAX_CONNECTIONS_PER_IP: usize = 32;
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A browser keeps an idle connection open for about a minute; two is plenty.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed accept (e.g. EMFILE) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Handshaken connections waiting for the HTTP server to pick them up.
const HANDOFF_QUEUE: usize = 64;

/// The client's address, as axum's `ConnectInfo` carries it to handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// One accepted, handshaken connection: the TLS stream, its connection-limit slot, and an
/// idle timer reset by every byte read or written.
pub struct TlsIo {
    stream: TlsStream<tokio::net::TcpStream>,
    _guard: ConnectionGuard,
    idle: Pin<Box<tokio::time::Sleep>>,
}

impl TlsIo {
    fn touch(&mut self) {
        self.idle.as_mut().reset(tokio::time::Instant::now() + IDLE_TIMEOUT);
    }
    fn check_idle(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Error> {
        match self.idle.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(std::io::Error::new(std::io::ErrorKind::TimedOut, "idle connection")),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for TlsIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.touch();
                Poll::Ready(r)
            }
            Poll::Pending => this.check_idle(cx).map(Err),
        }
    }
}

impl AsyncWrite for TlsIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.stream).poll_write(cx, buf) {
            Poll::Ready(r) => {
                this.touch();
                Poll::Ready(r)
            }
            Poll::Pending => this.check_idle(cx).map(Err),
        }
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.stream).poll_flush(cx) {
            Poll::Pending => this.check_idle(cx).map(Err),
            r => r,
        }
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Hands handshaken connections to axum.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsIo, SocketAddr)>,
    local: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TlsIo, SocketAddr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept loop ended (shutdown): no more connections, ever.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>> for PeerAddr {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> PeerAddr {
        PeerAddr(*stream.remote_addr())
    }
}

/// Accepts TCP connections until shutdown; each within the limits is handshaken in its own
/// task and handed to the HTTP server.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    limiter: ConnectionLimiter,
    tx: mpsc::Sender<(TlsIo, SocketAddr)>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
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
        let guard = match limiter.try_acquire(Some(peer.ip())) {
            Ok(g) => g,
            Err(why) => {
                // No HTTP can be spoken before the handshake; closing is the refusal.
                tracing::info!(peer = %peer, reason = %why, "connection refused");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // Read per connection: installing a certificate replaces it (see `AppState::tls`).
        let Some(acceptor) = state.acceptor() else { continue };
        let tx = tx.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let io = TlsIo { stream: tls, _guard: guard, idle: Box::pin(tokio::time::sleep(IDLE_TIMEOUT)) };
                    let _ = tx.send((io, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(peer = %peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(peer = %peer, "TLS handshake timed out"),
            }
        });
    }
}

/// The admin service: serves until SIGTERM or SIGINT, then shuts down gracefully.
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
    let acceptor = hermes_runtime::tls::load_acceptor(&data)
        .context("loading the TLS certificate (the admin UI is HTTPS only)")?;
    let state = Arc::new(AppState::open(data.clone(), config.clone())?);
    state.set_acceptor(acceptor);

    let addr = SocketAddr::new(config.listen, config.admin.port);
    let tcp = bind_tcp(addr).await.with_context(|| format!("binding the admin UI on {addr}"))?;
    let local = tcp.local_addr()?;

    // First boot: `hermes up` issues the setup token before starting us; when run on its own
    // (`hermes serve admin`) with no usable token, issue one and print it on our stdout.
    let st = state.clone();
    let pending = tokio::task::spawn_blocking(move || -> anyhow::Result<bool> {
        if st.admins.has_admins()? {
            return Ok(false);
        }
        if !st.admins.setup_pending()?
            && let Some(token) = st.admins.issue_setup_token()?
        {
            println!("hermes: admin setup token: {token}");
        }
        Ok(true)
    })
    .await
    .context("setup check task")??;
    if pending {
        tracing::warn!(url = %format!("https://{local}/setup"), "no admin account yet: first-boot setup pending (the one-time token is on the console of `hermes up`)");
    }

    let signal = Shutdown::new();
    let (tx, rx) = mpsc::channel(HANDOFF_QUEUE);
    let limiter = ConnectionLimiter::new(MAX_CONNECTIONS, MAX_CONNECTIONS_PER_IP);
    let accept = tokio::spawn(accept_loop(tcp, state.clone(), limiter, tx, signal.subscribe()));

    let sampler = tokio::spawn(crate::rates::sampler(state.clone(), signal.subscribe()));
    let app = crate::web::router(state.clone());
    let mut stop = signal.subscribe();
    let server = tokio::spawn(async move {
        axum::serve(TlsListener { rx, local }, app.into_make_service_with_connect_info::<PeerAddr>())
            .with_graceful_shutdown(async move { triggered(&mut stop).await })
            .await
    });

    let mut endpoints = ServiceEndpoints { service: "admin".into(), pid: std::process::id(), ..Default::default() };
    endpoints.tcp.insert("admin".into(), local.to_string());
    hermes_runtime::endpoints::write_service_endpoints(&data, &endpoints).context("writing endpoints")?;
    tracing::info!(admin = %local, "admin service listening");

    shutdown.await;
    signal.trigger();
    let _ = accept.await;
    let _ = sampler.await;
    match tokio::time::timeout(DRAIN_TIMEOUT, server).await {
        Ok(Ok(Ok(()))) => tracing::info!("all admin connections ended"),
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "admin server ended with an error"),
        Ok(Err(e)) => tracing::error!(error = %e, "admin server task failed"),
        Err(_) => tracing::warn!(
            timeout_secs = DRAIN_TIMEOUT.as_secs(),
            "admin requests still running at shutdown; abandoning them"
        ),
    }
    Ok(())
}
