//! The POP3 server: one task per connection, from accept to close (RFC 1939, with CAPA
//! RFC 2449, STLS RFC 2595, AUTH PLAIN RFC 5034/4616, RESP-CODES, AUTH-RESP-CODE, PIPELINING,
//! UTF8 RFC 6856, and implicit TLS on the POP3S port, RFC 8314).
//!
//! What it is: the session state machine (AUTHORIZATION → TRANSACTION → UPDATE), STLS, the
//! login policy (shared with IMAP: [`crate::imap::auth`]), the per-session maildrop (the
//! user's INBOX as it was at login), and the UPDATE step that turns DELE marks into store
//! expunges. What it is not: a parser (`hermes_proto::pop3` frames, parses and encodes), a mail
//! store (`hermes_store`, called on the blocking pool because it fsyncs), nor a listener (the
//! service's `run` accepts and calls [`serve`]).
//!
//! Code map: [`session`] the connection loop, dispatch, CAPA and STLS; [`login`] USER/PASS and
//! AUTH PLAIN; [`maildrop`] the message list, DELE marks and the UIDL format; [`transaction`]
//! STAT, LIST, UIDL, RETR, TOP, DELE, RSET and the UPDATE state; [`stream`] plain/TLS.
//!
//! Invariants (see `docs/pop3.md` for the user-visible rules):
//! - Message numbers are fixed for the session: they index the INBOX view taken at login.
//!   Messages delivered later appear at the next login; messages expunged by IMAP meanwhile
//!   keep their number, and RETR/TOP of them answer `-ERR` (no exclusive lock is taken, as
//!   Dovecot with `pop3_lock_session = no`).
//! - Nothing is deleted unless the client sends QUIT in the TRANSACTION state: then exactly the
//!   UIDs marked with DELE are flagged `\Deleted` and expunged through the store (so delayed
//!   expunge and undelete apply). A dropped connection, a timeout or a shutdown deletes nothing.
//! - RETR and TOP send the stored bytes (bare LF made CRLF, dots stuffed) and change no flags:
//!   `\Seen` is not set, as in Dovecot's default.
//! - Plain-text credentials (USER/PASS, AUTH PLAIN) are accepted only over TLS, or from a
//!   loopback address when `pop3.plaintext_auth_on_loopback` allows it.
//! - Input is bounded (512-octet command lines, 8 KiB SASL lines); pipelined commands are all
//!   answered in order and flushed together when the session needs input.
//! - Bytes pipelined after STLS are discarded, never executed inside TLS.

pub mod login;
pub mod maildrop;
mod session;
mod stream;
mod transaction;

use std::net::SocketAddr;
use tokio::net::TcpStream;

/// Serves one POP3 connection until QUIT, the connection drops, a timeout expires or the
/// service shuts down. `implicit_tls`: the POP3S port (handshake first).
pub async fn serve(stream: TcpStream, peer: SocketAddr, implicit_tls: bool, ctx: crate::SharedContext) {
    crate::control::Stats::add(&ctx.stats.pop3_sessions, 1);
    session::run(stream, peer, implicit_tls, ctx).await
}

/// The greeting (no APOP timestamp: APOP is not offered).
pub const GREETING: &str = "Hermes POP3 ready";
