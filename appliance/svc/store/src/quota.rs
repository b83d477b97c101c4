//! Quota policy of the store service: which limits apply to an account, what an over-quota
//! recipient is told at LMTP, and the warning message the store delivers at 80 % and 95 %.
//! The [`undelete`] submodule is the admin side of delayed expunge (`hermes undelete` and the
//! store service's control socket).
//!
//! What it is: glue between the directory (an [`Account`]'s `quota_bytes` and
//! `quota_messages`, with `[store] default_quota_messages`), the store's
//! enforcement ([`UserStore::set_quota`], [`StoreError::OverQuota`]) and the protocols.
//! What it is not: the enforcement itself. The store checks `live usage + new <= limit` under
//! the user's lock, so concurrent APPENDs and deliveries can never together pass the limit;
//! nothing here re-checks or caches usage.
//!
//! Invariants:
//! - Every path that writes mail for an account first calls [`apply_account`] with the
//!   account just read from the directory (LMTP at RCPT, `hermes deliver`, IMAP/POP login),
//!   so a quota changed with `hermes account quota` applies from the next login or delivery.
//! - Retained (expunged, restorable) mail never counts (`docs/store-format.md`).
//! - Warning messages are plain ASCII RFC 5322 with CRLF line ends, `Auto-Submitted:
//!   auto-generated` (RFC 3834, so no vacation responder answers them), from
//!   `postmaster@<hostname>`; they reveal nothing but the user's own figures.

pub mod undelete;

use address_book::AddressBook;
use hermes_core::config::StoreSettings;
use hermes_core::directory::{Account, UserId};
use hermes_proto::lmtp::Reply;
use hermes_store::{QuotaLimits, QuotaWarning, QuotaWarningComposer, StoreError, UserStore};
use std::sync::Arc;

/// The limits that apply to `account`: its byte quota and its message limit, which for an
/// account whose own is "default" is `[store] default_quota_messages` (unlimited unless set;
/// RFC 9208 MESSAGE is then not reported).
pub fn limits_for(account: &Account, settings: &StoreSettings) -> QuotaLimits {
    QuotaLimits {
        bytes: account.quota_bytes,
        messages: account.quota_messages.resolve(settings.default_quota_messages),
    }
}

/// Gives `user` (the store of `account`) the account's current limits, and remembers the
/// account's address for the `To:` of its warnings. Cheap; call it whenever work for the
/// account starts (login, RCPT).
pub fn apply_account(user: &UserStore, account: &Account, settings: &StoreSettings) {
    ADDRESSES.remember(&account.user_id, &account.address);
    user.set_quota(Some(limits_for(account, settings)));
}

/// Whether `user` has room for at least one more (non-empty) message: LMTP refuses a recipient
/// at RCPT when not, sparing the sender the DATA transfer. A message that would not fit is
/// still refused after DATA by the store itself.
pub fn has_room(user: &UserStore) -> bool {
    let Some(limits) = user.quota() else { return true };
    let usage = user.usage();
    usage.bytes < limits.bytes && limits.messages.is_none_or(|m| usage.messages < m)
}

/// The LMTP reply for an over-quota recipient (RFC 3463 X.2.2, "mailbox full"): 452 4.2.2 so
/// the sender retries, or 552 5.2.2 when `[store] quota_permanent_failure` says so.
pub fn over_quota_reply(rcpt: &str, permanent: bool) -> Reply {
    if permanent {
        Reply::new(552, (5, 2, 2), format!("<{rcpt}> Mailbox full"))
    } else {
        Reply::new(452, (4, 2, 2), format!("<{rcpt}> Mailbox full, try again later"))
    }
}

/// True for the store error that means "over quota".
pub fn is_over_quota(e: &StoreError) -> bool {
    matches!(e, StoreError::OverQuota)
}

/// The composer the service installs with [`hermes_store::Store::set_quota_warnings`].
pub fn warning_composer(hostname: &str) -> QuotaWarningComposer {
    let hostname = hostname.to_string();
    Arc::new(move |user: &UserId, w: &QuotaWarning| {
        let to = ADDRESSES.get(user);
        warning_message(&hostname, to.as_deref(), w, chrono::Utc::now())
    })
}

