//! Helpers for writing IMAP server responses correctly.
//!
//! What it is: functions that append wire bytes to a `Vec<u8>`: strings in their safest form
//! (atom, quoted with `\"`/`\\` escapes, or literal `{n}\r\n` when the value holds CR, LF, NUL,
//! 8-bit octets or is long), `nstring`, literal8, flag lists, mailbox names, compact sequence sets
//! (`1:5,7,9:10`) for ESEARCH, COPYUID and VANISHED, INTERNALDATE (`"17-Jul-1996 02:44:25
//! -0700"`), status responses and continuations.
//!
//! What it is not: no response AST and no session logic; the caller composes lines. Mailbox names
//! are written as given: choosing modified UTF-7 or UTF-8 is the caller's decision
//! ([`crate::imap::utf7`]).
//!
//! Invariants: every function produces syntactically valid IMAP for any input (no input can
//! inject a CRLF outside a literal or break out of a quoted string); none panics.

use std::fmt::Write as _;

use crate::imap::command::{Flag, civil_from_days};
use crate::imap::parse::is_astring_char;

/// Longest value written as a quoted string; longer values go out as literals (Dovecot uses a
/// similar bound; clients handle literals everywhere a string is allowed).
pub const MAX_QUOTED: usize = 1024;

/// Whether `s` may be sent as a quoted string: short, and only 7-bit text without CR, LF, NUL.
pub fn quotable(s: &[u8]) -> bool {
    s.len() <= MAX_QUOTED
        && s.iter()
            .all(|&b| (0x01..=0x7f).contains(&b) && b != b'\r' && b != b'\n')
}

