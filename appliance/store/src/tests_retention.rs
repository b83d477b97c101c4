//! Tests of delayed expunge, undelete, purge, VANISHED support and format-1 compatibility.
//!
//! What it is: the store-level foundations of issue 3 (points 2–4) on real files, each checked
//! after a clean reopen (checkpoint, format 2) and on a crash image (log replay), plus the
//! format-1 fixture in `testdata/` written by the store before delayed expunge existed.
//! What it is not: the IMAP/POP/CLI layers that call these methods.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::tests::{copy_tree, crash_image, dump, log_dir, msg, msgs_dir, open, uid};
use crate::user::now_unix;
use crate::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

const RETENTION: i64 = DEFAULT_RETENTION_SECS as i64;

/// Everything observable, including what delayed expunge adds.
fn full_dump(u: &UserStore) -> String {
    let mut s = dump(u);
    s += &format!("{:?}\n", u.usage_detail());
    s += &format!("{:?}\n", u.list_retained(&RetainedFilter::default()));
    for mb in u.list_mailboxes() {
        s += &format!("{} horizon {} vanished {:?}\n", mb.name, u.expunge_horizon(mb.id).unwrap(), u.expunged_since(mb.id, 0).unwrap());
    }
    s
}

/// Both a crash image (log replay) and a clean reopen (format-2 checkpoint) reproduce `u`.
fn reopen(root: &Path, store: Store, u: Arc<UserStore>) -> (Store, Arc<UserStore>) {
    let id = u.user_id().clone();
    let before = full_dump(&u);
    let img = crash_image(root);
    {
        let s2 = open(img.path());
        assert_eq!(full_dump(&s2.user(&id).unwrap()), before, "crash image differs");
    }
    drop(u);
    drop(store);
    let store = open(root);
    let u = store.user(&id).unwrap();
    assert_eq!(full_dump(&u), before, "clean reopen differs");
    (store, u)
}

fn deleted() -> Vec<Flag> {
    vec!["\\Deleted".into()]
}

fn file_count(root: &Path, id: &UserId) -> usize {
    std::fs::read_dir(msgs_dir(root, id)).unwrap().count()
}

