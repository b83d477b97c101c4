//! Tests of the whole store on real files in temporary folders.
//!
//! What it is: every public operation, reopen after each (both a clean reopen, which loads the
//! checkpoint, and a "crash image", a copy of the folder taken while the store is open, which
//! replays the log), torn tails, orphans, hard-linked delivery, the lock, concurrency, and a
//! kill -9 test driving a child process.
//! What it is not: IMAP semantics above the store (the IMAP crate tests those).

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::*;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub(crate) fn uid(n: u8) -> UserId {
    UserId::parse(&format!("{:032x}", n)).unwrap()
}

pub(crate) fn msg(body: &str) -> NewMessage {
    NewMessage { raw: format!("Subject: {body}\r\n\r\n{body}\r\n").into_bytes(), flags: vec![], internal_date: None }
}

pub(crate) fn open(root: &Path) -> Store {
    Store::open(root, StoreConfig::default()).unwrap()
}

/// Everything observable about a user, as text.
pub(crate) fn dump(u: &UserStore) -> String {
    let mut s = format!("{:?}\n{:?}\n{:?}\n", u.list_mailboxes(), u.subscriptions(), u.usage());
    for mb in u.list_mailboxes() {
        let v = u.view(mb.id).unwrap();
        s += &format!("{} {} {} {} {:?}\n", v.name, v.uidvalidity, v.uidnext, v.highest_modseq, v.messages);
        for m in v.messages.iter() {
            s += &format!("{}:{}\n", m.uid, String::from_utf8_lossy(&u.read_message(mb.id, m.uid).unwrap()));
        }
    }
    s
}

pub(crate) fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// A copy of the store folder as it is on disk now: what a crash at this instant leaves.
pub(crate) fn crash_image(root: &Path) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    copy_tree(root, d.path());
    d
}

/// Asserts that both a crash image and a clean reopen reproduce `u`'s state exactly.
/// Consumes the store handles; returns freshly opened ones.
pub(crate) fn assert_reopens(root: &Path, store: Store, u: Arc<UserStore>) -> (Store, Arc<UserStore>) {
    let id = u.user_id().clone();
    let before = dump(&u);
    let img = crash_image(root);
    {
        let s2 = open(img.path());
        assert_eq!(dump(&s2.user(&id).unwrap()), before, "crash image differs");
    }
    drop(u);
    drop(store);
    let store = open(root);
    let u = store.user(&id).unwrap();
    assert_eq!(dump(&u), before, "clean reopen differs");
    (store, u)
}

pub(crate) fn log_dir(root: &Path, id: &UserId) -> PathBuf {
    root.join("users").join(id.as_str()).join("log")
}

pub(crate) fn msgs_dir(root: &Path, id: &UserId) -> PathBuf {
    root.join("users").join(id.as_str()).join("msgs")
}

#[test]
fn new_user_gets_inbox_and_special_use_folders_all_subscribed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let u = store.user(&uid(1)).unwrap();
    let list = u.list_mailboxes();
    let names: Vec<&str> = list.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, vec!["INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"]);
    for (n, su) in DEFAULT_MAILBOXES {
        let m = u.mailbox(n).unwrap();
        assert_eq!(m.special_use, Some(su));
        assert!(m.subscribed);
        assert_eq!(m.uidnext, 1);
    }
    assert!(u.mailbox("inbox").unwrap().subscribed);
    assert!(Arc::ptr_eq(&u, &store.user(&uid(1)).unwrap()), "same Arc for the same user");
    let uvs: std::collections::HashSet<u32> = list.iter().map(|m| m.uidvalidity).collect();
    assert_eq!(uvs.len(), list.len(), "UIDVALIDITY values are distinct");
    let (_s, u) = assert_reopens(dir.path(), store, u);
    assert_eq!(u.list_mailboxes().len(), 6, "not re-initialised on reopen");
}

#[test]
fn second_open_of_the_same_root_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert!(matches!(Store::open(dir.path(), StoreConfig::default()), Err(StoreError::Locked)));
    let u = store.user(&uid(1)).unwrap();
    drop(store);
    // A user handle keeps the lock too.
    assert!(matches!(Store::open(dir.path(), StoreConfig::default()), Err(StoreError::Locked)));
    drop(u);
    assert!(Store::open(dir.path(), StoreConfig::default()).is_ok());
}

