//! RFC 5322 address-list parsing for ENVELOPE and address SEARCH keys.
//!
//! What it is: a lenient parser of `address-list` (mailboxes, `name <addr>`, groups, obsolete
//! routes, comments) over an unfolded header value, producing the IMAP address structure
//! (display name, source route, mailbox, host) with group start/end markers. It follows Dovecot's
//! recovery rules: a comment stands in for a missing display name, a missing local part or domain
//! becomes `MISSING_MAILBOX` / `MISSING_DOMAIN`.
//!
//! What it is not: no RFC 2047 decoding (ENVELOPE returns raw text; `search` decodes names
//! itself) and no validation of domains or local parts.
//!
//! Invariants: linear in the input length (every step consumes at least one byte); at most
//! [`MAX_ADDRESSES`] entries are produced; never panics on any byte string.

/// Addresses kept per header field; the rest are ignored (a bound on ENVELOPE size).
pub const MAX_ADDRESSES: usize = 1000;

const MISSING_MAILBOX: &[u8] = b"MISSING_MAILBOX";
const MISSING_DOMAIN: &[u8] = b"MISSING_DOMAIN";

/// One entry of an IMAP address list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A mailbox.
    Mailbox {
        /// Display name (phrase words joined by one space, quotes removed) or comment.
        name: Option<Vec<u8>>,
        /// Obsolete source route, `@a,@b`.
        adl: Option<Vec<u8>>,
        /// Local part.
        mailbox: Vec<u8>,
        /// Domain.
        host: Vec<u8>,
    },
    /// Start of a group: `(NIL NIL "name" NIL)`.
    GroupStart(Vec<u8>),
    /// End of a group: `(NIL NIL NIL NIL)`.
    GroupEnd,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// Atom or dot-atom text (may contain dots).
    Atom(Vec<u8>),
    /// Quoted string, unquoted.
    Quoted(Vec<u8>),
    /// One of `< > @ , ; : [ ]` and stray specials.
    Special(u8),
    /// Domain literal `[...]` kept with brackets.
    Literal(Vec<u8>),
}

/// Tokenises; comments are dropped but the last one is remembered per address by the parser,
/// so tokens carry an optional preceding-comment marker via a side list.
fn tokenize(b: &[u8]) -> Vec<(Tok, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut comment: Option<Vec<u8>> = None;
    while let Some(&c) = b.get(i) {
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'(' => {
                let mut depth = 0usize;
                let mut text = Vec::new();
                while let Some(&c) = b.get(i) {
                    i += 1;
                    match c {
                        b'\\' => {
                            if let Some(&n) = b.get(i) {
                                text.push(n);
                                i += 1;
                            }
                        }
                        b'(' => {
                            if depth > 0 {
                                text.push(c);
                            }
                            depth += 1;
                        }
                        b')' => {
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                break;
                            }
                            text.push(c);
                        }
                        _ => text.push(c),
                    }
                }
                let text = collapse_ws(&text);
                if !text.is_empty() {
                    // Attach to the previous token: `addr@dom (Name)`.
                    match out.last_mut() {
                        Some((_, slot @ None)) => *slot = Some(text),
                        Some(_) => {}
                        None => comment = Some(text),
                    }
                }
            }
            b'"' => {
                i += 1;
                let mut text = Vec::new();
                while let Some(&c) = b.get(i) {
                    i += 1;
                    match c {
                        b'"' => break,
                        b'\\' => {
                            if let Some(&n) = b.get(i) {
                                text.push(n);
                                i += 1;
                            }
                        }
                        _ => text.push(c),
                    }
                }
                out.push((Tok::Quoted(text), comment.take()));
            }
            b'[' => {
                let start = i;
                while let Some(&c) = b.get(i) {
                    i += 1;
                    if c == b']' {
                        break;
                    }
                }
                out.push((Tok::Literal(b.get(start..i).unwrap_or_default().to_vec()), comment.take()));
            }
            b'<' | b'>' | b'@' | b',' | b';' | b':' | b')' | b']' | b'\\' => {
                i += 1;
                out.push((Tok::Special(c), comment.take()));
            }
            _ => {
                let start = i;
                while let Some(&c) = b.get(i) {
                    if matches!(
                        c,
                        b' ' | b'\t' | b'\r' | b'\n' | b'(' | b')' | b'<' | b'>' | b'@' | b','
                            | b';' | b':' | b'"' | b'[' | b']' | b'\\'
                    ) {
                        break;
                    }
                    i += 1;
                }
                out.push((Tok::Atom(b.get(start..i).unwrap_or_default().to_vec()), comment.take()));
            }
        }
    }
    out
}

