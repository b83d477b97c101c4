//! Mailbox commands: SELECT, EXAMINE (with CONDSTORE and QRESYNC, RFC 7162), CREATE, DELETE,
//! RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST (with LIST-EXTENDED, LIST-STATUS, SPECIAL-USE), LSUB and
//! STATUS (with SIZE, DELETED, DELETED-STORAGE and HIGHESTMODSEQ).
//!
//! What it is: the handlers that name mailboxes rather than messages. What it is not: pattern
//! matching and attribute rules ([`super::list`]), name encoding ([`super::wire`]) or anything
//! that touches message data beyond counts.
//!
//! Invariants: names are converted from the session's wire encoding (modified UTF-7 for
//! IMAP4rev1, UTF-8 for IMAP4rev2) before they reach the store and back when they are sent;
//! a SELECT/EXAMINE always leaves the session either with the new mailbox selected or with none
//! (RFC 9051 §6.3.2), announcing `[CLOSED]` when a previous one was deselected.

use super::condstore;
use super::list::{self, ListQuery, MAX_PATTERN};
use super::reply::Reply;
use super::session::{End, Session};
use super::sync::{Selected, permanent_flags};
use super::wire;
use hermes_proto::imap::{self as p, ExtParams, ListCommand, ListReturn, ListSelection, MailboxName, StatusItem};
use hermes_store::{MailboxInfo, SpecialUse, StoreError};