#[test]
fn mailbox_name_rules_and_hierarchy() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let u = store.user(&uid(1)).unwrap();
    for bad in ["", "/a", "a/", "a//b", "a\tb", "x*", "%"] {
        assert!(matches!(u.create_mailbox(bad, None), Err(StoreError::InvalidMailboxName)), "{bad:?}");
    }
    assert!(matches!(u.create_mailbox(&"a".repeat(1025), None), Err(StoreError::InvalidMailboxName)));
    assert!(matches!(u.create_mailbox("inbox", None), Err(StoreError::MailboxExists)));
    assert!(matches!(u.create_mailbox("Sent", None), Err(StoreError::MailboxExists)));
    let c = u.create_mailbox("a/b/c", None).unwrap();
    assert_eq!(c.name, "a/b/c");
    assert!(!c.subscribed);
    assert!(u.mailbox("a").is_some() && u.mailbox("a/b").is_some());
    assert_eq!(u.mailbox("InBox").unwrap().name, "INBOX");
    assert!(u.mailbox("sent").is_none(), "only INBOX is case-insensitive");
    let ib = u.create_mailbox("inbox/Sub", None).unwrap();
    assert_eq!(ib.name, "INBOX/Sub");

    assert!(matches!(u.delete_mailbox("a"), Err(StoreError::HasChildren)));
    assert!(matches!(u.delete_mailbox("INBOX"), Err(StoreError::CannotDeleteInbox)));
    assert!(matches!(u.delete_mailbox("nope"), Err(StoreError::NoSuchMailbox)));

    // Rename moves children; the ids survive.
    let b_id = u.mailbox("a/b").unwrap().id;
    u.set_subscribed("a/b/c", true).unwrap();
    u.rename_mailbox("a", "x/y").unwrap();
    assert!(u.mailbox("a").is_none() && u.mailbox("a/b/c").is_none());
    assert_eq!(u.mailbox("x/y/b").unwrap().id, b_id);
    assert!(u.mailbox("x").is_some(), "missing parent of the new name created");
    assert!(u.mailbox("x/y/b/c").unwrap().subscribed, "subscription follows the rename");
    assert!(matches!(u.rename_mailbox("x/y", "x/y/z"), Err(StoreError::InvalidMailboxName)));
    assert!(matches!(u.rename_mailbox("x/y", "Sent"), Err(StoreError::MailboxExists)));
    assert!(matches!(u.rename_mailbox("nope", "n2"), Err(StoreError::NoSuchMailbox)));

    // Deleting leaf to root.
    u.delete_mailbox("x/y/b/c").unwrap();
    u.delete_mailbox("x/y/b").unwrap();
    assert!(u.mailbox("x/y/b").is_none());

    // Subscriptions may name missing mailboxes; deleting a mailbox keeps its subscription.
    u.set_subscribed("Ghost", true).unwrap();
    assert!(u.subscriptions().contains(&"Ghost".to_string()));
    assert!(u.subscriptions().contains(&"x/y/b/c".to_string()));
    u.set_subscribed("Ghost", false).unwrap();
    assert!(!u.subscriptions().contains(&"Ghost".to_string()));
    assert!(matches!(u.set_subscribed("a//b", true), Err(StoreError::InvalidMailboxName)));

    let names: Vec<String> = u.list_mailboxes().into_iter().map(|m| m.name).collect();
    let mut sorted = names[1..].to_vec();
    sorted.sort();
    assert_eq!(names[0], "INBOX");
    assert_eq!(names[1..], sorted[..]);
    assert_reopens(dir.path(), store, u);
}

