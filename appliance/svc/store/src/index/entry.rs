//! One message as the search index keeps it: its SORT/THREAD keys and its decoded, lower-cased
//! search text, with the matching functions SEARCH uses and the binary encoding of the index file.
//!
//! What it is: [`Entry::from_message`] analyses a raw message once with the same code the scan
//! uses (`hermes_proto::mime::SearchableMessage` and `hermes_proto::imap::sortkeys::SortKeys`)
//! and keeps the strings those types match against, in a compact form: one lower-cased header
//! text with each field's name and value located inside it by offsets, the parsed address text
//! of From/To/Cc/Bcc fields, and the body text cut at [`MAX_INDEXED_BODY`] bytes.
//! What it is not: no search program (the session's `search` evaluates keys), no I/O.
//!
//! Invariants:
//! - Every answer is the scan's answer or "unknown": a match function returns `Some(b)` only
//!   when `b` is exactly what the `SearchableMessage` method of the same name returns for the
//!   message, and `None` when the entry cannot tell (body text beyond [`MAX_INDEXED_BODY`], or a
//!   header whose lower-cased text did not have the expected layout). The caller then reads
//!   the message and asks the scan, so a result is never wrong because of the index.
//! - Decoding is bounded: every length is checked against the bytes left and against
//!   [`MAX_STRING`]; corrupt input is an error, never a panic.

use hermes_proto::imap::sortkeys::SortKeys;
use hermes_proto::mime::SearchableMessage;
use hermes_proto::mime::search::address_text_lc;
use memchr::memmem;

/// Body text kept per message (64 KiB of decoded, lower-cased text). Almost all mail is
/// shorter; for longer messages a BODY/TEXT search that finds nothing in the kept part reads
/// the message (the answer stays exact). Bounds the index's memory to about this much per
/// message in the worst case.
pub const MAX_INDEXED_BODY: usize = 64 * 1024;

/// Longest string the decoder accepts (larger is corruption: the encoder never writes one,
/// since header text is bounded by `hermes_proto::mime::search::MAX_HEADER_TEXT` (1 MiB)).
pub const MAX_STRING: usize = 2 * 1024 * 1024;

/// The address fields SEARCH FROM/TO/CC/BCC look at, in the order of their code in the file.
const ADDRESS_FIELDS: [&str; 4] = ["from", "to", "cc", "bcc"];

/// A search string, lower-cased once with the scan's rule (`str::to_lowercase`), with a
/// prepared substring finder.
#[derive(Debug, Clone)]
pub struct Needle {
    /// As the client sent it (decoded from the command's charset).
    pub raw: String,
    lc: String,
    finder: memmem::Finder<'static>,
}

impl Needle {
    pub fn new(raw: String) -> Needle {
        let lc = raw.to_lowercase();
        let finder = memmem::Finder::new(lc.as_bytes()).into_owned();
        Needle { raw, lc, finder }
    }

    /// Whether `hay_lc` (lower-cased text) contains the needle; the empty needle is everywhere.
    pub fn found_in(&self, hay_lc: &str) -> bool {
        self.lc.is_empty() || self.finder.find(hay_lc.as_bytes()).is_some()
    }
}

/// Where one field's lower-cased name and value lie in [`Entry::header_lc`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FieldSpan {
    name: (u32, u32),
    value: (u32, u32),
}

/// The indexed form of one message. See the module invariants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// SORT and THREAD keys.
    pub keys: SortKeys,
    /// The Date field as (UTC seconds, offset seconds east), for SENTBEFORE/SENTON/SENTSINCE.
    sent: Option<(i64, i32)>,
    /// Every field as `name: value\n`, lower-cased (the scan's TEXT header text).
    header_lc: Box<str>,
    /// Each field located in `header_lc`; empty when `layout_ok` is false.
    fields: Box<[FieldSpan]>,
    /// Whether `fields` describes every field (false: HEADER and address keys are unknown).
    layout_ok: bool,
    /// (index in [`ADDRESS_FIELDS`], parsed address text lower-cased) per address field.
    addresses: Box<[(u8, Box<str>)]>,
    /// Decoded text of the text parts, lower-cased, at most [`MAX_INDEXED_BODY`] bytes.
    body_lc: Box<str>,
    /// Whether `body_lc` is the whole body text (false: it was cut).
    body_complete: bool,
}

