//! POP3 line framing: bytes in, command lines out (RFC 1939 §3, RFC 2449 §4).
//!
//! What it is: [`LineReader`], which splits the client's byte stream into lines ending in CRLF
//! (a bare LF is accepted as well, as every deployed server does) and reports lines that exceed
//! the limit. What it is not: a parser — [`super::command`] turns a line into a command.
//!
//! Invariants:
//! - A line (terminator included) longer than the current `max_line` is never buffered: once
//!   the partial line passes the limit its bytes are dropped as they arrive, up to and including
//!   its LF, and the reader yields exactly one [`LineEvent::TooLong`] for it, in stream order.
//! - Memory is bounded by one partial line (`max_line`) plus the bytes fed since
//!   [`LineReader::next_line`] last returned `None`; the caller reads from the socket only when
//!   the reader is empty, so that is one read's worth.
//! - Never panics, whatever the input.

/// RFC 2449 §4: commands are at most 255 octets including the CRLF. Real clients (and long
/// user names in USER/PASS) exceed that now and then, so we accept twice as much.
pub const MAX_COMMAND_LINE: usize = 512;
/// A SASL response line (RFC 5034 §4: the 255-octet limit does not apply to them). 8 KiB holds
/// the base64 of a 6 KiB PLAIN response: far beyond any real user name and password.
pub const MAX_SASL_LINE: usize = 8192;

/// One framed input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineEvent {
    /// The line without its CRLF (or LF).
    Line(Vec<u8>),
    /// A line longer than the limit; its bytes were discarded.
    TooLong,
}

/// Splits a byte stream into bounded lines.
#[derive(Debug, Clone)]
pub struct LineReader {
    buf: Vec<u8>,
    /// Where to resume the search for LF in `buf` (bytes before it hold none).
    scanned: usize,
    max_line: usize,
    /// Dropping the rest of an over-long line until its LF.
    discarding: bool,
    /// An over-long line ended; report it before any later line.
    too_long_pending: bool,
}

impl LineReader {
    /// A reader that accepts lines of up to `max_line` octets including CRLF (at least 3).
    pub fn new(max_line: usize) -> LineReader {
        LineReader { buf: Vec::new(), scanned: 0, max_line: max_line.max(3), discarding: false, too_long_pending: false }
    }

    /// Changes the limit for lines not yet returned (e.g. [`MAX_SASL_LINE`] for an AUTH
    /// continuation, then back to [`MAX_COMMAND_LINE`]).
    pub fn set_max_line(&mut self, max_line: usize) {
        self.max_line = max_line.max(3);
    }

    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Adds bytes read from the client.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        if self.discarding {
            match memchr::memchr(b'\n', bytes) {
                None => return,
                Some(i) => {
                    self.discarding = false;
                    self.too_long_pending = true;
                    bytes = bytes.get(i + 1..).unwrap_or(&[]);
                }
            }
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete line, or `None` when more input is needed.
    pub fn next_line(&mut self) -> Option<LineEvent> {
        if self.too_long_pending {
            self.too_long_pending = false;
            return Some(LineEvent::TooLong);
        }
        let tail = self.buf.get(self.scanned..).unwrap_or(&[]);
        match memchr::memchr(b'\n', tail) {
            Some(i) => {
                let end = self.scanned + i; // index of LF
                self.scanned = 0;
                if end + 1 > self.max_line {
                    self.buf.drain(..=end);
                    return Some(LineEvent::TooLong);
                }
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop(); // LF
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                Some(LineEvent::Line(line))
            }
            None => {
                self.scanned = self.buf.len();
                if self.buf.len() >= self.max_line {
                    // Even with its LF still to come the line is too long: stop keeping it.
                    self.buf.clear();
                    self.scanned = 0;
                    self.discarding = true;
                }
                None
            }
        }
    }

    /// Drops everything buffered (the bytes a client pipelined after STLS must not be
    /// executed inside TLS: CVE-2011-0411). Returns how many bytes were dropped.
    pub fn discard_buffered(&mut self) -> usize {
        let n = self.buf.len();
        self.buf.clear();
        self.scanned = 0;
        self.discarding = false;
        self.too_long_pending = false;
        n
    }

    /// Bytes held (a partial line and lines not yet returned).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}
