//! SMTP command lines (RFC 5321 §4.1.1 with the ESMTP extensions Hermes offers): parsing one
//! line, without its CRLF, into a [`Command`].
//!
//! What it is not: no state (which command is allowed when is [`super::Server`]'s business), no
//! line framing, no relay policy (see [`super::policy`]).
//!
//! Invariants: verbs are case-insensitive; every error is a [`Reply`] with the RFC 3463 code the
//! failure deserves (500 5.5.1 unknown verb, 501 5.5.4 bad arguments, 501 5.1.3/5.1.7 bad
//! address, 555 5.5.4 unknown parameter); error text never echoes client input; at most
//! [`MAX_PARAMS`] parameters per command; ENVID and ORCPT values are bounded (RFC 3461 §4).

use crate::lmtp::address::{AddressError, ForwardPath, ReversePath, parse_forward_path, parse_reverse_path};
use crate::lmtp::reply::Reply;

/// Most ESMTP parameters on one MAIL or RCPT command; real clients send at most six.
pub const MAX_PARAMS: usize = 16;
/// RFC 3461 §4.4: ENVID is at most 100 characters.
pub const MAX_ENVID: usize = 100;
/// RFC 3461 §4.2: ORCPT's address part is at most 500 characters.
pub const MAX_ORCPT: usize = 500;
/// Longest host name after EHLO/HELO we keep (RFC 1035 names are at most 255 octets; address
/// literals are shorter).
pub const MAX_HELO: usize = 255;

/// BODY= of MAIL FROM (RFC 6152). BINARYMIME (RFC 3030) is not offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Body {
    #[default]
    SevenBit,
    EightBitMime,
}

/// RET= of MAIL FROM (RFC 3461 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    Full,
    Hdrs,
}

/// MAIL FROM parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    /// SIZE= (RFC 1870), the client's estimate.
    pub size: Option<u64>,
    pub body: Body,
    /// SMTPUTF8 (RFC 6531).
    pub smtputf8: bool,
    /// RET= (RFC 3461).
    pub ret: Option<Ret>,
    /// ENVID= (RFC 3461), xtext-decoded; printable ASCII only.
    pub envid: Option<String>,
    /// AUTH= (RFC 4954 §5), xtext-decoded; `None` for `<>` or absent. Informational only.
    pub auth: Option<String>,
}

/// NOTIFY= of RCPT TO (RFC 3461 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Notify {
    pub never: bool,
    pub success: bool,
    pub failure: bool,
    pub delay: bool,
}

/// RCPT TO parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcptParams {
    /// `None`: the default (failure and delay, RFC 3461 §4.1).
    pub notify: Option<Notify>,
    /// ORCPT= (RFC 3461 §4.2): (address type, xtext-decoded address), e.g. `("rfc822", "a@b")`.
    pub orcpt: Option<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// EHLO (true) or HELO (false) with the client's name.
    Hello {
        extended: bool,
        host: String,
    },
    Mail(ReversePath, MailParams),
    Rcpt(ForwardPath, RcptParams),
    Data,
    /// BDAT size [LAST] (RFC 3030).
    Bdat {
        size: u64,
        last: bool,
    },
    Rset,
    Noop,
    Quit,
    Vrfy,
    Help,
    StartTls,
    /// AUTH mechanism [initial-response] (RFC 4954). The mechanism is uppercased.
    Auth {
        mechanism: String,
        initial: Option<String>,
    },
    /// Known verbs we do not offer (EXPN, TURN, ETRN, BURL...): 502.
    NotImplemented,
}

fn syntax(text: &str) -> Reply {
    Reply::new(501, (5, 5, 4), text)
}

fn split_verb(line: &str) -> (&str, Option<&str>) {
    match line.split_once(' ') {
        Some((v, a)) => (v, Some(a)),
        None => (line, None),
    }
}

