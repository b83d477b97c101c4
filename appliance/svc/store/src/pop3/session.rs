//! One POP3 connection: the read/dispatch/write loop, the state machine, and the commands that
//! need no more than a few lines (CAPA, NOOP, UTF8, STLS, QUIT in AUTHORIZATION).
//!
//! What it is: [`run`] owns the socket from accept to close. It feeds bytes to the bounded
//! [`LineReader`], parses each line, checks the command is allowed in the current state, runs
//! its handler ([`super::login`], [`super::transaction`]) and writes the response.
//!
//! Invariants:
//! - Output is buffered in a [`BufWriter`] and flushed exactly when the reader needs more input
//!   (or before a deliberate wait: the failed-login delay, an AUTH challenge), so a pipeline
//!   of commands (RFC 2449 PIPELINING) is answered in order and in one write.
//! - Every command line gets exactly one response (an over-long line too: `-ERR`, after the
//!   line's end arrives); after [`MAX_BAD_COMMANDS`] consecutive errors the connection closes.
//! - The timeout is `limits.prelogin_timeout_secs` in AUTHORIZATION and
//!   `limits.idle_timeout_secs` in TRANSACTION (RFC 1939 §3 asks for at least 10 minutes; the
//!   default config's idle timeout is longer). A timeout or a service shutdown closes the
//!   connection without entering UPDATE: nothing is deleted.
//! - After STLS the session starts over in AUTHORIZATION with nothing buffered and no USER
//!   remembered (RFC 2595 §4).

use super::login;
use super::maildrop::Maildrop;
use super::stream::Stream;
use super::{GREETING, transaction};
use crate::SharedContext;
use crate::imap::auth::SessionSlot;
use hermes_core::directory::Authenticated;
use hermes_proto::pop3::{
    self as p, Command, LineEvent, LineReader, MAX_COMMAND_LINE, ParseErrorKind, RespCode, Response, multiline,
};
use hermes_store::UserStore;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tracing::Instrument as _;

/// Consecutive `-ERR` answers to malformed or misplaced commands before we hang up (as IMAP).
pub const MAX_BAD_COMMANDS: u32 = 20;
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 8 * 1024;
/// Output buffer: several pipelined answers, or a good slice of a RETR, per write.
pub(super) const WRITE_BUFFER: usize = 32 * 1024;

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// Why a session stops.
#[derive(Debug)]
pub(super) enum End {
    /// QUIT, the client went away, a timeout, a shutdown, or too many errors.
    Closed,
    Io(io::Error),
}

impl From<io::Error> for End {
    fn from(e: io::Error) -> Self {
        End::Io(e)
    }
}

/// The TRANSACTION state: a logged-in user and the maildrop.
pub(super) struct Transaction {
    pub auth: Authenticated,
    pub store: Arc<UserStore>,
    pub maildrop: Maildrop,
    pub _slot: SessionSlot,
}

pub(super) enum State {
    /// Not logged in; `user` is the name a USER command gave, waiting for PASS.
    Authorization {
        user: Option<String>,
    },
    Transaction(Box<Transaction>),
}

pub(super) struct Session {
    pub ctx: SharedContext,
    pub peer: SocketAddr,
    pub io: BufWriter<Stream>,
    pub reader: LineReader,
    rbuf: Vec<u8>,
    pub state: State,
    pub auth_failures: u32,
    bad_commands: u32,
    /// Set by a handler that wants the connection closed after its response.
    pub close_after: bool,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

/// Serves one connection (see [`super::serve`]).
pub(super) async fn run(tcp: TcpStream, peer: SocketAddr, implicit_tls: bool, ctx: SharedContext) {
    let id = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!("pop3", session = id, peer = %peer);
    async move {
        let _ = tcp.set_nodelay(true);
        let stream = if implicit_tls {
            let Some(acceptor) = ctx.tls() else {
                tracing::warn!("implicit TLS connection but no certificate loaded");
                return;
            };
            let prelogin = Duration::from_secs(ctx.config().limits.prelogin_timeout_secs);
            match tokio::time::timeout(prelogin, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => Stream::Tls(Box::new(tls)),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!("TLS handshake timed out");
                    return;
                }
            }
        } else {
            Stream::Plain(tcp)
        };
        let shutdown = ctx.shutdown.clone();
        let mut session = Session {
            ctx,
            peer,
            io: BufWriter::with_capacity(WRITE_BUFFER, stream),
            reader: LineReader::new(MAX_COMMAND_LINE),
            rbuf: vec![0; READ_CHUNK],
            state: State::Authorization { user: None },
            auth_failures: 0,
            bad_commands: 0,
            close_after: false,
            shutdown,
        };
        tracing::debug!(tls = implicit_tls, "connected");
        let result = session.serve().await;
        let _ = session.io.flush().await;
        let _ = session.io.shutdown().await;
        match result {
            Ok(()) | Err(End::Closed) => tracing::debug!("closed"),
            Err(End::Io(e)) => tracing::debug!(error = %e, "connection error"),
        }
    }
    .instrument(span)
    .await
}

