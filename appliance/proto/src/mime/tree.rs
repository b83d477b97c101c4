//! Byte-exact MIME structure of a raw message: the part tree IMAP numbers its sections by.
//!
//! What it is: a single-pass parser that splits a raw RFC 5322 message into entities (header
//! range, body range, media type, transfer encoding, children), following RFC 2046 delimiter rules:
//! the line end before a delimiter line belongs to the delimiter, the preamble and epilogue belong
//! to no child, and a delimiter of an enclosing multipart closes every inner one (missing close
//! delimiters are recovered the way Dovecot and Cyrus do). Embedded `message/rfc822` and
//! `message/global` bodies are parsed as messages.
//!
//! What it is not: no decoding and no copying; ranges index the caller's bytes, which are
//! what IMAP must return. It is also deliberately not mail-parser's tree: mail-parser re-bases the
//! offsets of encoded embedded messages onto decoded bytes, caps encoded nesting at 3 and reshapes
//! malformed parts for display, all of which would change IMAP part numbers and octet counts.
//! mail-parser is used for charsets and dates (see `decode`, `search`).
//!
//! Invariants: nesting is bounded by [`MAX_DEPTH`] and the number of entities by [`MAX_PARTS`];
//! beyond either, a multipart or message is kept as an opaque leaf (`Kind::Opaque`). Each byte is
//! examined a bounded number of times (header lines once, delimiter candidates once per open
//! boundary), so the work is linear in the message size. All ranges satisfy
//! `header.start <= header.end == body.start <= body.end <= raw.len()`.

use std::ops::Range;

use super::header::{self, MediaValue};

/// Deepest nesting of multiparts and embedded messages that is parsed; deeper entities are opaque.
/// Dovecot allows 100; 64 is more than any real client produces and keeps recursion shallow.
pub const MAX_DEPTH: usize = 64;

/// Most entities parsed per message (Dovecot's default is 10,000); later parts are not split out.
pub const MAX_PARTS: usize = 10_000;

/// Longest boundary parameter honoured (RFC 2046 allows 70; some mailers exceed it).
const MAX_BOUNDARY: usize = 200;

/// The shape of an entity's body.
#[derive(Debug, Clone)]
pub enum Kind {
    /// A single part (text, image, application, ...).
    Leaf,
    /// A multipart with at least one child.
    Multipart(Vec<Part>),
    /// A multipart with no body part found in it (no boundary parameter, or no delimiter line).
    EmptyMultipart,
    /// `message/rfc822` or `message/global`: the embedded message.
    Message(Box<Part>),
    /// A multipart or message that was not descended into (nesting or part limits, or a
    /// `message/rfc822` with a non-identity transfer encoding, which RFC 2046 §5.2.1 forbids).
    /// BODYSTRUCTURE reports it with its declared type and an empty inner structure, as Dovecot
    /// does for encoded messages.
    Opaque,
}

/// One MIME entity: a message (root or embedded) or a body part.
#[derive(Debug, Clone)]
pub struct Part {
    /// Header section including its terminating empty line when present.
    pub header: Range<usize>,
    /// Body, ending before the line end that precedes the next delimiter.
    pub body: Range<usize>,
    /// Parsed Content-Type; `None` when absent or unparseable (the default applies).
    pub content_type: Option<MediaValue>,
    /// True when the default type is `message/rfc822` (child of multipart/digest).
    pub digest_default: bool,
    /// Body shape.
    pub kind: Kind,
}

impl Part {
    /// Lower-cased media type and subtype, defaults applied (RFC 2045 §5.2, RFC 2046 §5.1.5).
    pub fn media_type(&self) -> (String, String) {
        match &self.content_type {
            Some(ct) => (
                String::from_utf8_lossy(&ct.kind).to_ascii_lowercase(),
                String::from_utf8_lossy(ct.subtype.as_deref().unwrap_or_default())
                    .to_ascii_lowercase(),
            ),
            None if self.digest_default => ("message".into(), "rfc822".into()),
            None => ("text".into(), "plain".into()),
        }
    }

    /// The raw Content-Transfer-Encoding token, lower-cased; `None` when absent (identity).
    pub fn encoding(&self, raw: &[u8]) -> Option<String> {
        let hdr = raw.get(self.header.clone())?;
        let v = header::first_unfolded(hdr, "content-transfer-encoding")?;
        let v = String::from_utf8_lossy(&v).trim().to_ascii_lowercase();
        (!v.is_empty()).then_some(v)
    }
}

/// True when a transfer encoding leaves the bytes as they are (RFC 2045 §6.1).
pub fn is_identity_encoding(enc: Option<&str>) -> bool {
    matches!(enc, None | Some("7bit" | "8bit" | "binary"))
}

