//! LMTP duplicate suppression (`XDEDUP`): which (token, account) pairs the store has already
//! delivered, so a router that re-sends a message after losing an acknowledgement (a crash
//! between the store's `250` and its own queue update) does not deliver it twice.
//!
//! The protocol: the LHLO reply advertises `XDEDUP`; a client sends
//! `MAIL FROM:<addr> XDEDUP=<token>` (1–64 of `[A-Za-z0-9._-]`, checked by
//! `hermes_proto::lmtp`). For each accepted recipient whose account already has the token,
//! the store answers `250 2.0.0 <rcpt> already delivered (duplicate suppressed)` and does
//! nothing else (no Sieve, no redirect, no vacation); the others are delivered as usual and
//! their pairs recorded.
//!
//! On disk: `DATA/store/dedup/<day>.log`, `<day>` the Unix day (seconds / 86400) the records
//! were written; lines `<unix seconds> <user id> <token>\n`, append-only, fsync'd (and the
//! folder fsync'd when a file is created) before the delivery is acknowledged. Every file is
//! read at start; a line that does not parse (a torn last line after a crash) is skipped. The
//! hourly purge drops records older than the retention period (`[store] retention_days`) from
//! memory and deletes day files wholly older than that.
//!
//! What it is not: a message-id based filter (only the client's token counts) and not a
//! guarantee across a crash *before* the acknowledgement: a message durable in the store but
//! not yet recorded was never acknowledged, so the router sends it again and it is stored
//! again, exactly as without XDEDUP (at-least-once; the window is one fsync).
//!
//! Invariants:
//! - A pair is recorded only after its delivery is durable, and durable before the `250`.
//! - While a pair's delivery is in progress it is "claimed": a concurrent delivery of the same
//!   pair is answered `451 4.3.0` (try again), never delivered in parallel.
//! - Memory: one entry per recorded pair within the retention period (~120 bytes each).

use hermes_core::directory::UserId;
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The folder under `DATA/store`.
pub const DEDUP_DIR: &str = "dedup";
/// Longest token (the proto checks it; the store re-checks what it reads back).
pub const MAX_TOKEN: usize = 64;
const DAY: i64 = 86_400;
/// Longest line read back: seconds, a user id, a token and separators, with room to spare.
const MAX_LINE: u64 = 256;

/// Whether `token` is a valid XDEDUP token.
pub fn valid_token(token: &str) -> bool {
    hermes_proto::lmtp::valid_dedup_token(token)
}

#[derive(Debug, Default)]
struct Inner {
    /// (user id, token) → when recorded (Unix seconds).
    seen: HashMap<(UserId, String), i64>,
    /// Pairs whose delivery is in progress.
    claimed: HashSet<(UserId, String)>,
    /// The day file being appended to.
    file: Option<(i64, File)>,
}

/// The duplicate-suppression records of one store.
#[derive(Debug)]
pub struct DedupLog {
    dir: PathBuf,
    inner: Mutex<Inner>,
}

/// What to do with one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Delivered before: answer 250 and do nothing.
    Duplicate,
    /// Another delivery of the same pair is running: answer 451.
    InProgress,
    /// Deliver; the pair is now claimed until [`DedupLog::finish`].
    Deliver,
}

fn parse_line(line: &str) -> Option<(i64, UserId, String)> {
    let mut parts = line.split(' ');
    let at = parts.next()?.parse::<i64>().ok()?;
    let user = UserId::parse(parts.next()?)?;
    let token = parts.next()?;
    if parts.next().is_some() || !valid_token(token) {
        return None;
    }
    Some((at, user, token.to_string()))
}

fn day_of(name: &str) -> Option<i64> {
    let day = name.strip_suffix(".log")?;
    (!day.is_empty() && day.len() <= 12 && day.bytes().all(|b| b.is_ascii_digit())).then(|| day.parse().ok())?
}

