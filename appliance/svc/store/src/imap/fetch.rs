//! FETCH and UID FETCH (RFC 9051 §6.4.5, RFC 3501 §6.4.5, RFC 3516 BINARY, RFC 7162 MODSEQ,
//! CHANGEDSINCE and VANISHED).
//!
//! What it is: resolves the message set, sets `\Seen` for non-PEEK body fetches (once, for all
//! messages, before answering), then reads and renders the messages in bounded batches on the
//! blocking pool and writes each message's `* n FETCH (...)` as soon as its batch is ready.
//! What it is not: MIME analysis (`hermes_proto::mime`: ENVELOPE, BODYSTRUCTURE, sections,
//! BINARY decoding) or expunge reporting (never during FETCH; see `session`).
//!
//! Invariants:
//! - Memory per FETCH is bounded by one batch ([`BATCH_BYTES`] of raw messages and their
//!   rendered responses), however many messages the set names.
//! - `UID FETCH` responses always carry `UID`; a fetch that set `\Seen` carries the new
//!   `FLAGS` even if they were not asked for (RFC 9051 §6.4.5).
//! - A read-only mailbox never gets `\Seen` set.
//! - `CHANGEDSINCE n` answers only messages whose MODSEQ is above n and always includes MODSEQ;
//!   with `VANISHED` (QRESYNC) the `* VANISHED (EARLIER)` line comes before any FETCH.
//! - Messages expunged by another session but not yet reported are skipped and the command
//!   ends `NO [EXPUNGEISSUED]`; a BINARY fetch of an unknown transfer encoding ends
//!   `NO [UNKNOWN-CTE]` (the other messages are still answered).

use super::condstore;
use super::reply::Reply;
use super::session::{End, Session};
use super::wire;
use hermes_proto::imap::{self as p, FetchAttribute, FetchCommand, Partial, Section, SectionText};
use hermes_proto::mime;
use hermes_store::{FlagOp, MailboxId, MessageMeta, StoreError, UserStore};
use std::collections::HashMap;
use std::sync::Arc;

/// Raw bytes read per batch: large enough to amortise the blocking-pool hop, small enough to
/// bound a session's memory during a huge FETCH.
pub const BATCH_BYTES: u64 = 8 * 1024 * 1024;
/// Messages per batch (for small messages, bounds the response buffered per batch).
pub const BATCH_MESSAGES: usize = 64;

/// Why one message could not be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    Expunged,
    UnknownCte,
}

fn needs_raw(attr: &FetchAttribute) -> bool {
    !matches!(
        attr,
        FetchAttribute::Flags
            | FetchAttribute::Uid
            | FetchAttribute::InternalDate
            | FetchAttribute::Rfc822Size
            | FetchAttribute::ModSeq
    )
}

fn sets_seen(attr: &FetchAttribute) -> bool {
    matches!(
        attr,
        FetchAttribute::Rfc822
            | FetchAttribute::Rfc822Text
            | FetchAttribute::BodySection { peek: false, .. }
            | FetchAttribute::Binary { peek: false, .. }
    )
}