/// Parses one command line (UTF-8, CRLF removed).
pub fn parse_command(line: &str) -> Result<Command, Reply> {
    let (verb, arg) = split_verb(line);
    let no_arg = |c: Command| match arg {
        None => Ok(c),
        Some(a) if a.trim().is_empty() => Ok(c),
        Some(_) => Err(syntax("Syntax error: no parameters allowed")),
    };
    if verb.len() > 10 {
        return Err(Reply::new(500, (5, 5, 1), "Command unrecognized"));
    }
    match verb.to_ascii_uppercase().as_str() {
        v @ ("EHLO" | "HELO") => {
            let host = arg.map(str::trim).unwrap_or("");
            if host.is_empty() || host.len() > MAX_HELO || host.contains(' ') || host.chars().any(char::is_control) {
                return Err(syntax("Syntax: EHLO hostname"));
            }
            Ok(Command::Hello { extended: v == "EHLO", host: host.to_string() })
        }
        "MAIL" => parse_mail(arg.unwrap_or("")),
        "RCPT" => parse_rcpt(arg.unwrap_or("")),
        "DATA" => no_arg(Command::Data),
        "BDAT" => parse_bdat(arg.unwrap_or("")),
        "RSET" => no_arg(Command::Rset),
        "QUIT" => no_arg(Command::Quit),
        "STARTTLS" => no_arg(Command::StartTls),
        "NOOP" => Ok(Command::Noop),
        "HELP" => Ok(Command::Help),
        "VRFY" => match arg.map(str::trim) {
            Some(a) if !a.is_empty() => Ok(Command::Vrfy),
            _ => Err(syntax("Syntax: VRFY address")),
        },
        "AUTH" => {
            let arg = arg.unwrap_or("").trim();
            let mut parts = arg.split(' ').filter(|p| !p.is_empty());
            let mech = parts.next().unwrap_or("");
            let initial = parts.next();
            if mech.is_empty() || mech.len() > 20 || parts.next().is_some() {
                return Err(syntax("Syntax: AUTH mechanism [initial-response]"));
            }
            Ok(Command::Auth { mechanism: mech.to_ascii_uppercase(), initial: initial.map(str::to_string) })
        }
        "EXPN" | "TURN" | "ETRN" | "BURL" | "ATRN" | "SEND" | "SOML" | "SAML" => Ok(Command::NotImplemented),
        "LHLO" => Err(Reply::new(500, (5, 5, 1), "LHLO is for LMTP; use EHLO")),
        _ => Err(Reply::new(500, (5, 5, 1), "Command unrecognized")),
    }
}

fn parse_bdat(arg: &str) -> Result<Command, Reply> {
    let mut parts = arg.split(' ').filter(|p| !p.is_empty());
    let size = parts.next().unwrap_or("");
    if size.is_empty() || size.len() > 19 || !size.bytes().all(|b| b.is_ascii_digit()) {
        return Err(syntax("Syntax: BDAT size [LAST]"));
    }
    let size: u64 = size.parse().map_err(|_| syntax("Syntax: BDAT size [LAST]"))?;
    let last = match parts.next() {
        None => false,
        Some(l) if l.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(syntax("Syntax: BDAT size [LAST]")),
    };
    if parts.next().is_some() {
        return Err(syntax("Syntax: BDAT size [LAST]"));
    }
    Ok(Command::Bdat { size, last })
}

/// `FROM:` / `TO:` prefix, case-insensitive; a space after the colon is tolerated.
fn strip_keyword<'a>(arg: &'a str, kw: &str) -> Option<&'a str> {
    let head = arg.get(..kw.len())?;
    head.eq_ignore_ascii_case(kw).then(|| arg[kw.len()..].trim_start_matches(' '))
}

fn address_error(e: AddressError, sender: bool) -> Reply {
    let detail = if sender { 7 } else { 3 };
    match e {
        AddressError::TooLong => Reply::new(501, (5, 1, detail), "Address too long"),
        AddressError::SourceRoute => Reply::new(501, (5, 1, detail), "Source routes are not accepted"),
        AddressError::NullNotAllowed => Reply::new(501, (5, 1, detail), "Null address not allowed here"),
        AddressError::Syntax => Reply::new(501, (5, 1, detail), "Syntax error in address"),
    }
}

/// `keyword[=value]` pairs after the path; keys uppercased, duplicates refused.
fn params(rest: &str) -> Result<Vec<(String, Option<&str>)>, Reply> {
    let rest = rest.trim_end_matches(' ');
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = rest.strip_prefix(' ') else {
        return Err(syntax("Syntax error after address"));
    };
    let mut out = Vec::new();
    for p in rest.split(' ').filter(|p| !p.is_empty()) {
        if out.len() == MAX_PARAMS {
            return Err(syntax("Too many parameters"));
        }
        let (k, v) = match p.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (p, None),
        };
        let key_ok = k.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && k.len() <= 20
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let value_ok =
            v.is_none_or(|v| !v.is_empty() && v.chars().all(|c| c != '=' && (c.is_ascii_graphic() || !c.is_ascii())));
        if !key_ok || !value_ok {
            return Err(syntax("Syntax error in parameters"));
        }
        let key = k.to_ascii_uppercase();
        if out.iter().any(|(seen, _)| *seen == key) {
            return Err(syntax("Duplicate parameter"));
        }
        out.push((key, v));
    }
    Ok(out)
}