fn collapse_ws(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    for w in b.split(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n')).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(w);
    }
    out
}

/// Parses an unfolded address-list value.
pub fn parse_list(value: &[u8]) -> Vec<Entry> {
    let toks = tokenize(value);
    let mut p = ListParser { toks: &toks, pos: 0, out: Vec::new() };
    p.list();
    p.out
}

struct ListParser<'a> {
    toks: &'a [(Tok, Option<Vec<u8>>)],
    pos: usize,
    out: Vec<Entry>,
}

impl ListParser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.0)
    }

    fn full(&self) -> bool {
        self.out.len() >= MAX_ADDRESSES
    }

    fn list(&mut self) {
        let mut in_group = false;
        while self.pos < self.toks.len() && !self.full() {
            match self.peek() {
                Some(Tok::Special(b',')) => {
                    self.pos += 1;
                    continue;
                }
                Some(Tok::Special(b';')) => {
                    self.pos += 1;
                    if in_group {
                        self.out.push(Entry::GroupEnd);
                        in_group = false;
                    }
                    continue;
                }
                _ => {}
            }
            // Collect the phrase (or addr-spec) up to `<`, `:`, `,`, `;`.
            let start = self.pos;
            while let Some(t) = self.peek() {
                if matches!(t, Tok::Special(b'<' | b':' | b',' | b';')) {
                    break;
                }
                self.pos += 1;
            }
            let phrase = self.toks.get(start..self.pos).unwrap_or_default();
            match self.peek() {
                Some(Tok::Special(b':')) if !in_group => {
                    self.pos += 1;
                    self.out.push(Entry::GroupStart(phrase_text(phrase)));
                    in_group = true;
                }
                Some(Tok::Special(b':')) => {
                    // A colon inside a group: skip it as noise.
                    self.pos += 1;
                }
                Some(Tok::Special(b'<')) => {
                    self.pos += 1;
                    let name = phrase_text(phrase);
                    let mut entry = self.angle_addr();
                    if let Entry::Mailbox { name: n, .. } = &mut entry {
                        *n = if name.is_empty() { trailing_comment(self.toks, self.pos) } else { Some(name) };
                    }
                    // Anything up to the next separator is junk.
                    while let Some(t) = self.peek() {
                        if matches!(t, Tok::Special(b',' | b';')) {
                            break;
                        }
                        self.pos += 1;
                    }
                    self.out.push(entry);
                }
                _ => {
                    if !phrase.is_empty() {
                        self.out.push(addr_spec_entry(phrase));
                    }
                }
            }
        }
        if in_group && !self.full() {
            self.out.push(Entry::GroupEnd);
        }
    }

    /// After `<`: `[route:] local@domain >`.
    fn angle_addr(&mut self) -> Entry {
        let start = self.pos;
        while let Some(t) = self.peek() {
            let close = matches!(t, Tok::Special(b'>'));
            self.pos += 1;
            if close {
                break;
            }
        }
        let mut inner = self.toks.get(start..self.pos).unwrap_or_default();
        if let Some((last, rest)) = inner.split_last()
            && last.0 == Tok::Special(b'>')
        {
            inner = rest;
        }
        // Obsolete route: `@a,@b:` before the addr-spec.
        let mut adl = None;
        if inner.first().is_some_and(|t| t.0 == Tok::Special(b'@'))
            && let Some(colon) = inner.iter().position(|t| t.0 == Tok::Special(b':'))
        {
            let route = inner.get(..colon).unwrap_or_default();
            adl = Some(route.iter().flat_map(|t| tok_bytes(&t.0)).collect());
            inner = inner.get(colon + 1..).unwrap_or_default();
        }
        let mut e = addr_spec_entry(inner);
        if let Entry::Mailbox { adl: a, name, .. } = &mut e {
            *a = adl;
            *name = None;
        }
        e
    }
}

/// The comment right after `>` (`<a@b> (Name)`), if any.
fn trailing_comment(toks: &[(Tok, Option<Vec<u8>>)], pos: usize) -> Option<Vec<u8>> {
    pos.checked_sub(1).and_then(|i| toks.get(i)).and_then(|t| t.1.clone())
}

fn tok_bytes(t: &Tok) -> Vec<u8> {
    match t {
        Tok::Atom(a) | Tok::Literal(a) => a.clone(),
        Tok::Quoted(q) => {
            let mut v = Vec::with_capacity(q.len() + 2);
            v.push(b'"');
            v.extend_from_slice(q);
            v.push(b'"');
            v
        }
        Tok::Special(c) => vec![*c],
    }
}