#[test]
fn messages_append_flags_copy_move_expunge_and_reopen_after_each() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    let mut u = store.user(&uid(2)).unwrap();
    let inbox = u.mailbox("INBOX").unwrap().id;
    let arch = u.mailbox("Archive").unwrap().id;

    let date = InternalDate { unix: 1_600_000_000, offset_minutes: 120 };
    let (uv, uids) = u
        .append(
            inbox,
            vec![
                NewMessage { raw: b"one".to_vec(), flags: vec!["\\seen".into(), "$Label1".into()], internal_date: Some(date) },
                msg("two"),
                msg("three"),
            ],
        )
        .unwrap();
    assert_eq!(uv, u.mailbox("INBOX").unwrap().uidvalidity);
    assert_eq!(uids, vec![1, 2, 3]);
    let v = u.view(inbox).unwrap();
    assert_eq!(v.messages[0].flags, vec!["$Label1".to_string(), "\\Seen".to_string()]);
    assert_eq!(v.messages[0].internal_date, date);
    assert_eq!(v.messages[0].size, 3);
    assert_eq!(*u.read_message(inbox, 1).unwrap(), b"one".to_vec());
    assert!(matches!(u.read_message(inbox, 99), Err(StoreError::NoSuchMessage)));
    let info = u.mailbox("INBOX").unwrap();
    assert_eq!((info.messages, info.unseen, info.uidnext), (3, 2, 4));
    assert_eq!(u.usage(), Usage { bytes: v.messages.iter().map(|m| m.size).sum(), messages: 3 });
    (store, u) = assert_reopens(dir.path(), store, u);

    // Flags.
    let before = u.view(inbox).unwrap().highest_modseq;
    let up = u.store_flags(inbox, &[2, 3, 77], FlagOp::Add, &["\\Deleted".into()], None).unwrap();
    assert_eq!(up.changed.len(), 2);
    let m = up.changed[0].2;
    assert!(m > before);
    assert!(up.changed.iter().all(|c| c.2 == m && c.1 == vec!["\\Deleted".to_string()]));
    let v = u.view(inbox).unwrap();
    assert_eq!(v.highest_modseq, m);
    assert_eq!(v.messages[1].modseq, m);
    // UNCHANGEDSINCE: message 2 changed at m, so a store unchanged since m-1 is refused for it.
    let up = u.store_flags(inbox, &[1, 2], FlagOp::Add, &["\\Flagged".into()], Some(m - 1)).unwrap();
    assert_eq!(up.modified, vec![2]);
    assert_eq!(up.changed.iter().map(|c| c.0).collect::<Vec<_>>(), vec![1]);
    // A no-op store changes nothing and bumps nothing.
    let hm = u.view(inbox).unwrap().highest_modseq;
    let up = u.store_flags(inbox, &[1], FlagOp::Add, &["\\Seen".into()], None).unwrap();
    assert!(up.changed.is_empty());
    assert_eq!(u.view(inbox).unwrap().highest_modseq, hm);
    u.store_flags(inbox, &[3], FlagOp::Remove, &["\\Deleted".into()], None).unwrap();
    u.store_flags(inbox, &[3], FlagOp::Replace, &["\\Answered".into(), "junk word".into()], None).unwrap();
    assert_eq!(u.view(inbox).unwrap().messages[2].flags, vec!["\\Answered".to_string()]);
    (store, u) = assert_reopens(dir.path(), store, u);

    // Copy shares the file.
    let cr = u.copy(inbox, &[1, 3, 50], arch).unwrap();
    assert_eq!(cr.pairs, vec![(1, 1), (3, 2)]);
    assert_eq!(cr.uidvalidity, u.mailbox("Archive").unwrap().uidvalidity);
    assert_eq!(*u.read_message(arch, 1).unwrap(), b"one".to_vec());
    assert_eq!(u.view(arch).unwrap().messages[0].flags, u.view(inbox).unwrap().messages[0].flags);
    let files = std::fs::read_dir(msgs_dir(dir.path(), &uid(2))).unwrap().count();
    assert_eq!(files, 3, "COPY does not write a new file");
    assert_eq!(u.usage().messages, 5);
    (store, u) = assert_reopens(dir.path(), store, u);

    // Move.
    let trash = u.mailbox("Trash").unwrap().id;
    let mut rx = u.subscribe();
    let mr = u.move_messages(inbox, &[1, 2], trash).unwrap();
    assert_eq!(mr.pairs, vec![(1, 1), (2, 2)]);
    assert_eq!(u.view(inbox).unwrap().messages.iter().map(|m| m.uid).collect::<Vec<_>>(), vec![3]);
    assert_eq!(u.view(trash).unwrap().messages.len(), 2);
    assert_eq!(*u.read_message(trash, 2).unwrap(), msg("two").raw);
    let mut seen = Vec::new();
    while let Ok(n) = rx.try_recv() {
        seen.push(n);
    }
    assert!(seen.iter().any(|n| matches!(n, ChangeNotice::Mailbox { mailbox, .. } if *mailbox == inbox)));
    assert!(seen.iter().any(|n| matches!(n, ChangeNotice::Mailbox { mailbox, .. } if *mailbox == trash)));
    (store, u) = assert_reopens(dir.path(), store, u);

    // Expunge: only \Deleted, only among the given uids.
    u.store_flags(trash, &[1, 2], FlagOp::Add, &["\\Deleted".into()], None).unwrap();
    assert_eq!(u.expunge(trash, Some(&[2, 9])).unwrap(), vec![2]);
    assert_eq!(u.expunge(trash, None).unwrap(), vec![1]);
    assert_eq!(u.expunge(trash, None).unwrap(), Vec::<u32>::new());
    // "two" is gone from every view, but delayed expunge keeps its file until a purge after
    // the retention period; "one" is still in Archive.
    assert_eq!(std::fs::read_dir(msgs_dir(dir.path(), &uid(2))).unwrap().count(), 3);
    let far = crate::user::now_unix() + DEFAULT_RETENTION_SECS as i64 + 10;
    u.purge_expired(far).unwrap();
    assert_eq!(std::fs::read_dir(msgs_dir(dir.path(), &uid(2))).unwrap().count(), 2);
    assert_eq!(*u.read_message(arch, 1).unwrap(), b"one".to_vec());
    let tinfo = u.mailbox("Trash").unwrap();
    assert_eq!((tinfo.messages, tinfo.uidnext), (0, 3), "UIDNEXT never goes back");
    (store, u) = assert_reopens(dir.path(), store, u);

    // Deleting a mailbox drops its messages and their last references.
    u.delete_mailbox("Archive").unwrap();
    assert_eq!(std::fs::read_dir(msgs_dir(dir.path(), &uid(2))).unwrap().count(), 2, "retained");
    u.purge_expired(far).unwrap();
    assert_eq!(std::fs::read_dir(msgs_dir(dir.path(), &uid(2))).unwrap().count(), 1);
    assert_eq!(u.usage().messages, 1);
    assert!(matches!(u.view(arch), Err(StoreError::NoSuchMailbox)));
    assert!(matches!(u.append(arch, vec![msg("x")]), Err(StoreError::NoSuchMailbox)));
    (store, u) = assert_reopens(dir.path(), store, u);

    // Renaming INBOX moves its messages and leaves it empty with its UIDVALIDITY and UIDNEXT.
    let ib = u.mailbox("INBOX").unwrap();
    u.rename_mailbox("INBOX", "Old/Inbox").unwrap();
    let ib2 = u.mailbox("INBOX").unwrap();
    assert_eq!((ib2.id, ib2.uidvalidity, ib2.uidnext, ib2.messages), (ib.id, ib.uidvalidity, ib.uidnext, 0));
    assert!(ib2.highest_modseq > ib.highest_modseq);
    let old = u.mailbox("Old/Inbox").unwrap();
    assert_eq!(old.messages, 1);
    assert_ne!(old.uidvalidity, ib.uidvalidity);
    assert_eq!(*u.read_message(old.id, 3).unwrap(), msg("three").raw);
    let (_, uids) = u.append(inbox, vec![msg("four")]).unwrap();
    assert_eq!(uids, vec![4]);
    let _ = assert_reopens(dir.path(), store, u);
}

