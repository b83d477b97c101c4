//! One SMTP connection on the MX, submission or submissions port, from greeting to close.
//!
//! The protocol is `hermes_proto::smtp::Server` (sans-I/O); this module does the I/O around
//! it: reads with timeouts, replies written in order (one write per batch of pipelined
//! commands), the STARTTLS handshake, AUTH against the directory with per-address delays and
//! lockout, the sender check on submission, RCPT checks (local users, relay control), and
//! queueing each message before answering 250.
//!
//! Port policy:
//! - MX (25): STARTTLS offered, no AUTH; relay only from `relay_networks`.
//! - Submission (587): STARTTLS offered; AUTH only after TLS; MAIL requires AUTH; the sender
//!   must belong to the authenticated user (553 5.7.1 otherwise).
//! - Submissions (465): implicit TLS, otherwise as submission.
//!
//! Invariants:
//! - 250 after DATA/BDAT only once the message is durable in the queue; a queue error is 451.
//! - Bytes received before a STARTTLS handshake completes are never interpreted after it.
//! - Texts shown to clients never carry paths or internal errors (they are logged).

use crate::headers::{ReceivedInfo, received, submission_fields};
use crate::queue::{EnvRecipient, Envelope};
use crate::resolve::{Target, resolve_local, route_for, sender_owned_by, trusted_network};
use crate::{SharedContext, auth_limit, now_unix, rfc2822_now};
use hermes_core::secret::Secret;
use hermes_proto::smtp::{Event, ForwardPath, Message, Reply, ReversePath, Server, ServerConfig};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::Instrument;

/// RFC 5321 §4.5.3.2.7: a server should wait at least 5 minutes for the next command.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// TLS handshake: a slow client on a bad link takes seconds, not a minute.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
const READ_CHUNK: usize = 64 * 1024;

/// Which listener accepted the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    Mx,
    Submission,
    Submissions,
}

