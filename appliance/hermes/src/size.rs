//! Byte sizes on the command line: `1G`, `500M`, `1024K`, `2T` or plain bytes (binary units:
//! K = 1024). Also the compact form used when printing quotas.
//!
//! What it is not: SI units (`1GB` = 10^9) are refused rather than guessed, because a quota off
//! by 7 % is a support call.
//!
//! Invariant: parsing never panics or overflows; a size above `u64::MAX` is an error.

/// Parses `N`, `NK`, `NM`, `NG`, `NT` (case-insensitive; `KiB`, `MiB`, ... also accepted;
/// a bare `B` means bytes).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    let digits_end = lower.find(|c: char| !c.is_ascii_digit()).unwrap_or(lower.len());
    let (num, unit) = lower.split_at(digits_end);
    if num.is_empty() {
        return Err(format!("invalid size {text:?}: expected a number with an optional K, M, G or T suffix"));
    }
    let shift = match unit {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        "t" | "tib" => 40,
        u if u.starts_with('.') => {
            return Err(format!("invalid size {text:?}: use a whole number of a smaller unit (1536M, not 1.5G)"));
        }
        _ => return Err(format!("invalid size {text:?}: unknown unit {unit:?} (use K, M, G or T, powers of 1024)")),
    };
    let n: u64 = num.parse().map_err(|_| format!("invalid size {text:?}: number too large"))?;
    n.checked_mul(1u64 << shift).ok_or_else(|| format!("invalid size {text:?}: too large"))
}

/// The shortest exact rendering: `1G`, `500M`, `3K`, `1536`.
pub fn format_size(bytes: u64) -> String {
    for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if bytes != 0 && bytes.trailing_zeros() >= shift {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        for (text, want) in [
            ("0", 0),
            ("1024", 1024),
            ("1K", 1024),
            ("1024k", 1 << 20),
            ("500M", 500 << 20),
            ("1G", 1 << 30),
            ("1GiB", 1 << 30),
            ("2t", 2 << 40),
            (" 7 ", 7),
            ("12b", 12),
        ] {
            assert_eq!(parse_size(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn refuses_garbage_without_panicking() {
        for bad in ["", "G", "1.5G", "-1", "1GB", "1 G", "1X", "99999999999999999999", "17179869184G", "１G"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_round_trip() {
        for n in [0, 1, 1000, 1024, 1536, 500 << 20, 1 << 30, 3 << 40, u64::MAX] {
            assert_eq!(parse_size(&format_size(n)), Ok(n), "{n}");
        }
        assert_eq!(format_size(1 << 30), "1G");
        assert_eq!(format_size(1536), "1536");
        assert_eq!(format_size(3072), "3K");
    }
}
