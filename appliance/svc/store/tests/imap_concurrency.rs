//! Sessions on the same mailbox see each other's changes by RFC 9051's rules (§5.2, §7.4.1,
//! §7.5.1): new messages as `EXISTS`, flag changes as `FETCH (FLAGS)`, expunges as `EXPUNGE`
//! but never during FETCH/STORE/SEARCH by message number; and an IDLE client hears of a new
//! message (appended by another session or delivered) within one second.
//!
//! Run: `cargo test -p hermes-svc-store --test imap_concurrency`.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod imap_common;
use hermes_store::DeliveryTarget;
use imap_common::*;
use std::time::{Duration, Instant};

const PUSH_DEADLINE: Duration = Duration::from_secs(1);

async fn selected(server: &Server) -> Client {
    let mut c = Client::login(server, ALICE).await;
    let r = c.cmd("SELECT INBOX").await;
    assert!(r.last().unwrap().contains("OK [READ-WRITE]"), "{r:?}");
    c
}

async fn start_idle(c: &mut Client) {
    c.send_raw(b"idle1 IDLE\r\n").await;
    assert_eq!(c.line().await, "+ idling");
}

/// Reads lines until one satisfies `want`, failing after `deadline`.
async fn wait_for(
    c: &mut Client,
    deadline: Duration,
    want: impl Fn(&str) -> bool,
) -> (Vec<String>, Duration) {
    let started = Instant::now();
    let mut seen = Vec::new();
    while started.elapsed() < deadline {
        let left = deadline.saturating_sub(started.elapsed());
        for l in c.lines_within(left.min(Duration::from_millis(50))).await {
            let hit = want(&l);
            seen.push(l);
            if hit {
                return (seen, started.elapsed());
            }
        }
    }
    panic!("not seen within {deadline:?}; got {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sees_another_sessions_append_within_one_second() {
    let server = start().await;
    let mut a = selected(&server).await;
    start_idle(&mut a).await;
    let mut b = Client::login(&server, ALICE).await;
    let r = b.append("INBOX", "", &message("hello", "new mail")).await;
    assert!(r.last().unwrap().contains("OK [APPENDUID"), "{r:?}");
    let (_, took) = wait_for(&mut a, PUSH_DEADLINE, |l| l == "* 1 EXISTS").await;
    assert!(took < PUSH_DEADLINE);
    a.send_raw(b"DONE\r\n").await;
    assert_eq!(a.line().await, "idle1 OK IDLE terminated");
    let r = a.cmd("FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]").await;
    assert_eq!(r[1], "Subject: hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sees_an_lmtp_style_delivery_within_one_second() {
    let server = start().await;
    let mut a = selected(&server).await;
    start_idle(&mut a).await;
    let user = server.ctx.directory.lookup(ALICE).unwrap().unwrap().user_id;
    let store = server.ctx.store.clone();
    let delivered = tokio::task::spawn_blocking(move || {
        store.deliver(
            &message("delivered", "via LMTP"),
            None,
            &[DeliveryTarget {
                user,
                mailbox: "INBOX".into(),
                flags: vec![],
            }],
        )
    })
    .await
    .unwrap();
    assert!(delivered[0].is_ok(), "{delivered:?}");
    wait_for(&mut a, PUSH_DEADLINE, |l| l == "* 1 EXISTS").await;
    // Anything other than DONE ends IDLE with BAD, and the session goes on.
    a.send_raw(b"NOPE\r\n").await;
    assert_eq!(a.line().await, "idle1 BAD Expected DONE");
    let r = a.cmd("NOOP").await;
    assert_eq!(r, vec!["t3 OK NOOP completed".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_see_each_others_flags_and_expunges_by_the_rules() {
    let server = start().await;
    let mut a = selected(&server).await;
    for s in ["one", "two", "three"] {
        a.append("INBOX", "", &message(s, s)).await;
    }
    let mut b = selected(&server).await;

    // A flag change by A reaches B at B's next command, with the UID.
    let r = a.cmd("STORE 1 +FLAGS (\\Flagged)").await;
    assert_eq!(r[0], "* 1 FETCH (FLAGS (\\Flagged))");
    let r = b.cmd("NOOP").await;
    assert_eq!(
        r,
        vec![
            "* 1 FETCH (UID 1 FLAGS (\\Flagged))".to_string(),
            "t3 OK NOOP completed".to_string()
        ]
    );

    // A expunges message 2.
    a.cmd("STORE 2 +FLAGS.SILENT (\\Deleted)").await;
    let r = a.cmd("EXPUNGE").await;
    assert_eq!(r[0], "* 2 EXPUNGE");

    // B's FETCH by sequence number must not see the EXPUNGE; message 2 is reported missing.
    let r = b.cmd("FETCH 1:3 (UID)").await;
    assert!(
        !r.iter().any(|l| l.ends_with(" EXPUNGE")),
        "no EXPUNGE during FETCH: {r:?}"
    );
    assert!(r.contains(&"* 1 FETCH (UID 1)".to_string()), "{r:?}");
    assert!(
        r.contains(&"* 3 FETCH (UID 3)".to_string()),
        "MSN 3 keeps its number: {r:?}"
    );
    assert!(r.last().unwrap().contains("NO [EXPUNGEISSUED]"), "{r:?}");
    // Nor during STORE or SEARCH by sequence number.
    let r = b.cmd("SEARCH ALL").await;
    assert_eq!(r[0], "* SEARCH 1 3");
    let r = b.cmd("STORE 3 +FLAGS (\\Answered)").await;
    assert!(!r.iter().any(|l| l.ends_with(" EXPUNGE")), "{r:?}");
    assert_eq!(r[0], "* 3 FETCH (FLAGS (\\Answered))");

    // NOOP delivers it, and numbers shift.
    let r = b.cmd("NOOP").await;
    assert_eq!(r[0], "* 2 EXPUNGE");
    let r = b.cmd("FETCH 2 (UID FLAGS)").await;
    assert_eq!(r[0], "* 2 FETCH (UID 3 FLAGS (\\Answered))");

    // A learns of B's change.
    let r = a.cmd("NOOP").await;
    assert_eq!(r[0], "* 2 FETCH (UID 3 FLAGS (\\Answered))");

    // A UID command may carry the expunge at once.
    b.cmd("UID STORE 3 +FLAGS.SILENT (\\Deleted)").await;
    b.cmd("EXPUNGE").await;
    let r = a.cmd("UID FETCH 1:* (FLAGS)").await;
    assert!(r.contains(&"* 2 EXPUNGE".to_string()), "{r:?}");
    assert!(r.last().unwrap().ends_with("OK FETCH completed"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_pushes_flag_changes_and_expunges() {
    let server = start().await;
    let mut a = selected(&server).await;
    for s in ["one", "two"] {
        a.append("INBOX", "", &message(s, s)).await;
    }
    start_idle(&mut a).await;
    let mut b = selected(&server).await;
    b.cmd("STORE 2 +FLAGS (\\Seen)").await;
    wait_for(&mut a, PUSH_DEADLINE, |l| {
        l == "* 2 FETCH (UID 2 FLAGS (\\Seen))"
    })
    .await;
    b.cmd("STORE 1 +FLAGS (\\Deleted)").await;
    b.cmd("EXPUNGE").await;
    wait_for(&mut a, PUSH_DEADLINE, |l| l == "* 1 EXPUNGE").await;
    a.send_raw(b"DONE\r\n").await;
    let (lines, _) = wait_for(&mut a, PUSH_DEADLINE, |l| l.starts_with("idle1 ")).await;
    assert_eq!(lines.last().unwrap(), "idle1 OK IDLE terminated");
    let r = a.cmd("FETCH 1 UID").await;
    assert_eq!(r[0], "* 1 FETCH (UID 2)");
}