#[test]
fn too_large_and_empty_appends() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreConfig { max_message_bytes: 100, zstd_level: 3, ..StoreConfig::default() }).unwrap();
    let u = store.user(&uid(3)).unwrap();
    let inbox = u.mailbox("INBOX").unwrap().id;
    let big = NewMessage { raw: vec![b'x'; 101], flags: vec![], internal_date: None };
    assert!(matches!(u.append(inbox, vec![msg("ok"), big.clone()]), Err(StoreError::TooLarge)));
    assert_eq!(u.view(inbox).unwrap().messages.len(), 0, "MULTIAPPEND is all or nothing");
    assert_eq!(std::fs::read_dir(msgs_dir(dir.path(), &uid(3))).unwrap().count(), 0);
    let t = DeliveryTarget { user: uid(3), mailbox: "INBOX".into(), flags: vec![] };
    assert!(matches!(store.deliver(&big.raw, None, &[t])[0], Err(StoreError::TooLarge)));
    let (uv, uids) = u.append(inbox, vec![]).unwrap();
    assert_eq!((uv, uids.len()), (u.mailbox("INBOX").unwrap().uidvalidity, 0));
}

#[test]
fn deliver_to_three_users_stores_one_inode_with_three_links() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let raw = b"From: a@example.org\r\nSubject: hello\r\n\r\nhi all\r\n".to_vec();
    let targets: Vec<DeliveryTarget> = [4u8, 5, 6]
        .iter()
        .map(|n| DeliveryTarget { user: uid(*n), mailbox: "INBOX".into(), flags: vec![] })
        .collect();
    let res = store.deliver(&raw, None, &targets);
    let mut inodes = Vec::new();
    for (r, n) in res.iter().zip([4u8, 5, 6]) {
        let a = r.as_ref().unwrap();
        assert_eq!(a.uid, 1);
        let u = store.user(&uid(n)).unwrap();
        assert_eq!(a.mailbox, u.mailbox("INBOX").unwrap().id);
        assert_eq!(*u.read_message(a.mailbox, 1).unwrap(), raw);
        let files: Vec<_> = std::fs::read_dir(msgs_dir(dir.path(), &uid(n))).unwrap().map(|e| e.unwrap()).collect();
        assert_eq!(files.len(), 1);
        let md = files[0].metadata().unwrap();
        assert_eq!(md.nlink(), 3);
        inodes.push(md.ino());
    }
    assert!(inodes.iter().all(|i| *i == inodes[0]), "one stored copy");
    assert_eq!(std::fs::read_dir(dir.path().join("spool")).unwrap().count(), 0);

    // Sieve-style targets: a missing folder is created (and subscribed); two targets for one user.
    let t = vec![
        DeliveryTarget { user: uid(4), mailbox: "Lists/rust".into(), flags: vec!["\\Flagged".into()] },
        DeliveryTarget { user: uid(4), mailbox: "INBOX".into(), flags: vec![] },
        DeliveryTarget { user: uid(4), mailbox: "bad//name".into(), flags: vec![] },
    ];
    let res = store.deliver(b"x", None, &t);
    let u = store.user(&uid(4)).unwrap();
    let lists = u.mailbox("Lists/rust").unwrap();
    assert!(lists.subscribed);
    assert_eq!(res[0].as_ref().unwrap().mailbox, lists.id);
    assert_eq!(res[1].as_ref().unwrap().uid, 2);
    assert!(matches!(res[2], Err(StoreError::InvalidMailboxName)));
    assert_eq!(u.view(lists.id).unwrap().messages[0].flags, vec!["\\Flagged".to_string()]);
    // Expunging one of the two references keeps the file for the other.
    let inbox = u.mailbox("INBOX").unwrap().id;
    u.store_flags(inbox, &[2], FlagOp::Add, &["\\Deleted".into()], None).unwrap();
    u.expunge(inbox, None).unwrap();
    assert_eq!(*u.read_message(lists.id, 1).unwrap(), b"x".to_vec());
    assert_reopens(dir.path(), store, u);
}

