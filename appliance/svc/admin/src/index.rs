//! The directory indexes: in-memory copies of the directory's account and alias lists, so that
//! searching and paging 50,000 accounts or aliases does not read 50,000 files per page.
//!
//! The directory keeps one file per record: `domains/<d>/accounts/<local>.json` per account,
//! `domains/<d>/aliases/<local>.json` per alias and `domains/<d>/catchall.json` for the
//! domain's catch-all. Every write (add, replace, remove, password, quota) is an atomic rename
//! into (or an unlink from) the record's folder, which changes that folder's mtime. So one
//! generic cache, [`DomainIndex`], keeps per domain and per folder the records read and the
//! mtime seen *before* reading them, and looks at a folder again only when its mtime changed.
//! Even then it does not read every file: it lists the folder (names and inode numbers, one
//! `getdents` pass) and reads only the files that are new or were replaced (a replaced record
//! always has a new inode). One alias added to a 50,000-alias domain costs one folder listing
//! and one file read, not 50,000 reads. What differs between the two kinds is a [`Records`]
//! impl: which folders of a domain hold records and how one is read ([`Accounts`]: the
//! `accounts` folder; [`Aliases`]: the `aliases` folder and `catchall.json` in the domain's
//! own folder).
//!
//! What it is not: a source of truth. Writes go to the directory; the index only follows, and
//! a page may lag a change made by the CLI by one refresh (never by more). Checks that guard a
//! write (is the domain empty?) ask the directory, not the index.
//!
//! Invariants:
//! - The mtime is read before the listing, so a change racing the read makes the recorded mtime
//!   older than the folder's and the next refresh reads the folder again.
//! - File times have coarse granularity (a kernel tick); a change in the same tick as the one
//!   recorded would keep the mtime. So a folder is trusted only if its mtime was at least
//!   [`SETTLE`] in the past when it was read; a fresher folder is listed again at the next
//!   refresh (and any file in it with a new inode re-read).
//! - A domain whose folders are all missing is gone (removed between the domain listing and
//!   the read); a missing `aliases` folder alone is a domain without aliases.
//! - No password hash is kept in memory (account summaries only).

use hermes_core::directory::{Alias, Directory, DirectoryError};
use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::DirEntryExt;
use std::path::{Path, PathBuf};
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

/// Where one kind of record lives in a domain and how one is read.
pub trait Records {
    type Item: Clone + std::fmt::Debug;
    /// The folders of `domains/<d>` holding records: (sub-folder, `""` for the domain's own
    /// folder; the one file name taken there, or `None` for every `*.json` not starting with
    /// `.`, temporary files being dot files).
    const FOLDERS: &'static [(&'static str, Option<&'static str>)];
    /// Reads the record of file `<stem>.json` in folder `FOLDERS[folder]` of `domain`;
    /// `None` if it is gone or its name is not a record's.
    fn read(
        directory: &Directory,
        domain: &str,
        folder: usize,
        stem: &str,
    ) -> Result<Option<Self::Item>, DirectoryError>;
    /// The record's address: each domain's list is sorted by it.
    fn address(item: &Self::Item) -> &str;
}

/// Accounts: `domains/<d>/accounts/<local>.json`, kept as [`AccountSummary`].
#[derive(Debug)]
pub struct Accounts;

impl Records for Accounts {
    type Item = AccountSummary;
    const FOLDERS: &'static [(&'static str, Option<&'static str>)] = &[("accounts", None)];
    fn read(
        directory: &Directory,
        domain: &str,
        _folder: usize,
        local: &str,
    ) -> Result<Option<AccountSummary>, DirectoryError> {
        let address = format!("{local}@{domain}");
        // `lookup` validates the name and the record (and resolves subaddresses: a file whose
        // name is not exactly its record's address is not an account).
        Ok(directory.lookup(&address)?.filter(|a| a.address == address).map(|a| AccountSummary {
            address: a.address,
            user_id: a.user_id.to_string(),
            quota_bytes: a.quota_bytes,
            quota_messages: a.quota_messages,
            created: a.created,
        }))
    }
    fn address(item: &AccountSummary) -> &str {
        &item.address
    }
}

/// Aliases: `domains/<d>/aliases/<local>.json` and the catch-all `domains/<d>/catchall.json`.
#[derive(Debug)]
pub struct Aliases;

