//! The search and sort index: per user and mailbox, the SORT/THREAD keys and the decoded,
//! lower-cased search text of every message, shared by all sessions of the store process and
//! kept on disk so a restart does not rebuild it (issue 3, point 6).
//!
//! What it is: a process-wide registry of [`MailboxIndex`]es (one per mailbox, behind an
//! `Arc`), each an in-memory map UID → [`Entry`] mirrored by an append-only file
//! (`users/<id>/cache/search-<mailbox-id>.idx`, see [`file`]). Entries are added incrementally
//! by UID: at delivery and APPEND time ([`ingest`], in the background), in the background after
//! SELECT ([`prefetch`]) and synchronously by SEARCH/SORT for a
//! few new messages ([`MailboxIndex::index_uids`]); entries of expunged messages are pruned
//! ([`MailboxIndex::prune`]) and the file compacted when it holds mostly dead entries.
//! What it is not: a source of truth, a full-text engine (no tokens, no ranking: substring
//! search over lower-cased text, as IMAP asks), or durable (nothing is fsync'd).
//!
//! Why here and not in `hermes-store`: the index needs the MIME analysis of `hermes-proto`,
//! which the store engine deliberately does not depend on. It still lives in the store
//! process, the only writer of `DATA/store`: the file is under the store-owned
//! `UserStore::cache_dir`, which the store engine never reads and any code may delete.
//!
//! Invariants:
//! - **The index is a cache.** An entry for (mailbox id, UID) never goes stale: a UID is never
//!   reused within a mailbox id and a message's bytes never change. The file's header names the
//!   mailbox and UIDVALIDITY; any mismatch, damage or I/O error discards (part of) the file and
//!   the missing UIDs are indexed again, in the background.
//! - **Searches are always exact.** Callers use an entry only when it exists and can answer
//!   (see [`entry`]); every other message is read and analysed as the scan does. A damaged,
//!   missing or half-built index makes a search slower, never different.
//! - Memory: the text kept per message is bounded ([`entry::MAX_INDEXED_BODY`]); an index no
//!   session holds is dropped from memory after [`IDLE_UNLOAD`] or when more than
//!   [`MAX_RESIDENT`] are resident (it stays on disk).
//! - Never panics: lock poisoning is recovered, I/O errors are logged and disable the file
//!   (the in-memory index keeps working), background threads that fail leave the index partial.

pub mod entry;
pub mod file;
pub mod ingest;

pub use entry::{Entry, Needle};

use hermes_store::{MailboxId, MailboxView, StoreError, UserStore};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

/// Resident indexes kept beyond those in use (each can be hundreds of MB for a 100,000-message
/// mailbox; unused ones beyond this are dropped from memory, least recently used first).
pub const MAX_RESIDENT: usize = 16;
/// An index no session has used for this long is dropped from memory (reloaded from disk in
/// well under a second when needed again).
pub const IDLE_UNLOAD: Duration = Duration::from_secs(15 * 60);
/// Messages a command indexes itself before answering; more missing than this and the command
/// reads the missing ones without waiting for the index (the background catch-up does them).
pub const SYNC_INDEX_LIMIT: usize = 2000;
/// The file is rewritten when it holds more than this many dead entries and more dead than
/// live ones.
const COMPACT_MIN_DEAD: usize = 1024;
/// Threads used to index many messages at once (CPU-bound: zstd and MIME decoding); bounded
/// so that one mailbox cannot take every core of a busy appliance.
const MAX_INDEX_THREADS: usize = 2;
/// Messages per unit of parallel work and per file frame when catching up.
const BATCH: usize = file::FRAME_ENTRIES;

/// A hasher for UIDs: one multiplication (Fibonacci hashing). UIDs are assigned by the server,
/// never chosen by a client, so a keyed hash buys nothing and SipHash costs a fifth of a warm
/// SORT on 100,000 messages.
#[derive(Debug, Clone, Copy, Default)]
pub struct UidHasher(u64);

