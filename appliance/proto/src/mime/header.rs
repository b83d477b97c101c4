//! Header-block scanning and MIME structured-field parsing over raw bytes.
//!
//! What it is: an iterator over the fields of an RFC 5322 header block that reports each field's
//! name, raw value and exact byte range (folded lines included), RFC 5322 unfolding, and a lenient
//! RFC 2045/2183/2231 parser for `Content-Type` and `Content-Disposition` values (type, subtype and
//! parameters, with comments skipped and RFC 2231 continuations merged).
//!
//! What it is not: no RFC 2047 decoding (see `decode`), no address parsing (see `address`), no
//! allocation of the header block itself: everything borrows the caller's bytes.
//!
//! Invariants: every loop advances by at least one byte, so the work is linear in the header size;
//! comment nesting is counted, never recursed; at most [`MAX_PARAMS`] parameters are kept per field;
//! bare-LF line ends are accepted wherever CRLF is.

use std::ops::Range;

/// Parameters kept per `Content-Type`/`Content-Disposition` field; further ones are dropped.
/// Real mail carries a handful; the bound only stops a hostile header from inflating BODYSTRUCTURE.
pub const MAX_PARAMS: usize = 64;

/// RFC 2231 continuation segments merged per parameter; later segments are dropped.
const MAX_CONTINUATIONS: u32 = 256;

/// One header field, borrowed from the header block.
#[derive(Debug, Clone)]
pub struct Field<'a> {
    /// Field name as written (original case), without the colon or trailing blanks.
    pub name: &'a [u8],
    /// Raw value after the colon, folds included, final line end excluded.
    pub value: &'a [u8],
    /// Byte range of the whole field (all its physical lines, final line end included), relative
    /// to the start of the block given to [`fields`].
    pub line: Range<usize>,
    /// False for a line with no colon (`name` is then the whole line): such a line is no field,
    /// so lookups skip it, but HEADER.FIELDS.NOT still returns it.
    pub has_colon: bool,
}

/// Iterator over the fields of a header block; stops at the first empty line or the block's end.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    block: &'a [u8],
    pos: usize,
}

/// Iterates the fields of `block` (a header section, optionally followed by its blank line).
///
/// A line that does not start with blank space and has no colon is reported as a field whose name
/// is the whole line and whose value is empty, so HEADER.FIELDS.NOT keeps it as Dovecot does.
pub fn fields(block: &[u8]) -> Fields<'_> {
    Fields { block, pos: 0 }
}

/// End of the physical line starting at `pos`: index just past its LF, or the block end.
fn line_end(block: &[u8], pos: usize) -> usize {
    match block.get(pos..).and_then(|rest| memchr::memchr(b'\n', rest)) {
        Some(i) => pos + i + 1,
        None => block.len(),
    }
}

/// Strips one trailing line end (CRLF, LF, or a lone CR) from `line`.
pub fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// True when `line` (with its line end) is an empty line.
pub fn is_blank_line(line: &[u8]) -> bool {
    trim_eol(line).is_empty()
}

impl<'a> Iterator for Fields<'a> {
    type Item = Field<'a>;

    fn next(&mut self) -> Option<Field<'a>> {
        loop {
            let start = self.pos;
            if start >= self.block.len() {
                return None;
            }
            let first_end = line_end(self.block, start);
            let first = self.block.get(start..first_end)?;
            if is_blank_line(first) {
                self.pos = self.block.len();
                return None;
            }
            // Continuation lines with no field before them (leading blank space on the very first
            // line) belong to nothing: skip them, as every MUA does.
            let mut end = first_end;
            while let Some(&c) = self.block.get(end) {
                if c == b' ' || c == b'\t' {
                    end = line_end(self.block, end);
                } else {
                    break;
                }
            }
            self.pos = end;
            if first.first().is_some_and(|&c| c == b' ' || c == b'\t') {
                continue;
            }
            let whole = self.block.get(start..end)?;
            let body = trim_eol(whole);
            let (name, value, has_colon) = match memchr::memchr(b':', trim_eol(first)) {
                Some(colon) => {
                    let name = body.get(..colon).unwrap_or_default();
                    let name = trim_ascii_end(name);
                    (name, body.get(colon + 1..).unwrap_or_default(), true)
                }
                None => (trim_eol(first), &b""[..], false),
            };
            return Some(Field { name, value, line: start..end, has_colon });
        }
    }
}