pub(super) async fn fetch(s: &mut Session, mut cmd: FetchCommand) -> Result<Reply, End> {
    // RFC 7162 modifiers: CHANGEDSINCE n, and VANISHED (UID FETCH with QRESYNC enabled only).
    let mut changed_since = None;
    let mut vanished = false;
    for m in &cmd.modifiers.0 {
        match (m.name.as_str(), &m.value) {
            ("CHANGEDSINCE", Some(v)) => match v.as_number() {
                Some(n) => changed_since = Some(n),
                None => return Ok(Reply::bad("Invalid CHANGEDSINCE value")),
            },
            ("VANISHED", None) => vanished = true,
            _ => return Ok(Reply::bad("Unsupported FETCH modifier")),
        }
    }
    if vanished && !(cmd.uid && changed_since.is_some() && s.qresync) {
        return Ok(Reply::bad("VANISHED needs UID FETCH, CHANGEDSINCE and QRESYNC enabled"));
    }
    if changed_since.is_some() || cmd.attributes.contains(&FetchAttribute::ModSeq) {
        s.enable_condstore();
        if !cmd.attributes.contains(&FetchAttribute::ModSeq) {
            cmd.attributes.push(FetchAttribute::ModSeq);
        }
    }
    let condstore = s.condstore;
    let Some(sel) = s.selected.as_ref() else {
        return Ok(Reply::bad("No mailbox selected"));
    };
    let mut targets = match sel.resolve(&cmd.set, cmd.uid) {
        Ok(t) => t,
        Err(_) => return Ok(Reply::bad("Invalid message sequence number")),
    };
    let id = sel.id;
    if let Some(since) = changed_since {
        targets.retain(|&(_, uid)| sel.meta(uid).is_some_and(|m| m.modseq > since));
        if vanished {
            let set = cmd.set.clone();
            let found = s
                .store_call("UID FETCH", false, move |u| {
                    let view = u.view(id)?;
                    let present: Vec<u32> = view.messages.iter().map(|m| m.uid).collect();
                    condstore::vanished_earlier(u, id, since, Some(&set), &present, view.uidnext)
                })
                .await;
            match found {
                Ok(ranges) => {
                    let mut out = Vec::new();
                    condstore::write_vanished_earlier(&mut out, &ranges);
                    s.send(&out).await?;
                }
                Err(r) => return Ok(r),
            }
        }
    }
    let Some(sel) = s.selected.as_ref() else {
        return Ok(Reply::bad("No mailbox selected"));
    };
    let want_raw = cmd.attributes.iter().any(needs_raw);
    let mut expunged = false;

    // 1. \Seen, once for the whole set.
    let mut new_flags: HashMap<u32, (Vec<String>, u64)> = HashMap::new();
    if !sel.read_only && cmd.attributes.iter().any(sets_seen) {
        let unseen: Vec<u32> = targets
            .iter()
            .filter_map(|&(_, uid)| sel.meta(uid))
            .filter(|m| !m.flags.iter().any(|f| f == "\\Seen"))
            .map(|m| m.uid)
            .collect();
        if !unseen.is_empty() {
            let seen = vec!["\\Seen".to_string()];
            match s.store_call("FETCH", false, move |u| u.store_flags(id, &unseen, FlagOp::Add, &seen, None)).await {
                Ok(update) => {
                    if let Some(sel) = s.selected.as_mut() {
                        for (uid, flags, modseq) in update.changed {
                            sel.note_reported(uid, modseq);
                            new_flags.insert(uid, (flags, modseq));
                        }
                    }
                }
                Err(r) => return Ok(r),
            }
        }
    }

    // 2. Batches: metadata copied out of the view, raw read and rendered on the blocking pool.
    let Some(sel) = s.selected.as_ref() else {
        return Ok(Reply::bad("No mailbox selected"));
    };
    let mut items: Vec<Item> = Vec::with_capacity(targets.len());
    for &(msn, uid) in &targets {
        match sel.meta(uid) {
            Some(m) => {
                let mut meta = m.clone();
                let flags_changed = match new_flags.remove(&uid) {
                    Some((f, modseq)) => {
                        meta.flags = f;
                        meta.modseq = modseq;
                        true
                    }
                    None => false,
                };
                items.push(Item { msn, meta, flags_changed });
            }
            None => expunged = true,
        }
    }
    let Some(store) = s.user_store() else {
        return Ok(Reply::bad("Command not allowed before login"));
    };
    let attrs = Arc::new(cmd.attributes);
    let mut unknown_cte = false;
    let mut rest = items.as_slice();
    while !rest.is_empty() {
        let mut n = 0;
        let mut bytes = 0u64;
        while n < rest.len() && n < BATCH_MESSAGES && (n == 0 || bytes + rest[n].meta.size <= BATCH_BYTES || !want_raw)
        {
            bytes += rest[n].meta.size;
            n += 1;
        }
        let (batch, tail) = rest.split_at(n);
        rest = tail;
        let batch: Vec<Item> = batch.to_vec();
        let store = Arc::clone(&store);
        let attrs = Arc::clone(&attrs);
        let uid_cmd = cmd.uid;
        let rendered =
            tokio::task::spawn_blocking(move || render_batch(&store, id, &batch, &attrs, uid_cmd, want_raw, condstore))
                .await;
        let rendered = match rendered {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Ok(Reply::from_store(&e, "FETCH", false)),
            Err(e) => {
                tracing::error!(error = %e, "fetch task failed");
                return Ok(Reply::server_bug());
            }
        };
        for r in rendered {
            match r {
                Ok(bytes) => s.send(&bytes).await?,
                Err(Skip::Expunged) => expunged = true,
                Err(Skip::UnknownCte) => unknown_cte = true,
            }
        }
    }
    if unknown_cte {
        return Ok(Reply::no("Unknown Content-Transfer-Encoding").with_code("UNKNOWN-CTE"));
    }
    if expunged {
        return Ok(Reply::no("Some of the requested messages no longer exist").with_code("EXPUNGEISSUED"));
    }
    Ok(Reply::ok("FETCH completed"))
}