impl Port {
    pub fn name(self) -> &'static str {
        match self {
            Port::Mx => "smtp",
            Port::Submission => "submission",
            Port::Submissions => "submissions",
        }
    }
    fn is_submission(self) -> bool {
        !matches!(self, Port::Mx)
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The refusal for a connection over the limits.
pub fn too_many_connections(hostname: &str) -> Vec<u8> {
    Reply::new(421, (4, 7, 0), format!("{hostname} Too many connections, try again later")).to_bytes()
}

/// Serves one connection until QUIT, EOF, a timeout, too many errors or shutdown.
pub async fn serve(stream: tokio::net::TcpStream, peer: SocketAddr, port: Port, ctx: SharedContext) {
    let span = tracing::info_span!("smtp", session = %crate::queue::new_id(), peer = %peer, port = port.name());
    async move {
        match session(stream, peer, port, &ctx).await {
            Ok(()) => tracing::debug!("connection closed"),
            Err(e) => tracing::debug!(error = %e, "connection ended"),
        }
    }
    .instrument(span)
    .await
}

struct State {
    tls_info: Option<(String, String)>,
    user: Option<String>,
}

async fn session(tcp: tokio::net::TcpStream, peer: SocketAddr, port: Port, ctx: &SharedContext) -> std::io::Result<()> {
    let config = ctx.config();
    let config = &*config;
    let tls_acceptor = ctx.tls();
    let mut state = State { tls_info: None, user: None };
    let mut stream: Box<dyn Io> = match port {
        Port::Submissions => {
            let Some(acceptor) = tls_acceptor.clone() else { return Ok(()) };
            let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timeout"))??;
            state.tls_info = tls_info(tls.get_ref().1);
            Box::new(tls)
        }
        _ => Box::new(tcp),
    };
    let mut sc = ServerConfig::new(config.hostname.clone(), config.limits.max_message_bytes);
    sc.max_recipients =
        if port.is_submission() { config.router.max_recipients_submission } else { config.router.max_recipients_mx };
    sc.max_commands = config.router.max_commands;
    sc.max_auth_failures = config.router.max_auth_failures;
    sc.starttls = tls_acceptor.is_some();
    sc.auth = port.is_submission();
    sc.require_auth = port.is_submission();
    let mut server: Server<Vec<Target>> = Server::new(sc, port == Port::Submissions);
    let mut shutdown = ctx.shutdown.clone();
    let mut out = Vec::with_capacity(1024);
    server.greeting().write_to(&mut out);
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        while let Some(event) = server.poll() {
            match event {
                Event::Reply(r) => r.write_to(&mut out),
                Event::StartTls => {
                    stream.write_all(&out).await?;
                    stream.flush().await?;
                    out.clear();
                    let Some(acceptor) = tls_acceptor.clone() else { return Ok(()) };
                    let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                        .await
                        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timeout"))??;
                    state.tls_info = tls_info(tls.get_ref().1);
                    stream = Box::new(tls);
                    server.tls_established();
                    tracing::debug!(tls = ?state.tls_info, "STARTTLS done");
                }
                Event::Auth(creds) => {
                    let ip = peer.ip();
                    if auth_limit::locked_out(ip) {
                        tracing::warn!(user = %creds.username, "AUTH refused: address locked out");
                        crate::Stats::add(&ctx.stats.auth_failed, 1);
                        server.auth_failed(Reply::new(
                            454,
                            (4, 7, 0),
                            "Too many failed authentications, try again later",
                        ));
                        continue;
                    }
                    let dir = ctx.directory.clone();
                    let login = creds.username.clone();
                    let pw = Secret::new(creds.password);
                    let res = tokio::task::spawn_blocking(move || dir.authenticate(&login, &pw)).await;
                    match res {
                        Ok(Ok(auth)) => {
                            auth_limit::record_success(ip);
                            tracing::info!(user = %auth.address(), "authenticated");
                            state.user = Some(auth.address().to_string());
                            server.auth_succeeded(auth.address());
                        }
                        Ok(Err(e)) => {
                            crate::Stats::add(&ctx.stats.auth_failed, 1);
                            let delay = auth_limit::record_failure(
                                ip,
                                Duration::from_millis(config.limits.auth_fail_delay_ms),
                                Duration::from_millis(config.limits.max_auth_fail_delay_ms),
                            );
                            tracing::info!(user = %creds.username, error = %e, delay_ms = delay.as_millis() as u64, "authentication failed");
                            tokio::time::sleep(delay).await;
                            server.auth_failed(Reply::new(535, (5, 7, 8), "Authentication credentials invalid"));
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "authentication task failed");
                            server.auth_failed(Reply::new(454, (4, 7, 0), "Temporary authentication failure"));
                        }
                    }
                }
                Event::Mail(from, _params) => match check_sender(ctx, port, &state, &from).await {
                    Ok(()) => server.accept_mail(),
                    Err(r) => {
                        crate::Stats::add(&ctx.stats.rejected, 1);
                        server.reject_mail(r)
                    }
                },
                Event::Rcpt(path, _params) => match check_rcpt(ctx, peer, &state, &path).await {
                    Ok(targets) => server.accept_rcpt(targets),
                    Err(r) => {
                        crate::Stats::add(&ctx.stats.rejected, 1);
                        server.reject_rcpt(r)
                    }
                },
                Event::Message(m) => {
                    let reply = accept_message(ctx, peer, port, &state, m).await;
                    server.complete_message(reply);
                }
                Event::Close => {
                    stream.write_all(&out).await?;
                    stream.flush().await?;
                    return stream.shutdown().await;
                }
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            stream.flush().await?;
            out.clear();
        }
        if *shutdown.borrow() && !server.in_transaction() {
            let bye = Reply::new(421, (4, 3, 2), format!("{} Service shutting down", config.hostname));
            stream.write_all(&bye.to_bytes()).await?;
            return stream.shutdown().await;
        }
        let n = tokio::select! {
            r = tokio::time::timeout(COMMAND_TIMEOUT, stream.read(&mut buf)) => match r {
                Ok(r) => r?,
                Err(_) => {
                    let bye = Reply::new(421, (4, 4, 2), format!("{} Timeout, closing connection", config.hostname));
                    stream.write_all(&bye.to_bytes()).await?;
                    return stream.shutdown().await;
                }
            },
            r = shutdown.changed(), if !*shutdown.borrow() && !server.in_transaction() => {
                if r.is_err() {
                    return Ok(());
                }
                continue;
            }
        };
        if n == 0 {
            return Ok(());
        }
        server.feed(&buf[..n]);
    }
}

