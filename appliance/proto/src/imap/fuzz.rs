//! The no-panic entry point for the IMAP command path, shared by the cargo-fuzz target
//! (`appliance/proto/fuzz/fuzz_targets/imap_command.rs`) and the unit tests.
//!
//! What it is: [`run_command_path`] drives arbitrary bytes through everything a client can reach
//! before and after login — [`CommandReader`] (with limits and chunking chosen by the input, so
//! rejection paths are hit), [`parse_command`], raw-line mode and AUTHENTICATE decoding — and
//! checks round-trip properties of the response writers and modified UTF-7.
//!
//! What it is not: not a test of semantic correctness; it asserts invariants only (no panic,
//! bounded buffering, writer output re-parses to the same value).
//!
//! Invariants: the function itself never panics unless one of the asserted properties is broken,
//! which is exactly what a fuzzer should report.

use crate::imap::command::{CommandBody, MailboxName};
use crate::imap::framing::{CommandReader, Event, Limits, LineEvent, RawCommand};
use crate::imap::parse::{parse_authenticate_response, parse_command};
use crate::imap::{response, utf7};

/// Feeds `data` through the command path. Panics only if an invariant is broken.
pub fn run_command_path(data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let limits = match control & 3 {
        0 => Limits::default(),
        1 => Limits::pre_auth(),
        2 => Limits {
            max_line: 16,
            max_literal: 8,
            max_literals: 2,
            max_command: 48,
        },
        _ => Limits {
            max_line: 64,
            max_literal: 300,
            max_literals: 4,
            max_command: 500,
        },
    };
    let chunk = usize::from(control >> 2).max(1);
    let raw_lines = control & 0x80 != 0;
    let mut reader = CommandReader::new(limits);
    for piece in rest.chunks(chunk) {
        reader.feed(piece);
        while let Some(ev) = reader.next() {
            match ev {
                Event::Command(cmd) => {
                    let size: u64 = cmd.lines.iter().map(|l| l.len() as u64 + 2).sum::<u64>()
                        + cmd.literals.iter().map(|l| l.len() as u64).sum::<u64>();
                    assert!(
                        size <= limits.max_command + 2,
                        "command exceeds max_command"
                    );
                    assert!(
                        cmd.literals.len() <= limits.max_literals,
                        "too many literals"
                    );
                    assert!(
                        cmd.lines.iter().all(|l| l.len() <= limits.max_line),
                        "line too long"
                    );
                    assert_eq!(cmd.lines.len(), cmd.literals.len() + 1);
                    // After an IDLE or AUTHENTICATE, read one raw line, as a session would.
                    let parsed = parse_command(&cmd);
                    let wants_line = parsed.as_ref().is_ok_and(|c| {
                        matches!(c.body, CommandBody::Idle | CommandBody::Authenticate { .. })
                    });
                    if raw_lines
                        && wants_line
                        && let Some(LineEvent::Line(l)) = reader.next_line()
                    {
                        let _ = parse_authenticate_response(&l);
                    }
                }
                Event::Rejected { .. } | Event::Continuation { .. } => {}
            }
            assert!(
                reader.buffered() <= rest.len(),
                "reader holds more than it was fed"
            );
        }
    }
    check_writers(rest);
}

/// Writer round trips: an astring written by [`response::write_astring`] parses back to the same
/// value, and modified UTF-7 round-trips.
fn check_writers(s: &[u8]) {
    let s = &s[..s.len().min(2048)];
    if let Ok(text) = std::str::from_utf8(s) {
        let enc = utf7::encode(text);
        assert_eq!(utf7::decode(&enc).as_deref(), Ok(text), "utf7 round trip");
        if !s.contains(&0) {
            let mut line = b"x SELECT ".to_vec();
            response::write_astring(&mut line, s);
            let mut reader = CommandReader::new(Limits::default());
            reader.feed(&line);
            reader.feed(b"\r\n");
            let mut parsed = None;
            while let Some(ev) = reader.next() {
                if let Event::Command(cmd) = ev {
                    parsed = Some(parse_command(&cmd));
                }
            }
            match parsed {
                Some(Ok(c)) => assert_eq!(
                    c.body,
                    CommandBody::Select {
                        mailbox: MailboxName::new(text),
                        params: Default::default()
                    },
                    "astring round trip"
                ),
                other => panic!("astring did not re-parse: {other:?}"),
            }
        }
    }
    let _ = utf7::decode(&String::from_utf8_lossy(s));
    let _ = parse_command(&RawCommand::from_line(s.to_vec()));
}

/// A tiny deterministic xorshift generator for the unit test that runs this entry on
/// pseudo-random inputs (no `rand` dependency in a protocol crate).
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator from a non-zero seed (zero is replaced).
    pub fn new(seed: u64) -> XorShift {
        XorShift(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }
    /// The next pseudo-random value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}
