//! Quota arithmetic and the persisted warning level: pure functions plus the one small file
//! (`users/<id>/quota-warned`) that remembers which usage threshold a user was warned at.
//!
//! What it is: the limit check used by every operation that adds live mail (APPEND, COPY,
//! delivery), the threshold computation for warnings, and reading/writing the level file.
//! What it is not: the enforcement point (that is `user`, which calls [`fits`] under the
//! user's lock) nor the warning text (the service composes it: [`QuotaWarningComposer`]).
//!
//! Invariants:
//! - [`fits`] allows usage to reach the limit exactly and refuses one byte (or one message)
//!   more; arithmetic saturates, so a huge request is refused rather than wrapping around.
//! - The level file holds 0 or a warning percentage (1..=100) as ASCII decimal and a
//!   newline; it is replaced atomically (write `quota-warned.tmp`, fsync, rename, fsync the
//!   folder). A missing or unreadable file means 0: the worst case is one repeated warning.

use crate::Usage;
use crate::blob;
use hermes_core::directory::UserId;
use std::path::Path;
use std::sync::Arc;

/// Usage levels, in percent of the byte limit, at which the user gets one warning each:
/// 80 % leaves time to clean up at any normal rate of incoming mail, 95 % is the last call
/// before deliveries start bouncing (the same pair many sites configure in Dovecot's
/// `quota_warning` and Cyrus' `quotawarn`, whose default is 90).
pub const QUOTA_WARNING_PERCENTS: [u8; 2] = [80, 95];

/// A user's limits, from the directory account. Live (not retained) mail counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaLimits {
    /// Raw (uncompressed) bytes of live messages: RFC 9208 STORAGE is this in KiB.
    pub bytes: u64,
    /// Number of live messages (RFC 9208 MESSAGE); `None`: unlimited.
    pub messages: Option<u64>,
}

/// What a warning message reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaWarning {
    /// The threshold crossed: one of [`QUOTA_WARNING_PERCENTS`].
    pub percent: u8,
    /// Live usage just after the change that crossed it (before the warning is added).
    pub usage: Usage,
    pub limits: QuotaLimits,
}

/// Composes the raw RFC 5322 warning message (CRLF line ends) for a user. Installed by the
/// service ([`crate::Store::set_quota_warnings`]), which knows the host name and the wording.
/// Called outside the store's locks; it must not call back into the store.
pub type QuotaWarningComposer = Arc<dyn Fn(&UserId, &QuotaWarning) -> Vec<u8> + Send + Sync>;

/// File name of the warned level inside a user's folder.
pub(crate) const WARNED_FILE: &str = "quota-warned";
const WARNED_TMP: &str = "quota-warned.tmp";

/// Whether `usage` plus `bytes` and `messages` more stays within `limits` (at most equal).
pub(crate) fn fits(limits: Option<QuotaLimits>, usage: Usage, bytes: u64, messages: u64) -> bool {
    let Some(l) = limits else { return true };
    if usage.bytes.saturating_add(bytes) > l.bytes {
        return false;
    }
    match l.messages {
        Some(max) => usage.messages.saturating_add(messages) <= max,
        None => true,
    }
}

/// The highest of `percents` (increasing) that `usage` has reached under `limits`, in bytes
/// or, when there is a message limit, in messages (0: none). A zero limit has no meaningful
/// percentage and never warns.
pub(crate) fn level(usage: Usage, limits: QuotaLimits, percents: &[u8]) -> u8 {
    let reached = |used: u64, limit: u64| {
        if limit == 0 {
            return 0;
        }
        let used = u128::from(used) * 100;
        percents.iter().rev().copied().find(|p| used >= u128::from(*p) * u128::from(limit)).unwrap_or(0)
    };
    let by_bytes = reached(usage.bytes, limits.bytes);
    let by_messages = limits.messages.map_or(0, |m| reached(usage.messages, m));
    by_bytes.max(by_messages)
}