impl DedupLog {
    /// Opens (creating, mode 0700) `dir` and loads every record in it.
    pub fn open(dir: &Path) -> std::io::Result<DedupLog> {
        match std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let mut inner = Inner::default();
        let mut skipped = 0usize;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else { continue };
            if day_of(&name).is_none() {
                continue;
            }
            let mut r = BufReader::new(File::open(entry.path())?);
            loop {
                let mut line = Vec::new();
                let n = (&mut r).take(MAX_LINE).read_until(b'\n', &mut line)?;
                if n == 0 {
                    break;
                }
                let parsed = line.strip_suffix(b"\n").and_then(|l| std::str::from_utf8(l).ok()).and_then(parse_line);
                match parsed {
                    Some((at, user, token)) => {
                        let e = inner.seen.entry((user, token)).or_insert(at);
                        *e = (*e).max(at);
                    }
                    None => {
                        skipped += 1;
                        if !line.ends_with(b"\n") && n as u64 == MAX_LINE {
                            // An over-long line: skip the rest of it.
                            let mut rest = Vec::new();
                            r.read_until(b'\n', &mut rest)?;
                        }
                    }
                }
            }
        }
        if skipped > 0 {
            tracing::warn!(
                skipped,
                "duplicate-suppression records: unreadable lines skipped (a torn write after a crash)"
            );
        }
        tracing::debug!(records = inner.seen.len(), "duplicate-suppression records loaded");
        Ok(DedupLog { dir: dir.to_path_buf(), inner: Mutex::new(inner) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Decides for one recipient; on [`Check::Deliver`] the pair is claimed and the caller
    /// must call [`DedupLog::finish`] for it (delivered or not).
    pub fn check(&self, user: &UserId, token: &str) -> Check {
        let mut g = self.lock();
        let key = (user.clone(), token.to_string());
        if g.seen.contains_key(&key) {
            Check::Duplicate
        } else if !g.claimed.insert(key) {
            Check::InProgress
        } else {
            Check::Deliver
        }
    }

    /// Ends the claims of `claimed` and durably records those of them in `delivered` (pairs
    /// whose delivery was acknowledged-to-be). Returns once the records are fsync'd.
    pub fn finish(
        &self,
        claimed: &[(UserId, String)],
        delivered: &[(UserId, String)],
        now: i64,
    ) -> std::io::Result<()> {
        let mut g = self.lock();
        let result = self.append(&mut g, delivered, now);
        for key in claimed {
            g.claimed.remove(key);
        }
        result
    }

    fn append(&self, g: &mut Inner, pairs: &[(UserId, String)], now: i64) -> std::io::Result<()> {
        if pairs.is_empty() {
            return Ok(());
        }
        let mut text = String::with_capacity(pairs.len() * 80);
        for (user, token) in pairs {
            if !valid_token(token) {
                continue;
            }
            text.push_str(&format!("{now} {user} {token}\n"));
        }
        let day = now.div_euclid(DAY);
        if g.file.as_ref().is_none_or(|(d, _)| *d != day) {
            g.file = None;
            let path = self.dir.join(format!("{day}.log"));
            let created = !path.exists();
            let f = OpenOptions::new().create(true).append(true).mode(0o600).open(&path)?;
            if created {
                File::open(&self.dir)?.sync_all()?;
            }
            g.file = Some((day, f));
        }
        let Some((_, f)) = g.file.as_mut() else { return Err(std::io::Error::other("no dedup file")) };
        let written = f.write_all(text.as_bytes()).and_then(|()| f.sync_data());
        if let Err(e) = written {
            // Reopen next time: the file may hold a torn line, which the loader skips.
            g.file = None;
            return Err(e);
        }
        for (user, token) in pairs {
            g.seen.insert((user.clone(), token.clone()), now);
        }
        Ok(())
    }

    /// Drops records written at or before `cutoff` (Unix seconds) and deletes day files that
    /// hold nothing newer. Returns how many records were dropped.
    pub fn purge(&self, cutoff: i64) -> std::io::Result<usize> {
        let mut g = self.lock();
        let before = g.seen.len();
        g.seen.retain(|_, at| *at > cutoff);
        let dropped = before - g.seen.len();
        let current = g.file.as_ref().map(|(d, _)| *d);
        let mut removed = false;
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let Some(day) = entry.file_name().to_str().and_then(day_of) else { continue };
            if Some(day) != current && (day + 1).saturating_mul(DAY) <= cutoff + 1 {
                std::fs::remove_file(entry.path())?;
                removed = true;
            }
        }
        if removed {
            File::open(&self.dir)?.sync_all()?;
        }
        Ok(dropped)
    }

    /// Records held in memory.
    pub fn len(&self) -> usize {
        self.lock().seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    fn user(n: u8) -> UserId {
        UserId::parse(&format!("{:032x}", n)).unwrap()
    }

    #[test]
    fn records_survive_reopen_and_torn_lines_are_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("dedup");
        let now = 1_700_000_000;
        {
            let d = DedupLog::open(&dir).unwrap();
            assert_eq!(d.check(&user(1), "tok-1"), Check::Deliver);
            assert_eq!(d.check(&user(1), "tok-1"), Check::InProgress);
            assert_eq!(d.check(&user(2), "tok-1"), Check::Deliver);
            // user 2's delivery failed: claimed but not delivered.
            d.finish(&[(user(1), "tok-1".into()), (user(2), "tok-1".into())], &[(user(1), "tok-1".into())], now)
                .unwrap();
            assert_eq!(d.check(&user(1), "tok-1"), Check::Duplicate);
            assert_eq!(d.check(&user(2), "tok-1"), Check::Deliver);
        }
        // A torn last line (crash mid-write) and junk are skipped.
        let file = dir.join(format!("{}.log", now / DAY));
        let mut f = OpenOptions::new().append(true).open(&file).unwrap();
        f.write_all(format!("{now} {} tok-2", user(3)).as_bytes()).unwrap();
        std::fs::write(dir.join("junk.txt"), "x").unwrap();
        let d = DedupLog::open(&dir).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d.check(&user(1), "tok-1"), Check::Duplicate);
        assert_eq!(d.check(&user(3), "tok-2"), Check::Deliver);
        assert_eq!(d.check(&user(1), "tok-2"), Check::Deliver);
    }

    #[test]
    fn purge_drops_old_records_and_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("dedup");
        let d = DedupLog::open(&dir).unwrap();
        let old = 1_700_000_000;
        let new = old + 8 * DAY;
        d.finish(&[], &[(user(1), "a".into())], old).unwrap();
        d.finish(&[], &[(user(1), "b".into())], new).unwrap();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
        assert_eq!(d.purge(new - 7 * DAY).unwrap(), 1);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        assert_eq!(d.check(&user(1), "a"), Check::Deliver);
        assert_eq!(d.check(&user(1), "b"), Check::Duplicate);
        let again = DedupLog::open(&dir).unwrap();
        assert_eq!(again.len(), 1);
    }
}
