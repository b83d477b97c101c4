//! The account index: an in-memory copy of the directory's account list, so that searching and
//! paging 50,000 accounts does not read 50,000 files per page.
//!
//! The directory keeps one file per account (`domains/<d>/accounts/<local>.json`). Every write
//! to a domain's accounts (add, remove, password, quota: all are a rename into that folder)
//! changes the folder's mtime, so the index keeps, per domain, the accounts read and the mtime
//! seen *before* reading them, and looks at a domain again only when its mtime changed. Even
//! then it does not read every file: it lists the folder (names and inode numbers, one
//! `getdents` pass) and reads only the files that are new or were replaced (every directory
//! write is an atomic rename, so a changed record always has a new inode). One account added
//! to a 50,000-account domain costs one folder listing and one file read, not 50,000 reads.
//!
//! What it is not: a source of truth. Writes go to the directory; the index only follows, and
//! a page may lag a change made by the CLI by one refresh (never by more).
//!
//! Invariants:
//! - The mtime is read before the listing, so a change racing the read makes the recorded mtime
//!   older than the folder's and the next refresh reads the domain again.
//! - File times have coarse granularity (a kernel tick); a change in the same tick as the one
//!   recorded would keep the mtime. So an entry is trusted only if its mtime was at least
//!   [`SETTLE`] in the past when it was read; a fresher entry is read again at the next refresh.
//! - No password hash is kept in memory (summaries only).

use hermes_core::directory::{Directory, DirectoryError};
use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::DirEntryExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Longer than any file-time granularity (Linux: one jiffy, at most 10 ms; some filesystems 1 s).
pub const SETTLE: Duration = Duration::from_secs(2);

/// An account without its password hash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AccountSummary {
    pub address: String,
    pub user_id: String,
    pub quota_bytes: u64,
    /// RFC 9208 MESSAGE limit: `null` (the site default), `"unlimited"` or a number.
    pub quota_messages: hermes_core::directory::MessageQuota,
    pub created: i64,
}

#[derive(Debug)]
struct DomainEntry {
    mtime: Option<SystemTime>,
    settled: bool,
    accounts: Arc<Vec<AccountSummary>>,
    /// Local part → (inode of its record file, its summary).
    files: HashMap<String, (u64, AccountSummary)>,
}

/// Every domain's accounts, sorted by domain and address.
pub type Snapshot = Vec<(String, Arc<Vec<AccountSummary>>)>;

/// One page of a search.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Page {
    /// Accounts matching the search, in all pages.
    pub total: usize,
    pub page: usize,
    pub per_page: usize,
    pub accounts: Vec<AccountSummary>,
}

#[derive(Debug)]
pub struct AccountIndex {
    directory: Directory,
    domains: Mutex<BTreeMap<String, DomainEntry>>,
}

