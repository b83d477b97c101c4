//! LMTP command lines (RFC 2033 §4 over RFC 5321 §4.1.1): parsing one line, without its CRLF,
//! into a [`Command`].
//!
//! What it is not: no state (which commands are allowed when is the server's business), no
//! line framing.
//!
//! Invariants: verbs are case-insensitive; every error is a [`Reply`] with the RFC 3463 code
//! the failure deserves (500 5.5.1 unknown verb, 501 5.5.4 bad arguments, 501 5.1.3/5.1.7 bad
//! address, 555 5.5.4 unsupported parameter); error text never echoes client input.

use super::address::{AddressError, ForwardPath, ReversePath, parse_forward_path, parse_reverse_path};
use super::reply::Reply;

/// Most ESMTP parameters on one MAIL or RCPT command; real clients send at most four.
const MAX_PARAMS: usize = 16;

/// BODY= of MAIL FROM (RFC 6152).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Body {
    #[default]
    SevenBit,
    EightBitMime,
}

/// The parameters of MAIL FROM that we understand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    /// SIZE= (RFC 1870), the client's estimate.
    pub size: Option<u64>,
    pub body: Body,
    /// SMTPUTF8 (RFC 6531).
    pub smtputf8: bool,
    /// XDEDUP=token (Hermes' duplicate suppression between router and store): a token of 1 to
    /// [`MAX_DEDUP_TOKEN`] characters of `[A-Za-z0-9._-]`. Accepted only when the server
    /// offers it ([`super::ServerConfig::xdedup`]).
    pub xdedup: Option<String>,
}

/// Longest XDEDUP token.
pub const MAX_DEDUP_TOKEN: usize = 64;

/// Whether `token` is a valid XDEDUP token: 1 to 64 characters of `[A-Za-z0-9._-]`.
pub fn valid_dedup_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= MAX_DEDUP_TOKEN
        && token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Lhlo(String),
    Mail(ReversePath, MailParams),
    Rcpt(ForwardPath),
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Help,
    /// HELO or EHLO: not allowed in LMTP (RFC 2033 §4.1).
    HeloEhlo,
    /// Known verbs we do not offer (EXPN, STARTTLS, BDAT, ...).
    NotImplemented,
}

fn syntax(text: &str) -> Reply {
    Reply::new(501, (5, 5, 4), text)
}

/// Splits `line` at the first space: (verb, argument without the space).
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
    match verb.to_ascii_uppercase().as_str() {
        "LHLO" => {
            let host = arg.map(str::trim).unwrap_or("");
            if host.is_empty() || host.len() > 255 || host.contains(' ') || host.chars().any(char::is_control) {
                return Err(syntax("Syntax: LHLO hostname"));
            }
            Ok(Command::Lhlo(host.to_string()))
        }
        "MAIL" => parse_mail(arg.unwrap_or("")),
        "RCPT" => parse_rcpt(arg.unwrap_or("")),
        "DATA" => no_arg(Command::Data),
        "RSET" => no_arg(Command::Rset),
        "QUIT" => no_arg(Command::Quit),
        "NOOP" => Ok(Command::Noop),
        "HELP" => Ok(Command::Help),
        "VRFY" => match arg.map(str::trim) {
            Some(a) if !a.is_empty() => Ok(Command::Vrfy),
            _ => Err(syntax("Syntax: VRFY address")),
        },
        "HELO" | "EHLO" => Ok(Command::HeloEhlo),
        "EXPN" | "STARTTLS" | "BDAT" | "TURN" | "ETRN" | "AUTH" | "BURL" => Ok(Command::NotImplemented),
        _ => Err(Reply::new(500, (5, 5, 1), "Command unrecognized")),
    }
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

/// `keyword[=value]` pairs after the path.
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
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        // esmtp-value = 1*(%d33-60 / %d62-126), plus UTF-8 (RFC 6531)
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