#[test]
fn expunge_retains_hidden_messages_with_time_mailbox_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, mut u) = {
        let s = open(dir.path());
        let u = s.user(&uid(1)).unwrap();
        (s, u)
    };
    let inbox = u.mailbox("INBOX").unwrap().id;
    let date = InternalDate { unix: 1_500_000_000, offset_minutes: -120 };
    let one = NewMessage { raw: b"Subject: one\r\n\r\n1\r\n".to_vec(), flags: vec!["\\Flagged".into()], internal_date: Some(date) };
    u.append(inbox, vec![one.clone(), msg("two"), msg("three")]).unwrap();
    let live_before = u.usage();
    u.store_flags(inbox, &[1, 3], FlagOp::Add, &deleted(), None).unwrap();
    let t0 = now_unix();
    assert_eq!(u.expunge(inbox, None).unwrap(), vec![1, 3]);
    let t1 = now_unix();

    // Invisible to views and to the quota figure.
    let v = u.view(inbox).unwrap();
    assert_eq!(v.messages.iter().map(|m| m.uid).collect::<Vec<_>>(), vec![2]);
    assert!(matches!(u.read_message(inbox, 1), Err(StoreError::NoSuchMessage)));
    assert_eq!(u.mailbox("INBOX").unwrap().messages, 1);
    let r = u.list_retained(&RetainedFilter::default());
    assert_eq!(r.len(), 2);
    let retained_bytes = r.iter().map(|m| m.size).sum::<u64>();
    assert_eq!(u.usage(), Usage { bytes: live_before.bytes - retained_bytes, messages: 1 });
    assert_eq!(
        u.usage_detail(),
        UsageDetail { live_bytes: u.usage().bytes, live_messages: 1, retained_bytes, retained_messages: 2 }
    );
    let first = &r[0];
    assert_eq!((first.mailbox, first.mailbox_name.as_str(), first.uid), (inbox, "INBOX", 1));
    assert!((t0..=t1).contains(&first.expunged_at));
    assert_eq!(first.expires_at, first.expunged_at + RETENTION);
    assert_eq!(first.flags, vec!["\\Deleted".to_string(), "\\Flagged".to_string()]);
    assert_eq!(first.internal_date, date);
    assert_eq!(first.size, one.raw.len() as u64);
    assert_eq!(first.reason, RetainedReason::Expunged);
    assert_eq!(first.expunged_modseq, v.highest_modseq);
    assert_eq!(r[1].uid, 3);
    // The files stay.
    assert_eq!(file_count(dir.path(), &uid(1)), 3);

    // Filters.
    let f = |mailbox: Option<&str>, since: Option<i64>, until: Option<i64>| {
        u.list_retained(&RetainedFilter { mailbox: mailbox.map(String::from), since, until }).len()
    };
    assert_eq!(f(Some("inbox"), None, None), 2, "INBOX case-insensitively");
    assert_eq!(f(Some("Trash"), None, None), 0);
    assert_eq!(f(Some("bad//name"), None, None), 0);
    assert_eq!(f(None, Some(t0), None), 2);
    assert_eq!(f(None, Some(t1 + 1), None), 0);
    assert_eq!(f(None, None, Some(t0)), 0, "until is exclusive");
    assert_eq!(f(None, Some(t0), Some(t1 + 1)), 2);
    // Renamed since: the old and the new name both find it.
    u.create_mailbox("Work", None).unwrap();
    let work = u.mailbox("Work").unwrap().id;
    u.append(work, vec![msg("w")]).unwrap();
    u.store_flags(work, &[1], FlagOp::Add, &deleted(), None).unwrap();
    u.expunge(work, None).unwrap();
    u.rename_mailbox("Work", "Job").unwrap();
    assert_eq!(f(Some("Work"), None, None), 1);
    assert_eq!(f(Some("Job"), None, None), 1);

    (store, u) = reopen(dir.path(), store, u);
    assert_eq!(u.list_retained(&RetainedFilter::default()).len(), 3);
    drop((store, u));
}

#[test]
fn undelete_gives_new_uids_keeps_flags_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    let mut u = store.user(&uid(2)).unwrap();
    let inbox = u.mailbox("INBOX").unwrap().id;
    let date = InternalDate { unix: 1_400_000_000, offset_minutes: 330 };
    let raws: Vec<Vec<u8>> = (0..4).map(|i| format!("Subject: m{i}\r\n\r\nbody {i}\r\n").into_bytes()).collect();
    u.append(
        inbox,
        raws.iter()
            .map(|r| NewMessage { raw: r.clone(), flags: vec!["\\Seen".into(), "$Work".into()], internal_date: Some(date) })
            .collect(),
    )
    .unwrap();
    u.store_flags(inbox, &[2, 4], FlagOp::Add, &deleted(), None).unwrap();
    let m_expunge = {
        u.expunge(inbox, None).unwrap();
        u.view(inbox).unwrap().highest_modseq
    };
    let mut rx = u.subscribe();
    let uidnext = u.mailbox("INBOX").unwrap().uidnext;
    assert_eq!(uidnext, 5);
    let restored = u.undelete(&RetainedFilter { mailbox: Some("INBOX".into()), ..Default::default() }).unwrap();
    assert_eq!(restored.iter().map(|r| (r.original_uid, r.uid)).collect::<Vec<_>>(), vec![(2, 5), (4, 6)]);
    let info = u.mailbox("INBOX").unwrap();
    assert!(restored.iter().all(|r| r.mailbox == "INBOX" && r.mailbox_id == inbox && r.uidvalidity == info.uidvalidity));
    assert_eq!((info.messages, info.uidnext), (4, 7));
    let v = u.view(inbox).unwrap();
    for r in &restored {
        let m = v.messages.iter().find(|m| m.uid == r.uid).unwrap();
        assert_eq!(m.flags, vec!["$Work".to_string(), "\\Seen".to_string()], "flags kept, \\Deleted dropped");
        assert_eq!(m.internal_date, date);
        assert!(m.modseq > m_expunge);
        assert_eq!(*u.read_message(inbox, r.uid).unwrap(), raws[(r.original_uid - 1) as usize], "bytes equal");
    }
    assert!(rx.try_recv().is_ok(), "sessions hear of restored mail");
    assert!(u.list_retained(&RetainedFilter::default()).is_empty());
    let d = u.usage_detail();
    assert_eq!((d.live_messages, d.retained_messages, d.retained_bytes), (4, 0, 0));
    // The restored UIDs 2 and 4 are gone for good under those numbers: VANISHED below the
    // expunge can no longer be answered from retained entries.
    assert!(u.expunge_horizon(inbox).unwrap() >= m_expunge);
    // Nothing left to restore: no record, nothing changes.
    assert!(u.undelete(&RetainedFilter::default()).unwrap().is_empty());
    // The restore is durable (crash image) and survives a checkpoint.
    (store, u) = reopen(dir.path(), store, u);
    assert_eq!(file_count(dir.path(), &uid(2)), 4);
    drop((store, u));
}

