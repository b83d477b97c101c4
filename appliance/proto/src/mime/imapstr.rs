//! IMAP `string` / `nstring` output for the values FETCH builds from header text.
//!
//! What it is: writers that choose a quoted string when RFC 9051 allows one (7-bit TEXT-CHARs,
//! not too long) and a synchronising literal `{n}\r\n...` otherwise, as Dovecot does for 8-bit
//! display names and subjects.
//!
//! What it is not: no `literal8` (section content is written by the session, which knows whether
//! BINARY applies), no charset conversion.
//!
//! Invariants: the output is always a syntactically valid `string`/`nstring`; CR, LF and NUL never
//! appear in it (header values are unfolded before they get here, and any stray CR, LF or NUL is
//! replaced by a space because none may appear in a literal that is not a literal8 either).

/// Quoted strings longer than this are sent as literals (keeps lines short for old clients).
const MAX_QUOTED: usize = 1024;

/// Appends `s` as an IMAP string.
pub fn string(out: &mut Vec<u8>, s: &[u8]) {
    let quotable = s.len() <= MAX_QUOTED && s.iter().all(|&c| (0x20..0x7f).contains(&c));
    if quotable {
        out.push(b'"');
        for &c in s {
            if c == b'"' || c == b'\\' {
                out.push(b'\\');
            }
            out.push(c);
        }
        out.push(b'"');
    } else {
        out.push(b'{');
        out.extend_from_slice(s.len().to_string().as_bytes());
        out.extend_from_slice(b"}\r\n");
        out.extend(s.iter().map(|&c| if matches!(c, 0 | b'\r' | b'\n') { b' ' } else { c }));
    }
}

/// Appends `s` as an IMAP nstring (`NIL` when absent).
pub fn nstring(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        Some(s) => string(out, s),
        None => out.extend_from_slice(b"NIL"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)] // tests may unwrap and panic (workspace rule)
mod tests {
    use super::*;

    #[test]
    fn quoting_and_literals() {
        let mut o = Vec::new();
        string(&mut o, b"a \"b\" \\c");
        assert_eq!(o, b"\"a \\\"b\\\" \\\\c\"");
        o.clear();
        string(&mut o, "Café".as_bytes());
        assert_eq!(o, "{5}\r\nCafé".as_bytes());
        o.clear();
        string(&mut o, b"a\rb\0");
        assert_eq!(o, b"{4}\r\na b ");
        o.clear();
        nstring(&mut o, None);
        assert_eq!(o, b"NIL");
    }
}
