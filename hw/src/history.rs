//! Daily SMART samples per disk, and how much a counter grew over a window.
//!
//! What it is: one JSON-lines file per disk under a root folder (`ROOT/<serial>.jsonl`), one
//! [`Sample`] per calendar day (UTC), at most [`MAX_DAYS`] of them; [`growth`] compares the current
//! reading with the oldest sample inside a window so the verdict can say "growing".
//!
//! What it is not: a time-series database or a log of every sweep. It reads no clock: callers pass
//! the sample's time. It does not judge health ([`crate::verdict`] does).
//!
//! Invariants: a history file is replaced atomically (temporary file, fsync, rename, fsync of the
//! folder), so a crash leaves the old or the new file, never half of one; reading is bounded
//! ([`MAX_FILE_BYTES`], [`MAX_LINE_BYTES`]) and skips lines it cannot parse instead of failing, so one
//! bad line never hides a disk's history; the file name is derived from the serial by
//! [`disk_key`] and can never leave the root folder.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Days of history kept per disk: a little over a year, enough to compare with last year's sample.
pub const MAX_DAYS: usize = 400;
/// Longest line accepted; a sample is ~200 bytes.
pub const MAX_LINE_BYTES: usize = 4096;
/// Largest history file read (`MAX_DAYS` lines at the longest length, plus slack).
pub const MAX_FILE_BYTES: usize = MAX_DAYS * MAX_LINE_BYTES + MAX_LINE_BYTES;
/// Longest file-name key derived from a serial.
pub const MAX_KEY_LEN: usize = 64;
const SECS_PER_DAY: i64 = 86_400;

/// One day's reading of a disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// Unix time (seconds, UTC) of the reading.
    pub at: i64,
    /// Monotonic error counters by stable name (see [`crate::verdict::counter_key`]).
    #[serde(default)]
    pub counters: BTreeMap<String, u64>,
    #[serde(default)]
    pub temperature_c: Option<i16>,
    #[serde(default)]
    pub power_on_hours: Option<u64>,
}

impl Sample {
    /// Days since the Unix epoch (UTC).
    pub fn day(&self) -> i64 {
        self.at.div_euclid(SECS_PER_DAY)
    }
}

/// A disk's loaded history, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    pub samples: Vec<Sample>,
    /// Lines that were too long or did not parse (reported, then dropped on the next write).
    pub skipped_lines: usize,
}

/// What [`record_daily`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The sample was the first of its day and was stored.
    Stored,
    /// A sample for that day already exists; nothing was written.
    AlreadyHaveDay,
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("disk serial {0:?} gives no usable history file name")]
    BadKey(String),
    #[error("history file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// The file-name key for a disk serial: ASCII letters, digits, `.`, `_`, `-` kept, anything else
/// replaced by `_`, a leading `.` replaced, at most [`MAX_KEY_LEN`] characters.
pub fn disk_key(serial: &str) -> Result<String, HistoryError> {
    let trimmed = serial.trim();
    let mut key: String = trimmed
        .chars()
        .take(MAX_KEY_LEN)
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' })
        .collect();
    if key.starts_with('.') {
        key.replace_range(0..1, "_");
    }
    if key.is_empty() || key.chars().all(|c| c == '_') {
        return Err(HistoryError::BadKey(serial.to_string()));
    }
    Ok(key)
}

fn file_for(root: &Path, key: &str) -> PathBuf {
    root.join(format!("{key}.jsonl"))
}

/// Loads a disk's history (empty if there is none yet).
pub fn load(root: &Path, key: &str) -> Result<History, HistoryError> {
    let path = file_for(root, key);
    let io_err = |source| HistoryError::Io { path: path.clone(), source };
    let bytes = match crate::sysfs::read_bounded(&path, MAX_FILE_BYTES) {
        Ok(Some(b)) => b,
        Ok(None) => return Ok(History::default()),
        Err(e) => return Err(io_err(e)),
    };
    Ok(parse(&bytes))
}

/// Parses history file content: one JSON sample a line; bad or over-long lines are counted.
pub fn parse(bytes: &[u8]) -> History {
    let mut h = History::default();
    for line in bytes.split(|&b| b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if line.len() > MAX_LINE_BYTES {
            h.skipped_lines += 1;
            continue;
        }
        match serde_json::from_slice::<Sample>(line) {
            Ok(s) => h.samples.push(s),
            Err(_) => h.skipped_lines += 1,
        }
    }
    h.samples.sort_by_key(|s| s.at);
    h
}

/// Stores `sample` if it is the first of its day, keeping the newest [`MAX_DAYS`] days.
pub fn record_daily(root: &Path, key: &str, sample: &Sample) -> Result<Recorded, HistoryError> {
    let mut h = load(root, key)?;
    if h.samples.iter().any(|s| s.day() == sample.day()) {
        return Ok(Recorded::AlreadyHaveDay);
    }
    h.samples.push(sample.clone());
    h.samples.sort_by_key(|s| s.at);
    let excess = h.samples.len().saturating_sub(MAX_DAYS);
    h.samples.drain(..excess);
    let mut out = Vec::with_capacity(h.samples.len() * 200);
    for s in &h.samples {
        let line = serde_json::to_vec(s).map_err(|e| HistoryError::Io {
            path: file_for(root, key),
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        })?;
        out.extend_from_slice(&line);
        out.push(b'\n');
    }
    write_atomically(root, &file_for(root, key), &out)?;
    Ok(Recorded::Stored)
}