fn trim_ascii_end(b: &[u8]) -> &[u8] {
    let mut end = b.len();
    while end > 0 && matches!(b.get(end - 1), Some(b' ' | b'\t')) {
        end -= 1;
    }
    b.get(..end).unwrap_or_default()
}

/// The header section at the start of `entity`: up to and including the first empty line, or all
/// of `entity` when it has none.
pub fn header_block(entity: &[u8]) -> &[u8] {
    let mut pos = 0;
    while pos < entity.len() {
        let end = line_end(entity, pos);
        let blank = entity.get(pos..end).is_some_and(is_blank_line);
        pos = end;
        if blank {
            break;
        }
    }
    entity.get(..pos).unwrap_or(entity)
}

/// Value of the first field named `name` (ASCII case-insensitive), raw.
pub fn first_value<'a>(block: &'a [u8], name: &str) -> Option<&'a [u8]> {
    fields(block)
        .find(|f| f.has_colon && f.name.eq_ignore_ascii_case(name.as_bytes()))
        .map(|f| f.value)
}

/// RFC 5322 unfolding: removes every CR and LF (a fold is CRLF followed by blank space, and the
/// blank space stays), then trims blank space at both ends.
pub fn unfold(value: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = value.iter().copied().filter(|&c| c != b'\r' && c != b'\n').collect();
    let end = out.len() - out.iter().rev().take_while(|c| matches!(c, b' ' | b'\t')).count();
    out.truncate(end);
    let start = out.iter().take_while(|c| matches!(c, b' ' | b'\t')).count();
    out.drain(..start);
    out
}

/// Unfolded value of the first field named `name`.
pub fn first_unfolded(block: &[u8], name: &str) -> Option<Vec<u8>> {
    first_value(block, name).map(unfold)
}

/// A parsed `type/subtype; params` (Content-Type) or `disposition; params` (Content-Disposition).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaValue {
    /// Primary token as written (original case). Empty when the field had none.
    pub kind: Vec<u8>,
    /// Subtype as written; `None` for Content-Disposition, empty for a type without a slash
    /// (`Content-Type: text` is reported as `"text" ""`, as Dovecot does).
    pub subtype: Option<Vec<u8>>,
    /// Parameters in order of first appearance; names and values as written (quotes and
    /// backslash escapes removed; Dovecot also keeps the case). RFC 2231 continuations are merged: `name*0*`, `name*1*` become
    /// one `name*` parameter whose value keeps its `charset'lang'` prefix (as Dovecot does).
    pub params: Vec<(Vec<u8>, Vec<u8>)>,
}

impl MediaValue {
    /// Value of parameter `name` (ASCII case-insensitive).
    pub fn param(&self, name: &str) -> Option<&[u8]> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.as_slice())
    }
}

/// Lexer over a structured MIME field value (RFC 2045 tokens, quoted strings, RFC 822 comments).
struct Lexer<'a> {
    b: &'a [u8],
    pos: usize,
}

fn is_tspecial(c: u8) -> bool {
    matches!(
        c,
        b'(' | b')' | b'<' | b'>' | b'@' | b',' | b';' | b':' | b'\\' | b'"' | b'/' | b'[' | b']'
            | b'?' | b'='
    )
}

fn is_token_char(c: u8) -> bool {
    c > b' ' && c != 0x7f && !is_tspecial(c)
}

