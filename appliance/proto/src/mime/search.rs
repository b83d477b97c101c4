//! A message analysed once for IMAP SEARCH (RFC 9051 §6.4.4): decoded headers, addresses and
//! body text, matched case-insensitively.
//!
//! What it is: [`SearchableMessage::new`] walks the byte-exact part tree once, decodes every
//! header value (RFC 2047 encoded-words, any charset mail-parser 0.11 knows), every `text/*` part
//! (transfer encoding, then charset; HTML reduced to its text) including those inside embedded
//! `message/rfc822` parts (whose headers count as body text of the outer message), and keeps
//! lower-cased UTF-8 copies so each search key is one substring scan. Matching lower-cases the
//! needle with Unicode rules (`str::to_lowercase`), as RFC 9051 asks for case-insensitive
//! substring search in any charset.
//!
//! What it is not: no search-program evaluation (flags, sizes, dates against INTERNALDATE and
//! boolean combination belong to the session), no index or full-text engine, no stemming or
//! accent folding.
//!
//! Invariants: decoded body text is capped at [`MAX_BODY_TEXT`] bytes (input beyond it is not
//! decoded at all) and header text at [`MAX_HEADER_TEXT`]; building never panics on any input;
//! all stored text is valid UTF-8 (invalid sequences are replaced).

use mail_parser::DateTime;

use super::address::{self, Entry};
use super::decode::{self, Encoding};
use super::header;
use super::tree::{self, Kind, Part};

/// Most decoded body text kept per message (10 MiB): bounds memory and time on huge messages.
pub const MAX_BODY_TEXT: usize = 10 * 1024 * 1024;

/// Most decoded header text kept per message (1 MiB); real headers are a few KiB.
pub const MAX_HEADER_TEXT: usize = 1024 * 1024;

#[derive(Debug, Clone)]
struct HeaderEntry {
    /// Field name, lower-cased ASCII.
    name: String,
    /// Decoded value (RFC 2047), unfolded.
    value: String,
    /// `value` lower-cased.
    value_lc: String,
}

/// A message prepared for SEARCH. Build it once per message and test any number of keys.
#[derive(Debug, Clone)]
pub struct SearchableMessage {
    headers: Vec<HeaderEntry>,
    /// Every header as `name: value\n`, lower-cased (for TEXT).
    header_text_lc: String,
    /// Decoded text of all text parts, lower-cased, parts separated by `\n`.
    body_lc: String,
    sent: Option<(i64, i32)>,
}

impl SearchableMessage {
    /// Analyses a raw message.
    pub fn new(raw: &[u8]) -> SearchableMessage {
        let root = tree::parse(raw);
        let hdr = raw.get(root.header.clone()).unwrap_or_default();
        let mut headers = Vec::new();
        let mut header_text = String::new();
        let mut budget = MAX_HEADER_TEXT;
        for f in header::fields(hdr) {
            let value = decode::rfc2047(&header::unfold(f.value));
            let name = String::from_utf8_lossy(f.name).to_ascii_lowercase();
            let cost = name.len() + value.len() + 3;
            if cost > budget {
                break;
            }
            budget -= cost;
            header_text.push_str(&name);
            header_text.push_str(": ");
            header_text.push_str(&value);
            header_text.push('\n');
            let value_lc = value.to_lowercase();
            headers.push(HeaderEntry { name, value, value_lc });
        }
        let sent = header::first_unfolded(hdr, "date").and_then(|d| parse_date(&d));
        let mut body = String::new();
        collect_body_text(raw, &root, &mut body);
        SearchableMessage {
            headers,
            header_text_lc: header_text.to_lowercase(),
            body_lc: body.to_lowercase(),
            sent,
        }
    }

    /// `HEADER <name> <needle>`: a field named `name` (case-insensitive) whose decoded value
    /// contains `needle`; an empty needle matches any message that has the field.
    pub fn header_contains(&self, name: &str, needle: &str) -> bool {
        let needle = needle.to_lowercase();
        self.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .any(|h| contains(&h.value_lc, &needle))
    }

    /// `FROM`/`TO`/`CC`/`BCC` (or any address field): matches the decoded display names and
    /// `mailbox@host` of the parsed addresses, and the decoded field text itself.
    pub fn address_contains(&self, field: &str, needle: &str) -> bool {
        let needle = needle.to_lowercase();
        self.headers.iter().filter(|h| h.name.eq_ignore_ascii_case(field)).any(|h| {
            contains(&h.value_lc, &needle) || contains(&address_text(&h.value).to_lowercase(), &needle)
        })
    }

    /// `BODY <needle>`: the decoded text of the message's text parts contains `needle`.
    pub fn body_contains(&self, needle: &str) -> bool {
        contains(&self.body_lc, &needle.to_lowercase())
    }

    /// `TEXT <needle>`: the header or the body contains `needle`.
    pub fn text_contains(&self, needle: &str) -> bool {
        let needle = needle.to_lowercase();
        contains(&self.header_text_lc, &needle) || contains(&self.body_lc, &needle)
    }

    /// The Date field as (seconds since the Unix epoch in UTC, offset from UTC in seconds east),
    /// for SENTBEFORE/SENTON/SENTSINCE (which compare the date in the field's own zone).
    pub fn sent_date(&self) -> Option<(i64, i32)> {
        self.sent
    }

    /// The decoded Subject (first field), for SORT and display.
    pub fn subject(&self) -> Option<&str> {
        self.header("subject")
    }