impl Records for Aliases {
    type Item = Alias;
    const FOLDERS: &'static [(&'static str, Option<&'static str>)] = &[("aliases", None), ("", Some("catchall.json"))];
    fn read(directory: &Directory, domain: &str, folder: usize, local: &str) -> Result<Option<Alias>, DirectoryError> {
        if folder == 1 {
            return directory.catch_all(domain);
        }
        let address = format!("{local}@{domain}");
        // The directory reads `<normalised local>.json`: a file named otherwise is not an alias.
        Ok(directory.lookup_alias(&address)?.filter(|a| a.address == address))
    }
    fn address(item: &Alias) -> &str {
        &item.address
    }
}

/// One folder's records as last read.
#[derive(Debug)]
struct Folder<T> {
    /// The folder's mtime read before the listing; `None`: missing or not read yet.
    mtime: Option<SystemTime>,
    /// The mtime was at least [`SETTLE`] old when read: an equal mtime means no change.
    settled: bool,
    exists: bool,
    /// Counts listings; a record not marked with the current one was not listed (removed).
    listing: u64,
    /// File stem → its record.
    files: HashMap<String, FileRecord<T>>,
}

#[derive(Debug)]
struct FileRecord<T> {
    /// Inode of the record's file: a replaced record has a new one.
    ino: u64,
    /// The listing that last saw the file.
    listing: u64,
    item: T,
}

impl<T> Default for Folder<T> {
    fn default() -> Self {
        Folder { mtime: None, settled: false, exists: false, listing: 0, files: HashMap::new() }
    }
}

impl<T> Folder<T> {
    /// Brings the folder at `path` up to date; `Ok(true)` if any record was added, replaced or
    /// removed. An unchanged file costs a name and a hash lookup (no copy, no file read), so
    /// the listings repeated while a folder's mtime settles stay cheap. On error the folder
    /// is left unsettled and partly updated; the caller drops it.
    fn refresh(
        &mut self,
        path: &Path,
        only: Option<&str>,
        mut read: impl FnMut(&str) -> Result<Option<T>, DirectoryError>,
    ) -> Result<bool, DirectoryError> {
        let now = SystemTime::now();
        let m = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        if self.settled && m.is_some() && self.mtime == m {
            return Ok(false);
        }
        self.mtime = None;
        self.settled = false;
        let entries = match std::fs::read_dir(path) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.exists = false;
                let changed = !self.files.is_empty();
                self.files.clear();
                return Ok(changed);
            }
            Err(e) => return Err(e.into()),
        };
        self.listing += 1;
        let listing = self.listing;
        let mut changed = false;
        let mut seen = 0;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let stem = match only {
                Some(want) if name != want => continue,
                _ => match name.strip_suffix(".json") {
                    Some(s) if !s.starts_with('.') => s,
                    _ => continue,
                },
            };
            let ino = entry.ino();
            if let Some(f) = self.files.get_mut(stem)
                && f.ino == ino
            {
                f.listing = listing;
                seen += 1;
                continue;
            }
            // New or replaced; a file removed since the listing is simply gone.
            changed = true;
            self.files.remove(stem);
            if let Some(item) = read(stem)? {
                self.files.insert(stem.to_string(), FileRecord { ino, listing, item });
                seen += 1;
            }
        }
        if seen != self.files.len() {
            // Records this listing did not see were removed.
            self.files.retain(|_, f| f.listing == listing);
            changed = true;
        }
        self.exists = true;
        self.mtime = m;
        self.settled = m.is_some_and(|m| now.duration_since(m).is_ok_and(|age| age >= SETTLE));
        Ok(changed)
    }
}

#[derive(Debug)]
struct DomainEntry<T> {
    /// One per [`Records::FOLDERS`].
    folders: Vec<Folder<T>>,
    /// Every folder's records, sorted by address.
    sorted: Arc<Vec<T>>,
}

#[derive(Debug)]
struct Cache<T> {
    domains: BTreeMap<String, DomainEntry<T>>,
    /// Bumped whenever a domain's records change or a domain comes or goes.
    generation: u64,
    /// Every domain's records sorted by address, and the generation it was built at.
    merged: Option<(u64, Arc<Vec<T>>)>,
}

/// Every domain's records, sorted by domain and, within one, by address.
pub type Snapshot<T = AccountSummary> = Vec<(String, Arc<Vec<T>>)>;

