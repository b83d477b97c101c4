//! SMTP server protocol (RFC 5321), sans-I/O.
//!
//! What it is: [`Server`], a state machine the caller feeds bytes ([`Server::feed`]) and polls
//! for [`Event`]s ([`Server::poll`]): replies to write, a TLS upgrade to perform, credentials,
//! senders and recipients to decide, messages to queue. It frames command lines, parses
//! commands ([`command`]), enforces the command sequence, decodes DATA (the LMTP codec's
//! strict [`DataDecoder`]) and BDAT chunks, and runs SASL PLAIN/LOGIN exchanges ([`sasl`]).
//! Extensions: PIPELINING (RFC 2920), SIZE (RFC 1870), 8BITMIME (RFC 6152), SMTPUTF8
//! (RFC 6531), ENHANCEDSTATUSCODES (RFC 2034), CHUNKING (RFC 3030), DSN (RFC 3461),
//! STARTTLS (RFC 3207), AUTH (RFC 4954).
//!
//! What it is not: no sockets, clocks, files, directory or TLS. Whether a sender or recipient
//! is acceptable, whether credentials are valid and whether a message was queued are the
//! caller's answers ([`Server::accept_mail`], [`Server::accept_rcpt`], [`Server::auth_succeeded`],
//! [`Server::complete_message`]); the relay decision lives in the router.
//!
//! Invariants:
//! - Replies come out of [`Server::poll`] in the order of the commands they answer (pipelining).
//! - Memory is bounded: a command or SASL line longer than `max_line` is discarded as it arrives
//!   (500 5.5.2); message data beyond `max_message_bytes` (DATA or the sum of BDAT chunks) is
//!   consumed without being kept and answered 552 5.3.4; at most `max_recipients` RCPTs,
//!   `max_commands` commands and `max_errors` errors per session (then 421 and close).
//! - DATA ends only on CRLF.CRLF: bare LF or bare CR never ends it (SMTP smuggling).
//! - After STARTTLS is accepted, every byte already received is discarded and the session
//!   state (EHLO, transaction, authentication) is reset (RFC 3207 §4.2, CVE-2011-0411): the
//!   caller must not feed plaintext received before the handshake.
//! - Addresses carrying relay tricks (percent hack, bang path, quoted `@`) and source routes
//!   are refused at RCPT for everyone ([`policy`]).
//! - Nothing panics on any input.

pub mod command;
pub mod policy;
pub mod sasl;

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests;

pub use crate::lmtp::address::{Address, AddressError, ForwardPath, ReversePath};
pub use crate::lmtp::data::DataDecoder;
pub use crate::lmtp::reply::{EnhancedStatus, Reply};
pub use command::{Body, Command, MailParams, Notify, RcptParams, Ret, parse_command};
pub use sasl::Credentials;

use std::collections::VecDeque;

/// RFC 5321 §4.5.3.1.4 sets 512 octets for a command line; long addresses with DSN parameters
/// (ORCPT can be 500 characters) exceed it, so we allow 4 KiB, as Postfix's line_length_limit
/// allows 2 KiB and Exim 16 KiB.
pub const DEFAULT_MAX_LINE: usize = 4096;
/// RFC 5321 §4.5.3.1.8 requires at least 100 recipients per transaction.
pub const DEFAULT_MAX_RECIPIENTS: usize = 100;
/// Bad commands tolerated per connection before 421 (Postfix's smtpd_hard_error_limit is 20).
pub const DEFAULT_MAX_ERRORS: usize = 20;
/// Commands per connection before 421: a busy relay sends a few thousand messages over one
/// connection (about 5 commands each); more is a client pinning a session forever.
pub const DEFAULT_MAX_COMMANDS: usize = 10_000;
/// Failed AUTH attempts per connection before 421 (the caller also delays each failure).
pub const DEFAULT_MAX_AUTH_FAILURES: usize = 3;

/// What the server needs to know about its port; everything else is per event.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Our host name, in the greeting, EHLO reply and 221/421.
    pub hostname: String,
    pub max_message_bytes: u64,
    pub max_line: usize,
    pub max_recipients: usize,
    pub max_errors: usize,
    pub max_commands: usize,
    pub max_auth_failures: usize,
    /// Offer STARTTLS (a certificate is loaded and the connection is not TLS yet).
    pub starttls: bool,
    /// Offer AUTH PLAIN LOGIN on this port (submission). Only over TLS unless
    /// `auth_without_tls`.
    pub auth: bool,
    pub auth_without_tls: bool,
    /// MAIL needs a successful AUTH first (submission, RFC 6409 §4.3).
    pub require_auth: bool,
}

