//! One LMTP connection (RFC 2033), TCP or unix socket, from greeting to close.
//!
//! The protocol itself is `hermes_proto::lmtp::Server` (sans-I/O); this module does the I/O
//! around it: reads with timeouts, writes replies in order (all replies to pipelined commands
//! go out in one write), resolves recipients in the directory (`user+tag@domain` → `user`;
//! unknown user or non-local domain: 550 5.1.1), and delivers each message once for all its
//! recipients with [`hermes_store::Store::deliver`] (one stored copy, hard-linked per user).
//!
//! Quota: at RCPT the recipient's store gets the account's current limits
//! ([`crate::quota::apply_account`]); a recipient with no room left at all is refused there,
//! and the store refuses a message that would pass the limit. Either way the answer is
//! `452 4.2.2` (the sender retries), or `552 5.2.2` with `[store] quota_permanent_failure`.
//!
//! Sieve: before storing, each recipient's active script decides where the message goes
//! ([`crate::sieve::deliver::deliver`]: mailboxes and flags, discard, redirect, vacation); a
//! broken script means INBOX, never a lost message.
//!
//! What it is not: no queue (the router's job), no TLS or AUTH (LMTP is
//! for the local MTA on loopback or the unix socket).
//!
//! Invariants:
//! - A recipient gets `250` only after `Store::deliver` returned `Ok` for it, which means the
//!   message is durable (fsync'd); a store error answers `451 4.3.0` for that recipient only.
//! - Every accepted recipient gets exactly one reply after DATA, in RCPT order.
//! - Each stored copy starts with `Return-Path:` and `Received:` only: the store writes one
//!   copy for many users, so nothing per-recipient (like `Delivered-To:`) is added.
//! - Timeouts: `limits.prelogin_timeout_secs` between transactions, `limits.idle_timeout_secs`
//!   (at most [`MAX_TRANSACTION_TIMEOUT`]) inside one; on timeout `421 4.4.2`, on shutdown
//!   `421 4.3.2` between transactions (a message being received is finished first, within the
//!   service's drain bound).

use crate::SharedContext;
use crate::deliver::{Trace, new_delivery_id, trace_headers};
use hermes_core::directory::UserId;
use hermes_proto::lmtp::{Event, ForwardPath, Message, Reply, Server, ServerConfig};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::Instrument;

/// RFC 5321 §4.5.3.2 asks clients to wait up to 10 minutes for replies; a server waiting
/// longer than that for a client inside a transaction gains nothing.
pub const MAX_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(600);
/// Read buffer per connection.
const READ_CHUNK: usize = 64 * 1024;

/// Who is on the other end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Tcp(std::net::SocketAddr),
    Unix,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Tcp(a) => a.fmt(f),
            Peer::Unix => f.write_str("unix"),
        }
    }
}

/// Serves one LMTP connection until QUIT, EOF, a timeout, too many errors or shutdown.
pub async fn serve<S>(stream: S, peer: Peer, ctx: SharedContext)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let span = tracing::info_span!("lmtp", session = %new_delivery_id(), peer = %peer);
    async move {
        match session(stream, peer, &ctx).await {
            Ok(()) => tracing::debug!("connection closed"),
            Err(e) => tracing::debug!(error = %e, "connection ended"),
        }
    }
    .instrument(span)
    .await
}

/// The refusal to write when the connection limiter says no, before closing.
pub fn too_many_connections(hostname: &str) -> Vec<u8> {
    Reply::new(421, (4, 7, 0), format!("{hostname} Too many connections, try again later")).to_bytes()
}