#[derive(Debug, Clone)]
struct Item {
    msn: u32,
    meta: MessageMeta,
    /// `\Seen` was just set: FLAGS is included even if not asked for.
    flags_changed: bool,
}

fn render_batch(
    store: &UserStore,
    mailbox: MailboxId,
    batch: &[Item],
    attrs: &[FetchAttribute],
    uid_cmd: bool,
    want_raw: bool,
    condstore: bool,
) -> Result<Vec<Result<Vec<u8>, Skip>>, StoreError> {
    let mut out = Vec::with_capacity(batch.len());
    for item in batch {
        let raw = if want_raw {
            match store.read_message(mailbox, item.meta.uid) {
                Ok(r) => Some(r),
                Err(StoreError::NoSuchMessage) => {
                    out.push(Err(Skip::Expunged));
                    continue;
                }
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        out.push(render(
            item.msn,
            &item.meta,
            raw.as_deref().map(|v| v.as_slice()),
            attrs,
            uid_cmd,
            item.flags_changed,
            condstore,
        ));
    }
    Ok(out)
}

/// One `* n FETCH (...)\r\n` response. `raw` is present whenever an attribute needs it.
/// `condstore`: CONDSTORE is enabled, so an implicit flag change also reports MODSEQ.
fn render(
    msn: u32,
    meta: &MessageMeta,
    raw: Option<&[u8]>,
    attrs: &[FetchAttribute],
    uid_cmd: bool,
    flags_changed: bool,
    condstore: bool,
) -> Result<Vec<u8>, Skip> {
    let raw_len = raw.map_or(0, <[u8]>::len);
    let mut out = Vec::with_capacity(128 + raw_len.min(1 << 20));
    out.extend_from_slice(format!("* {msn} FETCH (").as_bytes());
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !first {
            out.push(b' ');
        }
        first = false;
    };
    let mut uid_done = false;
    let mut flags_done = false;
    if uid_cmd && !attrs.contains(&FetchAttribute::Uid) {
        sep(&mut out);
        out.extend_from_slice(format!("UID {}", meta.uid).as_bytes());
        uid_done = true;
    }
    let raw = raw.unwrap_or(&[]);
    for attr in attrs {
        match attr {
            FetchAttribute::Uid => {
                if uid_done {
                    continue;
                }
                sep(&mut out);
                out.extend_from_slice(format!("UID {}", meta.uid).as_bytes());
                uid_done = true;
            }
            FetchAttribute::Flags => {
                if flags_done {
                    continue;
                }
                sep(&mut out);
                out.extend_from_slice(b"FLAGS ");
                wire::flag_list(&mut out, &meta.flags);
                flags_done = true;
            }
            FetchAttribute::InternalDate => {
                sep(&mut out);
                out.extend_from_slice(b"INTERNALDATE ");
                out.extend_from_slice(wire::internal_date(meta.internal_date).as_bytes());
            }
            FetchAttribute::Rfc822Size => {
                sep(&mut out);
                out.extend_from_slice(format!("RFC822.SIZE {}", meta.size).as_bytes());
            }
            FetchAttribute::ModSeq => {
                sep(&mut out);
                out.extend_from_slice(format!("MODSEQ ({})", meta.modseq).as_bytes());
            }
            FetchAttribute::Envelope => {
                sep(&mut out);
                out.extend_from_slice(b"ENVELOPE ");
                out.extend_from_slice(&mime::envelope(raw));
            }
            FetchAttribute::Body => {
                sep(&mut out);
                out.extend_from_slice(b"BODY ");
                out.extend_from_slice(&mime::bodystructure(raw, false));
            }
            FetchAttribute::BodyStructure => {
                sep(&mut out);
                out.extend_from_slice(b"BODYSTRUCTURE ");
                out.extend_from_slice(&mime::bodystructure(raw, true));
            }
            FetchAttribute::Rfc822 => {
                sep(&mut out);
                out.extend_from_slice(b"RFC822 ");
                p::response::write_literal(&mut out, raw);
            }
            FetchAttribute::Rfc822Header => {
                sep(&mut out);
                out.extend_from_slice(b"RFC822.HEADER ");
                let sec = Section { part: Vec::new(), text: Some(SectionText::Header) };
                let data = mime::section(raw, &sec).unwrap_or_default();
                p::response::write_literal(&mut out, &data);
            }
            FetchAttribute::Rfc822Text => {
                sep(&mut out);
                out.extend_from_slice(b"RFC822.TEXT ");
                let sec = Section { part: Vec::new(), text: Some(SectionText::Text) };
                let data = mime::section(raw, &sec).unwrap_or_default();
                p::response::write_literal(&mut out, &data);
            }
            FetchAttribute::BodySection { section, partial, .. } => {
                sep(&mut out);
                out.extend_from_slice(b"BODY[");
                section_spec(&mut out, section);
                out.push(b']');
                match mime::section(raw, section) {
                    Some(data) => {
                        let slice = apply_partial(&mut out, &data, partial.as_ref());
                        out.push(b' ');
                        p::response::write_literal(&mut out, slice);
                    }
                    None => {
                        apply_partial(&mut out, &[], partial.as_ref());
                        out.extend_from_slice(b" NIL");
                    }
                }
            }
            FetchAttribute::Binary { part, partial, .. } => {
                let data = mime::binary_section(raw, part).map_err(|_| Skip::UnknownCte)?;
                sep(&mut out);
                out.extend_from_slice(b"BINARY[");
                part_spec(&mut out, part);
                out.push(b']');
                let slice = apply_partial(&mut out, &data, partial.as_ref());
                out.push(b' ');
                let binary = memchr::memchr(0, slice).is_some();
                p::response::write_literal_header(&mut out, slice.len() as u64, binary);
                out.extend_from_slice(slice);
            }
            FetchAttribute::BinarySize { part } => {
                let size = mime::binary_size(raw, part).map_err(|_| Skip::UnknownCte)?;
                sep(&mut out);
                out.extend_from_slice(b"BINARY.SIZE[");
                part_spec(&mut out, part);
                out.extend_from_slice(format!("] {size}").as_bytes());
            }
        }
    }
    if flags_changed && !flags_done {
        sep(&mut out);
        out.extend_from_slice(b"FLAGS ");
        wire::flag_list(&mut out, &meta.flags);
    }
    if flags_changed && condstore && !attrs.contains(&FetchAttribute::ModSeq) {
        sep(&mut out);
        out.extend_from_slice(format!("MODSEQ ({})", meta.modseq).as_bytes());
    }
    out.extend_from_slice(b")\r\n");
    Ok(out)
}

/// Writes `<origin>` for a partial fetch and returns the requested slice of `data`.
fn apply_partial<'a>(out: &mut Vec<u8>, data: &'a [u8], partial: Option<&Partial>) -> &'a [u8] {
    let Some(pt) = partial else { return data };
    out.extend_from_slice(format!("<{}>", pt.offset).as_bytes());
    let start = usize::try_from(pt.offset).unwrap_or(usize::MAX).min(data.len());
    let len = pt.length.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    let end = start.saturating_add(len).min(data.len());
    data.get(start..end).unwrap_or(&[])
}

