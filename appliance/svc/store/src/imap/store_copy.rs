//! Commands that change messages of the selected mailbox: STORE, COPY, MOVE (RFC 6851),
//! EXPUNGE, UID EXPUNGE (RFC 4315) and CLOSE.
//!
//! What it is: the handlers; each resolves its message set against the session's MSN map,
//! calls the store on the blocking pool and writes the command's own untagged responses.
//! What it is not: the reporting of expunges (the session's post-command sync writes the
//! `EXPUNGE` responses, so our own and other sessions' expunges are reported the same way).
//!
//! Invariants:
//! - A read-only (EXAMINEd) mailbox is never changed: STORE, EXPUNGE and MOVE answer `NO`, and
//!   CLOSE does not expunge.
//! - STORE without `.SILENT` answers one FETCH per message of the set (RFC 9051 §6.4.6) and
//!   marks the changes it reported so the next sync does not repeat them. With CONDSTORE the
//!   FETCH carries MODSEQ (a silent STORE then still reports MODSEQ of what it changed), and
//!   `UNCHANGEDSINCE` failures end `OK [MODIFIED set]` (RFC 7162 §3.1.3).
//! - COPYUID pairs source and destination UIDs in source UID order (RFC 4315 §3); MOVE sends it
//!   in an untagged `OK` before the `EXPUNGE` responses (RFC 6851 §4.3).

use super::append::store_flags;
use super::reply::Reply;
use super::session::{End, Session};
use super::sync::InvalidMsn;
use hermes_proto::imap::{self as p, MailboxName, SequenceSet, StoreAction, StoreCommand};
use hermes_store::{FlagOp, StoreError};
use std::collections::HashMap;

fn invalid_msn(_: InvalidMsn) -> Reply {
    Reply::bad("Invalid message sequence number")
}

pub(super) async fn store(s: &mut Session, cmd: StoreCommand) -> Result<Reply, End> {
    if cmd.unchanged_since.is_some() {
        s.enable_condstore();
    }
    let condstore = s.condstore;
    let Some(sel) = s.selected.as_ref() else {
        return Ok(Reply::bad("No mailbox selected"));
    };
    if !cmd.modifiers.is_empty() {
        return Ok(Reply::bad("Unsupported STORE modifier"));
    }
    if sel.read_only {
        return Ok(Reply::no("Mailbox is read-only"));
    }
    let targets = match sel.resolve(&cmd.set, cmd.uid) {
        Ok(t) => t,
        Err(e) => return Ok(invalid_msn(e)),
    };
    let live: Vec<(u32, u32)> = targets.iter().copied().filter(|&(_, uid)| sel.meta(uid).is_some()).collect();
    if live.is_empty() {
        return Ok(Reply::ok("STORE completed"));
    }
    let uids: Vec<u32> = live.iter().map(|&(_, u)| u).collect();
    let op = match cmd.action {
        StoreAction::Add => FlagOp::Add,
        StoreAction::Remove => FlagOp::Remove,
        StoreAction::Replace => FlagOp::Replace,
    };
    let flags = store_flags(&cmd.flags);
    let id = sel.id;
    let unchanged_since = cmd.unchanged_since;
    let update =
        match s.store_call("STORE", false, move |u| u.store_flags(id, &uids, op, &flags, unchanged_since)).await {
            Ok(u) => u,
            Err(r) => return Ok(r),
        };
    let changed: HashMap<u32, (Vec<String>, u64)> =
        update.changed.into_iter().map(|(uid, flags, modseq)| (uid, (flags, modseq))).collect();
    let mut out = Vec::new();
    if let Some(sel) = s.selected.as_mut() {
        for (uid, (_, modseq)) in &changed {
            sel.note_reported(*uid, *modseq);
        }
        for &(msn, uid) in &live {
            if update.modified.contains(&uid) {
                continue;
            }
            let (flags, modseq) = match changed.get(&uid) {
                Some((f, m)) => (f.clone(), *m),
                None => match sel.meta(uid) {
                    Some(m) => (m.flags.clone(), m.modseq),
                    None => continue,
                },
            };
            if cmd.silent {
                // RFC 7162 §3.1.3: with CONDSTORE, a silent STORE still reports the new
                // MODSEQ of each message it changed.
                if condstore && changed.contains_key(&uid) {
                    out.extend_from_slice(format!("* {msn} FETCH (").as_bytes());
                    if cmd.uid {
                        out.extend_from_slice(format!("UID {uid} ").as_bytes());
                    }
                    out.extend_from_slice(format!("MODSEQ ({modseq}))\r\n").as_bytes());
                }
                continue;
            }
            out.extend_from_slice(format!("* {msn} FETCH (FLAGS ({})", flags.join(" ")).as_bytes());
            if cmd.uid {
                out.extend_from_slice(format!(" UID {uid}").as_bytes());
            }
            if condstore {
                out.extend_from_slice(format!(" MODSEQ ({modseq})").as_bytes());
            }
            out.extend_from_slice(b")\r\n");
        }
    }
    s.send(&out).await?;
    if !update.modified.is_empty() {
        let mut modified = update.modified.clone();
        if !cmd.uid
            && let Some(sel) = s.selected.as_ref()
        {
            modified = modified.iter().filter_map(|&u| sel.msn_of(u)).collect();
        }
        modified.sort_unstable();
        let set = p::response::sequence_set(modified);
        return Ok(Reply::ok("Conditional STORE failed for some messages").with_code(format!("MODIFIED {set}")));
    }
    Ok(Reply::ok("STORE completed"))
}

