//! POP3 server protocol (RFC 1939), sans-I/O, with CAPA (RFC 2449), STLS (RFC 2595), AUTH
//! (RFC 5034) and UTF8 (RFC 6856) commands.
//!
//! What it is: the byte-level pieces of a POP3 server that do not need a mailbox:
//! [`LineReader`] frames the client's bytes into bounded lines ([`framing`]);
//! [`parse_command`] and [`parse_sasl_response`] turn a line into a [`Command`] or a SASL
//! answer ([`command`]); [`Response`] renders `+OK`/`-ERR [CODE]` lines ([`response`]);
//! [`BodyEncoder`] streams a message (RETR) or its top (TOP) as a byte-stuffed multi-line
//! response, and [`multiline::push_line`] builds listings ([`multiline`]). [`fuzz`] is the
//! no-panic entry point shared by the cargo-fuzz target and the unit tests.
//!
//! What it is not: no sockets, clocks, files or passwords. The session state machine
//! (AUTHORIZATION → TRANSACTION → UPDATE), the maildrop, authentication and TLS live in the
//! store service (`hermes_svc_store::pop3`), which feeds bytes in here and writes out what
//! comes back. APOP is parsed only so it can be refused precisely: it needs the clear-text
//! password on the server, and the directory keeps argon2id hashes.
//!
//! Invariants:
//! - Input is bounded: a command line longer than [`MAX_COMMAND_LINE`] octets (an AUTH
//!   continuation: [`MAX_SASL_LINE`]) is dropped as it arrives, never buffered, and reported once
//!   ([`LineEvent::TooLong`]) so the caller answers `-ERR` and stays in step with the client.
//! - Nothing here panics on any input; error texts are fixed strings that never echo input.
//! - Output is well-formed: a [`Response`] is one line of at most 512 octets; a multi-line
//!   response has CRLF line ends, byte-stuffed dots and exactly one terminating `.CRLF`.

pub mod command;
pub mod framing;
pub mod fuzz;
pub mod multiline;
pub mod response;

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests;

pub use crate::imap::Secret;
pub use command::{Command, MAX_ARG, ParseError, ParseErrorKind, SaslResponse, parse_command, parse_sasl_response};
pub use framing::{LineEvent, LineReader, MAX_COMMAND_LINE, MAX_SASL_LINE};
pub use multiline::{BodyEncoder, Extent, encode_message};
pub use response::{RespCode, Response};