fn tls_info(conn: &rustls::ServerConnection) -> Option<(String, String)> {
    let version = match conn.protocol_version()? {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_string(),
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_string(),
        v => format!("{v:?}"),
    };
    let cipher = conn.negotiated_cipher_suite().map(|c| format!("{:?}", c.suite())).unwrap_or_default();
    Some((version, cipher))
}

fn temp_lookup_failure(e: impl std::fmt::Display) -> Reply {
    tracing::warn!(error = %e, "directory lookup failed");
    Reply::new(451, (4, 3, 0), "Temporary lookup failure, try again later")
}

async fn check_sender(ctx: &SharedContext, port: Port, state: &State, from: &ReversePath) -> Result<(), Reply> {
    if !port.is_submission() {
        return Ok(());
    }
    let Some(user) = state.user.clone() else {
        return Err(Reply::new(530, (5, 7, 0), "Authentication required"));
    };
    let ReversePath::Address(a) = from else {
        return Err(Reply::new(553, (5, 7, 1), "Sender address not owned by the authenticated user"));
    };
    let dir = ctx.directory.clone();
    let sender = a.to_string();
    match tokio::task::spawn_blocking(move || sender_owned_by(&dir, &user, &sender)).await {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => {
            Err(Reply::new(553, (5, 7, 1), format!("<{a}>: Sender address not owned by the authenticated user")))
        }
        Ok(Err(e)) => Err(temp_lookup_failure(e)),
        Err(e) => Err(temp_lookup_failure(e)),
    }
}

async fn check_rcpt(
    ctx: &SharedContext,
    peer: SocketAddr,
    state: &State,
    path: &ForwardPath,
) -> Result<Vec<Target>, Reply> {
    let dir = ctx.directory.clone();
    let config = ctx.config();
    let hostname = config.hostname.clone();
    let address = match path {
        // RFC 5321 §4.5.1: <Postmaster> must be accepted: the postmaster of our host name if
        // it is a local domain, else of the first local domain.
        ForwardPath::Postmaster => tokio::task::spawn_blocking(move || {
            let domain = match dir.has_domain(&hostname) {
                Ok(true) => Some(hostname.clone()),
                _ => dir.list_domains().ok().and_then(|d| d.into_iter().next()),
            };
            format!("postmaster@{}", domain.unwrap_or(hostname))
        })
        .await
        .map_err(temp_lookup_failure)?,
        ForwardPath::Address(a) => a.to_string(),
    };
    if let Some(original) = ctx.srs().reverse(&address) {
        // A bounce to a sender we rewrote when forwarding: route it back to the original.
        return Ok(vec![Target::Remote(original)]);
    }
    let domain = address.rsplit_once('@').map(|(_, d)| d.to_string()).unwrap_or_default();
    let dir = ctx.directory.clone();
    let config2 = config.clone();
    let lookup = address.clone();
    // Some(targets or None for unknown) for a local domain; None for a foreign one.
    let local = tokio::task::spawn_blocking(
        move || -> Result<Option<Option<Vec<Target>>>, hermes_core::directory::DirectoryError> {
            if dir.has_domain(&domain)? { Ok(Some(resolve_local(&dir, &config2, &lookup)?)) } else { Ok(None) }
        },
    )
    .await
    .map_err(temp_lookup_failure)?
    .map_err(temp_lookup_failure)?;
    match local {
        Some(Some(targets)) if !targets.is_empty() => verify_routed(ctx, targets).await,
        Some(_) => Err(Reply::new(550, (5, 1, 1), format!("<{address}>: Recipient address rejected: User unknown"))),
        None => {
            let domain = address.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
            if route_for(&config, domain).is_some() {
                // We are the MX of a departmental domain: verify with its server.
                verify_routed(ctx, vec![Target::Remote(address.clone())]).await
            } else if state.user.is_some() || trusted_network(&config, peer.ip()) {
                Ok(vec![Target::Remote(address)])
            } else {
                tracing::info!(rcpt = %address, "relay denied");
                Err(Reply::new(554, (5, 7, 1), format!("<{address}>: Relay access denied")))
            }
        }
    }
}

