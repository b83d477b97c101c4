//! IMAP4rev2/IMAP4rev1 server-side codec, sans-I/O.
//!
//! What it is: [`framing`] cuts a client byte stream into complete commands (lines plus literals)
//! under [`framing::Limits`]; [`parse`] turns one framed command into a [`command::Command`];
//! [`response`] writes IMAP strings, literals, flag lists, sequence sets and dates correctly;
//! [`utf7`] converts RFC 3501 modified UTF-7 mailbox names; [`fuzz`] is the no-panic entry point
//! shared by the cargo-fuzz target and the unit tests; [`sortkeys`] extracts what SORT and THREAD
//! compare (RFC 5256 base subject, sent date, addresses, message-ids) and [`thread`] runs the
//! THREAD algorithms and writes their response.
//!
//! What it is not: no session state machine, no sockets, no store access. The session (in
//! `hermes-svc-store`) decides which mode the reader is in (commands, AUTHENTICATE lines, IDLE),
//! answers continuations and rejections, and executes commands.
//!
//! Invariants: nothing here panics on any input; memory held per connection is bounded by
//! `Limits` plus what the caller feeds in one go; error texts are short and never echo more than a
//! few bytes of client input. See `docs/adr/0001-imap-parser.md` for why this is hand-written
//! rather than imap-codec.

pub mod command;
pub mod framing;
pub mod fuzz;
pub mod parse;
pub mod response;
pub mod sortkeys;
pub mod thread;
pub mod utf7;

#[cfg(test)]
mod parse_tests;

pub use command::{
    AppendMessage, Command, CommandBody, Date, DateTime, ExtParam, ExtParams, ExtValue,
    FetchAttribute, FetchCommand, Flag, ListCommand, ListReturn, ListSelection, MailboxName,
    Partial, SearchCommand, SearchKey, SearchReturn, Secret, Section, SectionText, SeqItem, SeqNum,
    SequenceSet, SortCommand, SortCriterion, SortKey, StatusItem, StoreAction, StoreCommand,
    ThreadAlgorithm, ThreadCommand,
};
pub use framing::{CommandReader, Event, Limits, LineEvent, RawCommand, Rejection};
pub use parse::{
    AuthResponse, ParseError, is_idle_done, parse_authenticate_response, parse_command,
    parse_sequence_set,
};
