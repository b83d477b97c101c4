//! Tests of quota enforcement and quota warnings in the store.
//!
//! What it is: the limit at its edge (exactly at, one byte over, message count) for APPEND,
//! MULTIAPPEND, COPY, MOVE and multi-user delivery; concurrent appenders that must never
//! together pass the limit; retained (expunged) mail not counting; and the warning messages
//! (once per crossing of 80 % and 95 %, re-armed below, persisted across reopen, exempt from
//! the quota).
//! What it is not: the protocol replies (`NO [OVERQUOTA]`, LMTP 452/552): the service tests those.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::tests::{open, uid};
use crate::*;
use std::path::Path;

/// A message of exactly `size` raw bytes.
fn sized(size: usize) -> NewMessage {
    let head = b"Subject: q\r\n\r\n";
    assert!(size >= head.len());
    let mut raw = head.to_vec();
    raw.resize(size, b'x');
    NewMessage { raw, flags: vec![], internal_date: None }
}

fn limits(bytes: u64) -> Option<QuotaLimits> {
    Some(QuotaLimits { bytes, messages: None })
}

fn inbox(u: &UserStore) -> MailboxId {
    u.mailbox("INBOX").unwrap().id
}

/// A composer whose messages are easy to recognise and size.
fn install_warnings(store: &Store) {
    store.set_quota_warnings(Arc::new(|user: &UserId, w: &QuotaWarning| {
        format!(
            "From: postmaster@test\r\nSubject: Your mailbox is {}% full\r\n\r\n{} uses {} of {} bytes\r\n",
            w.percent, user, w.usage.bytes, w.limits.bytes
        )
        .into_bytes()
    }));
}

fn warnings_in(u: &UserStore) -> Vec<String> {
    let id = inbox(u);
    u.view(id)
        .unwrap()
        .messages
        .iter()
        .map(|m| String::from_utf8(u.read_message(id, m.uid).unwrap().to_vec()).unwrap())
        .filter(|t| t.starts_with("From: postmaster@test"))
        .map(|t| t.lines().nth(1).unwrap().to_string())
        .collect()
}

#[test]
fn append_exactly_at_the_limit_is_allowed_one_byte_over_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let u = store.user(&uid(1)).unwrap();
    let ib = inbox(&u);
    u.set_quota(limits(1000));
    assert_eq!(u.quota(), limits(1000));
    u.append(ib, vec![sized(600)]).unwrap();
    assert!(matches!(u.append(ib, vec![sized(401)]), Err(StoreError::OverQuota)));
    // A refused MULTIAPPEND stores nothing, even the part that would have fit.
    assert!(matches!(u.append(ib, vec![sized(200), sized(201)]), Err(StoreError::OverQuota)));
    assert_eq!(u.usage(), Usage { bytes: 600, messages: 1 });
    u.append(ib, vec![sized(400)]).unwrap();
    assert_eq!(u.usage(), Usage { bytes: 1000, messages: 2 });
    assert!(matches!(u.append(ib, vec![sized(20)]), Err(StoreError::OverQuota)));
    // The refused appends left no file behind: 2 messages, 2 files.
    let files = std::fs::read_dir(dir.path().join("users").join(uid(1).as_str()).join("msgs")).unwrap().count();
    assert_eq!(files, 2);
    // Lifting the quota lifts the refusal.
    u.set_quota(None);
    u.append(ib, vec![sized(20)]).unwrap();
}

#[test]
fn message_count_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let u = store.user(&uid(1)).unwrap();
    let ib = inbox(&u);
    u.set_quota(Some(QuotaLimits { bytes: 1 << 20, messages: Some(2) }));
    u.append(ib, vec![sized(100), sized(100)]).unwrap();
    assert!(matches!(u.append(ib, vec![sized(100)]), Err(StoreError::OverQuota)));
}

