//! Quota at the protocol edges, end to end inside one process: LMTP answers `452 4.2.2` (or
//! `552 5.2.2` with `[store] quota_permanent_failure`) exactly one byte past the limit and
//! accepts exactly at it; IMAP APPEND answers `NO [OVERQUOTA]` likewise; the warnings at 80 %
//! and 95 % arrive once each; and `hermes undelete`'s request path works against the running
//! service (control socket) and against the stopped store (direct open).
#![allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]

mod imap_common;

use hermes_core::config::Config;
use hermes_core::directory::Directory;
use hermes_core::paths::DataDir;
use hermes_core::secret::Secret;
use hermes_store::{QuotaLimits, Store};
use hermes_svc_store::quota::undelete::{Filter, Request, request_via};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

const ALICE: &str = "alice@example.org";

struct Server {
    _dir: tempfile::TempDir,
    data: DataDir,
    lmtp: String,
    imap: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Server {
    async fn start(store_section: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        let directory = Directory::open(&data).unwrap();
        directory.add_domain("example.org").unwrap();
        for user in ["alice", "bob"] {
            directory.add_account(&format!("{user}@example.org"), &Secret::new("pw".to_string()), None).unwrap();
        }
        let text = format!(
            "[server]\nhostname = \"mx.example.org\"\nlisten = \"127.0.0.1\"\n\
             [imap]\nport = 0\ntls_port = 0\nplaintext_auth_on_loopback = true\n[pop3]\nport = 0\ntls_port = 0\n[lmtp]\nport = 0\n[managesieve]\nport = 0\n[store]\n{store_section}\n"
        );
        let config = Config::from_toml(&text).unwrap();
        std::fs::create_dir_all(data.config_dir()).unwrap();
        std::fs::write(data.config_file(), &text).unwrap();
        let mut s = Server { _dir: dir, data, lmtp: String::new(), imap: String::new(), stop: None, task: None };
        s.run(config).await;
        s
    }

    async fn run(&mut self, config: Config) {
        let _ = std::fs::remove_file(self.data.service_endpoints_file("store"));
        let (tx, rx) = oneshot::channel::<()>();
        self.task = Some(tokio::spawn(hermes_svc_store::run_until(self.data.clone(), config, async move {
            let _ = rx.await;
        })));
        self.stop = Some(tx);
        let mut tries = 0;
        let endpoints = loop {
            if let Ok(e) = hermes_runtime::endpoints::read_service_endpoints(&self.data, "store") {
                break e;
            }
            tries += 1;
            assert!(tries < 500, "service did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(endpoints.unix.contains_key("control"), "{endpoints:?}");
        self.lmtp = endpoints.tcp["lmtp"].clone();
        self.imap = endpoints.tcp["imap"].clone();
    }

    async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), t).await.unwrap().unwrap().unwrap();
        }
    }

    fn set_quota(&self, who: &str, bytes: u64) {
        Directory::open(&self.data).unwrap().set_quota(who, bytes).unwrap();
    }

    /// Subjects of `who`'s INBOX messages, in UID order (opens the store: call after `stop`).
    fn inbox_subjects(&self, who: &str) -> Vec<String> {
        let account = Directory::open(&self.data).unwrap().lookup(who).unwrap().unwrap();
        let config = Config::from_toml(&std::fs::read_to_string(self.data.config_file()).unwrap()).unwrap();
        let store = Store::open(&self.data.store_dir(), hermes_svc_store::run::store_config(&config)).unwrap();
        let us = store.user(&account.user_id).unwrap();
        let inbox = us.mailbox("INBOX").unwrap();
        let view = us.view(inbox.id).unwrap();
        view.messages
            .iter()
            .map(|m| {
                let raw = String::from_utf8(us.read_message(inbox.id, m.uid).unwrap().to_vec()).unwrap();
                raw.lines().find(|l| l.starts_with("Subject: ")).unwrap_or("").to_string()
            })
            .collect()
    }
}

/// One (possibly multi-line) LMTP reply: its last line.
async fn reply(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> String {
    loop {
        let mut l = String::new();
        let n = tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut l)).await.unwrap().unwrap();
        assert!(n > 0, "connection closed");
        if l.as_bytes().get(3) != Some(&b'-') {
            return l.trim_end().to_string();
        }
    }
}