/// Reads the warned level of the user folder `dir` (0 when absent or not understood).
pub(crate) fn read_warned(dir: &Path, user: &UserId) -> u8 {
    let _ = std::fs::remove_file(dir.join(WARNED_TMP));
    match std::fs::read_to_string(dir.join(WARNED_FILE)) {
        Ok(text) => match text.trim().parse::<u8>() {
            Ok(v) if v <= 100 => v,
            _ => {
                tracing::warn!(user = %user, "quota warning level file not understood; taken as 0");
                0
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => {
            tracing::warn!(user = %user, error = %e, "cannot read the quota warning level; taken as 0");
            0
        }
    }
}

/// Durably replaces the warned level of the user folder `dir`.
pub(crate) fn write_warned(dir: &Path, level: u8) -> Result<(), crate::StoreError> {
    use std::io::Write;
    let tmp = dir.join(WARNED_TMP);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(format!("{level}\n").as_bytes())?;
        f.sync_data()?;
    }
    std::fs::rename(&tmp, dir.join(WARNED_FILE))?;
    blob::sync_dir(dir)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: QuotaLimits = QuotaLimits { bytes: 1000, messages: Some(3) };

    #[test]
    fn exactly_at_the_limit_fits_one_more_does_not() {
        let u = Usage { bytes: 900, messages: 1 };
        assert!(fits(Some(L), u, 100, 1));
        assert!(!fits(Some(L), u, 101, 1));
        assert!(fits(Some(L), u, 0, 2));
        assert!(!fits(Some(L), u, 0, 3));
        assert!(!fits(Some(L), u, u64::MAX, 0), "saturates instead of wrapping");
        assert!(fits(None, u, u64::MAX, u64::MAX));
        assert!(fits(Some(QuotaLimits { bytes: 1000, messages: None }), u, 100, u64::MAX));
    }

    #[test]
    fn levels_at_the_thresholds() {
        const P: &[u8] = &QUOTA_WARNING_PERCENTS;
        let b = |bytes| Usage { bytes, messages: 0 };
        assert_eq!(level(b(799), L, P), 0);
        assert_eq!(level(b(800), L, P), 80);
        assert_eq!(level(b(949), L, P), 80);
        assert_eq!(level(b(950), L, P), 95);
        assert_eq!(level(b(5000), L, P), 95);
        assert_eq!(level(b(u64::MAX), QuotaLimits { bytes: u64::MAX, messages: None }, P), 95);
        assert_eq!(level(b(10), QuotaLimits { bytes: 0, messages: None }, P), 0);
        assert_eq!(level(b(900), L, &[50, 99]), 50);
        assert_eq!(level(b(1000), L, &[]), 0);
    }

    #[test]
    fn default_levels_match_the_config_default() {
        assert_eq!(QUOTA_WARNING_PERCENTS, hermes_core::config::DEFAULT_QUOTA_WARNING_PERCENTS);
    }

    #[test]
    fn message_count_warns_too() {
        let l = QuotaLimits { bytes: 1 << 30, messages: Some(100) };
        let m = |messages| Usage { bytes: 10, messages };
        assert_eq!(level(m(79), l, &QUOTA_WARNING_PERCENTS), 0);
        assert_eq!(level(m(80), l, &QUOTA_WARNING_PERCENTS), 80);
        assert_eq!(level(m(95), l, &QUOTA_WARNING_PERCENTS), 95);
        // The higher of the two resources decides.
        assert_eq!(
            level(
                Usage { bytes: 96 << 20 << 4, messages: 81 },
                QuotaLimits { bytes: 1600 << 20, messages: Some(100) },
                &QUOTA_WARNING_PERCENTS
            ),
            95
        );
        assert_eq!(level(m(1000), QuotaLimits { bytes: 1000, messages: None }, &QUOTA_WARNING_PERCENTS), 0);
    }
}