/// Display-name text: words joined by one space, quoted strings unquoted.
fn phrase_text(toks: &[(Tok, Option<Vec<u8>>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (t, _) in toks {
        let w = match t {
            Tok::Atom(a) | Tok::Quoted(a) | Tok::Literal(a) => a.as_slice(),
            Tok::Special(c) => std::slice::from_ref(c),
        };
        if !out.is_empty() && !matches!(t, Tok::Special(b'.')) {
            out.push(b' ');
        }
        out.extend_from_slice(w);
    }
    out
}

/// Builds a mailbox from `local@domain` tokens (no angle brackets).
fn addr_spec_entry(toks: &[(Tok, Option<Vec<u8>>)]) -> Entry {
    let at = toks.iter().rposition(|t| t.0 == Tok::Special(b'@'));
    let (local, domain) = match at {
        Some(i) => (toks.get(..i).unwrap_or_default(), toks.get(i + 1..).unwrap_or_default()),
        None => {
            // `"only name"` or `two words` with no `@`: a display name without an address, as
            // Dovecot reads it. A single word (`local-only`) is a local part.
            let text = phrase_text(toks);
            if text.contains(&b' ') {
                return Entry::Mailbox {
                    name: Some(text),
                    adl: None,
                    mailbox: MISSING_MAILBOX.to_vec(),
                    host: MISSING_DOMAIN.to_vec(),
                };
            }
            (toks, &[][..])
        }
    };
    // A local part keeps quoted strings quoted when they need it (RFC 9051 returns the
    // local-part as written minus CFWS).
    let mailbox: Vec<u8> = local.iter().flat_map(|t| tok_bytes(&t.0)).collect();
    let host: Vec<u8> = domain.iter().flat_map(|t| tok_bytes(&t.0)).collect();
    let comment = toks.iter().rev().find_map(|t| t.1.clone());
    Entry::Mailbox {
        name: comment,
        adl: None,
        mailbox: if mailbox.is_empty() { MISSING_MAILBOX.to_vec() } else { mailbox },
        host: if host.is_empty() { MISSING_DOMAIN.to_vec() } else { host },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)] // tests may unwrap and panic (workspace rule)
mod tests {
    use super::*;

    fn mb(name: Option<&str>, adl: Option<&str>, m: &str, h: &str) -> Entry {
        Entry::Mailbox {
            name: name.map(|s| s.as_bytes().to_vec()),
            adl: adl.map(|s| s.as_bytes().to_vec()),
            mailbox: m.as_bytes().to_vec(),
            host: h.as_bytes().to_vec(),
        }
    }

    #[test]
    fn dovecot_compatible_forms() {
        let v = br#""Fred \"Q\" Foobar" <foobar@Blurdybloop.COM>, local-only, bare@dom (The Comment), =?utf-8?q?J=C3=B6rg?= <j@x.de>"#;
        assert_eq!(
            parse_list(v),
            vec![
                mb(Some("Fred \"Q\" Foobar"), None, "foobar", "Blurdybloop.COM"),
                mb(None, None, "local-only", "MISSING_DOMAIN"),
                mb(Some("The Comment"), None, "bare", "dom"),
                mb(Some("=?utf-8?q?J=C3=B6rg?="), None, "j", "x.de"),
            ]
        );
    }

    #[test]
    fn groups_routes_and_empty() {
        let v = b"undisclosed-recipients:;, Friends: a@b.c, \"B\" <b@c.d>;, <@route1,@route2:r@x.y>";
        assert_eq!(
            parse_list(v),
            vec![
                Entry::GroupStart(b"undisclosed-recipients".to_vec()),
                Entry::GroupEnd,
                Entry::GroupStart(b"Friends".to_vec()),
                mb(None, None, "a", "b.c"),
                mb(Some("B"), None, "b", "c.d"),
                Entry::GroupEnd,
                mb(None, Some("@route1,@route2"), "r", "x.y"),
            ]
        );
        assert_eq!(
            parse_list(b"<>, \"only name\""),
            vec![
                mb(None, None, "MISSING_MAILBOX", "MISSING_DOMAIN"),
                mb(Some("only name"), None, "MISSING_MAILBOX", "MISSING_DOMAIN"),
            ]
        );
        assert!(parse_list(b"").is_empty());
        assert_eq!(
            parse_list(b"Unclosed: a@b"),
            vec![Entry::GroupStart(b"Unclosed".to_vec()), mb(None, None, "a", "b"), Entry::GroupEnd]
        );
    }
}
