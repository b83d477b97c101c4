//! One IMAP connection: the read/dispatch/write loop, the state machine and the commands that
//! need no more than a few lines (CAPABILITY, NOOP, ID, ENABLE, NAMESPACE, STARTTLS, LOGOUT).
//!
//! What it is: [`run`] owns the socket from accept to close. It feeds bytes to the framing
//! [`CommandReader`], answers continuations and rejections, parses each framed command, checks
//! it is allowed in the current state, runs its handler (other modules of `imap`), keeps the
//! selected mailbox in step with the store before and after the command, and writes the tagged
//! reply. What it is not: the handlers of the larger verbs (see the module map in `imap`).
//!
//! Invariants:
//! - Output is buffered in a [`BufWriter`] and flushed exactly when the reader needs more input,
//!   so a pipeline of commands is answered in one write and nothing is left unflushed while the
//!   session waits on the client.
//! - Before a command runs in the selected state the session learns of new messages and flag
//!   changes, and of expunges unless the command names messages by sequence number (its numbers
//!   were chosen against the old numbering; SEARCH counts too, as its keys may hold sequence
//!   sets); after it runs, expunges are reported unless the command was FETCH, STORE or SEARCH
//!   by message number (RFC 9051 §7.5.1).
//! - The framing limits are the tight pre-login ones until login succeeds, then the configured
//!   ones (`limits.max_line`, `max_message_bytes`, `max_literals_per_command`).
//! - After [`MAX_BAD_COMMANDS`] consecutive `BAD` replies the client is disconnected.

use super::auth::SessionSlot;
use super::reply::{Reply, Status};
use super::stream::Stream;
use super::sync::Selected;
use super::{SERVER_NAME, append, compress, fetch, idle, login, mailbox, quota, search, sort, store_copy};
use crate::SharedContext;
use hermes_core::directory::Authenticated;
use hermes_proto::imap::{
    self as p, Command, CommandBody, CommandReader, Event, Limits as FrameLimits, MailboxName, RawCommand, Rejection,
};
use hermes_store::{StoreError, UserStore};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tracing::Instrument as _;

/// Consecutive `BAD` replies tolerated before `BYE` (Dovecot uses 20 as well).
pub const MAX_BAD_COMMANDS: u32 = 20;
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 8 * 1024;
/// Output buffer: one flush carries several small responses or a good slice of a FETCH.
const WRITE_BUFFER: usize = 8 * 1024;
/// Output buffer while IDLE-ing: a few unsolicited `EXISTS`/`FETCH` lines per change; a larger
/// burst is simply written in more pieces. Idle connections are the many, so they stay small.
pub(super) const IDLE_WRITE_BUFFER: usize = 512;
/// Input buffered between commands beyond this is given back (see
/// `CommandReader::release_memory`): a 10 KB APPEND must not pin its buffer while the
/// connection idles.
const KEEP_INPUT: usize = 1024;

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// Why a session stops.
#[derive(Debug)]
pub(super) enum End {
    /// The client went away, logged out, timed out or was told `BYE`.
    Closed,
    Io(io::Error),
}

impl From<io::Error> for End {
    fn from(e: io::Error) -> Self {
        End::Io(e)
    }
}

/// A logged-in user.
pub(super) struct LoggedIn {
    pub auth: Authenticated,
    pub store: Arc<UserStore>,
    _slot: SessionSlot,
}

impl LoggedIn {
    /// The full address the user logged in with, for logs.
    pub fn address(&self) -> &str {
        self.auth.address()
    }

    pub fn new(auth: Authenticated, store: Arc<UserStore>, slot: SessionSlot) -> LoggedIn {
        LoggedIn { auth, store, _slot: slot }
    }
}

pub(super) struct Session {
    pub ctx: SharedContext,
    pub peer: SocketAddr,
    pub io: BufWriter<Stream>,
    pub reader: CommandReader,
    rbuf: Vec<u8>,
    pub user: Option<LoggedIn>,
    pub selected: Option<Selected>,
    /// `ENABLE IMAP4rev2` was issued.
    pub rev2: bool,
    /// Mailbox names travel as UTF-8 (IMAP4rev2 enabled), not modified UTF-7.
    pub utf8: bool,
    /// CONDSTORE is enabled (RFC 7162 §3.1: by ENABLE or by the first command using it).
    pub condstore: bool,
    /// `ENABLE QRESYNC` was issued (implies CONDSTORE).
    pub qresync: bool,
    pub auth_failures: u32,
    bad_commands: u32,
    /// Set by a handler that wants the connection closed with `* BYE <text>` after its reply.
    pub close_after: Option<&'static str>,
    pub shutdown: Option<tokio::sync::watch::Receiver<bool>>,
}

