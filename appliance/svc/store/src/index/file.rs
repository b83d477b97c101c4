//! The search index file of one mailbox: `users/<id>/cache/search-<mailbox-id>.idx`.
//!
//! What it is: an append-only file of zstd-compressed, CRC-checked frames of [`Entry`]s keyed by
//! UID, behind a header naming the mailbox and its UIDVALIDITY; [`load`] reads it back as far
//! as it is intact, [`Appender`] adds frames, [`rewrite`] compacts it.
//! What it is not: durable. Nothing is fsync'd: the file is a cache. A torn or damaged tail is
//! detected (length, CRC, zstd, entry decoding) and cut; a bad header discards the file.
//!
//! Format (all integers little-endian):
//!
//! ```text
//! header  8 bytes  magic "HRMSIDX" 0x01
//!         u64      mailbox id
//!         u32      UIDVALIDITY
//!         u32      body text bound (MAX_INDEXED_BODY) the entries were cut at
//! frames  u32      len: compressed payload length (at most MAX_FRAME bytes)
//!         u32      CRC-32 (IEEE) of the compressed payload
//!         len      zstd frame; decompressed (at most MAX_FRAME_DECODED): u32 n, n x (u32 uid, entry)
//! ```
//!
//! Invariants: a frame is accepted whole or not at all; decoding never allocates more than the
//! bounds above per frame; a later entry for a UID replaces an earlier one (never happens in
//! practice: UIDs are not reused, and the writer indexes each UID once).

use super::entry::{Corrupt, Entry, MAX_INDEXED_BODY, Reader};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// File magic and format version.
pub const MAGIC: &[u8; 8] = b"HRMSIDX\x01";
/// Header length in bytes.
pub const HEADER_LEN: u64 = 24;
/// Largest compressed frame accepted (a frame holds at most [`FRAME_ENTRIES`] entries).
pub const MAX_FRAME: usize = 64 * 1024 * 1024;
/// Largest decompressed frame accepted.
pub const MAX_FRAME_DECODED: usize = 256 * 1024 * 1024;
/// Entries per frame when many are written at once (bounds a frame's size and the work lost
/// to one damaged frame).
pub const FRAME_ENTRIES: usize = 512;
/// zstd level: 3 is zstd's default, fast to write and about 4x on mail text.
const ZSTD_LEVEL: i32 = 3;

/// What [`load`] found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The entries, in file order.
    pub entries: Vec<(u32, Entry)>,
    /// Length of the intact prefix (0: nothing usable, the header must be rewritten).
    pub valid_len: u64,
    /// Why reading stopped early (damaged or foreign file), if it did.
    pub damage: Option<String>,
}

pub(crate) fn header(mailbox: u64, uidvalidity: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN as usize);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&mailbox.to_le_bytes());
    h.extend_from_slice(&uidvalidity.to_le_bytes());
    h.extend_from_slice(&(MAX_INDEXED_BODY as u32).to_le_bytes());
    h
}

/// Reads the intact part of the index file at `path` for this mailbox. A missing file is an
/// empty index; I/O errors other than "not found" are returned.
pub fn load(path: &Path, mailbox: u64, uidvalidity: u32) -> std::io::Result<Loaded> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::default()),
        Err(e) => return Err(e),
    }
    Ok(parse(&bytes, mailbox, uidvalidity))
}

/// [`load`] on bytes already read.
pub fn parse(bytes: &[u8], mailbox: u64, uidvalidity: u32) -> Loaded {
    let mut out = Loaded::default();
    let expected = header(mailbox, uidvalidity);
    if bytes.len() < expected.len() || bytes.get(..expected.len()) != Some(&expected[..]) {
        if !bytes.is_empty() {
            out.damage = Some("bad or foreign header".into());
        }
        return out;
    }
    let mut pos = expected.len();
    out.valid_len = pos as u64;
    while pos < bytes.len() {
        match frame(bytes.get(pos..).unwrap_or_default()) {
            Ok((used, entries)) => {
                pos += used;
                out.valid_len = pos as u64;
                out.entries.extend(entries);
            }
            Err(e) => {
                out.damage = Some(format!("frame at offset {pos}: {e}"));
                break;
            }
        }
    }
    out
}