#[test]
fn mailbox_delete_then_undelete_recreates_the_mailbox() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    let mut u = store.user(&uid(3)).unwrap();
    let p = u.create_mailbox("Projects/2024", None).unwrap();
    u.append(p.id, vec![msg("a"), NewMessage { raw: msg("b").raw, flags: vec!["\\Answered".into()], internal_date: None }])
        .unwrap();
    u.delete_mailbox("Projects/2024").unwrap();
    u.delete_mailbox("Projects").unwrap();
    assert!(u.mailbox("Projects").is_none() && u.mailbox("Projects/2024").is_none());
    assert_eq!(u.usage().messages, 0);
    let r = u.list_retained(&RetainedFilter { mailbox: Some("Projects/2024".into()), ..Default::default() });
    assert_eq!(r.len(), 2);
    assert!(r.iter().all(|m| m.reason == RetainedReason::MailboxDeleted && m.mailbox == p.id));
    assert_eq!(file_count(dir.path(), &uid(3)), 2, "files retained");
    (store, u) = reopen(dir.path(), store, u);

    let restored = u.undelete(&RetainedFilter { mailbox: Some("Projects/2024".into()), ..Default::default() }).unwrap();
    let again = u.mailbox("Projects/2024").unwrap();
    assert!(u.mailbox("Projects").is_some(), "missing parent recreated");
    assert_ne!(again.id, p.id, "a recreated mailbox is a new mailbox");
    assert!(again.uidvalidity > p.uidvalidity);
    assert_eq!(restored.iter().map(|r| (r.mailbox.as_str(), r.mailbox_id, r.uid)).collect::<Vec<_>>(), vec![
        ("Projects/2024", again.id, 1),
        ("Projects/2024", again.id, 2)
    ]);
    assert_eq!(*u.read_message(again.id, 1).unwrap(), msg("a").raw);
    assert_eq!(*u.read_message(again.id, 2).unwrap(), msg("b").raw);
    assert_eq!(u.view(again.id).unwrap().messages[1].flags, vec!["\\Answered".to_string()]);
    (store, u) = reopen(dir.path(), store, u);

    // Deleted, then recreated by the user before the undelete: restored into that mailbox.
    let t = u.create_mailbox("Tmp", None).unwrap();
    u.append(t.id, vec![msg("t1")]).unwrap();
    u.delete_mailbox("Tmp").unwrap();
    let t2 = u.create_mailbox("Tmp", None).unwrap();
    u.append(t2.id, vec![msg("new")]).unwrap();
    let restored = u.undelete(&RetainedFilter { mailbox: Some("Tmp".into()), ..Default::default() }).unwrap();
    assert_eq!(restored.len(), 1);
    assert_eq!((restored[0].mailbox_id, restored[0].uid), (t2.id, 2));
    assert_eq!(*u.read_message(t2.id, 2).unwrap(), msg("t1").raw);
    // Expunged from a mailbox later renamed: restored into it by id.
    let w = u.create_mailbox("Old", None).unwrap();
    u.append(w.id, vec![msg("o1")]).unwrap();
    u.store_flags(w.id, &[1], FlagOp::Add, &deleted(), None).unwrap();
    u.expunge(w.id, None).unwrap();
    u.rename_mailbox("Old", "Renamed").unwrap();
    let restored = u.undelete(&RetainedFilter { mailbox: Some("Old".into()), ..Default::default() }).unwrap();
    assert_eq!((restored[0].mailbox.as_str(), restored[0].mailbox_id, restored[0].uid), ("Renamed", w.id, 2));
    assert!(u.mailbox("Old").is_none(), "no stray mailbox under the old name");
    let _ = reopen(dir.path(), store, u);
}