/// A per-domain, per-folder cache of one kind of directory record (see the module doc).
#[derive(Debug)]
pub struct DomainIndex<R: Records> {
    directory: Directory,
    cache: Mutex<Cache<R::Item>>,
}

/// The account index (summaries, no password hashes).
pub type AccountIndex = DomainIndex<Accounts>;
/// The alias index (aliases and catch-alls).
pub type AliasIndex = DomainIndex<Aliases>;

impl<R: Records> DomainIndex<R> {
    pub fn new(directory: Directory) -> DomainIndex<R> {
        DomainIndex { directory, cache: Mutex::new(Cache { domains: BTreeMap::new(), generation: 0, merged: None }) }
    }

    fn folder_path(&self, domain: &str, sub: &str) -> PathBuf {
        let d = self.directory.root().join("domains").join(domain);
        if sub.is_empty() { d } else { d.join(sub) }
    }

    /// Brings `cache` up to date with the directory. Blocking (file I/O).
    fn refresh(&self, cache: &mut Cache<R::Item>) -> Result<(), DirectoryError> {
        let domains = self.directory.list_domains()?;
        let before = cache.domains.len();
        cache.domains.retain(|d, _| domains.binary_search(d).is_ok());
        if cache.domains.len() != before {
            cache.generation += 1;
        }
        for d in &domains {
            let mut entry = cache.domains.remove(d).unwrap_or_else(|| DomainEntry {
                folders: R::FOLDERS.iter().map(|_| Folder::default()).collect(),
                sorted: Arc::new(Vec::new()),
            });
            let was_new = entry.folders.iter().all(|f| !f.exists);
            let mut changed = false;
            for (i, ((sub, only), folder)) in R::FOLDERS.iter().zip(entry.folders.iter_mut()).enumerate() {
                let path = self.folder_path(d, sub);
                match folder.refresh(&path, *only, |stem| R::read(&self.directory, d, i, stem)) {
                    Ok(c) => changed |= c,
                    Err(e) => {
                        // Dropped: the domain is read afresh next time.
                        cache.generation += 1;
                        return Err(e);
                    }
                }
            }
            if entry.folders.iter().all(|f| !f.exists) {
                // Removed between the listing and now: it is gone.
                if !was_new {
                    cache.generation += 1;
                }
                continue;
            }
            if changed || was_new {
                let mut all: Vec<R::Item> =
                    entry.folders.iter().flat_map(|f| f.files.values().map(|r| r.item.clone())).collect();
                all.sort_by(|a, b| R::address(a).cmp(R::address(b)));
                entry.sorted = Arc::new(all);
                cache.generation += 1;
            }
            cache.domains.insert(d.clone(), entry);
        }
        Ok(())
    }

    /// Brings the index up to date and returns every domain's records. Blocking (file I/O).
    pub fn snapshot(&self) -> Result<Snapshot<R::Item>, DirectoryError> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        self.refresh(&mut cache)?;
        Ok(cache.domains.iter().map(|(d, e)| (d.clone(), e.sorted.clone())).collect())
    }

    /// Brings the index up to date and returns the records of every domain (`None`) or of
    /// one, sorted by address. A domain that does not exist has none; an invalid name is
    /// [`DirectoryError::InvalidDomain`]. Blocking (file I/O).
    pub fn list(&self, domain: Option<&str>) -> Result<Arc<Vec<R::Item>>, DirectoryError> {
        let want = match domain {
            Some(d) => Some(
                hermes_core::directory::normalize_domain(d)
                    .ok_or_else(|| DirectoryError::InvalidDomain(d.to_string()))?,
            ),
            None => None,
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        self.refresh(&mut cache)?;
        if let Some(d) = want {
            return Ok(cache.domains.get(&d).map(|e| e.sorted.clone()).unwrap_or_default());
        }
        let generation = cache.generation;
        if let Some((g, merged)) = &cache.merged
            && *g == generation
        {
            return Ok(merged.clone());
        }
        let mut all: Vec<R::Item> = cache.domains.values().flat_map(|e| e.sorted.iter().cloned()).collect();
        // Each domain's run is sorted already; the stable sort merges runs.
        all.sort_by(|a, b| R::address(a).cmp(R::address(b)));
        let all = Arc::new(all);
        cache.merged = Some((generation, all.clone()));
        Ok(all)
    }
}

