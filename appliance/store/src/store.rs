//! The store as a whole: the exclusive lock, the cache of open users, and delivery of one
//! message to many users with a single stored copy.
//!
//! What it is: `Store::open` (folders, lock, spool cleanup), `Store::user` (one shared
//! `UserStore` per user, loaded on first use, unloaded when idle and the cache is full) and
//! `Store::deliver` (compress once into `spool/`, fsync, hard-link into each user's `msgs/`,
//! commit each user's record, unlink the spool name).
//! What it is not: per-user recovery or commit logic (`user`).
//!
//! Invariants:
//! - While any `Store` or `UserStore` of a root is alive in this process, this process holds
//!   the root's `lock` (flock, exclusive); no other opener can write the store.
//! - At most one `UserStore` per user is live and unpoisoned: a user is loaded and unloaded
//!   under its slot lock, and an unloaded user writes its checkpoint before anyone can load it.
//! - `spool/` holds only files of deliveries in progress; anything found there at open is a
//!   leftover of a crash (each user it reached has its own link) and is removed.

use crate::blob::{self, FileId};
use crate::user::{Shared, UserInner};
use crate::{Appended, DeliveryTarget, InternalDate, StoreConfig, StoreError, UserStore};
use hermes_core::directory::UserId;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Users kept loaded while no session holds them; beyond this the least recently used idle
/// ones are unloaded (a checkpoint is written). 1,000 users of typical size is tens of MB.
pub const MAX_IDLE_USERS: usize = 1000;

type Slot = Arc<Mutex<Option<Arc<UserStore>>>>;

pub(crate) struct StoreInner {
    shared: Arc<Shared>,
    users: Mutex<HashMap<UserId, Slot>>,
    epoch: Instant,
}

impl Drop for StoreInner {
    fn drop(&mut self) {
        // Unload users nobody else holds so they write their checkpoints (clean close).
        let slots: Vec<Slot> = self.users.lock().drain().map(|(_, s)| s).collect();
        for s in slots {
            let taken = s.lock().take();
            drop(taken);
        }
    }
}

pub(crate) fn open(root: &Path, config: StoreConfig) -> Result<StoreInner, StoreError> {
    blob::create_dir_durable(root)?;
    let lock_file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(root.join("lock"))?;
    let lock = match Flock::lock(lock_file, FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        Err((_, Errno::EWOULDBLOCK)) => return Err(StoreError::Locked),
        Err((_, e)) => return Err(StoreError::Io(std::io::Error::from(e))),
    };
    blob::create_dir_durable(&root.join("users"))?;
    let spool = root.join("spool");
    blob::create_dir_durable(&spool)?;
    for entry in std::fs::read_dir(&spool)? {
        let entry = entry?;
        std::fs::remove_file(entry.path())?;
    }
    Ok(StoreInner {
        shared: Arc::new(Shared {
            root: root.to_path_buf(),
            retention_secs: std::sync::atomic::AtomicU64::new(config.retention_secs),
            config,
            _lock: lock,
            warnings: parking_lot::RwLock::new(None),
            warning_percents: parking_lot::RwLock::new(crate::QUOTA_WARNING_PERCENTS.to_vec()),
        }),
        users: Mutex::new(HashMap::new()),
        epoch: Instant::now(),
    })
}

impl StoreInner {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(crate) fn user(&self, id: &UserId) -> Result<Arc<UserStore>, StoreError> {
        let (slot, inserted) = {
            let mut users = self.users.lock();
            let inserted = !users.contains_key(id);
            (Arc::clone(users.entry(id.clone()).or_default()), inserted)
        };
        let user = {
            let mut g = slot.lock();
            match g.as_ref() {
                Some(u) if !u.inner.is_poisoned() => Arc::clone(u),
                _ => {
                    if let Some(old) = g.take() {
                        tracing::warn!(user = %id, "reloading a user store after an I/O failure");
                        drop(old);
                    }
                    let u = Arc::new(UserStore { inner: UserInner::open(Arc::clone(&self.shared), id)? });
                    *g = Some(Arc::clone(&u));
                    u
                }
            }
        };
        user.inner.last_used.store(self.now_ms(), Ordering::Relaxed);
        if inserted {
            self.evict_idle();
        }
        Ok(user)
    }

    pub(crate) fn set_quota_warnings(&self, composer: crate::QuotaWarningComposer) {
        *self.shared.warnings.write() = Some(composer);
    }

    pub(crate) fn set_retention_secs(&self, secs: u64) {
        self.shared.retention_secs.store(secs, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn set_quota_warning_percents(&self, percents: Vec<u8>) {
        *self.shared.warning_percents.write() = percents;
    }

    /// Every user with a folder in the store (names that are not user ids are skipped).
    pub(crate) fn user_ids(&self) -> Result<Vec<UserId>, StoreError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.shared.root.join("users"))? {
            let entry = entry?;
            if let Some(id) = entry.file_name().to_str().and_then(UserId::parse) {
                out.push(id);
            }
        }
        out.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        Ok(out)
    }

