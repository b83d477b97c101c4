//! APPEND, including MULTIAPPEND (RFC 3502), APPENDUID (RFC 4315), APPENDLIMIT (RFC 7889) and
//! literal8 messages (RFC 3516 BINARY).
//!
//! What it is: converts the parsed messages (flags, date, octets) into store messages and
//! appends them atomically: either every message of the command is stored or none is.
//! What it is not: size enforcement at the framing level (the reader refuses an over-limit
//! literal with `NO [TOOBIG]` before it is buffered); this handler re-checks anyway.
//!
//! Invariants: `OK` is sent only after the store returned, i.e. after the messages are durable;
//! a missing destination is answered `NO [TRYCREATE]`; `\Recent` and unknown `\`-flags are not
//! stored (they cannot be set by clients); a non-binary literal with NUL octets is refused
//! (RFC 9051 §4.3: only literal8 may carry NUL).

use super::reply::Reply;
use super::session::{End, Session};
use hermes_proto::imap::{self as p, AppendMessage, MailboxName};
use hermes_store::{InternalDate, NewMessage, StoreError};

/// Store spelling of a client flag; `None` for flags a client cannot set.
pub(super) fn store_flag(f: &p::Flag) -> Option<String> {
    match f {
        p::Flag::Recent | p::Flag::Extension(_) => None,
        other => Some(other.to_string()),
    }
}

/// Sorted, unique store flags.
pub(super) fn store_flags(flags: &[p::Flag]) -> Vec<String> {
    let mut v: Vec<String> = flags.iter().filter_map(store_flag).collect();
    v.sort();
    v.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
    v
}

pub(super) async fn append(s: &mut Session, name: &MailboxName, messages: Vec<AppendMessage>) -> Result<Reply, End> {
    let store_name = match s.mailbox_name(name) {
        Ok(n) => n,
        Err(r) => return Ok(r),
    };
    let max = s.ctx.config().limits.max_message_bytes;
    let mut new = Vec::with_capacity(messages.len());
    for m in messages {
        if m.data.len() as u64 > max {
            return Ok(Reply::no("Message too large").with_code("TOOBIG"));
        }
        if m.data.is_empty() {
            return Ok(Reply::no("Cannot append an empty message"));
        }
        if !m.binary && memchr::memchr(0, &m.data).is_some() {
            return Ok(Reply::no("NUL octets need a literal8 (BINARY) APPEND").with_code("UNKNOWN-CTE"));
        }
        let internal_date = m.date.map(|d| InternalDate { unix: d.unix_timestamp(), offset_minutes: d.zone_minutes });
        new.push(NewMessage { raw: m.data, flags: store_flags(&m.flags), internal_date });
    }
    let count = new.len();
    let result = s
        .store_call("APPEND", true, move |u| {
            let info = u.mailbox(&store_name).ok_or(StoreError::NoSuchMailbox)?;
            u.append(info.id, new).map(|(v, uids)| (info.id, v, uids))
        })
        .await;
    match result {
        Ok((mailbox, uidvalidity, uids)) => {
            if let Some(store) = s.user_store() {
                crate::index::ingest::stored(store, mailbox, uidvalidity, uids.clone());
            }
            tracing::debug!(messages = count, "appended");
            crate::control::Stats::add(&s.ctx.stats.messages_appended, count as u64);
            let set = p::response::sequence_set(uids.iter().copied());
            Ok(Reply::ok("APPEND completed").with_code(format!("APPENDUID {uidvalidity} {set}")))
        }
        Err(r) => Ok(r),
    }
}
