//! What SORT and THREAD compare: the keys of one message (RFC 5256 §2.1 and §3, RFC 5957).
//!
//! What it is: [`SortKeys::from_message`] reads a message's header once and extracts the sent
//! date, the base subject (with whether it was a reply or forward), the first From/To/Cc
//! mailboxes and display names, the Message-ID and the parent chain (References, else
//! In-Reply-To); [`base_subject`] is RFC 5256 §2.1's extraction on its own; [`casemap`] is the
//! comparator's key function.
//!
//! What it is not: no sorting or threading (the session sorts; [`crate::imap::thread`] threads),
//! no INTERNALDATE or size (those are store metadata), no I/O.
//!
//! Collation: strings are compared after [`casemap`], Hermes' approximation of
//! `i;unicode-casemap` (RFC 5051): each character is mapped to its Unicode uppercase (RFC 5051
//! uses titlecase, which equals uppercase for every character but a few digraphs), without the
//! NFKD decomposition step. ASCII text therefore sorts exactly like `i;ascii-casemap` and like
//! Dovecot; precomposed and decomposed accents compare unequal.
//!
//! Invariants: never panics on any byte string; work is linear in the header size; every string
//! kept is bounded ([`MAX_KEY_BYTES`]) and at most [`MAX_REFERENCES`] message-ids are kept, so a
//! hostile header cannot make a per-message cache entry large.

use crate::mime::address::{self, Entry};
use crate::mime::{decode, header};

/// Longest string kept for a subject, address or display-name key (longer ones are cut at a
/// character boundary; two subjects that differ only after 512 bytes sort as equal).
pub const MAX_KEY_BYTES: usize = 512;
/// Longest message-id kept (RFC 5322 lines are at most 998 octets).
pub const MAX_MESSAGE_ID: usize = 998;
/// References kept per message: the nearest ancestors (the end of the field) matter most for
/// threading; Dovecot and Cyrus also bound this.
pub const MAX_REFERENCES: usize = 100;

/// The sort and thread keys of one message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SortKeys {
    /// The Date: field as Unix seconds (UTC), `None` when missing or unparsable (SORT DATE and
    /// THREAD then use INTERNALDATE, RFC 5256 §3).
    pub sent: Option<i64>,
    /// The base subject, case-mapped ([`casemap`]); empty when there is none.
    pub subject: String,
    /// Whether extracting the base subject removed a `Re:`/`Fwd:` leader, a `(fwd)` trailer or a
    /// `[fwd: ...]` wrapper (RFC 5256 §2.1, used by THREAD=REFERENCES step 5).
    pub subject_is_reply: bool,
    /// Local part of the first From/To/Cc address, case-mapped; empty when none.
    pub from: String,
    /// See [`SortKeys::from`].
    pub to: String,
    /// See [`SortKeys::from`].
    pub cc: String,
    /// RFC 5957 display name of the first From/To address (decoded), else its `local@domain`,
    /// case-mapped.
    pub display_from: String,
    /// See [`SortKeys::display_from`].
    pub display_to: String,
    /// The Message-ID (without angle brackets), if one is present and well-formed.
    pub message_id: Option<String>,
    /// The parent chain, oldest first: the References ids, or the first In-Reply-To id when
    /// References has none (RFC 5256 §2.2 step 1.A). At most [`MAX_REFERENCES`], the last ones.
    pub references: Vec<String>,
}

impl SortKeys {
    /// Extracts the keys from a raw message (only its header is read).
    pub fn from_message(raw: &[u8]) -> SortKeys {
        let hdr = header::header_block(raw);
        let mut k = SortKeys {
            sent: header::first_unfolded(hdr, "date").and_then(|d| parse_date(&d)),
            ..SortKeys::default()
        };
        if let Some(subject) = header::first_unfolded(hdr, "subject") {
            let (base, reply) = base_subject(&decode::rfc2047(&subject));
            k.subject = casemap(&base);
            k.subject_is_reply = reply;
        }
        (k.from, k.display_from) = address_keys(hdr, "from");
        (k.to, k.display_to) = address_keys(hdr, "to");
        (k.cc, _) = address_keys(hdr, "cc");
        k.message_id = header::first_unfolded(hdr, "message-id")
            .and_then(|v| message_ids(&v).into_iter().next());
        let mut refs = header::first_unfolded(hdr, "references")
            .map(|v| message_ids(&v))
            .unwrap_or_default();
        if refs.is_empty()
            && let Some(first) = header::first_unfolded(hdr, "in-reply-to")
                .and_then(|v| message_ids(&v).into_iter().next())
        {
            refs.push(first);
        }
        if refs.len() > MAX_REFERENCES {
            refs.drain(..refs.len() - MAX_REFERENCES);
        }
        k.references = refs;
        k
    }
}

fn parse_date(value: &[u8]) -> Option<i64> {
    let text = String::from_utf8_lossy(value);
    let dt = mail_parser::DateTime::parse_rfc822(text.trim())?;
    dt.is_valid().then(|| dt.to_timestamp())
}