impl Session {
    async fn serve(&mut self) -> Result<(), End> {
        self.reply(&Response::ok(GREETING)).await?;
        loop {
            let Some(event) = self.reader.next_line() else {
                self.io.flush().await?;
                self.fill().await?;
                continue;
            };
            match event {
                LineEvent::TooLong => {
                    tracing::info!("command line too long");
                    self.error(Response::err("Line too long")).await?;
                }
                LineEvent::Line(line) => match p::parse_command(&line) {
                    Ok(cmd) => self.execute(cmd).await?,
                    Err(e) => {
                        let text = match e.kind {
                            ParseErrorKind::UnknownCommand => "Unknown command",
                            ParseErrorKind::BadArguments => e.message,
                        };
                        self.error(Response::err(text)).await?;
                    }
                },
            }
            if self.close_after {
                return Err(End::Closed);
            }
        }
    }

    /// Reads once from the client (with the state's timeout, watching for shutdown) and feeds
    /// the reader. A timeout, EOF or shutdown ends the session without UPDATE.
    pub async fn fill(&mut self) -> Result<(), End> {
        let limits = &self.ctx.config().limits;
        let secs = match self.state {
            State::Authorization { .. } => limits.prelogin_timeout_secs,
            State::Transaction(_) => limits.idle_timeout_secs,
        };
        let read = tokio::time::timeout(Duration::from_secs(secs), self.io.read(&mut self.rbuf));
        let n = tokio::select! {
            r = read => match r {
                Err(_) => {
                    tracing::info!(timeout_secs = secs, "idle timeout");
                    // Not a response to any command; clients treat it as the end, as Dovecot's.
                    let _ = self.reply(&Response::err("Disconnected for inactivity")).await;
                    let _ = self.io.flush().await;
                    return Err(End::Closed);
                }
                Ok(Ok(0)) => return Err(End::Closed),
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(End::Io(e)),
            },
            () = hermes_runtime::shutdown::triggered(&mut self.shutdown) => {
                tracing::debug!("service shutting down");
                let _ = self.reply(&Response::err("Server shutting down").with_code(RespCode::SysTemp)).await;
                let _ = self.io.flush().await;
                return Err(End::Closed);
            }
        };
        let chunk = self.rbuf.get(..n).unwrap_or(&[]);
        self.reader.feed(chunk);
        Ok(())
    }

    /// Writes a response (buffered).
    pub async fn reply(&mut self, r: &Response) -> Result<(), End> {
        self.io.write_all(&r.to_bytes()).await?;
        Ok(())
    }

    /// Writes an `-ERR` for a bad or misplaced command and applies the bad-command limit.
    pub async fn error(&mut self, r: Response) -> Result<(), End> {
        self.reply(&r).await?;
        self.bad_commands += 1;
        if self.bad_commands >= MAX_BAD_COMMANDS {
            tracing::info!("too many bad commands");
            self.reply(&Response::err("Too many bad commands, closing connection")).await?;
            return Err(End::Closed);
        }
        Ok(())
    }

