//! Hermes wire protocols, sans-I/O.
//!
//! What it is: byte-level codecs for the protocols the appliance speaks — IMAP command framing,
//! parsing and response formatting ([`imap`]), message analysis used to answer FETCH and SEARCH
//! ([`mime`]), and LMTP ([`lmtp`]); SNTP client packets ([`ntp`]).
//!
//! What it is not: no sockets, no clocks, no files, no tokio. Callers feed bytes in and write the
//! bytes this crate produces; sessions, authentication and the mail store live elsewhere.
//!
//! Invariants: every parser here is bounded (line, literal, nesting and count limits come from the
//! caller) and never panics on any input; errors carry their protocol meaning and never echo large
//! amounts of client input.

pub mod imap;
pub mod lmtp;
pub mod managesieve;
pub mod mime;
pub mod ntp;
pub mod pop3;
pub mod smtp;