pub(super) async fn select(
    s: &mut Session,
    name: &MailboxName,
    params: &ExtParams,
    read_only: bool,
) -> Result<Reply, End> {
    let command = if read_only { "EXAMINE" } else { "SELECT" };
    if s.selected.take().is_some() {
        s.send(b"* OK [CLOSED] Previous mailbox is now closed\r\n").await?;
    }
    let opts = match condstore::select_options(params, s.qresync) {
        Ok(o) => o,
        Err(r) => return Ok(r),
    };
    if opts.condstore {
        s.enable_condstore();
    }
    let store_name = match s.mailbox_name(name) {
        Ok(n) => n,
        Err(r) => return Ok(r),
    };
    // With QRESYNC, what vanished since the client's mod-sequence is read with the view.
    let qresync = opts.qresync.clone();
    let opened = s
        .store_call(command, false, move |u| {
            let info = u.mailbox(&store_name).ok_or(StoreError::NoSuchMailbox)?;
            let view = u.view(info.id)?;
            let vanished = match &qresync {
                Some(q) if q.uidvalidity == view.uidvalidity => {
                    let present: Vec<u32> = view.messages.iter().map(|m| m.uid).collect();
                    condstore::vanished_earlier(u, view.id, q.modseq, q.known_uids.as_ref(), &present, view.uidnext)?
                }
                _ => Vec::new(),
            };
            Ok((view, vanished))
        })
        .await;
    let (view, vanished) = match opened {
        Ok(v) => v,
        Err(r) => return Ok(r),
    };
    let mut sel = Selected::open(view, read_only);
    // Load the shared search index and index new messages in the background, so the first
    // SEARCH/SORT/THREAD finds it ready (see `crate::index`).
    sel.search_index = s.user_store().map(|store| crate::index::prefetch(store, sel.view()));
    sel.condstore = s.condstore;
    sel.qresync = s.qresync;
    let mut out = Vec::with_capacity(512);
    let flags = sel.flags_list();
    out.extend_from_slice(format!("* FLAGS {flags}\r\n").as_bytes());
    out.extend_from_slice(format!("* {} EXISTS\r\n", sel.exists()).as_bytes());
    if !s.rev2 {
        out.extend_from_slice(b"* 0 RECENT\r\n");
        let first_unseen = sel.view().messages.iter().position(|m| !m.flags.iter().any(|f| f == "\\Seen"));
        if let Some(i) = first_unseen {
            out.extend_from_slice(format!("* OK [UNSEEN {}] First unseen\r\n", i + 1).as_bytes());
        }
    }
    out.extend_from_slice(
        format!("* OK [PERMANENTFLAGS {}] Flags permitted\r\n", permanent_flags(&flags, read_only)).as_bytes(),
    );
    out.extend_from_slice(format!("* OK [UIDVALIDITY {}] UIDs valid\r\n", sel.uidvalidity).as_bytes());
    out.extend_from_slice(format!("* OK [UIDNEXT {}] Predicted next UID\r\n", sel.view().uidnext).as_bytes());
    // Hermes always keeps mod-sequences: HIGHESTMODSEQ on every SELECT (RFC 7162 §3.1.2.1).
    out.extend_from_slice(
        format!("* OK [HIGHESTMODSEQ {}] Highest mailbox mod-sequence\r\n", sel.highest_modseq()).as_bytes(),
    );
    if s.rev2 {
        out.extend_from_slice(b"* LIST () \"/\" ");
        wire::mailbox(&mut out, &sel.name, s.utf8);
        out.extend_from_slice(b"\r\n");
    }
    // QRESYNC (RFC 7162 §3.2.5): what vanished, then the messages changed since the client's
    // mod-sequence, within its known UIDs. Ignored when UIDVALIDITY changed.
    if let Some(q) = opts.qresync.as_ref().filter(|q| q.uidvalidity == sel.uidvalidity) {
        condstore::write_vanished_earlier(&mut out, &vanished);
        let largest = sel.view().uidnext.saturating_sub(1);
        let known = q.known_uids.as_ref().map(|k| k.ranges(largest, &[]));
        for (i, m) in sel.view().messages.iter().enumerate() {
            if m.modseq <= q.modseq {
                continue;
            }
            if let Some(r) = &known {
                let j = r.partition_point(|&(_, hi)| hi < m.uid);
                if r.get(j).is_none_or(|&(lo, _)| lo > m.uid) {
                    continue;
                }
            }
            out.extend_from_slice(format!("* {} FETCH (UID {} FLAGS ", i + 1, m.uid).as_bytes());
            wire::flag_list(&mut out, &m.flags);
            out.extend_from_slice(format!(" MODSEQ ({}))\r\n", m.modseq).as_bytes());
        }
    }
    s.send(&out).await?;
    let user = s.user.as_ref().map(|u| u.address()).unwrap_or_default();
    tracing::debug!(user, mailbox = %sel.name, read_only, "selected");
    s.selected = Some(sel);
    Ok(if read_only {
        Reply::ok("EXAMINE completed").with_code("READ-ONLY")
    } else {
        Reply::ok("SELECT completed").with_code("READ-WRITE")
    })
}

fn special_use_from(attr: &str) -> Option<SpecialUse> {
    let a = attr.trim_start_matches('\\');
    [SpecialUse::Drafts, SpecialUse::Sent, SpecialUse::Trash, SpecialUse::Junk, SpecialUse::Archive]
        .into_iter()
        .find(|su| su.attribute().trim_start_matches('\\').eq_ignore_ascii_case(a))
}

pub(super) async fn create(
    s: &mut Session,
    name: &MailboxName,
    special_use: &[String],
    params: &ExtParams,
) -> Result<Reply, End> {
    if params.0.iter().any(|p| !p.name.eq_ignore_ascii_case("USE")) {
        return Ok(Reply::bad("Unsupported CREATE parameter"));
    }
    let su = match special_use {
        [] => None,
        [one] => match special_use_from(one) {
            Some(su) => Some(su),
            None => return Ok(Reply::no("Unsupported special-use attribute").with_code("USEATTR")),
        },
        _ => {
            return Ok(Reply::no("Only one special-use attribute per mailbox").with_code("USEATTR"));
        }
    };
    let mut store_name = match s.mailbox_name(name) {
        Ok(n) => n,
        Err(r) => return Ok(r),
    };
    // RFC 9051 §6.3.4: a trailing delimiter only says the client means to create children.
    while store_name.ends_with(hermes_store::DELIMITER) {
        store_name.pop();
    }
    if store_name.is_empty() {
        return Ok(Reply::no("Invalid mailbox name").with_code("CANNOT"));
    }
    if store_name == "INBOX" {
        return Ok(Reply::no("INBOX already exists").with_code("ALREADYEXISTS"));
    }
    match s.store_call("CREATE", false, move |u| u.create_mailbox(&store_name, su)).await {
        Ok(_) => Ok(Reply::ok("CREATE completed")),
        Err(r) => Ok(r),
    }
}