/// The warning message itself (pure: the clock and the address are parameters).
pub fn warning_message(
    hostname: &str,
    to: Option<&str>,
    w: &QuotaWarning,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<u8> {
    let percent = |used: u64, limit: u64| {
        if limit == 0 { 100 } else { (u128::from(used) * 100 / u128::from(limit)).min(999) as u64 }
    };
    let percent_used = percent(w.usage.bytes, w.limits.bytes);
    let to_header = match to.filter(|a| header_safe(a)) {
        Some(a) => format!("<{a}>"),
        None => "undisclosed-recipients:;".to_string(),
    };
    let host = if header_safe(hostname) { hostname } else { "localhost" };
    let id = format!("{:x}.{:x}", now.timestamp(), rand_u64());
    let mut m = String::with_capacity(1500);
    m.push_str("Return-Path: <>\r\n");
    m.push_str(&format!("Date: {}\r\n", now.to_rfc2822()));
    m.push_str(&format!("From: Mail System <postmaster@{host}>\r\n"));
    m.push_str(&format!("To: {to_header}\r\n"));
    m.push_str(&format!("Subject: Your mailbox is {}% full\r\n", w.percent));
    m.push_str(&format!("Message-ID: <quota-{}.{id}@{host}>\r\n", w.percent));
    m.push_str("Auto-Submitted: auto-generated\r\n");
    m.push_str("MIME-Version: 1.0\r\n");
    m.push_str("Content-Type: text/plain; charset=us-ascii\r\n");
    m.push_str("Content-Transfer-Encoding: 7bit\r\n");
    m.push_str("\r\n");
    m.push_str(&format!(
        "Your mailbox is {}% full: you are using {} of your {} quota ({}%),\r\nin {} messages",
        w.percent,
        human(w.usage.bytes),
        human(w.limits.bytes),
        percent_used,
        w.usage.messages
    ));
    match w.limits.messages {
        Some(max) => m.push_str(&format!(" of the {max} you may keep ({}%).\r\n\r\n", percent(w.usage.messages, max))),
        None => m.push_str(".\r\n\r\n"),
    }
    m.push_str(
        "When it is full, new mail for you is no longer accepted (senders' servers\r\n\
         retry for a few days, then return it to the sender), and you cannot save\r\n\
         new messages, such as drafts and sent mail.\r\n\r\n\
         To make room, delete messages you no longer need, large ones first, and\r\n\
         remember attachments in Sent. Deleted messages stop counting at once.\r\n\r\n\
         This message was sent once, when your usage passed this level; you will be\r\n\
         told again only if it drops below and passes it again.\r\n",
    );
    m.into_bytes()
}

/// A size for people: `512 bytes`, `3.4 KiB`, `820.0 MiB`, `1.0 GiB` (powers of 1024).
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Printable ASCII without the characters that could end or restructure a header field.
fn header_safe(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'(' | b')' | b',' | b';' | b'"' | b'\\'))
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    h.finish()
}

/// User id → address of the accounts this process has worked for, so a warning can name its
/// recipient (the directory has no lookup by user id). Bounded: past [`MAX_ADDRESSES`] it is
/// cleared and refills as accounts are used again (a missing entry only changes `To:`).
static ADDRESSES: AddressBook = AddressBook::new();

/// Entries kept in the address book: every account of a large site at ~100 bytes each.
pub const MAX_ADDRESSES: usize = 200_000;

mod address_book {
    //! A tiny bounded map behind a std mutex (poisoning is recovered: the map holds no
    //! invariant a panic could break).
    use super::MAX_ADDRESSES;
    use hermes_core::directory::UserId;
    use std::collections::HashMap;
    use std::sync::Mutex;

    pub struct AddressBook(Mutex<Option<HashMap<UserId, String>>>);

    impl AddressBook {
        pub const fn new() -> AddressBook {
            AddressBook(Mutex::new(None))
        }
        pub fn remember(&self, user: &UserId, address: &str) {
            let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
            let map = g.get_or_insert_with(HashMap::new);
            if map.get(user).is_some_and(|a| a == address) {
                return;
            }
            if map.len() >= MAX_ADDRESSES {
                map.clear();
            }
            map.insert(user.clone(), address.to_string());
        }
        pub fn get(&self, user: &UserId) -> Option<String> {
            let g = self.0.lock().unwrap_or_else(|p| p.into_inner());
            g.as_ref().and_then(|m| m.get(user).cloned())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;
    use hermes_store::Usage;

    #[test]
    fn warning_is_a_proper_message() {
        let w = QuotaWarning {
            percent: 80,
            usage: Usage { bytes: 850 << 20, messages: 1234 },
            limits: QuotaLimits { bytes: 1 << 30, messages: None },
        };
        let now = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let m = String::from_utf8(warning_message("mail.example.org", Some("alice@example.org"), &w, now)).unwrap();
        assert!(m.is_ascii());
        let (head, body) = m.split_once("\r\n\r\n").unwrap();
        for h in [
            "Date: Tue, 14 Nov 2023 22:13:20 +0000",
            "From: Mail System <postmaster@mail.example.org>",
            "To: <alice@example.org>",
            "Subject: Your mailbox is 80% full",
            "Auto-Submitted: auto-generated",
        ] {
            assert!(head.lines().any(|l| l == h), "{h} missing in {head}");
        }
        assert!(head.lines().any(|l| l.starts_with("Message-ID: <quota-80.") && l.ends_with("@mail.example.org>")));
        assert!(body.contains("850.0 MiB of your 1.0 GiB quota (83%)"), "{body}");
        assert!(body.contains("in 1234 messages.\r\n"), "{body}");
        // With a message limit, the count is reported against it.
        let counted = QuotaWarning {
            percent: 95,
            usage: Usage { bytes: 10, messages: 95 },
            limits: QuotaLimits { bytes: 1 << 30, messages: Some(100) },
        };
        let m2 = String::from_utf8(warning_message("h.org", None, &counted, now)).unwrap();
        assert!(m2.contains("Subject: Your mailbox is 95% full\r\n"));
        assert!(m2.contains("in 95 messages of the 100 you may keep (95%).\r\n"), "{m2}");
        assert!(!m.replace("\r\n", "").contains('\n'), "CRLF only");
        // A strange address never breaks the header.
        let m = String::from_utf8(warning_message("h", Some("a>\r\nBcc: x"), &w, now)).unwrap();
        assert!(m.contains("To: undisclosed-recipients:;\r\n"));
    }

    #[test]
    fn lmtp_replies() {
        assert_eq!(
            over_quota_reply("a@b", false).to_string().trim_end(),
            "452 4.2.2 <a@b> Mailbox full, try again later"
        );
        assert_eq!(over_quota_reply("a@b", true).to_string().trim_end(), "552 5.2.2 <a@b> Mailbox full");
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(10), "10 bytes");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(1 << 30), "1.0 GiB");
    }
}
