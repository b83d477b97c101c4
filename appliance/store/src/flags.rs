//! Message flags: canonical spelling, validation, and set arithmetic.
//!
//! What it is: normalisation of the flags callers hand the store (system flags in their
//! canonical case, keywords as IMAP atoms) and the Add/Remove/Replace operations.
//! What it is not: an IMAP parser; `\Recent` is a session property and is never stored.
//!
//! Invariants of a normalised flag list: sorted by bytes, unique, at most [`MAX_FLAGS`] entries,
//! each a known system flag or a keyword atom of at most [`MAX_KEYWORD_BYTES`] bytes. Anything
//! else is dropped (the IMAP layer has already refused it with BAD; the store stays safe anyway).

use crate::{Flag, FlagOp};

/// The system flags the store keeps, in canonical spelling.
pub const SYSTEM_FLAGS: [&str; 5] = ["\\Answered", "\\Deleted", "\\Draft", "\\Flagged", "\\Seen"];
/// Most flags on one message: far above real use (clients set a handful), a bound on memory.
pub const MAX_FLAGS: usize = 128;
/// Longest keyword.
pub const MAX_KEYWORD_BYTES: usize = 256;

pub const SEEN: &str = "\\Seen";
pub const DELETED: &str = "\\Deleted";

/// The canonical form of one flag, or `None` if it cannot be stored.
pub fn canonical_flag(flag: &str) -> Option<Flag> {
    if let Some(rest) = flag.strip_prefix('\\') {
        return SYSTEM_FLAGS
            .iter()
            .find(|s| s[1..].eq_ignore_ascii_case(rest))
            .map(|s| (*s).to_string());
    }
    let atom = !flag.is_empty()
        && flag.len() <= MAX_KEYWORD_BYTES
        && flag.bytes().all(|b| {
            b.is_ascii_graphic() && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
        });
    atom.then(|| flag.to_string())
}

/// Normalises a flag list: canonical spelling, invalid entries dropped, sorted, unique, bounded.
pub fn normalize(flags: &[Flag]) -> Vec<Flag> {
    let mut out: Vec<Flag> = flags.iter().filter_map(|f| canonical_flag(f)).collect();
    out.sort_unstable();
    out.dedup();
    out.truncate(MAX_FLAGS);
    out
}

/// Applies `op` with `flags` (already normalised) to `current` (normalised); the result is normalised.
pub fn apply(current: &[Flag], op: FlagOp, flags: &[Flag]) -> Vec<Flag> {
    let mut out: Vec<Flag> = match op {
        FlagOp::Replace => flags.to_vec(),
        FlagOp::Add => current.iter().chain(flags.iter()).cloned().collect(),
        FlagOp::Remove => current.iter().filter(|f| !flags.contains(f)).cloned().collect(),
    };
    out.sort_unstable();
    out.dedup();
    out.truncate(MAX_FLAGS);
    out
}

pub fn has(flags: &[Flag], flag: &str) -> bool {
    flags.binary_search_by(|f| f.as_str().cmp(flag)).is_ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<Flag> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn normalises_case_order_and_junk() {
        assert_eq!(
            normalize(&v(&["\\seen", "$Junk", "\\FLAGGED", "\\Recent", "bad flag", "", "\\Seen", "$Junk"])),
            v(&["$Junk", "\\Flagged", "\\Seen"])
        );
        assert_eq!(normalize(&v(&["\\Unknown", "a(b", "x]"])), Vec::<Flag>::new());
    }

    #[test]
    fn operations() {
        let cur = v(&["\\Seen", "a"]);
        assert_eq!(apply(&cur, FlagOp::Add, &v(&["\\Deleted"])), v(&["\\Deleted", "\\Seen", "a"]));
        assert_eq!(apply(&cur, FlagOp::Remove, &v(&["a"])), v(&["\\Seen"]));
        assert_eq!(apply(&cur, FlagOp::Replace, &v(&["b"])), v(&["b"]));
        assert!(has(&cur, SEEN));
        assert!(!has(&cur, DELETED));
    }
}
