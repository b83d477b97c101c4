//! The store service end to end inside one process, on real sockets: the RFC 9208 MESSAGE
//! quota (IMAP GETQUOTAROOT, APPEND and LMTP exactly at the limit and one over), LMTP
//! duplicate suppression (`XDEDUP`, across a restart), and the control socket's `reload`
//! (live settings, restart-only settings, an invalid file refused) and `stats`.
#![allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]

use hermes_core::config::Config;
use hermes_core::directory::{Directory, MessageQuota};
use hermes_core::paths::DataDir;
use hermes_core::secret::Secret;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.org";

struct Server {
    _dir: tempfile::TempDir,
    data: DataDir,
    lmtp: String,
    imap: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

fn config_text(store_section: &str) -> String {
    format!(
        "[server]\nhostname = \"mx.example.org\"\nlisten = \"127.0.0.1\"\n\
         [imap]\nport = 0\ntls_port = 0\nplaintext_auth_on_loopback = true\n[pop3]\nport = 0\ntls_port = 0\n[lmtp]\nport = 0\n[managesieve]\nport = 0\n[store]\n{store_section}\n"
    )
}

impl Server {
    async fn start(store_section: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        let directory = Directory::open(&data).unwrap();
        directory.add_domain("example.org").unwrap();
        for who in [ALICE, BOB] {
            directory.add_account(who, &Secret::new("pw".to_string()), None).unwrap();
        }
        let text = config_text(store_section);
        std::fs::create_dir_all(data.config_dir()).unwrap();
        std::fs::write(data.config_file(), &text).unwrap();
        let mut s = Server { _dir: dir, data, lmtp: String::new(), imap: String::new(), stop: None, task: None };
        s.run().await;
        s
    }

    async fn run(&mut self) {
        let config = Config::from_toml(&std::fs::read_to_string(self.data.config_file()).unwrap()).unwrap();
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

    fn directory(&self) -> Directory {
        Directory::open(&self.data).unwrap()
    }

    /// One request line on `run/store.sock`, its answer as JSON.
    async fn control(&self, line: &str) -> serde_json::Value {
        let s = tokio::net::UnixStream::connect(self.data.store_socket()).await.unwrap();
        let (r, mut w) = s.into_split();
        w.write_all(format!("{line}\n").as_bytes()).await.unwrap();
        let mut answer = String::new();
        let mut r = BufReader::new(r);
        tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut answer)).await.unwrap().unwrap();
        serde_json::from_str(&answer).unwrap()
    }
}

/// Reads one (possibly multi-line) SMTP-style reply; returns all its lines.
async fn reply_lines(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let mut l = String::new();
        let n = tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut l)).await.unwrap().unwrap();
        assert!(n > 0, "connection closed");
        let last = l.as_bytes().get(3) != Some(&b'-');
        out.push(l.trim_end().to_string());
        if last {
            return out;
        }
    }
}