    async fn execute(&mut self, cmd: Command) -> Result<(), End> {
        let name = cmd.name();
        let started = Instant::now();
        let logged_in = matches!(self.state, State::Transaction(_));
        let ok = match cmd {
            Command::Capa => {
                let mut out = Response::ok("Capability list follows").to_bytes();
                for cap in self.capabilities() {
                    multiline::push_line(&mut out, cap.as_bytes());
                }
                multiline::end(&mut out);
                self.io.write_all(&out).await?;
                true
            }
            Command::Quit if !logged_in => {
                self.reply(&Response::ok("Logging out")).await?;
                self.io.flush().await?;
                return Err(End::Closed);
            }
            Command::Quit => return transaction::quit(self).await,
            Command::Noop if logged_in => {
                self.reply(&Response::ok("")).await?;
                true
            }
            Command::User(_)
            | Command::Pass(_)
            | Command::Apop { .. }
            | Command::Auth { .. }
            | Command::Stls
            | Command::Utf8
                if logged_in =>
            {
                return self.error(Response::err("Already logged in")).await;
            }
            Command::User(name) => login::user(self, name).await?,
            Command::Pass(password) => login::pass(self, password).await?,
            Command::Apop { .. } => {
                return self.error(Response::err("APOP is not supported: use USER/PASS or AUTH PLAIN over TLS")).await;
            }
            Command::Auth { mechanism, initial_response } => login::auth(self, mechanism, initial_response).await?,
            Command::Stls => return self.stls().await,
            Command::Utf8 => {
                // RFC 6856: user names, passwords and messages are UTF-8 from now on; they
                // already are (we never down-convert), so this only acknowledges.
                self.reply(&Response::ok("UTF8 enabled")).await?;
                true
            }
            Command::Noop
            | Command::Stat
            | Command::List(_)
            | Command::Retr(_)
            | Command::Dele(_)
            | Command::Rset
            | Command::Top { .. }
            | Command::Uidl(_)
                if !logged_in =>
            {
                return self.error(Response::err("Command not allowed before login")).await;
            }
            other => transaction::command(self, other).await?,
        };
        tracing::debug!(command = name, ok, elapsed = ?started.elapsed(), "command");
        if ok {
            self.bad_commands = 0;
        }
        Ok(())
    }

    /// STLS (RFC 2595 §4): answer, then hand the TCP stream to the TLS handshake.
    async fn stls(&mut self) -> Result<(), End> {
        if self.io.get_ref().is_tls() {
            return self.error(Response::err("TLS is already active")).await;
        }
        let Some(acceptor) = self.ctx.tls() else {
            return self.error(Response::err("STLS is not available")).await;
        };
        // CVE-2011-0411 class: input pipelined after STLS arrived in clear text and must not
        // be executed inside the TLS session.
        let dropped = self.reader.discard_buffered();
        if dropped > 0 {
            tracing::warn!(bytes = dropped, "discarded input pipelined after STLS");
        }
        self.reply(&Response::ok("Begin TLS negotiation now")).await?;
        self.io.flush().await?;
        let plain =
            std::mem::replace(&mut self.io, BufWriter::with_capacity(WRITE_BUFFER, Stream::Detached)).into_inner();
        let Stream::Plain(tcp) = plain else {
            return Err(End::Closed);
        };
        let timeout = Duration::from_secs(self.ctx.config().limits.prelogin_timeout_secs);
        match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => {
                self.io = BufWriter::with_capacity(WRITE_BUFFER, Stream::Tls(Box::new(tls)));
                self.reader.discard_buffered();
                self.state = State::Authorization { user: None };
                self.bad_commands = 0;
                tracing::debug!("STLS negotiated");
                Ok(())
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "STLS handshake failed");
                Err(End::Closed)
            }
            Err(_) => Err(End::Closed),
        }
    }

    /// Whether USER/PASS and AUTH PLAIN may be used now: over TLS, or from loopback when the
    /// config allows clear text there.
    pub fn plaintext_allowed(&self) -> bool {
        let loopback_allowed = self.peer.ip().is_loopback() && self.ctx.config().pop3.plaintext_auth_on_loopback;
        self.io.get_ref().is_tls() || loopback_allowed
    }

    /// The CAPA list for the current state (RFC 2449 §5-6).
    pub fn capabilities(&self) -> Vec<String> {
        let mut caps: Vec<String> = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "EXPIRE NEVER"]
            .into_iter()
            .map(String::from)
            .collect();
        if let State::Authorization { .. } = self.state {
            if self.plaintext_allowed() {
                caps.push("USER".into());
                caps.push("SASL PLAIN".into());
                caps.push("UTF8 USER".into());
            } else {
                caps.push("UTF8".into());
            }
            if !self.io.get_ref().is_tls() && self.ctx.tls().is_some() {
                caps.push("STLS".into());
            }
        }
        caps.push(format!("IMPLEMENTATION {}", crate::imap::SERVER_NAME));
        caps
    }
}
