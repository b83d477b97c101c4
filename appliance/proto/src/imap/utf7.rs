//! RFC 3501 §5.1.3 modified UTF-7, the IMAP4rev1 encoding of international mailbox names.
//!
//! What it is: [`encode`] (UTF-8 → modified UTF-7, always succeeds) and a strict [`decode`]
//! (modified UTF-7 → UTF-8) that rejects every non-canonical or malformed form, so that one
//! mailbox has exactly one wire name.
//!
//! What it is not: no general UTF-7 (RFC 2152) support, and no policy on whether a session uses it
//! (with `UTF8=ACCEPT`, names are UTF-8 on the wire and no conversion happens).
//!
//! Invariants: `decode(&encode(s)) == Ok(s)` for every string; `decode` accepts only printable
//! US-ASCII, requires every `&` shift to end with `-`, rejects printable ASCII inside a shift
//! (it must be written directly), unpaired UTF-16 surrogates, non-zero padding bits and
//! leftovers of 6 bits or more; it allocates at most the size of its input.

use std::fmt;

/// Why a name is not valid modified UTF-7.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Utf7Error {
    /// An octet outside printable US-ASCII (0x20..=0x7e).
    NonAscii,
    /// A `&` shift not terminated by `-`.
    Unterminated,
    /// A character outside the modified base64 alphabet inside a shift.
    BadBase64,
    /// Leftover bits that are non-zero or too many, or an odd number of octets.
    BadPadding,
    /// An unpaired UTF-16 surrogate.
    BadSurrogate,
    /// A character that must be written directly (printable ASCII) was encoded, or the
    /// encoding is otherwise not canonical (an empty shift other than `&-`).
    NotCanonical,
}

impl fmt::Display for Utf7Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Utf7Error::NonAscii => "mailbox name contains 8-bit or control characters",
            Utf7Error::Unterminated => "unterminated modified UTF-7 sequence",
            Utf7Error::BadBase64 => "invalid modified base64",
            Utf7Error::BadPadding => "invalid modified UTF-7 padding",
            Utf7Error::BadSurrogate => "invalid UTF-16 in modified UTF-7",
            Utf7Error::NotCanonical => "non-canonical modified UTF-7",
        })
    }
}

impl std::error::Error for Utf7Error {}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

fn b64_value(b: u8) -> Option<u32> {
    Some(u32::from(match b {
        b'A'..=b'Z' => b - b'A',
        b'a'..=b'z' => b - b'a' + 26,
        b'0'..=b'9' => b - b'0' + 52,
        b'+' => 62,
        b',' => 63,
        _ => return None,
    }))
}

fn flush_units(out: &mut String, units: &[u16]) {
    out.push('&');
    let mut bits: u32 = 0;
    let mut nbits = 0u32;
    for &u in units {
        bits = (bits << 16) | u32::from(u);
        nbits += 16;
        while nbits >= 6 {
            nbits -= 6;
            out.push(char::from(ALPHABET[((bits >> nbits) & 0x3f) as usize]));
        }
        bits &= (1 << nbits) - 1;
    }
    if nbits > 0 {
        out.push(char::from(
            ALPHABET[((bits << (6 - nbits)) & 0x3f) as usize],
        ));
    }
    out.push('-');
}

/// Encodes a UTF-8 name as modified UTF-7 (`Entwürfe` → `Entw&APw-rfe`).
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 8);
    let mut units: Vec<u16> = Vec::new();
    for ch in name.chars() {
        if (' '..='~').contains(&ch) {
            if !units.is_empty() {
                flush_units(&mut out, &units);
                units.clear();
            }
            if ch == '&' {
                out.push_str("&-");
            } else {
                out.push(ch);
            }
        } else {
            let mut buf = [0u16; 2];
            units.extend_from_slice(ch.encode_utf16(&mut buf));
        }
    }
    if !units.is_empty() {
        flush_units(&mut out, &units);
    }
    out
}