/// (mailbox key, display key) of the first mailbox of an address field.
fn address_keys(hdr: &[u8], field: &str) -> (String, String) {
    let Some(value) = header::first_unfolded(hdr, field) else {
        return (String::new(), String::new());
    };
    let first = address::parse_list(&value).into_iter().find_map(|e| match e {
        Entry::Mailbox {
            name,
            mailbox,
            host,
            ..
        } => Some((name, mailbox, host)),
        _ => None,
    });
    let Some((name, mailbox, host)) = first else {
        return (String::new(), String::new());
    };
    let local = casemap(&String::from_utf8_lossy(&mailbox));
    let display = match name.map(|n| decode::rfc2047(&n)) {
        Some(n) if !n.trim().is_empty() => casemap(n.trim()),
        _ => {
            let mut a = String::from_utf8_lossy(&mailbox).into_owned();
            if !host.is_empty() {
                a.push('@');
                a.push_str(&String::from_utf8_lossy(&host));
            }
            casemap(&a)
        }
    };
    (local, display)
}

/// The `<...>` message-ids of a Message-ID/References/In-Reply-To value, brackets removed, in
/// order. Blank space inside an id (folding artefacts) is dropped; empty or oversized ids and
/// ids without `@` are skipped (RFC 5256 §2.2 asks for "valid" ids; an id without `@` is
/// usually a mangled phrase).
pub fn message_ids(value: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(open) = memchr::memchr(b'<', rest) {
        let after = rest.get(open + 1..).unwrap_or_default();
        let Some(close) = memchr::memchr(b'>', after) else {
            break;
        };
        let inner = after.get(..close).unwrap_or_default();
        rest = after.get(close + 1..).unwrap_or_default();
        let id: Vec<u8> = inner
            .iter()
            .copied()
            .filter(|c| !matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
            .collect();
        if id.is_empty() || id.len() > MAX_MESSAGE_ID || !id.contains(&b'@') || id.contains(&b'<')
        {
            continue;
        }
        out.push(String::from_utf8_lossy(&id).into_owned());
    }
    out
}

/// The comparison key of `i;unicode-casemap` as Hermes approximates it (see the module doc),
/// cut to [`MAX_KEY_BYTES`].
pub fn casemap(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_KEY_BYTES));
    for c in s.chars() {
        for u in c.to_uppercase() {
            if out.len() + u.len_utf8() > MAX_KEY_BYTES {
                return out;
            }
            out.push(u);
        }
    }
    out
}

fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `subj-blob = "[" *BLOBCHAR "]" *WSP` at the start of `s`: its length, if present.
fn blob_len(s: &[u8]) -> Option<usize> {
    if s.first() != Some(&b'[') {
        return None;
    }
    let mut i = 1;
    loop {
        match s.get(i) {
            None | Some(b'[') => return None,
            Some(b']') => break,
            Some(_) => i += 1,
        }
    }
    i += 1;
    while s.get(i).copied().is_some_and(is_wsp) {
        i += 1;
    }
    Some(i)
}

/// `subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"` at the start of `s`.
fn refwd_len(s: &[u8]) -> Option<usize> {
    let lower = |i: usize| s.get(i).map(u8::to_ascii_lowercase);
    let mut i = match (lower(0), lower(1), lower(2)) {
        (Some(b'r'), Some(b'e'), _) => 2,
        (Some(b'f'), Some(b'w'), Some(b'd')) => 3,
        (Some(b'f'), Some(b'w'), _) => 2,
        _ => return None,
    };
    while s.get(i).copied().is_some_and(is_wsp) {
        i += 1;
    }
    if let Some(n) = s.get(i..).and_then(blob_len) {
        i += n;
    }
    (s.get(i) == Some(&b':')).then_some(i + 1)
}

/// `subj-leader = (*subj-blob subj-refwd) / WSP` at the start of `s`: (length, was a refwd).
fn leader_len(s: &[u8]) -> Option<(usize, bool)> {
    if s.first().copied().is_some_and(is_wsp) {
        return Some((1, false));
    }
    let mut i = 0;
    loop {
        if let Some(n) = s.get(i..).and_then(refwd_len) {
            return Some((i + n, true));
        }
        i += s.get(i..).and_then(blob_len)?;
    }
}