#[test]
fn purge_after_retention_removes_files_and_link_counts_drop() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (a, b) = (uid(4), uid(5));
    let targets: Vec<DeliveryTarget> =
        [&a, &b].iter().map(|k| DeliveryTarget { user: (*k).clone(), mailbox: "INBOX".into(), flags: vec![] }).collect();
    let raw = b"Subject: shared\r\n\r\nto both\r\n".to_vec();
    for r in store.deliver(&raw, None, &targets) {
        r.unwrap();
    }
    let ua = store.user(&a).unwrap();
    let inbox = ua.mailbox("INBOX").unwrap().id;
    let file_b = std::fs::read_dir(msgs_dir(dir.path(), &b)).unwrap().next().unwrap().unwrap().path();
    assert_eq!(std::fs::metadata(&file_b).unwrap().nlink(), 2);
    ua.store_flags(inbox, &[1], FlagOp::Add, &deleted(), None).unwrap();
    ua.expunge(inbox, None).unwrap();
    // A MOVE leaves a (non-restorable) tombstone of its source, purged the same way.
    ua.append(inbox, vec![msg("moved")]).unwrap();
    let trash = ua.mailbox("Trash").unwrap().id;
    ua.move_messages(inbox, &[2], trash).unwrap();
    assert_eq!(ua.list_retained(&RetainedFilter::default()).len(), 1, "moved mail is not listed as restorable");
    assert_eq!(ua.expunged_since(inbox, 0).unwrap(), vec![1, 2]);

    let now = now_unix();
    let seg_len = |id: &UserId| -> u64 {
        crate::log::list_segments(&log_dir(dir.path(), id)).unwrap().iter().map(|s| std::fs::metadata(&s.path).unwrap().len()).sum()
    };
    // Before the retention period ends: nothing goes, and no record is written.
    let len0 = seg_len(&a);
    let r = store.purge_expired(now).unwrap();
    assert_eq!((r.users, r.messages, r.files_removed), (2, 0, 0));
    assert!(r.failed.is_empty());
    assert_eq!(seg_len(&a), len0);
    assert_eq!(std::fs::metadata(&file_b).unwrap().nlink(), 2);

    let r = store.purge_expired(now + RETENTION + 1).unwrap();
    assert_eq!((r.users, r.messages, r.bytes, r.files_removed), (2, 1, raw.len() as u64, 1));
    assert_eq!(std::fs::metadata(&file_b).unwrap().nlink(), 1, "A's link is gone");
    assert_eq!(file_count(dir.path(), &a), 1, "only the moved message's file, live in Trash");
    assert_eq!(*ua.read_message(trash, 1).unwrap(), msg("moved").raw);
    assert!(ua.list_retained(&RetainedFilter::default()).is_empty());
    assert_eq!(ua.usage_detail().retained_bytes, 0);
    assert!(ua.expunged_since(inbox, 0).unwrap().is_empty());
    // Idempotent: a second run finds nothing and writes nothing.
    let len1 = seg_len(&a);
    let r = store.purge_expired(now + RETENTION + 1).unwrap();
    assert_eq!((r.messages, r.files_removed), (0, 0));
    assert_eq!(seg_len(&a), len1);
    let ub = store.user(&b).unwrap();
    assert_eq!(*ub.read_message(ub.mailbox("INBOX").unwrap().id, 1).unwrap(), raw);
    drop(ub);
    let _ = reopen(dir.path(), store, ua);
}