/// Writes `s` as a quoted string, escaping `"` and `\`; falls back to a literal if `s` is not
/// [`quotable`].
pub fn write_quoted(out: &mut Vec<u8>, s: &[u8]) {
    if !quotable(s) {
        write_literal(out, s);
        return;
    }
    out.reserve(s.len() + 2);
    out.push(b'"');
    for &b in s {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// Writes `s` as an IMAP `string`: quoted when possible, otherwise a literal.
pub fn write_string(out: &mut Vec<u8>, s: &[u8]) {
    write_quoted(out, s);
}

/// Writes `s` as an `astring`: a bare atom when every octet is an ASTRING-CHAR (and the value is
/// not `NIL`, to avoid confusion with nstring readers), else a string.
pub fn write_astring(out: &mut Vec<u8>, s: &[u8]) {
    if !s.is_empty()
        && s.len() <= MAX_QUOTED
        && s.iter().all(|&b| is_astring_char(b))
        && !s.eq_ignore_ascii_case(b"NIL")
    {
        out.extend_from_slice(s);
    } else {
        write_string(out, s);
    }
}

/// Writes an `nstring`: `NIL` for `None`, else a string (never a bare atom).
pub fn write_nstring(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        None => out.extend_from_slice(b"NIL"),
        Some(s) => write_string(out, s),
    }
}

/// Writes a literal announcement only (`{n}\r\n`, or `~{n}\r\n` if `binary`), for callers that
/// stream the data themselves.
pub fn write_literal_header(out: &mut Vec<u8>, len: u64, binary: bool) {
    if binary {
        out.push(b'~');
    }
    // Writing to a Vec through fmt cannot fail.
    let _ = write!(VecWriter(out), "{{{len}}}\r\n");
}

/// Writes a literal: `{n}\r\n` followed by the octets.
pub fn write_literal(out: &mut Vec<u8>, data: &[u8]) {
    write_literal_header(out, data.len() as u64, false);
    out.extend_from_slice(data);
}

/// Writes a literal8 (RFC 3516): `~{n}\r\n` followed by the octets, which may contain NUL.
pub fn write_literal8(out: &mut Vec<u8>, data: &[u8]) {
    write_literal_header(out, data.len() as u64, true);
    out.extend_from_slice(data);
}

/// Writes a mailbox name (already in its wire encoding) as an astring.
pub fn write_mailbox(out: &mut Vec<u8>, name: &str) {
    write_astring(out, name.as_bytes());
}

/// Writes a flag list `(\Seen $Forwarded)`. Keywords with characters not allowed in an atom
/// (which the parser never produces) are skipped rather than corrupting the line.
pub fn write_flag_list(out: &mut Vec<u8>, flags: &[Flag]) {
    out.push(b'(');
    let mut first = true;
    for f in flags {
        let valid = match f {
            Flag::Keyword(k) | Flag::Extension(k) => {
                !k.is_empty() && k.bytes().all(crate::imap::parse::is_atom_char)
            }
            _ => true,
        };
        if !valid {
            continue;
        }
        if !first {
            out.push(b' ');
        }
        first = false;
        let _ = write!(VecWriter(out), "{f}");
    }
    out.push(b')');
}

/// Formats numbers as a compact sequence set, keeping their order and merging ascending runs
/// (`[1,2,3,4,5,7,9,10]` → `1:5,7,9:10`). Order is preserved because COPYUID's source and
/// destination sets must correspond; sort and deduplicate first for ESEARCH ALL. Empty input
/// gives an empty string (callers must not send an empty set).
pub fn sequence_set(nums: impl IntoIterator<Item = u32>) -> String {
    let mut out = String::new();
    let mut run: Option<(u32, u32)> = None;
    for n in nums {
        run = match run {
            Some((lo, hi)) if hi.checked_add(1) == Some(n) => Some((lo, n)),
            Some(r) => {
                push_range(&mut out, r);
                Some((n, n))
            }
            None => Some((n, n)),
        };
    }
    if let Some(r) = run {
        push_range(&mut out, r);
    }
    out
}

/// Formats inclusive ranges as a sequence set (`[(1,5),(7,7)]` → `1:5,7`), in the given order.
pub fn ranges_to_sequence_set(ranges: &[(u32, u32)]) -> String {
    let mut out = String::new();
    for &r in ranges {
        push_range(&mut out, r);
    }
    out
}

fn push_range(out: &mut String, (lo, hi): (u32, u32)) {
    if !out.is_empty() {
        out.push(',');
    }
    if lo == hi {
        let _ = write!(out, "{lo}");
    } else {
        let _ = write!(out, "{lo}:{hi}");
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Formats an INTERNALDATE without quotes: `17-Jul-1996 02:44:25 -0700` for a Unix time and a
/// zone offset in minutes east of UTC. The day is space-padded (`date-day-fixed`).
pub fn internal_date(unix_secs: i64, zone_minutes: i16) -> String {
    let local = unix_secs.saturating_add(i64::from(zone_minutes) * 60);
    let days = local.div_euclid(86_400);
    let secs = local.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let month = MONTHS
        .get((m as usize).wrapping_sub(1))
        .copied()
        .unwrap_or("Jan");
    let sign = if zone_minutes < 0 { '-' } else { '+' };
    let z = i32::from(zone_minutes).abs();
    format!(
        "{d:>2}-{month}-{y:04} {:02}:{:02}:{:02} {sign}{:02}{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60,
        z / 60,
        z % 60
    )
}

/// Writes an INTERNALDATE with its quotes: `"17-Jul-1996 02:44:25 -0700"`.
pub fn write_internal_date(out: &mut Vec<u8>, unix_secs: i64, zone_minutes: i16) {
    out.push(b'"');
    out.extend_from_slice(internal_date(unix_secs, zone_minutes).as_bytes());
    out.push(b'"');
}

/// The kind of a status response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `OK`
    Ok,
    /// `NO`
    No,
    /// `BAD`
    Bad,
    /// `BYE` (untagged only)
    Bye,
    /// `PREAUTH` (greeting only)
    PreAuth,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::No => "NO",
            Status::Bad => "BAD",
            Status::Bye => "BYE",
            Status::PreAuth => "PREAUTH",
        }
    }
}

/// Writes a status response line: `tag OK [CODE] text\r\n` or `* BAD text\r\n` (tag `None`).
/// CR, LF and other control characters in `code` or `text` are replaced by spaces, and a `]` in
/// `code` ends nothing early because the code is written verbatim only if it has no `]`
/// (otherwise it is dropped), so no input can break the line's framing.
pub fn write_status(
    out: &mut Vec<u8>,
    tag: Option<&str>,
    status: Status,
    code: Option<&str>,
    text: &str,
) {
    out.extend_from_slice(tag.unwrap_or("*").as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.as_str().as_bytes());
    if let Some(code) = code.filter(|c| !c.is_empty() && !c.contains(']')) {
        out.extend_from_slice(b" [");
        push_text(out, code);
        out.push(b']');
    }
    out.push(b' ');
    push_text(
        out,
        if text.is_empty() {
            status.as_str()
        } else {
            text
        },
    );
    out.extend_from_slice(b"\r\n");
}

