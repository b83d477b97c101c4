//! Indexing at delivery and APPEND time, so that the first SEARCH or SORT of a mailbox nobody
//! has selected yet (100,000 messages delivered over weeks) finds its index already built.
//!
//! What it is: a bounded queue ([`QUEUE`] jobs) drained by one background thread. A job names
//! a user's mailbox and the UIDs just stored there; the thread reads and analyses each
//! message (as the catch-up does) and adds the entries:
//! - to the mailbox's index in memory when it is resident (a session uses it), through
//!   [`super::MailboxIndex::index_uids`], which also appends them to its file;
//! - otherwise straight to the end of the index file (creating it), without loading it.
//!
//! What it is not: on the delivery's critical path (the reply never waits for it) nor
//! required: a full queue drops the job, a failure is logged, and the messages are indexed by
//! the next SELECT's catch-up as before. Results never depend on it (see the module
//! invariants of [`super`]). Copies made by COPY/MOVE and Sieve `fileinto` beyond the first
//! target are left to that catch-up.
//!
//! Invariants: the file is appended to only while the registry lock is held and the mailbox
//! has no resident index, so no other writer has it open (a resident index owns its file);
//! a file whose header names another mailbox or UIDVALIDITY is started afresh (it would be
//! discarded at load anyway). A torn tail left by a crash hides what is appended after it
//! until the next compaction (a cache: those messages are indexed again at SELECT).

use super::{Entry, file, lock, registry};
use hermes_store::{MailboxId, StoreError, UserStore};
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, OnceLock, Weak};

/// Jobs waiting at most: a burst of deliveries beyond this is left to the SELECT catch-up.
pub const QUEUE: usize = 4096;

struct Job {
    /// Weak: a queued job never keeps a user (and so the store and its lock) alive; when the
    /// store has gone (shutdown) the job is dropped.
    store: Weak<UserStore>,
    mailbox: MailboxId,
    uidvalidity: u32,
    uids: Vec<u32>,
}

/// Jobs queued or running.
static PENDING: AtomicUsize = AtomicUsize::new(0);

fn sender() -> Option<&'static SyncSender<Job>> {
    static TX: OnceLock<Option<SyncSender<Job>>> = OnceLock::new();
    TX.get_or_init(|| {
        let (tx, rx) = sync_channel::<Job>(QUEUE);
        let spawned = std::thread::Builder::new().name("index-ingest".into()).spawn(move || {
            while let Ok(job) = rx.recv() {
                if let Err(e) = run(&job) {
                    tracing::debug!(mailbox = job.mailbox.0, error = %e, "delivery-time indexing skipped");
                }
                PENDING.fetch_sub(1, Ordering::AcqRel);
            }
        });
        match spawned {
            Ok(_) => Some(tx),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the delivery-time index thread; messages are indexed at SELECT");
                None
            }
        }
    })
    .as_ref()
}

/// Queues the messages `uids`, just stored in `mailbox` (UIDVALIDITY `uidvalidity`) of
/// `store`'s user, for indexing. Never blocks.
pub fn stored(store: Arc<UserStore>, mailbox: MailboxId, uidvalidity: u32, uids: Vec<u32>) {
    if uids.is_empty() {
        return;
    }
    let Some(tx) = sender() else { return };
    PENDING.fetch_add(1, Ordering::AcqRel);
    match tx.try_send(Job { store: Arc::downgrade(&store), mailbox, uidvalidity, uids }) {
        Ok(()) => {}
        Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
            PENDING.fetch_sub(1, Ordering::AcqRel);
            tracing::debug!("delivery-time index queue full; left to the SELECT catch-up");
        }
    }
}

/// Blocks until every job queued so far is done (tests and benchmarks), or `timeout` passed.
/// Returns whether the queue is empty.
pub fn flush_within(timeout: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while PENDING.load(Ordering::Acquire) > 0 {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    true
}

/// [`flush_within`] without a bound.
pub fn flush() {
    flush_within(std::time::Duration::MAX / 4);
}

fn run(job: &Job) -> Result<(), StoreError> {
    let Some(store) = job.store.upgrade() else { return Ok(()) };
    let path = super::file_path(&store, job.mailbox);
    // Resident: the index owns its file; add through it.
    let resident = lock(registry()).indexes.get(&path).filter(|ix| ix.uidvalidity == job.uidvalidity).cloned();
    if let Some(ix) = resident {
        ix.index_uids(&store, &job.uids)?;
        return Ok(());
    }
    // Analyse outside every lock (decompression and MIME decoding are the slow part).
    let mut analysed: Vec<(u32, Entry)> = Vec::with_capacity(job.uids.len());
    for &uid in &job.uids {
        match store.read_message(job.mailbox, uid) {
            Ok(raw) => analysed.push((uid, Entry::from_message(&raw))),
            Err(StoreError::NoSuchMessage) => {}
            Err(e) => return Err(e),
        }
    }
    if analysed.is_empty() {
        return Ok(());
    }
    let reg = lock(registry());
    if let Some(ix) = reg.indexes.get(&path).filter(|ix| ix.uidvalidity == job.uidvalidity).cloned() {
        // Became resident meanwhile: hand the entries over (publish appends them to its file
        // once it is loaded; before that, the load's catch-up finds them missing and redoes
        // them, which costs time, never correctness).
        drop(reg);
        ix.ensure_loaded();
        let missing = ix.missing(analysed.iter().map(|(u, _)| *u));
        ix.publish(analysed.into_iter().filter(|(u, _)| missing.contains(u)).collect());
        return Ok(());
    }
    let valid_len = match header_matches(&path, job.mailbox.0, job.uidvalidity) {
        Ok(true) => std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
        Ok(false) => 0,
        Err(e) => return Err(StoreError::Io(e)),
    };
    let pairs: Vec<(u32, &Entry)> = analysed.iter().map(|(u, e)| (*u, e)).collect();
    let mut appender = file::Appender::open(&path, job.mailbox.0, job.uidvalidity, valid_len)?;
    appender.append(&pairs)?;
    drop(reg);
    Ok(())
}

/// Whether the file at `path` starts with this mailbox's header (false when absent).
fn header_matches(path: &std::path::Path, mailbox: u64, uidvalidity: u32) -> std::io::Result<bool> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let mut head = vec![0u8; file::HEADER_LEN as usize];
    match f.read_exact(&mut head) {
        Ok(()) => Ok(head == file::header(mailbox, uidvalidity)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}