fn u32_of(n: usize) -> Option<u32> {
    u32::try_from(n).ok()
}

impl Entry {
    /// Analyses a raw message (the same analysis as the scan).
    pub fn from_message(raw: &[u8]) -> Entry {
        let keys = SortKeys::from_message(raw);
        let msg = SearchableMessage::new(raw);
        Entry::from_analysed(keys, &msg)
    }

    fn from_analysed(keys: SortKeys, msg: &SearchableMessage) -> Entry {
        let header_lc = msg.header_text_lc();
        let mut fields = Vec::new();
        let mut addresses = Vec::new();
        let mut layout_ok = true;
        let mut pos = 0usize;
        for f in msg.fields() {
            if let Some(i) = ADDRESS_FIELDS.iter().position(|a| f.name.eq_ignore_ascii_case(a)) {
                addresses.push((i as u8, address_text_lc(f.value).into_boxed_str()));
            }
            if !layout_ok {
                continue;
            }
            // The scan lower-cases `name: value\n` as a whole; expect each piece in place.
            let ne = pos + f.name.len();
            let vs = ne + 2;
            let ve = vs + f.value_lc.len();
            let fits = header_lc.get(pos..ne) == Some(f.name)
                && header_lc.get(ne..vs) == Some(": ")
                && header_lc.get(vs..ve) == Some(f.value_lc)
                && header_lc.get(ve..ve + 1) == Some("\n");
            match (fits, u32_of(pos), u32_of(ne), u32_of(vs), u32_of(ve)) {
                (true, Some(a), Some(b), Some(c), Some(d)) => {
                    fields.push(FieldSpan { name: (a, b), value: (c, d) });
                    pos = ve + 1;
                }
                _ => layout_ok = false,
            }
        }
        if pos != header_lc.len() {
            layout_ok = false;
        }
        if !layout_ok {
            fields.clear();
        }
        let body = msg.body_text_lc();
        let (body_lc, body_complete) = if body.len() <= MAX_INDEXED_BODY {
            (body, true)
        } else {
            let mut cut = MAX_INDEXED_BODY;
            while cut > 0 && !body.is_char_boundary(cut) {
                cut -= 1;
            }
            (body.get(..cut).unwrap_or_default(), false)
        };
        Entry {
            keys,
            sent: msg.sent_date(),
            header_lc: header_lc.into(),
            fields: fields.into_boxed_slice(),
            layout_ok,
            addresses: addresses.into_boxed_slice(),
            body_lc: body_lc.into(),
            body_complete,
        }
    }

    /// Bytes of memory the entry's text takes (for logs and the memory bound).
    pub fn text_bytes(&self) -> usize {
        self.header_lc.len()
            + self.body_lc.len()
            + self.addresses.iter().map(|(_, a)| a.len()).sum::<usize>()
            + self.fields.len() * std::mem::size_of::<FieldSpan>()
    }

    fn span(&self, (a, b): (u32, u32)) -> &str {
        self.header_lc.get(a as usize..b as usize).unwrap_or_default()
    }

    /// [`SearchableMessage::sent_date`].
    pub fn sent_date(&self) -> Option<(i64, i32)> {
        self.sent
    }

    /// [`SearchableMessage::header_contains`], or `None` when unknown.
    pub fn header_contains(&self, name: &str, needle: &Needle) -> Option<bool> {
        if !self.layout_ok {
            return None;
        }
        Some(
            self.fields
                .iter()
                .filter(|f| self.span(f.name).eq_ignore_ascii_case(name))
                .any(|f| needle.found_in(self.span(f.value))),
        )
    }

    /// [`SearchableMessage::address_contains`], or `None` when unknown.
    pub fn address_contains(&self, field: &str, needle: &Needle) -> Option<bool> {
        let code = ADDRESS_FIELDS.iter().position(|a| field.eq_ignore_ascii_case(a))?;
        let in_value = self.header_contains(field, needle)?;
        Some(
            in_value
                || self
                    .addresses
                    .iter()
                    .filter(|(c, _)| usize::from(*c) == code)
                    .any(|(_, text)| needle.found_in(text)),
        )
    }