/// One LMTP transaction for one recipient; returns the RCPT reply and, if accepted, the
/// reply after DATA.
async fn lmtp_deliver(addr: &str, rcpt: &str, body: &[u8]) -> (String, Option<String>) {
    let (r, mut w) = TcpStream::connect(addr).await.unwrap().into_split();
    let mut r = BufReader::new(r);
    assert!(reply(&mut r).await.starts_with("220 "));
    w.write_all(b"LHLO mta.example.net\r\n").await.unwrap();
    assert!(reply(&mut r).await.starts_with("250 "));
    w.write_all(b"MAIL FROM:<chris@bar.example>\r\n").await.unwrap();
    assert!(reply(&mut r).await.starts_with("250 "));
    w.write_all(format!("RCPT TO:<{rcpt}>\r\n").as_bytes()).await.unwrap();
    let rcpt_reply = reply(&mut r).await;
    if !rcpt_reply.starts_with("250 ") {
        w.write_all(b"QUIT\r\n").await.unwrap();
        return (rcpt_reply, None);
    }
    w.write_all(b"DATA\r\n").await.unwrap();
    assert!(reply(&mut r).await.starts_with("354 "));
    w.write_all(body).await.unwrap();
    w.write_all(b".\r\n").await.unwrap();
    let after = reply(&mut r).await;
    w.write_all(b"QUIT\r\n").await.unwrap();
    (rcpt_reply, Some(after))
}

const BODY: &[u8] = b"From: Chris <chris@bar.example>\r\nTo: alice@example.org\r\nSubject: fill\r\n\r\nsome text to take up room\r\n";

/// Sum of RFC822.SIZE of every INBOX message, over IMAP.
async fn inbox_bytes(imap: &str, who: &str) -> u64 {
    let (r, mut w) = TcpStream::connect(imap).await.unwrap().into_split();
    let mut r = BufReader::new(r);
    let mut lines = Vec::new();
    w.write_all(format!("a LOGIN {who} pw\r\nb SELECT INBOX\r\nc FETCH 1:* RFC822.SIZE\r\nd LOGOUT\r\n").as_bytes()).await.unwrap();
    loop {
        let mut l = String::new();
        let n = tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut l)).await.unwrap().unwrap();
        if n == 0 || l.starts_with("d ") {
            break;
        }
        lines.push(l);
    }
    lines
        .iter()
        .filter_map(|l| l.split("RFC822.SIZE ").nth(1))
        .map(|v| v.trim_end().trim_end_matches(')').parse::<u64>().unwrap())
        .sum()
}

#[tokio::test]
async fn lmtp_accepts_exactly_at_the_quota_and_answers_452_one_byte_over() {
    let mut s = Server::start("").await;
    let (_, done) = lmtp_deliver(&s.lmtp, ALICE, BODY).await;
    assert!(done.unwrap().starts_with("250 2.0.0"));
    let one = inbox_bytes(&s.imap, ALICE).await;
    assert!(one > BODY.len() as u64, "trace headers added");
    // Room for exactly one more identical delivery (same size: fixed-width ids).
    s.set_quota(ALICE, 2 * one);
    let (rcpt, done) = lmtp_deliver(&s.lmtp, ALICE, BODY).await;
    assert!(rcpt.starts_with("250 "), "{rcpt}");
    assert!(done.as_deref().unwrap().starts_with("250 2.0.0"), "{done:?}");
    // Reaching 100 % sent the 95 % warning, exempt from the quota: usage is now past it.
    let used = inbox_bytes(&s.imap, ALICE).await;
    assert!(used > 2 * one);
    // No room left: refused at RCPT already.
    let (rcpt, done) = lmtp_deliver(&s.lmtp, ALICE, BODY).await;
    assert_eq!(rcpt, "452 4.2.2 <alice@example.org> Mailbox full, try again later");
    assert!(done.is_none());
    // Room for the message minus one byte: accepted at RCPT, refused after DATA.
    s.set_quota(ALICE, used + one - 1);
    let (rcpt, done) = lmtp_deliver(&s.lmtp, ALICE, BODY).await;
    assert!(rcpt.starts_with("250 "), "{rcpt}");
    assert_eq!(done.as_deref(), Some("452 4.2.2 <alice@example.org> Mailbox full, try again later"));
    // And with exactly enough room, accepted again.
    s.set_quota(ALICE, used + one);
    let (_, done) = lmtp_deliver(&s.lmtp, ALICE, BODY).await;
    assert!(done.as_deref().unwrap().starts_with("250 2.0.0"), "{done:?}");
    s.stop().await;
    let subjects = s.inbox_subjects(ALICE);
    // Each raise of the quota dropped usage below 95 %, re-arming the warning; each delivery
    // that reached 100 % then crossed it again.
    let warnings: Vec<&String> = subjects.iter().filter(|l| l.contains("% full")).collect();
    assert_eq!(warnings, ["Subject: Your mailbox is 95% full", "Subject: Your mailbox is 95% full"], "{subjects:?}");
}