#[test]
fn copy_over_quota_is_refused_move_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let u = store.user(&uid(1)).unwrap();
    let ib = inbox(&u);
    let archive = u.mailbox("Archive").unwrap().id;
    let (_, uids) = u.append(ib, vec![sized(300), sized(300)]).unwrap();
    u.set_quota(limits(900));
    // Copying both would make 1200 > 900; one fits exactly (900).
    assert!(matches!(u.copy(ib, &uids, archive), Err(StoreError::OverQuota)));
    assert_eq!(u.view(archive).unwrap().messages.len(), 0);
    u.copy(ib, &uids[..1], archive).unwrap();
    assert_eq!(u.usage().bytes, 900);
    assert!(matches!(u.copy(ib, &uids[1..], archive), Err(StoreError::OverQuota)));
    // At the limit, MOVE still works: it does not change usage.
    let moved = u.move_messages(ib, &uids, archive).unwrap();
    assert_eq!(moved.pairs.len(), 2);
    assert_eq!(u.usage(), Usage { bytes: 900, messages: 3 });
}

#[test]
fn expunged_retained_mail_does_not_count() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let u = store.user(&uid(1)).unwrap();
    let ib = inbox(&u);
    u.set_quota(limits(1000));
    let (_, uids) = u.append(ib, vec![sized(1000)]).unwrap();
    assert!(matches!(u.append(ib, vec![sized(100)]), Err(StoreError::OverQuota)));
    u.store_flags(ib, &uids, FlagOp::Add, &["\\Deleted".to_string()], None).unwrap();
    u.expunge(ib, None).unwrap();
    assert_eq!(u.usage_detail().retained_bytes, 1000, "still retained for undelete");
    u.append(ib, vec![sized(1000)]).unwrap();
    // Undelete is an admin action: it may take the user over quota.
    let restored = u.undelete(&RetainedFilter::default()).unwrap();
    assert_eq!(restored.len(), 1);
    assert_eq!(u.usage().bytes, 2000);
    assert!(matches!(u.append(ib, vec![sized(20)]), Err(StoreError::OverQuota)));
}

#[test]
fn delivery_is_checked_per_user() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (a, b) = (store.user(&uid(1)).unwrap(), store.user(&uid(2)).unwrap());
    a.set_quota(limits(100));
    b.set_quota(limits(1000));
    let raw = sized(200).raw;
    let targets: Vec<DeliveryTarget> = [uid(1), uid(2)]
        .into_iter()
        .map(|user| DeliveryTarget { user, mailbox: "INBOX".into(), flags: vec![] })
        .collect();
    let r = store.deliver(&raw, None, &targets);
    assert!(matches!(r[0], Err(StoreError::OverQuota)), "{:?}", r[0]);
    assert!(r[1].is_ok());
    assert_eq!(a.usage().messages, 0);
    assert_eq!(b.usage().bytes, 200);
    // Two targets of one user in one delivery: the second one passes the limit.
    b.set_quota(limits(500));
    let two: Vec<DeliveryTarget> = ["INBOX", "Lists/new"]
        .into_iter()
        .map(|m| DeliveryTarget { user: uid(2), mailbox: m.into(), flags: vec![] })
        .collect();
    let r = store.deliver(&raw, None, &two);
    assert!(r[0].is_ok());
    assert!(matches!(r[1], Err(StoreError::OverQuota)));
    assert!(b.mailbox("Lists/new").is_none(), "a refused delivery creates no mailbox");
    assert_eq!(b.usage().bytes, 400);
}

