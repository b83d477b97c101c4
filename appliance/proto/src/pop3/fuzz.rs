//! The no-panic entry point for the POP3 codec, shared by the cargo-fuzz target
//! (`appliance/proto/fuzz/fuzz_targets/pop3.rs`) and the unit tests.
//!
//! What it is: [`run`] drives arbitrary bytes through everything a client can reach —
//! [`LineReader`] (limit and chunking chosen by the input), [`parse_command`] and
//! [`parse_sasl_response`] — and through the output side, [`BodyEncoder`] (RETR and TOP over
//! the same bytes taken as a stored message), and checks the invariants stated in
//! [`super::framing`] and [`super::multiline`].
//!
//! What it is not: a test of meaning; it asserts properties only. It panics exactly when one of
//! them is broken, which is what a fuzzer should report.

use super::command::{parse_command, parse_sasl_response};
use super::framing::{LineEvent, LineReader};
use super::multiline::{BodyEncoder, Extent};

/// Feeds `data` through input and output paths. Panics only if an invariant is broken.
pub fn run(data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let max_line = [3usize, 16, 255, 512][usize::from(control & 3)];
    let chunk = 1 + usize::from((control >> 2) & 0x0f);
    check_input(rest, max_line, chunk);
    check_output(rest, Extent::Whole, chunk);
    check_output(rest, Extent::Top(u64::from(control >> 6)), chunk);
}

fn check_input(data: &[u8], max_line: usize, chunk: usize) {
    let mut reader = LineReader::new(max_line);
    let mut events = 0usize;
    for piece in data.chunks(chunk) {
        reader.feed(piece);
        while let Some(ev) = reader.next_line() {
            events += 1;
            match ev {
                LineEvent::Line(line) => {
                    assert!(line.len() < max_line.max(3), "line over the limit");
                    assert!(!line.contains(&b'\n'));
                    let _ = parse_command(&line);
                    let _ = parse_sasl_response(&line);
                }
                LineEvent::TooLong => {}
            }
        }
        assert!(reader.buffered() < max_line.max(3), "partial line kept beyond the limit");
    }
    // One event per LF at most.
    assert!(events <= memchr::memchr_iter(b'\n', data).count());
}

/// `message` with every bare LF made CRLF and a final line break added if missing.
pub fn normalize(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 8);
    let mut prev = 0u8;
    for &b in message {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    if !out.is_empty() && prev != b'\n' {
        if prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b'\n');
    }
    out
}

/// Undoes the multi-line encoding: `None` unless `wire` is well-formed (CRLF lines, stuffed
/// dots, one `.CRLF` at the very end).
pub fn decode_multiline(wire: &[u8]) -> Option<Vec<u8>> {
    let body = wire.strip_suffix(b".\r\n")?;
    if !body.is_empty() && !body.ends_with(b"\r\n") {
        return None;
    }
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body;
    while !rest.is_empty() {
        let i = memchr::memmem::find(rest, b"\r\n")?;
        let line = rest.get(..i)?;
        rest = rest.get(i + 2..)?;
        if line.first() == Some(&b'.') {
            // A stuffed line: `..` stands for `.`; a lone `.` here would end the response early.
            out.push(b'.');
            out.extend_from_slice(line.strip_prefix(b"..".as_slice())?);
        } else {
            out.extend_from_slice(line);
        }
        out.extend_from_slice(b"\r\n");
    }
    Some(out)
}

fn check_output(message: &[u8], extent: Extent, chunk: usize) {
    let mut enc = BodyEncoder::new(extent);
    let mut wire = Vec::new();
    for piece in message.chunks(chunk) {
        enc.encode(piece, &mut wire);
    }
    enc.finish(&mut wire);
    let decoded = decode_multiline(&wire).unwrap_or_else(|| panic!("malformed multi-line output: {wire:?}"));
    let normal = normalize(message);
    match extent {
        Extent::Whole => assert_eq!(decoded, normal, "RETR output differs from the message"),
        Extent::Top(_) => assert!(normal.starts_with(&decoded), "TOP output is not a prefix of the message"),
    }
}