#[tokio::test]
async fn permanent_failure_mode_answers_552_5_2_2() {
    let mut s = Server::start("quota_permanent_failure = true").await;
    s.set_quota(ALICE, 100);
    let (rcpt, done) = lmtp_deliver(&s.lmtp, ALICE, BODY).await;
    assert!(rcpt.starts_with("250 "), "empty mailbox has room at RCPT: {rcpt}");
    assert_eq!(done.as_deref(), Some("552 5.2.2 <alice@example.org> Mailbox full"));
    s.stop().await;
    assert!(s.inbox_subjects(ALICE).is_empty());
}

#[tokio::test]
async fn warnings_arrive_once_at_80_and_at_95_percent() {
    let mut s = Server::start("").await;
    let (_, done) = lmtp_deliver(&s.lmtp, "bob@example.org", BODY).await;
    assert!(done.unwrap().starts_with("250 "));
    let one = inbox_bytes(&s.imap, "bob@example.org").await;
    // 40 messages' worth: warnings at the 32nd and the 38th delivery, refusals from ~the 40th.
    s.set_quota("bob@example.org", 40 * one);
    let mut refused = 0;
    for _ in 0..60 {
        let (rcpt, done) = lmtp_deliver(&s.lmtp, "bob@example.org", BODY).await;
        let reply = done.unwrap_or(rcpt);
        if reply.starts_with("452 4.2.2") {
            refused += 1;
        } else {
            assert!(reply.starts_with("250 "), "{reply}");
        }
    }
    assert!(refused > 0);
    s.stop().await;
    let subjects = s.inbox_subjects("bob@example.org");
    let warnings: Vec<&String> = subjects.iter().filter(|l| l.contains("% full")).collect();
    assert_eq!(warnings, ["Subject: Your mailbox is 80% full", "Subject: Your mailbox is 95% full"], "{subjects:?}");
    let at80 = subjects.iter().position(|l| l.contains("80% full")).unwrap();
    let at95 = subjects.iter().position(|l| l.contains("95% full")).unwrap();
    // 80 % of 40 messages is reached by the 32nd; 95 % by the 36th (the 80 % warning counts).
    assert!((30..34).contains(&at80), "{at80}");
    assert!(at95 > at80 + 2, "{at95}");
}

#[tokio::test]
async fn imap_append_exactly_at_the_quota_ok_one_byte_over_no_overquota() {
    let server = imap_common::start().await;
    let mut c = imap_common::Client::login(&server, imap_common::ALICE).await;
    let account = server.ctx.directory.lookup(imap_common::ALICE).unwrap().unwrap();
    let user = server.ctx.store.user(&account.user_id).unwrap();
    user.set_quota(Some(QuotaLimits { bytes: 1000, messages: None }));
    let sized = |n: usize| {
        let mut m = b"Subject: q\r\n\r\n".to_vec();
        m.resize(n, b'x');
        m
    };
    let r = c.append("INBOX", "", &sized(600)).await;
    assert!(r.last().unwrap().contains(" OK "), "{r:?}");
    let r = c.append("INBOX", "", &sized(401)).await;
    assert!(r.last().unwrap().ends_with("NO [OVERQUOTA] Quota exceeded"), "{r:?}");
    let r = c.append("INBOX", "", &sized(400)).await;
    assert!(r.last().unwrap().contains(" OK "), "exactly at the limit: {r:?}");
    assert_eq!(user.usage().bytes, 1000);
    let r = c.append("INBOX", "", &sized(15)).await;
    assert!(r.last().unwrap().ends_with("NO [OVERQUOTA] Quota exceeded"), "{r:?}");
    // COPY over quota is refused the same way; MOVE is not (usage does not change).
    c.cmd("SELECT INBOX").await;
    let r = c.cmd("UID COPY 1 Archive").await;
    assert!(r.last().unwrap().ends_with("NO [OVERQUOTA] Quota exceeded"), "{r:?}");
    let r = c.cmd("UID MOVE 1 Archive").await;
    assert!(r.last().unwrap().contains(" OK "), "{r:?}");
}