/// Serves one connection (see [`super::serve`]).
pub(super) async fn run(tcp: TcpStream, peer: SocketAddr, implicit_tls: bool, ctx: SharedContext) {
    let id = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!("imap", session = id, peer = %peer);
    async move {
        let _ = tcp.set_nodelay(true);
        let prelogin = Duration::from_secs(ctx.config().limits.prelogin_timeout_secs);
        let stream = if implicit_tls {
            let Some(acceptor) = ctx.tls() else {
                tracing::warn!("implicit TLS connection but no certificate loaded");
                return;
            };
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
        let mut session = Session {
            ctx,
            peer,
            io: BufWriter::with_capacity(WRITE_BUFFER, stream),
            reader: CommandReader::new(FrameLimits::pre_auth()),
            rbuf: Vec::new(),
            user: None,
            selected: None,
            rev2: false,
            utf8: false,
            condstore: false,
            qresync: false,
            auth_failures: 0,
            bad_commands: 0,
            close_after: None,
            shutdown: None,
        };
        session.shutdown = session.ctx_shutdown();
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
    /// The service's shutdown signal.
    fn ctx_shutdown(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        Some(self.ctx.shutdown.clone())
    }

    async fn serve(&mut self) -> Result<(), End> {
        let greeting = format!("* OK [CAPABILITY {}] {SERVER_NAME} ready\r\n", self.capabilities());
        self.io.write_all(greeting.as_bytes()).await?;
        loop {
            let Some(event) = self.reader.next() else {
                self.io.flush().await?;
                self.reader.release_memory(KEEP_INPUT);
                self.fill().await?;
                continue;
            };
            match event {
                Event::Continuation { .. } => {
                    self.io.write_all(b"+ Ready for literal data\r\n").await?;
                }
                Event::Rejected { tag, reason } => self.rejected(tag, reason).await?,
                Event::Command(raw) => self.command(raw).await?,
            }
        }
    }

    /// Reads once from the client (with the prelogin or idle timeout) and feeds the reader.
    pub async fn fill(&mut self) -> Result<(), End> {
        let limits = &self.ctx.config().limits;
        let secs = if self.user.is_some() { limits.idle_timeout_secs } else { limits.prelogin_timeout_secs };
        let timeout = Duration::from_secs(secs);
        // Allocated on first use and freed while IDLE-ing (see `release_idle_buffers`).
        if self.rbuf.len() < READ_CHUNK {
            self.rbuf.resize(READ_CHUNK, 0);
        }
        let read = tokio::time::timeout(timeout, self.io.read(&mut self.rbuf));
        let shutdown = wait_shutdown(&mut self.shutdown);
        let n = tokio::select! {
            r = read => match r {
                Err(_) => {
                    self.bye("Autologout; idle for too long").await;
                    return Err(End::Closed);
                }
                Ok(Ok(0)) => return Err(End::Closed),
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(End::Io(e)),
            },
            () = shutdown => {
                self.bye("Server shutting down").await;
                return Err(End::Closed);
            }
        };
        let chunk = self.rbuf.get(..n).unwrap_or(&[]);
        self.reader.feed(chunk);
        Ok(())
    }

    /// Replaces the byte stream under the session (STARTTLS, COMPRESS), keeping one value that
    /// every handler writes to. The old stream is returned; the session is left with a
    /// detached placeholder until the caller installs the new one with [`Session::install`].
    pub fn detach_stream(&mut self) -> Stream {
        std::mem::replace(&mut self.io, BufWriter::with_capacity(WRITE_BUFFER, Stream::Detached)).into_inner()
    }

    /// Frees the per-connection buffers an idle connection does not need: the 8 KiB read
    /// chunk (IDLE reads into a small stack buffer), excess command-reader capacity, and the
    /// 8 KiB output buffer, replaced by an [`IDLE_WRITE_BUFFER`] one. The output buffer must
    /// be empty (flushed) when this is called. [`Session::restore_buffers`] undoes it.
    pub fn release_idle_buffers(&mut self) {
        self.rbuf = Vec::new();
        self.reader.release_memory(0);
        if self.io.buffer().is_empty() {
            let stream = self.detach_stream_with(IDLE_WRITE_BUFFER);
            self.io = BufWriter::with_capacity(IDLE_WRITE_BUFFER, stream);
        }
    }

    /// Back to the full output buffer after IDLE (the buffer must be flushed).
    pub fn restore_buffers(&mut self) {
        if self.io.buffer().is_empty() {
            let stream = self.detach_stream_with(0);
            self.install(stream);
        }
    }

    fn detach_stream_with(&mut self, capacity: usize) -> Stream {
        std::mem::replace(&mut self.io, BufWriter::with_capacity(capacity, Stream::Detached)).into_inner()
    }

    /// Installs a stream (see [`Session::detach_stream`]).
    pub fn install(&mut self, stream: Stream) {
        self.io = BufWriter::with_capacity(WRITE_BUFFER, stream);
    }

    /// Writes `* BYE text` and flushes, ignoring errors (the connection is ending anyway).
    pub async fn bye(&mut self, text: &str) {
        let _ = self.io.write_all(format!("* BYE {text}\r\n").as_bytes()).await;
        let _ = self.io.flush().await;
    }

    async fn rejected(&mut self, tag: Option<String>, reason: Rejection) -> Result<(), End> {
        let reply = match reason {
            Rejection::LineTooLong => Reply::bad(reason.text()),
            Rejection::TooManyLiterals => Reply::bad(reason.text()).with_code("LIMIT"),
            Rejection::LiteralTooBig { .. } | Rejection::CommandTooBig => Reply::no(reason.text()).with_code("TOOBIG"),
        };
        tracing::info!(reason = reason.text(), "command rejected");
        self.finish(tag.as_deref().unwrap_or("*"), reply).await
    }

    async fn command(&mut self, raw: RawCommand) -> Result<(), End> {
        match p::parse_command(&raw) {
            Ok(cmd) => self.execute(cmd).await,
            Err(e) => {
                let tag = e.tag.clone().unwrap_or_else(|| "*".to_string());
                self.finish(&tag, Reply::bad(e.message.into_owned())).await
            }
        }
    }

    /// Writes the tagged reply and applies the BAD-command limit.
    pub async fn finish(&mut self, tag: &str, reply: Reply) -> Result<(), End> {
        self.io.write_all(&reply.render(tag)).await?;
        if reply.status == Status::Bad {
            self.bad_commands += 1;
            if self.bad_commands >= MAX_BAD_COMMANDS {
                self.bye("Too many invalid commands").await;
                return Err(End::Closed);
            }
        } else {
            self.bad_commands = 0;
        }
        Ok(())
    }

    async fn execute(&mut self, cmd: Command) -> Result<(), End> {
        let Command { tag, body } = cmd;
        let name = body.name();
        let started = Instant::now();
        if let Some(reply) = self.state_check(&body) {
            return self.finish(&tag, reply).await;
        }
        match body {
            CommandBody::Logout => {
                self.io.write_all(b"* BYE Logging out\r\n").await?;
                self.io.write_all(&Reply::ok("LOGOUT completed").render(&tag)).await?;
                self.io.flush().await?;
                return Err(End::Closed);
            }
            CommandBody::StartTls => return self.starttls(&tag).await,
            CommandBody::Compress(mechanism) => {
                return compress::compress(self, &tag, &mechanism).await;
            }
            _ => {}
        }
        // Commands that end or replace the selection do not sync the old one.
        let keeps_selection = !matches!(
            body,
            CommandBody::Select { .. }
                | CommandBody::Examine { .. }
                | CommandBody::Close
                | CommandBody::Unselect
                | CommandBody::Idle
        );
        let allow_expunge_after = match &body {
            CommandBody::Fetch(f) => f.uid,
            CommandBody::Store(s) => s.uid,
            CommandBody::Search(s) => s.uid,
            CommandBody::Sort(s) => s.uid,
            CommandBody::Thread(t) => t.uid,
            _ => true,
        };
        // Before a command that names messages by sequence number, no EXPUNGE may shift them.
        let uses_msns = match &body {
            CommandBody::Fetch(f) => !f.uid,
            CommandBody::Store(s) => !s.uid,
            CommandBody::Search(_) | CommandBody::Sort(_) | CommandBody::Thread(_) => true,
            CommandBody::Copy { uid, .. } | CommandBody::Move { uid, .. } => !uid,
            _ => false,
        };
        if keeps_selection && self.selected.is_some() {
            self.sync(!uses_msns).await?;
        }
        let reply = self.dispatch(&tag, body).await?;
        if keeps_selection && self.selected.is_some() {
            self.sync(allow_expunge_after).await?;
        }
        tracing::debug!(command = name, status = ?reply.status, elapsed = ?started.elapsed(), "command");
        self.finish(&tag, reply).await?;
        if let Some(text) = self.close_after.take() {
            self.bye(text).await;
            return Err(End::Closed);
        }
        Ok(())
    }

    /// `Some(BAD)` when the command is not allowed in the current state.
    fn state_check(&self, body: &CommandBody) -> Option<Reply> {
        use CommandBody as C;
        match body {
            C::Capability | C::Noop | C::Logout | C::Id(_) => None,
            C::StartTls | C::Authenticate { .. } | C::Login { .. } => {
                self.user.as_ref().map(|_| Reply::bad("Already authenticated"))
            }
            _ if self.user.is_none() => Some(Reply::bad("Command not allowed before login")),
            C::Enable(_) if self.selected.is_some() => {
                Some(Reply::bad("ENABLE is not allowed with a mailbox selected"))
            }
            C::Check
            | C::Close
            | C::Unselect
            | C::Expunge { .. }
            | C::Search(_)
            | C::Fetch(_)
            | C::Store(_)
            | C::Copy { .. }
            | C::Move { .. }
            | C::Sort(_)
            | C::Thread(_)
                if self.selected.is_none() =>
            {
                Some(Reply::bad("No mailbox selected"))
            }
            _ => None,
        }
    }

    async fn dispatch(&mut self, tag: &str, body: CommandBody) -> Result<Reply, End> {
        use CommandBody as C;
        Ok(match body {
            C::Capability => {
                let line = format!("* CAPABILITY {}\r\n", self.capabilities());
                self.io.write_all(line.as_bytes()).await?;
                Reply::ok("CAPABILITY completed")
            }
            C::Noop => Reply::ok("NOOP completed"),
            C::Check => Reply::ok("CHECK completed"),
            C::Id(fields) => {
                if let Some(fields) = &fields {
                    let summary: Vec<String> = fields
                        .iter()
                        .take(8)
                        .map(|(k, v)| format!("{}={}", truncate(k, 32), truncate(v.as_deref().unwrap_or("NIL"), 64)))
                        .collect();
                    tracing::info!(client_id = %summary.join(" "), "ID");
                }
                let line =
                    format!("* ID (\"name\" \"{SERVER_NAME}\" \"version\" \"{}\")\r\n", env!("CARGO_PKG_VERSION"));
                self.io.write_all(line.as_bytes()).await?;
                Reply::ok("ID completed")
            }
            C::Enable(caps) => self.enable(caps).await?,
            C::Namespace => {
                self.io.write_all(b"* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n").await?;
                Reply::ok("NAMESPACE completed")
            }
            C::Login { username, password } => login::login(self, username, password).await?,
            C::Authenticate { mechanism, initial_response } => {
                login::authenticate(self, tag, &mechanism, initial_response).await?
            }
            C::Select { mailbox, params } => mailbox::select(self, &mailbox, &params, false).await?,
            C::Examine { mailbox, params } => mailbox::select(self, &mailbox, &params, true).await?,
            C::Create { mailbox, special_use, params } => {
                mailbox::create(self, &mailbox, &special_use, &params).await?
            }
            C::Delete(mailbox) => mailbox::delete(self, &mailbox).await?,
            C::Rename { from, to, params } => mailbox::rename(self, &from, &to, &params).await?,
            C::Subscribe(mailbox) => mailbox::subscribe(self, &mailbox, true).await?,
            C::Unsubscribe(mailbox) => mailbox::subscribe(self, &mailbox, false).await?,
            C::List(list) => mailbox::list(self, list).await?,
            C::Lsub { reference, pattern } => mailbox::lsub(self, &reference, &pattern).await?,
            C::Status { mailbox, items } => mailbox::status(self, &mailbox, &items).await?,
            C::Append { mailbox, messages } => append::append(self, &mailbox, messages).await?,
            C::Idle => idle::idle(self).await?,
            C::Close => store_copy::close(self).await?,
            C::Unselect => {
                self.selected = None;
                Reply::ok("UNSELECT completed")
            }
            C::Expunge { uid_set } => store_copy::expunge(self, uid_set.as_ref()).await?,
            C::Search(cmd) => search::search(self, tag, cmd).await?,
            C::Fetch(cmd) => fetch::fetch(self, cmd).await?,
            C::Store(cmd) => store_copy::store(self, cmd).await?,
            C::Copy { uid, set, mailbox } => store_copy::copy_move(self, uid, &set, &mailbox, false).await?,
            C::Move { uid, set, mailbox } => store_copy::copy_move(self, uid, &set, &mailbox, true).await?,
            C::Sort(cmd) => sort::sort(self, tag, cmd).await?,
            C::Thread(cmd) => sort::thread(self, cmd).await?,
            C::GetQuota(root) => quota::getquota(self, &root).await?,
            C::GetQuotaRoot(mailbox) => quota::getquotaroot(self, &mailbox).await?,
            C::SetQuota { .. } => quota::setquota(),
            // Handled in `execute` (it replaces the stream after the tagged reply).
            C::Compress(_) => Reply::server_bug(),
            // Handled in `execute`.
            C::Logout | C::StartTls => Reply::server_bug(),
        })
    }

    async fn enable(&mut self, caps: Vec<String>) -> Result<Reply, End> {
        let mut enabled = Vec::new();
        for cap in caps {
            if cap.eq_ignore_ascii_case("IMAP4rev2") && !self.rev2 {
                self.rev2 = true;
                self.utf8 = true;
                enabled.push("IMAP4rev2");
            } else if cap.eq_ignore_ascii_case("CONDSTORE") && !self.condstore {
                self.enable_condstore();
                enabled.push("CONDSTORE");
            } else if cap.eq_ignore_ascii_case("QRESYNC") && !self.qresync {
                // RFC 7162 §3.2.3: QRESYNC implies CONDSTORE (the client must not rely on
                // CONDSTORE being listed as well).
                self.enable_condstore();
                self.qresync = true;
                enabled.push("QRESYNC");
            }
        }
        let mut line = String::from("* ENABLED");
        for c in enabled {
            line.push(' ');
            line.push_str(c);
        }
        line.push_str("\r\n");
        self.io.write_all(line.as_bytes()).await?;
        Ok(Reply::ok("ENABLE completed"))
    }

    /// Turns CONDSTORE on for the rest of the session (RFC 7162 §3.1: ENABLE, SELECT
    /// (CONDSTORE), and the first FETCH MODSEQ/CHANGEDSINCE, STORE UNCHANGEDSINCE, SEARCH
    /// MODSEQ or STATUS HIGHESTMODSEQ all do).
    pub fn enable_condstore(&mut self) {
        self.condstore = true;
        if let Some(sel) = self.selected.as_mut() {
            sel.condstore = true;
        }
    }

    async fn starttls(&mut self, tag: &str) -> Result<(), End> {
        if self.io.get_ref().is_tls() {
            return self.finish(tag, Reply::bad("TLS is already active")).await;
        }
        let Some(acceptor) = self.ctx.tls() else {
            return self.finish(tag, Reply::no("STARTTLS is not available")).await;
        };
        // CVE-2011-0411 class: anything pipelined after STARTTLS was sent in clear text and
        // must not be executed inside the TLS session.
        let dropped = self.reader.discard_buffered();
        if dropped > 0 {
            tracing::warn!(bytes = dropped, "discarded input pipelined after STARTTLS");
        }
        self.io.write_all(&Reply::ok("Begin TLS negotiation now").render(tag)).await?;
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
                // Bytes that reached us during the handshake were not TLS application data.
                self.reader.discard_buffered();
                tracing::debug!("STARTTLS negotiated");
                Ok(())
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "STARTTLS handshake failed");
                Err(End::Closed)
            }
            Err(_) => Err(End::Closed),
        }
    }

    /// Whether LOGIN and AUTHENTICATE are refused (clear text, and not an allowed loopback).
    pub fn login_disabled(&self) -> bool {
        let loopback_allowed = self.peer.ip().is_loopback() && self.ctx.config().imap.plaintext_auth_on_loopback;
        !(self.io.get_ref().is_tls() || loopback_allowed)
    }

    /// The capability list for the current state.
    pub fn capabilities(&self) -> String {
        let mut caps: Vec<String> = vec!["IMAP4rev1".into(), "IMAP4rev2".into()];
        if self.user.is_none() {
            if !self.io.get_ref().is_tls() && self.ctx.tls().is_some() {
                caps.push("STARTTLS".into());
            }
            if self.login_disabled() {
                caps.push("LOGINDISABLED".into());
            } else {
                caps.push("AUTH=PLAIN".into());
            }
            caps.push("SASL-IR".into());
        }
        for c in [
            "LITERAL+",
            "ENABLE",
            "ID",
            "IDLE",
            "NAMESPACE",
            "UNSELECT",
            "UIDPLUS",
            "MOVE",
            "CHILDREN",
            "SPECIAL-USE",
            "CREATE-SPECIAL-USE",
            "LIST-EXTENDED",
            "LIST-STATUS",
            "STATUS=SIZE",
            "ESEARCH",
            "MULTIAPPEND",
            "BINARY",
            "CONDSTORE",
            "QRESYNC",
            "SORT",
            "SORT=DISPLAY",
            "ESORT",
            "THREAD=ORDEREDSUBJECT",
            "THREAD=REFERENCES",
            "SEARCHRES",
            "WITHIN",
            "QUOTA",
            "QUOTA=RES-STORAGE",
            "QUOTA=RES-MESSAGE",
        ] {
            caps.push(c.into());
        }
        // RFC 4978 §4: not advertised once compression is active.
        if self.user.is_some() && !self.io.get_ref().is_compressed() {
            caps.push("COMPRESS=DEFLATE".into());
        }
        caps.push(format!("APPENDLIMIT={}", self.ctx.config().limits.max_message_bytes));
        caps.join(" ")
    }

    /// The framing limits after login.
    pub fn full_limits(&self) -> FrameLimits {
        let l = &self.ctx.config().limits;
        FrameLimits {
            max_line: l.max_line,
            max_literal: l.max_message_bytes,
            max_literals: l.max_literals_per_command,
            // MULTIAPPEND of a few maximum-size messages, and never less than 64 MiB.
            max_command: l.max_message_bytes.saturating_mul(4).max(64 << 20),
        }
    }

    pub fn user_store(&self) -> Option<Arc<UserStore>> {
        self.user.as_ref().map(|u| Arc::clone(&u.store))
    }

    /// A mailbox name from the wire, as the store spells it (UTF-8). IMAP4rev1 sessions send
    /// modified UTF-7 (RFC 3501 §5.1.3); IMAP4rev2 sessions send UTF-8.
    pub fn mailbox_name(&self, name: &MailboxName) -> Result<String, Reply> {
        if name.is_inbox() {
            return Ok("INBOX".to_string());
        }
        let decoded = if self.utf8 {
            name.as_str().to_string()
        } else {
            p::utf7::decode(name.as_str())
                .map_err(|_| Reply::no("Mailbox name is not valid modified UTF-7").with_code("CANNOT"))?
        };
        Ok(super::list::canonical_name(&decoded))
    }

    /// Runs a store call on the blocking pool for the logged-in user.
    pub async fn store_call<T: Send + 'static>(
        &self,
        command: &'static str,
        destination: bool,
        f: impl FnOnce(&UserStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, Reply> {
        let Some(store) = self.user_store() else {
            return Err(Reply::bad("Command not allowed before login"));
        };
        match tokio::task::spawn_blocking(move || f(&store)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Reply::from_store(&e, command, destination)),
            Err(e) => {
                tracing::error!(command, error = %e, "store task failed");
                Err(Reply::server_bug())
            }
        }
    }

    /// Brings the client's picture of the selected mailbox up to date (see [`Selected::sync`]).
    /// If the mailbox was deleted under us, the client is told `BYE` (as Dovecot does).
    pub async fn sync(&mut self, allow_expunge: bool) -> Result<(), End> {
        let Some(sel) = &self.selected else {
            return Ok(());
        };
        let id = sel.id;
        let view = match self.store_call("SYNC", false, move |u| u.view(id)).await {
            Ok(v) => v,
            Err(r) if r.code.as_deref() == Some("NONEXISTENT") => {
                self.bye("Selected mailbox was deleted, have to disconnect").await;
                return Err(End::Closed);
            }
            // A transient store error: try again at the next command.
            Err(_) => return Ok(()),
        };
        let mut out = Vec::new();
        if let Some(sel) = self.selected.as_mut() {
            sel.sync(view, allow_expunge, &mut out);
        }
        if !out.is_empty() {
            self.io.write_all(&out).await?;
        }
        Ok(())
    }

    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), End> {
        self.io.write_all(bytes).await?;
        Ok(())
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

async fn wait_shutdown(rx: &mut Option<tokio::sync::watch::Receiver<bool>>) {
    match rx {
        Some(rx) => hermes_runtime::shutdown::triggered(rx).await,
        None => std::future::pending().await,
    }
}