pub(super) async fn delete(s: &mut Session, name: &MailboxName) -> Result<Reply, End> {
    let store_name = match s.mailbox_name(name) {
        Ok(n) => n,
        Err(r) => return Ok(r),
    };
    if store_name == "INBOX" {
        return Ok(Reply::no("INBOX cannot be deleted").with_code("CANNOT"));
    }
    let deleted = s
        .store_call("DELETE", false, move |u| {
            let info = u.mailbox(&store_name).ok_or(StoreError::NoSuchMailbox)?;
            u.delete_mailbox(&store_name)?;
            Ok(info.id)
        })
        .await;
    match deleted {
        Ok(id) => {
            if s.selected.as_ref().is_some_and(|sel| sel.id == id) {
                s.selected = None;
                s.send(b"* OK [CLOSED] Selected mailbox was deleted\r\n").await?;
            }
            Ok(Reply::ok("DELETE completed"))
        }
        Err(r) => Ok(r),
    }
}

pub(super) async fn rename(
    s: &mut Session,
    from: &MailboxName,
    to: &MailboxName,
    params: &ExtParams,
) -> Result<Reply, End> {
    if !params.is_empty() {
        return Ok(Reply::bad("Unsupported RENAME parameter"));
    }
    let (from, mut to) = match (s.mailbox_name(from), s.mailbox_name(to)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(r), _) | (_, Err(r)) => return Ok(r),
    };
    while to.ends_with(hermes_store::DELIMITER) {
        to.pop();
    }
    if to == "INBOX" {
        return Ok(Reply::no("INBOX already exists").with_code("ALREADYEXISTS"));
    }
    match s.store_call("RENAME", false, move |u| u.rename_mailbox(&from, &to)).await {
        Ok(()) => Ok(Reply::ok("RENAME completed")),
        Err(r) => Ok(r),
    }
}

pub(super) async fn subscribe(s: &mut Session, name: &MailboxName, on: bool) -> Result<Reply, End> {
    let store_name = match s.mailbox_name(name) {
        Ok(n) => n,
        Err(r) => return Ok(r),
    };
    let command = if on { "SUBSCRIBE" } else { "UNSUBSCRIBE" };
    match s.store_call(command, false, move |u| u.set_subscribed(&store_name, on)).await {
        Ok(()) => Ok(Reply::ok(if on { "SUBSCRIBE completed" } else { "UNSUBSCRIBE completed" })),
        Err(r) => Ok(r),
    }
}

/// Decodes a reference or pattern from the wire; `None` if it cannot name any mailbox.
fn decode_pattern(s: &Session, text: &str) -> Option<String> {
    if s.utf8 { Some(text.to_string()) } else { p::utf7::decode(text).ok() }
}

