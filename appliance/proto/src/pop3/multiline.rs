//! POP3 multi-line responses (RFC 1939 §3): the lines after a `+OK`, byte-stuffed, ending in
//! `CRLF.CRLF`.
//!
//! What it is: [`BodyEncoder`], which streams a stored message (or, for TOP, its header, the
//! blank line and the first *n* body lines) into the wire form chunk by chunk, and
//! [`push_line`]/[`end`] for short listings (CAPA, LIST, UIDL).
//!
//! Invariants of the output:
//! - Every line ends in CRLF: a bare LF in the stored message becomes CRLF; a CR not followed
//!   by LF is passed through unchanged (it does not end a line, so it cannot end the response).
//! - Every line that starts with `.` gets one more `.` in front (byte-stuffing), so the
//!   terminating `.CRLF` is unambiguous, whatever the message contains.
//! - The response ends with exactly one `.CRLF` after a CRLF, also when the message is empty
//!   or does not end with a line break.
//! - Encoding is streaming: state is a few flags, never a copy of the message, and chunk
//!   boundaries (even between CR and LF) change nothing in the output.

/// What part of the message to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    /// RETR: all of it.
    Whole,
    /// TOP: the header, the blank line after it, then at most this many body lines.
    Top(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Whole,
    /// In the header; `then` body lines to send after the blank line.
    Header { then: u64 },
    /// In the body; this many lines still to send.
    Body { remaining: u64 },
    /// TOP reached its line count: ignore the rest.
    Done,
}

/// Streams one message into a multi-line response body (without the `+OK` line).
#[derive(Debug, Clone)]
pub struct BodyEncoder {
    phase: Phase,
    at_line_start: bool,
    /// The last byte written was a CR (so an LF that follows completes a CRLF).
    prev_cr: bool,
    /// The current line has a byte other than CR (so it is not the header's end).
    line_has_content: bool,
}

impl BodyEncoder {
    pub fn new(extent: Extent) -> BodyEncoder {
        let phase = match extent {
            Extent::Whole => Phase::Whole,
            Extent::Top(n) => Phase::Header { then: n },
        };
        BodyEncoder { phase, at_line_start: true, prev_cr: false, line_has_content: false }
    }

    /// Whether the rest of the input is ignored (TOP sent all it was asked for).
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Encodes the next piece of the message, appending to `out`.
    pub fn encode(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() + input.len() / 32 + 8);
        while !input.is_empty() && self.phase != Phase::Done {
            if self.at_line_start {
                self.at_line_start = false;
                self.line_has_content = false;
                if input.first() == Some(&b'.') {
                    out.push(b'.');
                }
            }
            let (segment, rest, has_lf) = match memchr::memchr(b'\n', input) {
                Some(i) => (input.get(..i).unwrap_or(&[]), input.get(i + 1..).unwrap_or(&[]), true),
                None => (input, &[][..], false),
            };
            if let Some(&last) = segment.last() {
                out.extend_from_slice(segment);
                self.prev_cr = last == b'\r';
                if !self.line_has_content {
                    self.line_has_content = segment.iter().any(|&b| b != b'\r');
                }
            }
            input = rest;
            if has_lf {
                if self.prev_cr {
                    out.push(b'\n');
                } else {
                    out.extend_from_slice(b"\r\n");
                }
                self.prev_cr = false;
                self.at_line_start = true;
                self.end_of_line();
            }
        }
    }

    fn end_of_line(&mut self) {
        self.phase = match self.phase {
            Phase::Header { then } if !self.line_has_content => {
                if then == 0 { Phase::Done } else { Phase::Body { remaining: then } }
            }
            Phase::Body { remaining } if remaining <= 1 => Phase::Done,
            Phase::Body { remaining } => Phase::Body { remaining: remaining - 1 },
            other => other,
        };
    }

    /// Ends the response: completes an unterminated last line, then writes `.CRLF`.
    pub fn finish(self, out: &mut Vec<u8>) {
        if !self.at_line_start {
            out.extend_from_slice(if self.prev_cr { b"\n" } else { b"\r\n" });
        }
        end(out);
    }
}

/// Encodes a whole message (or its TOP part) at once, terminator included.
pub fn encode_message(message: &[u8], extent: Extent, out: &mut Vec<u8>) {
    let mut e = BodyEncoder::new(extent);
    e.encode(message, out);
    e.finish(out);
}

/// Appends one line of a listing (`line` without CRLF; it must not contain CR or LF),
/// byte-stuffed.
pub fn push_line(out: &mut Vec<u8>, line: &[u8]) {
    if line.first() == Some(&b'.') {
        out.push(b'.');
    }
    out.extend(line.iter().map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }));
    out.extend_from_slice(b"\r\n");
}

/// Appends the terminating `.CRLF` of a multi-line response.
pub fn end(out: &mut Vec<u8>) {
    out.extend_from_slice(b".\r\n");
}