    /// [`SearchableMessage::body_contains`], or `None` when unknown.
    pub fn body_contains(&self, needle: &Needle) -> Option<bool> {
        if needle.found_in(&self.body_lc) {
            Some(true)
        } else if self.body_complete {
            Some(false)
        } else {
            None
        }
    }

    /// [`SearchableMessage::text_contains`], or `None` when unknown.
    pub fn text_contains(&self, needle: &Needle) -> Option<bool> {
        if needle.found_in(&self.header_lc) { Some(true) } else { self.body_contains(needle) }
    }

    /// Appends the entry's encoding to `out` (see `docs/imap.md`, "Search index file").
    pub fn encode(&self, out: &mut Vec<u8>) {
        let k = &self.keys;
        opt_i64(out, k.sent);
        string(out, &k.subject);
        out.push(u8::from(k.subject_is_reply));
        for s in [&k.from, &k.to, &k.cc, &k.display_from, &k.display_to] {
            string(out, s);
        }
        match &k.message_id {
            Some(id) => {
                out.push(1);
                string(out, id);
            }
            None => out.push(0),
        }
        count(out, k.references.len());
        for r in &k.references {
            string(out, r);
        }
        match self.sent {
            Some((t, off)) => {
                out.push(1);
                out.extend_from_slice(&t.to_le_bytes());
                out.extend_from_slice(&off.to_le_bytes());
            }
            None => out.push(0),
        }
        string(out, &self.header_lc);
        out.push(u8::from(self.layout_ok));
        count(out, self.fields.len());
        for f in self.fields.iter() {
            for n in [f.name.0, f.name.1, f.value.0, f.value.1] {
                out.extend_from_slice(&n.to_le_bytes());
            }
        }
        count(out, self.addresses.len());
        for (c, a) in self.addresses.iter() {
            out.push(*c);
            string(out, a);
        }
        string(out, &self.body_lc);
        out.push(u8::from(self.body_complete));
    }

    /// Decodes one entry written by [`Entry::encode`]; every span is checked against the text.
    pub fn decode(r: &mut Reader<'_>) -> Result<Entry, Corrupt> {
        let sent = r.opt_i64()?;
        let subject = r.string()?;
        let subject_is_reply = r.bool()?;
        let from = r.string()?;
        let to = r.string()?;
        let cc = r.string()?;
        let display_from = r.string()?;
        let display_to = r.string()?;
        let message_id = if r.bool()? { Some(r.string()?) } else { None };
        let n = r.count(4)?;
        let mut references = Vec::with_capacity(n);
        for _ in 0..n {
            references.push(r.string()?);
        }
        let date = if r.bool()? {
            let t = i64::from_le_bytes(r.array()?);
            let off = i32::from_le_bytes(r.array()?);
            Some((t, off))
        } else {
            None
        };
        let header_lc = r.string()?;
        let layout_ok = r.bool()?;
        let n = r.count(16)?;
        let mut fields = Vec::with_capacity(n);
        for _ in 0..n {
            let mut v = [0u32; 4];
            for x in &mut v {
                *x = u32::from_le_bytes(r.array()?);
            }
            let [a, b, c, d] = v;
            let ok = |s: u32, e: u32| s <= e && header_lc.get(s as usize..e as usize).is_some();
            if !ok(a, b) || !ok(c, d) {
                return Err(Corrupt("field span outside the header text"));
            }
            fields.push(FieldSpan { name: (a, b), value: (c, d) });
        }
        let n = r.count(5)?;
        let mut addresses = Vec::with_capacity(n);
        for _ in 0..n {
            let c = r.u8()?;
            if usize::from(c) >= ADDRESS_FIELDS.len() {
                return Err(Corrupt("unknown address field"));
            }
            addresses.push((c, r.string()?.into_boxed_str()));
        }
        let body_lc = r.string()?;
        if body_lc.len() > MAX_INDEXED_BODY {
            return Err(Corrupt("body text over the bound"));
        }
        let body_complete = r.bool()?;
        Ok(Entry {
            keys: SortKeys {
                sent,
                subject,
                subject_is_reply,
                from,
                to,
                cc,
                display_from,
                display_to,
                message_id,
                references,
            },
            sent: date,
            header_lc: header_lc.into_boxed_str(),
            fields: fields.into_boxed_slice(),
            layout_ok,
            addresses: addresses.into_boxed_slice(),
            body_lc: body_lc.into_boxed_str(),
            body_complete,
        })
    }
}