/// Decodes the frame at the start of `b`: (bytes used, entries).
fn frame(b: &[u8]) -> Result<(usize, Vec<(u32, Entry)>), Corrupt> {
    let mut r = Reader::new(b);
    let len = r.u32()? as usize;
    let crc = r.u32()?;
    if len > MAX_FRAME {
        return Err(Corrupt("frame length over the bound"));
    }
    let payload = b.get(8..8 + len).ok_or(Corrupt("truncated frame"))?;
    if crc32fast::hash(payload) != crc {
        return Err(Corrupt("checksum mismatch"));
    }
    let decoded = decompress(payload)?;
    let mut r = Reader::new(&decoded);
    let n = r.count(4)?;
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let uid = r.u32()?;
        entries.push((uid, Entry::decode(&mut r)?));
    }
    if !r.is_empty() {
        return Err(Corrupt("trailing bytes in frame"));
    }
    Ok((8 + len, entries))
}

/// Decompresses one zstd frame, refusing output beyond [`MAX_FRAME_DECODED`].
fn decompress(payload: &[u8]) -> Result<Vec<u8>, Corrupt> {
    let mut d = zstd::stream::read::Decoder::new(payload).map_err(|_| Corrupt("bad zstd frame"))?;
    let mut out = Vec::new();
    let mut limited = (&mut d).take(MAX_FRAME_DECODED as u64 + 1);
    limited.read_to_end(&mut out).map_err(|_| Corrupt("bad zstd frame"))?;
    if out.len() > MAX_FRAME_DECODED {
        return Err(Corrupt("frame decodes over the bound"));
    }
    Ok(out)
}

/// Encodes `entries` as one frame.
fn encode_frame(entries: &[(u32, &Entry)]) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::with_capacity(entries.len() * 2048);
    raw.extend_from_slice(&u32::try_from(entries.len()).unwrap_or(u32::MAX).to_le_bytes());
    for (uid, e) in entries {
        raw.extend_from_slice(&uid.to_le_bytes());
        e.encode(&mut raw);
    }
    let payload = zstd::bulk::compress(&raw, ZSTD_LEVEL)?;
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&n| n as usize <= MAX_FRAME)
        .ok_or_else(|| std::io::Error::other("index frame too large"))?;
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Appends frames to an index file.
#[derive(Debug)]
pub struct Appender {
    file: File,
}

impl Appender {
    /// Opens `path` for appending after its first `valid_len` bytes (cutting anything after
    /// them); with `valid_len` 0 the file is started afresh with a header.
    pub fn open(path: &Path, mailbox: u64, uidvalidity: u32, valid_len: u64) -> std::io::Result<Appender> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new().create(true).truncate(false).read(true).write(true).open(path)?;
        if valid_len < HEADER_LEN {
            file.set_len(0)?;
            file.write_all(&header(mailbox, uidvalidity))?;
        } else {
            file.set_len(valid_len)?;
        }
        // Appends go to the end; the handle is only used for appending from here.
        let file = {
            drop(file);
            OpenOptions::new().append(true).open(path)?
        };
        Ok(Appender { file })
    }

    /// Appends `entries` in frames of at most [`FRAME_ENTRIES`].
    pub fn append(&mut self, entries: &[(u32, &Entry)]) -> std::io::Result<()> {
        for chunk in entries.chunks(FRAME_ENTRIES) {
            let frame = encode_frame(chunk)?;
            self.file.write_all(&frame)?;
        }
        Ok(())
    }
}