/// RFC 5256 §2.1: the base subject of a decoded Subject value, and whether it was a reply or
/// forward. The result is not case-mapped.
pub fn base_subject(subject: &str) -> (String, bool) {
    // (1) Tabs and line breaks become spaces; runs of spaces become one.
    let mut s = String::with_capacity(subject.len());
    for c in subject.chars() {
        let c = if matches!(c, '\t' | '\r' | '\n') {
            ' '
        } else {
            c
        };
        if c == ' ' && s.ends_with(' ') {
            continue;
        }
        s.push(c);
    }
    let mut reply = false;
    // Every step removes at least one byte per iteration, so these loops end.
    loop {
        // (2) Trailing "(fwd)" and blank space.
        loop {
            let trimmed = s.trim_end_matches([' ', '\t']).len();
            s.truncate(trimmed);
            let n = s.len();
            if n >= 5 && s.as_bytes()[n - 5..].eq_ignore_ascii_case(b"(fwd)") {
                s.truncate(n - 5);
                reply = true;
            } else {
                break;
            }
        }
        // (3)-(5) Leaders and leading blobs, until nothing changes.
        loop {
            let mut changed = false;
            while let Some((n, refwd)) = leader_len(s.as_bytes()) {
                s.drain(..n);
                reply |= refwd;
                changed = true;
            }
            if let Some(n) = blob_len(s.as_bytes())
                && s.as_bytes()[n..].iter().any(|&b| !is_wsp(b))
            {
                s.drain(..n);
                changed = true;
            }
            if !changed {
                break;
            }
        }
        // (6) "[fwd: ...]" wrapper: unwrap and start again at (2).
        let b = s.as_bytes();
        if b.len() >= 6 && b[..5].eq_ignore_ascii_case(b"[fwd:") && b.ends_with(b"]") {
            s.truncate(s.len() - 1);
            s.drain(..5);
            reply = true;
            continue;
        }
        return (s, reply);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn base_subject_rfc5256_rules() {
        let cases: &[(&str, &str, bool)] = &[
            ("Hello", "Hello", false),
            ("Re: Hello", "Hello", true),
            ("RE: re: Fwd: Hello", "Hello", true),
            ("Re[2]: Hello", "Hello", true),
            ("Re [foo]: Hello", "Hello", true),
            ("[PATCH] Re: Hello", "Hello", true),
            ("[PATCH] Hello", "Hello", false),
            ("[PATCH]", "[PATCH]", false),
            ("Hello (fwd)", "Hello", true),
            ("Hello (FWD) (fwd)  ", "Hello", true),
            ("[Fwd: Re: Hello]", "Hello", true),
            ("[fwd: [list] Hello] (fwd)", "Hello", true),
            ("  \t Re:   Hello   world ", "Hello world", true),
            ("Fw: Fwd:Fw Hello", "Fw Hello", true),
            ("Re:", "", true),
            ("", "", false),
            ("Ré: Hello", "Ré: Hello", false),
            ("[a][b] re: x", "x", true),
            ("[unterminated Re: x", "[unterminated Re: x", false),
        ];
        for (input, want, reply) in cases {
            assert_eq!(
                base_subject(input),
                (want.to_string(), *reply),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn keys_from_header() {
        let raw = b"From: =?utf-8?q?J=C3=B6rg?= <JOERG@Example.org>\r\nTo: <b@x.org>, c@y.org\r\nCc: undisclosed-recipients:;\r\nSubject: =?utf-8?b?UmU6IEdyw7zDn2U=?=\r\nDate: Tue, 2 Jan 2024 10:00:00 +0100\r\nMessage-ID: <m1@x>\r\nReferences: <a@x>\r\n <b@x> junk <c@x>\r\nIn-Reply-To: <ignored@x>\r\n\r\nbody <not@header>\r\n";
        let k = SortKeys::from_message(raw);
        assert_eq!(k.sent, Some(1_704_186_000));
        assert_eq!(k.subject, "GRÜSSE");
        assert!(k.subject_is_reply);
        assert_eq!(k.from, "JOERG");
        assert_eq!(k.display_from, "JÖRG");
        assert_eq!(k.to, "B");
        assert_eq!(k.display_to, "B@X.ORG");
        assert_eq!(k.cc, "");
        assert_eq!(k.message_id.as_deref(), Some("m1@x"));
        assert_eq!(k.references, vec!["a@x", "b@x", "c@x"]);
    }

    #[test]
    fn in_reply_to_when_no_references_and_bounds() {
        let raw = b"In-Reply-To: <p@x> <q@x>\r\nSubject: x\r\n\r\n";
        assert_eq!(SortKeys::from_message(raw).references, vec!["p@x"]);
        let mut long = b"References:".to_vec();
        for i in 0..150 {
            long.extend_from_slice(format!(" <{i}@x>").as_bytes());
        }
        long.extend_from_slice(b"\r\n\r\n");
        let k = SortKeys::from_message(&long);
        assert_eq!(k.references.len(), MAX_REFERENCES);
        assert_eq!(k.references.last().unwrap(), "149@x");
        assert_eq!(SortKeys::from_message(b""), SortKeys::default());
        assert_eq!(message_ids(b"<> <a b@c> <noat> <x@y"), vec!["ab@c"]);
        assert!(casemap(&"é".repeat(1000)).len() <= MAX_KEY_BYTES);
    }

    #[test]
    fn never_panics_on_garbage() {
        let mut seed = 7u32;
        for _ in 0..2000 {
            let mut v = Vec::new();
            for _ in 0..(seed % 64) {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                v.push(b"[]():ReFwd \t\r\n<>@=?Subject:\xc3\xa9"[(seed >> 16) as usize % 31]);
            }
            let mut msg = b"Subject: ".to_vec();
            msg.extend_from_slice(&v);
            let _ = SortKeys::from_message(&msg);
            let _ = base_subject(&String::from_utf8_lossy(&v));
        }
    }
}
