//! LMTP end to end inside one process: the real service (`run_until`) on 127.0.0.1:0 and its
//! unix socket over a temporary data folder, driven by a raw pipelining client, by Python's
//! `smtplib.LMTP`, and by `hermes deliver`'s library form; then the store is opened directly
//! to check what was stored, byte for byte.
#![allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]

use hermes_core::config::Config;
use hermes_core::directory::Directory;
use hermes_core::paths::DataDir;
use hermes_core::secret::Secret;
use hermes_store::{Store, StoreConfig};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

struct Server {
    _dir: tempfile::TempDir,
    data: DataDir,
    lmtp: String,
    socket: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Server {
    async fn start(extra_limits: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        let directory = Directory::open(&data).unwrap();
        directory.add_domain("example.org").unwrap();
        for user in ["alice", "bob", "carol"] {
            directory.add_account(&format!("{user}@example.org"), &Secret::new("pw".to_string()), None).unwrap();
        }
        let text = format!(
            "[server]\nhostname = \"mx.example.org\"\nlisten = \"127.0.0.1\"\n\
             [imap]\nport = 0\ntls_port = 0\n[pop3]\nport = 0\ntls_port = 0\n[lmtp]\nport = 0\n[managesieve]\nport = 0\n[limits]\n{extra_limits}\n"
        );
        let config = Config::from_toml(&text).unwrap();
        // `hermes deliver` without a running server reads it (host name, limits).
        std::fs::create_dir_all(data.config_dir()).unwrap();
        std::fs::write(data.config_file(), &text).unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(hermes_svc_store::run_until(data.clone(), config, async move {
            let _ = rx.await;
        }));
        let mut tries = 0;
        let endpoints = loop {
            if let Ok(e) = hermes_runtime::endpoints::read_service_endpoints(&data, "store") {
                break e;
            }
            tries += 1;
            assert!(tries < 500, "service did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(!endpoints.tcp.contains_key("imaps"), "no certificate, so no IMAPS");
        assert_ne!(endpoints.tcp["imap"], "127.0.0.1:0");
        Server {
            lmtp: endpoints.tcp["lmtp"].clone(),
            socket: endpoints.unix["lmtp"].clone(),
            data,
            _dir: dir,
            stop: Some(tx),
            task: Some(task),
        }
    }

    async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), t).await.unwrap().unwrap().unwrap();
        }
    }

    /// Messages in `user`'s INBOX (opens the store: call after `stop`).
    fn inbox(&self, user: &str) -> Vec<Vec<u8>> {
        let account = Directory::open(&self.data).unwrap().lookup(user).unwrap().unwrap();
        let store = Store::open(&self.data.store_dir(), StoreConfig::default()).unwrap();
        let us = store.user(&account.user_id).unwrap();
        let inbox = us.mailbox("INBOX").unwrap();
        let view = us.view(inbox.id).unwrap();
        view.messages.iter().map(|m| us.read_message(inbox.id, m.uid).unwrap().to_vec()).collect()
    }
}

struct Client {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl Client {
    async fn connect(addr: &str) -> Client {
        let (r, w) = TcpStream::connect(addr).await.unwrap().into_split();
        Client { r: BufReader::new(r), w }
    }
    async fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).await.unwrap();
    }
    /// One reply's lines, last line included.
    async fn reply(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(10), self.r.read_line(&mut line)).await.unwrap().unwrap();
            assert!(n > 0, "connection closed; got {lines:?}");
            let line = line.trim_end().to_string();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines;
            }
        }
    }
    async fn line(&mut self) -> String {
        let r = self.reply().await;
        assert_eq!(r.len(), 1, "{r:?}");
        r.into_iter().next().unwrap()
    }
}

const MESSAGE: &[u8] = b"From: Chris <chris@bar.example>\r\nTo: alice@example.org\r\nSubject: hello\r\n\r\nBlah blah\r\n.leading dot\r\n";