fn mtime(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl AccountIndex {
    pub fn new(directory: Directory) -> AccountIndex {
        AccountIndex { directory, domains: Mutex::new(BTreeMap::new()) }
    }

    /// Brings the index up to date and returns every domain's accounts. Blocking (file I/O).
    pub fn snapshot(&self) -> Result<Snapshot, DirectoryError> {
        let domains = self.directory.list_domains()?;
        let mut cache = self.domains.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|d, _| domains.binary_search(d).is_ok());
        for d in &domains {
            let dir = self.directory.root().join("domains").join(d).join("accounts");
            let now = SystemTime::now();
            let m = mtime(&dir);
            if let Some(e) = cache.get(d)
                && e.settled
                && e.mtime == m
                && m.is_some()
            {
                continue;
            }
            let old = cache.remove(d).map(|e| e.files).unwrap_or_default();
            let files = match self.read_domain(d, &dir, old) {
                Ok(f) => f,
                // Removed between the listing and now: it is gone.
                Err(DirectoryError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let mut accounts: Vec<AccountSummary> = files.values().map(|(_, a)| a.clone()).collect();
            accounts.sort_by(|a, b| a.address.cmp(&b.address));
            let settled = m.is_some_and(|m| now.duration_since(m).is_ok_and(|age| age >= SETTLE));
            cache.insert(d.clone(), DomainEntry { mtime: m, settled, accounts: Arc::new(accounts), files });
        }
        Ok(cache.iter().map(|(d, e)| (d.clone(), e.accounts.clone())).collect())
    }

    /// Lists one domain's account files, reusing `old` summaries whose file (inode) is unchanged.
    fn read_domain(
        &self,
        domain: &str,
        dir: &std::path::Path,
        mut old: HashMap<String, (u64, AccountSummary)>,
    ) -> Result<HashMap<String, (u64, AccountSummary)>, DirectoryError> {
        let mut files = HashMap::with_capacity(old.len() + 16);
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let ino = entry.ino();
            let name = entry.file_name();
            // Temporary and trash files start with '.'; no valid local part does.
            let Some(local) = name.to_str().and_then(|n| n.strip_suffix(".json")).filter(|l| !l.starts_with('.'))
            else {
                continue;
            };
            if let Some((old_ino, summary)) = old.remove(local)
                && old_ino == ino
            {
                files.insert(local.to_string(), (ino, summary));
                continue;
            }
            // New or replaced. `lookup` validates the name and the record; a file removed
            // since the listing is simply gone.
            if let Some(a) = self.directory.lookup(&format!("{local}@{domain}"))?
                && a.address == format!("{local}@{domain}")
            {
                let summary = AccountSummary {
                    address: a.address,
                    user_id: a.user_id.to_string(),
                    quota_bytes: a.quota_bytes,
                    quota_messages: a.quota_messages,
                    created: a.created,
                };
                files.insert(local.to_string(), (ino, summary));
            }
        }
        Ok(files)
    }

    /// Accounts whose address contains `query` (case-insensitive; empty: all), optionally in
    /// one domain, sorted by address; page `page` (from 1) of `per_page`.
    pub fn search(
        &self,
        query: &str,
        domain: Option<&str>,
        page: usize,
        per_page: usize,
    ) -> Result<Page, DirectoryError> {
        let snap = self.snapshot()?;
        let q = query.trim().to_ascii_lowercase();
        let per_page = per_page.clamp(1, 500);
        let page = page.max(1);
        let skip = (page - 1).saturating_mul(per_page);
        let mut total = 0;
        let mut out = Vec::with_capacity(per_page);
        // Domains are sorted and each domain's accounts are sorted by address; addresses
        // sort by local part within a domain, so the result is ordered by (domain, address).
        for (d, accounts) in &snap {
            if domain.is_some_and(|want| want != d) {
                continue;
            }
            for a in accounts.iter() {
                if q.is_empty() || a.address.contains(&q) {
                    if total >= skip && out.len() < per_page {
                        out.push(a.clone());
                    }
                    total += 1;
                }
            }
        }
        Ok(Page { total, page, per_page, accounts: out })
    }

    /// (accounts per domain) for the domain list and dashboard.
    pub fn counts(&self) -> Result<Vec<(String, usize)>, DirectoryError> {
        Ok(self.snapshot()?.into_iter().map(|(d, a)| (d, a.len())).collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;
    use hermes_core::directory::ImportEntry;
    use hermes_core::paths::DataDir;

    const HASH: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0VKc2t2H7Ye1i4PZ3E3cq3Jb0bQ9oIqKdD3G3lCw0pI";

    fn import(dir: &Directory, domain: &str, n: usize) {
        let entries: Vec<_> = (0..n)
            .map(|i| ImportEntry { address: format!("user{i:05}@{domain}"), phc_hash: HASH.into(), quota_bytes: None })
            .collect();
        dir.import_accounts(&entries).unwrap();
    }

    #[test]
    fn search_pages_and_follows_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Directory::open(&DataDir::new(tmp.path())).unwrap();
        dir.add_domain("a.org").unwrap();
        dir.add_domain("b.org").unwrap();
        import(&dir, "a.org", 30);
        import(&dir, "b.org", 5);
        let idx = AccountIndex::new(dir.clone());
        let p = idx.search("", None, 2, 10).unwrap();
        assert_eq!(p.total, 35);
        assert_eq!(p.accounts[0].address, "user00010@a.org");
        let p = idx.search("USER0000", Some("b.org"), 1, 10).unwrap();
        assert_eq!(p.total, 5);
        // A change made behind the index's back (as the CLI would) is seen at the next search,
        // even within the same file-time tick.
        dir.set_quota("user00003@b.org", 7).unwrap();
        dir.remove_account("user00004@b.org").unwrap();
        let p = idx.search("@b.org", None, 1, 10).unwrap();
        assert_eq!(p.total, 4);
        assert_eq!(p.accounts[3].quota_bytes, 7);
        dir.remove_account("user00000@b.org").unwrap();
        dir.remove_account("user00001@b.org").unwrap();
        dir.remove_account("user00002@b.org").unwrap();
        dir.remove_account("user00003@b.org").unwrap();
        dir.remove_domain("b.org").unwrap();
        assert_eq!(idx.counts().unwrap(), vec![("a.org".to_string(), 30)]);
    }

    /// Run with `--ignored`-free `cargo test -p hermes-svc-admin --release -- --nocapture
    /// index_scale` to see the timings; asserts generous bounds so a busy CI machine passes.
    #[test]
    fn index_scale() {
        let n: usize = std::env::var("HERMES_INDEX_ACCOUNTS").ok().and_then(|v| v.parse().ok()).unwrap_or(5_000);
        let tmp = tempfile::tempdir().unwrap();
        let dir = Directory::open(&DataDir::new(tmp.path())).unwrap();
        dir.add_domain("big.org").unwrap();
        for chunk in 0..n.div_ceil(5000) {
            let entries: Vec<_> = (chunk * 5000..((chunk + 1) * 5000).min(n))
                .map(|i| ImportEntry { address: format!("u{i:06}@big.org"), phc_hash: HASH.into(), quota_bytes: None })
                .collect();
            dir.import_accounts(&entries).unwrap();
        }
        let dir_handle = dir.clone();
        let idx = AccountIndex::new(dir);
        let t = std::time::Instant::now();
        idx.search("", None, 1, 50).unwrap();
        let cold = t.elapsed();
        // Let the folder's mtime settle so the cache is trusted.
        std::thread::sleep(SETTLE + Duration::from_millis(100));
        idx.search("", None, 1, 50).unwrap();
        let t = std::time::Instant::now();
        let p = idx.search("u0012", None, 3, 50).unwrap();
        let warm = t.elapsed();
        assert!(p.total > 0);
        // One account added behind the index's back: one listing and one file read.
        dir_handle
            .import_accounts(&[ImportEntry {
                address: "zz-new@big.org".into(),
                phc_hash: HASH.into(),
                quota_bytes: None,
            }])
            .unwrap();
        let t = std::time::Instant::now();
        let p = idx.search("zz-new", None, 1, 50).unwrap();
        let incremental = t.elapsed();
        assert_eq!(p.total, 1);
        eprintln!(
            "index_scale: {n} accounts: cold load {cold:?}, warm search+page {warm:?}, after one change {incremental:?}"
        );
        assert!(warm < Duration::from_millis(50), "warm search took {warm:?}");
    }
}
