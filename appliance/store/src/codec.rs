//! Little-endian binary primitives shared by the change-log records and the checkpoint.
//!
//! What it is: a growable [`Writer`] and a bounds-checked [`Reader`] over a byte slice.
//! What it is not: a framing layer (see `log`) or a schema (see `record`, `checkpoint`).
//!
//! Invariants:
//! - The reader never panics and never allocates more than the input could justify: every
//!   length or count is checked against the bytes that remain before anything is reserved.
//! - Strings are UTF-8 with a `u32` byte length; integers are little-endian, fixed width.

use crate::StoreError;

/// Builds an encoded byte string.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn new() -> Writer {
        Writer { buf: Vec::with_capacity(64) }
    }
    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn i16(&mut self, v: i16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u128(&mut self, v: u128) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// A length as `u32`; callers bound their collections far below 4 GiB.
    pub(crate) fn len(&mut self, n: usize) {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }
    pub(crate) fn str(&mut self, s: &str) {
        self.len(s.len());
        self.buf.extend_from_slice(s.as_bytes());
    }
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads an encoded byte string; every read is bounds-checked.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn short() -> StoreError {
    StoreError::Corrupt("truncated encoding".into())
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        let end = self.pos.checked_add(n).ok_or_else(short)?;
        let s = self.buf.get(self.pos..end).ok_or_else(short)?;
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.array::<1>()?[0])
    }
    pub(crate) fn u32(&mut self) -> Result<u32, StoreError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, StoreError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub(crate) fn i16(&mut self) -> Result<i16, StoreError> {
        Ok(i16::from_le_bytes(self.array()?))
    }
    pub(crate) fn i64(&mut self) -> Result<i64, StoreError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    pub(crate) fn u128(&mut self) -> Result<u128, StoreError> {
        Ok(u128::from_le_bytes(self.array()?))
    }
    /// A count of items that each take at least `min_item_bytes`: refused if the remaining
    /// input cannot hold that many, so a forged count never drives a large allocation.
    pub(crate) fn count(&mut self, min_item_bytes: usize) -> Result<usize, StoreError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item_bytes.max(1)) > self.remaining() {
            return Err(StoreError::Corrupt("count exceeds input".into()));
        }
        Ok(n)
    }
    pub(crate) fn str(&mut self) -> Result<String, StoreError> {
        let n = self.u32()? as usize;
        let s = self.take(n)?;
        String::from_utf8(s.to_vec()).map_err(|_| StoreError::Corrupt("invalid UTF-8".into()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation_never_panics() {
        let mut w = Writer::new();
        w.u8(7);
        w.u32(70_000);
        w.u64(1 << 40);
        w.i16(-60);
        w.i64(-5);
        w.u128(u128::MAX - 1);
        w.str("Drafts/é");
        let bytes = w.into_bytes();
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u8().unwrap(), 7);
        assert_eq!(r.u32().unwrap(), 70_000);
        assert_eq!(r.u64().unwrap(), 1 << 40);
        assert_eq!(r.i16().unwrap(), -60);
        assert_eq!(r.i64().unwrap(), -5);
        assert_eq!(r.u128().unwrap(), u128::MAX - 1);
        assert_eq!(r.str().unwrap(), "Drafts/é");
        assert!(r.is_empty());
        for cut in 0..bytes.len() {
            let mut r = Reader::new(&bytes[..cut]);
            let _ = (|| -> Result<(), StoreError> {
                r.u8()?;
                r.u32()?;
                r.u64()?;
                r.i16()?;
                r.i64()?;
                r.u128()?;
                r.str()?;
                Ok(())
            })();
        }
    }

    #[test]
    fn forged_count_is_refused() {
        let mut w = Writer::new();
        w.u32(u32::MAX);
        let bytes = w.into_bytes();
        assert!(Reader::new(&bytes).count(1).is_err());
        assert!(Reader::new(&bytes).str().is_err());
    }
}
