//! Checkpoints: a snapshot of one user's state as of a log sequence number.
//!
//! What it is: the encoder/decoder of the `checkpoint` file and its atomic replacement
//! (write `checkpoint.tmp`, fsync, rename over `checkpoint`, fsync the folder). Opening a user
//! loads the checkpoint, then replays the log records after its `seq`.
//! What it is not: the source of truth for derived counters: reference counts, usage, unseen
//! and sizes are recomputed from the messages on load ([`State::rebuild_derived`]).
//!
//! Invariants:
//! - A checkpoint on disk is complete or absent: a torn `checkpoint.tmp` is ignored and removed.
//! - The body is covered by a CRC32; a bad CRC or undecodable body is `StoreError::Corrupt`,
//!   never a silently empty mailbox.
//! - Decoding is bounded by the file size (counts are checked against the remaining bytes).
//! - Versions: this code writes format 2 (`HRMSCKP` 0x02: adds each mailbox's vanished floor
//!   and the retained messages of delayed expunge) and reads format 1 too. A format-1
//!   checkpoint has no retained messages; each mailbox's vanished floor is taken as its
//!   HIGHESTMODSEQ, since the expunges before it were not kept (VANISHED cannot list them).

use crate::blob::{FileId, sync_dir};
use crate::codec::{Reader, Writer};
use crate::record::{read_name, special_use_code, special_use_from};
use crate::state::{MailboxState, RetainReason, Retained, State};
use crate::{Flag, InternalDate, MailboxId, MessageMeta, StoreError, flags};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// "HRMSCKP" and format version 2 (written).
pub(crate) const MAGIC: &[u8; 8] = b"HRMSCKP\x02";
/// "HRMSCKP" and format version 1 (read only: stores written before delayed expunge).
pub(crate) const MAGIC_V1: &[u8; 8] = b"HRMSCKP\x01";
pub(crate) const FILE: &str = "checkpoint";
const TMP: &str = "checkpoint.tmp";
/// Largest checkpoint accepted: about 40 million messages' worth; a bound on the allocation.
const MAX_BYTES: u64 = 2 << 30;