impl ServerConfig {
    pub fn new(hostname: impl Into<String>, max_message_bytes: u64) -> Self {
        ServerConfig {
            hostname: hostname.into(),
            max_message_bytes,
            max_line: DEFAULT_MAX_LINE,
            max_recipients: DEFAULT_MAX_RECIPIENTS,
            max_errors: DEFAULT_MAX_ERRORS,
            max_commands: DEFAULT_MAX_COMMANDS,
            max_auth_failures: DEFAULT_MAX_AUTH_FAILURES,
            starttls: false,
            auth: false,
            auth_without_tls: false,
            require_auth: false,
        }
    }
}

/// An accepted recipient and the caller's data for it (e.g. where it routes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient<R> {
    pub path: ForwardPath,
    pub params: RcptParams,
    pub data: R,
}

/// A complete message to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<R> {
    /// The EHLO/HELO argument.
    pub helo: String,
    /// RFC 3848 `with` keyword: ESMTP, ESMTPS, ESMTPSA, UTF8SMTPS, ...
    pub protocol: String,
    pub from: ReversePath,
    pub params: MailParams,
    /// In RCPT order.
    pub recipients: Vec<Recipient<R>>,
    /// Unstuffed message bytes, as sent.
    pub body: Vec<u8>,
}

/// What the caller must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<R> {
    /// Write this reply.
    Reply(Reply),
    /// Write the replies taken so far (the last is 220), then perform the TLS handshake and call
    /// [`Server::tls_established`] (or close the connection if it fails).
    StartTls,
    /// Check these credentials and call [`Server::auth_succeeded`] or [`Server::auth_failed`].
    Auth(Credentials),
    /// Decide this sender: [`Server::accept_mail`] or [`Server::reject_mail`].
    Mail(ReversePath, MailParams),
    /// Decide this recipient: [`Server::accept_rcpt`] or [`Server::reject_rcpt`].
    Rcpt(ForwardPath, RcptParams),
    /// Queue this message and call [`Server::complete_message`] with the reply (250 only once
    /// it is durable).
    Message(Message<R>),
    /// Write any replies already taken, then close the connection.
    Close,
}

#[derive(Debug)]
struct Transaction<R> {
    from: ReversePath,
    params: MailParams,
    recipients: Vec<Recipient<R>>,
    rcpt_commands: usize,
    /// BDAT chunks received so far (None until the first BDAT).
    chunks: Option<Vec<u8>>,
    chunk_bytes: u64,
    too_large: bool,
}

#[derive(Debug)]
enum Phase {
    Command,
    AwaitMail(ReversePath, MailParams),
    AwaitRcpt(ForwardPath, RcptParams),
    AwaitAuth,
    /// AUTH PLAIN sent 334: the next line is the response.
    AuthPlain,
    /// AUTH LOGIN: waiting for the username (None) or the password.
    AuthLogin(Option<String>),
    AwaitTls,
    Data(DataDecoder),
    /// Reading a BDAT chunk: bytes left, LAST, and the reply owed when the chunk is refused.
    Bdat {
        remaining: u64,
        last: bool,
        refused: Option<Reply>,
    },
    AwaitDelivery,
    Closed,
}

/// One SMTP server session. `R` is what the caller attaches to an accepted recipient.
#[derive(Debug)]
pub struct Server<R> {
    config: ServerConfig,
    input: Vec<u8>,
    pos: usize,
    discarding: bool,
    helo: Option<(String, bool)>,
    tls: bool,
    authenticated: Option<String>,
    txn: Option<Transaction<R>>,
    phase: Phase,
    out: VecDeque<Event<R>>,
    errors: usize,
    commands: usize,
    auth_failures: usize,
}