#[test]
fn retention_zero_purges_everything_expunged_at_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreConfig { retention_secs: 0, ..StoreConfig::default() }).unwrap();
    let u = store.user(&uid(6)).unwrap();
    let inbox = u.mailbox("INBOX").unwrap().id;
    u.append(inbox, vec![NewMessage { raw: msg("x").raw, flags: deleted(), internal_date: None }]).unwrap();
    u.expunge(inbox, None).unwrap();
    let r = u.list_retained(&RetainedFilter::default());
    assert_eq!(r[0].expires_at, r[0].expunged_at);
    let r = u.purge_expired(now_unix()).unwrap();
    assert_eq!((r.messages, r.files_removed), (1, 1));
    assert_eq!(file_count(dir.path(), &uid(6)), 0);
}

#[test]
fn purge_survives_a_crash_on_either_side_of_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let id = uid(7);
    let store = open(dir.path());
    let u = store.user(&id).unwrap();
    let inbox = u.mailbox("INBOX").unwrap().id;
    u.append(inbox, vec![msg("keep"), NewMessage { raw: msg("gone").raw, flags: deleted(), internal_date: None }]).unwrap();
    u.expunge(inbox, None).unwrap();
    let before_purge = crash_image(dir.path());
    let retained_before = full_dump(&u);
    let seg = crate::log::list_segments(&log_dir(dir.path(), &id)).unwrap().pop().unwrap().path;
    let len_before = std::fs::metadata(&seg).unwrap().len();
    let gone_file: Vec<_> = std::fs::read_dir(msgs_dir(dir.path(), &id)).unwrap().map(|e| e.unwrap().path()).collect();
    let r = u.purge_expired(now_unix() + RETENTION + 1).unwrap();
    assert_eq!(r.files_removed, 1);
    let after = full_dump(&u);
    let full = std::fs::read(&seg).unwrap();
    assert!(full.len() as u64 > len_before, "purge went through the log");

    // 1. Crash while the Purge record was being written (torn frame): recovery cuts it, the
    //    message is still retained with its file, and a later purge completes the job.
    for cut in [len_before + 1, len_before + 10, full.len() as u64 - 1] {
        let img = crash_image(before_purge.path());
        let iseg = log_dir(img.path(), &id).join(seg.file_name().unwrap());
        std::fs::write(&iseg, &full[..cut as usize]).unwrap();
        let s2 = open(img.path());
        let u2 = s2.user(&id).unwrap();
        assert_eq!(full_dump(&u2), retained_before, "cut at {cut}");
        assert_eq!(std::fs::metadata(&iseg).unwrap().len(), len_before, "torn tail truncated");
        u2.purge_expired(now_unix() + RETENTION + 1).unwrap();
        assert_eq!(full_dump(&u2), after);
        assert_eq!(file_count(img.path(), &id), 1);
    }

    // 2. Crash after the Purge record was durable but before the file was unlinked: the file
    //    is unreferenced and the open removes it.
    let img = crash_image(before_purge.path());
    std::fs::copy(&seg, log_dir(img.path(), &id).join(seg.file_name().unwrap())).unwrap();
    assert_eq!(file_count(img.path(), &id), gone_file.len(), "file still there in the image");
    let s2 = open(img.path());
    let u2 = s2.user(&id).unwrap();
    assert_eq!(full_dump(&u2), after);
    assert_eq!(file_count(img.path(), &id), 1, "leftover file of a purged message removed at open");
}