impl<'a> Lexer<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    /// Skips blank space, line ends and (nested) comments.
    fn skip_cfws(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' | b'\r' | b'\n' => self.pos += 1,
                b'(' => {
                    let mut depth = 0usize;
                    while let Some(c) = self.peek() {
                        self.pos += 1;
                        match c {
                            b'\\' => self.pos += 1,
                            b'(' => depth += 1,
                            b')' => {
                                depth = depth.saturating_sub(1);
                                if depth == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => break,
            }
        }
    }

    fn token(&mut self) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(is_token_char) {
            self.pos += 1;
        }
        self.b.get(start..self.pos).unwrap_or_default()
    }

    /// Reads a quoted string (the opening quote is current). An unterminated one runs to the end
    /// and yields `None` (Dovecot drops such a parameter).
    fn quoted(&mut self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.pos += 1;
        while let Some(c) = self.peek() {
            self.pos += 1;
            match c {
                b'"' => return Some(out),
                b'\\' => {
                    if let Some(n) = self.peek() {
                        out.push(n);
                        self.pos += 1;
                    }
                }
                b'\r' | b'\n' => {}
                _ => out.push(c),
            }
        }
        None
    }

    /// A parameter value: quoted string, token, or (leniently) anything up to the next `;`.
    /// `None` for an unterminated quoted string.
    fn value(&mut self) -> Option<Vec<u8>> {
        self.skip_cfws();
        if self.peek() == Some(b'"') {
            return self.quoted();
        }
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c == b';' {
                break;
            }
            self.pos += 1;
        }
        let raw = self.b.get(start..self.pos).unwrap_or_default();
        Some(trim_ascii_end(raw).iter().copied().filter(|&c| c != b'\r' && c != b'\n').collect())
    }

    /// Skips to just past the next `;` (or the end).
    fn skip_past_semicolon(&mut self) {
        while let Some(c) = self.peek() {
            self.pos += 1;
            if c == b';' {
                return;
            }
            if c == b'"' {
                self.pos -= 1;
                if self.quoted().is_none() {
                    return;
                }
            }
        }
    }
}

/// Parses a Content-Type (`with_subtype`) or Content-Disposition value. A Content-Type with no
/// leading token yields `None` (the caller applies the RFC 2045 default); a Content-Disposition
/// with none yields an empty disposition type, which Dovecot reports as `("" NIL)`.
pub fn parse_media(value: &[u8], with_subtype: bool) -> Option<MediaValue> {
    let mut lx = Lexer { b: value, pos: 0 };
    lx.skip_cfws();
    let kind = lx.token().to_vec();
    if kind.is_empty() && with_subtype {
        return None;
    }
    let mut subtype = None;
    if with_subtype {
        lx.skip_cfws();
        if lx.peek() == Some(b'/') {
            lx.pos += 1;
            lx.skip_cfws();
            subtype = Some(lx.token().to_vec());
        } else {
            subtype = Some(Vec::new());
        }
    }
    let raw = parse_params(&mut lx);
    Some(MediaValue { kind, subtype, params: merge_rfc2231(raw) })
}

/// Raw `name=value` pairs after the primary token, in order.
fn parse_params(lx: &mut Lexer<'_>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    loop {
        lx.skip_cfws();
        match lx.peek() {
            None => break,
            Some(b';') => {
                lx.pos += 1;
                continue;
            }
            Some(_) => {}
        }
        let name = lx.token();
        lx.skip_cfws();
        if name.is_empty() || lx.peek() != Some(b'=') {
            // Garbage where a parameter should be: skip to the next one.
            if name.is_empty() && lx.peek().is_some_and(|c| c != b';') {
                lx.pos += 1;
            }
            lx.skip_past_semicolon();
            continue;
        }
        lx.pos += 1;
        let Some(value) = lx.value() else { break };
        if out.len() < MAX_PARAMS * 4 {
            out.push((name.to_vec(), value));
        }
    }
    out
}