    /// The decoded value of the first field named `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_str())
    }

    /// The decoded fields in message order, as the matching methods above see them. For a
    /// persistent search index (hermes-svc-store `index`) that must answer exactly as
    /// [`SearchableMessage::header_contains`] and [`SearchableMessage::address_contains`] do.
    pub fn fields(&self) -> impl Iterator<Item = FieldView<'_>> {
        self.headers.iter().map(|h| FieldView { name: &h.name, value: &h.value, value_lc: &h.value_lc })
    }

    /// Every field as `name: value\n`, lower-cased: what TEXT matches in the header.
    pub fn header_text_lc(&self) -> &str {
        &self.header_text_lc
    }

    /// The decoded text parts, lower-cased: what BODY matches (and TEXT after the header).
    pub fn body_text_lc(&self) -> &str {
        &self.body_lc
    }
}

/// One decoded header field of a [`SearchableMessage`] (see [`SearchableMessage::fields`]).
#[derive(Debug, Clone, Copy)]
pub struct FieldView<'a> {
    /// Field name, lower-cased ASCII.
    pub name: &'a str,
    /// Decoded value (RFC 2047), unfolded.
    pub value: &'a str,
    /// `value` lower-cased.
    pub value_lc: &'a str,
}

/// The parsed addresses of a decoded address field (`Name <mailbox@host>, ...`), lower-cased:
/// what [`SearchableMessage::address_contains`] matches besides the field's own text.
pub fn address_text_lc(decoded_value: &str) -> String {
    address_text(decoded_value).to_lowercase()
}

fn contains(hay_lc: &str, needle_lc: &str) -> bool {
    needle_lc.is_empty() || memchr::memmem::find(hay_lc.as_bytes(), needle_lc.as_bytes()).is_some()
}

/// `Name <mailbox@host>, ...` with display names decoded.
fn address_text(decoded_value: &str) -> String {
    // Parsing the decoded value keeps names like `Jörg` whole; encoded-words that were quoted
    // (against RFC 2047) are decoded again here.
    let mut out = String::new();
    for e in address::parse_list(decoded_value.as_bytes()) {
        match e {
            Entry::Mailbox { name, mailbox, host, .. } => {
                if let Some(n) = name {
                    out.push_str(&decode::rfc2047(&n));
                    out.push(' ');
                }
                out.push('<');
                out.push_str(&String::from_utf8_lossy(&mailbox));
                out.push('@');
                out.push_str(&String::from_utf8_lossy(&host));
                out.push_str(">, ");
            }
            Entry::GroupStart(n) => {
                out.push_str(&decode::rfc2047(&n));
                out.push_str(": ");
            }
            Entry::GroupEnd => out.push_str("; "),
        }
    }
    out
}

/// Parses an RFC 5322 date (obsolete forms included) into (UTC seconds, offset seconds east).
fn parse_date(value: &[u8]) -> Option<(i64, i32)> {
    let text = String::from_utf8_lossy(value);
    let dt = DateTime::parse_rfc822(text.trim())?;
    if !dt.is_valid() {
        return None;
    }
    let off = i32::from(dt.tz_hour) * 3600 + i32::from(dt.tz_minute) * 60;
    Some((dt.to_timestamp(), if dt.tz_before_gmt { -off } else { off }))
}

/// Appends the decoded text of `part` (and its descendants) to `out`, within [`MAX_BODY_TEXT`].
/// The header of an embedded message is body text of the outer message.
fn collect_body_text(raw: &[u8], part: &Part, out: &mut String) {
    if out.len() >= MAX_BODY_TEXT {
        return;
    }
    match &part.kind {
        Kind::Multipart(children) => {
            for c in children {
                collect_body_text(raw, c, out);
            }
        }
        Kind::Message(inner) => {
            let hdr = raw.get(inner.header.clone()).unwrap_or_default();
            for f in header::fields(hdr) {
                let value = decode::rfc2047(&header::unfold(f.value));
                push_bounded(out, &value);
            }
            collect_body_text(raw, inner, out);
        }
        Kind::Leaf => {
            let (ty, sub) = part.media_type();
            if ty != "text" {
                return;
            }
            let enc = Encoding::parse(part.encoding(raw).as_deref()).unwrap_or(Encoding::Identity);
            let remaining = MAX_BODY_TEXT.saturating_sub(out.len());
            let body = raw.get(part.body.clone()).unwrap_or_default();
            // Decoding never shrinks text by more than base64's 4:3, so 2x the remaining budget of
            // input is enough to fill it.
            let body = body.get(..body.len().min(remaining.saturating_mul(2))).unwrap_or(body);
            let bytes = enc.decode(body);
            let charset = part.content_type.as_ref().and_then(|c| c.param("charset"));
            let text = decode::charset_to_utf8(charset, &bytes);
            if sub == "html" {
                push_bounded(out, &decode::html_to_text(&text));
            } else {
                push_bounded(out, &text);
            }
        }
        Kind::EmptyMultipart | Kind::Opaque => {}
    }
}

/// Appends `text` and a separator, truncated (at a character boundary) to the budget.
fn push_bounded(out: &mut String, text: &str) {
    let remaining = MAX_BODY_TEXT.saturating_sub(out.len());
    if remaining == 0 {
        return;
    }
    let mut cut = text.len().min(remaining);
    while cut > 0 && !text.is_char_boundary(cut) {
        cut -= 1;
    }
    out.push_str(text.get(..cut).unwrap_or_default());
    out.push('\n');
}