async fn reply(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> String {
    reply_lines(r).await.pop().unwrap()
}

/// One LMTP transaction: the RCPT replies and the replies after DATA (one per accepted).
async fn lmtp(addr: &str, mail_params: &str, rcpts: &[&str], body: &[u8]) -> (Vec<String>, Vec<String>) {
    let (r, mut w) = TcpStream::connect(addr).await.unwrap().into_split();
    let mut r = BufReader::new(r);
    assert!(reply(&mut r).await.starts_with("220 "));
    w.write_all(b"LHLO mta.example.net\r\n").await.unwrap();
    let lhlo = reply_lines(&mut r).await;
    assert!(lhlo.iter().any(|l| &l[4..] == "XDEDUP"), "{lhlo:?}");
    w.write_all(format!("MAIL FROM:<chris@bar.example>{mail_params}\r\n").as_bytes()).await.unwrap();
    let mail = reply(&mut r).await;
    if !mail.starts_with("250 ") {
        return (vec![mail], Vec::new());
    }
    let mut rcpt_replies = Vec::new();
    for rcpt in rcpts {
        w.write_all(format!("RCPT TO:<{rcpt}>\r\n").as_bytes()).await.unwrap();
        rcpt_replies.push(reply(&mut r).await);
    }
    let accepted = rcpt_replies.iter().filter(|r| r.starts_with("250 ")).count();
    let mut after = Vec::new();
    if accepted > 0 {
        w.write_all(b"DATA\r\n").await.unwrap();
        assert!(reply(&mut r).await.starts_with("354 "));
        w.write_all(body).await.unwrap();
        w.write_all(b".\r\n").await.unwrap();
        for _ in 0..accepted {
            after.push(reply(&mut r).await);
        }
    }
    w.write_all(b"QUIT\r\n").await.unwrap();
    (rcpt_replies, after)
}

const BODY: &[u8] = b"From: Chris <chris@bar.example>\r\nSubject: hello\r\n\r\nsome text\r\n";

/// An IMAP session: send one tagged command, collect lines up to its completion.
struct Imap {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
    n: u32,
}

impl Imap {
    async fn login(addr: &str, who: &str) -> Imap {
        let (r, w) = TcpStream::connect(addr).await.unwrap().into_split();
        let mut c = Imap { r: BufReader::new(r), w, n: 0 };
        let mut greeting = String::new();
        c.r.read_line(&mut greeting).await.unwrap();
        let r = c.cmd(&format!("LOGIN {who} pw")).await;
        assert!(r.last().unwrap().contains(" OK "), "{r:?}");
        c
    }

    async fn cmd(&mut self, command: &str) -> Vec<String> {
        self.n += 1;
        let tag = format!("t{}", self.n);
        self.w.write_all(format!("{tag} {command}\r\n").as_bytes()).await.unwrap();
        self.read_until(&tag).await
    }

    async fn read_until(&mut self, tag: &str) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let mut l = String::new();
            let n = tokio::time::timeout(Duration::from_secs(10), self.r.read_line(&mut l)).await.unwrap().unwrap();
            assert!(n > 0, "closed: {out:?}");
            let done = l.starts_with(&format!("{tag} "));
            out.push(l.trim_end().to_string());
            if done {
                return out;
            }
        }
    }

    async fn append(&mut self, mailbox: &str, message: &[u8]) -> Vec<String> {
        self.n += 1;
        let tag = format!("t{}", self.n);
        self.w.write_all(format!("{tag} APPEND {mailbox} {{{}+}}\r\n", message.len()).as_bytes()).await.unwrap();
        self.w.write_all(message).await.unwrap();
        self.w.write_all(b"\r\n").await.unwrap();
        self.read_until(&tag).await
    }
}