fn write_atomically(root: &Path, path: &Path, content: &[u8]) -> Result<(), HistoryError> {
    let io_err = |source| HistoryError::Io { path: path.to_path_buf(), source };
    fs::create_dir_all(root).map_err(io_err)?;
    let tmp = path.with_extension("jsonl.tmp");
    let mut f = fs::File::create(&tmp).map_err(io_err)?;
    f.write_all(content).map_err(io_err)?;
    f.sync_all().map_err(io_err)?;
    drop(f);
    fs::rename(&tmp, path).map_err(io_err)?;
    fs::File::open(root).and_then(|d| d.sync_all()).map_err(io_err)?;
    Ok(())
}

/// How much each counter of `current` grew since the oldest sample taken within `window_days`
/// before it (and strictly before it in time). Counters without a baseline, or that did not grow
/// (or went backwards, e.g. a firmware reset), are absent from the result.
pub fn growth(samples: &[Sample], current: &Sample, window_days: u32) -> BTreeMap<String, u64> {
    let since = current.at.saturating_sub(i64::from(window_days).saturating_mul(SECS_PER_DAY));
    let baseline = samples.iter().filter(|s| s.at >= since && s.at < current.at).min_by_key(|s| s.at);
    let Some(base) = baseline else { return BTreeMap::new() };
    current
        .counters
        .iter()
        .filter_map(|(k, &now)| {
            let then = *base.counters.get(k)?;
            (now > then).then(|| (k.clone(), now - then))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(day: i64, reallocated: u64) -> Sample {
        Sample {
            at: day * SECS_PER_DAY + 3_600,
            counters: BTreeMap::from([("ata_5".to_string(), reallocated)]),
            temperature_c: Some(35),
            power_on_hours: Some(1_000 + u64::try_from(day).unwrap_or(0) * 24),
        }
    }

    #[test]
    fn disk_keys_are_safe_file_names() {
        assert_eq!(disk_key("WD-CA0ABCDE").ok().as_deref(), Some("WD-CA0ABCDE"));
        assert_eq!(disk_key(" S5GX/../x ").ok().as_deref(), Some("S5GX_.._x"));
        assert_eq!(disk_key("..").ok().as_deref(), Some("_."));
        assert!(disk_key("   ").is_err());
        assert!(disk_key("///").is_err());
        assert_eq!(disk_key(&"A".repeat(200)).map(|k| k.len()).ok(), Some(MAX_KEY_LEN));
    }

    #[test]
    fn one_sample_per_day_bounded_to_max_days() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("hw-history");
        assert_eq!(record_daily(&root, "D1", &sample(100, 0)).ok(), Some(Recorded::Stored));
        let mut later_same_day = sample(100, 5);
        later_same_day.at += 600;
        assert_eq!(record_daily(&root, "D1", &later_same_day).ok(), Some(Recorded::AlreadyHaveDay));
        for day in 101..(101 + MAX_DAYS as i64 + 5) {
            record_daily(&root, "D1", &sample(day, 0)).expect("record");
        }
        let h = load(&root, "D1").expect("load");
        assert_eq!(h.samples.len(), MAX_DAYS);
        assert_eq!(h.samples.first().map(Sample::day), Some(106));
        assert_eq!(h.skipped_lines, 0);
        assert!(!root.join("D1.jsonl.tmp").exists());
    }

    #[test]
    fn corrupt_lines_are_skipped_not_fatal() {
        let good = serde_json::to_string(&sample(5, 1)).expect("json");
        let text = format!("{good}\n{{\"at\": \nnot json\n{}\n\n{good}", "x".repeat(MAX_LINE_BYTES + 1));
        let h = parse(text.as_bytes());
        assert_eq!(h.samples.len(), 2);
        assert_eq!(h.skipped_lines, 3);
        // A missing file is an empty history.
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load(dir.path(), "nobody").expect("load"), History::default());
    }

    #[test]
    fn growth_against_oldest_sample_in_window() {
        let history = vec![sample(1, 0), sample(10, 2), sample(20, 3), sample(29, 8)];
        let now = sample(30, 8);
        // Window 30 days from day 30: baseline is day 1 (0) → grew by 8.
        assert_eq!(growth(&history, &now, 30).get("ata_5"), Some(&8));
        // Window 15 days: baseline is day 20 (3) → grew by 5.
        assert_eq!(growth(&history, &now, 15).get("ata_5"), Some(&5));
        // Window 1 day: baseline day 29 (8) → no growth.
        assert!(growth(&history, &now, 1).is_empty());
        // No history: nothing to compare.
        assert!(growth(&[], &now, 30).is_empty());
        // A counter that went backwards is not growth.
        assert!(growth(&[sample(29, 9)], &now, 30).is_empty());
    }
}
