//! SEARCH and UID SEARCH (RFC 9051 §6.4.4, RFC 3501 §6.4.4), with ESEARCH results (RFC 4731,
//! always for IMAP4rev2 sessions), SEARCHRES `SAVE`/`$` (RFC 5182), WITHIN (RFC 5032) and
//! CONDSTORE's MODSEQ key and result (RFC 7162 §3.1.5). [`matching`] is shared with SORT and
//! THREAD, which select their messages with the same search program.
//!
//! What it is: compiles the parsed keys into a [`Key`] tree (sequence sets resolved against the
//! session's MSN map, strings decoded from the command's charset and lower-cased once),
//! evaluates it over the messages the client knows, on the blocking pool, and formats
//! `* SEARCH` or `* ESEARCH`. Keys that need the message (header, address, body, text and
//! sent-date keys) are answered from the mailbox's shared search index ([`crate::index`]);
//! messages the index lacks or cannot answer for are read and analysed on the spot.
//! What it is not: the text analysis itself — `hermes_proto::mime::SearchableMessage` decodes
//! headers and bodies in any charset and matches case-insensitively; the index keeps what it
//! produces.
//!
//! Invariants:
//! - The result never depends on the index: evaluation is three-valued (an index entry may
//!   answer "unknown", see `index::entry`), and any message whose answer is unknown, or that
//!   has no entry, is read and matched exactly as without an index (Kleene logic: `NOT`, `OR`
//!   and `AND` of known answers are known only when they are determined).
//! - Messages are read only when the index cannot answer, one at a time, so memory stays
//!   bounded by one message besides the index.
//! - A command indexes at most [`crate::index::SYNC_INDEX_LIMIT`] messages itself; beyond that
//!   the background catch-up runs and this command reads the rest.
//! - Only `US-ASCII` and `UTF-8` are accepted as CHARSET; others get `NO [BADCHARSET (...)]`.
//! - Expunged-but-unreported messages never match (the result only names live messages).

use super::reply::Reply;
use super::session::{End, Session};
use super::wire;
use crate::index::{self, Entry, MailboxIndex, Needle};
use hermes_proto::imap::{Date, SearchCommand, SearchKey, SearchReturn, SequenceSet};
use hermes_proto::mime::SearchableMessage;
use hermes_store::{MailboxId, MessageMeta, StoreError, UserStore};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Comparison of a day number with a key's date.
#[derive(Debug, Clone, Copy)]
enum Cmp {
    Before,
    On,
    Since,
}

impl Cmp {
    fn test(self, day: i64, key: i64) -> bool {
        match self {
            Cmp::Before => day < key,
            Cmp::On => day == key,
            Cmp::Since => day >= key,
        }
    }
}

