//! POP3 command parsing: one framed line in, one [`Command`] out.
//!
//! Grammar: RFC 1939 §3 and §5-7 (USER, PASS, APOP, STAT, LIST, RETR, DELE, NOOP, RSET, QUIT,
//! TOP, UIDL), RFC 2449 (CAPA), RFC 2595 §4 (STLS), RFC 5034 (AUTH and its continuation
//! lines), RFC 6856 (UTF8).
//!
//! What it is not: a state machine. Whether a command is allowed now (AUTHORIZATION versus
//! TRANSACTION state, before or after TLS) is the session's decision.
//!
//! Leniency, deliberately the same as Dovecot's: keywords are case-insensitive; arguments may be
//! separated by more than one space; trailing spaces are ignored; the PASS argument is the rest
//! of the line, spaces included (RFC 1939 §7 allows this, and real passwords contain spaces).
//!
//! Invariants: never panics; never allocates more than the line it was given; error texts are
//! fixed strings that never echo client input (safe to send and to log).

use crate::imap::Secret;
use base64::Engine as _;

/// RFC 1939 §3: arguments are at most 40 characters. We are lenient (user names with long
/// domains exist) but bound each argument so nothing downstream sees an absurd value.
pub const MAX_ARG: usize = 255;

/// A parsed POP3 command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    User(String),
    /// The whole rest of the line.
    Pass(Secret<Vec<u8>>),
    /// APOP is recognised (so it gets a precise refusal) but never offered.
    Apop { name: String },
    /// `AUTH` alone lists the mechanisms (a pre-RFC 5034 convention some clients use).
    Auth { mechanism: Option<String>, initial_response: Option<Secret<Vec<u8>>> },
    Stat,
    List(Option<u32>),
    Retr(u32),
    Dele(u32),
    Noop,
    Rset,
    Quit,
    Top { msg: u32, lines: u64 },
    Uidl(Option<u32>),
    Capa,
    Stls,
    Utf8,
}

impl Command {
    /// The keyword, upper case, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Command::User(_) => "USER",
            Command::Pass(_) => "PASS",
            Command::Apop { .. } => "APOP",
            Command::Auth { .. } => "AUTH",
            Command::Stat => "STAT",
            Command::List(_) => "LIST",
            Command::Retr(_) => "RETR",
            Command::Dele(_) => "DELE",
            Command::Noop => "NOOP",
            Command::Rset => "RSET",
            Command::Quit => "QUIT",
            Command::Top { .. } => "TOP",
            Command::Uidl(_) => "UIDL",
            Command::Capa => "CAPA",
            Command::Stls => "STLS",
            Command::Utf8 => "UTF8",
        }
    }
}

/// Why a line is not a valid command. `message` is safe to send after `-ERR `.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    pub kind: ParseErrorKind,
    pub message: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// Empty line, or a keyword we do not know.
    UnknownCommand,
    /// A known keyword with missing, extra or malformed arguments.
    BadArguments,
}

fn bad(message: &'static str) -> ParseError {
    ParseError { kind: ParseErrorKind::BadArguments, message }
}

/// Parses one command line (without its CRLF).
pub fn parse_command(line: &[u8]) -> Result<Command, ParseError> {
    let (keyword, rest) = split_word(line);
    if keyword.is_empty() || keyword.len() > 4 {
        return Err(ParseError { kind: ParseErrorKind::UnknownCommand, message: "Unknown command" });
    }
    let mut kw = [0u8; 4];
    for (d, s) in kw.iter_mut().zip(keyword) {
        *d = s.to_ascii_uppercase();
    }
    let kw = kw.get(..keyword.len()).unwrap_or(&[]);
    let cmd = match kw {
        b"USER" => {
            let [name] = args::<1>(rest, "USER needs one argument: the user name")?;
            Command::User(text(name)?)
        }
        b"PASS" => {
            // The rest of the line after exactly one separating space; a trailing CR/LF was
            // removed by the framing. An empty password is a valid (if useless) argument.
            let pass = match rest.split_first() {
                Some((b' ', pass)) => pass,
                _ => return Err(bad("PASS needs one argument: the password")),
            };
            Command::Pass(Secret::new(pass.to_vec()))
        }
        b"APOP" => {
            let [name, _digest] = args::<2>(rest, "APOP needs two arguments")?;
            Command::Apop { name: text(name)? }
        }
        b"AUTH" => auth(rest)?,
        b"STAT" => no_args(rest, Command::Stat)?,
        b"LIST" => Command::List(optional_msg(rest, "LIST takes at most one argument: a message number")?),
        b"RETR" => {
            let [n] = args::<1>(rest, "RETR needs one argument: a message number")?;
            Command::Retr(msg_number(n)?)
        }
        b"DELE" => {
            let [n] = args::<1>(rest, "DELE needs one argument: a message number")?;
            Command::Dele(msg_number(n)?)
        }
        b"NOOP" => no_args(rest, Command::Noop)?,
        b"RSET" => no_args(rest, Command::Rset)?,
        b"QUIT" => no_args(rest, Command::Quit)?,
        b"TOP" => {
            let [n, lines] = args::<2>(rest, "TOP needs two arguments: a message number and a line count")?;
            Command::Top { msg: msg_number(n)?, lines: number(lines).ok_or(bad("Invalid line count"))? }
        }
        b"UIDL" => Command::Uidl(optional_msg(rest, "UIDL takes at most one argument: a message number")?),
        b"CAPA" => no_args(rest, Command::Capa)?,
        b"STLS" => no_args(rest, Command::Stls)?,
        b"UTF8" => no_args(rest, Command::Utf8)?,
        _ => return Err(ParseError { kind: ParseErrorKind::UnknownCommand, message: "Unknown command" }),
    };
    Ok(cmd)
}