/// Callout verification of the targets that go to a departmental route with verification on.
/// A refusal (5xx downstream) becomes 550 5.1.1 for the whole RCPT.
async fn verify_routed(ctx: &SharedContext, targets: Vec<Target>) -> Result<Vec<Target>, Reply> {
    let config = ctx.config();
    for t in &targets {
        let Target::Remote(a) = t else { continue };
        let domain = a.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        if let Some(route) = route_for(&config, domain).filter(|r| r.verify_recipients)
            && ctx.callouts.verify(route, a).await == crate::callout::Verdict::Reject
        {
            return Err(Reply::new(
                550,
                (5, 1, 1),
                format!("<{a}>: Recipient address rejected: undeliverable address (verified)"),
            ));
        }
    }
    Ok(targets)
}

/// Builds the envelope and queued bytes, queues durably, hands the message to the runner.
async fn accept_message(
    ctx: &SharedContext,
    peer: SocketAddr,
    port: Port,
    state: &State,
    m: Message<Vec<Target>>,
) -> Reply {
    let started = Instant::now();
    let config = ctx.config();
    let id = crate::queue::new_id();
    let mut recipients: Vec<EnvRecipient> = Vec::new();
    for r in &m.recipients {
        for t in &r.data {
            if recipients.iter().any(|e| e.address.eq_ignore_ascii_case(t.address())) {
                continue;
            }
            recipients.push(EnvRecipient {
                address: t.address().to_string(),
                original: r.path.to_string(),
                local: matches!(t, Target::Local(_)),
                notify: r.params.notify.map(Into::into),
                orcpt: r.params.orcpt.as_ref().map(|(k, a)| format!("{k};{a}")),
            });
        }
    }
    let date = rfc2822_now();
    let single = (m.recipients.len() == 1).then(|| m.recipients[0].path.to_string());
    let mut head = received(&ReceivedInfo {
        helo: &m.helo,
        peer: peer.ip(),
        hostname: &config.hostname,
        protocol: &m.protocol,
        id: &id,
        tls: state.tls_info.clone(),
        auth_user: state.user.as_deref(),
        single_recipient: single.as_deref(),
        date: &date,
    });
    if port.is_submission() {
        head.extend_from_slice(&submission_fields(&m.body, &id, &config.hostname, &date));
    }
    let from = match &m.from {
        ReversePath::Null => String::new(),
        ReversePath::Address(a) => a.to_string(),
    };
    let mut envelope = Envelope {
        id: id.clone(),
        from: from.clone(),
        recipients,
        ret: m.params.ret.map(|r| match r {
            hermes_proto::smtp::Ret::Full => "FULL".to_string(),
            hermes_proto::smtp::Ret::Hdrs => "HDRS".to_string(),
        }),
        envid: m.params.envid.clone(),
        arrival: now_unix(),
        helo: m.helo.clone(),
        client: peer.ip().to_string(),
        auth_user: state.user.clone(),
        smtputf8: m.params.smtputf8,
        eightbit: m.params.body == hermes_proto::smtp::Body::EightBitMime || !m.body.is_ascii(),
        size: 0,
        is_dsn: false,
    };
    let queue = ctx.queue.clone();
    let body = m.body;
    let result = tokio::task::spawn_blocking(move || {
        let r = queue.enqueue(&mut envelope, &[&head, &body]);
        r.map(|()| envelope)
    })
    .await;
    match result {
        Ok(Ok(envelope)) => {
            tracing::info!(
                id = %id,
                from = %from,
                recipients = envelope.recipients.len(),
                size = envelope.size,
                user = state.user.as_deref().unwrap_or(""),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "message queued"
            );
            crate::Stats::add(&ctx.stats.accepted, 1);
            ctx.runner.add(envelope);
            Reply::new(250, (2, 0, 0), format!("Ok: queued as {id}"))
        }
        Ok(Err(e)) => {
            crate::Stats::add(&ctx.stats.rejected, 1);
            tracing::error!(error = %e, "queueing failed");
            Reply::new(451, (4, 3, 0), "Local error in processing, try again later")
        }
        Err(e) => {
            tracing::error!(error = %e, "queue task failed");
            Reply::new(451, (4, 3, 0), "Local error in processing, try again later")
        }
    }
}