/// Writes a continuation request `+ text\r\n` (e.g. `+ Ready for literal data`, or a base64
/// SASL challenge).
pub fn write_continuation(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"+ ");
    push_text(out, text);
    out.extend_from_slice(b"\r\n");
}

fn push_text(out: &mut Vec<u8>, text: &str) {
    out.extend(
        text.bytes()
            .map(|b| if b < 0x20 || b == 0x7f { b' ' } else { b }),
    );
}

/// Adapts a `Vec<u8>` to `fmt::Write`.
struct VecWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for VecWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap")]
mod tests {
    use super::*;

    fn w(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut v = Vec::new();
        f(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    }

    #[test]
    fn strings() {
        assert_eq!(w(|o| write_astring(o, b"INBOX")), "INBOX");
        assert_eq!(w(|o| write_astring(o, b"")), "\"\"");
        assert_eq!(w(|o| write_astring(o, b"NIL")), "\"NIL\"");
        assert_eq!(w(|o| write_astring(o, b"a b")), "\"a b\"");
        assert_eq!(w(|o| write_astring(o, b"a\"b\\c")), "\"a\\\"b\\\\c\"");
        assert_eq!(w(|o| write_astring(o, b"a\r\nb")), "{4}\r\na\r\nb");
        assert_eq!(w(|o| write_string(o, "café".as_bytes())), "{5}\r\ncafé");
        assert_eq!(w(|o| write_nstring(o, None)), "NIL");
        assert_eq!(w(|o| write_nstring(o, Some(b"x"))), "\"x\"");
        assert_eq!(w(|o| write_literal8(o, b"\0a")), "~{2}\r\n\0a");
        let long = vec![b'a'; MAX_QUOTED + 1];
        assert!(w(|o| write_astring(o, &long)).starts_with("{1025}\r\n"));
    }

    #[test]
    fn flags() {
        let f = [
            Flag::Seen,
            Flag::Keyword("$Forwarded".into()),
            Flag::Extension("Foo".into()),
            Flag::Keyword("bad kw".into()),
        ];
        assert_eq!(w(|o| write_flag_list(o, &f)), "(\\Seen $Forwarded \\Foo)");
        assert_eq!(w(|o| write_flag_list(o, &[])), "()");
    }

    #[test]
    fn sequence_sets() {
        assert_eq!(sequence_set([1, 2, 3, 4, 5, 7, 9, 10]), "1:5,7,9:10");
        assert_eq!(sequence_set([5, 3, 4]), "5,3:4");
        assert_eq!(sequence_set([]), "");
        assert_eq!(
            sequence_set([u32::MAX - 1, u32::MAX]),
            "4294967294:4294967295"
        );
        assert_eq!(ranges_to_sequence_set(&[(1, 5), (7, 7)]), "1:5,7");
    }

    #[test]
    fn internal_dates() {
        // 17-Jul-1996 09:44:25 UTC is 837596665.
        assert_eq!(
            internal_date(837_596_665, -420),
            "17-Jul-1996 02:44:25 -0700"
        );
        assert_eq!(
            w(|o| write_internal_date(o, 837_596_665, -420)),
            "\"17-Jul-1996 02:44:25 -0700\""
        );
        assert_eq!(internal_date(0, 0), " 1-Jan-1970 00:00:00 +0000");
        assert_eq!(
            internal_date(951_782_400, 330),
            "29-Feb-2000 05:30:00 +0530"
        );
    }

    #[test]
    fn status_lines() {
        assert_eq!(
            w(|o| write_status(
                o,
                Some("a1"),
                Status::Ok,
                Some("READ-WRITE"),
                "SELECT completed"
            )),
            "a1 OK [READ-WRITE] SELECT completed\r\n"
        );
        assert_eq!(
            w(|o| write_status(o, None, Status::Bad, None, "bad\r\nx")),
            "* BAD bad  x\r\n"
        );
        assert_eq!(w(|o| write_continuation(o, "Ready")), "+ Ready\r\n");
    }
}
