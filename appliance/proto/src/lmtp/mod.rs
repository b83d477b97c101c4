//! LMTP server protocol (RFC 2033 over the RFC 5321 grammar), sans-I/O.
//!
//! What it is: [`Server`], a state machine the caller feeds bytes ([`Server::feed`]) and polls
//! for [`Event`]s ([`Server::poll`]): replies to write, recipients to decide, messages to
//! deliver. It frames command lines, parses commands ([`command`]), enforces the command
//! sequence, decodes the DATA phase ([`data`]) and formats replies ([`reply`]).
//! Extensions it implements: PIPELINING (RFC 2920), ENHANCEDSTATUSCODES (RFC 2034),
//! 8BITMIME (RFC 6152), SIZE (RFC 1870), SMTPUTF8 (RFC 6531), and, when
//! [`ServerConfig::xdedup`] is on, Hermes' own `XDEDUP` (`MAIL FROM:<...> XDEDUP=token`: the
//! store suppresses a second delivery of the same token to the same account; see
//! `docs/store-format.md`).
//!
//! What it is not: no sockets, clocks, files or directory lookups. It does not decide whether
//! a recipient exists (the caller answers [`Event::Rcpt`]) and does not deliver (the caller
//! answers [`Event::Message`] with one reply per recipient). No CHUNKING/BDAT, no STARTTLS,
//! no AUTH: LMTP runs on a unix socket or loopback behind the MTA.
//!
//! Invariants:
//! - Replies come out of [`Server::poll`] in the order of the commands they answer, so a
//!   pipelining client can match them up; after DATA there is exactly one reply per accepted
//!   recipient, in RCPT order (RFC 2033 §4.2).
//! - Memory is bounded: a command line longer than `max_line` is discarded as it arrives and
//!   answered 500 5.5.2; message data beyond `max_message_bytes` is consumed without being
//!   kept and answered 552 5.3.4 per recipient; at most `max_recipients` per transaction.
//!   The input buffer holds at most one partial line plus what the caller fed since the last
//!   `poll` returned `None`.
//! - Data ends only on CRLF.CRLF (see [`data`]): no SMTP smuggling.
//! - Nothing panics on any input; after `max_errors` bad commands the server answers 421 and
//!   asks the caller to close.

pub mod address;
pub mod command;
pub mod data;
pub mod reply;

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests;

pub use address::{Address, AddressError, ForwardPath, ReversePath};
pub use command::{Body, Command, MAX_DEDUP_TOKEN, MailParams, parse_command, valid_dedup_token};
pub use data::DataDecoder;
pub use reply::{EnhancedStatus, Reply};

use std::collections::VecDeque;

/// RFC 5321 §4.5.3.1.4 sets 512 octets for a command line; real clients stay far below, but
/// long addresses plus parameters can exceed it, so we are lenient up to 4 KiB.
pub const DEFAULT_MAX_LINE: usize = 4096;
/// Recipients per transaction: RFC 5321 requires at least 100; 1000 lets a list server fan
/// out in one transaction without letting one client pin unbounded state.
pub const DEFAULT_MAX_RECIPIENTS: usize = 1000;
/// Bad commands tolerated per connection before 421: a confused client gets a few tries, a
/// client spraying garbage (or HTTP) is dropped quickly.
pub const DEFAULT_MAX_ERRORS: usize = 20;

/// What the server needs to know; everything else is per-event.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Our host name, in the greeting and the LHLO reply.
    pub hostname: String,
    pub max_message_bytes: u64,
    pub max_line: usize,
    pub max_recipients: usize,
    pub max_errors: usize,
    /// Offer `XDEDUP` in the LHLO reply and accept `MAIL FROM:<...> XDEDUP=token` (the store
    /// implements it; off by default, so a server that does not is never asked to).
    pub xdedup: bool,
}

impl ServerConfig {
    pub fn new(hostname: impl Into<String>, max_message_bytes: u64) -> Self {
        ServerConfig {
            hostname: hostname.into(),
            max_message_bytes,
            max_line: DEFAULT_MAX_LINE,
            max_recipients: DEFAULT_MAX_RECIPIENTS,
            max_errors: DEFAULT_MAX_ERRORS,
            xdedup: false,
        }
    }
}

/// An accepted recipient and the caller's data for it (e.g. the account it resolved to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient<R> {
    pub path: ForwardPath,
    pub data: R,
}

/// A complete message to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<R> {
    /// The LHLO argument (for the Received header).
    pub lhlo: String,
    pub from: ReversePath,
    pub params: MailParams,
    /// In RCPT order; the caller answers one reply per entry, in this order.
    pub recipients: Vec<Recipient<R>>,
    /// Unstuffed message bytes, as sent (ending with the CRLF before the final dot).
    pub body: Vec<u8>,
}