fn parse_mail(arg: &str) -> Result<Command, Reply> {
    let Some(path) = strip_keyword(arg, "FROM:") else {
        return Err(syntax("Syntax: MAIL FROM:<address>"));
    };
    let (rp, rest) = parse_reverse_path(path).map_err(|e| address_error(e, true))?;
    let mut mp = MailParams::default();
    for (k, v) in params(rest)? {
        match (k.as_str(), v) {
            ("SIZE", Some(v)) if !v.is_empty() && v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit()) => {
                mp.size = Some(v.parse().unwrap_or(u64::MAX));
            }
            ("SIZE", _) => return Err(syntax("Syntax: SIZE=number")),
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("7BIT") => mp.body = Body::SevenBit,
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("8BITMIME") => mp.body = Body::EightBitMime,
            ("BODY", _) => return Err(Reply::new(555, (5, 5, 4), "Unsupported BODY type")),
            ("SMTPUTF8", None) => mp.smtputf8 = true,
            ("XDEDUP", Some(v)) if valid_dedup_token(v) => mp.xdedup = Some(v.to_string()),
            ("XDEDUP", _) => return Err(syntax("Syntax: XDEDUP=token (1-64 of A-Z a-z 0-9 . _ -)")),
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
    if !params(rest)?.is_empty() {
        return Err(Reply::new(555, (5, 5, 4), "Unsupported parameter"));
    }
    Ok(Command::Rcpt(fp))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(parse_command("lhlo foo.example").unwrap(), Command::Lhlo("foo.example".into()));
        assert_eq!(parse_command("QUIT").unwrap(), Command::Quit);
        assert_eq!(parse_command("noop anything").unwrap(), Command::Noop);
        let Command::Mail(rp, p) = parse_command("MAIL FROM:<a@b.org> SIZE=100 BODY=8BITMIME SMTPUTF8").unwrap() else {
            panic!()
        };
        assert_eq!(rp.to_string(), "<a@b.org>");
        assert_eq!(p, MailParams { size: Some(100), body: Body::EightBitMime, smtputf8: true, xdedup: None });
        assert!(matches!(parse_command("mail from: <>").unwrap(), Command::Mail(ReversePath::Null, _)));
        assert!(matches!(parse_command("RCPT TO:<x@y.org>").unwrap(), Command::Rcpt(_)));
    }

    #[test]
    fn errors_carry_codes() {
        let code = |l: &str| parse_command(l).map(|_| ()).unwrap_err();
        assert_eq!(code("FOO").code, 500);
        assert_eq!(code("MAIL FROM:<a@b.org> SIZE=x").code, 501);
        assert_eq!(code("MAIL FROM:<a@b.org> RET=FULL").code, 555);
        assert_eq!(code("MAIL FROM:<a@b.org> BODY=BINARYMIME").code, 555);
        assert_eq!(code("MAIL FROM:<a@b.org> SIZE=1 SIZE=2").code, 501);
        assert_eq!(code("MAIL FROM:<a@b.org>SIZE=1").code, 501);
        assert_eq!(code("RCPT TO:<x@y.org> NOTIFY=NEVER").code, 555);
        assert_eq!(code("RCPT TO:<@a:x@y.org>").status.unwrap().to_string(), "5.1.3");
        assert_eq!(code("MAIL FROM:bad").code, 501);
        assert_eq!(code("DATA now").code, 501);
        assert_eq!(code("LHLO").code, 501);
        let huge = format!("MAIL FROM:<a@b.org> SIZE={}", "9".repeat(30));
        assert_eq!(code(&huge).code, 501);
        assert_eq!(
            parse_command("MAIL FROM:<a@b.org> SIZE=99999999999999999999").unwrap(),
            Command::Mail(
                parse_reverse_path("<a@b.org>").unwrap().0,
                MailParams { size: Some(u64::MAX), ..Default::default() }
            )
        );
    }

    #[test]
    fn xdedup_tokens() {
        let code = |l: &str| parse_command(l).map(|_| ()).unwrap_err();
        let Command::Mail(_, p) = parse_command("MAIL FROM:<a@b.org> xdedup=Q1.a_b-9").unwrap() else { panic!() };
        assert_eq!(p.xdedup.as_deref(), Some("Q1.a_b-9"));
        let max = format!("MAIL FROM:<> XDEDUP={}", "x".repeat(64));
        assert!(matches!(parse_command(&max), Ok(Command::Mail(_, MailParams { xdedup: Some(_), .. }))));
        for bad in ["XDEDUP", "XDEDUP=", "XDEDUP=a/b", "XDEDUP=a+b", "XDEDUP=\u{e9}t\u{e9}", "XDEDUP=a:b"] {
            let r = code(&format!("MAIL FROM:<a@b.org> {bad}"));
            assert_eq!((r.code, r.status.map(|s| s.to_string())), (501, Some("5.5.4".into())), "{bad}");
        }
        assert_eq!(code(&format!("MAIL FROM:<> XDEDUP={}", "x".repeat(65))).code, 501);
        assert_eq!(code("MAIL FROM:<> XDEDUP=a XDEDUP=b").code, 501);
    }
}