pub(super) async fn copy_move(
    s: &mut Session,
    uid: bool,
    set: &SequenceSet,
    dest: &MailboxName,
    is_move: bool,
) -> Result<Reply, End> {
    let command = match (uid, is_move) {
        (false, false) => "COPY",
        (true, false) => "UID COPY",
        (false, true) => "MOVE",
        (true, true) => "UID MOVE",
    };
    let Some(sel) = s.selected.as_ref() else {
        return Ok(Reply::bad("No mailbox selected"));
    };
    if is_move && sel.read_only {
        return Ok(Reply::no("Mailbox is read-only"));
    }
    let targets = match sel.resolve(set, uid) {
        Ok(t) => t,
        Err(e) => return Ok(invalid_msn(e)),
    };
    let ghosts = targets.iter().any(|&(_, u)| sel.meta(u).is_none());
    let uids: Vec<u32> = targets.iter().map(|&(_, u)| u).filter(|&u| sel.meta(u).is_some()).collect();
    let dest_name = match s.mailbox_name(dest) {
        Ok(n) => n,
        Err(r) => return Ok(r),
    };
    if ghosts {
        // RFC 9051 §6.4.7: the copy must be all or nothing.
        return Ok(Reply::no("Some of the requested messages no longer exist").with_code("EXPUNGEISSUED"));
    }
    let from = sel.id;
    let result = s
        .store_call(command, true, move |u| {
            let to = u.mailbox(&dest_name).ok_or(StoreError::NoSuchMailbox)?;
            if uids.is_empty() {
                return Ok(None);
            }
            if is_move { u.move_messages(from, &uids, to.id) } else { u.copy(from, &uids, to.id) }.map(Some)
        })
        .await;
    let result = match result {
        Ok(r) => r,
        Err(r) => return Ok(r),
    };
    let code = result.filter(|r| !r.pairs.is_empty()).map(|r| {
        let src = p::response::sequence_set(r.pairs.iter().map(|&(a, _)| a));
        let dst = p::response::sequence_set(r.pairs.iter().map(|&(_, b)| b));
        format!("COPYUID {} {src} {dst}", r.uidvalidity)
    });
    if is_move {
        if let Some(code) = code {
            s.send(format!("* OK [{code}] Moved\r\n").as_bytes()).await?;
        }
        return Ok(Reply::ok("MOVE completed"));
    }
    Ok(match code {
        Some(code) => Reply::ok("COPY completed").with_code(code),
        None => Reply::ok("COPY completed"),
    })
}

pub(super) async fn expunge(s: &mut Session, uid_set: Option<&SequenceSet>) -> Result<Reply, End> {
    let Some(sel) = s.selected.as_ref() else {
        return Ok(Reply::bad("No mailbox selected"));
    };
    if sel.read_only {
        return Ok(Reply::no("Mailbox is read-only"));
    }
    let uids: Option<Vec<u32>> = match uid_set {
        Some(set) => match sel.resolve(set, true) {
            Ok(t) => Some(t.into_iter().map(|(_, u)| u).collect()),
            Err(e) => return Ok(invalid_msn(e)),
        },
        None => None,
    };
    if uids.as_ref().is_some_and(|u| u.is_empty()) {
        return Ok(Reply::ok("EXPUNGE completed"));
    }
    let id = sel.id;
    match s.store_call("EXPUNGE", false, move |u| u.expunge(id, uids.as_deref())).await {
        Ok(gone) => {
            tracing::debug!(expunged = gone.len(), "expunged");
            Ok(Reply::ok("EXPUNGE completed"))
        }
        Err(r) => Ok(r),
    }
}

pub(super) async fn close(s: &mut Session) -> Result<Reply, End> {
    let Some(sel) = s.selected.take() else {
        return Ok(Reply::bad("No mailbox selected"));
    };
    if sel.read_only {
        return Ok(Reply::ok("CLOSE completed"));
    }
    let id = sel.id;
    match s.store_call("CLOSE", false, move |u| u.expunge(id, None)).await {
        Ok(_) => Ok(Reply::ok("CLOSE completed")),
        // The mailbox is closed either way (RFC 9051 §6.4.1); a vanished mailbox is no error.
        Err(r) if r.code.as_deref() == Some("NONEXISTENT") => Ok(Reply::ok("CLOSE completed")),
        Err(r) => Ok(r),
    }
}