pub(super) async fn list(s: &mut Session, cmd: ListCommand) -> Result<Reply, End> {
    if cmd.patterns.iter().any(|p| p.len() > MAX_PATTERN) || cmd.reference.len() > MAX_PATTERN {
        return Ok(Reply::bad("Pattern too long"));
    }
    if cmd.patterns.len() == 1 && cmd.patterns[0].is_empty() && cmd.selection.is_empty() {
        // RFC 9051 §6.3.9: the hierarchy delimiter and root of the reference.
        let root = cmd.reference.split(hermes_store::DELIMITER).next().unwrap_or("");
        let mut out = b"* LIST (\\Noselect) \"/\" ".to_vec();
        wire::string(&mut out, root.as_bytes(), s.utf8);
        out.extend_from_slice(b"\r\n");
        s.send(&out).await?;
        return Ok(Reply::ok("LIST completed"));
    }
    let Some(reference) = decode_pattern(s, &cmd.reference) else {
        return Ok(Reply::ok("LIST completed"));
    };
    let patterns: Vec<String> = cmd
        .patterns
        .iter()
        .filter_map(|p| decode_pattern(s, p))
        .map(|p| list::canonical_pattern(&reference, &p))
        .collect();
    let mut status_items: Option<Vec<StatusItem>> = None;
    let mut q = ListQuery { patterns, extended: cmd.extended || s.rev2, ..Default::default() };
    for sel in &cmd.selection {
        match sel {
            ListSelection::Subscribed => {
                q.select_subscribed = true;
                q.return_subscribed = true;
            }
            ListSelection::RecursiveMatch => q.recursive_match = true,
            ListSelection::SpecialUse => q.select_special_use = true,
            ListSelection::Remote => {}
        }
    }
    for r in &cmd.returns {
        match r {
            ListReturn::Subscribed => q.return_subscribed = true,
            ListReturn::Children | ListReturn::SpecialUse => {}
            ListReturn::Status(items) => status_items = Some(items.clone()),
        }
    }
    let need_deleted = status_items
        .as_ref()
        .is_some_and(|i| i.contains(&StatusItem::Deleted) || i.contains(&StatusItem::DeletedStorage));
    if status_items.as_ref().is_some_and(|i| i.contains(&StatusItem::HighestModSeq)) {
        s.enable_condstore();
    }
    let fetched = s
        .store_call("LIST", false, move |u| {
            let boxes = u.list_mailboxes();
            let subs = u.subscriptions();
            let deleted = if need_deleted { deleted_counts(u, &boxes) } else { Vec::new() };
            Ok((boxes, subs, deleted))
        })
        .await;
    let (boxes, subs, deleted) = match fetched {
        Ok(v) => v,
        Err(r) => return Ok(r),
    };
    let entries = list::list(&boxes, &subs, &q);
    let limit = s.ctx.config().limits.max_message_bytes;
    for e in entries {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(b"* LIST (");
        out.extend_from_slice(e.attributes.join(" ").as_bytes());
        out.extend_from_slice(b") \"/\" ");
        wire::mailbox(&mut out, &e.name, s.utf8);
        if e.child_info_subscribed {
            out.extend_from_slice(b" (\"CHILDINFO\" (\"SUBSCRIBED\"))");
        }
        out.extend_from_slice(b"\r\n");
        if let (Some(items), true) = (&status_items, e.selectable)
            && let Some(info) = boxes.iter().find(|b| b.name == e.name)
        {
            let del = deleted.iter().find(|(id, _)| *id == info.id).map(|(_, n)| *n);
            status_line(&mut out, info, items, del, limit, s.utf8);
        }
        s.send(&out).await?;
    }
    Ok(Reply::ok("LIST completed"))
}

pub(super) async fn lsub(s: &mut Session, reference: &str, pattern: &str) -> Result<Reply, End> {
    if pattern.len() > MAX_PATTERN || reference.len() > MAX_PATTERN {
        return Ok(Reply::bad("Pattern too long"));
    }
    if pattern.is_empty() {
        s.send(b"* LSUB (\\Noselect) \"/\" \"\"\r\n").await?;
        return Ok(Reply::ok("LSUB completed"));
    }
    let (Some(reference), Some(pattern)) = (decode_pattern(s, reference), decode_pattern(s, pattern)) else {
        return Ok(Reply::ok("LSUB completed"));
    };
    let q =
        ListQuery { patterns: vec![list::canonical_pattern(&reference, &pattern)], lsub: true, ..Default::default() };
    let fetched = s.store_call("LSUB", false, |u| Ok((u.list_mailboxes(), u.subscriptions()))).await;
    let (boxes, subs) = match fetched {
        Ok(v) => v,
        Err(r) => return Ok(r),
    };
    for e in list::list(&boxes, &subs, &q) {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(b"* LSUB (");
        out.extend_from_slice(e.attributes.join(" ").as_bytes());
        out.extend_from_slice(b") \"/\" ");
        wire::mailbox(&mut out, &e.name, s.utf8);
        out.extend_from_slice(b"\r\n");
        s.send(&out).await?;
    }
    Ok(Reply::ok("LSUB completed"))
}