/// What the caller must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<R> {
    /// Write this reply.
    Reply(Reply),
    /// Decide this recipient: call [`Server::accept_rcpt`] or [`Server::reject_rcpt`] before
    /// polling again (until then `poll` returns `None`).
    Rcpt(ForwardPath),
    /// Deliver this message and call [`Server::complete_message`] with one reply per
    /// recipient (until then `poll` returns `None`).
    Message(Message<R>),
    /// Write any replies already taken, then close the connection.
    Close,
}

#[derive(Debug)]
struct Transaction<R> {
    from: ReversePath,
    params: MailParams,
    recipients: Vec<Recipient<R>>,
    /// RCPT commands seen (accepted or not), for the recipient limit.
    rcpt_commands: usize,
}

#[derive(Debug)]
enum Phase {
    Command,
    /// Waiting for `accept_rcpt` / `reject_rcpt` on this path.
    AwaitRcpt(ForwardPath),
    Data(DataDecoder),
    AwaitDelivery(usize),
    Closed,
}

/// One LMTP server session. `R` is what the caller attaches to an accepted recipient.
#[derive(Debug)]
pub struct Server<R> {
    config: ServerConfig,
    input: Vec<u8>,
    /// Bytes of `input` already consumed.
    pos: usize,
    /// Inside an over-long line: discard up to the next LF.
    discarding: bool,
    lhlo: Option<String>,
    txn: Option<Transaction<R>>,
    phase: Phase,
    out: VecDeque<Event<R>>,
    errors: usize,
}

impl<R> Server<R> {
    pub fn new(config: ServerConfig) -> Self {
        Server {
            config,
            input: Vec::new(),
            pos: 0,
            discarding: false,
            lhlo: None,
            txn: None,
            phase: Phase::Command,
            out: VecDeque::new(),
            errors: 0,
        }
    }

    /// `220 HOST LMTP Hermes ready`, to write when the connection opens.
    pub fn greeting(&self) -> Reply {
        Reply::plain(220, vec![format!("{} LMTP Hermes ready", self.config.hostname)])
    }

    /// Adds received bytes. Call [`Server::poll`] until it returns `None` before feeding more.
    pub fn feed(&mut self, bytes: &[u8]) {
        if matches!(self.phase, Phase::Closed) {
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

    /// True when the session is over (after QUIT, or after too many errors).
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed) && self.out.is_empty()
    }

    /// True while the caller owes a decision ([`Event::Rcpt`]) or delivery ([`Event::Message`]).
    pub fn is_waiting(&self) -> bool {
        matches!(self.phase, Phase::AwaitRcpt(_) | Phase::AwaitDelivery(_))
    }

    /// True while message data is being received (the caller may use a longer read timeout).
    pub fn in_data(&self) -> bool {
        matches!(self.phase, Phase::Data(_))
    }

    /// True when a transaction (MAIL FROM) is open.
    pub fn in_transaction(&self) -> bool {
        self.txn.is_some()
    }

    /// Accepts the recipient of the pending [`Event::Rcpt`]: queues `250 2.1.5`.
    pub fn accept_rcpt(&mut self, data: R) {
        if let Phase::AwaitRcpt(path) = std::mem::replace(&mut self.phase, Phase::Command) {
            let reply = Reply::new(250, (2, 1, 5), format!("<{path}> OK"));
            if let Some(txn) = self.txn.as_mut() {
                txn.recipients.push(Recipient { path, data });
            }
            self.out.push_back(Event::Reply(reply));
        }
    }

    /// Refuses the recipient of the pending [`Event::Rcpt`] with `reply` (4xx or 5xx).
    pub fn reject_rcpt(&mut self, reply: Reply) {
        if let Phase::AwaitRcpt(_) = std::mem::replace(&mut self.phase, Phase::Command) {
            self.out.push_back(Event::Reply(reply));
        }
    }

    /// Finishes the pending [`Event::Message`]: `replies` answer its recipients in order.
    /// Missing replies become 451 4.3.0 and extra ones are dropped, so the client always gets
    /// exactly one per recipient.
    pub fn complete_message(&mut self, replies: impl IntoIterator<Item = Reply>) {
        if let Phase::AwaitDelivery(n) = self.phase {
            let mut replies = replies.into_iter();
            for _ in 0..n {
                let r = replies.next().unwrap_or_else(|| Reply::new(451, (4, 3, 0), "Delivery status unknown"));
                self.out.push_back(Event::Reply(r));
            }
            self.phase = Phase::Command;
        }
    }

    /// The next thing to do, or `None` when more input (or a decision) is needed.
    pub fn poll(&mut self) -> Option<Event<R>> {
        loop {
            if let Some(ev) = self.out.pop_front() {
                return Some(ev);
            }
            match &mut self.phase {
                Phase::Closed | Phase::AwaitRcpt(_) | Phase::AwaitDelivery(_) => return None,
                Phase::Data(decoder) => {
                    let p = decoder.feed(&self.input[self.pos..]);
                    self.pos += p.consumed;
                    if !p.finished {
                        return None;
                    }
                    self.finish_data();
                }
                Phase::Command => match self.next_line() {
                    Some(line) => self.handle_line(line),
                    // An over-long line was answered: deliver that reply first.
                    None if !self.out.is_empty() => continue,
                    None => return None,
                },
            }
        }
    }