#[tokio::test]
async fn undelete_through_the_running_service_and_directly() {
    let mut s = Server::start("").await;
    for _ in 0..2 {
        let (_, done) = lmtp_deliver(&s.lmtp, ALICE, BODY).await;
        assert!(done.unwrap().starts_with("250 "));
    }
    // Expunge both over IMAP.
    let (r, mut w) = TcpStream::connect(&s.imap).await.unwrap().into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"a LOGIN alice@example.org pw\r\nb SELECT INBOX\r\nc STORE 1:* +FLAGS (\\Deleted \\Flagged)\r\nd EXPUNGE\r\ne LOGOUT\r\n").await.unwrap();
    loop {
        let mut l = String::new();
        let n = tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut l)).await.unwrap().unwrap();
        if n == 0 || l.starts_with("e ") {
            break;
        }
        assert!(!l.starts_with("d NO"), "{l}");
    }
    let data = s.data.clone();
    let list = Request::Undelete { account: ALICE.into(), filter: Filter::default(), list: true };
    let listed = {
        let (data, list) = (data.clone(), list.clone());
        tokio::task::spawn_blocking(move || request_via(&data, &list)).await.unwrap().unwrap()
    };
    assert!(listed.ok && !listed.offline, "{listed:?}");
    assert_eq!(listed.messages.len(), 2);
    assert_eq!(listed.messages[0].mailbox, "INBOX");
    // Each listed message says what it is, from its header.
    assert_eq!(
        (listed.messages[0].subject.as_str(), listed.messages[0].from.as_str()),
        ("fill", "Chris <chris@bar.example>")
    );
    let unknown = Request::Undelete { account: "nobody@example.org".into(), filter: Filter::default(), list: true };
    let answer = {
        let data = data.clone();
        tokio::task::spawn_blocking(move || request_via(&data, &unknown)).await.unwrap().unwrap()
    };
    assert_eq!((answer.ok, answer.error.as_deref()), (false, Some("no such account: nobody@example.org")));
    // Restore one (UID 1) through the service: new UID 3, flags kept minus \Deleted.
    let one = Request::Undelete {
        account: ALICE.into(),
        filter: Filter { mailbox: Some("inbox".into()), since: None, until: Some(listed.messages[0].expunged_at + 1) },
        list: false,
    };
    let restored = {
        let data = data.clone();
        tokio::task::spawn_blocking(move || request_via(&data, &one)).await.unwrap().unwrap()
    };
    assert!(restored.ok, "{restored:?}");
    assert_eq!(restored.messages.len(), 2, "both were expunged in the same second");
    assert_eq!(restored.messages[0].restored_to.as_deref(), Some("INBOX"));
    assert_eq!((restored.messages[0].new_uid, restored.messages[1].new_uid), (Some(3), Some(4)));
    assert_eq!(restored.messages[0].flags, ["\\Flagged"]);
    // With the service stopped, the store is opened directly: expunge one again, restore it.
    s.stop().await;
    {
        let account = Directory::open(&data).unwrap().lookup(ALICE).unwrap().unwrap();
        let store = Store::open(&data.store_dir(), hermes_store::StoreConfig::default()).unwrap();
        let us = store.user(&account.user_id).unwrap();
        let inbox = us.mailbox("INBOX").unwrap().id;
        us.store_flags(inbox, &[3], hermes_store::FlagOp::Add, &["\\Deleted".to_string()], None).unwrap();
        assert_eq!(us.expunge(inbox, None).unwrap(), [3]);
    }
    let rest = Request::Undelete { account: ALICE.into(), filter: Filter::default(), list: false };
    let offline = tokio::task::spawn_blocking(move || request_via(&data, &rest)).await.unwrap().unwrap();
    assert!(offline.ok && offline.offline, "{offline:?}");
    assert_eq!(offline.messages.len(), 1);
    assert_eq!((offline.messages[0].uid, offline.messages[0].new_uid), (3, Some(5)));
    assert_eq!(s.inbox_subjects(ALICE).len(), 2);
}
