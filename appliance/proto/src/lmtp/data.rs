//! The DATA phase decoder: dot-unstuffing and the end-of-data marker (RFC 5321 §4.5.2, §4.1.1.4).
//!
//! What it is not: no header parsing, no line-ending normalisation (bare CR and bare LF inside
//! the message are kept as sent), no per-line length limit (the total size is bounded).
//!
//! Invariants:
//! - Data ends only on `CRLF . CRLF` (the first CRLF being the end of the last line, or the
//!   start of data). A bare LF or bare CR never ends data and never starts a line for the
//!   purpose of the end marker or unstuffing, so `LF . LF`, `CR . CR`, `LF . CRLF` and
//!   `CRLF . LF` are message content (the SMTP smuggling class, CVE-2023-51764/51765/51766).
//! - Memory is bounded by the size limit: once the unstuffed size exceeds it the decoder drops
//!   what it buffered and keeps consuming to the end marker without buffering, so the session
//!   stays in sync and can answer 552 5.3.4.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// After CRLF (or at the start of data).
    LineStart,
    /// After CRLF ".".
    Dot,
    /// After CRLF "." CR.
    DotCr,
    /// Inside a line.
    Mid,
    /// After a CR inside a line (or after a CR that followed CRLF ".").
    Cr,
}

/// Decodes one message's data.
#[derive(Debug)]
pub struct DataDecoder {
    state: State,
    body: Vec<u8>,
    size: u64,
    max: u64,
    too_large: bool,
}

/// What [`DataDecoder::feed`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the input consumed (all of it unless `finished`).
    pub consumed: usize,
    /// The end marker was consumed; the bytes after it belong to the next command.
    pub finished: bool,
}

impl DataDecoder {
    /// `max`: largest message, in unstuffed bytes.
    pub fn new(max: u64) -> Self {
        DataDecoder { state: State::LineStart, body: Vec::new(), size: 0, max, too_large: false }
    }

    fn emit(&mut self, bytes: &[u8]) {
        self.size = self.size.saturating_add(bytes.len() as u64);
        if self.too_large {
            return;
        }
        if self.size > self.max {
            self.too_large = true;
            self.body = Vec::new();
        } else {
            self.body.extend_from_slice(bytes);
        }
    }

    /// Consumes `input` up to and including the end marker.
    pub fn feed(&mut self, input: &[u8]) -> Progress {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Mid => match memchr::memchr(b'\r', &input[i..]) {
                    Some(off) => {
                        self.emit(&input[i..i + off + 1]);
                        i += off + 1;
                        self.state = State::Cr;
                    }
                    None => {
                        self.emit(&input[i..]);
                        i = input.len();
                    }
                },
                State::Cr => {
                    self.emit(&[b]);
                    i += 1;
                    self.state = match b {
                        b'\n' => State::LineStart,
                        b'\r' => State::Cr,
                        _ => State::Mid,
                    };
                }
                State::LineStart => {
                    if b == b'.' {
                        i += 1;
                        self.state = State::Dot;
                    } else {
                        self.state = State::Mid;
                    }
                }
                State::Dot => {
                    if b == b'\r' {
                        i += 1;
                        self.state = State::DotCr;
                    } else {
                        // A line starting with "." and more: drop the dot (unstuffing), keep the rest.
                        self.state = State::Mid;
                    }
                }
                State::DotCr => {
                    if b == b'\n' {
                        return Progress { consumed: i + 1, finished: true };
                    }
                    // "." CR then something else: the dot was stuffing; the CR is content.
                    self.emit(b"\r");
                    self.state = State::Cr;
                }
            }
        }
        Progress { consumed: input.len(), finished: false }
    }

    /// True once the message exceeded the limit (the body is then not kept).
    pub fn too_large(&self) -> bool {
        self.too_large
    }

    /// Unstuffed bytes seen so far (also counted past the limit).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The message (empty if it was too large).
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    fn decode(input: &[u8], max: u64) -> Option<(Vec<u8>, usize, bool)> {
        let mut d = DataDecoder::new(max);
        let p = d.feed(input);
        p.finished.then(|| {
            let big = d.too_large();
            (d.into_body(), p.consumed, big)
        })
    }

    fn decode_bytewise(input: &[u8], max: u64) -> Option<(Vec<u8>, usize, bool)> {
        let mut d = DataDecoder::new(max);
        for (i, b) in input.iter().enumerate() {
            let p = d.feed(std::slice::from_ref(b));
            if p.finished {
                let big = d.too_large();
                return Some((d.into_body(), i + 1, big));
            }
        }
        None
    }

    #[test]
    fn table() {
        type Case<'a> = (&'a [u8], Option<(&'a [u8], usize)>);
        let cases: &[Case] = &[
            (b".\r\n", Some((b"", 3))),
            (b"Hi\r\n.\r\nQUIT\r\n", Some((b"Hi\r\n", 7))),
            (b"..dot\r\n.\r\n", Some((b".dot\r\n", 10))),
            (b"a\r\n..\r\n.\r\n", Some((b"a\r\n.\r\n", 10))),
            (b"a\r\n.x\r\n.\r\n", Some((b"a\r\nx\r\n", 10))),
            // Smuggling attempts: none of these end the data.
            (b"a\n.\n", None),
            (b"a\r.\r", None),
            (b"a\n.\r\n", None),
            (b"a\r\n.\n", None),
            (b"a\r\n.\rb\r\n.\r\n", Some((b"a\r\n\rb\r\n", 11))),
            (b"a\n.\r\nX\r\n.\r\n", Some((b"a\n.\r\nX\r\n", 11))),
            (b"a\r\r\n.\r\n", Some((b"a\r\r\n", 7))),
        ];
        for (input, want) in cases {
            let want = want.map(|(b, n)| (b.to_vec(), n, false));
            assert_eq!(decode(input, 1000), want, "{:?}", String::from_utf8_lossy(input));
            assert_eq!(decode_bytewise(input, 1000), want, "bytewise {:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn oversize_keeps_framing_without_buffering() {
        let mut input = b"x".repeat(5000);
        input.extend_from_slice(b"\r\n.\r\nNEXT");
        let (body, consumed, big) = decode(&input, 100).unwrap();
        assert!(big && body.is_empty());
        assert_eq!(&input[consumed..], b"NEXT");
        let mut d = DataDecoder::new(100);
        d.feed(&input[..4000]);
        assert!(d.body.capacity() <= 200, "no buffering past the limit");
    }

    #[test]
    fn exact_limit_is_accepted() {
        let (body, _, big) = decode(b"12345678\r\n.\r\n", 10).unwrap();
        assert!(!big);
        assert_eq!(body.len(), 10);
        assert!(decode(b"123456789\r\n.\r\n", 10).unwrap().2);
    }
}
