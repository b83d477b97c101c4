//! SORT and THREAD timing on large mailboxes (issue 3, point 6): builds a store with 10,000 and
//! 100,000 generated messages (realistic headers: replies with References, list tags, encoded
//! words, dates over two years), then times the session's sort-key cache build (cold: every
//! message read and analysed once) and warm SORT (DATE, SUBJECT, FROM, REVERSE ARRIVAL) and
//! THREAD (REFERENCES, ORDEREDSUBJECT) over all messages, exactly as the IMAP handlers do
//! them (minus the socket).
//!
//! Run: `cargo run --release -p hermes-svc-store --example sort_bench [N ...]` (default
//! `10000 100000`). The store lives under /dev/shm when it exists (fsync is then free, so
//! building the mailbox does not dominate), else the temp folder.

#![allow(clippy::unwrap_used)] // a benchmark: a failed unwrap is a failed run

use hermes_core::directory::UserId;
use hermes_proto::imap::sortkeys::SortKeys;
use hermes_proto::imap::thread::{self, ThreadMessage};
use hermes_proto::imap::{SortCriterion, SortKey};
use hermes_store::{InternalDate, NewMessage, Store, StoreConfig};
use hermes_svc_store::imap::sort::{Row, SortIndex, sort_rows};
use std::time::{Duration, Instant};

const BATCH: usize = 1000;

fn message(i: usize) -> Vec<u8> {
    let thread = i / 7;
    let pos = i % 7;
    let subjects = [
        "Quarterly report",
        "Lunch on Friday?",
        "=?utf-8?q?Gr=C3=BC=C3=9Fe_aus_Berlin?=",
        "[hermes-dev] Build failure on main",
        "Invoice 2024-0193",
        "Meeting notes",
    ];
    let subject = subjects[thread % subjects.len()];
    let prefix = match pos {
        0 => "",
        1 | 3 => "Re: ",
        2 => "RE: Re: ",
        4 => "Fwd: ",
        _ => "Re[2]: ",
    };
    let day = 1 + (i * 37) % 28;
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun"][(i / 28) % 6];
    let year = 2023 + (i / 5000) % 2;
    let mut m = format!(
        "From: User {n} <user{n}@example.org>\r\nTo: list@example.org\r\nSubject: {prefix}{subject} {thread}\r\nDate: Mon, {day} {month} {year} {h:02}:{mi:02}:00 +0100\r\nMessage-ID: <{i}.{thread}@example.org>\r\n",
        n = i % 997,
        h = i % 24,
        mi = i % 60,
    );
    if pos > 0 {
        let refs: Vec<String> = (0..pos)
            .map(|p| format!("<{}.{thread}@example.org>", thread * 7 + p))
            .collect();
        m.push_str(&format!("References: {}\r\n", refs.join("\r\n ")));
        m.push_str(&format!("In-Reply-To: {}\r\n", refs.last().unwrap()));
    }
    m.push_str("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n");
    for _ in 0..20 {
        m.push_str("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n");
    }
    m.into_bytes()
}

fn best_of(runs: usize, mut f: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn main() {
    let sizes: Vec<usize> = {
        let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
        if args.is_empty() { vec![10_000, 100_000] } else { args }
    };
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm").unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    println!("messages | build mailbox | index (cold) | SORT DATE | SORT SUBJECT | SORT FROM | SORT REVERSE ARRIVAL | THREAD REFERENCES | THREAD ORDEREDSUBJECT");
    for (run, &n) in sizes.iter().enumerate() {
        let root = base.path().join(format!("store{run}"));
        std::fs::create_dir_all(&root).unwrap();
        let store = Store::open(&root, StoreConfig::default()).unwrap();
        let user = store
            .user(&UserId::parse(&format!("{:032x}", run + 1)).unwrap())
            .unwrap();
        let inbox = user.mailbox("INBOX").unwrap().id;
        let t = Instant::now();
        let mut i = 0;
        while i < n {
            let batch: Vec<NewMessage> = (i..(i + BATCH).min(n))
                .map(|k| NewMessage {
                    raw: message(k),
                    flags: Vec::new(),
                    internal_date: Some(InternalDate {
                        unix: 1_700_000_000 + k as i64 * 60,
                        offset_minutes: 0,
                    }),
                })
                .collect();
            i += batch.len();
            user.append(inbox, batch).unwrap();
        }
        let built = t.elapsed();
        let view = user.view(inbox).unwrap();
        let uids: Vec<u32> = view.messages.iter().map(|m| m.uid).collect();

        let mut index = SortIndex::default();
        let t = Instant::now();
        index.extend(&user, inbox, &uids).unwrap();
        let cold = t.elapsed();

        let sort_by = |criteria: &[SortCriterion]| {
            let mut rows: Vec<Row<'_>> = view
                .messages
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    Row::new(
                        i as u32 + 1,
                        m.uid,
                        m.internal_date.unix,
                        m.size,
                        index.get(m.uid).unwrap(),
                    )
                })
                .collect();
            sort_rows(&mut rows, criteria);
            std::hint::black_box(rows.first().map(|r| r.uid));
        };
        let c = |reverse, key| [SortCriterion { reverse, key }];
        let date = best_of(5, || sort_by(&c(false, SortKey::Date)));
        let subject = best_of(5, || sort_by(&c(false, SortKey::Subject)));
        let from = best_of(5, || sort_by(&c(false, SortKey::From)));
        let arrival = best_of(5, || sort_by(&c(true, SortKey::Arrival)));
        let msgs: Vec<ThreadMessage<'_>> = view
            .messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let k: &SortKeys = index.get(m.uid).unwrap();
                ThreadMessage {
                    number: m.uid,
                    order: i as u32 + 1,
                    date: k.sent.unwrap_or(m.internal_date.unix),
                    subject: &k.subject,
                    subject_is_reply: k.subject_is_reply,
                    message_id: k.message_id.as_deref(),
                    references: &k.references,
                }
            })
            .collect();
        let render = |t: Vec<thread::Thread>| {
            let mut out = Vec::new();
            thread::render(&mut out, &t);
            std::hint::black_box(out.len());
        };
        let refs = best_of(5, || render(thread::references(&msgs)));
        let ordered = best_of(5, || render(thread::ordered_subject(&msgs)));
        println!(
            "{n} | {built:.2?} | {cold:.2?} | {date:.2?} | {subject:.2?} | {from:.2?} | {arrival:.2?} | {refs:.2?} | {ordered:.2?}"
        );
    }
}
