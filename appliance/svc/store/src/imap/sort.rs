//! SORT and UID SORT (RFC 5256, with ESORT RETURN options of RFC 5267 and DISPLAYFROM/DISPLAYTO
//! of RFC 5957), THREAD and UID THREAD (ORDEREDSUBJECT and REFERENCES), and the per-mailbox
//! cache of sort keys that makes them interactive on large mailboxes.
//!
//! What it is: the handlers select messages with the SEARCH program ([`super::search::matching`]),
//! look their keys up in the mailbox's shared search index ([`crate::index`], one per mailbox
//! for all sessions of the process, persisted under the user's cache folder), and sort or
//! thread on the blocking pool. [`SortIndex`] is a throw-away key map for messages the shared
//! index does not have yet.
//! What it is not: key extraction (`hermes_proto::imap::sortkeys`) or the thread algorithms
//! (`hermes_proto::imap::thread`), which are pure and tested there.
//!
//! Invariants:
//! - Every matched message gets its real keys: from the shared index, or, when more than
//!   [`crate::index::SYNC_INDEX_LIMIT`] are missing from it (first use of a large mailbox, or a
//!   damaged index being rebuilt), read for this command alone while the background catch-up
//!   fills the index. The index never changes an answer, only its speed.
//! - A shared entry is never stale: it is keyed by (mailbox id, UID), and neither is reused.
//! - Loading, extending and sorting happen in `spawn_blocking`; the index is read under its
//!   read lock, so several sessions sort at once.
//! - Ties are broken by message sequence number, ascending, whatever `REVERSE` says (RFC 5256 §3).

use super::reply::Reply;
use super::search::{matching, saved_subset};
use super::session::{End, Session};
use super::wire;
use crate::index::{self, Entry, UidMap};
use hermes_proto::imap::sortkeys::SortKeys;
use hermes_proto::imap::thread::{self, ThreadMessage};
use hermes_proto::imap::{SearchReturn, SortCommand, SortCriterion, SortKey, ThreadAlgorithm, ThreadCommand};
use hermes_store::{MailboxId, MessageMeta, StoreError, UserStore};
use std::cmp::Ordering;
use std::sync::Arc;

/// Messages analysed per thread when building the index in parallel.
const PARALLEL_CHUNK: usize = 2048;
/// Threads used to build a large index (reading and analysing is CPU-bound: zstd and header
/// parsing); bounded so one session cannot take every core of a busy appliance.
const MAX_BUILD_THREADS: usize = 4;

/// The sort keys of one mailbox's messages, by UID. See the module invariants.
#[derive(Debug, Clone, Default)]
pub struct SortIndex {
    keys: UidMap<SortKeys>,
}

impl SortIndex {
    /// Number of messages whose keys are cached.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no keys are cached.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The cached keys of `uid`.
    pub fn get(&self, uid: u32) -> Option<&SortKeys> {
        self.keys.get(&uid)
    }