    /// The next complete line (without CRLF or LF), or `None`.
    /// Over-long lines are discarded and answered here.
    fn next_line(&mut self) -> Option<Vec<u8>> {
        let avail = &self.input[self.pos..];
        let Some(nl) = memchr::memchr(b'\n', avail) else {
            if avail.len() > self.config.max_line {
                // Drop what we have; keep dropping until the line ends.
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
            self.out.push_back(Event::Reply(Reply::new(421, (4, 7, 0), format!("{} Too many errors, closing connection", self.config.hostname))));
            self.close();
        } else {
            self.out.push_back(Event::Reply(reply));
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
        match cmd {
            Command::Lhlo(host) => {
                self.txn = None;
                self.lhlo = Some(host);
                let c = &self.config;
                let mut lines = vec![
                    c.hostname.clone(),
                    "PIPELINING".into(),
                    "ENHANCEDSTATUSCODES".into(),
                    "8BITMIME".into(),
                    format!("SIZE {}", c.max_message_bytes),
                    "SMTPUTF8".into(),
                ];
                if c.xdedup {
                    lines.push("XDEDUP".into());
                }
                self.reply(Reply::plain(250, lines));
            }
            Command::HeloEhlo => self.error(Reply::new(500, (5, 5, 1), "Use LHLO in LMTP")),
            Command::Mail(from, params) => {
                if self.lhlo.is_none() {
                    return self.error(Reply::new(503, (5, 5, 1), "Send LHLO first"));
                }
                if self.txn.is_some() {
                    return self.error(Reply::new(503, (5, 5, 1), "Nested MAIL command"));
                }
                if params.size.is_some_and(|s| s > self.config.max_message_bytes) {
                    return self.reply(Reply::new(552, (5, 3, 4), "Message size exceeds fixed maximum message size"));
                }
                if params.xdedup.is_some() && !self.config.xdedup {
                    return self.error(Reply::new(555, (5, 5, 4), "Unsupported parameter"));
                }
                if !from.is_ascii() && !params.smtputf8 {
                    return self.reply(Reply::new(553, (5, 6, 7), "Non-ASCII address requires SMTPUTF8"));
                }
                self.txn = Some(Transaction { from, params, recipients: Vec::new(), rcpt_commands: 0 });
                self.reply(Reply::new(250, (2, 1, 0), "OK"));
            }
            Command::Rcpt(path) => {
                let max = self.config.max_recipients;
                let Some(txn) = self.txn.as_mut() else {
                    return self.error(Reply::new(503, (5, 5, 1), "Need MAIL command first"));
                };
                if txn.rcpt_commands >= max {
                    return self.reply(Reply::new(452, (4, 5, 3), "Too many recipients"));
                }
                txn.rcpt_commands += 1;
                if !path.is_ascii() && !txn.params.smtputf8 {
                    return self.reply(Reply::new(553, (5, 6, 7), "Non-ASCII address requires SMTPUTF8"));
                }
                self.out.push_back(Event::Rcpt(path.clone()));
                self.phase = Phase::AwaitRcpt(path);
            }
            Command::Data => match &self.txn {
                None => self.error(Reply::new(503, (5, 5, 1), "Need MAIL command first")),
                Some(t) if t.recipients.is_empty() => self.error(Reply::new(503, (5, 5, 1), "No valid recipients")),
                Some(_) => {
                    self.reply(Reply::plain(354, vec!["Start mail input; end with <CRLF>.<CRLF>".into()]));
                    self.phase = Phase::Data(DataDecoder::new(self.config.max_message_bytes));
                }
            },
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
                "Commands: LHLO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP (RFC 2033)",
            )),
            Command::Quit => {
                let host = self.config.hostname.clone();
                self.reply(Reply::new(221, (2, 0, 0), format!("{host} closing connection")));
                self.close();
            }
            Command::NotImplemented => self.error(Reply::new(502, (5, 5, 1), "Command not implemented")),
        }
    }

    fn finish_data(&mut self) {
        let Phase::Data(decoder) = std::mem::replace(&mut self.phase, Phase::Command) else {
            return;
        };
        let Some(txn) = self.txn.take() else {
            return;
        };
        if decoder.too_large() {
            for _ in &txn.recipients {
                self.reply(Reply::new(552, (5, 3, 4), "Message size exceeds fixed maximum message size"));
            }
            return;
        }
        let n = txn.recipients.len();
        self.out.push_back(Event::Message(Message {
            lhlo: self.lhlo.clone().unwrap_or_default(),
            from: txn.from,
            params: txn.params,
            recipients: txn.recipients,
            body: decoder.into_body(),
        }));
        self.phase = Phase::AwaitDelivery(n);
    }
}
