//! RFC 5321 §4.1.2 paths and mailboxes, with RFC 6531 (SMTPUTF8) UTF-8 local parts and domains.
//!
//! What it is not: no DNS, no IDNA conversion, no lookup; this only decides what is a
//! syntactically valid address and normalises its local part (a quoted local part whose
//! content is a plain dot-string is unquoted, so `"alice"@x` and `alice@x` are one address).
//!
//! Invariants: length limits of RFC 5321 §4.5.3.1 are enforced — local part 64 octets,
//! domain 255 octets, path 256 octets including the angle brackets; source routes
//! (`<@a,@b:user@c>`) are refused; the parser never allocates more than the input's length.

use std::fmt;

/// RFC 5321 §4.5.3.1.1.
pub const MAX_LOCAL_PART: usize = 64;
/// RFC 5321 §4.5.3.1.2.
pub const MAX_DOMAIN: usize = 255;
/// RFC 5321 §4.5.3.1.3 (includes the angle brackets).
pub const MAX_PATH: usize = 256;
/// RFC 1035 label length.
const MAX_LABEL: usize = 63;

/// A mailbox `local@domain`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    /// The local part's value: quoting removed, quoted-pairs resolved.
    local: String,
    /// A domain name, or an address literal including its brackets (`[192.0.2.1]`).
    domain: String,
}

impl Address {
    pub fn local_part(&self) -> &str {
        &self.local
    }
    pub fn domain(&self) -> &str {
        &self.domain
    }
    /// False when the local part or the domain has UTF-8 beyond ASCII (needs SMTPUTF8).
    pub fn is_ascii(&self) -> bool {
        self.local.is_ascii() && self.domain.is_ascii()
    }
    /// Parses a bare mailbox (`local@domain`, no angle brackets), e.g. from a command line.
    pub fn parse(s: &str) -> Result<Address, AddressError> {
        let mut p = Parser { s: s.as_bytes(), i: 0 };
        let a = p.mailbox()?;
        if p.i != s.len() {
            return Err(AddressError::Syntax);
        }
        Ok(a)
    }
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || (!c.is_ascii() && !c.is_control())
}

fn is_dot_string(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

impl fmt::Display for Address {
    /// The canonical wire form: the local part quoted only when it must be.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_dot_string(&self.local) {
            write!(f, "{}@{}", self.local, self.domain)
        } else {
            f.write_str("\"")?;
            for c in self.local.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            write!(f, "\"@{}", self.domain)
        }
    }
}

/// MAIL FROM's path: an address or the null path `<>` (bounces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReversePath {
    Null,
    Address(Address),
}

impl ReversePath {
    pub fn is_ascii(&self) -> bool {
        match self {
            ReversePath::Null => true,
            ReversePath::Address(a) => a.is_ascii(),
        }
    }
}

impl fmt::Display for ReversePath {
    /// With angle brackets, as in `Return-Path:`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReversePath::Null => f.write_str("<>"),
            ReversePath::Address(a) => write!(f, "<{a}>"),
        }
    }
}

/// RCPT TO's path: an address or the special `<Postmaster>` (RFC 5321 §4.5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardPath {
    Postmaster,
    Address(Address),
}

impl ForwardPath {
    pub fn is_ascii(&self) -> bool {
        match self {
            ForwardPath::Postmaster => true,
            ForwardPath::Address(a) => a.is_ascii(),
        }
    }
}

impl fmt::Display for ForwardPath {
    /// Without angle brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardPath::Postmaster => f.write_str("Postmaster"),
            ForwardPath::Address(a) => a.fmt(f),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("syntax error in address")]
    Syntax,
    #[error("address too long")]
    TooLong,
    #[error("source routes are not accepted")]
    SourceRoute,
    #[error("null path not allowed here")]
    NullNotAllowed,
}

/// Parses `<path>` at the start of `s`; returns the path and the rest after `>`.
pub(crate) fn parse_reverse_path(s: &str) -> Result<(ReversePath, &str), AddressError> {
    if let Some(rest) = s.strip_prefix("<>") {
        return Ok((ReversePath::Null, rest));
    }
    let (a, rest) = parse_path(s)?;
    Ok((ReversePath::Address(a), rest))
}

/// Parses `<path>` or `<Postmaster>` at the start of `s`; returns the path and the rest.
pub(crate) fn parse_forward_path(s: &str) -> Result<(ForwardPath, &str), AddressError> {
    if s.len() >= 12 && s.is_char_boundary(12) && s[..12].eq_ignore_ascii_case("<postmaster>") {
        return Ok((ForwardPath::Postmaster, &s[12..]));
    }
    if s.starts_with("<>") {
        return Err(AddressError::NullNotAllowed);
    }
    let (a, rest) = parse_path(s)?;
    Ok((ForwardPath::Address(a), rest))
}