fn part_spec(out: &mut Vec<u8>, part: &[u32]) {
    for (i, n) in part.iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        out.extend_from_slice(n.to_string().as_bytes());
    }
}

/// The section as echoed in the response (`1.2.HEADER.FIELDS (From To)`).
fn section_spec(out: &mut Vec<u8>, section: &Section) {
    part_spec(out, &section.part);
    let Some(text) = &section.text else { return };
    if !section.part.is_empty() {
        out.push(b'.');
    }
    match text {
        SectionText::Header => out.extend_from_slice(b"HEADER"),
        SectionText::Text => out.extend_from_slice(b"TEXT"),
        SectionText::Mime => out.extend_from_slice(b"MIME"),
        SectionText::HeaderFields { not, fields } => {
            out.extend_from_slice(if *not { b"HEADER.FIELDS.NOT (" } else { b"HEADER.FIELDS (" });
            for (i, f) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                p::response::write_astring(out, f.as_bytes());
            }
            out.push(b')');
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;
    use hermes_store::InternalDate;

    const MSG: &[u8] = b"From: a@example.org\r\nSubject: hi\r\n\r\nhello world\r\n";

    fn meta() -> MessageMeta {
        MessageMeta {
            uid: 7,
            modseq: 3,
            flags: vec!["\\Seen".into()],
            internal_date: InternalDate { unix: 837_596_665, offset_minutes: -420 },
            size: MSG.len() as u64,
        }
    }

    fn text(v: Vec<u8>) -> String {
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn uid_fetch_always_has_uid_first() {
        let r = render(2, &meta(), None, &[FetchAttribute::Flags], true, false, false).unwrap();
        assert_eq!(text(r), "* 2 FETCH (UID 7 FLAGS (\\Seen))\r\n");
    }

    #[test]
    fn sections_partial_and_implicit_flags() {
        let attrs = [
            FetchAttribute::BodySection {
                peek: false,
                section: Section::default(),
                partial: Some(Partial { offset: 6, length: Some(4) }),
            },
            FetchAttribute::BodySection {
                peek: true,
                section: Section {
                    part: vec![],
                    text: Some(SectionText::HeaderFields { not: false, fields: vec!["Subject".into()] }),
                },
                partial: None,
            },
            FetchAttribute::Rfc822Size,
        ];
        let r = render(1, &meta(), Some(MSG), &attrs, false, true, false).unwrap();
        assert_eq!(
            text(r),
            format!(
                "* 1 FETCH (BODY[]<6> {{4}}\r\na@ex BODY[HEADER.FIELDS (Subject)] {{15}}\r\nSubject: hi\r\n\r\n RFC822.SIZE {} FLAGS (\\Seen))\r\n",
                MSG.len()
            )
        );
    }

    #[test]
    fn partial_beyond_end_is_empty() {
        let attrs = [FetchAttribute::BodySection {
            peek: true,
            section: Section::default(),
            partial: Some(Partial { offset: 10_000, length: Some(10) }),
        }];
        let r = render(1, &meta(), Some(MSG), &attrs, false, false, false).unwrap();
        assert_eq!(text(r), "* 1 FETCH (BODY[]<10000> {0}\r\n)\r\n");
    }
}