/// A delimiter line found while scanning.
#[derive(Debug, Clone, Copy)]
struct Delim {
    /// Where the entity before the delimiter ends (start of the line end preceding the line).
    body_end: usize,
    /// Just past the delimiter line's own line end.
    after: usize,
    /// Index into the boundary stack of the multipart it belongs to.
    level: usize,
    /// `--boundary--`.
    close: bool,
}

struct Parser<'a> {
    raw: &'a [u8],
    /// Boundaries of the open multiparts, outermost first.
    stack: Vec<Vec<u8>>,
    parts: usize,
}

/// Parses `raw` into its entity tree. Never fails: any byte string is some message.
pub fn parse(raw: &[u8]) -> Part {
    let mut p = Parser { raw, stack: Vec::new(), parts: 0 };
    p.entity(0, 0, false).0
}

impl Parser<'_> {
    /// If the line starting at `line_start` is a delimiter of an open multipart, describes it.
    fn delimiter_at(&self, line_start: usize, region_start: usize) -> Option<Delim> {
        let rest = self.raw.get(line_start..)?;
        if !rest.starts_with(b"--") || self.stack.is_empty() {
            return None;
        }
        let line_len = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
        let line = header::trim_eol(rest.get(2..line_len).unwrap_or_default());
        // Innermost boundary first: a nested boundary may extend an outer one.
        for (level, b) in self.stack.iter().enumerate().rev() {
            let Some(tail) = line.strip_prefix(b.as_slice()) else { continue };
            let (close, pad) = match tail.strip_prefix(b"--") {
                Some(p) => (true, p),
                None => (false, tail),
            };
            if pad.iter().all(|&c| c == b' ' || c == b'\t') {
                let mut body_end = line_start;
                if body_end > region_start && self.raw.get(body_end - 1) == Some(&b'\n') {
                    body_end -= 1;
                    if body_end > region_start && self.raw.get(body_end - 1) == Some(&b'\r') {
                        body_end -= 1;
                    }
                }
                return Some(Delim { body_end, after: line_start + line_len, level, close });
            }
        }
        None
    }

    /// The first delimiter line at or after `from` (which is at a line start).
    fn next_delim(&self, from: usize) -> Option<Delim> {
        if self.stack.is_empty() {
            return None;
        }
        if let Some(d) = self.delimiter_at(from, from) {
            return Some(d);
        }
        let hay = self.raw.get(from..)?;
        for i in memchr::memmem::find_iter(hay, b"\n--") {
            if let Some(d) = self.delimiter_at(from + i + 1, from) {
                return Some(d);
            }
        }
        None
    }

    /// Scans a header section starting at `start`. Returns (end of header including its blank
    /// line, delimiter met inside the header when the entity has no body).
    fn header_end(&self, start: usize) -> (usize, Option<Delim>) {
        let mut pos = start;
        while pos < self.raw.len() {
            if let Some(d) = self.delimiter_at(pos, start) {
                return (d.body_end, Some(d));
            }
            let rest = self.raw.get(pos..).unwrap_or_default();
            let len = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
            let line = rest.get(..len).unwrap_or_default();
            pos += len;
            if header::is_blank_line(line) {
                return (pos, None);
            }
        }
        (self.raw.len(), None)
    }

    /// Parses the entity at `start`. Returns it and the delimiter that ended it (`None`: input end).
    fn entity(&mut self, start: usize, depth: usize, digest_default: bool) -> (Part, Option<Delim>) {
        self.parts += 1;
        let (hdr_end, hdr_delim) = self.header_end(start);
        let hdr = self.raw.get(start..hdr_end).unwrap_or_default();
        let content_type = header::first_value(hdr, "content-type")
            .and_then(|v| header::parse_media(v, true));
        let mut part = Part {
            header: start..hdr_end,
            body: hdr_end..hdr_end,
            content_type,
            digest_default,
            kind: Kind::Leaf,
        };
        if let Some(d) = hdr_delim {
            return (part, Some(d));
        }
        let (ty, sub) = part.media_type();
        let can_descend = depth < MAX_DEPTH && self.parts < MAX_PARTS;
        if ty == "multipart" {
            let boundary = part
                .content_type
                .as_ref()
                .and_then(|c| c.param("boundary"))
                .filter(|b| !b.is_empty() && b.len() <= MAX_BOUNDARY);
            match boundary {
                Some(b) if can_descend => {
                    let b = b.to_vec();
                    return self.multipart(part, b, depth, sub == "digest");
                }
                // Dovecot reports a multipart without a boundary as one with no parts.
                None => part.kind = Kind::EmptyMultipart,
                Some(_) => part.kind = Kind::Opaque,
            }
        } else if ty == "message" && (sub == "rfc822" || sub == "global") {
            let enc = part.encoding(self.raw);
            if can_descend && is_identity_encoding(enc.as_deref()) {
                let (inner, d) = self.entity(hdr_end, depth + 1, false);
                part.body.end = inner.body.end;
                part.kind = Kind::Message(Box::new(inner));
                return (part, d);
            }
            part.kind = Kind::Opaque;
        }
        let d = self.next_delim(hdr_end);
        part.body.end = d.map_or(self.raw.len(), |d| d.body_end).max(hdr_end);
        (part, d)
    }

    fn multipart(
        &mut self,
        mut part: Part,
        boundary: Vec<u8>,
        depth: usize,
        digest: bool,
    ) -> (Part, Option<Delim>) {
        let level = self.stack.len();
        self.stack.push(boundary);
        let body_start = part.body.start;
        let mut children = Vec::new();
        // Preamble: up to our first delimiter (or an enclosing one).
        let mut next = self.next_delim(body_start);
        let ended = loop {
            let Some(d) = next else { break None };
            if d.level < level {
                break Some(d);
            }
            if d.close {
                next = self.epilogue(level, d.after);
                break next;
            }
            if self.parts >= MAX_PARTS {
                // Budget spent: skip the remaining children without splitting them out.
                let mut pos = d.after;
                next = loop {
                    match self.next_delim(pos) {
                        Some(e) if e.level == level && !e.close => pos = e.after,
                        Some(e) if e.level == level => break self.epilogue(level, e.after),
                        other => break other,
                    }
                };
                break next;
            }
            let (child, cd) = self.entity(d.after, depth + 1, digest);
            children.push(child);
            next = cd;
        };
        self.stack.truncate(level);
        part.body.end = ended.map_or(self.raw.len(), |d| d.body_end).max(body_start);
        part.kind = if children.is_empty() { Kind::EmptyMultipart } else { Kind::Multipart(children) };
        (part, ended)
    }

    /// After a close delimiter of `level`: skips the epilogue to the next enclosing delimiter.
    fn epilogue(&mut self, level: usize, from: usize) -> Option<Delim> {
        self.stack.truncate(level);
        self.next_delim(from)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)] // tests may unwrap and panic (workspace rule)