#[tokio::test]
async fn message_quota_over_imap_and_lmtp_exactly_at_the_limit_and_one_over() {
    let mut s = Server::start("").await;
    // Unlimited by default: GETQUOTAROOT lists STORAGE only; the capability is advertised.
    let mut c = Imap::login(&s.imap, ALICE).await;
    let caps = c.cmd("CAPABILITY").await;
    assert!(
        caps[0].contains(" QUOTA ") && caps[0].contains(" QUOTA=RES-STORAGE") && caps[0].contains(" QUOTA=RES-MESSAGE"),
        "{caps:?}"
    );
    let r = c.cmd("GETQUOTAROOT INBOX").await;
    assert_eq!(r[1], "* QUOTA \"\" (STORAGE 0 1048576)", "{r:?}");
    // A limit of 3 messages, set in the directory while the session runs: reported at once.
    s.directory().set_message_quota(ALICE, MessageQuota::Limit(3)).unwrap();
    let r = c.cmd("GETQUOTAROOT INBOX").await;
    assert_eq!(r[1], "* QUOTA \"\" (STORAGE 0 1048576 MESSAGE 0 3)", "{r:?}");
    let r = c.cmd("GETQUOTA \"\"").await;
    assert_eq!(r[0], "* QUOTA \"\" (STORAGE 0 1048576 MESSAGE 0 3)", "{r:?}");
    // LMTP: two deliveries fit (the limit applies from RCPT).
    for _ in 0..2 {
        let (rcpt, after) = lmtp(&s.lmtp, "", &[ALICE], BODY).await;
        assert!(rcpt[0].starts_with("250 ") && after[0].starts_with("250 2.0.0"), "{rcpt:?} {after:?}");
    }
    // The session's store limits come from its login: log in again to pick up the new ones.
    drop(c);
    let mut c = Imap::login(&s.imap, ALICE).await;
    // 2 of 3 messages is 66 %: no warning yet. The third, exactly at the limit, is accepted
    // and crosses 95 %: the warning arrives (exempt from the quota: 4 messages).
    let r = c.append("INBOX", b"Subject: third\r\n\r\nx\r\n").await;
    assert!(r.last().unwrap().contains(" OK "), "{r:?}");
    let r = c.cmd("STATUS INBOX (MESSAGES)").await;
    assert!(r[0].ends_with("(MESSAGES 4)"), "{r:?}");
    let r = c.cmd("SELECT INBOX").await;
    assert!(r.iter().any(|l| l == "* 4 EXISTS"), "{r:?}");
    let r = c.cmd("FETCH 4 BODY.PEEK[HEADER.FIELDS (SUBJECT)]").await;
    assert!(r.iter().any(|l| l == "Subject: Your mailbox is 95% full"), "{r:?}");
    // One over: APPEND and COPY refused, MOVE not (it changes no count).
    let r = c.append("INBOX", b"Subject: fifth\r\n\r\nx\r\n").await;
    assert!(r.last().unwrap().ends_with("NO [OVERQUOTA] Quota exceeded"), "{r:?}");
    c.cmd("CREATE Archive").await;
    let r = c.cmd("UID COPY 1 Archive").await;
    assert!(r.last().unwrap().ends_with("NO [OVERQUOTA] Quota exceeded"), "{r:?}");
    let r = c.cmd("UID MOVE 1 Archive").await;
    assert!(r.last().unwrap().contains(" OK "), "{r:?}");
    // LMTP at the limit: refused at RCPT with 452 4.2.2.
    let (rcpt, after) = lmtp(&s.lmtp, "", &[ALICE], BODY).await;
    assert_eq!(rcpt[0], "452 4.2.2 <alice@example.org> Mailbox full, try again later");
    assert!(after.is_empty());
    // Raised to 5: exactly one more delivery fits, the next is refused at RCPT again.
    s.directory().set_message_quota(ALICE, MessageQuota::Limit(5)).unwrap();
    let (_, after) = lmtp(&s.lmtp, "", &[ALICE], BODY).await;
    assert!(after[0].starts_with("250 2.0.0"), "{after:?}");
    let (rcpt, _) = lmtp(&s.lmtp, "", &[ALICE], BODY).await;
    assert_eq!(rcpt[0], "452 4.2.2 <alice@example.org> Mailbox full, try again later");
    let r = c.cmd("GETQUOTAROOT INBOX").await;
    // Reaching 5 of 5 crossed 95 % again (the raise re-armed it): one more warning, exempt.
    assert!(r.iter().any(|l| l.starts_with("* QUOTA ") && l.ends_with(" MESSAGE 6 5)")), "{r:?}");
    // Unlimited for this account: MESSAGE disappears.
    s.directory().set_message_quota(ALICE, MessageQuota::Unlimited).unwrap();
    let r = c.cmd("GETQUOTA \"\"").await;
    assert!(
        r.iter().any(|l| l.starts_with("* QUOTA \"\" (STORAGE ")) && !r.iter().any(|l| l.contains("MESSAGE")),
        "{r:?}"
    );
    let (_, after) = lmtp(&s.lmtp, "", &[ALICE], BODY).await;
    assert!(after[0].starts_with("250 2.0.0"), "{after:?}");
    s.stop().await;
}

