//! Small encoders for IMAP response syntax used by the handlers: strings (quoted or literal),
//! nstrings, flag lists, date-times and mailbox names in the session's encoding.
//!
//! What it is: byte-appending helpers that always produce valid RFC 9051 syntax for any input.
//! What it is not: the parser or the FETCH body encoders (`hermes_proto`).
//!
//! Invariants: a string is quoted only when every byte may appear in a quoted string
//! (no CR, LF or NUL, and 8-bit bytes only when `utf8` is on and the text is valid UTF-8) and it
//! is short; otherwise a literal is used. Output is never ambiguous.

use hermes_store::InternalDate;

/// Longest string sent quoted; longer ones go as literals (easier on clients' line buffers).
const MAX_QUOTED: usize = 1024;

fn quotable(s: &[u8], utf8: bool) -> bool {
    s.len() <= MAX_QUOTED
        && s.iter().all(|&b| b != b'\r' && b != b'\n' && b != 0 && (b < 0x80 || utf8))
        && (!utf8 || std::str::from_utf8(s).is_ok())
}

/// A string: quoted when possible, else a literal.
pub fn string(out: &mut Vec<u8>, s: &[u8], utf8: bool) {
    if quotable(s, utf8) {
        out.push(b'"');
        for &b in s {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        literal(out, s);
    }
}

/// `{n}\r\n` followed by the bytes.
pub fn literal(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
    out.extend_from_slice(s);
}

/// `(\Seen $Junk)`.
pub fn flag_list(out: &mut Vec<u8>, flags: &[String]) {
    out.push(b'(');
    for (i, f) in flags.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(f.as_bytes());
    }
    out.push(b')');
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// (year, month 1-12, day) for days since 1970-01-01 (Howard Hinnant's civil_from_days).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The INTERNALDATE wire form, quoted: `"17-Jul-1996 02:44:25 -0700"`.
pub fn internal_date(d: InternalDate) -> String {
    let offset = i64::from(d.offset_minutes.clamp(-(99 * 60 + 59), 99 * 60 + 59));
    let local = d.unix.saturating_add(offset * 60);
    let days = local.div_euclid(86_400);
    let secs = local.rem_euclid(86_400);
    let (y, m, day) = civil_from_days(days);
    let month = MONTHS.get((m as usize).saturating_sub(1)).copied().unwrap_or("Jan");
    let sign = if offset < 0 { '-' } else { '+' };
    let off = offset.abs();
    format!(
        "\"{:2}-{}-{:04} {:02}:{:02}:{:02} {}{:02}{:02}\"",
        day,
        month,
        y.clamp(0, 9999),
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60,
        sign,
        off / 60,
        off % 60
    )
}

/// Days since 1970-01-01 of the message's internal date in its own zone (SEARCH BEFORE/ON/SINCE
/// compare dates "disregarding time and timezone", i.e. the date as the server recorded it).
pub fn internal_day(d: InternalDate) -> i64 {
    d.unix.saturating_add(i64::from(d.offset_minutes) * 60).div_euclid(86_400)
}

/// A mailbox name for the client: modified UTF-7 for IMAP4rev1 sessions, UTF-8 otherwise.
pub fn mailbox(out: &mut Vec<u8>, name: &str, utf8: bool) {
    if utf8 {
        string(out, name.as_bytes(), true);
    } else {
        let enc = hermes_proto::imap::utf7::encode(name);
        string(out, enc.as_bytes(), false);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;

    fn s(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut v = Vec::new();
        f(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn strings_quote_or_literal() {
        assert_eq!(s(|o| string(o, b"a \"b\" \\", false)), "\"a \\\"b\\\" \\\\\"");
        assert_eq!(s(|o| string(o, b"a\r\nb", false)), "{4}\r\na\r\nb");
        assert_eq!(s(|o| string(o, "é".as_bytes(), false)), "{2}\r\né");
        assert_eq!(s(|o| string(o, "é".as_bytes(), true)), "\"é\"");
    }

    #[test]
    fn internal_dates() {
        assert_eq!(
            internal_date(InternalDate { unix: 837_596_665, offset_minutes: -420 }),
            "\"17-Jul-1996 02:44:25 -0700\""
        );
        assert_eq!(internal_date(InternalDate { unix: 0, offset_minutes: 0 }), "\" 1-Jan-1970 00:00:00 +0000\"");
        assert_eq!(
            internal_date(InternalDate { unix: 1_700_000_000, offset_minutes: 330 }),
            "\"15-Nov-2023 03:43:20 +0530\""
        );
    }
}