impl std::hash::Hasher for UidHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A map keyed by UID.
pub type UidMap<V> = HashMap<u32, V, std::hash::BuildHasherDefault<UidHasher>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The file side of an index: loaded yet, the appender (None: not opened or disabled after an
/// I/O error), and how many entries the file holds (live and dead).
#[derive(Debug, Default)]
struct FileState {
    loaded: bool,
    appender: Option<file::Appender>,
    disabled: bool,
    records: usize,
}

/// One mailbox's index. See the module invariants.
#[derive(Debug)]
pub struct MailboxIndex {
    path: PathBuf,
    mailbox: MailboxId,
    uidvalidity: u32,
    entries: RwLock<UidMap<Entry>>,
    file: Mutex<FileState>,
    catching_up: AtomicBool,
    last_used: AtomicU64,
}

/// The process-wide registry, keyed by index file path (unique per store, user and mailbox).
#[derive(Default)]
struct Registry {
    indexes: HashMap<PathBuf, Arc<MailboxIndex>>,
}

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(Mutex::default)
}

fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let e = *EPOCH.get_or_init(Instant::now);
    u64::try_from(e.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The shared index of `mailbox` (UIDVALIDITY `uidvalidity`) of `store`'s user; cheap (no I/O:
/// the file is read by the first [`MailboxIndex::ensure_loaded`]).
pub fn for_mailbox(store: &UserStore, mailbox: MailboxId, uidvalidity: u32) -> Arc<MailboxIndex> {
    let path = file_path(store, mailbox);
    let mut reg = lock(registry());
    let now = now_ms();
    // Drop unused indexes: idle too long, or too many resident.
    let idle_ms = u64::try_from(IDLE_UNLOAD.as_millis()).unwrap_or(u64::MAX);
    reg.indexes.retain(|_, ix| {
        Arc::strong_count(ix) > 1 || now.saturating_sub(ix.last_used.load(Ordering::Relaxed)) < idle_ms
    });
    if reg.indexes.len() > MAX_RESIDENT {
        let mut unused: Vec<(u64, PathBuf)> = reg
            .indexes
            .iter()
            .filter(|(_, ix)| Arc::strong_count(ix) == 1)
            .map(|(p, ix)| (ix.last_used.load(Ordering::Relaxed), p.clone()))
            .collect();
        unused.sort();
        let excess = reg.indexes.len() - MAX_RESIDENT;
        for (_, p) in unused.into_iter().take(excess) {
            reg.indexes.remove(&p);
        }
    }
    let ix = match reg.indexes.get(&path) {
        Some(ix) if ix.uidvalidity == uidvalidity && ix.mailbox == mailbox => Arc::clone(ix),
        _ => {
            let ix = Arc::new(MailboxIndex {
                path: path.clone(),
                mailbox,
                uidvalidity,
                entries: RwLock::default(),
                file: Mutex::default(),
                catching_up: AtomicBool::new(false),
                last_used: AtomicU64::new(now),
            });
            reg.indexes.insert(path, Arc::clone(&ix));
            ix
        }
    };
    ix.last_used.store(now, Ordering::Relaxed);
    ix
}

/// After SELECT: the mailbox's shared index, with a background task started that loads it
/// and indexes the messages it lacks (so that the first SEARCH or SORT finds it ready).
pub fn prefetch(store: Arc<UserStore>, view: &MailboxView) -> Arc<MailboxIndex> {
    let ix = for_mailbox(&store, view.id, view.uidvalidity);
    let live: Vec<u32> = view.messages.iter().map(|m| m.uid).collect();
    ix.spawn_catch_up(store, live);
    ix
}

/// Drops the index of `mailbox` from memory (it stays on disk; the next use reloads it). For
/// tests and benchmarks that need a cold start; sessions holding it keep their copy.
pub fn unload(store: &UserStore, mailbox: MailboxId) {
    let path = store.cache_dir().join(format!("search-{}.idx", mailbox.0));
    lock(registry()).indexes.remove(&path);
}

/// The index file of `mailbox` (tests and benchmarks).
pub fn file_path(store: &UserStore, mailbox: MailboxId) -> PathBuf {
    store.cache_dir().join(format!("search-{}.idx", mailbox.0))
}

impl MailboxIndex {
    pub fn mailbox(&self) -> MailboxId {
        self.mailbox
    }

    /// Read access to the entries (recovering from a poisoned lock: entries are only ever
    /// inserted whole or removed, so a panic elsewhere cannot leave one half-written).
    pub fn read(&self) -> RwLockReadGuard<'_, UidMap<Entry>> {
        self.last_used.store(now_ms(), Ordering::Relaxed);
        self.entries.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, UidMap<Entry>> {
        self.entries.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Number of entries in memory.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether no entry is in memory.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a background catch-up is running.
    pub fn is_catching_up(&self) -> bool {
        self.catching_up.load(Ordering::Acquire)
    }

    /// Loads the file into memory once (later calls return at once; concurrent callers wait
    /// for the first). A damaged file is cut after its intact prefix (or restarted when its
    /// header is bad); an unreadable one is ignored and persistence disabled for this process.
    pub fn ensure_loaded(&self) {
        let mut fs = lock(&self.file);
        if fs.loaded {
            return;
        }
        fs.loaded = true;
        let started = Instant::now();
        let loaded = match file::load(&self.path, self.mailbox.0, self.uidvalidity) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(mailbox = self.mailbox.0, error = %e, "search index unreadable; rebuilding");
                file::Loaded::default()
            }
        };
        if let Some(d) = &loaded.damage {
            tracing::warn!(mailbox = self.mailbox.0, damage = %d, kept = loaded.entries.len(), "search index damaged; the rest is rebuilt");
        }
        fs.records = loaded.entries.len();
        match file::Appender::open(&self.path, self.mailbox.0, self.uidvalidity, loaded.valid_len) {
            Ok(a) => fs.appender = Some(a),
            Err(e) => {
                tracing::warn!(mailbox = self.mailbox.0, error = %e, "search index file not writable; kept in memory only");
                fs.disabled = true;
            }
        }
        let n = loaded.entries.len();
        {
            let mut map = self.write();
            map.reserve(n);
            for (uid, e) in loaded.entries {
                map.insert(uid, e);
            }
        }
        tracing::debug!(mailbox = self.mailbox.0, entries = n, elapsed = ?started.elapsed(), "search index loaded");
    }

    /// The UIDs of `uids` that have no entry.
    pub fn missing(&self, uids: impl IntoIterator<Item = u32>) -> Vec<u32> {
        let map = self.read();
        uids.into_iter().filter(|u| !map.contains_key(u)).collect()
    }

    /// Drops the entries of UIDs not in `live` (ascending: the mailbox's current UIDs) and
    /// compacts the file when it is mostly dead entries.
    pub fn prune(&self, live: &[u32]) {
        // Dead entries are harmless (lookups go by live UID), so the check is only done when
        // they must exist: more entries than live messages.
        let removed = if self.read().len() <= live.len() {
            0
        } else {
            let mut map = self.write();
            let before = map.len();
            map.retain(|uid, _| live.binary_search(uid).is_ok());
            before - map.len()
        };
        let mut fs = lock(&self.file);
        let live_n = self.read().len();
        let dead = fs.records.saturating_sub(live_n);
        if removed > 0 || dead > COMPACT_MIN_DEAD {
            tracing::debug!(mailbox = self.mailbox.0, removed, dead, "search index pruned");
        }
        if dead > COMPACT_MIN_DEAD && dead > live_n && !fs.disabled && fs.loaded {
            let map = self.read();
            let mut pairs: Vec<(u32, &Entry)> = map.iter().map(|(u, e)| (*u, e)).collect();
            pairs.sort_unstable_by_key(|(u, _)| *u);
            match file::rewrite(&self.path, self.mailbox.0, self.uidvalidity, &pairs) {
                Ok(a) => {
                    fs.appender = Some(a);
                    fs.records = pairs.len();
                }
                Err(e) => {
                    tracing::warn!(mailbox = self.mailbox.0, error = %e, "search index compaction failed; kept in memory only");
                    fs.appender = None;
                    fs.disabled = true;
                }
            }
        }
    }

    /// Reads, analyses and adds the messages of `uids` (those without an entry), on up to
    /// [`MAX_INDEX_THREADS`] threads when there are many, appending them to the file batch by
    /// batch. A message expunged meanwhile is skipped. Returns how many were added.
    pub fn index_uids(&self, store: &UserStore, uids: &[u32]) -> Result<usize, StoreError> {
        self.ensure_loaded();
        let todo = self.missing(uids.iter().copied());
        let mut added = 0;
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_INDEX_THREADS)
            .min(todo.len().div_ceil(BATCH))
            .max(1);
        // Work in rounds of `threads` batches, publishing each round as it completes, so that
        // searches during a long catch-up already use what is done.
        for round in todo.chunks(BATCH * threads) {
            let analysed = analyse_parallel(store, self.mailbox, round, threads)?;
            added += analysed.len();
            self.publish(analysed);
        }
        Ok(added)
    }

    /// Inserts entries in memory and appends them to the file.
    fn publish(&self, analysed: Vec<(u32, Entry)>) {
        if analysed.is_empty() {
            return;
        }
        let mut fs = lock(&self.file);
        if let Some(a) = fs.appender.as_mut() {
            let pairs: Vec<(u32, &Entry)> = analysed.iter().map(|(u, e)| (*u, e)).collect();
            if let Err(e) = a.append(&pairs) {
                tracing::warn!(mailbox = self.mailbox.0, error = %e, "search index append failed; kept in memory only");
                fs.appender = None;
                fs.disabled = true;
            } else {
                fs.records += pairs.len();
            }
        }
        let mut map = self.write();
        for (uid, e) in analysed {
            map.insert(uid, e);
        }
    }

    /// Starts a background thread (unless one runs) that loads the index, prunes entries not
    /// in `live` and indexes the live messages it lacks.
    pub fn spawn_catch_up(self: &Arc<Self>, store: Arc<UserStore>, live: Vec<u32>) {
        if self.catching_up.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return;
        }
        let ix = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("search-index".into())
            .spawn(move || {
                let started = Instant::now();
                ix.ensure_loaded();
                ix.prune(&live);
                let result = ix.index_uids(&store, &live);
                ix.catching_up.store(false, Ordering::Release);
                match result {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(mailbox = ix.mailbox.0, indexed = n, elapsed = ?started.elapsed(), "search index caught up"),
                    Err(e) => tracing::warn!(mailbox = ix.mailbox.0, error = %e, "search index catch-up stopped"),
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the search index thread");
            self.catching_up.store(false, Ordering::Release);
        }
    }

    /// Blocks until no background catch-up runs (tests and benchmarks).
    pub fn wait_idle(&self) {
        while self.is_catching_up() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Reads and analyses `uids` on `threads` threads; messages gone meanwhile are skipped.
fn analyse_parallel(
    store: &UserStore,
    mailbox: MailboxId,
    uids: &[u32],
    threads: usize,
) -> Result<Vec<(u32, Entry)>, StoreError> {
    let analyse = |chunk: &[u32]| -> Result<Vec<(u32, Entry)>, StoreError> {
        let mut out = Vec::with_capacity(chunk.len());
        for &uid in chunk {
            match store.read_message(mailbox, uid) {
                Ok(raw) => out.push((uid, Entry::from_message(&raw))),
                Err(StoreError::NoSuchMessage) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    };
    if threads <= 1 || uids.len() < 2 {
        return analyse(uids);
    }
    let per = uids.len().div_ceil(threads);
    let analyse = &analyse;
    let results: Vec<Result<Vec<(u32, Entry)>, StoreError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = uids.chunks(per).map(|c| scope.spawn(move || analyse(c))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(StoreError::Io(std::io::Error::other("index thread failed")))))
            .collect()
    });
    let mut out = Vec::with_capacity(uids.len());
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod testgen;
#[cfg(test)]
mod tests;