#[test]
fn expunged_since_answers_vanished_across_reopen_and_reports_its_horizon() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    let mut u = store.user(&uid(8)).unwrap();
    let inbox = u.mailbox("INBOX").unwrap().id;
    let trash = u.mailbox("Trash").unwrap().id;
    u.append(inbox, (1..=6).map(|i| msg(&format!("m{i}"))).collect()).unwrap();
    let m0 = u.view(inbox).unwrap().highest_modseq;
    assert_eq!(u.expunge_horizon(inbox).unwrap(), 0, "a new mailbox can answer for any modseq");
    u.store_flags(inbox, &[2, 3], FlagOp::Add, &deleted(), None).unwrap();
    u.expunge(inbox, Some(&[2, 3])).unwrap();
    let m1 = u.view(inbox).unwrap().highest_modseq;
    u.move_messages(inbox, &[5], trash).unwrap();
    let m2 = u.view(inbox).unwrap().highest_modseq;
    u.store_flags(inbox, &[1], FlagOp::Add, &deleted(), None).unwrap();
    u.expunge(inbox, None).unwrap();
    let m3 = u.view(inbox).unwrap().highest_modseq;
    let check = |u: &UserStore| {
        assert_eq!(u.expunged_since(inbox, 0).unwrap(), vec![1, 2, 3, 5]);
        assert_eq!(u.expunged_since(inbox, m0).unwrap(), vec![1, 2, 3, 5]);
        assert_eq!(u.expunged_since(inbox, m1).unwrap(), vec![1, 5]);
        assert_eq!(u.expunged_since(inbox, m2).unwrap(), vec![1]);
        assert_eq!(u.expunged_since(inbox, m3).unwrap(), Vec::<u32>::new());
        assert_eq!(u.expunged_since(trash, 0).unwrap(), Vec::<u32>::new());
        assert_eq!(u.expunge_horizon(inbox).unwrap(), 0);
    };
    check(&u);
    assert!(matches!(u.expunged_since(MailboxId(999), 0), Err(StoreError::NoSuchMailbox)));
    assert!(matches!(u.expunge_horizon(MailboxId(999)), Err(StoreError::NoSuchMailbox)));
    (store, u) = reopen(dir.path(), store, u);
    check(&u);
    // A checkpoint in the middle of the history, then more expunges after it.
    u.checkpoint().unwrap();
    u.store_flags(inbox, &[4], FlagOp::Add, &deleted(), None).unwrap();
    u.expunge(inbox, None).unwrap();
    let m4 = u.view(inbox).unwrap().highest_modseq;
    assert_eq!(u.expunged_since(inbox, m3).unwrap(), vec![4]);
    (store, u) = reopen(dir.path(), store, u);
    assert_eq!(u.expunged_since(inbox, m3).unwrap(), vec![4]);

    // After a purge the answers below the purged modseqs are gone: the horizon says so.
    u.purge_expired(now_unix() + RETENTION + 1).unwrap();
    assert!(u.expunged_since(inbox, 0).unwrap().is_empty());
    assert_eq!(u.expunge_horizon(inbox).unwrap(), m4);
    (store, u) = reopen(dir.path(), store, u);
    assert_eq!(u.expunge_horizon(inbox).unwrap(), m4);
    drop((store, u));
}

fn fixture(name: &str) -> tempfile::TempDir {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(name);
    let d = tempfile::tempdir().unwrap();
    copy_tree(&src, d.path());
    d
}

fn expected(user: u8) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(format!("v1-expected-user{user}.txt"));
    std::fs::read_to_string(p).unwrap()
}

#[test]
fn format_1_stores_open_unchanged_and_upgrade_on_the_next_checkpoint() {
    for name in ["v1-log", "v1-checkpoint"] {
        let dir = fixture(name);
        let cp = dir.path().join("users").join(uid(1).as_str()).join("checkpoint");
        if name == "v1-checkpoint" {
            assert_eq!(&std::fs::read(&cp).unwrap()[..8], crate::checkpoint::MAGIC_V1, "the fixture is format 1");
        }
        {
            let store = open(dir.path());
            for k in [1u8, 2] {
                let u = store.user(&uid(k)).unwrap();
                assert_eq!(dump(&u), expected(k), "{name}: user {k}");
                let d = u.usage_detail();
                assert_eq!((d.retained_messages, d.retained_bytes), (0, 0));
                assert!(u.list_retained(&RetainedFilter::default()).is_empty(), "format 1 kept no expunged mail");
            }
            let u = store.user(&uid(1)).unwrap();
            // Trash had a format-1 expunge, INBOX a RENAME INBOX: VANISHED cannot go below them.
            let trash = u.mailbox("Trash").unwrap();
            assert!(u.expunge_horizon(trash.id).unwrap() > 0);
            assert!(u.expunge_horizon(trash.id).unwrap() <= trash.highest_modseq);
            let inbox = u.mailbox("INBOX").unwrap();
            assert!(u.expunge_horizon(inbox.id).unwrap() > 0);
            assert!(u.expunged_since(trash.id, 0).unwrap().is_empty());
            // New operations on the old store: delayed expunge and undelete.
            let jobs = u.mailbox("Jobs/Projects").unwrap().id;
            u.store_flags(jobs, &[1], FlagOp::Add, &deleted(), None).unwrap();
            u.expunge(jobs, None).unwrap();
            assert_eq!(u.list_retained(&RetainedFilter::default()).len(), 1);
            let r = u.undelete(&RetainedFilter::default()).unwrap();
            assert_eq!(r[0].uid, 3);
            assert_eq!(*u.read_message(jobs, 3).unwrap(), b"Subject: one\r\n\r\none\r\n".to_vec());
            let store2 = store;
            let (s, u) = reopen(dir.path(), store2, u);
            drop((s, u));
        }
        // The clean close wrote a format-2 checkpoint, which opens too.
        assert_eq!(&std::fs::read(&cp).unwrap()[..8], crate::checkpoint::MAGIC);
        let store = open(dir.path());
        let u = store.user(&uid(1)).unwrap();
        assert_eq!(u.mailbox("Jobs/Projects").unwrap().messages, 2);
    }
}