impl<R> Server<R> {
    /// A session; `tls` is true for implicit TLS (port 465), where the handshake already ran.
    pub fn new(config: ServerConfig, tls: bool) -> Self {
        Server {
            config,
            input: Vec::new(),
            pos: 0,
            discarding: false,
            helo: None,
            tls,
            authenticated: None,
            txn: None,
            phase: Phase::Command,
            out: VecDeque::new(),
            errors: 0,
            commands: 0,
            auth_failures: 0,
        }
    }

    /// `220 HOST ESMTP Hermes`, to write when the connection opens.
    pub fn greeting(&self) -> Reply {
        Reply::plain(220, vec![format!("{} ESMTP Hermes", self.config.hostname)])
    }

    /// Adds received bytes. Call [`Server::poll`] until it returns `None` before feeding more.
    /// Bytes fed while a TLS upgrade is pending are dropped (they were sent in plaintext).
    pub fn feed(&mut self, bytes: &[u8]) {
        if matches!(self.phase, Phase::Closed | Phase::AwaitTls) {
            return;
        }
        if self.pos > 0 && self.pos == self.input.len() {
            self.input.clear();
            self.pos = 0;
        } else if self.pos > 64 * 1024 && self.pos * 2 > self.input.len() {
            self.input.drain(..self.pos);
            self.pos = 0;
        }
        self.input.extend_from_slice(bytes);
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed) && self.out.is_empty()
    }
    /// True while the caller owes an answer to an event.
    pub fn is_waiting(&self) -> bool {
        matches!(
            self.phase,
            Phase::AwaitMail(..) | Phase::AwaitRcpt(..) | Phase::AwaitAuth | Phase::AwaitDelivery | Phase::AwaitTls
        )
    }
    /// True while message data is being received.
    pub fn in_data(&self) -> bool {
        matches!(self.phase, Phase::Data(_) | Phase::Bdat { .. })
    }
    pub fn in_transaction(&self) -> bool {
        self.txn.is_some()
    }
    pub fn is_tls(&self) -> bool {
        self.tls
    }
    /// The authenticated user, once AUTH succeeded.
    pub fn authenticated(&self) -> Option<&str> {
        self.authenticated.as_deref()
    }
    pub fn helo(&self) -> Option<&str> {
        self.helo.as_ref().map(|(h, _)| h.as_str())
    }

    fn auth_offered(&self) -> bool {
        self.config.auth && (self.tls || self.config.auth_without_tls)
    }

    /// RFC 3848 protocol name for `Received: ... with X`.
    fn protocol(&self, smtputf8: bool) -> String {
        let esmtp = self.helo.as_ref().is_some_and(|(_, e)| *e);
        let mut p = String::from(match (smtputf8, esmtp) {
            (true, _) => "UTF8SMTP",
            (false, true) => "ESMTP",
            (false, false) => "SMTP",
        });
        if esmtp || smtputf8 {
            if self.tls {
                p.push('S');
            }
            if self.authenticated.is_some() {
                p.push('A');
            }
        }
        p
    }

    /// The TLS handshake after STARTTLS succeeded: the session starts over (RFC 3207 §4.2).
    pub fn tls_established(&mut self) {
        if matches!(self.phase, Phase::AwaitTls) {
            self.tls = true;
            self.helo = None;
            self.txn = None;
            self.authenticated = None;
            self.input.clear();
            self.pos = 0;
            self.discarding = false;
            self.phase = Phase::Command;
        }
    }

    pub fn auth_succeeded(&mut self, user: impl Into<String>) {
        if matches!(self.phase, Phase::AwaitAuth) {
            self.authenticated = Some(user.into());
            self.phase = Phase::Command;
            self.reply(Reply::new(235, (2, 7, 0), "Authentication successful"));
        }
    }

    /// Refuses the pending credentials with `reply` (535 5.7.8, or 454 4.7.0 on a lookup error).
    pub fn auth_failed(&mut self, reply: Reply) {
        if matches!(self.phase, Phase::AwaitAuth) {
            self.phase = Phase::Command;
            self.auth_failure(reply);
        }
    }

    fn auth_failure(&mut self, reply: Reply) {
        self.auth_failures += 1;
        if self.auth_failures >= self.config.max_auth_failures {
            self.reply(reply);
            let host = self.config.hostname.clone();
            self.reply(Reply::new(421, (4, 7, 0), format!("{host} Too many failed authentication attempts")));
            self.close();
        } else {
            self.reply(reply);
        }
    }

    pub fn accept_mail(&mut self) {
        if let Phase::AwaitMail(from, params) = std::mem::replace(&mut self.phase, Phase::Command) {
            self.txn = Some(Transaction {
                from,
                params,
                recipients: Vec::new(),
                rcpt_commands: 0,
                chunks: None,
                chunk_bytes: 0,
                too_large: false,
            });
            self.reply(Reply::new(250, (2, 1, 0), "Sender OK"));
        }
    }

    pub fn reject_mail(&mut self, reply: Reply) {
        if let Phase::AwaitMail(..) = std::mem::replace(&mut self.phase, Phase::Command) {
            self.reply(reply);
        }
    }

    pub fn accept_rcpt(&mut self, data: R) {
        if let Phase::AwaitRcpt(path, params) = std::mem::replace(&mut self.phase, Phase::Command) {
            let reply = Reply::new(250, (2, 1, 5), "Recipient OK");
            if let Some(txn) = self.txn.as_mut() {
                txn.recipients.push(Recipient { path, params, data });
            }
            self.reply(reply);
        }
    }

    pub fn reject_rcpt(&mut self, reply: Reply) {
        if let Phase::AwaitRcpt(..) = std::mem::replace(&mut self.phase, Phase::Command) {
            self.reply(reply);
        }
    }

    /// Answers the pending [`Event::Message`]; the transaction is over either way.
    pub fn complete_message(&mut self, reply: Reply) {
        if matches!(self.phase, Phase::AwaitDelivery) {
            self.phase = Phase::Command;
            self.reply(reply);
        }
    }

    /// The next thing to do, or `None` when more input (or an answer) is needed.
    pub fn poll(&mut self) -> Option<Event<R>> {
        loop {
            if let Some(ev) = self.out.pop_front() {
                return Some(ev);
            }
            match &mut self.phase {
                Phase::Closed
                | Phase::AwaitMail(..)
                | Phase::AwaitRcpt(..)
                | Phase::AwaitAuth
                | Phase::AwaitDelivery
                | Phase::AwaitTls => return None,
                Phase::Data(decoder) => {
                    let p = decoder.feed(&self.input[self.pos..]);
                    self.pos += p.consumed;
                    if !p.finished {
                        return None;
                    }
                    self.finish_data();
                }
                Phase::Bdat { remaining, .. } => {
                    let avail = (self.input.len() - self.pos) as u64;
                    let take = avail.min(*remaining) as usize;
                    *remaining -= take as u64;
                    let done = *remaining == 0;
                    let chunk_start = self.pos;
                    self.pos += take;
                    if let Some(txn) = self.txn.as_mut()
                        && let Some(chunks) = txn.chunks.as_mut()
                        && matches!(&self.phase, Phase::Bdat { refused: None, .. })
                    {
                        txn.chunk_bytes = txn.chunk_bytes.saturating_add(take as u64);
                        if txn.chunk_bytes > self.config.max_message_bytes {
                            txn.too_large = true;
                            *chunks = Vec::new();
                        } else if !txn.too_large {
                            chunks.extend_from_slice(&self.input[chunk_start..chunk_start + take]);
                        }
                    }
                    if !done {
                        return None;
                    }
                    self.finish_chunk();
                }
                Phase::AuthPlain | Phase::AuthLogin(_) | Phase::Command => match self.next_line() {
                    Some(line) => self.handle_line(line),
                    None if !self.out.is_empty() => continue,
                    None => return None,
                },
            }
        }
    }

    fn next_line(&mut self) -> Option<Vec<u8>> {
        let avail = &self.input[self.pos..];
        let Some(nl) = memchr::memchr(b'\n', avail) else {
            if avail.len() > self.config.max_line {
                self.discarding = true;
                self.pos = self.input.len();
            }
            return None;
        };
        let line = &avail[..nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if self.discarding || line.len() > self.config.max_line {
            self.pos += nl + 1;
            self.discarding = false;
            if !matches!(self.phase, Phase::Command) {
                self.phase = Phase::Command;
            }
            self.error(Reply::new(500, (5, 5, 2), "Line too long"));
            return None;
        }
        let line = line.to_vec();
        self.pos += nl + 1;
        Some(line)
    }

    fn error(&mut self, reply: Reply) {
        self.errors += 1;
        if self.errors >= self.config.max_errors {
            let host = self.config.hostname.clone();
            self.reply(Reply::new(421, (4, 7, 0), format!("{host} Too many errors, closing connection")));
            self.close();
        } else {
            self.reply(reply);
        }
    }

    fn close(&mut self) {
        self.out.push_back(Event::Close);
        self.phase = Phase::Closed;
        self.input = Vec::new();
        self.pos = 0;
        self.txn = None;
    }

    fn reply(&mut self, r: Reply) {
        self.out.push_back(Event::Reply(r));
    }

    fn handle_line(&mut self, line: Vec<u8>) {
        match std::mem::replace(&mut self.phase, Phase::Command) {
            Phase::AuthPlain => return self.auth_plain_response(&line),
            Phase::AuthLogin(user) => return self.auth_login_response(&line, user),
            _ => {}
        }
        self.commands += 1;
        if self.commands > self.config.max_commands {
            let host = self.config.hostname.clone();
            self.reply(Reply::new(421, (4, 7, 0), format!("{host} Too many commands, closing connection")));
            return self.close();
        }
        let Ok(line) = String::from_utf8(line) else {
            return self.error(Reply::new(500, (5, 5, 2), "Invalid characters in command"));
        };
        if line.chars().any(|c| c.is_control() && c != '\t') {
            return self.error(Reply::new(500, (5, 5, 2), "Invalid characters in command"));
        }
        let cmd = match parse_command(&line) {
            Ok(c) => c,
            Err(r) => return self.error(r),
        };
        self.handle_command(cmd);
    }

    fn handle_command(&mut self, cmd: Command) {
        match cmd {
            Command::Hello { extended, host } => {
                self.txn = None;
                self.helo = Some((host, extended));
                let c = &self.config;
                if !extended {
                    return self.reply(Reply::plain(250, vec![c.hostname.clone()]));
                }
                let mut lines = vec![
                    c.hostname.clone(),
                    "PIPELINING".into(),
                    format!("SIZE {}", c.max_message_bytes),
                    "8BITMIME".into(),
                    "SMTPUTF8".into(),
                    "ENHANCEDSTATUSCODES".into(),
                    "CHUNKING".into(),
                    "DSN".into(),
                ];
                if c.starttls && !self.tls {
                    lines.push("STARTTLS".into());
                }
                if self.auth_offered() && self.authenticated.is_none() {
                    lines.push("AUTH PLAIN LOGIN".into());
                }
                self.reply(Reply::plain(250, lines));
            }
            Command::StartTls => {
                if self.tls {
                    return self.error(Reply::new(503, (5, 5, 1), "TLS already active"));
                }
                if !self.config.starttls {
                    return self.error(Reply::new(502, (5, 5, 1), "STARTTLS not available"));
                }
                if self.helo.is_none() {
                    return self.error(Reply::new(503, (5, 5, 1), "Send EHLO first"));
                }
                self.reply(Reply::new(220, (2, 0, 0), "Ready to start TLS"));
                // Anything pipelined after STARTTLS was sent in plaintext: drop it.
                self.input.clear();
                self.pos = 0;
                self.phase = Phase::AwaitTls;
                self.out.push_back(Event::StartTls);
            }
            Command::Auth { mechanism, initial } => self.auth(mechanism, initial),
            Command::Mail(from, params) => {
                let Some((_, esmtp)) = &self.helo else {
                    return self.error(Reply::new(503, (5, 5, 1), "Send EHLO first"));
                };
                if self.txn.is_some() {
                    return self.error(Reply::new(503, (5, 5, 1), "Nested MAIL command"));
                }
                if !esmtp && params != MailParams::default() {
                    return self.error(Reply::new(555, (5, 5, 4), "Parameters need EHLO"));
                }
                if self.config.require_auth && self.authenticated.is_none() {
                    return self.reply(Reply::new(530, (5, 7, 0), "Authentication required"));
                }
                if params.size.is_some_and(|s| s > self.config.max_message_bytes) {
                    return self.reply(Reply::new(552, (5, 3, 4), "Message size exceeds fixed maximum message size"));
                }
                if !from.is_ascii() && !params.smtputf8 {
                    return self.reply(Reply::new(553, (5, 6, 7), "Non-ASCII address requires SMTPUTF8"));
                }
                self.out.push_back(Event::Mail(from.clone(), params.clone()));
                self.phase = Phase::AwaitMail(from, params);
            }
            Command::Rcpt(path, params) => {
                let max = self.config.max_recipients;
                let Some(txn) = self.txn.as_mut() else {
                    return self.error(Reply::new(503, (5, 5, 1), "Need MAIL command first"));
                };
                if txn.chunks.is_some() {
                    return self.error(Reply::new(503, (5, 5, 1), "RCPT after BDAT"));
                }
                if txn.rcpt_commands >= max {
                    return self.reply(Reply::new(452, (4, 5, 3), "Too many recipients"));
                }
                txn.rcpt_commands += 1;
                if !path.is_ascii() && !txn.params.smtputf8 {
                    return self.reply(Reply::new(553, (5, 6, 7), "Non-ASCII address requires SMTPUTF8"));
                }
                if let ForwardPath::Address(a) = &path
                    && let Some(trick) = policy::relay_trick(a)
                {
                    return self.reply(Reply::new(
                        550,
                        (5, 7, 1),
                        format!("Relay access denied: {}", trick.describe()),
                    ));
                }
                self.out.push_back(Event::Rcpt(path.clone(), params.clone()));
                self.phase = Phase::AwaitRcpt(path, params);
            }
            Command::Data => match &self.txn {
                None => self.error(Reply::new(503, (5, 5, 1), "Need MAIL command first")),
                Some(t) if t.chunks.is_some() => self.error(Reply::new(503, (5, 5, 1), "DATA after BDAT")),
                Some(t) if t.recipients.is_empty() => self.error(Reply::new(554, (5, 5, 1), "No valid recipients")),
                Some(_) => {
                    self.reply(Reply::plain(354, vec!["End data with <CR><LF>.<CR><LF>".into()]));
                    self.phase = Phase::Data(DataDecoder::new(self.config.max_message_bytes));
                }
            },
            Command::Bdat { size, last } => {
                // The chunk follows the command whatever we answer: read it to stay in sync.
                let refused = match self.txn.as_mut() {
                    None => Some(Reply::new(503, (5, 5, 1), "Need MAIL command first")),
                    Some(t) if t.recipients.is_empty() => Some(Reply::new(554, (5, 5, 1), "No valid recipients")),
                    Some(t) => {
                        t.chunks.get_or_insert_with(Vec::new);
                        None
                    }
                };
                self.phase = Phase::Bdat { remaining: size, last, refused };
            }
            Command::Rset => {
                self.txn = None;
                self.reply(Reply::new(250, (2, 0, 0), "OK"));
            }
            Command::Noop => self.reply(Reply::new(250, (2, 0, 0), "OK")),
            Command::Vrfy => {
                self.reply(Reply::new(252, (2, 5, 2), "Cannot VRFY user, but will accept message and attempt delivery"))
            }
            Command::Help => self.reply(Reply::new(
                214,
                (2, 0, 0),
                "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH",
            )),
            Command::Quit => {
                let host = self.config.hostname.clone();
                self.reply(Reply::new(221, (2, 0, 0), format!("{host} closing connection")));
                self.close();
            }
            Command::NotImplemented => self.error(Reply::new(502, (5, 5, 1), "Command not implemented")),
        }
    }

    fn finish_chunk(&mut self) {
        let Phase::Bdat { last, refused, .. } = std::mem::replace(&mut self.phase, Phase::Command) else {
            return;
        };
        if let Some(r) = refused {
            // A refused chunk ends the transaction (RFC 3030 §2: the client must RSET anyway).
            return self.error(r);
        }
        let Some(txn) = self.txn.as_mut() else { return };
        if !last {
            let n = txn.chunk_bytes;
            return self.reply(Reply::new(250, (2, 0, 0), format!("{n} octets received")));
        }
        let Some(txn) = self.txn.take() else { return };
        if txn.too_large {
            return self.reply(Reply::new(552, (5, 3, 4), "Message size exceeds fixed maximum message size"));
        }
        let protocol = self.protocol(txn.params.smtputf8);
        self.out.push_back(Event::Message(Message {
            helo: self.helo().unwrap_or_default().to_string(),
            protocol,
            from: txn.from,
            params: txn.params,
            recipients: txn.recipients,
            body: txn.chunks.unwrap_or_default(),
        }));
        self.phase = Phase::AwaitDelivery;
    }

    fn finish_data(&mut self) {
        let Phase::Data(decoder) = std::mem::replace(&mut self.phase, Phase::Command) else {
            return;
        };
        let Some(txn) = self.txn.take() else { return };
        if decoder.too_large() {
            return self.reply(Reply::new(552, (5, 3, 4), "Message size exceeds fixed maximum message size"));
        }
        let protocol = self.protocol(txn.params.smtputf8);
        self.out.push_back(Event::Message(Message {
            helo: self.helo().unwrap_or_default().to_string(),
            protocol,
            from: txn.from,
            params: txn.params,
            recipients: txn.recipients,
            body: decoder.into_body(),
        }));
        self.phase = Phase::AwaitDelivery;
    }

    fn auth(&mut self, mechanism: String, initial: Option<String>) {
        if !self.config.auth {
            return self.error(Reply::new(503, (5, 5, 1), "Authentication not enabled"));
        }
        if !self.tls && !self.config.auth_without_tls {
            return self.error(Reply::new(
                538,
                (5, 7, 11),
                "Encryption required for requested authentication mechanism",
            ));
        }
        if self.helo.is_none() {
            return self.error(Reply::new(503, (5, 5, 1), "Send EHLO first"));
        }
        if self.authenticated.is_some() {
            return self.error(Reply::new(503, (5, 5, 1), "Already authenticated"));
        }
        if self.txn.is_some() {
            return self.error(Reply::new(503, (5, 5, 1), "AUTH not allowed during a mail transaction"));
        }
        match (mechanism.as_str(), initial) {
            ("PLAIN", None) => {
                self.reply(Reply::plain(334, vec![String::new()]));
                self.phase = Phase::AuthPlain;
            }
            ("PLAIN", Some(resp)) => self.auth_plain_response(resp.as_bytes()),
            ("LOGIN", None) => {
                self.reply(Reply::plain(334, vec![sasl::encode_challenge("Username:")]));
                self.phase = Phase::AuthLogin(None);
            }
            ("LOGIN", Some(resp)) => self.auth_login_response(resp.as_bytes(), None),
            _ => self.error(Reply::new(504, (5, 5, 4), "Unrecognized authentication type")),
        }
    }

    fn decode_sasl(&mut self, line: &[u8]) -> Option<Vec<u8>> {
        let Ok(text) = std::str::from_utf8(line) else {
            self.auth_failure(Reply::new(501, (5, 5, 2), "Cannot decode response"));
            return None;
        };
        if text.trim() == "*" {
            self.reply(Reply::new(501, (5, 0, 0), "Authentication cancelled"));
            return None;
        }
        match sasl::decode_response(text) {
            Ok(d) => Some(d),
            Err(_) => {
                self.auth_failure(Reply::new(501, (5, 5, 2), "Cannot decode response"));
                None
            }
        }
    }

    fn auth_plain_response(&mut self, line: &[u8]) {
        let Some(decoded) = self.decode_sasl(line) else { return };
        match sasl::plain(&decoded) {
            Ok(c) => {
                self.out.push_back(Event::Auth(c));
                self.phase = Phase::AwaitAuth;
            }
            Err(_) => self.auth_failure(Reply::new(535, (5, 7, 8), "Authentication credentials invalid")),
        }
    }

    fn auth_login_response(&mut self, line: &[u8], user: Option<String>) {
        let Some(decoded) = self.decode_sasl(line) else { return };
        let Ok(text) = String::from_utf8(decoded) else {
            return self.auth_failure(Reply::new(501, (5, 5, 2), "Cannot decode response"));
        };
        match user {
            None => {
                if text.is_empty() {
                    return self.auth_failure(Reply::new(535, (5, 7, 8), "Authentication credentials invalid"));
                }
                self.reply(Reply::plain(334, vec![sasl::encode_challenge("Password:")]));
                self.phase = Phase::AuthLogin(Some(text));
            }
            Some(username) => {
                self.out.push_back(Event::Auth(Credentials { username, password: text }));
                self.phase = Phase::AwaitAuth;
            }
        }
    }
}
