//! POP3 single-line responses: `+OK text` and `-ERR [CODE] text` (RFC 1939 §3, RFC 2449 §8).
//!
//! What it is: [`Response`], a status plus an optional extended response code ([`RespCode`]) and
//! a human-readable text, rendered as one CRLF-terminated line. What it is not: multi-line
//! responses — those start with a `+OK` line from here and continue with [`super::multiline`].
//!
//! Invariants: a rendered response is exactly one line: CR, LF and other control characters in
//! the text are replaced by spaces, and the text is cut at [`MAX_TEXT`] bytes (on a character
//! boundary), so a response can never smuggle a second line nor exceed RFC 2449's 512 octets.

use std::borrow::Cow;

/// Longest response text we send: RFC 2449 §4 limits a response line to 512 octets including
/// the status, the code and the CRLF.
pub const MAX_TEXT: usize = 400;

/// Extended response codes: RFC 2449 §8 (IN-USE, LOGIN-DELAY), RFC 3206 (SYS/TEMP, SYS/PERM,
/// AUTH), RFC 6856 (UTF8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RespCode {
    /// The credentials were refused (as opposed to a server problem): RFC 3206.
    Auth,
    /// A temporary server problem: retry later (RFC 3206).
    SysTemp,
    /// A permanent server problem: do not retry without operator action (RFC 3206).
    SysPerm,
    /// The maildrop is locked by another session (RFC 2449 §8.1.1).
    InUse,
    /// Logged in again too soon (RFC 2449 §8.1.2).
    LoginDelay,
    /// Refused because the user name or password is not valid UTF-8 in UTF8 mode (RFC 6856 §3).
    Utf8,
}

impl RespCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RespCode::Auth => "AUTH",
            RespCode::SysTemp => "SYS/TEMP",
            RespCode::SysPerm => "SYS/PERM",
            RespCode::InUse => "IN-USE",
            RespCode::LoginDelay => "LOGIN-DELAY",
            RespCode::Utf8 => "UTF8",
        }
    }
}

/// One `+OK`/`-ERR` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub ok: bool,
    pub code: Option<RespCode>,
    pub text: Cow<'static, str>,
}

impl Response {
    pub fn ok(text: impl Into<Cow<'static, str>>) -> Response {
        Response { ok: true, code: None, text: text.into() }
    }

    pub fn err(text: impl Into<Cow<'static, str>>) -> Response {
        Response { ok: false, code: None, text: text.into() }
    }

    pub fn with_code(mut self, code: RespCode) -> Response {
        self.code = Some(code);
        self
    }

    /// Appends the rendered line (CRLF included) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(if self.ok { b"+OK" } else { b"-ERR" });
        if let Some(code) = self.code {
            out.extend_from_slice(b" [");
            out.extend_from_slice(code.as_str().as_bytes());
            out.push(b']');
        }
        if !self.text.is_empty() {
            out.push(b' ');
            let mut end = self.text.len().min(MAX_TEXT);
            while !self.text.is_char_boundary(end) {
                end -= 1;
            }
            let text = self.text.get(..end).unwrap_or("");
            out.extend(text.bytes().map(|b| if b.is_ascii_control() { b' ' } else { b }));
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The rendered line.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.text.len().min(MAX_TEXT));
        self.write_to(&mut out);
        out
    }
}