#[test]
fn format_2_checkpoint_round_trips_retained_entries_and_refuses_damage() {
    let dir = tempfile::tempdir().unwrap();
    let id = uid(9);
    {
        let store = open(dir.path());
        let u = store.user(&id).unwrap();
        let inbox = u.mailbox("INBOX").unwrap().id;
        u.append(inbox, vec![NewMessage { raw: msg("x").raw, flags: vec!["\\Deleted".into(), "$K".into()], internal_date: None }])
            .unwrap();
        u.expunge(inbox, None).unwrap();
        u.checkpoint().unwrap();
    }
    let user_dir = dir.path().join("users").join(id.as_str());
    let bytes = std::fs::read(user_dir.join("checkpoint")).unwrap();
    let st = crate::checkpoint::decode(&bytes).unwrap();
    assert_eq!(st.retained.len(), 1);
    assert_eq!(crate::checkpoint::encode(&st), bytes, "encode(decode(x)) == x");
    // Every truncation is refused without a panic.
    for cut in 0..bytes.len() {
        assert!(crate::checkpoint::decode(&bytes[..cut]).is_err());
    }
}

const PURGE_CRASH_ENV: &str = "HERMES_STORE_PURGE_CRASH_CHILD";

/// The child half of the kill -9 purge test: appends a message to keep and one to drop,
/// expunges the second, and purges with a clock past the retention, forever; prints one line
/// per acknowledged kept message. Does nothing when run as a normal test.
#[test]
fn purge_crash_child_entry() {
    let Ok(root) = std::env::var(PURGE_CRASH_ENV) else { return };
    let round: u32 = std::env::var("HERMES_STORE_CRASH_ROUND").ok().and_then(|r| r.parse().ok()).unwrap_or(0);
    let store = open(Path::new(&root));
    let u = store.user(&uid(30)).unwrap();
    let inbox = u.mailbox("INBOX").unwrap().id;
    for i in 0u32.. {
        let n = round * 1_000_000 + i;
        let (_, uids) = u
            .append(inbox, vec![msg(&format!("keep {n}")), NewMessage { raw: msg(&format!("drop {n}")).raw, flags: deleted(), internal_date: None }])
            .unwrap();
        println!("KEEP {} {n}", uids[0]);
        u.expunge(inbox, None).unwrap();
        if i % 2 == 0 {
            store.purge_expired(now_unix() + RETENTION + 1).unwrap();
        }
    }
}