#[test]
fn numbers_persist_and_never_repeat_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let id = uid(7);
    let (uv1, hm1, mb_id);
    {
        let store = open(dir.path());
        let u = store.user(&id).unwrap();
        let m = u.create_mailbox("Work", None).unwrap();
        mb_id = m.id;
        uv1 = m.uidvalidity;
        u.append(m.id, vec![msg("a"), msg("b")]).unwrap();
        u.store_flags(m.id, &[1, 2], FlagOp::Add, &["\\Deleted".into()], None).unwrap();
        u.expunge(m.id, None).unwrap();
        hm1 = u.view(m.id).unwrap().highest_modseq;
    }
    let store = open(dir.path());
    let u = store.user(&id).unwrap();
    let m = u.mailbox("Work").unwrap();
    assert_eq!((m.id, m.uidvalidity, m.uidnext, m.highest_modseq), (mb_id, uv1, 3, hm1));
    let (_, uids) = u.append(m.id, vec![msg("c")]).unwrap();
    assert_eq!(uids, vec![3]);
    assert!(u.view(m.id).unwrap().highest_modseq > hm1);
    // Delete and recreate the same name: new id and a new, larger UIDVALIDITY, UIDs restart.
    u.delete_mailbox("Work").unwrap();
    let again = u.create_mailbox("Work", None).unwrap();
    assert!(again.uidvalidity > uv1);
    assert_ne!(again.id, mb_id);
    assert_eq!(again.uidnext, 1);
    assert!(again.highest_modseq > hm1);
}