#[tokio::test]
async fn pipelined_delivery_with_per_recipient_replies() {
    let mut s = Server::start("").await;
    let mut c = Client::connect(&s.lmtp).await;
    assert_eq!(c.line().await, "220 mx.example.org LMTP Hermes ready");
    // The whole transaction in one write (PIPELINING), up to DATA.
    c.send(b"LHLO mta.example.net\r\nMAIL FROM:<chris@bar.example> BODY=8BITMIME\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<nobody@example.org>\r\nRCPT TO:<Bob+lists@Example.org>\r\nRCPT TO:<alice@elsewhere.example>\r\nDATA\r\n").await;
    let lhlo = c.reply().await;
    assert_eq!(lhlo[0], "250-mx.example.org");
    for cap in ["PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME", "SMTPUTF8"] {
        assert!(lhlo.iter().any(|l| l[4..] == *cap), "{cap} missing from {lhlo:?}");
    }
    assert!(lhlo.iter().any(|l| l[4..].starts_with("SIZE ")), "{lhlo:?}");
    assert_eq!(c.line().await, "250 2.1.0 OK");
    assert!(c.line().await.starts_with("250 2.1.5"));
    assert!(c.line().await.starts_with("550 5.1.1"), "unknown user");
    assert!(c.line().await.starts_with("250 2.1.5"), "subaddress resolves to bob");
    assert!(c.line().await.starts_with("550 5.1.1"), "domain not local");
    assert!(c.line().await.starts_with("354"));
    let mut stuffed = MESSAGE.to_vec();
    stuffed = String::from_utf8(stuffed).unwrap().replace("\r\n.leading", "\r\n..leading").into_bytes();
    c.send(&stuffed).await;
    c.send(b".\r\n").await;
    let r1 = c.line().await;
    let r2 = c.line().await;
    assert!(r1.starts_with("250 2.0.0 <alice@example.org>"), "{r1}");
    assert!(r2.starts_with("250 2.0.0 <Bob+lists@Example.org>"), "{r2}");
    c.send(b"QUIT\r\n").await;
    assert!(c.line().await.starts_with("221 2.0.0"));
    s.stop().await;

    for user in ["alice@example.org", "bob@example.org"] {
        let inbox = s.inbox(user);
        assert_eq!(inbox.len(), 1, "{user}");
        let stored = &inbox[0];
        assert!(stored.starts_with(b"Return-Path: <chris@bar.example>\r\nReceived: from mta.example.net ([127.0.0.1])\r\n\tby mx.example.org (Hermes) with LMTP id "));
        assert!(stored.ends_with(MESSAGE), "message stored byte for byte after the trace headers");
        let text = String::from_utf8_lossy(stored);
        assert!(!text.contains("for <"), "two recipients: no `for` clause naming one of them");
        assert!(!text.contains("Delivered-To"));
    }
    assert!(s.inbox("carol@example.org").is_empty());
}

#[tokio::test]
async fn oversize_gets_552_per_recipient_and_nothing_is_stored() {
    let mut s = Server::start("max_message_bytes = 10000").await;
    let mut c = Client::connect(&s.lmtp).await;
    c.line().await;
    c.send(b"LHLO x\r\n").await;
    let lhlo = c.reply().await;
    assert!(lhlo.contains(&"250-SIZE 10000".to_string()), "{lhlo:?}");
    c.send(b"MAIL FROM:<a@b.example> SIZE=20000\r\n").await;
    assert!(c.line().await.starts_with("552 5.3.4"));
    c.send(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<carol@example.org>\r\nDATA\r\n").await;
    for _ in 0..3 {
        assert!(c.line().await.starts_with("250"));
    }
    assert!(c.line().await.starts_with("354"));
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    for _ in 0..400 {
        big.extend_from_slice(&[b'x'; 78]);
        big.extend_from_slice(b"\r\n");
    }
    big.extend_from_slice(b".\r\n");
    c.send(&big).await;
    assert!(c.line().await.starts_with("552 5.3.4"));
    assert!(c.line().await.starts_with("552 5.3.4"));
    // The session is still in sync.
    c.send(b"NOOP\r\n").await;
    assert_eq!(c.line().await, "250 2.0.0 OK");
    drop(c);
    s.stop().await;
    assert!(s.inbox("alice@example.org").is_empty());
}

#[tokio::test]
async fn python_smtplib_lmtp_over_unix_socket() {
    let mut s = Server::start("").await;
    let script = r#"
import smtplib, sys
c = smtplib.LMTP(sys.argv[1])
c.ehlo()
assert c.has_extn("pipelining"), c.esmtp_features
msg = b"Subject: from python\r\n\r\nhello from smtplib\r\n"
refused = c.sendmail("py@client.example", ["carol@example.org", "ghost@example.org"], msg)
print(repr(refused))
c.quit()
"#;
    let out = tokio::process::Command::new("python3").arg("-c").arg(script).arg(&s.socket).output().await.unwrap();
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("'ghost@example.org': (550, b'5.1.1"), "{stdout}");
    assert!(!stdout.contains("carol"), "carol was delivered: {stdout}");
    s.stop().await;
    let inbox = s.inbox("carol@example.org");
    assert_eq!(inbox.len(), 1);
    let text = String::from_utf8_lossy(&inbox[0]);
    assert!(text.contains("\tfor <carol@example.org>;"), "single recipient named: {text}");
    assert!(text.starts_with("Return-Path: <py@client.example>\r\nReceived: from "), "{text}");
    assert!(text.ends_with("Subject: from python\r\n\r\nhello from smtplib\r\n"));
}