    /// Unloads least recently used users that no session holds, down to 3/4 of the cap.
    fn evict_idle(&self) {
        let candidates: Vec<(UserId, Slot, u64)> = {
            let users = self.users.lock();
            if users.len() <= MAX_IDLE_USERS {
                return;
            }
            let mut c: Vec<(UserId, Slot, u64)> = users
                .iter()
                .filter_map(|(id, s)| {
                    let g = s.try_lock()?;
                    let u = g.as_ref()?;
                    (Arc::strong_count(u) == 1)
                        .then(|| (id.clone(), Arc::clone(s), u.inner.last_used.load(Ordering::Relaxed)))
                })
                .collect();
            c.sort_by_key(|x| x.2);
            let excess = users.len().saturating_sub(MAX_IDLE_USERS * 3 / 4);
            c.truncate(excess);
            c
        };
        for (id, slot, _) in candidates {
            {
                let mut g = slot.lock();
                if g.as_ref().is_some_and(|u| Arc::strong_count(u) == 1) {
                    let u = g.take();
                    drop(u); // checkpoint under the slot lock: nobody can load this user meanwhile
                }
            }
            let mut users = self.users.lock();
            if let Some(s) = users.get(&id) {
                // Two references: the map's and ours. Nobody else is about to fill the slot.
                if Arc::ptr_eq(s, &slot) && Arc::strong_count(&slot) == 2 && slot.try_lock().is_some_and(|g| g.is_none())
                {
                    users.remove(&id);
                }
            }
        }
    }

    pub(crate) fn deliver(
        &self,
        raw: &[u8],
        internal_date: Option<InternalDate>,
        targets: &[DeliveryTarget],
    ) -> Vec<Result<Appended, StoreError>> {
        let n = targets.len();
        if n == 0 {
            return Vec::new();
        }
        if raw.len() as u64 > self.shared.config.max_message_bytes {
            return (0..n).map(|_| Err(StoreError::TooLarge)).collect();
        }
        let file = FileId::random();
        let spool = self.shared.root.join("spool").join(file.file_name());
        let written = blob::compress(raw, self.shared.config.zstd_level).and_then(|z| blob::write_new(&spool, &z));
        if let Err(e) = written {
            let msg = e.to_string();
            return (0..n).map(|_| Err(StoreError::Io(std::io::Error::other(msg.clone())))).collect();
        }
        let date = internal_date.unwrap_or_else(crate::user::now_date);
        let size = raw.len() as u64;
        let mut results: Vec<Option<Result<Appended, StoreError>>> = (0..n).map(|_| None).collect();
        // Group targets by user, keeping the order of first appearance.
        let mut order: Vec<&UserId> = Vec::new();
        for t in targets {
            if !order.contains(&&t.user) {
                order.push(&t.user);
            }
        }
        for uid in order {
            let idx: Vec<usize> = (0..n).filter(|i| targets[*i].user == *uid).collect();
            let outcome = self.deliver_to_user(uid, file, &spool, size, date, targets, &idx);
            match outcome {
                Ok(per) => {
                    for (i, r) in idx.iter().zip(per) {
                        results[*i] = Some(r);
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    let mut first = Some(e);
                    for i in &idx {
                        results[*i] = Some(Err(first.take().unwrap_or_else(|| StoreError::Io(std::io::Error::other(msg.clone())))));
                    }
                }
            }
        }
        if let Err(e) = std::fs::remove_file(&spool) {
            tracing::warn!(error = %e, "could not remove a spool file; removed at next open");
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(StoreError::Io(std::io::Error::other("delivery not attempted")))))
            .collect()
    }

    #[allow(clippy::too_many_arguments)] // one call site; a struct would only rename the arguments
    fn deliver_to_user(
        &self,
        user: &UserId,
        file: FileId,
        spool: &Path,
        size: u64,
        date: InternalDate,
        targets: &[DeliveryTarget],
        idx: &[usize],
    ) -> Result<Vec<Result<Appended, StoreError>>, StoreError> {
        let store = self.user(user)?;
        let link = blob::path_in(store.inner.msgs_dir(), file);
        std::fs::hard_link(spool, &link)?;
        let wanted: Vec<(&str, &[String])> =
            idx.iter().map(|i| (targets[*i].mailbox.as_str(), targets[*i].flags.as_slice())).collect();
        let res = store.inner.deliver_file(file, size, date, &wanted);
        let landed = res.as_ref().is_ok_and(|per| per.iter().any(|r| r.is_ok()));
        if !landed && !store.inner.is_poisoned() {
            store.inner.remove_files([file]);
        }
        res
    }
}