/// A compiled search key.
#[derive(Debug, Clone)]
enum Key {
    Const(bool),
    Flag(&'static str, bool),
    Keyword(String, bool),
    Internal(Cmp, i64),
    Sent(Cmp, i64),
    Larger(u64),
    Smaller(u64),
    ModSeq(u64),
    /// Internal date at least this Unix time (YOUNGER) / before it (OLDER).
    NewerThan(i64),
    OlderThan(i64),
    /// Sorted, merged ranges of MSNs.
    Msns(Vec<(u32, u32)>),
    /// Sorted, merged ranges of UIDs.
    Uids(Vec<(u32, u32)>),
    Header(String, Needle),
    Address(&'static str, Needle),
    Body(Needle),
    Text(Needle),
    Not(Box<Key>),
    Or(Box<Key>, Box<Key>),
    And(Vec<Key>),
}

impl Key {
    fn needs_message(&self) -> bool {
        match self {
            Key::Header(..) | Key::Address(..) | Key::Body(_) | Key::Text(_) | Key::Sent(..) => true,
            Key::Not(k) => k.needs_message(),
            Key::Or(a, b) => a.needs_message() || b.needs_message(),
            Key::And(v) => v.iter().any(Key::needs_message),
            _ => false,
        }
    }

    /// Whether the message matches: `Some(answer)`, or `None` when `src` is an index entry
    /// that cannot tell (the caller then matches the message itself). With [`Source::Scan`]
    /// or [`Source::Nothing`] the answer is always known.
    fn eval(&self, msn: u32, m: &MessageMeta, src: Source<'_>) -> Option<bool> {
        let has = |f: &str| m.flags.iter().any(|x| x.eq_ignore_ascii_case(f));
        Some(match self {
            Key::Const(b) => *b,
            Key::Flag(f, want) => has(f) == *want,
            Key::Keyword(k, want) => has(k) == *want,
            Key::Internal(c, day) => c.test(wire::internal_day(m.internal_date), *day),
            Key::Sent(c, day) => {
                let sent = match src {
                    Source::Nothing => None,
                    Source::Scan(s) => s.sent_date(),
                    Source::Index(e) => e.sent_date(),
                };
                let sent_day = match sent {
                    Some((unix, off)) => unix.saturating_add(i64::from(off)).div_euclid(86_400),
                    // No usable Date field: fall back to the internal date (as Dovecot does).
                    None => wire::internal_day(m.internal_date),
                };
                c.test(sent_day, *day)
            }
            Key::Larger(n) => m.size > *n,
            Key::Smaller(n) => m.size < *n,
            Key::ModSeq(n) => m.modseq >= *n,
            Key::NewerThan(t) => m.internal_date.unix >= *t,
            Key::OlderThan(t) => m.internal_date.unix < *t,
            Key::Msns(r) => in_ranges(r, msn),
            Key::Uids(r) => in_ranges(r, m.uid),
            Key::Header(name, n) => match src {
                Source::Nothing => false,
                Source::Scan(s) => s.header_contains(name, &n.raw),
                Source::Index(e) => return e.header_contains(name, n),
            },
            Key::Address(field, n) => match src {
                Source::Nothing => false,
                Source::Scan(s) => s.address_contains(field, &n.raw),
                Source::Index(e) => return e.address_contains(field, n),
            },
            Key::Body(n) => match src {
                Source::Nothing => false,
                Source::Scan(s) => s.body_contains(&n.raw),
                Source::Index(e) => return e.body_contains(n),
            },
            Key::Text(n) => match src {
                Source::Nothing => false,
                Source::Scan(s) => s.text_contains(&n.raw),
                Source::Index(e) => return e.text_contains(n),
            },
            Key::Not(k) => return k.eval(msn, m, src).map(|b| !b),
            Key::Or(a, b) => {
                return match (a.eval(msn, m, src), b.eval(msn, m, src)) {
                    (Some(true), _) | (_, Some(true)) => Some(true),
                    (Some(false), Some(false)) => Some(false),
                    _ => None,
                };
            }
            Key::And(v) => {
                let mut unknown = false;
                for k in v {
                    match k.eval(msn, m, src) {
                        Some(false) => return Some(false),
                        Some(true) => {}
                        None => unknown = true,
                    }
                }
                return if unknown { None } else { Some(true) };
            }
        })
    }
}

/// What text keys are matched against.
#[derive(Debug, Clone, Copy)]
enum Source<'a> {
    /// Nothing: the program has no text key (text keys, if evaluated, do not match).
    Nothing,
    /// The message, analysed by the scan: every answer is known.
    Scan(&'a SearchableMessage),
    /// The message's index entry: answers may be unknown.
    Index(&'a Entry),
}

fn in_ranges(ranges: &[(u32, u32)], n: u32) -> bool {
    let i = ranges.partition_point(|&(_, hi)| hi < n);
    ranges.get(i).is_some_and(|&(lo, _)| lo <= n)
}

struct Compiler<'a> {
    utf8_only: bool,
    now: i64,
    /// Largest MSN and UID the client knows, and the saved result in both numberings.
    largest_msn: u32,
    largest_uid: u32,
    saved_msn: &'a [(u32, u32)],
    saved_uid: &'a [(u32, u32)],
}

impl Compiler<'_> {
    fn text(&self, bytes: &[u8]) -> Result<String, Reply> {
        if self.utf8_only || bytes.is_ascii() {
            String::from_utf8(bytes.to_vec())
                .map_err(|_| Reply::no("Search string is not valid UTF-8").with_code("BADCHARSET (US-ASCII UTF-8)"))
        } else {
            Err(Reply::no("Search string is not valid UTF-8").with_code("BADCHARSET (US-ASCII UTF-8)"))
        }
    }

    fn needle(&self, bytes: &[u8]) -> Result<Needle, Reply> {
        Ok(Needle::new(self.text(bytes)?))
    }

    fn day(d: &Date) -> i64 {
        d.days_since_epoch()
    }

    fn compile(&self, k: &SearchKey) -> Result<Key, Reply> {
        use SearchKey as S;
        Ok(match k {
            S::All => Key::Const(true),
            S::Answered => Key::Flag("\\Answered", true),
            S::Unanswered => Key::Flag("\\Answered", false),
            S::Deleted => Key::Flag("\\Deleted", true),
            S::Undeleted => Key::Flag("\\Deleted", false),
            S::Draft => Key::Flag("\\Draft", true),
            S::Undraft => Key::Flag("\\Draft", false),
            S::Flagged => Key::Flag("\\Flagged", true),
            S::Unflagged => Key::Flag("\\Flagged", false),
            S::Seen => Key::Flag("\\Seen", true),
            S::Unseen => Key::Flag("\\Seen", false),
            // Hermes keeps no \Recent (RFC 9051 removed it): nothing is recent.
            S::Recent | S::New => Key::Const(false),
            S::Old | S::Unrecent => Key::Const(true),
            S::Keyword(k) => Key::Keyword(k.clone(), true),
            S::Unkeyword(k) => Key::Keyword(k.clone(), false),
            S::Before(d) => Key::Internal(Cmp::Before, Self::day(d)),
            S::On(d) => Key::Internal(Cmp::On, Self::day(d)),
            S::Since(d) => Key::Internal(Cmp::Since, Self::day(d)),
            S::SentBefore(d) => Key::Sent(Cmp::Before, Self::day(d)),
            S::SentOn(d) => Key::Sent(Cmp::On, Self::day(d)),
            S::SentSince(d) => Key::Sent(Cmp::Since, Self::day(d)),
            S::Larger(n) => Key::Larger(*n),
            S::Smaller(n) => Key::Smaller(*n),
            S::ModSeq { modseq, .. } => Key::ModSeq(*modseq),
            S::Older(secs) => Key::OlderThan(self.now - i64::from(*secs)),
            S::Younger(secs) => Key::NewerThan(self.now - i64::from(*secs)),
            S::SequenceSet(set) => Key::Msns(self.ranges(set, false)),
            S::Uid(set) => Key::Uids(self.ranges(set, true)),
            S::Bcc(s) => Key::Address("bcc", self.needle(s)?),
            S::Cc(s) => Key::Address("cc", self.needle(s)?),
            S::From(s) => Key::Address("from", self.needle(s)?),
            S::To(s) => Key::Address("to", self.needle(s)?),
            S::Subject(s) => Key::Header("subject".into(), self.needle(s)?),
            S::Header(name, s) => Key::Header(name.clone(), self.needle(s)?),
            S::Body(s) => Key::Body(self.needle(s)?),
            S::Text(s) => Key::Text(self.needle(s)?),
            S::Not(k) => Key::Not(Box::new(self.compile(k)?)),
            S::Or(a, b) => Key::Or(Box::new(self.compile(a)?), Box::new(self.compile(b)?)),
            S::And(v) => Key::And(v.iter().map(|k| self.compile(k)).collect::<Result<_, _>>()?),
        })
    }

    fn ranges(&self, set: &SequenceSet, uid: bool) -> Vec<(u32, u32)> {
        if uid { set.ranges(self.largest_uid, self.saved_uid) } else { set.ranges(self.largest_msn, self.saved_msn) }
    }
}

fn saved_ranges(nums: impl Iterator<Item = u32>) -> Vec<(u32, u32)> {
    let mut v: Vec<u32> = nums.collect();
    v.sort_unstable();
    let mut r: Vec<(u32, u32)> = Vec::new();
    for n in v {
        match r.last_mut() {
            Some(last) if last.1.checked_add(1) == Some(n) || last.1 == n => last.1 = n,
            _ => r.push((n, n)),
        }
    }
    r
}

/// Whether a search program uses the MODSEQ key anywhere (RFC 7162 §3.1.5: the result then
/// carries the highest mod-sequence of the messages found, and CONDSTORE becomes enabled).
pub(super) fn uses_modseq(keys: &[SearchKey]) -> bool {
    let mut stack: Vec<&SearchKey> = keys.iter().collect();
    while let Some(k) = stack.pop() {
        match k {
            SearchKey::ModSeq { .. } => return true,
            SearchKey::Not(k) => stack.push(k),
            SearchKey::Or(a, b) => {
                stack.push(a);
                stack.push(b);
            }
            SearchKey::And(v) => stack.extend(v.iter()),
            _ => {}
        }
    }
    false
}

/// The messages of the selected mailbox that the client knows, still exist and match
/// `criteria` (ANDed), as ascending (msn, uid) pairs. `charset` is the command's CHARSET
/// (`None`: none given). Evaluated on the blocking pool; a program that is only `ALL` is
/// answered from the session's map without touching the store.
pub(super) async fn matching(
    s: &Session,
    charset: Option<&str>,
    criteria: &[SearchKey],
) -> Result<Vec<(u32, u32)>, Reply> {
    let Some(sel) = s.selected.as_ref() else {
        return Err(Reply::bad("No mailbox selected"));
    };
    let utf8_only = match charset {
        None => false,
        Some(c) if c.eq_ignore_ascii_case("UTF-8") || c.eq_ignore_ascii_case("UTF8") => true,
        Some(c) if c.eq_ignore_ascii_case("US-ASCII") => false,
        Some(_) => {
            return Err(Reply::no("Unsupported charset").with_code("BADCHARSET (US-ASCII UTF-8)"));
        }
    };
    // A search without CHARSET may still carry UTF-8 (IMAP4rev2 and UTF8=ACCEPT clients do).
    let utf8_only = utf8_only || charset.is_none();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let saved_uid = saved_ranges(sel.saved_uids().iter().copied());
    let saved_msn = saved_ranges(sel.saved_uids().iter().filter_map(|&u| sel.msn_of(u)));
    let compiler = Compiler {
        utf8_only,
        now: i64::try_from(now).unwrap_or(i64::MAX),
        largest_msn: sel.exists(),
        largest_uid: sel.uids().last().copied().unwrap_or(0),
        saved_msn: &saved_msn,
        saved_uid: &saved_uid,
    };
    let keys = criteria.iter().map(|k| compiler.compile(k)).collect::<Result<Vec<_>, _>>()?;
    let live =
        sel.uids().iter().enumerate().filter_map(|(i, &uid)| Some((u32::try_from(i + 1).ok()?, uid, sel.meta(uid)?)));
    if keys.iter().all(|k| matches!(k, Key::Const(true))) {
        return Ok(live.map(|(msn, uid, _)| (msn, uid)).collect());
    }
    let key = Key::And(keys);
    // The messages the client knows and that still exist, with their MSNs.
    let candidates: Vec<(u32, MessageMeta)> = live.map(|(msn, _, meta)| (msn, meta.clone())).collect();
    let id = sel.id;
    let Some(store) = s.user_store() else {
        return Err(Reply::bad("Command not allowed before login"));
    };
    let ix = key.needs_message().then(|| index::for_mailbox(&store, id, sel.uidvalidity));
    let live: Vec<u32> = sel.view().messages.iter().map(|m| m.uid).collect();
    let found = tokio::task::spawn_blocking(move || match ix {
        Some(ix) => evaluate_indexed(&store, &ix, &key, &candidates, live),
        None => evaluate(&store, id, &key, &candidates),
    })
    .await;
    match found {
        Ok(Ok(f)) => Ok(f),
        Ok(Err(e)) => Err(Reply::from_store(&e, "SEARCH", false)),
        Err(e) => {
            tracing::error!(error = %e, "search task failed");
            Err(Reply::server_bug())
        }
    }
}

pub(super) async fn search(s: &mut Session, tag: &str, cmd: SearchCommand) -> Result<Reply, End> {
    let found = match matching(s, cmd.charset.as_deref(), &cmd.criteria).await {
        Ok(f) => f,
        Err(r) => return Ok(r),
    };
    // RFC 7162 §3.1.5: MODSEQ in the program enables CONDSTORE and reports the highest
    // mod-sequence of the messages found.
    let modseq = if uses_modseq(&cmd.criteria) {
        s.enable_condstore();
        s.selected.as_ref().and_then(|sel| found.iter().filter_map(|&(_, uid)| sel.meta(uid).map(|m| m.modseq)).max())
    } else {
        None
    };
    let nums: Vec<u32> = found.iter().map(|&(msn, uid)| if cmd.uid { uid } else { msn }).collect();

    let returns = match (&cmd.returns, s.rev2) {
        (Some(r), _) if r.is_empty() => Some(vec![SearchReturn::All]),
        (Some(r), _) => Some(r.clone()),
        (None, true) => Some(vec![SearchReturn::All]),
        (None, false) => None,
    };
    let mut out = Vec::with_capacity(64 + nums.len() * 4);
    match returns {
        None => {
            out.extend_from_slice(b"* SEARCH");
            for n in &nums {
                out.extend_from_slice(format!(" {n}").as_bytes());
            }
            if let Some(m) = modseq {
                out.extend_from_slice(format!(" (MODSEQ {m})").as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        }
        Some(r) => {
            if r.contains(&SearchReturn::Save) {
                let uids: Vec<u32> = found.iter().map(|&(_, u)| u).collect();
                let saved = saved_subset(&uids, &r);
                if let Some(sel) = s.selected.as_mut() {
                    sel.save_result(saved);
                }
            }
            let only_save = r.iter().all(|x| *x == SearchReturn::Save);
            if !only_save {
                out.extend_from_slice(b"* ESEARCH (TAG ");
                wire::string(&mut out, tag.as_bytes(), false);
                out.push(b')');
                if cmd.uid {
                    out.extend_from_slice(b" UID");
                }
                let mut sorted = nums.clone();
                sorted.sort_unstable();
                for opt in &r {
                    match opt {
                        SearchReturn::Min => {
                            if let Some(n) = sorted.first() {
                                out.extend_from_slice(format!(" MIN {n}").as_bytes());
                            }
                        }
                        SearchReturn::Max => {
                            if let Some(n) = sorted.last() {
                                out.extend_from_slice(format!(" MAX {n}").as_bytes());
                            }
                        }
                        SearchReturn::Count => out.extend_from_slice(format!(" COUNT {}", sorted.len()).as_bytes()),
                        SearchReturn::All => {
                            if !sorted.is_empty() {
                                out.extend_from_slice(b" ALL ");
                                out.extend_from_slice(
                                    hermes_proto::imap::response::sequence_set(sorted.iter().copied()).as_bytes(),
                                );
                            }
                        }
                        SearchReturn::Save => {}
                    }
                }
                if let Some(m) = modseq {
                    out.extend_from_slice(format!(" MODSEQ {m}").as_bytes());
                }
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    s.send(&out).await?;
    Ok(Reply::ok("SEARCH completed"))
}

/// What `RETURN (SAVE ...)` saves (RFC 5182 §2.1): with only MIN and/or MAX beside SAVE, just
/// the minimum and/or maximum; otherwise the whole result. `ordered` are the result's UIDs in
/// result order (ascending for SEARCH, sort order for SORT: MIN is the first, MAX the last).
/// The saved set is returned ascending.
pub(super) fn saved_subset(ordered: &[u32], returns: &[SearchReturn]) -> Vec<u32> {
    let min = returns.contains(&SearchReturn::Min);
    let max = returns.contains(&SearchReturn::Max);
    let others = returns.iter().any(|r| matches!(r, SearchReturn::All | SearchReturn::Count));
    let mut out: Vec<u32> = if (min || max) && !others {
        let mut v = Vec::new();
        if min {
            v.extend(ordered.first().copied());
        }
        if max {
            v.extend(ordered.last().copied());
        }
        v
    } else {
        ordered.to_vec()
    };
    out.sort_unstable();
    out.dedup();
    out
}

/// The scan: evaluates `key` over `candidates`, reading and analysing each message when the
/// key needs it. Always exact; the reference the index is checked against.
fn evaluate(
    store: &UserStore,
    mailbox: MailboxId,
    key: &Key,
    candidates: &[(u32, MessageMeta)],
) -> Result<Vec<(u32, u32)>, StoreError> {
    let needs_message = key.needs_message();
    let mut found = Vec::new();
    for (msn, meta) in candidates {
        let matched = if needs_message {
            scan_one(store, mailbox, key, *msn, meta)?
        } else {
            key.eval(*msn, meta, Source::Nothing) == Some(true)
        };
        if matched {
            found.push((*msn, meta.uid));
        }
    }
    Ok(found)
}

/// Reads and analyses one message and matches it (a message expunged meanwhile never matches).
fn scan_one(
    store: &UserStore,
    mailbox: MailboxId,
    key: &Key,
    msn: u32,
    meta: &MessageMeta,
) -> Result<bool, StoreError> {
    match store.read_message(mailbox, meta.uid) {
        Ok(raw) => {
            let analysed = SearchableMessage::new(&raw);
            Ok(key.eval(msn, meta, Source::Scan(&analysed)) == Some(true))
        }
        Err(StoreError::NoSuchMessage) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Candidates per thread below which the indexed evaluation runs on one thread.
const PARALLEL_EVAL_MIN: usize = 16_384;
/// Threads evaluating a large mailbox against the index (substring scans over memory).
const MAX_EVAL_THREADS: usize = 4;

/// Evaluates `key` (which needs the message) with the mailbox's shared index: indexes the
/// candidates it lacks first when they are few (else starts the background catch-up), answers
/// from the entries, and scans every message whose entry is missing or cannot answer.
/// `live` is the mailbox's current UIDs (ascending), for pruning.
fn evaluate_indexed(
    store: &Arc<UserStore>,
    ix: &Arc<MailboxIndex>,
    key: &Key,
    candidates: &[(u32, MessageMeta)],
    live: Vec<u32>,
) -> Result<Vec<(u32, u32)>, StoreError> {
    ix.ensure_loaded();
    let missing = ix.missing(candidates.iter().map(|(_, m)| m.uid));
    if missing.len() <= index::SYNC_INDEX_LIMIT {
        ix.index_uids(store, &missing)?;
    } else {
        ix.spawn_catch_up(Arc::clone(store), live);
    }
    let (mut found, unknown) = {
        let map = ix.read();
        let eval_chunk = |chunk: &[(u32, MessageMeta)]| {
            let mut found = Vec::new();
            let mut unknown = Vec::new();
            for (i, (msn, meta)) in chunk.iter().enumerate() {
                let answer = map.get(&meta.uid).and_then(|e| key.eval(*msn, meta, Source::Index(e)));
                match answer {
                    Some(true) => found.push((*msn, meta.uid)),
                    Some(false) => {}
                    None => unknown.push(i),
                }
            }
            (found, unknown)
        };
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_EVAL_THREADS)
            .min(candidates.len() / PARALLEL_EVAL_MIN)
            .max(1);
        if threads == 1 {
            let (f, u) = eval_chunk(candidates);
            (f, u.into_iter().filter_map(|i| candidates.get(i)).collect::<Vec<_>>())
        } else {
            let per = candidates.len().div_ceil(threads);
            let eval_chunk = &eval_chunk;
            let parts: Vec<_> = std::thread::scope(|scope| {
                let handles: Vec<_> = candidates.chunks(per).map(|c| scope.spawn(move || (c, eval_chunk(c)))).collect();
                handles.into_iter().map(|h| h.join()).collect()
            });
            let mut found = Vec::new();
            let mut unknown = Vec::new();
            for part in parts {
                let Ok((chunk, (f, u))) = part else {
                    return Err(StoreError::Io(std::io::Error::other("search thread failed")));
                };
                found.extend(f);
                unknown.extend(u.into_iter().filter_map(|i| chunk.get(i)));
            }
            (found, unknown)
        }
    };
    if !unknown.is_empty() {
        for (msn, meta) in &unknown {
            if scan_one(store, ix.mailbox(), key, *msn, meta)? {
                found.push((*msn, meta.uid));
            }
        }
        found.sort_unstable();
    }
    Ok(found)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;
    use hermes_store::InternalDate;

    fn meta(uid: u32, flags: &[&str], size: u64, unix: i64) -> MessageMeta {
        MessageMeta {
            uid,
            modseq: u64::from(uid),
            flags: flags.iter().map(|s| s.to_string()).collect(),
            internal_date: InternalDate { unix, offset_minutes: 0 },
            size,
        }
    }

    fn compiler() -> Compiler<'static> {
        Compiler { utf8_only: true, now: 1_000_000, largest_msn: 3, largest_uid: 30, saved_msn: &[], saved_uid: &[] }
    }

    #[test]
    fn flags_sizes_dates_and_logic() {
        let c = compiler();
        let m = meta(10, &["\\Seen", "$Junk"], 500, 86_400 * 3 + 5);
        let k = |key: SearchKey| c.compile(&key).unwrap().eval(1, &m, Source::Nothing) == Some(true);
        assert!(k(SearchKey::Seen));
        assert!(!k(SearchKey::Unseen));
        assert!(k(SearchKey::Keyword("$junk".into())));
        assert!(k(SearchKey::Larger(499)));
        assert!(!k(SearchKey::Smaller(500)));
        assert!(k(SearchKey::On(Date::new(1970, 1, 4).unwrap())));
        assert!(k(SearchKey::Before(Date::new(1970, 1, 5).unwrap())));
        assert!(!k(SearchKey::Since(Date::new(1970, 1, 5).unwrap())));
        assert!(k(SearchKey::Or(Box::new(SearchKey::Deleted), Box::new(SearchKey::Seen))));
        assert!(!k(SearchKey::Not(Box::new(SearchKey::All))));
        assert!(!k(SearchKey::Recent));
    }

    #[test]
    fn text_keys_use_the_message() {
        let c = compiler();
        let m = meta(1, &[], 10, 0);
        let msg = SearchableMessage::new(b"From: Alice <alice@example.org>\r\nSubject: Quarterly report\r\nDate: Mon, 4 Jan 1971 10:00:00 +0000\r\n\r\nThe numbers are in.\r\n");
        let k = |key: SearchKey| {
            let key = c.compile(&key).unwrap();
            assert!(key.needs_message());
            key.eval(1, &m, Source::Scan(&msg)) == Some(true)
        };
        assert!(k(SearchKey::Subject(b"quarterly".to_vec())));
        assert!(k(SearchKey::From(b"alice@example".to_vec())));
        assert!(k(SearchKey::Body(b"NUMBERS".to_vec())));
        assert!(k(SearchKey::Text(b"report".to_vec())));
        assert!(!k(SearchKey::Body(b"report".to_vec())));
        assert!(k(SearchKey::SentOn(Date::new(1971, 1, 4).unwrap())));
    }

    #[test]
    fn save_with_min_max_saves_only_those() {
        use SearchReturn as R;
        assert_eq!(saved_subset(&[3, 1, 7], &[R::Save]), vec![1, 3, 7]);
        assert_eq!(saved_subset(&[3, 1, 7], &[R::Save, R::Min]), vec![3]);
        assert_eq!(saved_subset(&[3, 1, 7], &[R::Max, R::Save]), vec![7]);
        assert_eq!(saved_subset(&[3, 1, 7], &[R::Min, R::Max, R::Save]), vec![3, 7]);
        assert_eq!(saved_subset(&[3, 1, 7], &[R::Min, R::Count, R::Save]), vec![1, 3, 7]);
        assert!(saved_subset(&[], &[R::Min, R::Save]).is_empty());
    }

    /// Search programs mixing text keys with NOT/OR and metadata keys.
    fn programs() -> Vec<Vec<SearchKey>> {
        let needles = crate::index::testgen::needles();
        let mut v = Vec::new();
        for (i, n) in needles.iter().enumerate() {
            let b = n.as_bytes().to_vec();
            let other = needles[(i * 7 + 3) % needles.len()].as_bytes().to_vec();
            v.push(vec![SearchKey::Text(b.clone())]);
            v.push(vec![SearchKey::Body(b.clone())]);
            v.push(vec![SearchKey::Subject(b.clone())]);
            v.push(vec![SearchKey::From(b.clone())]);
            v.push(vec![SearchKey::To(b.clone()), SearchKey::Seen]);
            v.push(vec![SearchKey::Cc(b.clone())]);
            v.push(vec![SearchKey::Bcc(b.clone())]);
            v.push(vec![SearchKey::Header("X-Label".into(), b.clone())]);
            v.push(vec![SearchKey::Not(Box::new(SearchKey::Text(b.clone())))]);
            v.push(vec![SearchKey::Or(Box::new(SearchKey::Body(b.clone())), Box::new(SearchKey::From(other.clone())))]);
            v.push(vec![SearchKey::Not(Box::new(SearchKey::Or(
                Box::new(SearchKey::Text(other)),
                Box::new(SearchKey::Larger(2000)),
            )))]);
        }
        v.push(vec![SearchKey::SentSince(Date::new(2024, 1, 10).unwrap())]);
        v.push(vec![SearchKey::SentOn(Date::new(2024, 1, 3).unwrap())]);
        v
    }

    fn compile_all(c: &Compiler<'_>, program: &[SearchKey]) -> Key {
        Key::And(program.iter().map(|k| c.compile(k).unwrap()).collect())
    }

    fn corpus(n: usize) -> (tempfile::TempDir, hermes_store::Store, Arc<UserStore>, MailboxId) {
        let dir = tempfile::tempdir().unwrap();
        let store = hermes_store::Store::open(dir.path(), hermes_store::StoreConfig::default()).unwrap();
        let user = store.user(&hermes_core::directory::UserId::parse(&format!("{:032x}", 9)).unwrap()).unwrap();
        let inbox = user.mailbox("INBOX").unwrap().id;
        let batch: Vec<hermes_store::NewMessage> = (0..n)
            .map(|i| hermes_store::NewMessage {
                raw: crate::index::testgen::message(5, i),
                flags: if i % 3 == 0 { vec!["\\Seen".into()] } else { Vec::new() },
                internal_date: None,
            })
            .collect();
        user.append(inbox, batch).unwrap();
        (dir, store, user, inbox)
    }

    fn candidates(user: &UserStore, inbox: MailboxId) -> Vec<(u32, MessageMeta)> {
        let view = user.view(inbox).unwrap();
        view.messages.iter().enumerate().map(|(i, m)| (i as u32 + 1, m.clone())).collect()
    }

    /// The index returns exactly the scan's results, for a corpus of varied messages and many
    /// programs, whether the index is complete, partial (a catch-up in progress) or empty.
    #[test]
    fn indexed_search_equals_the_scan() {
        let (_dir, _store, user, inbox) = corpus(400);
        let uv = user.view(inbox).unwrap().uidvalidity;
        let c = compiler();
        let cands = candidates(&user, inbox);
        let live: Vec<u32> = cands.iter().map(|(_, m)| m.uid).collect();
        let ix = index::for_mailbox(&user, inbox, uv);
        // Half indexed: the other half is scanned (and indexed by the search, being few).
        ix.index_uids(&user, &live[..200]).unwrap();
        let programs = programs();
        for (i, p) in programs.iter().enumerate() {
            let key = compile_all(&c, p);
            let scan = evaluate(&user, inbox, &key, &cands).unwrap();
            let indexed = evaluate_indexed(&user, &ix, &key, &cands, live.clone()).unwrap();
            assert_eq!(indexed, scan, "program {i}: {p:?}");
        }
        assert!(ix.missing(live.iter().copied()).is_empty());
    }

    /// While a damaged index is being rebuilt in the background, searches stay exact.
    #[test]
    fn searches_during_a_rebuild_are_exact() {
        let (_dir, _store, user, inbox) = corpus(index::SYNC_INDEX_LIMIT + 600);
        let uv = user.view(inbox).unwrap().uidvalidity;
        let cands = candidates(&user, inbox);
        let live: Vec<u32> = cands.iter().map(|(_, m)| m.uid).collect();
        let ix = index::for_mailbox(&user, inbox, uv);
        ix.index_uids(&user, &live).unwrap();
        drop(ix);
        index::unload(&user, inbox);
        // Damage: keep a tenth of the file, so more than SYNC_INDEX_LIMIT are missing and the
        // rebuild runs in the background while the searches below scan what it has not done.
        let path = index::file_path(&user, inbox);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 10]).unwrap();
        let ix = index::for_mailbox(&user, inbox, uv);
        let c = compiler();
        let programs = programs();
        let mut rounds = 0;
        for p in programs.iter().step_by(61).take(8) {
            let key = compile_all(&c, p);
            let indexed = evaluate_indexed(&user, &ix, &key, &cands, live.clone()).unwrap();
            let scan = evaluate(&user, inbox, &key, &cands).unwrap();
            assert_eq!(indexed, scan, "{p:?}");
            rounds += 1;
        }
        assert!(rounds >= 6);
        ix.wait_idle();
        assert!(ix.missing(live.iter().copied()).is_empty(), "rebuilt");
    }

    #[test]
    fn ranges_membership() {
        let r = vec![(1, 3), (7, 7), (10, 20)];
        assert!(in_ranges(&r, 2));
        assert!(!in_ranges(&r, 5));
        assert!(in_ranges(&r, 7));
        assert!(in_ranges(&r, 20));
        assert!(!in_ranges(&r, 21));
    }
}