async fn session<S>(mut stream: S, peer: Peer, ctx: &SharedContext) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = ctx.config();
    let mut server_config = ServerConfig::new(config.hostname.clone(), config.limits.max_message_bytes);
    server_config.xdedup = true;
    let mut server: Server<UserId> = Server::new(server_config);
    let mut shutdown = ctx.shutdown.clone();
    let mut out = Vec::with_capacity(1024);
    server.greeting().write_to(&mut out);
    let mut buf = vec![0u8; READ_CHUNK];
    let between = Duration::from_secs(config.limits.prelogin_timeout_secs);
    let inside = Duration::from_secs(config.limits.idle_timeout_secs).min(MAX_TRANSACTION_TIMEOUT);
    loop {
        while let Some(event) = server.poll() {
            match event {
                Event::Reply(r) => r.write_to(&mut out),
                Event::Rcpt(path) => match resolve(ctx, &path).await {
                    Ok(user) => server.accept_rcpt(user),
                    Err(reply) => {
                        crate::control::Stats::add(&ctx.stats.lmtp_rejected, 1);
                        server.reject_rcpt(reply)
                    }
                },
                Event::Message(m) => {
                    // Replies queued so far (354 was already sent) go out before the slow part.
                    let replies = deliver(ctx, peer, m).await;
                    server.complete_message(replies);
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
        let timeout = if server.in_transaction() { inside } else { between };
        let n = tokio::select! {
            r = tokio::time::timeout(timeout, stream.read(&mut buf)) => match r {
                Ok(r) => r?,
                Err(_) => {
                    tracing::info!(timeout_secs = timeout.as_secs(), "timeout");
                    let bye = Reply::new(421, (4, 4, 2), format!("{} Timeout, closing connection", config.hostname));
                    stream.write_all(&bye.to_bytes()).await?;
                    return stream.shutdown().await;
                }
            },
            // Only interrupts a read between transactions; the loop top says goodbye.
            r = shutdown.changed(), if !*shutdown.borrow() && !server.in_transaction() => {
                if r.is_err() {
                    // The service is gone without saying so: treat it as shutdown.
                    let bye = Reply::new(421, (4, 3, 2), format!("{} Service shutting down", config.hostname));
                    stream.write_all(&bye.to_bytes()).await?;
                    return stream.shutdown().await;
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

/// Directory lookup for one RCPT: the account's user id, or the reply refusing it.
async fn resolve(ctx: &SharedContext, path: &ForwardPath) -> Result<UserId, Reply> {
    let address = match path {
        // RFC 5321 §4.5.1: <Postmaster> without a domain is the postmaster of this host.
        ForwardPath::Postmaster => format!("postmaster@{}", ctx.config().hostname),
        ForwardPath::Address(a) => a.to_string(),
    };
    let directory = ctx.directory.clone();
    let store = ctx.store.clone();
    let lookup = address.clone();
    let config = ctx.config();
    let found = tokio::task::spawn_blocking(move || {
        let account = directory.lookup(&lookup)?;
        // Load the user and give it the account's current limits before DATA.
        let room = account.as_ref().map(|a| match store.user(&a.user_id) {
            Ok(u) => {
                crate::quota::apply_account(&u, a, &config.store);
                crate::quota::has_room(&u)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the recipient's store; delivery will report it");
                true
            }
        });
        Ok::<_, hermes_core::directory::DirectoryError>(account.zip(room))
    })
    .await;
    match found {
        Ok(Ok(Some((account, true)))) => Ok(account.user_id),
        Ok(Ok(Some((_, false)))) => {
            tracing::info!(rcpt = %address, "recipient over quota");
            Err(crate::quota::over_quota_reply(&address, ctx.config().store.quota_permanent_failure))
        }
        Ok(Ok(None)) => Err(Reply::new(550, (5, 1, 1), format!("<{address}> User unknown"))),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "directory lookup failed");
            Err(Reply::new(451, (4, 3, 0), "Temporary lookup failure, try again later"))
        }
        Err(e) => {
            tracing::error!(error = %e, "directory lookup task failed");
            Err(Reply::new(451, (4, 3, 0), "Temporary lookup failure, try again later"))
        }
    }
}

/// Stores one message for all its recipients; one reply per recipient, in order.
///
/// With `XDEDUP=token`, a recipient whose account already has the token is answered `250`
/// without anything being run or stored, and the pairs delivered now are recorded (fsync'd)
/// before the replies go out ([`crate::dedup`]).
async fn deliver(ctx: &SharedContext, peer: Peer, m: Message<UserId>) -> Vec<Reply> {
    let started = Instant::now();
    let id = new_delivery_id();
    let config = ctx.config();
    let rcpt_names: Vec<String> = m.recipients.iter().map(|r| r.path.to_string()).collect();
    let return_path = m.from.to_string();
    let token = m.params.xdedup.clone();
    // Per recipient: a reply decided before delivery (duplicate, or in progress), or none.
    let mut early: Vec<Option<Reply>> = vec![None; rcpt_names.len()];
    let mut claimed: Vec<(UserId, String)> = Vec::new();
    if let Some(token) = &token {
        // One decision per account (an account named twice, e.g. with a +detail, shares it).
        let mut decided: Vec<(UserId, crate::dedup::Check)> = Vec::new();
        for (i, r) in m.recipients.iter().enumerate() {
            let check = match decided.iter().find(|(u, _)| *u == r.data) {
                Some((_, c)) => *c,
                None => {
                    let c = ctx.dedup.check(&r.data, token);
                    if c == crate::dedup::Check::Deliver {
                        claimed.push((r.data.clone(), token.clone()));
                    }
                    decided.push((r.data.clone(), c));
                    c
                }
            };
            early[i] = match check {
                crate::dedup::Check::Duplicate => Some(Reply::new(
                    250,
                    (2, 0, 0),
                    format!("<{}> already delivered (duplicate suppressed)", rcpt_names[i]),
                )),
                crate::dedup::Check::InProgress => Some(Reply::new(
                    451,
                    (4, 3, 0),
                    format!("<{}> The same message is being delivered, try again later", rcpt_names[i]),
                )),
                crate::dedup::Check::Deliver => None,
            };
        }
    }
    let todo: Vec<usize> = (0..rcpt_names.len()).filter(|&i| early[i].is_none()).collect();
    let single = (todo.len() == 1).then(|| rcpt_names[todo[0]].as_str());
    let mut raw = trace_headers(&Trace {
        return_path: &return_path,
        helo: &m.lhlo,
        peer_ip: match peer {
            Peer::Tcp(a) => Some(a.ip()),
            Peer::Unix => None,
        },
        hostname: &config.hostname,
        protocol: if m.params.smtputf8 { "UTF8LMTP" } else { "LMTP" },
        id: &id,
        single_recipient: single,
    });
    raw.extend_from_slice(&m.body);
    drop(m.body);
    let size = raw.len();
    // Sieve hook: each recipient's script picks targets (see `crate::sieve::deliver`).
    let rcpts: Vec<crate::sieve::deliver::Rcpt> = todo
        .iter()
        .map(|&i| crate::sieve::deliver::Rcpt { user: m.recipients[i].data.clone(), address: rcpt_names[i].clone() })
        .collect();
    let results = if rcpts.is_empty() {
        Vec::new()
    } else {
        let store = ctx.store.clone();
        let engine = crate::sieve::Engine::new(&config, &ctx.data);
        let sender = return_path.clone();
        match tokio::task::spawn_blocking(move || {
            let filed = crate::sieve::deliver::deliver(&engine, &store, &raw, &sender, &rcpts);
            // Index what was stored, in the background (`crate::index::ingest`).
            for (r, f) in rcpts.iter().zip(&filed) {
                if let crate::sieve::deliver::Filed::Stored(Ok(a)) = f
                    && let Ok(user) = store.user(&r.user)
                {
                    crate::index::ingest::stored(user, a.mailbox, a.uidvalidity, vec![a.uid]);
                }
            }
            filed
        })
        .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "delivery task failed");
                Vec::new()
            }
        }
    };
    let mut replies: Vec<Reply> = Vec::with_capacity(rcpt_names.len());
    for (i, rcpt) in rcpt_names.iter().enumerate() {
        if let Some(r) = early[i].take() {
            replies.push(r);
            continue;
        }
        let k = todo.iter().position(|&t| t == i).unwrap_or(usize::MAX);
        replies.push(match results.get(k) {
            Some(r) => {
                if let crate::sieve::deliver::Filed::Stored(Err(e)) = r {
                    tracing::warn!(rcpt = %rcpt, error = %e, id = %id, "delivery failed");
                }
                crate::sieve::deliver::reply(rcpt, r, &id, config.store.quota_permanent_failure)
            }
            None => Reply::new(451, (4, 3, 0), format!("<{rcpt}> Temporary failure, try again later")),
        });
    }
    if token.is_some() && !claimed.is_empty() {
        // Record every claimed account that got a 250 now; release the claims either way.
        let delivered: Vec<(UserId, String)> = claimed
            .iter()
            .filter(|(u, _)| todo.iter().any(|&i| m.recipients[i].data == *u && replies[i].code == 250))
            .cloned()
            .collect();
        let ctx2 = ctx.clone();
        let now = chrono::Utc::now().timestamp();
        let recorded = tokio::task::spawn_blocking(move || ctx2.dedup.finish(&claimed, &delivered, now)).await;
        match recorded {
            Ok(Ok(())) => {}
            // The messages are stored: 250 is the truth. Without the record a re-sent copy
            // would be delivered again, as without XDEDUP.
            Ok(Err(e)) => tracing::error!(error = %e, id = %id, "cannot record delivered XDEDUP tokens"),
            Err(e) => tracing::error!(error = %e, id = %id, "XDEDUP record task failed"),
        }
    }
    let delivered = replies.iter().filter(|r| r.code == 250).count();
    crate::control::Stats::add(&ctx.stats.lmtp_delivered, delivered as u64);
    crate::control::Stats::add(&ctx.stats.lmtp_rejected, (replies.len() - delivered) as u64);
    tracing::info!(
        id = %id,
        from = %return_path,
        recipients = rcpt_names.len(),
        delivered,
        suppressed = rcpt_names.len() - todo.len(),
        size,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "message delivered"
    );
    replies
}
