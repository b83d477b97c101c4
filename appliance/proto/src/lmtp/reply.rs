//! LMTP/SMTP replies: a three-digit code, an optional RFC 3463 enhanced status code, and text.
//!
//! What it is not: no parsing of replies (the server never reads them; the blocking client in
//! the store service parses the few it needs).
//!
//! Invariant: [`Reply::write_to`] always produces well-formed reply lines: text is stripped of
//! CR, LF and other control characters, so no client-supplied string can inject a reply line.

use std::fmt;

/// RFC 3463 `class.subject.detail`, e.g. `5.1.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnhancedStatus(pub u8, pub u16, pub u16);

impl fmt::Display for EnhancedStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// One (possibly multi-line) reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub status: Option<EnhancedStatus>,
    /// At least one line; each without CRLF.
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply with an enhanced status code.
    pub fn new(code: u16, status: (u8, u16, u16), text: impl Into<String>) -> Reply {
        Reply { code, status: Some(EnhancedStatus(status.0, status.1, status.2)), lines: vec![text.into()] }
    }

    /// A reply without an enhanced status code (greeting, LHLO).
    pub fn plain(code: u16, lines: Vec<String>) -> Reply {
        Reply { code, status: None, lines }
    }

    /// 2xx or 3xx.
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }
    /// 4xx: the client may try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }
    /// 5xx: do not retry.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// Appends the wire form (CRLF-terminated lines) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let code = self.code.clamp(200, 599);
        let empty = [String::new()];
        let lines: &[String] = if self.lines.is_empty() { &empty } else { &self.lines };
        for (i, line) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            out.extend_from_slice(format!("{code}{sep}").as_bytes());
            if let Some(s) = self.status {
                out.extend_from_slice(format!("{s} ").as_bytes());
            }
            for c in line.chars().take(MAX_REPLY_TEXT_CHARS) {
                if c.is_control() {
                    out.push(b' ');
                } else {
                    let mut b = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                }
            }
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The wire form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v);
        v
    }
}

/// RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets; text is cut well below that.
const MAX_REPLY_TEXT_CHARS: usize = 400;

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}