#[test]
fn torn_log_tail_recovers_to_the_last_good_record() {
    let dir = tempfile::tempdir().unwrap();
    let id = uid(8);
    let store = open(dir.path());
    let u = store.user(&id).unwrap();
    let inbox = u.mailbox("INBOX").unwrap().id;
    u.append(inbox, vec![msg("kept")]).unwrap();
    let good = dump(&u);
    let seg = std::fs::read_dir(log_dir(dir.path(), &id)).unwrap().next().unwrap().unwrap().path();
    let good_len = std::fs::metadata(&seg).unwrap().len();
    u.append(inbox, vec![msg("torn")]).unwrap();
    let full_len = std::fs::metadata(&seg).unwrap().len();
    let full = std::fs::read(&seg).unwrap();

    for cut in [good_len + 1, good_len + 10, good_len + 20, full_len - 1] {
        let img = crash_image(dir.path());
        let iseg = log_dir(img.path(), &id).join(seg.file_name().unwrap());
        let mut bytes = full[..cut as usize].to_vec();
        bytes.extend_from_slice(b"\xde\xad\xbe\xef garbage after a torn record");
        std::fs::write(&iseg, &bytes).unwrap();
        let s2 = open(img.path());
        let u2 = s2.user(&id).unwrap();
        assert_eq!(dump(&u2), good, "cut at {cut}");
        assert_eq!(std::fs::metadata(&iseg).unwrap().len(), good_len, "tail truncated");
        // The torn message's file was never acknowledged: removed as an orphan.
        assert_eq!(std::fs::read_dir(msgs_dir(img.path(), &id)).unwrap().count(), 1);
        // The store keeps working after repair, and reuses the lost UID (never acknowledged).
        let (_, uids) = u2.append(inbox, vec![msg("after")]).unwrap();
        assert_eq!(uids, vec![2]);
        let after = dump(&u2);
        drop(u2);
        drop(s2);
        assert_eq!(dump(&open(img.path()).user(&id).unwrap()), after);
    }
}

#[test]
fn orphan_message_files_and_spool_leftovers_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let id = uid(9);
    {
        let store = open(dir.path());
        let u = store.user(&id).unwrap();
        let inbox = u.mailbox("INBOX").unwrap().id;
        u.append(inbox, vec![msg("real")]).unwrap();
    }
    let msgs = msgs_dir(dir.path(), &id);
    std::fs::write(msgs.join(format!("{:032x}.zst", 0xdead_u128)), b"orphan").unwrap();
    std::fs::write(msgs.join("half.tmp"), b"tmp").unwrap();
    std::fs::write(msgs.join("README"), b"not ours").unwrap();
    std::fs::write(dir.path().join("spool").join(format!("{:032x}.zst", 1u128)), b"left").unwrap();
    let store = open(dir.path());
    assert_eq!(std::fs::read_dir(dir.path().join("spool")).unwrap().count(), 0);
    let u = store.user(&id).unwrap();
    let mut left: Vec<String> =
        std::fs::read_dir(&msgs).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    left.sort();
    assert_eq!(left.len(), 2);
    assert!(left.contains(&"README".to_string()));
    let inbox = u.mailbox("INBOX").unwrap().id;
    assert_eq!(*u.read_message(inbox, 1).unwrap(), msg("real").raw);
}

#[test]
fn checkpoint_every_n_records_prunes_segments_and_reopens_identically() {
    let dir = tempfile::tempdir().unwrap();
    let id = uid(10);
    let store = open(dir.path());
    let u = store.user(&id).unwrap();
    let inbox = u.mailbox("INBOX").unwrap().id;
    u.append(inbox, vec![msg("a"), msg("b")]).unwrap();
    for i in 0..(2 * CHECKPOINT_EVERY + 5) {
        let op = if i % 2 == 0 { FlagOp::Add } else { FlagOp::Remove };
        u.store_flags(inbox, &[1], op, &["\\Seen".into()], None).unwrap();
    }
    let user_dir = dir.path().join("users").join(id.as_str());
    assert!(user_dir.join("checkpoint").exists());
    let segs = std::fs::read_dir(log_dir(dir.path(), &id)).unwrap().count();
    assert!((2..=1 + crate::user::RETAINED_SEGMENTS + 1).contains(&segs), "{segs} segments");
    let img = crash_image(dir.path());
    let (store, u) = assert_reopens(dir.path(), store, u);
    // The crash image (checkpoint + log tail) too, with a damaged checkpoint.tmp lying around.
    std::fs::write(img.path().join("users").join(id.as_str()).join("checkpoint.tmp"), b"junk").unwrap();
    assert_eq!(dump(&open(img.path()).user(&id).unwrap()), dump(&u));
    drop((store, u));
}

#[test]
fn lost_log_with_message_files_is_refused_not_wiped() {
    let dir = tempfile::tempdir().unwrap();
    let id = uid(14);
    {
        let store = open(dir.path());
        let u = store.user(&id).unwrap();
        let inbox = u.mailbox("INBOX").unwrap().id;
        u.append(inbox, vec![msg("precious")]).unwrap();
    }
    let user_dir = dir.path().join("users").join(id.as_str());
    std::fs::remove_file(user_dir.join("checkpoint")).unwrap();
    for s in crate::log::list_segments(&user_dir.join("log")).unwrap() {
        std::fs::write(&s.path, b"garbage!").unwrap();
    }
    let store = open(dir.path());
    assert!(matches!(store.user(&id), Err(StoreError::Corrupt(_))));
    assert_eq!(std::fs::read_dir(user_dir.join("msgs")).unwrap().count(), 1, "mail kept");
}

