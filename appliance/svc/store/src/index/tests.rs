#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use super::testgen::{self, Rng};
use super::*;
use hermes_core::directory::UserId;
use hermes_proto::mime::SearchableMessage;
use hermes_store::{NewMessage, Store, StoreConfig};

/// Every entry answers exactly as the scan, or "unknown" (and only for text beyond the bound).
#[test]
fn entries_answer_like_the_scan_over_a_generated_corpus() {
    let needles = testgen::needles();
    let mut unknown = 0;
    for i in 0..300 {
        let raw = testgen::message(7, i);
        let e = Entry::from_message(&raw);
        let s = SearchableMessage::new(&raw);
        assert_eq!(e.sent_date(), s.sent_date(), "message {i}");
        assert_eq!(e.keys, hermes_proto::imap::sortkeys::SortKeys::from_message(&raw));
        for n in &needles {
            let needle = Needle::new(n.clone());
            let check = |what: &str, got: Option<bool>, want: bool| match got {
                Some(b) => assert_eq!(b, want, "message {i} {what} {n:?}"),
                None => assert!(!want || what == "body" || what == "text", "message {i} {what} {n:?}"),
            };
            let got = e.text_contains(&needle);
            unknown += usize::from(got.is_none());
            check("text", got, s.text_contains(n));
            check("body", e.body_contains(&needle), s.body_contains(n));
            for f in ["subject", "x-label", "x-folded", "date", "message-id", "missing"] {
                assert_eq!(e.header_contains(f, &needle), Some(s.header_contains(f, n)), "message {i} {f} {n:?}");
            }
            for f in ["from", "to", "cc", "bcc"] {
                assert_eq!(e.address_contains(f, &needle), Some(s.address_contains(f, n)), "message {i} {f} {n:?}");
            }
        }
        let mut buf = Vec::new();
        e.encode(&mut buf);
        assert_eq!(entry::Entry::decode(&mut entry::Reader::new(&buf)).unwrap(), e);
    }
    assert!(unknown > 0, "the corpus has bodies beyond the bound");
}

fn store_with(n: usize) -> (tempfile::TempDir, Store, Arc<UserStore>, MailboxId) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    let user = store.user(&UserId::parse(&format!("{:032x}", 42)).unwrap()).unwrap();
    let inbox = user.mailbox("INBOX").unwrap().id;
    append(&user, inbox, 0..n);
    (dir, store, user, inbox)
}

fn append(user: &UserStore, mailbox: MailboxId, range: std::ops::Range<usize>) {
    let batch: Vec<NewMessage> =
        range.map(|i| NewMessage { raw: testgen::message(3, i), flags: Vec::new(), internal_date: None }).collect();
    user.append(mailbox, batch).unwrap();
}

fn live(user: &UserStore, mailbox: MailboxId) -> Vec<u32> {
    user.view(mailbox).unwrap().messages.iter().map(|m| m.uid).collect()
}

#[test]
fn index_persists_follows_appends_and_expunges() {
    let (_dir, _store, user, inbox) = store_with(700);
    let uv = user.view(inbox).unwrap().uidvalidity;
    let ix = for_mailbox(&user, inbox, uv);
    let uids = live(&user, inbox);
    assert_eq!(ix.index_uids(&user, &uids).unwrap(), 700);
    assert_eq!(ix.index_uids(&user, &uids).unwrap(), 0, "each UID is indexed once");
    assert!(Arc::ptr_eq(&ix, &for_mailbox(&user, inbox, uv)), "shared across callers");

    // Appends: only the new UIDs are missing.
    append(&user, inbox, 700..710);
    let uids = live(&user, inbox);
    assert_eq!(ix.missing(uids.iter().copied()).len(), 10);
    ix.index_uids(&user, &uids).unwrap();

    // Expunges: pruned from memory.
    let gone: Vec<u32> = uids.iter().copied().filter(|u| u % 3 == 0).collect();
    user.store_flags(inbox, &gone, hermes_store::FlagOp::Add, &["\\Deleted".into()], None).unwrap();
    user.expunge(inbox, None).unwrap();
    let uids = live(&user, inbox);
    ix.prune(&uids);
    assert_eq!(ix.len(), uids.len());

    // A restart (index dropped from memory) loads the file: nothing to rebuild.
    drop(ix);
    unload(&user, inbox);
    let ix = for_mailbox(&user, inbox, uv);
    ix.ensure_loaded();
    assert!(ix.missing(uids.iter().copied()).is_empty());
    let raw = user.read_message(inbox, uids[5]).unwrap();
    assert_eq!(ix.read().get(&uids[5]), Some(&Entry::from_message(&raw)));
}