/// One page of an account search.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Page {
    /// Accounts matching the search, in all pages.
    pub total: usize,
    pub page: usize,
    pub per_page: usize,
    pub accounts: Vec<AccountSummary>,
}

impl DomainIndex<Accounts> {
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

    fn addresses(list: &[Alias]) -> Vec<&str> {
        list.iter().map(|a| a.address.as_str()).collect()
    }

    fn targets_of(idx: &AliasIndex, address: &str) -> Vec<String> {
        idx.list(None).unwrap().iter().find(|a| a.address == address).map(|a| a.targets.clone()).unwrap_or_default()
    }

    /// Sets a folder's mtime, as a write in the same file-time tick (or long ago) would leave it.
    fn set_mtime(path: &std::path::Path, t: SystemTime) {
        std::fs::File::open(path).unwrap().set_modified(t).unwrap();
    }

    #[test]
    fn aliases_and_catch_alls_follow_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Directory::open(&DataDir::new(tmp.path())).unwrap();
        dir.add_domain("a.org").unwrap();
        dir.add_domain("b.org").unwrap();
        let idx = AliasIndex::new(dir.clone());
        assert!(idx.list(None).unwrap().is_empty(), "domains without an aliases folder have none");
        dir.add_alias("team@a.org", &["one@x.org".into()]).unwrap();
        dir.add_alias("@a.org", &["catch@x.org".into()]).unwrap();
        dir.add_alias("list@b.org", &["Two@X.org".into()]).unwrap();
        // Address order across domains, as the directory lists them.
        let all = idx.list(None).unwrap();
        assert_eq!(addresses(&all), ["@a.org", "list@b.org", "team@a.org"]);
        assert_eq!(addresses(&all), addresses(&dir.list_aliases(None).unwrap()));
        assert_eq!(addresses(&idx.list(Some("A.org")).unwrap()), ["@a.org", "team@a.org"]);
        assert!(idx.list(Some("nowhere.org")).unwrap().is_empty());
        assert!(matches!(idx.list(Some("not a domain")), Err(DirectoryError::InvalidDomain(_))));
        // Replaced behind the index's back (as the CLI would), in the same tick: seen.
        dir.add_alias("team@a.org", &["one@x.org".into(), "three@x.org".into()]).unwrap();
        dir.add_alias("@a.org", &["other@x.org".into()]).unwrap();
        assert_eq!(targets_of(&idx, "team@a.org"), ["one@x.org", "three@x.org"]);
        assert_eq!(targets_of(&idx, "@a.org"), ["other@x.org"]);
        // Removed: gone, the catch-all too.
        dir.remove_alias("@a.org").unwrap();
        dir.remove_alias("list@b.org").unwrap();
        assert_eq!(addresses(&idx.list(None).unwrap()), ["team@a.org"]);
        assert!(idx.list(Some("b.org")).unwrap().is_empty());
        // A domain added later, with an alias and a catch-all; a domain removed.
        dir.add_domain("c.org").unwrap();
        dir.add_alias("help@c.org", &["one@x.org".into()]).unwrap();
        dir.add_alias("@c.org", &["one@x.org".into()]).unwrap();
        dir.remove_domain("b.org").unwrap();
        assert_eq!(addresses(&idx.list(None).unwrap()), ["@c.org", "help@c.org", "team@a.org"]);
        let snap = idx.snapshot().unwrap();
        let domains: Vec<&str> = snap.iter().map(|(d, _)| d.as_str()).collect();
        assert_eq!(domains, ["a.org", "c.org"]);
    }

    /// SETTLE: a folder read while its mtime was fresh is listed again even if a replacement
    /// left the mtime unchanged (same file-time tick); one whose mtime had settled is trusted
    /// until the mtime moves.
    #[test]
    fn alias_replaced_in_the_same_mtime_tick_is_reread() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Directory::open(&DataDir::new(tmp.path())).unwrap();
        dir.add_domain("a.org").unwrap();
        dir.add_alias("team@a.org", &["v1@x.org".into()]).unwrap();
        dir.add_alias("@a.org", &["v1@x.org".into()]).unwrap();
        let domain_dir = dir.root().join("domains").join("a.org");
        let aliases_dir = domain_dir.join("aliases");
        let idx = AliasIndex::new(dir.clone());

        // Fresh mtimes (ahead of the clock, so never SETTLE old however slow the machine): the
        // replacement keeps them, as a write in the same tick would.
        let fresh = SystemTime::now() + Duration::from_secs(60);
        set_mtime(&aliases_dir, fresh);
        set_mtime(&domain_dir, fresh);
        assert_eq!(targets_of(&idx, "team@a.org"), ["v1@x.org"]);
        dir.add_alias("team@a.org", &["v2@x.org".into()]).unwrap();
        dir.add_alias("@a.org", &["v2@x.org".into()]).unwrap();
        set_mtime(&aliases_dir, fresh);
        set_mtime(&domain_dir, fresh);
        assert_eq!(targets_of(&idx, "team@a.org"), ["v2@x.org"]);
        assert_eq!(targets_of(&idx, "@a.org"), ["v2@x.org"]);

        // Settled mtimes: read once, then trusted while they stay (no file is read)...
        let old = SystemTime::now() - Duration::from_secs(60);
        set_mtime(&aliases_dir, old);
        set_mtime(&domain_dir, old);
        assert_eq!(targets_of(&idx, "team@a.org"), ["v2@x.org"]);
        dir.add_alias("team@a.org", &["v3@x.org".into()]).unwrap();
        dir.add_alias("@a.org", &["v3@x.org".into()]).unwrap();
        set_mtime(&aliases_dir, old);
        set_mtime(&domain_dir, old);
        assert_eq!(targets_of(&idx, "team@a.org"), ["v2@x.org"], "a settled, unchanged folder is not re-read");
        // ...and read again as soon as they move.
        set_mtime(&aliases_dir, SystemTime::now());
        assert_eq!(targets_of(&idx, "team@a.org"), ["v3@x.org"]);
        assert_eq!(targets_of(&idx, "@a.org"), ["v2@x.org"], "the domain folder has not moved yet");
        set_mtime(&domain_dir, SystemTime::now());
        assert_eq!(targets_of(&idx, "@a.org"), ["v3@x.org"]);
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

    /// The alias index at scale (`HERMES_INDEX_ALIASES`, default 5,000, in 10 domains): a warm
    /// listing reads no file and returns the shared list.
    #[test]
    fn alias_index_scale() {
        let n: usize = std::env::var("HERMES_INDEX_ALIASES").ok().and_then(|v| v.parse().ok()).unwrap_or(5_000);
        let tmp = tempfile::tempdir().unwrap();
        let dir = Directory::open(&DataDir::new(tmp.path())).unwrap();
        for d in 0..10 {
            dir.add_domain(&format!("d{d}.org")).unwrap();
        }
        for i in 0..n {
            dir.add_alias(&format!("list{i}@d{}.org", i % 10), &[format!("user{i}@x.org")]).unwrap();
        }
        let idx = AliasIndex::new(dir.clone());
        let t = std::time::Instant::now();
        assert_eq!(idx.list(None).unwrap().len(), n);
        let cold = t.elapsed();
        std::thread::sleep(SETTLE + Duration::from_millis(100));
        let first = idx.list(None).unwrap();
        let t = std::time::Instant::now();
        let again = idx.list(None).unwrap();
        let warm = t.elapsed();
        assert!(Arc::ptr_eq(&first, &again), "an unchanged directory gives the same list, not a copy");
        dir.add_alias("zz-new@d3.org", &["x@x.org".into()]).unwrap();
        let t = std::time::Instant::now();
        let after = idx.list(None).unwrap();
        let incremental = t.elapsed();
        assert_eq!(after.len(), n + 1);
        assert_eq!(after.last().unwrap().address, "zz-new@d3.org");
        // Within SETTLE of that change the changed domain's folder is listed again (no file read).
        let t = std::time::Instant::now();
        let unsettled = idx.list(None).unwrap();
        let relist = t.elapsed();
        assert!(Arc::ptr_eq(&after, &unsettled), "a listing that finds no change keeps the list");
        eprintln!(
            "alias_index_scale: {n} aliases in 10 domains: cold load {cold:?}, warm list {warm:?}, \
             after one change {incremental:?}, again within SETTLE {relist:?}"
        );
        assert!(warm < Duration::from_millis(50), "warm listing took {warm:?}");
    }
}
