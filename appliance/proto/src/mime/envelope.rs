//! The IMAP ENVELOPE structure (RFC 9051 §7.5.2).
//!
//! What it is: `("date" "subject" (from) (sender) (reply-to) (to) (cc) (bcc) "in-reply-to"
//! "message-id")` built from a header section. Values are unfolded (RFC 5322 §2.2.3) but not
//! decoded: encoded-words stay as written, as the RFC requires. Sender and Reply-To default to
//! From when absent or empty. Address lists use group syntax and Dovecot's `MISSING_MAILBOX` /
//! `MISSING_DOMAIN` placeholders.
//!
//! What it is not: no RFC 2047 decoding, no date normalisation (the Date text is returned as it
//! is written), no validation of Message-ID syntax.
//!
//! Invariants: the output is a single valid `envelope` production whatever the input; the first
//! occurrence of each field is used; work is linear in the header size.

use super::address::{self, Entry};
use super::header;
use super::imapstr::{nstring, string};

/// ENVELOPE of a whole raw message.
pub fn envelope(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_envelope(&mut out, header::header_block(raw));
    out
}

/// Appends the ENVELOPE of the header section `hdr`.
pub fn write_envelope(out: &mut Vec<u8>, hdr: &[u8]) {
    let get = |name: &str| header::first_unfolded(hdr, name);
    out.push(b'(');
    nstring(out, get("date").as_deref());
    out.push(b' ');
    nstring(out, get("subject").as_deref());
    let from = addresses(get("from"));
    let sender = addresses(get("sender"));
    let reply_to = addresses(get("reply-to"));
    for (list, default_from) in [(&from, false), (&sender, true), (&reply_to, true)] {
        out.push(b' ');
        let list = if default_from && list.is_empty() { &from } else { list };
        write_addresses(out, list);
    }
    for name in ["to", "cc", "bcc"] {
        out.push(b' ');
        write_addresses(out, &addresses(get(name)));
    }
    out.push(b' ');
    nstring(out, get("in-reply-to").as_deref());
    out.push(b' ');
    nstring(out, get("message-id").as_deref());
    out.push(b')');
}

fn addresses(value: Option<Vec<u8>>) -> Vec<Entry> {
    value.map(|v| address::parse_list(&v)).unwrap_or_default()
}

/// Appends an address list, or NIL when it is empty.
fn write_addresses(out: &mut Vec<u8>, list: &[Entry]) {
    if list.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for e in list {
        match e {
            Entry::Mailbox { name, adl, mailbox, host } => {
                out.push(b'(');
                nstring(out, name.as_deref());
                out.push(b' ');
                nstring(out, adl.as_deref());
                out.push(b' ');
                string(out, mailbox);
                out.push(b' ');
                string(out, host);
                out.push(b')');
            }
            Entry::GroupStart(name) => {
                out.extend_from_slice(b"(NIL NIL ");
                string(out, name);
                out.extend_from_slice(b" NIL)");
            }
            Entry::GroupEnd => out.extend_from_slice(b"(NIL NIL NIL NIL)"),
        }
    }
    out.push(b')');
}