    /// Reads and analyses the messages of `uids` not cached yet, on up to
    /// [`MAX_BUILD_THREADS`] threads when there are many. A message expunged meanwhile gets
    /// empty keys (it will not be reported: the caller's list came from the session map).
    pub fn extend(&mut self, store: &UserStore, mailbox: MailboxId, uids: &[u32]) -> Result<usize, StoreError> {
        let missing: Vec<u32> = uids.iter().copied().filter(|u| !self.keys.contains_key(u)).collect();
        let analyse = |chunk: &[u32]| -> Result<Vec<(u32, SortKeys)>, StoreError> {
            chunk
                .iter()
                .map(|&uid| match store.read_message(mailbox, uid) {
                    Ok(raw) => Ok((uid, SortKeys::from_message(&raw))),
                    Err(StoreError::NoSuchMessage) => Ok((uid, SortKeys::default())),
                    Err(e) => Err(e),
                })
                .collect()
        };
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_BUILD_THREADS)
            .min(missing.len() / PARALLEL_CHUNK)
            .max(1);
        let results: Vec<Result<Vec<(u32, SortKeys)>, StoreError>> = if threads == 1 {
            vec![analyse(&missing)]
        } else {
            let per = missing.len().div_ceil(threads);
            let analyse = &analyse;
            std::thread::scope(|scope| {
                let handles: Vec<_> = missing.chunks(per).map(|chunk| scope.spawn(move || analyse(chunk))).collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| Err(StoreError::Io(std::io::Error::other("sort index thread failed"))))
                    })
                    .collect()
            })
        };
        let mut added = 0;
        self.keys.reserve(missing.len());
        for r in results {
            for (uid, keys) in r? {
                self.keys.insert(uid, keys);
                added += 1;
            }
        }
        Ok(added)
    }

    /// Drops the entries of UIDs not in `live` (ascending).
    pub fn retain_live(&mut self, live: &[u32]) {
        self.keys.retain(|uid, _| live.binary_search(uid).is_ok());
    }
}

/// One message as SORT sees it. Build it with [`Row::new`] (which resolves the DATE key once).
pub struct Row<'a> {
    pub msn: u32,
    pub uid: u32,
    pub internal: i64,
    pub size: u64,
    /// The DATE key: the Date: field, else INTERNALDATE (RFC 5256 §3).
    pub date: i64,
    pub keys: &'a SortKeys,
}

impl<'a> Row<'a> {
    pub fn new(msn: u32, uid: u32, internal: i64, size: u64, keys: &'a SortKeys) -> Row<'a> {
        Row { msn, uid, internal, size, date: keys.sent.unwrap_or(internal), keys }
    }
}

fn compare(a: &Row<'_>, b: &Row<'_>, criteria: &[SortCriterion]) -> Ordering {
    for c in criteria {
        let o = match c.key {
            SortKey::Arrival => a.internal.cmp(&b.internal),
            SortKey::Date => a.date.cmp(&b.date),
            SortKey::Size => a.size.cmp(&b.size),
            SortKey::Subject => a.keys.subject.cmp(&b.keys.subject),
            SortKey::From => a.keys.from.cmp(&b.keys.from),
            SortKey::To => a.keys.to.cmp(&b.keys.to),
            SortKey::Cc => a.keys.cc.cmp(&b.keys.cc),
            SortKey::DisplayFrom => a.keys.display_from.cmp(&b.keys.display_from),
            SortKey::DisplayTo => a.keys.display_to.cmp(&b.keys.display_to),
        };
        let o = dir(o, c.reverse);
        if o != Ordering::Equal {
            return o;
        }
    }
    a.msn.cmp(&b.msn)
}

/// Sorts `rows` by `criteria`; ties go by MSN. The comparison is a total order (MSNs are
/// unique), so an unstable sort gives the same result as a stable one, faster.
pub fn sort_rows(rows: &mut [Row<'_>], criteria: &[SortCriterion]) {
    match criteria {
        // The common single numeric keys: compare plain integers.
        [SortCriterion { reverse, key: SortKey::Date }] => {
            rows.sort_unstable_by(|a, b| dir(a.date.cmp(&b.date), *reverse).then(a.msn.cmp(&b.msn)))
        }
        [SortCriterion { reverse, key: SortKey::Arrival }] => {
            rows.sort_unstable_by(|a, b| dir(a.internal.cmp(&b.internal), *reverse).then(a.msn.cmp(&b.msn)))
        }
        _ => rows.sort_unstable_by(|a, b| compare(a, b, criteria)),
    }
}

fn dir(o: Ordering, reverse: bool) -> Ordering {
    if reverse { o.reverse() } else { o }
}

/// What a sort or thread task needs about one matched message.
#[derive(Debug, Clone, Copy)]
struct Target {
    msn: u32,
    uid: u32,
    internal: i64,
    size: u64,
}

/// The matched messages with the metadata SORT needs, and the live UIDs (for index pruning).
fn targets(s: &Session, found: &[(u32, u32)]) -> (Vec<Target>, Vec<u32>) {
    let Some(sel) = s.selected.as_ref() else {
        return (Vec::new(), Vec::new());
    };
    let t = found
        .iter()
        .filter_map(|&(msn, uid)| {
            sel.meta(uid).map(|m: &MessageMeta| Target { msn, uid, internal: m.internal_date.unix, size: m.size })
        })
        .collect();
    let live = sel.view().messages.iter().map(|m| m.uid).collect();
    (t, live)
}

/// The keys of matched messages: the shared index first, else the keys read for this command.
pub struct Keys<'a> {
    shared: &'a index::UidMap<Entry>,
    extra: &'a SortIndex,
}

/// Keys of a message that has none (expunged while the command ran: it is still listed).
static NO_KEYS: SortKeys = SortKeys {
    sent: None,
    subject: String::new(),
    subject_is_reply: false,
    from: String::new(),
    to: String::new(),
    cc: String::new(),
    display_from: String::new(),
    display_to: String::new(),
    message_id: None,
    references: Vec::new(),
};

impl<'a> Keys<'a> {
    /// The keys of `uid`.
    pub fn get(&self, uid: u32) -> &'a SortKeys {
        match self.shared.get(&uid) {
            Some(e) => &e.keys,
            None => self.extra.get(uid).unwrap_or(&NO_KEYS),
        }
    }
}