fn deleted_counts(u: &hermes_store::UserStore, boxes: &[MailboxInfo]) -> Vec<(hermes_store::MailboxId, (u32, u64))> {
    boxes.iter().filter_map(|b| Some((b.id, deleted_of(&u.view(b.id).ok()?)))).collect()
}

/// Messages flagged `\Deleted` and their total RFC822.SIZE (STATUS DELETED and, RFC 9208 §4.2,
/// DELETED-STORAGE: what an EXPUNGE would free).
fn deleted_of(v: &hermes_store::MailboxView) -> (u32, u64) {
    let mut n = 0u32;
    let mut bytes = 0u64;
    for m in v.messages.iter() {
        if m.flags.iter().any(|f| f == "\\Deleted") {
            n = n.saturating_add(1);
            bytes = bytes.saturating_add(m.size);
        }
    }
    (n, bytes)
}

/// Appends `* STATUS name (items)` for `info`.
fn status_line(
    out: &mut Vec<u8>,
    info: &MailboxInfo,
    items: &[StatusItem],
    deleted: Option<(u32, u64)>,
    append_limit: u64,
    utf8: bool,
) {
    out.extend_from_slice(b"* STATUS ");
    wire::mailbox(out, &info.name, utf8);
    out.extend_from_slice(b" (");
    let mut first = true;
    for item in items {
        let value: u64 = match item {
            StatusItem::Messages => u64::from(info.messages),
            StatusItem::UidNext => u64::from(info.uidnext),
            StatusItem::UidValidity => u64::from(info.uidvalidity),
            StatusItem::Unseen => u64::from(info.unseen),
            StatusItem::Deleted => u64::from(deleted.map_or(0, |d| d.0)),
            StatusItem::DeletedStorage => deleted.map_or(0, |d| d.1),
            StatusItem::Size => info.size_bytes,
            StatusItem::Recent => 0,
            StatusItem::HighestModSeq => info.highest_modseq,
            StatusItem::AppendLimit => append_limit,
        };
        if !first {
            out.push(b' ');
        }
        first = false;
        out.extend_from_slice(format!("{} {}", item.as_str(), value).as_bytes());
    }
    out.extend_from_slice(b")\r\n");
}

pub(super) async fn status(s: &mut Session, name: &MailboxName, items: &[StatusItem]) -> Result<Reply, End> {
    let store_name = match s.mailbox_name(name) {
        Ok(n) => n,
        Err(r) => return Ok(r),
    };
    let need_deleted = items.contains(&StatusItem::Deleted) || items.contains(&StatusItem::DeletedStorage);
    if items.contains(&StatusItem::HighestModSeq) {
        s.enable_condstore();
    }
    let fetched = s
        .store_call("STATUS", false, move |u| {
            let info = u.mailbox(&store_name).ok_or(StoreError::NoSuchMailbox)?;
            let deleted = if need_deleted { Some(deleted_of(&u.view(info.id)?)) } else { None };
            Ok((info, deleted))
        })
        .await;
    let (info, deleted) = match fetched {
        Ok(v) => v,
        Err(r) => return Ok(r),
    };
    let mut out = Vec::with_capacity(128);
    status_line(&mut out, &info, items, deleted, s.ctx.config().limits.max_message_bytes, s.utf8);
    s.send(&out).await?;
    Ok(Reply::ok("STATUS completed"))
}