mod tests {
    use super::*;

    fn s(raw: &[u8], r: &Range<usize>) -> String {
        String::from_utf8_lossy(&raw[r.clone()]).into_owned()
    }

    #[test]
    fn simple_message_ranges() {
        let raw = b"Subject: x\r\n\r\nhello\r\n";
        let p = parse(raw);
        assert_eq!(s(raw, &p.header), "Subject: x\r\n\r\n");
        assert_eq!(s(raw, &p.body), "hello\r\n");
        assert!(matches!(p.kind, Kind::Leaf));
    }

    #[test]
    fn multipart_children_exclude_delimiter_line_ends() {
        let raw = b"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\npre\r\n--b\r\n\r\none\r\n--b\r\nContent-Type: text/html\r\n\r\n<b>two</b>\r\n--b--\r\nepi\r\n";
        let p = parse(raw);
        let Kind::Multipart(ch) = &p.kind else { panic!("not multipart") };
        assert_eq!(ch.len(), 2);
        assert_eq!(s(raw, &ch[0].header), "\r\n");
        assert_eq!(s(raw, &ch[0].body), "one");
        assert_eq!(s(raw, &ch[1].header), "Content-Type: text/html\r\n\r\n");
        assert_eq!(s(raw, &ch[1].body), "<b>two</b>");
        assert_eq!(p.body.end, raw.len());
    }

    #[test]
    fn missing_inner_close_is_recovered_by_outer_delimiter() {
        let raw = b"Content-Type: multipart/mixed; boundary=out\r\n\r\n--out\r\nContent-Type: multipart/alternative; boundary=in\r\n\r\n--in\r\n\r\na\r\n--out\r\n\r\nb\r\n--out--\r\n";
        let p = parse(raw);
        let Kind::Multipart(ch) = &p.kind else { panic!("not multipart") };
        assert_eq!(ch.len(), 2);
        let Kind::Multipart(inner) = &ch[0].kind else { panic!("inner not multipart") };
        assert_eq!(s(raw, &inner[0].body), "a");
        assert_eq!(s(raw, &ch[1].body), "b");
    }

    #[test]
    fn depth_is_bounded() {
        let mut raw = Vec::new();
        for i in 0..200 {
            raw.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n").as_bytes(),
            );
        }
        raw.extend_from_slice(b"\r\nleaf\r\n");
        let mut p = &parse(&raw);
        let mut depth = 0;
        while let Kind::Multipart(ch) = &p.kind {
            p = &ch[0];
            depth += 1;
        }
        assert_eq!(depth, MAX_DEPTH);
        assert!(matches!(p.kind, Kind::Opaque));
    }
}