#[tokio::test]
async fn hermes_deliver_via_socket_then_directly() {
    let mut s = Server::start("").await;
    let data = s.data.clone();
    let to = vec!["alice@example.org".to_string(), "nobody@example.org".to_string()];
    let results = tokio::task::spawn_blocking(move || {
        hermes_svc_store::deliver::deliver(&data, &to, Some("script@example.org"), b"Subject: one\n\nvia socket\n.\n".to_vec())
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(results[0].reply.code, 250, "{results:?}");
    assert_eq!(results[1].reply.code, 550, "{results:?}");
    s.stop().await;
    assert!(!std::path::Path::new(&s.socket).exists(), "socket removed at shutdown");

    // Server stopped: the command opens the store itself.
    let to = vec!["alice@example.org".to_string()];
    hermes_svc_store::deliver::deliver_command(&s.data, &to, None, b"Subject: two\n\ndirect\n".to_vec()).unwrap();
    let bad = vec!["nobody@example.org".to_string()];
    assert!(hermes_svc_store::deliver::deliver_command(&s.data, &bad, None, b"x\n".to_vec()).is_err());

    let inbox = s.inbox("alice@example.org");
    assert_eq!(inbox.len(), 2);
    assert!(inbox[0].ends_with(b"Subject: one\r\n\r\nvia socket\r\n.\r\n"), "{:?}", String::from_utf8_lossy(&inbox[0]));
    assert!(inbox[1].starts_with(b"Return-Path: <>\r\nReceived: from localhost\r\n\tby mx.example.org (Hermes) with local id "));
    assert!(inbox[1].ends_with(b"Subject: two\r\n\r\ndirect\r\n"));
}

#[tokio::test]
async fn connection_limit_and_shutdown_goodbye() {
    let mut s = Server::start("max_connections_per_ip = 2").await;
    let mut a = Client::connect(&s.lmtp).await;
    let mut b = Client::connect(&s.lmtp).await;
    assert!(a.line().await.starts_with("220"));
    assert!(b.line().await.starts_with("220"));
    let mut c = Client::connect(&s.lmtp).await;
    assert!(c.line().await.starts_with("421 4.7.0"), "third connection from one address refused");
    drop(b);
    // The slot frees when the session ends.
    let mut ok = false;
    for _ in 0..50 {
        let mut d = Client::connect(&s.lmtp).await;
        if d.line().await.starts_with("220") {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok);
    a.send(b"LHLO x\r\n").await;
    a.reply().await;
    if let Some(tx) = s.stop.take() {
        let _ = tx.send(());
    }
    assert!(a.line().await.starts_with("421 4.3.2"), "idle session told of shutdown");
    let mut rest = Vec::new();
    let _ = a.r.read_to_end(&mut rest).await;
    s.stop().await;
}

#[tokio::test]
async fn garbage_never_kills_the_service() {
    let mut s = Server::start("").await;
    let mut c = Client::connect(&s.lmtp).await;
    c.line().await;
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\xff\xfe\0\0\r\n").await;
    c.send(&vec![b'A'; 100_000]).await;
    c.send(b"\r\nNOOP\r\n").await;
    let mut all = Vec::new();
    loop {
        let r = c.line().await;
        let done = r == "250 2.0.0 OK";
        all.push(r);
        if done {
            break;
        }
    }
    assert!(all.iter().any(|l| l.starts_with("500 5.5.2 Line too long")), "{all:?}");
    // A second client is still served.
    let mut d = Client::connect(&s.lmtp).await;
    assert!(d.line().await.starts_with("220"));
    s.stop().await;
}
