//! The per-user change log on disk: segment files, record framing, scanning and tail repair.
//!
//! What it is: `log/<first-seq, 20 digits>.log` segment files, each an 8-byte magic followed by
//! frames `[len u32][crc32 u32][seq u64][payload]` (little-endian; the CRC covers seq and
//! payload). [`LogWriter`] appends frames; [`scan`] reads them back, stopping at the first torn
//! or corrupt frame. See `docs/store-format.md` for the byte layout.
//! What it is not: the meaning of a payload (`record`) or when to fsync (`user` does group commit).
//!
//! Invariants:
//! - Sequence numbers are contiguous: a segment named N holds records N, N+1, ...; the next
//!   segment starts where the previous ended. Only the newest segment can have a torn tail.
//! - A failed append leaves the file as it was (truncated back) or reports that it could not.
//! - Scanning never allocates more than [`MAX_RECORD_BYTES`] for one frame and never panics.

use crate::StoreError;
use crate::record::MAX_RECORD_BYTES;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// First bytes of every segment: "HRMSLOG" and format version 1.
pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"HRMSLOG\x01";
/// Bytes before a payload: len, crc, seq.
pub(crate) const FRAME_HEADER: usize = 16;

pub(crate) fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.log")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Frames one record.
pub(crate) fn frame(seq: u64, payload: &[u8], out: &mut Vec<u8>) {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&seq.to_le_bytes());
    crc.update(payload);
    out.extend_from_slice(&u32::try_from(payload.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(payload);
}

#[derive(Debug, Clone)]
pub(crate) struct Segment {
    pub first_seq: u64,
    pub path: PathBuf,
}

/// The segments in `dir`, oldest first.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<Segment>, StoreError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(first_seq) = entry.file_name().to_str().and_then(parse_segment_name) {
            out.push(Segment { first_seq, path: entry.path() });
        }
    }
    out.sort_by_key(|s| s.first_seq);
    Ok(out)
}

/// How a scan ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScanEnd {
    /// Bytes of the file up to the end of the last good frame (at least the magic).
    pub good_len: u64,
    /// The seq of the last good frame, or `first_seq - 1` if none.
    pub last_seq: u64,
    /// Why the scan stopped early, if it did (a torn or corrupt tail).
    pub damage: Option<String>,
}

/// Reads `segment`, calling `each(seq, payload)` for every good frame in order. Stops at the
/// first frame that is incomplete, too long, fails its CRC or breaks the seq sequence.
/// A missing or wrong magic is reported as damage at offset 0 with `good_len` 0.
pub(crate) fn scan(
    segment: &Segment,
    mut each: impl FnMut(u64, &[u8]) -> Result<(), StoreError>,
) -> Result<ScanEnd, StoreError> {
    let file = File::open(&segment.path)?;
    let mut r = BufReader::with_capacity(256 * 1024, file);
    let mut magic = [0u8; 8];
    let mut end = ScanEnd { good_len: 0, last_seq: segment.first_seq.saturating_sub(1), damage: None };
    if read_full(&mut r, &mut magic)? < magic.len() || &magic != SEGMENT_MAGIC {
        end.damage = Some("missing segment header".into());
        return Ok(end);
    }
    end.good_len = SEGMENT_MAGIC.len() as u64;
    let mut payload = Vec::new();
    loop {
        let mut header = [0u8; FRAME_HEADER];
        let got = read_full(&mut r, &mut header)?;
        if got == 0 {
            return Ok(end);
        }
        if got < FRAME_HEADER {
            end.damage = Some(format!("torn frame header at {}", end.good_len));
            return Ok(end);
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let mut seq_bytes = [0u8; 8];
        seq_bytes.copy_from_slice(&header[8..16]);
        let seq = u64::from_le_bytes(seq_bytes);
        if len > MAX_RECORD_BYTES {
            end.damage = Some(format!("frame length {len} beyond the limit at {}", end.good_len));
            return Ok(end);
        }
        payload.clear();
        payload.resize(len, 0);
        if read_full(&mut r, &mut payload)? < len {
            end.damage = Some(format!("torn frame payload at {}", end.good_len));
            return Ok(end);
        }
        let mut h = crc32fast::Hasher::new();
        h.update(&seq_bytes);
        h.update(&payload);
        if h.finalize() != crc {
            end.damage = Some(format!("frame CRC mismatch at {}", end.good_len));
            return Ok(end);
        }
        if seq != end.last_seq.wrapping_add(1) {
            end.damage = Some(format!("frame seq {seq} where {} was expected", end.last_seq.wrapping_add(1)));
            return Ok(end);
        }
        each(seq, &payload)?;
        end.last_seq = seq;
        end.good_len += (FRAME_HEADER + len) as u64;
    }
}

/// Reads until `buf` is full or EOF; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<usize, StoreError> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(n)
}

/// Truncates a damaged tail away and makes the truncation durable.
pub(crate) fn truncate(path: &Path, len: u64) -> Result<(), StoreError> {
    let f = OpenOptions::new().write(true).open(path)?;
    f.set_len(len)?;
    f.sync_all()?;
    Ok(())
}

/// Why an append failed.
#[derive(Debug)]
pub(crate) enum AppendError {
    /// Nothing of the frames remains in the file: the log is as before.
    Clean(StoreError),
    /// Part of the frames may remain and could not be removed: the user must be reloaded.
    Fatal(StoreError),
}

/// Appends frames to the newest segment.
#[derive(Debug)]
pub(crate) struct LogWriter {
    dir: PathBuf,
    file: Arc<File>,
    first_seq: u64,
    len: u64,
}