fn count(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

/// `u32` length + bytes. Strings here are bounded far below 4 GiB (see [`MAX_STRING`]).
fn string(out: &mut Vec<u8>, s: &str) {
    count(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn opt_i64(out: &mut Vec<u8>, v: Option<i64>) {
    match v {
        Some(t) => {
            out.push(1);
            out.extend_from_slice(&t.to_le_bytes());
        }
        None => out.push(0),
    }
}

/// Why an index file's content was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corrupt(pub &'static str);

impl std::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// A bounded reader over decoded bytes.
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
        if n > self.bytes.len() {
            return Err(Corrupt("truncated"));
        }
        let (a, b) = self.bytes.split_at(n);
        self.bytes = b;
        Ok(a)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], Corrupt> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8, Corrupt> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u32(&mut self) -> Result<u32, Corrupt> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn bool(&mut self) -> Result<bool, Corrupt> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Corrupt("bad boolean")),
        }
    }

    /// A count of items each at least `min_item` bytes long (so a huge count in a short frame
    /// is refused before anything is allocated).
    pub fn count(&mut self, min_item: usize) -> Result<usize, Corrupt> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item.max(1)) > self.bytes.len() {
            return Err(Corrupt("count larger than the data"));
        }
        Ok(n)
    }

    fn opt_i64(&mut self) -> Result<Option<i64>, Corrupt> {
        Ok(if self.bool()? { Some(i64::from_le_bytes(self.array()?)) } else { None })
    }

    fn string(&mut self) -> Result<String, Corrupt> {
        let n = self.u32()? as usize;
        if n > MAX_STRING {
            return Err(Corrupt("string over the bound"));
        }
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| Corrupt("string is not UTF-8"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;

    const MSG: &[u8] = b"From: =?utf-8?q?J=C3=B6rg?= <joerg@example.org>\r\nTo: a@b.c, Bob <BOB@x.y>\r\nSubject: Re: Quarterly REPORT\r\nDate: Mon, 4 Jan 1971 10:00:00 +0100\r\nX-Tag: Hello\r\n\r\nThe Numbers are in.\r\n";

    #[test]
    fn matches_like_the_scan_and_round_trips() {
        let e = Entry::from_message(MSG);
        let s = SearchableMessage::new(MSG);
        assert!(e.layout_ok);
        for needle in ["", "jörg", "JOERG@", "bob@x", "report", "numbers", "hello", "x-tag", "zzz"] {
            let n = Needle::new(needle.to_string());
            assert_eq!(e.text_contains(&n), Some(s.text_contains(needle)), "{needle}");
            assert_eq!(e.body_contains(&n), Some(s.body_contains(needle)), "{needle}");
            for f in ["subject", "x-tag", "from", "date", "nothere"] {
                assert_eq!(e.header_contains(f, &n), Some(s.header_contains(f, needle)), "{f} {needle}");
            }
            for f in ["from", "to", "cc", "bcc"] {
                assert_eq!(e.address_contains(f, &n), Some(s.address_contains(f, needle)), "{f} {needle}");
            }
        }
        assert_eq!(e.sent_date(), s.sent_date());
        let mut buf = Vec::new();
        e.encode(&mut buf);
        let mut r = Reader::new(&buf);
        assert_eq!(Entry::decode(&mut r).unwrap(), e);
        assert!(r.is_empty());
        // Every truncation is refused, never a panic.
        for cut in 0..buf.len() {
            assert!(Entry::decode(&mut Reader::new(&buf[..cut])).is_err());
        }
    }

    #[test]
    fn long_bodies_are_cut_and_unknown_beyond() {
        let mut m = b"Subject: big\r\n\r\n".to_vec();
        m.extend(std::iter::repeat_n(b'a', MAX_INDEXED_BODY + 100));
        m.extend_from_slice(b" needle\r\n");
        let e = Entry::from_message(&m);
        assert!(!e.body_complete);
        assert!(e.body_lc.len() <= MAX_INDEXED_BODY);
        assert_eq!(e.body_contains(&Needle::new("needle".into())), None);
        assert_eq!(e.text_contains(&Needle::new("aaaa".into())), Some(true));
        assert_eq!(e.text_contains(&Needle::new("big".into())), Some(true));
    }
}