/// A client's answer to a SASL challenge (RFC 5034 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslResponse {
    /// `*`: the client gives up.
    Cancel,
    Data(Secret<Vec<u8>>),
}

/// Parses a continuation line of AUTH: `*` or base64 (an empty line is an empty response).
pub fn parse_sasl_response(line: &[u8]) -> Result<SaslResponse, ParseError> {
    let line = trim_end(line);
    if line == b"*" {
        return Ok(SaslResponse::Cancel);
    }
    decode_base64(line).map(|d| SaslResponse::Data(Secret::new(d)))
}

fn auth(rest: &[u8]) -> Result<Command, ParseError> {
    let (mech, rest) = split_word(rest);
    if mech.is_empty() {
        return Ok(Command::Auth { mechanism: None, initial_response: None });
    }
    if mech.len() > 20 || !mech.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')) {
        // RFC 4422 §3.1: mechanism names are 1-20 of [A-Z0-9-_].
        return Err(bad("Invalid SASL mechanism name"));
    }
    let mechanism = String::from_utf8_lossy(mech).to_ascii_uppercase();
    let (ir, rest) = split_word(rest);
    if !rest.is_empty() {
        return Err(bad("AUTH takes at most two arguments"));
    }
    let initial_response = match ir {
        [] => None,
        // RFC 5034 §4: "=" is an initial response of zero length.
        b"=" => Some(Secret::new(Vec::new())),
        data => Some(Secret::new(decode_base64(data)?)),
    };
    Ok(Command::Auth { mechanism: Some(mechanism), initial_response })
}

fn decode_base64(data: &[u8]) -> Result<Vec<u8>, ParseError> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    if !data.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')) {
        return Err(bad("Invalid base64 data"));
    }
    let engine = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    engine.decode(data).map_err(|_| bad("Invalid base64 data"))
}

/// Splits off the first space-separated word; leading spaces are skipped.
fn split_word(s: &[u8]) -> (&[u8], &[u8]) {
    let start = s.iter().position(|&b| b != b' ').unwrap_or(s.len());
    let s = s.get(start..).unwrap_or(&[]);
    let end = s.iter().position(|&b| b == b' ').unwrap_or(s.len());
    let (word, rest) = s.split_at(end);
    (word, rest)
}

fn trim_end(s: &[u8]) -> &[u8] {
    let end = s.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
    s.get(..end).unwrap_or(&[])
}

/// Exactly `N` arguments.
fn args<'a, const N: usize>(mut rest: &'a [u8], usage: &'static str) -> Result<[&'a [u8]; N], ParseError> {
    let mut out: [&'a [u8]; N] = [&[]; N];
    for slot in out.iter_mut() {
        let (w, r) = split_word(rest);
        if w.is_empty() {
            return Err(bad(usage));
        }
        if w.len() > MAX_ARG {
            return Err(bad("Argument too long"));
        }
        *slot = w;
        rest = r;
    }
    if !split_word(rest).0.is_empty() {
        return Err(bad(usage));
    }
    Ok(out)
}

fn no_args(rest: &[u8], cmd: Command) -> Result<Command, ParseError> {
    if split_word(rest).0.is_empty() { Ok(cmd) } else { Err(bad("This command takes no arguments")) }
}

fn optional_msg(rest: &[u8], usage: &'static str) -> Result<Option<u32>, ParseError> {
    let (w, r) = split_word(rest);
    if w.is_empty() {
        return Ok(None);
    }
    if !split_word(r).0.is_empty() {
        return Err(bad(usage));
    }
    msg_number(w).map(Some)
}

/// A message number: decimal, 1 or more, fits in `u32` (RFC 1939 §3).
fn msg_number(w: &[u8]) -> Result<u32, ParseError> {
    match number(w) {
        Some(n) if n >= 1 => u32::try_from(n).map_err(|_| bad("Invalid message number")),
        _ => Err(bad("Invalid message number")),
    }
}

/// Plain decimal digits only (no sign, no spaces), at most 19 of them.
fn number(w: &[u8]) -> Option<u64> {
    if w.is_empty() || w.len() > 19 || !w.iter().all(u8::is_ascii_digit) {
        return None;
    }
    w.iter().try_fold(0u64, |acc, &d| acc.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

/// A printable UTF-8 argument (no controls).
fn text(w: &[u8]) -> Result<String, ParseError> {
    let s = std::str::from_utf8(w).map_err(|_| bad("Argument is not valid UTF-8"))?;
    if s.chars().any(char::is_control) {
        return Err(bad("Argument contains control characters"));
    }
    Ok(s.to_string())
}