#[test]
fn kill_minus_nine_during_purges_loses_nothing_live_and_leaks_no_file() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let mut kept: Vec<(u32, u32)> = Vec::new();
    for round in 0..3u32 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "tests_retention::purge_crash_child_entry", "--nocapture", "--test-threads=1"])
            .env(PURGE_CRASH_ENV, dir.path())
            .env("HERMES_STORE_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let parse = |line: &str| -> Option<(u32, u32)> {
            let p: Vec<&str> = line.split_whitespace().collect();
            (p.len() == 3 && p[0] == "KEEP").then(|| (p[1].parse().unwrap(), p[2].parse().unwrap()))
        };
        let target = 40 + round * 15;
        let mut got = 0;
        while got < target {
            let Some(Ok(line)) = lines.next() else { break };
            if let Some(k) = parse(&line) {
                kept.push(k);
                got += 1;
            }
        }
        assert_eq!(got, target, "child stopped early");
        child.kill().unwrap(); // SIGKILL
        for line in lines.map_while(Result::ok) {
            if let Some(k) = parse(&line) {
                kept.push(k);
            }
        }
        child.wait().unwrap();

        let store = open(dir.path());
        let u = store.user(&uid(30)).unwrap();
        let inbox = u.mailbox("INBOX").unwrap().id;
        for (uid_, n) in &kept {
            assert_eq!(*u.read_message(inbox, *uid_).unwrap(), msg(&format!("keep {n}")).raw, "round {round}");
        }
        let v = u.view(inbox).unwrap();
        // At most the last "drop" message is live (killed between its append and its expunge);
        // no expunged or purged one came back.
        let flagged: Vec<u32> = v.messages.iter().filter(|m| m.flags.iter().any(|f| f == "\\Deleted")).map(|m| m.uid).collect();
        assert!(flagged.len() <= 1 && flagged.iter().all(|u| Some(*u) == v.messages.last().map(|m| m.uid)), "{flagged:?}");
        // Every file on disk is referenced (live or retained), and a purge leaves only live ones.
        let retained = u.list_retained(&RetainedFilter::default()).len();
        assert_eq!(file_count(dir.path(), &uid(30)), v.messages.len() + retained, "round {round}");
        u.purge_expired(now_unix() + RETENTION + 1).unwrap();
        assert_eq!(file_count(dir.path(), &uid(30)), v.messages.len());
        assert_eq!(u.usage_detail().retained_messages, 0);
    }
}

#[test]
fn retained_headers_are_read_up_to_their_blank_line_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let u = store.user(&uid(3)).unwrap();
    let inbox = u.mailbox("INBOX").unwrap().id;
    // The blank line straddles the 4 KiB read size in the second message (CRLF CRLF split).
    let pad = "x".repeat(4096 - "X-Pad: \r\n".len());
    let raws: Vec<Vec<u8>> = vec![
        b"Subject: one\r\nFrom: a@b\r\n\r\nbody one\r\n".to_vec(),
        format!("X-Pad: {pad}\r\n\r\nbody two\r\n").into_bytes(),
        b"Subject: lf only\n\nbody three\n".to_vec(),
        b"Subject: no body, no blank line\r\n".to_vec(),
        format!("Subject: huge\r\nX-Big: {}\r\n\r\nbody\r\n", "y".repeat(100_000)).into_bytes(),
        b"\r\nSubject: in the body\r\n".to_vec(),
    ];
    u.append(inbox, raws.iter().map(|r| NewMessage { raw: r.clone(), flags: deleted(), internal_date: None }).collect())
        .unwrap();
    u.expunge(inbox, None).unwrap();
    let head = |n: u32| u.read_retained_header(inbox, n, 64 * 1024).unwrap();
    assert_eq!(head(1), b"Subject: one\r\nFrom: a@b\r\n\r\n");
    let two = head(2);
    assert!(two.ends_with(b"\r\n\r\n") && two.len() == 4098, "{}", two.len());
    assert_eq!(head(3), b"Subject: lf only\n\n");
    assert_eq!(head(4), raws[3]);
    assert_eq!(head(5).len(), 64 * 1024, "a header beyond the limit is cut there");
    assert_eq!(head(6), b"\r\n");
    assert!(matches!(u.read_retained_header(inbox, 9, 1024), Err(StoreError::NoSuchMessage)));
    // Live (not retained) messages are not readable this way; restored ones no longer are.
    u.undelete(&RetainedFilter::default()).unwrap();
    assert!(matches!(u.read_retained_header(inbox, 1, 1024), Err(StoreError::NoSuchMessage)));
}
