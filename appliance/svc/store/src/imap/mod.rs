//! The IMAP server: one task per connection, from accept to close (RFC 9051 IMAP4rev2 and
//! RFC 3501 IMAP4rev1, both advertised, plus the extensions listed in [`capabilities`]).
//!
//! What it is: the session state machine (not authenticated → authenticated → selected →
//! logout), STARTTLS, login policy, every command's handler, the per-session view of the
//! selected mailbox and its synchronisation with other sessions, and IDLE.
//! What it is not: a parser (framing and grammar are `hermes_proto::imap`), a MIME engine
//! (`hermes_proto::mime`), a mail store (`hermes_store`, called through `spawn_blocking`
//! because it fsyncs), nor a listener (the service's `run` accepts and calls [`serve`]).
//!
//! Code map: [`session`] owns the connection loop and dispatch; [`auth`] the login policy;
//! [`login`] LOGIN/AUTHENTICATE; [`mailbox`] SELECT, CREATE, LIST, STATUS...; [`append`];
//! [`fetch`]; [`search`]; [`store_copy`] STORE, COPY, MOVE, EXPUNGE; [`idle`]; [`sync`] the
//! MSN map and untagged updates; [`list`] pattern matching; [`wire`] string encoding;
//! [`reply`] tagged results and error mapping; [`stream`] plain/TLS/compressed;
//! [`condstore`] CONDSTORE/QRESYNC select parameters and VANISHED (EARLIER); [`sort`] SORT,
//! ESORT and THREAD with the per-mailbox sort-key cache; [`quota`] RFC 9208 QUOTA;
//! [`compress`] COMPRESS=DEFLATE (RFC 4978). `docs/imap.md` lists every extension and its limits.
//!
//! Invariants:
//! - Nothing a client sends can panic a session or grow its memory beyond the configured
//!   limits (`limits.max_line`, `max_message_bytes`, `max_literals_per_command`).
//! - Every command gets exactly one tagged response; internal errors are logged and answered
//!   `NO [SERVERBUG]`/`NO [UNAVAILABLE]` without detail.
//! - Output is buffered and flushed when the session needs input (so pipelined commands are
//!   answered in one write) or a continuation/IDLE update must reach the client.
//! - Bytes received before a STARTTLS handshake are discarded, never executed after it.

mod append;
pub mod auth;
mod compress;
pub mod condstore;
mod fetch;
mod idle;
pub mod list;
mod login;
mod mailbox;
mod quota;
pub mod reply;
mod search;
mod session;
pub mod sort;
mod store_copy;
mod stream;
pub mod sync;
mod wire;

use std::net::SocketAddr;
use tokio::net::TcpStream;

/// Serves one IMAP connection until the client logs out, the connection drops, a timeout
/// expires or the service shuts down. `implicit_tls`: the IMAPS port (handshake first).
pub async fn serve(stream: TcpStream, peer: SocketAddr, implicit_tls: bool, ctx: crate::SharedContext) {
    crate::control::Stats::add(&ctx.stats.imap_sessions, 1);
    session::run(stream, peer, implicit_tls, ctx).await
}

/// The server's name in the greeting and `ID` response.
pub const SERVER_NAME: &str = "Hermes";