/// Runs `work` on the blocking pool with the keys of `targets`: the mailbox's shared index,
/// extended with the missing messages first when they are few (else they are read for this
/// command and the background catch-up is started). `live` is the mailbox's UIDs, ascending.
async fn with_index<T: Send + 'static>(
    s: &mut Session,
    command: &'static str,
    targets: Vec<Target>,
    live: Vec<u32>,
    work: impl FnOnce(&Keys<'_>, &[Target]) -> T + Send + 'static,
) -> Result<T, Reply> {
    let Some(store) = s.user_store() else {
        return Err(Reply::bad("Command not allowed before login"));
    };
    let Some(sel) = s.selected.as_ref() else {
        return Err(Reply::bad("No mailbox selected"));
    };
    let mailbox = sel.id;
    let ix = index::for_mailbox(&store, mailbox, sel.uidvalidity);
    let task = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        ix.ensure_loaded();
        ix.prune(&live);
        let missing = ix.missing(targets.iter().map(|t| t.uid));
        let mut extra = SortIndex::default();
        let read = missing.len();
        if missing.len() <= index::SYNC_INDEX_LIMIT {
            ix.index_uids(&store, &missing)?;
        } else {
            ix.spawn_catch_up(Arc::clone(&store), live);
            extra.extend(&store, mailbox, &missing)?;
        }
        let indexed = started.elapsed();
        let shared = ix.read();
        let out = work(&Keys { shared: &shared, extra: &extra }, &targets);
        Ok::<_, StoreError>((out, read, indexed, started.elapsed(), shared.len()))
    });
    match task.await {
        Ok(Ok((out, read, indexed, total, cached))) => {
            tracing::debug!(command, read, indexed = ?indexed, elapsed = ?total, cached, "sort index");
            Ok(out)
        }
        Ok(Err(e)) => Err(Reply::from_store(&e, command, false)),
        Err(e) => {
            tracing::error!(command, error = %e, "sort task failed");
            Err(Reply::server_bug())
        }
    }
}