#[tokio::test]
async fn lmtp_multi_message_limit_is_checked_after_data_with_552_when_permanent() {
    let mut s = Server::start("quota_permanent_failure = true\ndefault_quota_messages = 1").await;
    // The site default applies to accounts without their own limit.
    let (_, after) = lmtp(&s.lmtp, "", &[BOB], BODY).await;
    assert!(after[0].starts_with("250 2.0.0"), "{after:?}");
    let (rcpt, _) = lmtp(&s.lmtp, "", &[BOB], BODY).await;
    assert_eq!(rcpt[0], "552 5.2.2 <bob@example.org> Mailbox full");
    s.stop().await;
}

#[tokio::test]
async fn xdedup_suppresses_a_second_delivery_even_after_a_restart() {
    let mut s = Server::start("").await;
    let token = " XDEDUP=q1.20261128-abc_9";
    let (rcpt, after) = lmtp(&s.lmtp, token, &[ALICE, BOB], BODY).await;
    assert!(rcpt.iter().all(|r| r.starts_with("250 ")), "{rcpt:?}");
    assert!(after.iter().all(|r| r.starts_with("250 2.0.0 ") && r.contains("Delivered")), "{after:?}");
    // The same token again: nothing stored, both answered 250 "already delivered".
    let (_, after) = lmtp(&s.lmtp, token, &[ALICE, BOB], BODY).await;
    assert_eq!(
        after,
        [
            "250 2.0.0 <alice@example.org> already delivered (duplicate suppressed)",
            "250 2.0.0 <bob@example.org> already delivered (duplicate suppressed)"
        ]
    );
    // Another token delivers; a subaddress of the same account is the same account.
    let (_, after) = lmtp(&s.lmtp, " XDEDUP=other", &[ALICE], BODY).await;
    assert!(after[0].contains("Delivered"), "{after:?}");
    let (_, after) = lmtp(&s.lmtp, " XDEDUP=other", &["alice+x@example.org"], BODY).await;
    assert!(after[0].contains("duplicate suppressed"), "{after:?}");
    // Bad tokens: 501 5.5.4.
    let (mail, _) = lmtp(&s.lmtp, " XDEDUP=a/b", &[ALICE], BODY).await;
    assert!(mail[0].starts_with("501 5.5.4"), "{mail:?}");
    let (mail, _) = lmtp(&s.lmtp, &format!(" XDEDUP={}", "x".repeat(65)), &[ALICE], BODY).await;
    assert!(mail[0].starts_with("501 5.5.4"), "{mail:?}");
    // The records are durable: after a restart the token is still known.
    s.stop().await;
    s.run().await;
    let (_, after) = lmtp(&s.lmtp, token, &[ALICE, BOB], BODY).await;
    assert!(after.iter().all(|r| r.contains("duplicate suppressed")), "{after:?}");
    // A new account (recipient) with the old token is delivered.
    s.directory().add_account("carol@example.org", &Secret::new("pw".to_string()), None).unwrap();
    let (_, after) = lmtp(&s.lmtp, token, &["carol@example.org", ALICE], BODY).await;
    assert!(after[0].contains("Delivered") && after[1].contains("duplicate suppressed"), "{after:?}");
    let mut c = Imap::login(&s.imap, ALICE).await;
    let r = c.cmd("STATUS INBOX (MESSAGES)").await;
    assert!(r[0].ends_with("(MESSAGES 2)"), "one per token: {r:?}");
    let stats = s.control(r#"{"op":"stats"}"#).await;
    assert_eq!(stats["stats"]["lmtp_delivered"], 4, "{stats}");
    s.stop().await;
}

#[tokio::test]
async fn reload_applies_live_settings_refuses_a_bad_file_and_names_restart_settings() {
    let mut s = Server::start("").await;
    let stats = s.control(r#"{"op":"stats"}"#).await;
    assert_eq!(stats["ok"], true, "{stats}");
    let started = stats["stats"]["started_at"].as_i64().unwrap();
    assert!((chrono::Utc::now().timestamp() - started).abs() < 60);
    for k in [
        "logins_ok",
        "logins_failed",
        "imap_sessions",
        "pop3_sessions",
        "lmtp_delivered",
        "lmtp_rejected",
        "messages_appended",
    ] {
        assert_eq!(stats["stats"][k], 0, "{k}: {stats}");
    }
    // Nothing changed: ok, nothing to apply.
    let r = s.control(r#"{"op":"reload"}"#).await;
    assert_eq!(
        r,
        serde_json::json!({"ok": true, "account": "", "listed": false, "messages": [], "offline": false, "applied": [], "restart_needed": []})
    );
    // An invalid file is refused with every error; the old config stays.
    std::fs::write(s.data.config_file(), config_text("retention_days = 99999\nzstd_level = 0")).unwrap();
    let r = s.control(r#"{"op":"reload"}"#).await;
    assert_eq!(r["ok"], false, "{r}");
    let errors: Vec<&str> = r["errors"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    assert!(
        errors.iter().any(|e| e.starts_with("store.zstd_level"))
            && errors.iter().any(|e| e.starts_with("store.retention_days")),
        "{errors:?}"
    );
    // Live: the over-quota mode and the message default; restart: the IMAP port.
    std::fs::write(
        s.data.config_file(),
        config_text("quota_permanent_failure = true\ndefault_quota_messages = 1")
            .replace("[imap]\nport = 0", "[imap]\nport = 1"),
    )
    .unwrap();
    let r = s.control(r#"{"op":"reload"}"#).await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["applied"], serde_json::json!(["store.quota_permanent_failure", "store.default_quota_messages"]));
    assert_eq!(r["restart_needed"], serde_json::json!(["imap.port"]));
    // The new settings work at once: one message allowed, the second refused with 552.
    let (_, after) = lmtp(&s.lmtp, "", &[ALICE], BODY).await;
    assert!(after[0].starts_with("250 2.0.0"), "{after:?}");
    let (rcpt, _) = lmtp(&s.lmtp, "", &[ALICE], BODY).await;
    assert_eq!(rcpt[0], "552 5.2.2 <alice@example.org> Mailbox full");
    // The IMAP listener did not move.
    let mut c = Imap::login(&s.imap, BOB).await;
    let r = c.cmd("GETQUOTA \"\"").await;
    assert!(r[0].ends_with(" MESSAGE 0 1)"), "{r:?}");
    // A failed login and an APPEND are counted.
    let (rr, mut w) = TcpStream::connect(&s.imap).await.unwrap().into_split();
    let mut rr = BufReader::new(rr);
    w.write_all(b"a LOGIN bob@example.org wrong\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = String::new();
    while !got.contains("a NO") {
        let n = tokio::time::timeout(Duration::from_secs(20), rr.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0);
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let r = c.append("INBOX", b"Subject: x\r\n\r\nx\r\n").await;
    assert!(r.last().unwrap().contains(" OK "), "{r:?}");
    let stats = s.control(r#"{"op":"stats"}"#).await["stats"].clone();
    assert_eq!((stats["logins_ok"].as_u64(), stats["logins_failed"].as_u64()), (Some(1), Some(1)), "{stats}");
    assert_eq!((stats["imap_sessions"].as_u64(), stats["messages_appended"].as_u64()), (Some(2), Some(1)), "{stats}");
    assert_eq!((stats["lmtp_delivered"].as_u64(), stats["lmtp_rejected"].as_u64()), (Some(1), Some(1)), "{stats}");
    // A new TLS certificate is picked up.
    hermes_runtime::tls::ensure_self_signed(&s.data, "localhost").unwrap();
    let (cert, key) = hermes_runtime::tls::generate_self_signed("other.example", std::time::SystemTime::now()).unwrap();
    std::fs::write(s.data.tls_cert(), cert).unwrap();
    std::fs::write(s.data.tls_key(), key).unwrap();
    let r = s.control(r#"{"op":"reload"}"#).await;
    assert_eq!(r["ok"], true, "{r}");
    assert!(r["applied"].as_array().unwrap().iter().any(|a| a == "tls.certificate"), "{r}");
    // A broken key is refused and the running certificate stays.
    std::fs::write(s.data.tls_key(), "not a key").unwrap();
    let r = s.control(r#"{"op":"reload"}"#).await;
    assert_eq!(r["ok"], false, "{r}");
    // SIGHUP is not sent here (it would reach the test process); run.rs maps it to the same
    // function. Unknown ops are refused.
    let r = s.control(r#"{"op":"reboot"}"#).await;
    assert_eq!(r["ok"], false);
    s.stop().await;
}

/// Every `search-<mailbox-id>.idx` of `who`: (mailbox id, UIDs indexed in it).
fn index_files(data: &DataDir, who: &str) -> Vec<(u64, Vec<u32>)> {
    let account = Directory::open(data).unwrap().lookup(who).unwrap().unwrap();
    let cache = data.store_dir().join("users").join(account.user_id.as_str()).join("cache");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&cache).into_iter().flatten() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let Some(id) = name.strip_prefix("search-").and_then(|n| n.strip_suffix(".idx")) else { continue };
        let mailbox: u64 = id.parse().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let uidvalidity = u32::from_le_bytes(bytes[16..20].try_into().unwrap());
        let loaded = hermes_svc_store::index::file::parse(&bytes, mailbox, uidvalidity);
        assert!(loaded.damage.is_none(), "{:?}", loaded.damage);
        let mut uids: Vec<u32> = loaded.entries.iter().map(|(u, _)| *u).collect();
        uids.sort_unstable();
        out.push((mailbox, uids));
    }
    out.sort();
    out
}

#[tokio::test]
async fn messages_are_indexed_at_delivery_and_append_before_any_select() {
    let mut s = Server::start("").await;
    for i in 0..20 {
        let body = format!("From: x@bar.example\r\nSubject: note {i}\r\n\r\nword{i} xylophonist\r\n");
        let (_, after) = lmtp(&s.lmtp, "", &[ALICE], body.as_bytes()).await;
        assert!(after[0].starts_with("250 "), "{after:?}");
    }
    let mut c = Imap::login(&s.imap, ALICE).await;
    c.cmd("CREATE Archive").await;
    let r = c.append("Archive", b"Subject: kept\r\n\r\nxylophonist\r\n").await;
    assert!(r.last().unwrap().contains(" OK "), "{r:?}");
    tokio::task::spawn_blocking(hermes_svc_store::index::ingest::flush).await.unwrap();
    // Nobody selected anything, yet both mailboxes have their index on disk.
    let files = index_files(&s.data, ALICE);
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(files[0].1, (1..=20).collect::<Vec<u32>>(), "INBOX: every delivery");
    assert_eq!(files[1].1, [1], "Archive: the APPEND");
    // The index answers exactly like a scan.
    let r = c.cmd("SELECT INBOX").await;
    assert!(r.iter().any(|l| l == "* 20 EXISTS"), "{r:?}");
    let r = c.cmd("UID SEARCH TEXT word7").await;
    assert!(r.iter().any(|l| l == "* SEARCH 8"), "note 7 is the eighth: {r:?}");
    let r = c.cmd("UID SEARCH BODY xylophonist").await;
    assert_eq!(r[0].split(' ').count(), 22, "{r:?}");
    s.stop().await;
}