#[test]
fn corrupt_checkpoint_is_reported_not_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let id = uid(11);
    {
        let store = open(dir.path());
        let u = store.user(&id).unwrap();
        u.create_mailbox("Keep", None).unwrap();
        u.checkpoint().unwrap();
    }
    let cp = dir.path().join("users").join(id.as_str()).join("checkpoint");
    let mut b = std::fs::read(&cp).unwrap();
    let n = b.len();
    b[n - 3] ^= 0x40;
    std::fs::write(&cp, b).unwrap();
    let store = open(dir.path());
    assert!(matches!(store.user(&id), Err(StoreError::Corrupt(_))));
}

#[test]
fn concurrent_appenders_on_one_user_get_unique_uids_and_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let u = store.user(&uid(12)).unwrap();
    let inbox = u.mailbox("INBOX").unwrap().id;
    let threads = 6;
    let per = 40;
    let mut rx = u.subscribe();
    let all: Vec<(u32, String)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let u = Arc::clone(&u);
                let store = store.clone();
                s.spawn(move || {
                    let mut got = Vec::new();
                    for i in 0..per {
                        let body = format!("t{t} m{i}");
                        if i % 3 == 0 {
                            let tg = DeliveryTarget { user: uid(12), mailbox: "INBOX".into(), flags: vec![] };
                            let r = store.deliver(&msg(&body).raw, None, &[tg]);
                            got.push((r[0].as_ref().unwrap().uid, body));
                        } else {
                            let (_, uids) = u.append(inbox, vec![msg(&body)]).unwrap();
                            got.push((uids[0], body));
                        }
                        // Readers interleave with writers.
                        let _ = u.view(inbox).unwrap();
                    }
                    got
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(all.len(), threads * per);
    let mut uids: Vec<u32> = all.iter().map(|a| a.0).collect();
    uids.sort_unstable();
    uids.dedup();
    assert_eq!(uids.len(), threads * per);
    let v = u.view(inbox).unwrap();
    assert_eq!(v.messages.len(), threads * per);
    for (uid, body) in &all {
        assert_eq!(*u.read_message(inbox, *uid).unwrap(), msg(body).raw);
    }
    assert!(rx.try_recv().is_ok(), "notices were sent");
    assert_reopens(dir.path(), store, u);
}

#[test]
fn startup_of_a_100k_message_mailbox_is_well_under_a_second() {
    use crate::blob::FileId;
    use crate::record::{AppendEntry, Record};
    let dir = tempfile::tempdir().unwrap();
    let id = uid(13);
    let inbox;
    {
        let store = open(dir.path());
        let u = store.user(&id).unwrap();
        inbox = u.mailbox("INBOX").unwrap().id;
    }
    // Build the state directly (writing 100k files is not what this test measures).
    let user_dir = dir.path().join("users").join(id.as_str());
    let mut st = crate::checkpoint::decode(&std::fs::read(user_dir.join("checkpoint")).unwrap()).unwrap();
    let date = InternalDate { unix: 1_700_000_000, offset_minutes: 0 };
    let messages: Vec<AppendEntry> = (1..=100_000u32)
        .map(|i| AppendEntry {
            uid: i,
            file: FileId(u128::from(i)),
            flags: if i % 2 == 0 { vec!["\\Seen".into()] } else { vec![] },
            internal_date: date,
            size: 10_000,
        })
        .collect();
    let seq = st.seq + 1;
    st.apply(seq, &Record::Append { mailbox: inbox, modseq: st.modseq + 1, messages });
    crate::checkpoint::store(&user_dir, &crate::checkpoint::encode(&st)).unwrap();
    // Let the log start after the checkpoint.
    for s in crate::log::list_segments(&user_dir.join("log")).unwrap() {
        std::fs::remove_file(s.path).unwrap();
    }
    crate::log::LogWriter::create(&user_dir.join("log"), st.seq + 1).unwrap();
    let store = open(dir.path());
    let t = std::time::Instant::now();
    let u = store.user(&id).unwrap();
    let elapsed = t.elapsed();
    let info = u.mailbox("INBOX").unwrap();
    assert_eq!((info.messages, info.unseen), (100_000, 50_000));
    assert_eq!(u.usage().bytes, 1_000_000_000);
    eprintln!("100k-message user opened in {elapsed:?}");
    assert!(elapsed < std::time::Duration::from_millis(1500), "{elapsed:?}");
    // A view is a cheap Arc clone.
    let t = std::time::Instant::now();
    for _ in 0..1000 {
        let _ = u.view(inbox).unwrap();
    }
    assert!(t.elapsed() < std::time::Duration::from_millis(200));
}

const CRASH_ENV: &str = "HERMES_STORE_CRASH_CHILD";

/// The child half of the kill -9 test: appends and delivers forever, printing one line per
/// acknowledged message. Does nothing when run as a normal test.
#[test]
fn crash_child_entry() {
    let Ok(root) = std::env::var(CRASH_ENV) else { return };
    let round: u32 = std::env::var("HERMES_STORE_CRASH_ROUND").ok().and_then(|r| r.parse().ok()).unwrap_or(0);
    let store = open(Path::new(&root));
    std::thread::scope(|s| {
        for t in 0..3u32 {
            let store = store.clone();
            s.spawn(move || {
                let u = store.user(&uid(20)).unwrap();
                let inbox = u.mailbox("INBOX").unwrap().id;
                for i in 0u32.. {
                    let n = round * 10_000_000 + t * 1_000_000 + i;
                    let raw = crash_body(n);
                    if t == 2 {
                        let targets: Vec<DeliveryTarget> = [20u8, 21]
                            .iter()
                            .map(|k| DeliveryTarget { user: uid(*k), mailbox: "INBOX".into(), flags: vec![] })
                            .collect();
                        let r = store.deliver(&raw, None, &targets);
                        let a = r[0].as_ref().unwrap().uid;
                        let b = r[1].as_ref().unwrap().uid;
                        println!("ACK 20 {a} {n}");
                        println!("ACK 21 {b} {n}");
                    } else {
                        let (_, uids) = u.append(inbox, vec![NewMessage { raw, flags: vec![], internal_date: None }]).unwrap();
                        println!("ACK 20 {} {n}", uids[0]);
                    }
                }
            });
        }
    });
}

fn crash_body(n: u32) -> Vec<u8> {
    let mut v = format!("Subject: crash {n}\r\n\r\n").into_bytes();
    let mut x = n.wrapping_mul(2_654_435_761).wrapping_add(1);
    for _ in 0..(n % 9973) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v.push(b'a' + (x % 26) as u8);
    }
    v
}

