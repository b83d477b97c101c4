//! Total little-endian field readers over byte slices, for the SMART decoders.
//!
//! Not a parser: callers check a page's length once, then read fields at fixed offsets.
//! Invariant: every function here is total. An offset past the end reads as zero (or an empty
//! string) instead of panicking, so a decoder bug can give a wrong value but never a crash.

/// Byte at `off`, or 0 past the end.
pub(crate) fn u8_at(b: &[u8], off: usize) -> u8 {
    b.get(off).copied().unwrap_or(0)
}

/// Little-endian integer of `N` bytes at `off` (N ≤ 16), zero-extended; 0 if out of range.
fn le_n<const N: usize>(b: &[u8], off: usize) -> u128 {
    let Some(end) = off.checked_add(N) else { return 0 };
    let Some(s) = b.get(off..end) else { return 0 };
    s.iter().rev().fold(0u128, |acc, &x| (acc << 8) | u128::from(x))
}

pub(crate) fn le_u16(b: &[u8], off: usize) -> u16 {
    u16::try_from(le_n::<2>(b, off)).unwrap_or(0)
}

pub(crate) fn le_u32(b: &[u8], off: usize) -> u32 {
    u32::try_from(le_n::<4>(b, off)).unwrap_or(0)
}

/// 48-bit little-endian value (SMART raw attribute values).
pub(crate) fn le_u48(b: &[u8], off: usize) -> u64 {
    u64::try_from(le_n::<6>(b, off)).unwrap_or(0)
}

pub(crate) fn le_u64(b: &[u8], off: usize) -> u64 {
    u64::try_from(le_n::<8>(b, off)).unwrap_or(0)
}

pub(crate) fn le_u128(b: &[u8], off: usize) -> u128 {
    le_n::<16>(b, off)
}

/// Sum of all bytes modulo 256 (ATA pages are valid when this is 0).
pub(crate) fn checksum8(b: &[u8]) -> u8 {
    b.iter().fold(0u8, |acc, &x| acc.wrapping_add(x))
}

/// Printable ASCII text from raw bytes: non-printable bytes become `?`, NULs and surrounding
/// spaces are trimmed. Device strings are space-padded and sometimes NUL-padded.
pub(crate) fn clean_ascii(raw: &[u8]) -> String {
    let s: String = raw
        .iter()
        .map(|&c| match c {
            0 => ' ',
            0x20..=0x7e => char::from(c),
            _ => '?',
        })
        .collect();
    s.trim().to_string()
}

/// An ATA string field: `words` 16-bit words starting at word `word`, each word holding two
/// characters with the first one in the high byte (ATA's "byte-swapped" strings).
pub(crate) fn ata_string(page: &[u8], word: usize, words: usize) -> String {
    let mut raw = Vec::with_capacity(words * 2);
    for w in word..word + words {
        raw.push(u8_at(page, 2 * w + 1));
        raw.push(u8_at(page, 2 * w));
    }
    clean_ascii(&raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_are_total_past_the_end() {
        let b = [1u8, 2, 3];
        assert_eq!(le_u16(&b, 0), 0x0201);
        assert_eq!(le_u16(&b, 2), 0);
        assert_eq!(le_u32(&b, usize::MAX), 0);
        assert_eq!(u8_at(&b, 3), 0);
        assert_eq!(le_u128(&[0xff; 16], 0), u128::MAX);
    }

    #[test]
    fn ata_strings_are_byte_swapped_and_trimmed() {
        // "WDC " stored as words "DW" " C" in little-endian memory: bytes D W ' ' C.
        let page = [b'D', b'W', b' ', b'C', b' ', b' '];
        assert_eq!(ata_string(&page, 0, 3), "WDC");
        assert_eq!(clean_ascii(b"\x00ab\x01 "), "ab?");
    }
}