#[test]
fn damaged_files_are_detected_and_rebuilt() {
    let (_dir, _store, user, inbox) = store_with(1100);
    let uv = user.view(inbox).unwrap().uidvalidity;
    let uids = live(&user, inbox);
    let path = file_path(&user, inbox);
    let build = || {
        let ix = for_mailbox(&user, inbox, uv);
        ix.index_uids(&user, &uids).unwrap();
        drop(ix);
        unload(&user, inbox);
    };
    build();
    let good = std::fs::read(&path).unwrap();
    let mut rng = Rng::new(11);
    let damages: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", good[..good.len() * 2 / 3].to_vec()),
        ("garbage", (0..5000).map(|_| rng.next() as u8).collect()),
        ("empty", Vec::new()),
        ("flipped byte", {
            let mut b = good.clone();
            let i = b.len() / 2;
            b[i] ^= 0x10;
            b
        }),
        ("other uidvalidity", {
            let mut b = good.clone();
            b[16] ^= 1;
            b
        }),
    ];
    for (what, bytes) in damages {
        std::fs::write(&path, &bytes).unwrap();
        let ix = for_mailbox(&user, inbox, uv);
        ix.ensure_loaded();
        let kept = ix.len();
        assert!(kept < uids.len(), "{what}: damage detected");
        // What was kept is right; the rest is rebuilt in the background.
        for (uid, e) in ix.read().iter().take(50) {
            assert_eq!(e, &Entry::from_message(&user.read_message(inbox, *uid).unwrap()), "{what}");
        }
        ix.spawn_catch_up(Arc::clone(&user), uids.clone());
        ix.wait_idle();
        assert!(ix.missing(uids.iter().copied()).is_empty(), "{what}: rebuilt");
        drop(ix);
        unload(&user, inbox);
        // The repaired file loads whole.
        let l = file::load(&path, inbox.0, uv).unwrap();
        assert!(l.damage.is_none(), "{what}: {:?}", l.damage);
        let mut loaded: Vec<u32> = l.entries.iter().map(|(u, _)| *u).collect();
        loaded.sort_unstable();
        loaded.dedup();
        assert_eq!(loaded, uids, "{what}");
    }
}

#[test]
fn compaction_drops_dead_entries_from_the_file() {
    let (_dir, _store, user, inbox) = store_with(3000);
    let uv = user.view(inbox).unwrap().uidvalidity;
    let ix = for_mailbox(&user, inbox, uv);
    let uids = live(&user, inbox);
    ix.index_uids(&user, &uids).unwrap();
    let gone: Vec<u32> = uids[..2500].to_vec();
    user.store_flags(inbox, &gone, hermes_store::FlagOp::Add, &["\\Deleted".into()], None).unwrap();
    user.expunge(inbox, None).unwrap();
    let uids = live(&user, inbox);
    ix.prune(&uids);
    let l = file::load(&file_path(&user, inbox), inbox.0, uv).unwrap();
    assert_eq!(l.entries.len(), 500, "rewritten with the live entries only");
    append(&user, inbox, 3000..3001);
    let uids = live(&user, inbox);
    ix.index_uids(&user, &uids).unwrap();
    assert_eq!(file::load(&file_path(&user, inbox), inbox.0, uv).unwrap().entries.len(), 501);
}