fn parse_path(s: &str) -> Result<(Address, &str), AddressError> {
    let b = s.as_bytes();
    if b.first() != Some(&b'<') {
        return Err(AddressError::Syntax);
    }
    if b.get(1) == Some(&b'@') {
        return Err(AddressError::SourceRoute);
    }
    let mut p = Parser { s: b, i: 1 };
    let a = p.mailbox()?;
    if b.get(p.i) != Some(&b'>') {
        return Err(AddressError::Syntax);
    }
    let end = p.i + 1;
    if end > MAX_PATH {
        return Err(AddressError::TooLong);
    }
    Ok((a, &s[end..]))
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    /// One UTF-8 character at `i` (the input is a `&str`, so sequences are valid).
    fn char_at(&self) -> Option<char> {
        let rest = self.s.get(self.i..)?;
        let len = match rest.first()? {
            b if *b < 0x80 => 1,
            b if *b >= 0xF0 => 4,
            b if *b >= 0xE0 => 3,
            _ => 2,
        };
        std::str::from_utf8(rest.get(..len)?).ok()?.chars().next()
    }

    fn mailbox(&mut self) -> Result<Address, AddressError> {
        let start = self.i;
        let local = if self.peek() == Some(b'"') { self.quoted_string()? } else { self.dot_string()? };
        if self.i - start > MAX_LOCAL_PART {
            return Err(AddressError::TooLong);
        }
        if self.peek() != Some(b'@') {
            return Err(AddressError::Syntax);
        }
        self.i += 1;
        let dstart = self.i;
        if self.peek() == Some(b'[') {
            self.address_literal()?;
        } else {
            self.domain()?;
        }
        if self.i - dstart > MAX_DOMAIN {
            return Err(AddressError::TooLong);
        }
        let domain = std::str::from_utf8(&self.s[dstart..self.i]).map_err(|_| AddressError::Syntax)?;
        Ok(Address { local, domain: domain.to_string() })
    }

    fn dot_string(&mut self) -> Result<String, AddressError> {
        let start = self.i;
        let mut atom_len = 0usize;
        while let Some(c) = self.char_at() {
            if c == '.' {
                if atom_len == 0 {
                    return Err(AddressError::Syntax);
                }
                atom_len = 0;
            } else if is_atext(c) {
                atom_len += 1;
            } else {
                break;
            }
            self.i += c.len_utf8();
            if self.i - start > MAX_LOCAL_PART {
                return Err(AddressError::TooLong);
            }
        }
        if atom_len == 0 {
            return Err(AddressError::Syntax);
        }
        std::str::from_utf8(&self.s[start..self.i]).map(str::to_string).map_err(|_| AddressError::Syntax)
    }

    fn quoted_string(&mut self) -> Result<String, AddressError> {
        let start = self.i;
        self.i += 1; // opening quote
        let mut value = String::new();
        loop {
            if self.i - start > MAX_LOCAL_PART {
                return Err(AddressError::TooLong);
            }
            let c = self.char_at().ok_or(AddressError::Syntax)?;
            self.i += c.len_utf8();
            match c {
                '"' => break,
                '\\' => {
                    // quoted-pairSMTP = %d92 %d32-126
                    let q = self.peek().ok_or(AddressError::Syntax)?;
                    if !(32..=126).contains(&q) {
                        return Err(AddressError::Syntax);
                    }
                    value.push(q as char);
                    self.i += 1;
                }
                // qtextSMTP = %d32-33 / %d35-91 / %d93-126, plus UTF-8 (RFC 6531)
                c if (' '..='~').contains(&c) || (!c.is_ascii() && !c.is_control()) => value.push(c),
                _ => return Err(AddressError::Syntax),
            }
        }
        if value.is_empty() {
            // An empty local part is legal in RFC 5321 but delivers to nobody; refuse it.
            return Err(AddressError::Syntax);
        }
        Ok(value)
    }

    fn domain(&mut self) -> Result<(), AddressError> {
        let mut label_len = 0usize;
        let mut last = None;
        while let Some(c) = self.char_at() {
            if c == '.' {
                if label_len == 0 || last == Some('-') {
                    return Err(AddressError::Syntax);
                }
                label_len = 0;
            } else if c.is_ascii_alphanumeric() || (!c.is_ascii() && !c.is_control() && !c.is_whitespace()) {
                label_len += c.len_utf8();
            } else if c == '-' {
                if label_len == 0 {
                    return Err(AddressError::Syntax);
                }
                label_len += 1;
            } else {
                break;
            }
            if label_len > MAX_LABEL {
                return Err(AddressError::TooLong);
            }
            last = Some(c);
            self.i += c.len_utf8();
        }
        if label_len == 0 || last == Some('-') {
            return Err(AddressError::Syntax);
        }
        Ok(())
    }

    fn address_literal(&mut self) -> Result<(), AddressError> {
        let start = self.i + 1;
        let rel_end = self.s[start..].iter().position(|&b| b == b']').ok_or(AddressError::Syntax)?;
        let inner = std::str::from_utf8(&self.s[start..start + rel_end]).map_err(|_| AddressError::Syntax)?;
        let ok = if let Some(v6) = inner.get(..5).filter(|p| p.eq_ignore_ascii_case("IPv6:")) {
            let _ = v6;
            inner[5..].parse::<std::net::Ipv6Addr>().is_ok()
        } else if inner.bytes().next().is_some_and(|b| b.is_ascii_digit()) {
            inner.parse::<std::net::Ipv4Addr>().is_ok()
        } else {
            // General-address-literal = Standardized-tag ":" 1*dcontent
            match inner.split_once(':') {
                Some((tag, content)) => {
                    !tag.is_empty()
                        && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                        && !tag.ends_with('-')
                        && !content.is_empty()
                        && content.bytes().all(|b| (33..=90).contains(&b) || (94..=126).contains(&b))
                }
                None => false,
            }
        };
        if !ok {
            return Err(AddressError::Syntax);
        }
        self.i = start + rel_end + 1;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    fn fwd(s: &str) -> Result<String, AddressError> {
        parse_forward_path(s).map(|(p, rest)| format!("{p}|{rest}"))
    }

    #[test]
    fn valid_paths() {
        assert_eq!(fwd("<alice@example.org>").unwrap(), "alice@example.org|");
        assert_eq!(fwd("<a.b+tag@sub.example.org> SIZE=1").unwrap(), "a.b+tag@sub.example.org| SIZE=1");
        assert_eq!(fwd("<\"alice\"@example.org>").unwrap(), "alice@example.org|", "needless quotes removed");
        assert_eq!(fwd("<\"a b\\\"c\"@x.org>").unwrap(), "\"a b\\\"c\"@x.org|");
        assert_eq!(fwd("<\"a>b\"@x.org>").unwrap(), "\"a>b\"@x.org|", "quoted > is not the end");
        assert_eq!(fwd("<u@[192.0.2.1]>").unwrap(), "u@[192.0.2.1]|");
        assert_eq!(fwd("<u@[IPv6:2001:db8::1]>").unwrap(), "u@[IPv6:2001:db8::1]|");
        assert_eq!(fwd("<PostMaster>").unwrap(), "Postmaster|");
        assert_eq!(fwd("<jösé@bücher.example>").unwrap(), "jösé@bücher.example|");
        assert!(!parse_forward_path("<jösé@x.org>").unwrap().0.is_ascii());
        assert_eq!(parse_reverse_path("<>").unwrap().0, ReversePath::Null);
    }

    #[test]
    fn invalid_paths() {
        for bad in [
            "alice@example.org",
            "<alice@example.org",
            "<alice>",
            "<@example.org>",
            "<.a@x.org>",
            "<a.@x.org>",
            "<a..b@x.org>",
            "<a@-x.org>",
            "<a@x-.org>",
            "<a@x..org>",
            "<a@x.org.>",
            "<a b@x.org>",
            "<\"unterminated@x.org>",
            "<\"\"@x.org>",
            "<a@[300.1.1.1]>",
            "<a@[IPv6:zz]>",
            "<a@[1.2.3.4>",
            "<a@x.org\0>",
            "<a(comment)@x.org>",
            "",
            "<",
        ] {
            assert!(parse_forward_path(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(parse_forward_path("<@a,@b:u@c.org>"), Err(AddressError::SourceRoute));
        assert_eq!(parse_forward_path("<>"), Err(AddressError::NullNotAllowed));
    }

    #[test]
    fn length_limits() {
        let local64 = "a".repeat(64);
        assert!(parse_forward_path(&format!("<{local64}@x.org>")).is_ok());
        assert_eq!(parse_forward_path(&format!("<{local64}a@x.org>")), Err(AddressError::TooLong));
        let label = "b".repeat(63);
        assert!(parse_forward_path(&format!("<a@{label}.org>")).is_ok());
        assert_eq!(parse_forward_path(&format!("<a@{label}b.org>")), Err(AddressError::TooLong));
        // 4 labels of 63 + dots = 255 octets of domain: path = 1 + 1 + 1 + 255 + 1 = 259 > 256.
        let domain = [label.as_str(); 4].join(".");
        assert_eq!(domain.len(), 255);
        assert_eq!(parse_forward_path(&format!("<a@{domain}>")), Err(AddressError::TooLong));
        let domain256 = format!("{domain}.c");
        assert_eq!(parse_forward_path(&format!("<a@{domain256}>")), Err(AddressError::TooLong));
    }

    #[test]
    fn bare_mailbox_parse() {
        assert_eq!(Address::parse("Alice@Example.org").unwrap().domain(), "Example.org");
        assert!(Address::parse("alice@example.org trailing").is_err());
    }
}
