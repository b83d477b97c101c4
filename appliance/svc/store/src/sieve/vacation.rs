//! Vacation (RFC 5230) policy beyond what sieve-rs checks: who never gets an automatic reply,
//! and the persistent per-user log of replies that makes `:days` hold across restarts.
//!
//! sieve-rs already refuses to answer when the message carries `List-*` headers, an
//! `Auto-Submitted` other than `no`, `Precedence: bulk`, `X-Auto-Response-Suppress: All/OOF`,
//! a `MAILER-DAEMON`/`owner-*`/`*-request@` sender, or does not name the user in To/Cc/Bcc.
//! [`must_not_answer`] adds, before the script runs, what Pigeonhole also refuses and sieve-rs
//! does not: the null sender, `Precedence: list` and `junk`, and `List-Id`-less list software
//! markers (`X-Mailing-List`, `X-Loop` naming the user).
//!
//! Invariants:
//! - The reply log is bounded ([`MAX_ENTRIES`] per user; expired entries pruned at each write,
//!   then the oldest dropped) and keys are bounded ([`MAX_KEY`] octets).
//! - An entry is written before the reply is handed to the relay: a crash between the two
//!   loses one reply, never sends two within `:days`.

use std::collections::BTreeMap;
use std::path::Path;

/// Replies remembered per user: a vacation answering 10,000 distinct senders within its
/// period is already unusual; past that the oldest entries go (worst case: one extra reply).
pub const MAX_ENTRIES: usize = 10_000;
/// Longest key (sender + handle) kept; longer ones are cut (still unique in practice).
pub const MAX_KEY: usize = 1024;

/// The log: key → unix time until which no reply is sent again.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ReplyLog {
    entries: BTreeMap<String, i64>,
}

fn cut(key: &str) -> String {
    let mut end = key.len().min(MAX_KEY);
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    key[..end].to_string()
}

impl ReplyLog {
    /// Reads the log; a missing or damaged file is an empty log (at worst one extra reply).
    pub fn load(path: &Path) -> ReplyLog {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "vacation log unreadable; starting afresh");
                ReplyLog::default()
            }),
            Err(_) => ReplyLog::default(),
        }
    }

    /// Whether a reply for `key` was sent recently enough that none is due at `now`.
    pub fn is_recent(&self, key: &str, now: i64) -> bool {
        self.entries.get(&cut(key)).is_some_and(|until| *until > now)
    }

    /// Notes a reply for `key` at `now`, silencing it for `period_secs`.
    pub fn record(&mut self, key: &str, now: i64, period_secs: u64) {
        self.entries.retain(|_, until| *until > now);
        while self.entries.len() >= MAX_ENTRIES {
            let oldest = self.entries.iter().min_by_key(|(_, t)| **t).map(|(k, _)| k.clone());
            match oldest {
                Some(k) => self.entries.remove(&k),
                None => break,
            };
        }
        self.entries.insert(cut(key), now.saturating_add(i64::try_from(period_secs).unwrap_or(i64::MAX)));
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let data = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        super::scripts::write_atomic(path, &data)
    }
}

/// Whether the envelope sender or the headers say "never auto-reply" (RFC 3834 §2, RFC 5230
/// §4.5), beyond the checks sieve-rs performs itself. `return_path` is the bare address
/// (empty for the null sender).
pub fn must_not_answer(return_path: &str, raw: &[u8]) -> Option<&'static str> {
    let sender = return_path.trim().to_ascii_lowercase();
    if sender.is_empty() {
        return Some("null sender");
    }
    let local = sender.split('@').next().unwrap_or("");
    if local == "mailer-daemon"
        || local == "postmaster"
        || local.starts_with("owner-")
        || local.ends_with("-request")
        || local == "listserv"
        || local == "majordomo"
    {
        return Some("sender is list or mail software");
    }
    let msg = mail_parser::MessageParser::new().parse_headers(raw)?;
    for h in msg.headers() {
        let name = h.name.as_str();
        let value = || h.value.as_text().unwrap_or("").trim().to_ascii_lowercase();
        if name.eq_ignore_ascii_case("Precedence") && matches!(value().as_str(), "bulk" | "list" | "junk") {
            return Some("bulk or list precedence");
        }
        if name.eq_ignore_ascii_case("Auto-Submitted") && value() != "no" {
            return Some("auto-submitted message");
        }
        if name.len() > 5 && name[..5].eq_ignore_ascii_case("List-") {
            return Some("mailing list message");
        }
        if name.eq_ignore_ascii_case("X-Mailing-List") || name.eq_ignore_ascii_case("Mailing-List") {
            return Some("mailing list message");
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn lists_bulk_and_robots_are_never_answered() {
        let plain = b"From: a@x.org\r\nTo: u@y.org\r\nSubject: hi\r\n\r\nbody\r\n";
        assert_eq!(must_not_answer("a@x.org", plain), None);
        assert!(must_not_answer("", plain).is_some(), "null sender");
        assert!(must_not_answer("MAILER-DAEMON@x.org", plain).is_some());
        assert!(must_not_answer("owner-staff@x.org", plain).is_some());
        assert!(must_not_answer("staff-request@x.org", plain).is_some());
        for h in [
            "Precedence: bulk",
            "Precedence: list",
            "Precedence: JUNK",
            "List-Id: <staff.x.org>",
            "List-Unsubscribe: <mailto:u@x.org>",
            "Auto-Submitted: auto-replied",
            "X-Mailing-List: staff",
        ] {
            let m = format!("From: a@x.org\r\n{h}\r\nTo: u@y.org\r\n\r\nbody\r\n");
            assert!(must_not_answer("a@x.org", m.as_bytes()).is_some(), "{h}");
        }
        let m = b"From: a@x.org\r\nAuto-Submitted: no\r\n\r\nbody\r\n";
        assert_eq!(must_not_answer("a@x.org", m), None);
    }

    #[test]
    fn reply_log_respects_period_and_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vacation.json");
        let mut log = ReplyLog::load(&path);
        assert!(!log.is_recent("a@x.org\0h", 1000));
        log.record("a@x.org\0h", 1000, 86_400);
        log.save(&path).unwrap();
        let log = ReplyLog::load(&path);
        assert!(log.is_recent("a@x.org\0h", 1000 + 86_399));
        assert!(!log.is_recent("a@x.org\0h", 1000 + 86_400));
        assert!(!log.is_recent("b@x.org\0h", 1001));
        let mut big = ReplyLog::default();
        for i in 0..(MAX_ENTRIES + 5) {
            big.record(&format!("s{i}"), 10 + i as i64, 1_000_000);
        }
        assert_eq!(big.entries.len(), MAX_ENTRIES);
        assert!(!big.is_recent("s0", 11), "the oldest went first");
        std::fs::write(&path, b"{garbage").unwrap();
        assert!(!ReplyLog::load(&path).is_recent("a@x.org\0h", 1000), "damaged log: empty");
    }
}