#[test]
fn kill_minus_nine_loses_no_acknowledged_message() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let mut acked: Vec<(u8, u32, u32)> = Vec::new();
    for round in 0..3 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "tests::crash_child_entry", "--nocapture", "--test-threads=1"])
            .env(CRASH_ENV, dir.path())
            .env("HERMES_STORE_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let mut lines = BufReader::new(out).lines();
        let target = 150 + round * 70;
        let mut got = 0;
        while got < target {
            let Some(Ok(line)) = lines.next() else { break };
            let parts: Vec<&str> = line.split_whitespace().collect();
            if parts.len() == 4 && parts[0] == "ACK" {
                acked.push((parts[1].parse().unwrap(), parts[2].parse().unwrap(), parts[3].parse().unwrap()));
                got += 1;
            }
        }
        assert_eq!(got, target, "child stopped early");
        child.kill().unwrap(); // SIGKILL
        // Lines already printed before the kill are acknowledged too.
        for line in lines.map_while(Result::ok) {
            let parts: Vec<&str> = line.split_whitespace().collect();
            if parts.len() == 4 && parts[0] == "ACK" {
                acked.push((parts[1].parse().unwrap(), parts[2].parse().unwrap(), parts[3].parse().unwrap()));
            }
        }
        child.wait().unwrap();

        let store = open(dir.path());
        for k in [20u8, 21] {
            let u = store.user(&uid(k)).unwrap();
            let inbox = u.mailbox("INBOX").unwrap().id;
            let v = u.view(inbox).unwrap();
            let mut bodies = std::collections::HashSet::new();
            for m in v.messages.iter() {
                assert!(bodies.insert(u.read_message(inbox, m.uid).unwrap()), "a message stored twice");
            }
            for (user, uid_, n) in acked.iter().filter(|a| a.0 == k) {
                let got = u.read_message(inbox, *uid_).unwrap_or_else(|e| panic!("round {round}: user {user} uid {uid_}: {e}"));
                assert_eq!(*got, crash_body(*n), "round {round}: uid {uid_} differs");
            }
            let files = std::fs::read_dir(msgs_dir(dir.path(), &uid(k))).unwrap().count();
            assert_eq!(files, v.messages.len(), "no orphan files after recovery");
        }
        assert_eq!(std::fs::read_dir(dir.path().join("spool")).unwrap().count(), 0);
    }
}