/// Merges RFC 2231 continuations (`name*0`, `name*1*`, ...) into one parameter each.
fn merge_rfc2231(raw: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<(Vec<u8>, Vec<u8>)> {
    // (base name, extended?, segments (index, extended, value))
    struct Group {
        base: Vec<u8>,
        plain: Option<Vec<u8>>,
        segments: Vec<(u32, bool, Vec<u8>)>,
    }
    let mut groups: Vec<Group> = Vec::new();
    for (name, value) in raw {
        let (base, seg) = split_continuation(&name);
        let idx = match groups.iter().position(|g| g.base.eq_ignore_ascii_case(base)) {
            Some(i) => i,
            None => {
                if groups.len() >= MAX_PARAMS {
                    continue;
                }
                groups.push(Group { base: base.to_vec(), plain: None, segments: Vec::new() });
                groups.len() - 1
            }
        };
        let Some(g) = groups.get_mut(idx) else { continue };
        match seg {
            None => {
                if g.plain.is_none() {
                    g.plain = Some(value);
                }
            }
            Some((n, ext)) => {
                if n < MAX_CONTINUATIONS && !g.segments.iter().any(|s| s.0 == n) {
                    g.segments.push((n, ext, value));
                }
            }
        }
    }
    groups
        .into_iter()
        .map(|mut g| {
            if g.segments.is_empty() {
                return (g.base, g.plain.unwrap_or_default());
            }
            g.segments.sort_by_key(|s| s.0);
            let extended = g.segments.iter().any(|s| s.1);
            let mut value = Vec::new();
            for (_, _, v) in &g.segments {
                value.extend_from_slice(v);
            }
            let mut name = g.base;
            if extended {
                name.push(b'*');
            }
            (name, value)
        })
        .collect()
}

/// Splits `name*3*` into (`name`, Some((3, true))), `name*` into (`name`, Some((0, true))),
/// `name*2` into (`name`, Some((2, false))) and `name` into (`name`, None).
fn split_continuation(name: &[u8]) -> (&[u8], Option<(u32, bool)>) {
    let Some(star) = memchr::memchr(b'*', name) else {
        return (name, None);
    };
    let base = name.get(..star).unwrap_or_default();
    let rest = name.get(star + 1..).unwrap_or_default();
    if rest.is_empty() {
        return (base, Some((0, true)));
    }
    let (digits, ext) = match rest.strip_suffix(b"*") {
        Some(d) => (d, true),
        None => (rest, false),
    };
    if digits.is_empty() || digits.len() > 4 || !digits.iter().all(u8::is_ascii_digit) {
        return (name, None);
    }
    let n = digits.iter().fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
    (base, Some((n, ext)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)] // tests may unwrap and panic (workspace rule)
mod tests {
    use super::*;

    #[test]
    fn fields_report_exact_ranges_and_folds() {
        let block = b"Subject: a\r\n b\r\nFrom : x@y\r\nbogus line\r\n\r\nbody";
        let f: Vec<_> = fields(block).collect();
        assert_eq!(f.len(), 3);
        assert_eq!(f[0].name, b"Subject");
        assert_eq!(f[0].value, b" a\r\n b");
        assert_eq!(&block[f[0].line.clone()], b"Subject: a\r\n b\r\n");
        assert_eq!(f[1].name, b"From");
        assert_eq!(f[2].name, b"bogus line");
        assert_eq!(unfold(f[0].value), b"a b");
    }

    #[test]
    fn content_type_with_comments_quotes_and_2231() {
        let m = parse_media(
            b" Text/Plain (comment; x=y) ; charset=\"us-ascii\"; format=flowed;\r\n\
              title*0*=us-ascii'en'This%20is; title*1*=%20fun; NAME=\"a\\\"b\"",
            true,
        )
        .unwrap();
        assert_eq!(m.kind, b"Text");
        assert_eq!(m.subtype.as_deref(), Some(&b"Plain"[..]));
        assert_eq!(m.param("charset"), Some(&b"us-ascii"[..]));
        assert_eq!(m.param("format"), Some(&b"flowed"[..]));
        assert_eq!(m.param("title*"), Some(&b"us-ascii'en'This%20is%20fun"[..]));
        assert_eq!(m.param("name"), Some(&b"a\"b"[..]));
        assert_eq!(m.params.last().unwrap().0, b"NAME");
    }

    #[test]
    fn media_without_subtype_keeps_type() {
        let m = parse_media(b"text", true).unwrap();
        assert_eq!((m.kind.as_slice(), m.subtype.as_deref()), (&b"text"[..], Some(&b""[..])));
        assert!(parse_media(b"", true).is_none());
        assert!(parse_media(b"(only comment", true).is_none());
        let d = parse_media(b"attachment; filename=a.txt", false).unwrap();
        assert_eq!(d.kind, b"attachment");
        assert_eq!(d.param("filename"), Some(&b"a.txt"[..]));
    }
}