/// Encodes `state` (which covers records up to `state.seq`).
pub(crate) fn encode(state: &State) -> Vec<u8> {
    let mut table: HashMap<&str, u32> = HashMap::new();
    let mut names: Vec<&str> = Vec::new();
    let all_flags = state
        .mailboxes
        .values()
        .flat_map(|mb| mb.messages.iter().map(|m| &m.flags))
        .chain(state.retained.values().map(|r| &r.flags));
    for fl in all_flags {
        for f in fl {
            if !table.contains_key(f.as_str()) {
                table.insert(f.as_str(), u32::try_from(names.len()).unwrap_or(u32::MAX));
                names.push(f.as_str());
            }
        }
    }
    let mut w = Writer::new();
    w.u64(state.seq);
    w.u64(state.modseq);
    w.u64(state.next_mailbox_id);
    w.u32(state.last_uidvalidity);
    w.len(names.len());
    for n in &names {
        w.str(n);
    }
    w.len(state.subscriptions.len());
    for s in &state.subscriptions {
        w.str(s);
    }
    w.len(state.mailboxes.len());
    for mb in state.mailboxes.values() {
        w.u64(mb.id.0);
        w.str(&mb.name);
        w.u32(mb.uidvalidity);
        w.u32(mb.uidnext);
        w.u64(mb.highest_modseq);
        w.u8(special_use_code(mb.special_use));
        w.u64(mb.vanished_floor);
        w.len(mb.messages.len());
        for (m, f) in mb.messages.iter().zip(mb.files.iter()) {
            w.u32(m.uid);
            w.u64(m.modseq);
            w.i64(m.internal_date.unix);
            w.i16(m.internal_date.offset_minutes);
            w.u64(m.size);
            w.u128(f.0);
            w.u8(u8::try_from(m.flags.len()).unwrap_or(u8::MAX));
            for fl in m.flags.iter().take(usize::from(u8::MAX)) {
                w.u32(table.get(fl.as_str()).copied().unwrap_or(0));
            }
        }
    }
    w.len(state.retained.len());
    for ((mailbox, uid), r) in &state.retained {
        w.u64(mailbox.0);
        w.str(&r.name);
        w.u32(*uid);
        w.u64(r.modseq);
        w.i64(r.at);
        w.u8(r.reason.code());
        w.i64(r.internal_date.unix);
        w.i16(r.internal_date.offset_minutes);
        w.u64(r.size);
        w.u128(r.file.0);
        w.u8(u8::try_from(r.flags.len()).unwrap_or(u8::MAX));
        for fl in r.flags.iter().take(usize::from(u8::MAX)) {
            w.u32(table.get(fl.as_str()).copied().unwrap_or(0));
        }
    }
    let body = w.into_bytes();
    let mut out = Vec::with_capacity(body.len() + 20);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decodes a checkpoint file's bytes.
pub(crate) fn decode(bytes: &[u8]) -> Result<State, StoreError> {
    let corrupt = |why: &str| StoreError::Corrupt(format!("checkpoint: {why}"));
    if bytes.len() < 20 {
        return Err(corrupt("bad header"));
    }
    let v2 = match &bytes[..8] {
        m if m == MAGIC => true,
        m if m == MAGIC_V1 => false,
        _ => return Err(corrupt("bad header")),
    };
    let mut hdr = Reader::new(&bytes[8..20]);
    let len = hdr.u64()?;
    let crc = hdr.u32()?;
    let body = &bytes[20..];
    if body.len() as u64 != len {
        return Err(corrupt("length mismatch"));
    }
    if crc32fast::hash(body) != crc {
        return Err(corrupt("CRC mismatch"));
    }
    let mut r = Reader::new(body);
    let mut st = State::new();
    st.seq = r.u64()?;
    st.modseq = r.u64()?;
    st.next_mailbox_id = r.u64()?;
    st.last_uidvalidity = r.u32()?;
    let n = r.count(4)?;
    let mut table = Vec::with_capacity(n);
    for _ in 0..n {
        let f = r.str()?;
        table.push(flags::canonical_flag(&f).ok_or_else(|| corrupt("invalid flag"))?);
    }
    let n = r.count(4)?;
    for _ in 0..n {
        st.subscriptions.insert(read_name(&mut r)?);
    }
    let n = r.count(if v2 { 37 } else { 29 })?;
    for _ in 0..n {
        let id = MailboxId(r.u64()?);
        let name = read_name(&mut r)?;
        let uidvalidity = r.u32()?;
        let uidnext = r.u32()?;
        let highest_modseq = r.u64()?;
        let special_use = special_use_from(r.u8()?)?;
        let mut mb = MailboxState::new(id, name, uidvalidity, special_use, highest_modseq);
        mb.uidnext = uidnext;
        // Format 1 kept no expunged UIDs: nothing below HIGHESTMODSEQ can be answered.
        mb.vanished_floor = if v2 { r.u64()? } else { highest_modseq };
        let count = r.count(47)?;
        let mut msgs = Vec::with_capacity(count);
        let mut files = Vec::with_capacity(count);
        let mut last_uid = 0u32;
        for _ in 0..count {
            let uid = r.u32()?;
            if uid <= last_uid {
                return Err(corrupt("messages out of UID order"));
            }
            last_uid = uid;
            let modseq = r.u64()?;
            let internal_date = InternalDate { unix: r.i64()?, offset_minutes: r.i16()? };
            let size = r.u64()?;
            files.push(FileId(r.u128()?));
            msgs.push(MessageMeta { uid, modseq, flags: read_flag_indexes(&mut r, &table)?, internal_date, size });
        }
        mb.messages = Arc::new(msgs);
        mb.files = files;
        if st.mailboxes.insert(id, mb).is_some() {
            return Err(corrupt("duplicate mailbox id"));
        }
    }
    if v2 {
        let n = r.count(68)?;
        for _ in 0..n {
            let mailbox = MailboxId(r.u64()?);
            let name = read_name(&mut r)?;
            let uid = r.u32()?;
            let modseq = r.u64()?;
            let at = r.i64()?;
            let reason = RetainReason::from_code(r.u8()?).ok_or_else(|| corrupt("unknown retain reason"))?;
            let internal_date = InternalDate { unix: r.i64()?, offset_minutes: r.i16()? };
            let size = r.u64()?;
            let file = FileId(r.u128()?);
            let flags = read_flag_indexes(&mut r, &table)?;
            let entry = Retained { name, modseq, at, reason, flags, internal_date, size, file };
            if st.retained.insert((mailbox, uid), entry).is_some() {
                return Err(corrupt("duplicate retained message"));
            }
        }
    }
    if !r.is_empty() {
        return Err(corrupt("trailing bytes"));
    }
    st.rebuild_derived();
    if st.names.len() != st.mailboxes.len() {
        return Err(corrupt("duplicate mailbox name"));
    }
    Ok(st)
}

/// A message's flags: `u8` count, then that many indexes into the flag table.
fn read_flag_indexes(r: &mut Reader<'_>, table: &[String]) -> Result<Vec<Flag>, StoreError> {
    let nf = usize::from(r.u8()?);
    let mut fl = Vec::with_capacity(nf);
    for _ in 0..nf {
        let i = r.u32()? as usize;
        fl.push(
            table.get(i).cloned().ok_or_else(|| StoreError::Corrupt("checkpoint: flag index out of range".into()))?,
        );
    }
    Ok(flags::normalize(&fl))
}

/// Loads `dir/checkpoint`, or `None` if there is none. Removes a leftover temp file.
pub(crate) fn load(dir: &Path) -> Result<Option<State>, StoreError> {
    let _ = std::fs::remove_file(dir.join(TMP));
    let path = dir.join(FILE);
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if meta.len() > MAX_BYTES {
        return Err(StoreError::Corrupt("checkpoint larger than the limit".into()));
    }
    let bytes = std::fs::read(&path)?;
    decode(&bytes).map(Some)
}

/// Atomically replaces `dir/checkpoint` with `bytes`; durable on return.
pub(crate) fn store(dir: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = dir.join(TMP);
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(FILE))?;
    sync_dir(dir)?;
    Ok(())
}