impl LogWriter {
    /// Creates a new empty segment whose first record will be `first_seq`; durable on return.
    pub(crate) fn create(dir: &Path, first_seq: u64) -> Result<LogWriter, StoreError> {
        let path = dir.join(segment_name(first_seq));
        let mut f = OpenOptions::new().create(true).truncate(true).write(true).open(&path)?;
        f.write_all(SEGMENT_MAGIC)?;
        f.sync_all()?;
        drop(f);
        crate::blob::sync_dir(dir)?;
        Self::open(dir, first_seq, SEGMENT_MAGIC.len() as u64)
    }

    /// Opens an existing, already repaired segment of `len` bytes for appending.
    pub(crate) fn open(dir: &Path, first_seq: u64, len: u64) -> Result<LogWriter, StoreError> {
        let path = dir.join(segment_name(first_seq));
        let file = OpenOptions::new().append(true).open(&path)?;
        Ok(LogWriter { dir: dir.to_path_buf(), file: Arc::new(file), first_seq, len })
    }

    pub(crate) fn first_seq(&self) -> u64 {
        self.first_seq
    }

    /// Whether the segment holds no record yet.
    pub(crate) fn is_empty(&self) -> bool {
        self.len <= SEGMENT_MAGIC.len() as u64
    }

    /// The open segment, for the group-commit fsync.
    pub(crate) fn file(&self) -> Arc<File> {
        Arc::clone(&self.file)
    }

    /// Writes framed records (not fsync'd: the caller syncs, possibly for a group).
    pub(crate) fn append(&mut self, frames: &[u8]) -> Result<(), AppendError> {
        match (&*self.file).write_all(frames) {
            Ok(()) => {
                self.len += frames.len() as u64;
                Ok(())
            }
            Err(e) => match self.file.set_len(self.len) {
                Ok(()) => Err(AppendError::Clean(e.into())),
                Err(_) => Err(AppendError::Fatal(e.into())),
            },
        }
    }

    /// Starts a new segment at `first_seq` (the caller has made the current one durable).
    pub(crate) fn rotate(&mut self, first_seq: u64) -> Result<(), StoreError> {
        *self = LogWriter::create(&self.dir, first_seq)?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;

    fn write_records(dir: &Path, first: u64, payloads: &[&[u8]]) -> LogWriter {
        let mut w = LogWriter::create(dir, first).unwrap();
        for (i, p) in payloads.iter().enumerate() {
            let mut buf = Vec::new();
            frame(first + i as u64, p, &mut buf);
            w.append(&buf).unwrap();
        }
        w
    }

    fn collect(seg: &Segment) -> (Vec<(u64, Vec<u8>)>, ScanEnd) {
        let mut got = Vec::new();
        let end = scan(seg, |s, p| {
            got.push((s, p.to_vec()));
            Ok(())
        })
        .unwrap();
        (got, end)
    }

    #[test]
    fn scan_reads_back_and_stops_at_every_kind_of_damage() {
        let dir = tempfile::tempdir().unwrap();
        write_records(dir.path(), 5, &[b"one", b"two", b"three"]);
        let segs = list_segments(dir.path()).unwrap();
        assert_eq!(segs.len(), 1);
        let (got, end) = collect(&segs[0]);
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), vec![5, 6, 7]);
        assert_eq!(end.damage, None);
        let full = std::fs::read(&segs[0].path).unwrap();
        assert_eq!(end.good_len, full.len() as u64);

        // Every truncation point recovers exactly the complete frames before it.
        let bounds = [8u64, 8 + 16 + 3, 8 + 16 + 3 + 16 + 3];
        for cut in 8..full.len() {
            std::fs::write(&segs[0].path, &full[..cut]).unwrap();
            let (got, end) = collect(&segs[0]);
            let complete = bounds.iter().filter(|b| **b <= cut as u64).count() - 1;
            assert_eq!(got.len(), complete, "cut {cut}");
            assert_eq!(end.good_len, bounds[complete]);
        }
        // Garbage after good records.
        let mut g = full.clone();
        g.extend_from_slice(&[0xff; 40]);
        std::fs::write(&segs[0].path, &g).unwrap();
        let (got, end) = collect(&segs[0]);
        assert_eq!(got.len(), 3);
        assert!(end.damage.is_some());
        assert_eq!(end.good_len, full.len() as u64);
        // A flipped payload byte fails the CRC.
        let mut f = full.clone();
        let last = f.len() - 1;
        f[last] ^= 1;
        std::fs::write(&segs[0].path, &f).unwrap();
        assert_eq!(collect(&segs[0]).0.len(), 2);
        // Bad magic.
        std::fs::write(&segs[0].path, b"garbage!").unwrap();
        let (got, end) = collect(&segs[0]);
        assert!(got.is_empty());
        assert_eq!(end.good_len, 0);
    }

    #[test]
    fn seq_gap_stops_the_scan() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = write_records(dir.path(), 1, &[b"a"]);
        let mut buf = Vec::new();
        frame(3, b"c", &mut buf);
        w.append(&buf).unwrap();
        let segs = list_segments(dir.path()).unwrap();
        let (got, end) = collect(&segs[0]);
        assert_eq!(got.len(), 1);
        assert!(end.damage.unwrap().contains("seq"));
    }

    #[test]
    fn segment_names() {
        assert_eq!(segment_name(42), "00000000000000000042.log");
        assert_eq!(parse_segment_name("00000000000000000042.log"), Some(42));
        assert_eq!(parse_segment_name("42.log"), None);
    }
}