/// Writes a fresh file with exactly `entries` (through `path.tmp` and a rename, so a crash
/// leaves either the old or the new file) and returns an appender on it.
pub fn rewrite(path: &Path, mailbox: u64, uidvalidity: u32, entries: &[(u32, &Entry)]) -> std::io::Result<Appender> {
    let tmp: PathBuf = path.with_extension("idx.tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&header(mailbox, uidvalidity))?;
        for chunk in entries.chunks(FRAME_ENTRIES) {
            f.write_all(&encode_frame(chunk)?)?;
        }
    }
    std::fs::rename(&tmp, path)?;
    Ok(Appender { file: OpenOptions::new().append(true).open(path)? })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;

    fn entry(i: u32) -> Entry {
        Entry::from_message(format!("Subject: message {i}\r\nFrom: a{i}@x.y\r\n\r\nbody {i}\r\n").as_bytes())
    }

    #[test]
    fn append_load_and_cut_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache").join("search-7.idx");
        let es: Vec<Entry> = (1..=1200).map(entry).collect();
        let pairs: Vec<(u32, &Entry)> = es.iter().enumerate().map(|(i, e)| (i as u32 + 1, e)).collect();
        let mut a = Appender::open(&path, 7, 99, 0).unwrap();
        a.append(&pairs[..1000]).unwrap();
        a.append(&pairs[1000..]).unwrap();
        drop(a);
        let l = load(&path, 7, 99).unwrap();
        assert!(l.damage.is_none());
        assert_eq!(l.entries.len(), 1200);
        assert_eq!(l.entries[41].1, es[41]);
        let full = std::fs::metadata(&path).unwrap().len();
        assert_eq!(l.valid_len, full);

        // Another mailbox or UIDVALIDITY: nothing is used.
        assert!(load(&path, 8, 99).unwrap().entries.is_empty());
        assert!(load(&path, 7, 98).unwrap().damage.is_some());

        // A truncated tail loses only the torn frame.
        let bytes = std::fs::read(&path).unwrap();
        let cut = parse(&bytes[..bytes.len() - 10], 7, 99);
        assert!(cut.damage.is_some());
        assert_eq!(cut.entries.len(), 1000, "the frames of the first append survive");
        // A flipped byte in the middle is caught by the CRC.
        let mut flipped = bytes.clone();
        let mid = bytes.len() / 2;
        flipped[mid] ^= 0x40;
        let f = parse(&flipped, 7, 99);
        assert!(f.damage.is_some());
        assert!(f.entries.len() < 1200);
        // Reopening after the intact prefix cuts the rest and appends cleanly.
        std::fs::write(&path, &flipped).unwrap();
        let mut a = Appender::open(&path, 7, 99, f.valid_len).unwrap();
        let missing: Vec<(u32, &Entry)> =
            pairs.iter().copied().filter(|(u, _)| !f.entries.iter().any(|(x, _)| x == u)).collect();
        a.append(&missing).unwrap();
        let again = load(&path, 7, 99).unwrap();
        assert!(again.damage.is_none());
        assert_eq!(again.entries.len(), 1200);

        // Garbage: refused, never a panic.
        for junk in [&b""[..], b"HRMSIDX", &[0xffu8; 100][..]] {
            let g = parse(junk, 7, 99);
            assert!(g.entries.is_empty());
            assert_eq!(g.valid_len, 0);
        }
    }

    #[test]
    fn rewrite_keeps_exactly_the_given_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("search-1.idx");
        let es: Vec<Entry> = (1..=10).map(entry).collect();
        let pairs: Vec<(u32, &Entry)> = es.iter().enumerate().map(|(i, e)| (i as u32 + 1, e)).collect();
        Appender::open(&path, 1, 5, 0).unwrap().append(&pairs).unwrap();
        let mut a = rewrite(&path, 1, 5, &pairs[..3]).unwrap();
        a.append(&pairs[9..]).unwrap();
        let l = load(&path, 1, 5).unwrap();
        let uids: Vec<u32> = l.entries.iter().map(|(u, _)| *u).collect();
        assert_eq!(uids, vec![1, 2, 3, 10]);
        assert!(!path.with_extension("idx.tmp").exists());
    }
}
