//! Process-wide machinery behind [`super::Directory::authenticate`]: a bound on concurrent
//! argon2 verifications (with their memory reused) and the verified-credentials cache.
//!
//! **Bounded verifications.** Each argon2id verification needs `m_cost` KiB of memory (19 MiB
//! with our parameters) and one core for ~20 ms. Unbounded, 64 logins at once on tokio's
//! blocking pool meant 64 threads each allocating 19 MiB, and glibc kept every thread's arena
//! afterwards (5.7 GB RSS that never came back). At most [`max_concurrent_verifications`]
//! (the number of CPUs) run at once; further callers block until a slot frees. Each slot owns
//! its argon2 memory blocks and reuses them, so the process holds at most
//! `CPUs × m_cost` KiB for password hashing, whatever the login rate.
//!
//! **Verified-credentials cache** (as Dovecot's auth cache). After a *successful* argon2
//! verification the cache remembers, per (directory, address): `SHA-256(key ‖ password)` with a
//! random per-process 32-byte key, the PHC string the password was verified against, and the
//! time. A later login skips argon2 when the account file (still read on every login) holds the
//! same PHC string, the keyed hash matches (constant-time compare), and the entry is younger
//! than [`CACHE_TTL`]. Failed attempts never populate it and a wrong password never hits it
//! (it costs the full argon2 verification, as before). Security reasoning: the cache holds no
//! password and nothing an attacker could use offline without the key, which exists only in
//! this process's memory (someone who can read that memory can read passwords off the wire
//! anyway); a password change or account deletion changes or removes the account file, so the
//! next login re-verifies at once; guessing is not made cheaper, because only the exact
//! password that already passed argon2 hits.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// How long a verified password is trusted without argon2: 10 minutes. Long enough that a
/// mail client's reconnects (IDLE renewals, several parallel connections at startup, polling
/// every few minutes) pay argon2 once; short enough that a password which leaked from memory
/// via this cache stops working soon. Password changes and deletions need no expiry: the
/// account file is compared on every login.
pub const CACHE_TTL: Duration = Duration::from_secs(10 * 60);

/// Most cached logins: 100,000 entries of ~200 bytes, ~20 MiB at worst. When full, expired
/// entries are dropped first, then the oldest.
pub const CACHE_MAX_ENTRIES: usize = 100_000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The number of argon2 verifications that may run at once: the number of CPUs.
pub fn max_concurrent_verifications() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// A pool of verification slots, each with its reusable argon2 memory.
struct VerifierPool {
    /// Idle slots' memory (a slot taken is not in the vector).
    free: Mutex<(usize, Vec<Vec<argon2::Block>>)>,
    cv: Condvar,
    limit: usize,
}

fn pool() -> &'static VerifierPool {
    static POOL: OnceLock<VerifierPool> = OnceLock::new();
    POOL.get_or_init(|| VerifierPool {
        free: Mutex::new((0, Vec::new())),
        cv: Condvar::new(),
        limit: max_concurrent_verifications(),
    })
}

/// A taken slot; gives its memory back (and wakes a waiter) when dropped.
struct Slot {
    memory: Vec<argon2::Block>,
}

impl VerifierPool {
    /// Blocks until fewer than `limit` verifications run.
    fn take(&self) -> Slot {
        let mut state = lock(&self.free);
        while state.0 >= self.limit {
            state = self.cv.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        state.0 += 1;
        Slot { memory: state.1.pop().unwrap_or_default() }
    }

    fn give_back(&self, memory: Vec<argon2::Block>) {
        let mut state = lock(&self.free);
        state.0 = state.0.saturating_sub(1);
        state.1.push(memory);
        drop(state);
        self.cv.notify_one();
    }
}

/// Verifies `password` against a PHC string, at most [`max_concurrent_verifications`] at a
/// time process-wide, reusing the slot's memory. Any parse failure is a mismatch.
pub(super) fn verify_bounded(phc: &str, password: &[u8]) -> bool {
    use argon2::password_hash::{Output, PasswordHash};
    use argon2::{Algorithm, Argon2, Params, Version};
    let Ok(hash) = PasswordHash::new(phc) else { return false };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else { return false };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm) else { return false };
    let version = match hash.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(&hash) else { return false };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else { return false };
    let blocks = params.block_count();
    let argon = Argon2::new(algorithm, version, params);
    let mut out = vec![0u8; expected.len()];

    let p = pool();
    let mut slot = p.take();
    if slot.memory.len() < blocks {
        slot.memory.resize(blocks, argon2::Block::new());
    }
    let result = argon.hash_password_into_with_memory(password, salt, &mut out, &mut slot.memory[..blocks]);
    // Keep at most our own parameters' worth of memory per slot: an imported hash with a
    // larger m_cost must not pin its memory forever.
    let keep = usize::try_from(super::ARGON2_M_COST_KIB).unwrap_or(usize::MAX);
    if slot.memory.len() > keep {
        slot.memory.truncate(keep);
        slot.memory.shrink_to_fit();
    }
    p.give_back(std::mem::take(&mut slot.memory));
    if result.is_err() {
        return false;
    }
    // Output's == is constant-time.
    Output::new(&out).map(|o| o == expected).unwrap_or(false)
}

struct Entry {
    pw_digest: [u8; 32],
    phc: String,
    verified_at: Instant,
}

struct Cache {
    key: [u8; 32],
    entries: Mutex<HashMap<(PathBuf, String), Entry>>,
}

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| {
        use rand::RngCore;
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        Cache { key, entries: Mutex::new(HashMap::new()) }
    })
}

fn digest(key: &[u8; 32], password: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(key);
    h.update(password);
    h.finalize().into()
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// True when `password` was verified against exactly `phc` for `address` within [`CACHE_TTL`].
pub(super) fn hit(root: &Path, address: &str, phc: &str, password: &[u8]) -> bool {
    let c = cache();
    let d = digest(&c.key, password);
    let mut entries = lock(&c.entries);
    let key = (root.to_path_buf(), address.to_string());
    let Some(e) = entries.get(&key) else { return false };
    if e.verified_at.elapsed() >= CACHE_TTL || e.phc != phc {
        entries.remove(&key);
        return false;
    }
    ct_eq(&e.pw_digest, &d)
}

/// Records a successful argon2 verification. Call only after one.
pub(super) fn remember(root: &Path, address: &str, phc: &str, password: &[u8]) {
    let c = cache();
    let entry = Entry { pw_digest: digest(&c.key, password), phc: phc.to_string(), verified_at: Instant::now() };
    let mut entries = lock(&c.entries);
    if entries.len() >= CACHE_MAX_ENTRIES {
        entries.retain(|_, e| e.verified_at.elapsed() < CACHE_TTL);
        if entries.len() >= CACHE_MAX_ENTRIES {
            // Still full of fresh entries: drop the oldest eighth at once (amortised O(1)).
            let mut times: Vec<Instant> = entries.values().map(|e| e.verified_at).collect();
            let nth = times.len() / 8;
            let (_, cutoff, _) = times.select_nth_unstable(nth);
            let cutoff = *cutoff;
            entries.retain(|_, e| e.verified_at > cutoff);
        }
    }
    entries.insert((root.to_path_buf(), address.to_string()), entry);
}

/// Number of cached logins (tests).
#[cfg(test)]
pub(super) fn len() -> usize {
    lock(&cache().entries).len()
}