/// SORT / UID SORT.
pub(super) async fn sort(s: &mut Session, tag: &str, cmd: SortCommand) -> Result<Reply, End> {
    let found = match matching(s, Some(&cmd.charset), &cmd.search).await {
        Ok(f) => f,
        Err(r) => return Ok(r),
    };
    let (targets, live) = targets(s, &found);
    let criteria = cmd.criteria.clone();
    let uid_cmd = cmd.uid;
    let sorted = with_index(s, "SORT", targets, live, move |keys, targets| {
        let mut rows: Vec<Row<'_>> =
            targets.iter().map(|t| Row::new(t.msn, t.uid, t.internal, t.size, keys.get(t.uid))).collect();
        sort_rows(&mut rows, &criteria);
        rows.iter().map(|r| if uid_cmd { r.uid } else { r.msn }).collect::<Vec<u32>>()
    })
    .await;
    let nums = match sorted {
        Ok(n) => n,
        Err(r) => return Ok(r),
    };
    let mut out = Vec::with_capacity(16 + nums.len() * 6);
    match cmd.returns {
        None => {
            out.extend_from_slice(b"* SORT");
            for n in &nums {
                out.extend_from_slice(format!(" {n}").as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        }
        Some(returns) => {
            let returns = if returns.is_empty() { vec![SearchReturn::All] } else { returns };
            if returns.contains(&SearchReturn::Save) {
                // In sort order, so MIN/MAX mean first/last (RFC 5267 §3 with RFC 5182).
                let ordered: Vec<u32> = match s.selected.as_ref() {
                    Some(sel) if !cmd.uid => nums
                        .iter()
                        .filter_map(|&msn| {
                            let i = usize::try_from(msn.checked_sub(1)?).ok()?;
                            sel.uids().get(i).copied()
                        })
                        .collect(),
                    _ => nums.clone(),
                };
                let saved = saved_subset(&ordered, &returns);
                if let Some(sel) = s.selected.as_mut() {
                    sel.save_result(saved);
                }
            }
            if !returns.iter().all(|r| *r == SearchReturn::Save) {
                esort_line(&mut out, tag, cmd.uid, &nums, &returns);
            }
        }
    }
    s.send(&out).await?;
    Ok(Reply::ok(if cmd.uid { "UID SORT completed" } else { "SORT completed" }))
}

/// `* ESEARCH (TAG "t") [UID] ...` for SORT RETURN (RFC 5267 §3): MIN and MAX are the first and
/// last message in sort order, ALL lists them in sort order (ranges only for ascending runs).
pub fn esort_line(out: &mut Vec<u8>, tag: &str, uid: bool, nums: &[u32], returns: &[SearchReturn]) {
    out.extend_from_slice(b"* ESEARCH (TAG ");
    wire::string(out, tag.as_bytes(), false);
    out.push(b')');
    if uid {
        out.extend_from_slice(b" UID");
    }
    for r in returns {
        match r {
            SearchReturn::Min => {
                if let Some(n) = nums.first() {
                    out.extend_from_slice(format!(" MIN {n}").as_bytes());
                }
            }
            SearchReturn::Max => {
                if let Some(n) = nums.last() {
                    out.extend_from_slice(format!(" MAX {n}").as_bytes());
                }
            }
            SearchReturn::Count => out.extend_from_slice(format!(" COUNT {}", nums.len()).as_bytes()),
            SearchReturn::All => {
                if !nums.is_empty() {
                    out.extend_from_slice(b" ALL ");
                    ordered_set(out, nums);
                }
            }
            SearchReturn::Save => {}
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// A sequence set that keeps the given order: ascending consecutive runs become `a:b`.
fn ordered_set(out: &mut Vec<u8>, nums: &[u32]) {
    let mut i = 0;
    let mut first = true;
    while let Some(&start) = nums.get(i) {
        let mut end = start;
        let mut j = i + 1;
        while let Some(&n) = nums.get(j) {
            if end.checked_add(1) != Some(n) {
                break;
            }
            end = n;
            j += 1;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        if end == start {
            out.extend_from_slice(start.to_string().as_bytes());
        } else {
            out.extend_from_slice(format!("{start}:{end}").as_bytes());
        }
        i = j;
    }
}

/// THREAD / UID THREAD.
pub(super) async fn thread(s: &mut Session, cmd: ThreadCommand) -> Result<Reply, End> {
    let found = match matching(s, Some(&cmd.charset), &cmd.search).await {
        Ok(f) => f,
        Err(r) => return Ok(r),
    };
    let (targets, live) = targets(s, &found);
    let uid_cmd = cmd.uid;
    let algorithm = cmd.algorithm;
    let rendered = with_index(s, "THREAD", targets, live, move |keys, targets| {
        let msgs: Vec<ThreadMessage<'_>> = targets
            .iter()
            .map(|t| {
                let k = keys.get(t.uid);
                ThreadMessage {
                    number: if uid_cmd { t.uid } else { t.msn },
                    order: t.msn,
                    date: k.sent.unwrap_or(t.internal),
                    subject: &k.subject,
                    subject_is_reply: k.subject_is_reply,
                    message_id: k.message_id.as_deref(),
                    references: &k.references,
                }
            })
            .collect();
        let threads = match algorithm {
            ThreadAlgorithm::OrderedSubject => thread::ordered_subject(&msgs),
            ThreadAlgorithm::References => thread::references(&msgs),
        };
        let mut out = b"* THREAD".to_vec();
        if !threads.is_empty() {
            out.push(b' ');
            thread::render(&mut out, &threads);
        }
        out.extend_from_slice(b"\r\n");
        out
    })
    .await;
    match rendered {
        Ok(out) => {
            s.send(&out).await?;
            Ok(Reply::ok(if cmd.uid { "UID THREAD completed" } else { "THREAD completed" }))
        }
        Err(r) => Ok(r),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;

    fn keys(subject: &str, from: &str, sent: Option<i64>) -> SortKeys {
        SortKeys { subject: subject.into(), from: from.into(), sent, ..SortKeys::default() }
    }

    #[test]
    fn sort_by_criteria_with_msn_tie_break() {
        let k = [keys("B", "x", Some(30)), keys("A", "y", None), keys("B", "x", Some(10)), keys("A", "y", Some(5))];
        let mut rows: Vec<Row<'_>> = k
            .iter()
            .enumerate()
            .map(|(i, keys)| Row::new(i as u32 + 1, i as u32 + 10, 20, 100 - i as u64, keys))
            .collect();
        let c = |reverse, key| SortCriterion { reverse, key };
        sort_rows(&mut rows, &[c(false, SortKey::Subject), c(true, SortKey::Date)]);
        let msns: Vec<u32> = rows.iter().map(|r| r.msn).collect();
        // A: msn 2 (date = internal 20) before msn 4 (5) reversed; B: 1 (30) before 3 (10).
        assert_eq!(msns, vec![2, 4, 1, 3]);
        sort_rows(&mut rows, &[c(true, SortKey::From)]);
        let msns: Vec<u32> = rows.iter().map(|r| r.msn).collect();
        // REVERSE does not reverse the tie-break.
        assert_eq!(msns, vec![2, 4, 1, 3]);
        sort_rows(&mut rows, &[c(false, SortKey::Size)]);
        assert_eq!(rows.iter().map(|r| r.msn).collect::<Vec<_>>(), vec![4, 3, 2, 1]);
    }

    #[test]
    fn esort_all_keeps_order() {
        let mut out = Vec::new();
        esort_line(
            &mut out,
            "A1",
            true,
            &[5, 6, 7, 3, 9, 8],
            &[SearchReturn::Min, SearchReturn::Max, SearchReturn::Count, SearchReturn::All],
        );
        assert_eq!(String::from_utf8(out).unwrap(), "* ESEARCH (TAG \"A1\") UID MIN 5 MAX 8 COUNT 6 ALL 5:7,3,9,8\r\n");
        let mut out = Vec::new();
        esort_line(&mut out, "A2", false, &[], &[SearchReturn::Min, SearchReturn::Count]);
        assert_eq!(String::from_utf8(out).unwrap(), "* ESEARCH (TAG \"A2\") COUNT 0\r\n");
    }
}