/// Decodes RFC 3461 §4 xtext (`+XX` hex escapes); `None` if malformed or longer than `max`
/// decoded characters, or if it decodes to anything but printable ASCII.
pub fn xtext_decode(s: &str, max: usize) -> Option<String> {
    let b = s.as_bytes();
    let mut out = String::with_capacity(b.len().min(max));
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'+' {
            let hex = s.get(i + 1..i + 3)?;
            if !hex.bytes().all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(&h)) {
                return None;
            }
            let v = u8::from_str_radix(hex, 16).ok()?;
            if !(32..=126).contains(&v) {
                return None;
            }
            out.push(v as char);
            i += 3;
        } else if (33..=126).contains(&c) && c != b'=' {
            out.push(c as char);
            i += 1;
        } else {
            return None;
        }
        if out.len() > max {
            return None;
        }
    }
    Some(out)
}

/// Encodes printable ASCII as RFC 3461 xtext (`+`, `=` and anything outside 33..=126 escaped).
pub fn xtext_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (33..=126).contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

fn parse_mail(arg: &str) -> Result<Command, Reply> {
    let Some(path) = strip_keyword(arg, "FROM:") else {
        return Err(syntax("Syntax: MAIL FROM:<address>"));
    };
    let (rp, rest) = parse_reverse_path(path).map_err(|e| address_error(e, true))?;
    let mut mp = MailParams::default();
    for (k, v) in params(rest)? {
        match (k.as_str(), v) {
            ("SIZE", Some(v)) if v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit()) => {
                mp.size = Some(v.parse().unwrap_or(u64::MAX));
            }
            ("SIZE", _) => return Err(syntax("Syntax: SIZE=number")),
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("7BIT") => mp.body = Body::SevenBit,
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("8BITMIME") => mp.body = Body::EightBitMime,
            ("BODY", _) => return Err(Reply::new(555, (5, 5, 4), "Unsupported BODY type")),
            ("SMTPUTF8", None) => mp.smtputf8 = true,
            ("RET", Some(v)) if v.eq_ignore_ascii_case("FULL") => mp.ret = Some(Ret::Full),
            ("RET", Some(v)) if v.eq_ignore_ascii_case("HDRS") => mp.ret = Some(Ret::Hdrs),
            ("RET", _) => return Err(syntax("Syntax: RET=FULL or RET=HDRS")),
            ("ENVID", Some(v)) => {
                mp.envid = Some(xtext_decode(v, MAX_ENVID).ok_or_else(|| syntax("Syntax error in ENVID"))?);
            }
            ("AUTH", Some("<>")) => mp.auth = None,
            ("AUTH", Some(v)) => {
                mp.auth = Some(
                    xtext_decode(v, crate::lmtp::address::MAX_PATH).ok_or_else(|| syntax("Syntax error in AUTH"))?,
                );
            }
            _ => return Err(Reply::new(555, (5, 5, 4), "Unsupported parameter")),
        }
    }
    Ok(Command::Mail(rp, mp))
}

fn parse_rcpt(arg: &str) -> Result<Command, Reply> {
    let Some(path) = strip_keyword(arg, "TO:") else {
        return Err(syntax("Syntax: RCPT TO:<address>"));
    };
    let (fp, rest) = parse_forward_path(path).map_err(|e| address_error(e, false))?;
    let mut rp = RcptParams::default();
    for (k, v) in params(rest)? {
        match (k.as_str(), v) {
            ("NOTIFY", Some(v)) => {
                let mut n = Notify::default();
                for item in v.split(',') {
                    match item.to_ascii_uppercase().as_str() {
                        "NEVER" => n.never = true,
                        "SUCCESS" => n.success = true,
                        "FAILURE" => n.failure = true,
                        "DELAY" => n.delay = true,
                        _ => return Err(syntax("Syntax error in NOTIFY")),
                    }
                }
                // RFC 3461 §4.1: NEVER stands alone.
                if n.never && (n.success || n.failure || n.delay) {
                    return Err(syntax("NOTIFY=NEVER must stand alone"));
                }
                rp.notify = Some(n);
            }
            ("ORCPT", Some(v)) => {
                let (kind, addr) = v.split_once(';').ok_or_else(|| syntax("Syntax: ORCPT=type;address"))?;
                if kind.is_empty() || kind.len() > 20 || !kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                    return Err(syntax("Syntax: ORCPT=type;address"));
                }
                let addr = xtext_decode(addr, MAX_ORCPT).ok_or_else(|| syntax("Syntax error in ORCPT"))?;
                if addr.is_empty() {
                    return Err(syntax("Syntax: ORCPT=type;address"));
                }
                rp.orcpt = Some((kind.to_ascii_lowercase(), addr));
            }
            _ => return Err(Reply::new(555, (5, 5, 4), "Unsupported parameter")),
        }
    }
    Ok(Command::Rcpt(fp, rp))
}