/// Strictly decodes a modified UTF-7 name to UTF-8 (`~peter/mail/&U,BTFw-/&ZeVnLIqe-` →
/// `~peter/mail/台北/日本語`).
pub fn decode(name: &str) -> Result<String, Utf7Error> {
    let bytes = name.as_bytes();
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if !(0x20..=0x7e).contains(&b) {
            return Err(Utf7Error::NonAscii);
        }
        if b != b'&' {
            out.push(char::from(b));
            i += 1;
            continue;
        }
        i += 1;
        let start = i;
        while i < bytes.len() && bytes[i] != b'-' {
            i += 1;
        }
        if i >= bytes.len() {
            return Err(Utf7Error::Unterminated);
        }
        let run = &bytes[start..i];
        i += 1; // the '-'
        if run.is_empty() {
            out.push('&');
            continue;
        }
        decode_run(run, &mut out)?;
    }
    Ok(out)
}

fn decode_run(run: &[u8], out: &mut String) -> Result<(), Utf7Error> {
    let mut units: Vec<u16> = Vec::with_capacity(run.len() * 6 / 16 + 1);
    let mut bits: u32 = 0;
    let mut nbits = 0u32;
    for &c in run {
        let v = b64_value(c).ok_or(if (0x20..=0x7e).contains(&c) {
            Utf7Error::BadBase64
        } else {
            Utf7Error::NonAscii
        })?;
        bits = (bits << 6) | v;
        nbits += 6;
        if nbits >= 16 {
            nbits -= 16;
            units.push(((bits >> nbits) & 0xffff) as u16);
            bits &= (1 << nbits) - 1;
        }
    }
    if nbits >= 6 || bits != 0 || units.is_empty() {
        return Err(Utf7Error::BadPadding);
    }
    for r in char::decode_utf16(units.iter().copied()) {
        let ch = r.map_err(|_| Utf7Error::BadSurrogate)?;
        if (' '..='~').contains(&ch) {
            return Err(Utf7Error::NotCanonical);
        }
        out.push(ch);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap")]
mod tests {
    use super::*;

    #[test]
    fn rfc3501_examples() {
        assert_eq!(
            decode("~peter/mail/&U,BTFw-/&ZeVnLIqe-").unwrap(),
            "~peter/mail/台北/日本語"
        );
        assert_eq!(
            encode("~peter/mail/台北/日本語"),
            "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
        );
        assert_eq!(decode("&Jjo-!").unwrap(), "☺!");
        assert_eq!(encode("☺!"), "&Jjo-!");
        assert_eq!(decode("&Jjo-").unwrap(), "☺");
        assert_eq!(encode("a&b"), "a&-b");
        assert_eq!(decode("a&-b").unwrap(), "a&b");
        assert_eq!(encode("Entwürfe"), "Entw&APw-rfe");
    }

    #[test]
    fn round_trips() {
        for s in [
            "",
            "INBOX",
            "Sent Items",
            "Entwürfe",
            "😀 emoji",
            "a&&b",
            "日本語/中文",
            "\u{1}ctl",
            "Ünïcödé~&",
        ] {
            let e = encode(s);
            assert!(e.bytes().all(|b| (0x20..=0x7e).contains(&b)), "{e}");
            assert_eq!(decode(&e).unwrap(), s, "via {e}");
        }
    }

    #[test]
    fn strict_rejections() {
        assert_eq!(decode("&Jjo"), Err(Utf7Error::Unterminated));
        assert_eq!(decode("caf\u{e9}"), Err(Utf7Error::NonAscii));
        assert_eq!(decode("&Jj!-"), Err(Utf7Error::BadBase64));
        assert_eq!(decode("&Jj/-"), Err(Utf7Error::BadBase64)); // '/' is ',' in modified base64
        assert_eq!(decode("&Jjp-"), Err(Utf7Error::BadPadding)); // non-zero padding bits
        assert_eq!(decode("&AGE-"), Err(Utf7Error::NotCanonical)); // "a" must be direct
        assert_eq!(decode("&2D0-"), Err(Utf7Error::BadSurrogate)); // lone high surrogate
        assert_eq!(decode("&A-"), Err(Utf7Error::BadPadding));
        assert_eq!(decode("&Jjo=-"), Err(Utf7Error::BadBase64));
    }
}