#[test]
fn concurrent_appends_never_pass_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let u = store.user(&uid(1)).unwrap();
    let ib = inbox(&u);
    // Room for exactly 25 messages of 100 bytes; 8 threads try 10 each.
    u.set_quota(limits(2500));
    let accepted: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let u = Arc::clone(&u);
                s.spawn(move || {
                    (0..10)
                        .filter(|_| match u.append(ib, vec![sized(100)]) {
                            Ok(_) => true,
                            Err(StoreError::OverQuota) => false,
                            Err(e) => panic!("unexpected {e}"),
                        })
                        .count()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(accepted, 25);
    assert_eq!(u.usage(), Usage { bytes: 2500, messages: 25 });
}

#[test]
fn warnings_once_at_80_and_95_percent_rearmed_below_and_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let root: &Path = dir.path();
    let store = open(root);
    install_warnings(&store);
    let u = store.user(&uid(1)).unwrap();
    let ib = inbox(&u);
    u.set_quota(limits(10_000));
    let (_, first) = u.append(ib, vec![sized(7_999)]).unwrap();
    assert!(warnings_in(&u).is_empty(), "79.99 % warns nobody");
    assert_eq!(u.quota_warned_percent(), 0);
    u.append(ib, vec![sized(100)]).unwrap();
    assert_eq!(warnings_in(&u), ["Subject: Your mailbox is 80% full"]);
    assert_eq!(u.quota_warned_percent(), 80);
    let warning_size = u.usage().bytes - 8_099;
    // More mail below 95 %: no second warning.
    u.append(ib, vec![sized(100)]).unwrap();
    assert_eq!(warnings_in(&u).len(), 1);
    // Crossing 95 %: one more. The warning itself is exempt from the quota: fill up to the
    // limit exactly, and the warning still lands (usage may then exceed the limit).
    let room = 10_000 - u.usage().bytes;
    u.append(ib, vec![sized(room as usize)]).unwrap();
    assert_eq!(warnings_in(&u), ["Subject: Your mailbox is 80% full", "Subject: Your mailbox is 95% full"]);
    assert!(u.usage().bytes > 10_000, "the 95 % warning was added over the limit");
    assert_eq!(u.quota_warned_percent(), 95);
    // Persisted: a reopen does not warn again at the next change.
    drop(u);
    drop(store);
    let store = open(root);
    install_warnings(&store);
    let u = store.user(&uid(1)).unwrap();
    assert_eq!(u.quota_warned_percent(), 95);
    u.set_quota(limits(10_000));
    u.store_flags(ib, &first, FlagOp::Add, &["\\Seen".to_string()], None).unwrap();
    // Dropping below both thresholds (expunge) re-arms them; crossing 80 % again warns again.
    u.store_flags(ib, &first, FlagOp::Add, &["\\Deleted".to_string()], None).unwrap();
    u.expunge(ib, None).unwrap();
    assert!(u.usage().bytes < 8_000, "{:?}", u.usage());
    assert_eq!(u.quota_warned_percent(), 0);
    let room = 8_000 - u.usage().bytes;
    u.append(ib, vec![sized(room as usize)]).unwrap();
    assert_eq!(warnings_in(&u).len(), 3);
    assert_eq!(u.quota_warned_percent(), 80);
    assert!(warning_size > 0);
}

#[test]
fn raising_the_quota_rearms_without_sending() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    install_warnings(&store);
    let u = store.user(&uid(1)).unwrap();
    let ib = inbox(&u);
    u.set_quota(limits(1000));
    u.append(ib, vec![sized(960)]).unwrap();
    assert_eq!(u.quota_warned_percent(), 95);
    assert_eq!(warnings_in(&u).len(), 1, "jumping past both thresholds sends only the highest");
    u.set_quota(limits(100_000));
    assert_eq!(u.quota_warned_percent(), 0);
    assert_eq!(warnings_in(&u).len(), 1);
    // Lowering it again never sends by itself: the next change of mail does.
    u.set_quota(limits(1000));
    assert_eq!((u.quota_warned_percent(), warnings_in(&u).len()), (0, 1));
    assert!(matches!(u.append(ib, vec![sized(20)]), Err(StoreError::OverQuota)));
    assert_eq!(warnings_in(&u).len(), 1, "a refused append changes nothing");
    u.set_quota(limits(1300));
    let (_, uids) = u.append(ib, vec![sized(20)]).unwrap();
    assert_eq!(u.quota_warned_percent(), 80);
    assert_eq!(warnings_in(&u).len(), 2);
    // Unknown limits (as for a user loaded without set_quota) leave the record alone.
    u.set_quota(None);
    u.store_flags(ib, &uids, FlagOp::Add, &["\\Deleted".to_string()], None).unwrap();
    u.expunge(ib, None).unwrap();
    assert_eq!(u.quota_warned_percent(), 80);
}

#[test]
fn without_a_composer_nothing_is_sent_or_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let u = store.user(&uid(1)).unwrap();
    let ib = inbox(&u);
    u.set_quota(limits(1000));
    u.append(ib, vec![sized(900)]).unwrap();
    assert_eq!(u.quota_warned_percent(), 0);
    assert_eq!(u.usage().messages, 1);
    // The service (with a composer) then warns at the next change.
    install_warnings(&store);
    u.append(ib, vec![sized(20)]).unwrap();
    assert_eq!(warnings_in(&u), ["Subject: Your mailbox is 80% full"]);
}

#[test]
fn default_retention_matches_the_config_default() {
    assert_eq!(DEFAULT_RETENTION_SECS, hermes_core::config::DEFAULT_RETENTION_DAYS * 24 * 60 * 60);
}
