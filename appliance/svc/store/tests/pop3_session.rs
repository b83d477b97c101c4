//! POP3 end to end inside one process: the store service's POP3 sessions (plain and implicit
//! TLS) and IMAP sessions over one temporary store on 127.0.0.1:0, driven by a raw POP3 client
//! (golden `C:`/`S:` transcripts where the exact bytes matter), with messages delivered
//! through the store as LMTP would.
//!
//! Covers: greeting and CAPA in every state, USER/PASS, AUTH PLAIN (initial response,
//! continuation, cancel), clear-text refusal and STLS, POP3S, STAT/LIST/UIDL/TOP/RETR byte for
//! byte (dot-stuffing, bare LF), DELE+QUIT expunges (and IMAP no longer sees it), DELE+RSET and
//! dropped connections keep mail, a message expunged by IMAP mid-session, PIPELINING, bounded
//! lines, failed-login handling, STLS injection, and UIDLs stable across a restart.
#![allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]

use base64::Engine as _;
use hermes_core::config::Config;
use hermes_core::directory::Directory;
use hermes_core::paths::DataDir;
use hermes_core::secret::Secret;
use hermes_store::{DeliveryTarget, Store, StoreConfig};
use hermes_svc_store::{Context, SharedContext};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.org";
const PASSWORD: &str = "correct horse";
const TIMEOUT: Duration = Duration::from_secs(10);

// ------------------------------------------------------------------------------------------
// Harness

struct Server {
    pop3: SocketAddr,
    pop3s: SocketAddr,
    imap: SocketAddr,
    ctx: SharedContext,
    data: DataDir,
    accept: Vec<JoinHandle<()>>,
    _shutdown: tokio::sync::watch::Sender<bool>,
}

struct Options {
    plaintext_auth_on_loopback: bool,
    auth_fail_delay_ms: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options { plaintext_auth_on_loopback: true, auth_fail_delay_ms: 10 }
    }
}

fn new_data() -> (tempfile::TempDir, DataDir) {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path());
    let directory = Directory::open(&data).unwrap();
    directory.add_domain("example.org").unwrap();
    for who in [ALICE, BOB] {
        directory.add_account(who, &Secret::new(PASSWORD.to_string()), None).unwrap();
    }
    hermes_runtime::tls::ensure_self_signed(&data, "localhost").unwrap();
    (tmp, data)
}

async fn start(data: &DataDir, opts: Options) -> Server {
    let mut config = Config::host_default();
    config.pop3.plaintext_auth_on_loopback = opts.plaintext_auth_on_loopback;
    config.imap.plaintext_auth_on_loopback = true;
    config.limits.auth_fail_delay_ms = opts.auth_fail_delay_ms;
    config.limits.max_auth_fail_delay_ms = opts.auth_fail_delay_ms * 4;
    let directory = Directory::open(data).unwrap();
    let store = Store::open(&data.store_dir(), StoreConfig::default()).unwrap();
    let tls = hermes_runtime::tls::load_acceptor(data).unwrap();
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let ctx = Arc::new(Context::new(config, data.clone(), directory, store, Some(tls), shutdown_rx).unwrap());
    let mut addrs = Vec::new();
    let mut accept = Vec::new();
    for kind in 0..3 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(listener.local_addr().unwrap());
        let ctx = Arc::clone(&ctx);
        accept.push(tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                let ctx = Arc::clone(&ctx);
                match kind {
                    0 => tokio::spawn(hermes_svc_store::pop3::serve(stream, peer, false, ctx)),
                    1 => tokio::spawn(hermes_svc_store::pop3::serve(stream, peer, true, ctx)),
                    _ => tokio::spawn(hermes_svc_store::imap::serve(stream, peer, false, ctx)),
                };
            }
        }));
    }
    Server { pop3: addrs[0], pop3s: addrs[1], imap: addrs[2], ctx, data: data.clone(), accept, _shutdown: shutdown_tx }
}

impl Server {
    /// Delivers `raw` to `who`'s INBOX as LMTP does; returns the UID.
    fn deliver(&self, who: &str, raw: &[u8]) -> u32 {
        let user = self.ctx.directory.lookup(who).unwrap().unwrap().user_id;
        let target = DeliveryTarget { user, mailbox: "INBOX".into(), flags: vec![] };
        let mut r = self.ctx.store.deliver(raw, None, &[target]);
        r.remove(0).unwrap().uid
    }

    /// UIDs in `who`'s INBOX, straight from the store.
    fn inbox_uids(&self, who: &str) -> Vec<u32> {
        let user = self.ctx.directory.lookup(who).unwrap().unwrap().user_id;
        let u = self.ctx.store.user(&user).unwrap();
        let id = u.mailbox("INBOX").unwrap().id;
        u.view(id).unwrap().messages.iter().map(|m| m.uid).collect()
    }

    /// Stops accepting, waits for every session to end and releases the store lock.
    async fn stop(self) {
        for a in &self.accept {
            a.abort();
        }
        for a in self.accept {
            let _ = a.await;
        }
        let ctx = self.ctx;
        for _ in 0..500 {
            if Arc::strong_count(&ctx) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(Arc::strong_count(&ctx), 1, "sessions still running");
        drop(ctx);
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A raw POP3 client: lines in, lines out.
struct Client {
    io: BufReader<Box<dyn Io>>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> (Client, String) {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut c = Client { io: BufReader::new(Box::new(tcp)) };
        let greeting = c.line().await;
        (c, greeting)
    }

    async fn connect_tls(server: &Server) -> (Client, String) {
        let tcp = TcpStream::connect(server.pop3s).await.unwrap();
        let tls = tls_connect(server, tcp).await;
        let mut c = Client { io: BufReader::new(Box::new(tls)) };
        let greeting = c.line().await;
        (c, greeting)
    }

    async fn login(server: &Server, who: &str) -> Client {
        let (mut c, _) = Client::connect(server.pop3).await;
        assert!(c.cmd(&format!("USER {who}")).await.starts_with("+OK"));
        let r = c.cmd(&format!("PASS {PASSWORD}")).await;
        assert!(r.starts_with("+OK"), "{r}");
        c
    }

    /// One line without CRLF.
    async fn line(&mut self) -> String {
        let mut buf = Vec::new();
        let n = tokio::time::timeout(TIMEOUT, self.io.read_until(b'\n', &mut buf)).await.expect("answer in time").unwrap();
        assert!(n > 0, "connection closed");
        assert!(buf.ends_with(b"\r\n"), "line not CRLF-terminated: {buf:?}");
        buf.truncate(buf.len() - 2);
        String::from_utf8(buf).unwrap()
    }

    async fn eof(&mut self) -> bool {
        let mut buf = Vec::new();
        matches!(tokio::time::timeout(TIMEOUT, self.io.read_until(b'\n', &mut buf)).await, Ok(Ok(0)) | Ok(Err(_)))
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.io.get_mut().write_all(bytes).await.unwrap();
        self.io.get_mut().flush().await.unwrap();
    }

    async fn cmd(&mut self, command: &str) -> String {
        self.send(format!("{command}\r\n").as_bytes()).await;
        self.line().await
    }

    /// The body of a multi-line response, un-stuffed, CRLFs kept, terminator removed.
    async fn multiline(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let mut buf = Vec::new();
            tokio::time::timeout(TIMEOUT, self.io.read_until(b'\n', &mut buf)).await.unwrap().unwrap();
            assert!(buf.ends_with(b"\r\n"), "multi-line response line not CRLF-terminated: {buf:?}");
            if buf == b".\r\n" {
                return body;
            }
            let line = if buf.starts_with(b".") {
                assert!(buf.starts_with(b".."), "unstuffed dot line: {buf:?}");
                &buf[1..]
            } else {
                &buf[..]
            };
            body.extend_from_slice(line);
        }
    }

    /// Sends a multi-line command; returns (first line, body).
    async fn multi(&mut self, command: &str) -> (String, Vec<u8>) {
        let first = self.cmd(command).await;
        assert!(first.starts_with("+OK"), "{command} -> {first}");
        let body = self.multiline().await;
        (first, body)
    }

    async fn multi_lines(&mut self, command: &str) -> Vec<String> {
        let (_, body) = self.multi(command).await;
        String::from_utf8(body).unwrap().lines().map(String::from).collect()
    }
}

async fn tls_connect(server: &Server, tcp: TcpStream) -> tokio_rustls::client::TlsStream<TcpStream> {
    let pem = std::fs::read(server.data.tls_cert()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

/// Runs a golden transcript: `C: ` lines are sent (CRLF appended); `S: ` lines must be the next
/// lines, where `<ANY>` matches any run of characters.
async fn transcript(client: &mut Client, script: &str) {
    let mut expected: Vec<String> = Vec::new();
    async fn check(client: &mut Client, expected: &mut Vec<String>) {
        for want in expected.drain(..) {
            let got = client.line().await;
            assert!(glob(&want, &got), "transcript mismatch\n  want: {want}\n  got:  {got}");
        }
    }
    for line in script.lines().map(str::trim_start) {
        if let Some(c) = line.strip_prefix("C: ") {
            check(client, &mut expected).await;
            client.send(format!("{c}\r\n").as_bytes()).await;
        } else if let Some(s) = line.strip_prefix("S: ") {
            expected.push(s.to_string());
        } else if line == "S:" {
            expected.push(String::new());
        } else {
            assert!(line.is_empty() || line.starts_with('#'), "bad transcript line: {line}");
        }
    }
    check(client, &mut expected).await;
}

fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once("<ANY>") {
        None => pattern == text,
        Some((head, tail)) => {
            text.starts_with(head)
                && (head.len()..=text.len()).any(|i| text.is_char_boundary(i) && glob(tail, &text[i..]))
        }
    }
}

fn message(subject: &str, body: &str) -> Vec<u8> {
    format!("From: Carol <carol@example.net>\r\nTo: alice@example.org\r\nSubject: {subject}\r\n\r\n{body}").into_bytes()
}

// ------------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn rfc1939_session_transcript() {
    let (_tmp, data) = new_data();
    let s = start(&data, Options::default()).await;
    let u1 = s.deliver(ALICE, &message("one", "first\r\n"));
    let u2 = s.deliver(ALICE, &message("two", "second\r\n.dot line\r\n"));
    let size1 = message("one", "first\r\n").len();
    let size2 = message("two", "second\r\n.dot line\r\n").len();
    let (mut c, greeting) = Client::connect(s.pop3).await;
    assert_eq!(greeting, "+OK Hermes POP3 ready");
    let uidvalidity = {
        let user = s.ctx.directory.lookup(ALICE).unwrap().unwrap().user_id;
        s.ctx.store.user(&user).unwrap().mailbox("INBOX").unwrap().uidvalidity
    };
    transcript(
        &mut c,
        &format!(
            "C: CAPA
             S: +OK Capability list follows
             S: TOP
             S: UIDL
             S: RESP-CODES
             S: AUTH-RESP-CODE
             S: PIPELINING
             S: EXPIRE NEVER
             S: USER
             S: SASL PLAIN
             S: UTF8 USER
             S: STLS
             S: IMPLEMENTATION Hermes
             S: .
             C: STAT
             S: -ERR Command not allowed before login
             C: PASS {PASSWORD}
             S: -ERR No user name given: send USER first
             C: USER {ALICE}
             S: +OK
             C: PASS {PASSWORD}
             S: +OK Logged in: 2 messages ({total} octets)
             C: STAT
             S: +OK 2 {total}
             C: LIST
             S: +OK 2 messages ({total} octets)
             S: 1 {size1}
             S: 2 {size2}
             S: .
             C: LIST 2
             S: +OK 2 {size2}
             C: LIST 3
             S: -ERR There is no message 3
             C: UIDL
             S: +OK Unique-ID listing follows
             S: 1 {uidvalidity}.{u1}
             S: 2 {uidvalidity}.{u2}
             S: .
             C: UIDL 1
             S: +OK 1 {uidvalidity}.{u1}
             C: TOP 2 1
             S: +OK Top of message follows
             S: From: Carol <carol@example.net>
             S: To: alice@example.org
             S: Subject: two
             S:
             S: second
             S: .
             C: RETR 2
             S: +OK {size2} octets
             S: From: Carol <carol@example.net>
             S: To: alice@example.org
             S: Subject: two
             S:
             S: second
             S: ..dot line
             S: .
             C: DELE 1
             S: +OK Message 1 marked for deletion
             C: DELE 1
             S: -ERR Message 1 is already deleted
             C: RETR 1
             S: -ERR Message 1 is already deleted
             C: STAT
             S: +OK 1 {size2}
             C: CAPA
             S: +OK Capability list follows
             S: TOP
             S: UIDL
             S: RESP-CODES
             S: AUTH-RESP-CODE
             S: PIPELINING
             S: EXPIRE NEVER
             S: IMPLEMENTATION Hermes
             S: .
             C: USER {BOB}
             S: -ERR Already logged in
             C: NOOP
             S: +OK
             C: RSET
             S: +OK Maildrop has 2 messages ({total} octets)
             C: QUIT
             S: +OK Logging out",
            total = size1 + size2
        ),
    )
    .await;
    assert!(c.eof().await);
    assert_eq!(s.inbox_uids(ALICE), vec![u1, u2], "RSET then QUIT deletes nothing");
}

#[tokio::test]
async fn retr_sends_stored_bytes_with_crlf_and_stuffing() {
    let (_tmp, data) = new_data();
    let s = start(&data, Options::default()).await;
    let crlf = b"Subject: a\r\n\r\n.\r\n..\r\n.x\r\nend without newline".to_vec();
    let bare_lf = b"Subject: b\n\nline one\n.starts with dot\n".to_vec();
    let binary: Vec<u8> = (0u8..=255).filter(|&b| b != b'\r' && b != b'\n').chain(*b"\r\n").collect();
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    while big.len() < 300_000 {
        big.extend_from_slice(b".a line that starts with a dot, to stuff across chunk boundaries\r\n");
    }
    for m in [&crlf, &bare_lf, &binary, &big] {
        s.deliver(ALICE, m);
    }
    let mut c = Client::login(&s, ALICE).await;
    let expect = |m: &[u8]| hermes_proto::pop3::fuzz::normalize(m);
    for (n, m) in [&crlf, &bare_lf, &binary, &big].into_iter().enumerate() {
        let (first, body) = c.multi(&format!("RETR {}", n + 1)).await;
        assert_eq!(first, format!("+OK {} octets", m.len()), "size is the stored size");
        assert_eq!(body, expect(m), "message {}", n + 1);
    }
    let (_, top) = c.multi("TOP 2 0").await;
    assert_eq!(top, b"Subject: b\r\n\r\n");
    let (_, top) = c.multi("TOP 4 2").await;
    assert_eq!(top.len(), b"Subject: big\r\n\r\n".len() + 2 * 66);
    assert_eq!(c.cmd("QUIT").await, "+OK Logging out");
}

#[tokio::test]
async fn dele_quit_expunges_only_marked_messages_and_imap_no_longer_sees_them() {
    let (_tmp, data) = new_data();
    let s = start(&data, Options::default()).await;
    let uids: Vec<u32> = (0..4).map(|i| s.deliver(ALICE, &message(&format!("m{i}"), "x\r\n"))).collect();
    let mut c = Client::login(&s, ALICE).await;
    assert!(c.cmd("DELE 1").await.starts_with("+OK"));
    assert!(c.cmd("DELE 3").await.starts_with("+OK"));
    assert_eq!(c.cmd("QUIT").await, "+OK Logging out, 2 messages deleted");
    assert!(c.eof().await);
    assert_eq!(s.inbox_uids(ALICE), vec![uids[1], uids[3]]);

    // An IMAP session sees exactly the two survivors, none flagged \Deleted.
    let (mut imap, _) = Client::connect(s.imap).await;
    imap.send(format!("a LOGIN {ALICE} \"{PASSWORD}\"\r\nb SELECT INBOX\r\nc UID SEARCH ALL\r\nd UID SEARCH DELETED\r\n").as_bytes()).await;
    let mut searches = Vec::new();
    loop {
        let l = imap.line().await;
        if l.starts_with("* SEARCH") || l.starts_with("* ESEARCH") {
            searches.push(l.clone());
        }
        if l.starts_with("d ") {
            break;
        }
    }
    assert_eq!(searches[0].trim_end(), format!("* SEARCH {} {}", uids[1], uids[3]));
    assert_eq!(searches[1].trim_end(), "* SEARCH");
}

#[tokio::test]
async fn rset_and_dropped_connections_delete_nothing() {
    let (_tmp, data) = new_data();
    let s = start(&data, Options::default()).await;
    let uids: Vec<u32> = (0..2).map(|i| s.deliver(ALICE, &message(&format!("m{i}"), "x\r\n"))).collect();
    // DELE then the connection drops: nothing deleted.
    let mut c = Client::login(&s, ALICE).await;
    assert!(c.cmd("DELE 1").await.starts_with("+OK"));
    assert!(c.cmd("DELE 2").await.starts_with("+OK"));
    drop(c);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(s.inbox_uids(ALICE), uids);
    // DELE, RSET, QUIT: nothing deleted.
    let mut c = Client::login(&s, ALICE).await;
    assert!(c.cmd("DELE 2").await.starts_with("+OK"));
    assert_eq!(c.cmd("RSET").await, format!("+OK Maildrop has 2 messages ({} octets)", 2 * message("m0", "x\r\n").len()));
    assert_eq!(c.cmd("QUIT").await, "+OK Logging out");
    assert_eq!(s.inbox_uids(ALICE), uids);
    // QUIT before login: nothing to do.
    let (mut c, _) = Client::connect(s.pop3).await;
    assert_eq!(c.cmd("QUIT").await, "+OK Logging out");
    assert!(c.eof().await);
}

#[tokio::test]
async fn message_expunged_by_imap_during_the_session() {
    let (_tmp, data) = new_data();
    let s = start(&data, Options::default()).await;
    let uids: Vec<u32> = (0..3).map(|i| s.deliver(ALICE, &message(&format!("m{i}"), "x\r\n"))).collect();
    let mut pop = Client::login(&s, ALICE).await;
    // IMAP expunges message 1 and flags message 3 \Deleted without expunging it.
    let (mut imap, _) = Client::connect(s.imap).await;
    imap.send(
        format!(
            "a LOGIN {ALICE} \"{PASSWORD}\"\r\nb SELECT INBOX\r\nc UID STORE {} +FLAGS (\\Deleted)\r\nd UID EXPUNGE {}\r\ne UID STORE {} +FLAGS (\\Deleted)\r\n",
            uids[0], uids[0], uids[2]
        )
        .as_bytes(),
    )
    .await;
    loop {
        if imap.line().await.starts_with("e OK") {
            break;
        }
    }
    // A message delivered now appears only at the next login.
    let late = s.deliver(ALICE, &message("late", "x\r\n"));
    // The POP session's numbering is unchanged; the gone message answers -ERR.
    assert_eq!(pop.cmd("STAT").await, format!("+OK 3 {}", 3 * message("m0", "x\r\n").len()));
    assert_eq!(pop.cmd("RETR 1").await, "-ERR No such message: message 1 was removed by another session");
    assert_eq!(pop.cmd("TOP 1 0").await, "-ERR No such message: message 1 was removed by another session");
    let (_, body) = pop.multi("RETR 2").await;
    assert!(body.starts_with(b"From: Carol"));
    // DELE of the gone message and of message 2, then QUIT: only message 2 is expunged;
    // message 3 stays (flagged \Deleted by IMAP, but not marked by this POP session).
    assert!(pop.cmd("DELE 1").await.starts_with("+OK"));
    assert!(pop.cmd("DELE 2").await.starts_with("+OK"));
    assert!(pop.cmd("QUIT").await.starts_with("+OK"));
    assert_eq!(s.inbox_uids(ALICE), vec![uids[2], late]);
    let mut pop = Client::login(&s, ALICE).await;
    assert_eq!(pop.cmd("STAT").await, format!("+OK 2 {}", message("m0", "x\r\n").len() + message("late", "x\r\n").len()));
}

#[tokio::test]
async fn plaintext_login_needs_tls_unless_loopback_is_allowed() {
    let (_tmp, data) = new_data();
    let s = start(&data, Options { plaintext_auth_on_loopback: false, ..Options::default() }).await;
    s.deliver(ALICE, &message("m", "x\r\n"));
    let (mut c, _) = Client::connect(s.pop3).await;
    let caps = c.multi_lines("CAPA").await;
    assert!(caps.contains(&"STLS".to_string()) && !caps.contains(&"USER".to_string()), "{caps:?}");
    assert!(!caps.iter().any(|c| c.starts_with("SASL")), "{caps:?}");
    let refused = "-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections";
    assert_eq!(c.cmd(&format!("USER {ALICE}")).await, refused);
    let plain = base64::engine::general_purpose::STANDARD.encode(format!("\0{ALICE}\0{PASSWORD}"));
    assert_eq!(c.cmd(&format!("AUTH PLAIN {plain}")).await, refused);
    assert_eq!(c.cmd("APOP alice c4c9334bac560ecc979e58001b3e22fb").await, "-ERR APOP is not supported: use USER/PASS or AUTH PLAIN over TLS");

    drop(c);
    // STLS; a command pipelined behind it in clear text is discarded, not executed.
    let tcp = TcpStream::connect(s.pop3).await.unwrap();
    let mut raw = BufReader::new(tcp);
    let mut line = String::new();
    raw.read_line(&mut line).await.unwrap();
    raw.get_mut().write_all(b"STLS\r\nUSER injected\r\n").await.unwrap();
    line.clear();
    raw.read_line(&mut line).await.unwrap();
    assert_eq!(line, "+OK Begin TLS negotiation now\r\n");
    let tls = tls_connect(&s, raw.into_inner()).await;
    let mut c = Client { io: BufReader::new(Box::new(tls)) };
    // Had "USER injected" run, PASS would be tried for it; instead no user is pending.
    assert_eq!(c.cmd(&format!("PASS {PASSWORD}")).await, "-ERR No user name given: send USER first");
    let caps = c.multi_lines("CAPA").await;
    assert!(caps.contains(&"USER".to_string()) && caps.contains(&"SASL PLAIN".to_string()), "{caps:?}");
    assert!(!caps.contains(&"STLS".to_string()));
    assert_eq!(c.cmd("STLS").await, "-ERR TLS is already active");
    assert!(c.cmd(&format!("USER {ALICE}")).await.starts_with("+OK"));
    assert!(c.cmd(&format!("PASS {PASSWORD}")).await.starts_with("+OK Logged in: 1 messages"));
    assert_eq!(c.cmd("QUIT").await, "+OK Logging out");
}

#[tokio::test]
async fn pop3s_and_auth_plain() {
    let (_tmp, data) = new_data();
    let s = start(&data, Options { plaintext_auth_on_loopback: false, ..Options::default() }).await;
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    // Initial response.
    let (mut c, greeting) = Client::connect_tls(&s).await;
    assert_eq!(greeting, "+OK Hermes POP3 ready");
    let caps = c.multi_lines("CAPA").await;
    assert!(!caps.contains(&"STLS".to_string()) && caps.contains(&"SASL PLAIN".to_string()));
    assert_eq!(c.multi_lines("AUTH").await, vec!["PLAIN"]);
    assert_eq!(c.cmd("AUTH CRAM-MD5").await, "-ERR Unsupported authentication mechanism");
    assert!(c.cmd(&format!("AUTH PLAIN {}", b64(format!("\0{ALICE}\0{PASSWORD}")))).await.starts_with("+OK Logged in"));
    assert_eq!(c.cmd("QUIT").await, "+OK Logging out");
    // Continuation, with an authorization identity equal to the login.
    let (mut c, _) = Client::connect_tls(&s).await;
    assert_eq!(c.cmd("AUTH PLAIN").await, "+ ");
    assert!(c.cmd(&b64(format!("{ALICE}\0{ALICE}\0{PASSWORD}"))).await.starts_with("+OK Logged in"));
    assert_eq!(c.cmd("QUIT").await, "+OK Logging out");
    // Cancel, garbage, wrong password, proxy authorization.
    let (mut c, _) = Client::connect_tls(&s).await;
    assert_eq!(c.cmd("AUTH PLAIN").await, "+ ");
    assert_eq!(c.cmd("*").await, "-ERR Authentication cancelled");
    assert_eq!(c.cmd("AUTH PLAIN").await, "+ ");
    assert_eq!(c.cmd("%%%").await, "-ERR Invalid base64 data");
    assert_eq!(c.cmd(&format!("AUTH PLAIN {}", b64("nonul".into()))).await, "-ERR Malformed PLAIN response");
    assert_eq!(c.cmd(&format!("AUTH PLAIN {}", b64(format!("\0{ALICE}\0wrong")))).await, "-ERR [AUTH] Authentication failed");
    assert_eq!(c.cmd(&format!("AUTH PLAIN {}", b64(format!("{BOB}\0{ALICE}\0{PASSWORD}")))).await, "-ERR [AUTH] Authentication failed");
    // A long SASL response (a 2 KB password) fits the SASL line limit, not the command limit.
    assert_eq!(c.cmd("AUTH PLAIN").await, "+ ");
    assert_eq!(c.cmd(&b64(format!("\0{ALICE}\0{}", "p".repeat(2000)))).await, "-ERR [AUTH] Authentication failed");
    // Third failure: the connection closes.
    assert!(c.eof().await);
}

#[tokio::test]
async fn failed_logins_are_delayed_and_limited() {
    let (_tmp, data) = new_data();
    let s = start(&data, Options { auth_fail_delay_ms: 200, ..Options::default() }).await;
    let (mut c, _) = Client::connect(s.pop3).await;
    let started = std::time::Instant::now();
    assert!(c.cmd("USER nobody@example.org").await.starts_with("+OK"));
    assert_eq!(c.cmd("PASS whatever").await, "-ERR [AUTH] Authentication failed");
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert!(c.cmd(&format!("USER {ALICE}")).await.starts_with("+OK"));
    assert_eq!(c.cmd("PASS wrong password").await, "-ERR [AUTH] Authentication failed");
    assert!(c.cmd(&format!("USER {ALICE}")).await.starts_with("+OK"));
    assert_eq!(c.cmd("PASS ").await, "-ERR [AUTH] Authentication failed");
    assert!(c.eof().await, "third failure closes the connection");
    // A correct password (with spaces) from the same address still works afterwards.
    let c = Client::login(&s, ALICE).await;
    drop(c);
}

#[tokio::test]
async fn pipelined_commands_are_answered_in_order() {
    let (_tmp, data) = new_data();
    let s = start(&data, Options::default()).await;
    for i in 0..3 {
        s.deliver(ALICE, &message(&format!("p{i}"), ".\r\n"));
    }
    let (mut c, _) = Client::connect(s.pop3).await;
    c.send(format!("USER {ALICE}\r\nPASS {PASSWORD}\r\nSTAT\r\nRETR 1\r\nDELE 2\r\nLIST\r\nUIDL 3\r\nNOOP\r\nRSET\r\nQUIT\r\n").as_bytes())
        .await;
    assert_eq!(c.line().await, "+OK");
    assert!(c.line().await.starts_with("+OK Logged in: 3 messages"));
    assert!(c.line().await.starts_with("+OK 3 "));
    assert!(c.line().await.ends_with(" octets"));
    assert_eq!(c.multiline().await, message("p0", ".\r\n"));
    assert_eq!(c.line().await, "+OK Message 2 marked for deletion");
    assert!(c.line().await.starts_with("+OK 2 messages"));
    let listing = c.multiline().await;
    assert!(listing.starts_with(b"1 ") && String::from_utf8_lossy(&listing).contains("\r\n3 "));
    assert!(c.line().await.starts_with("+OK 3 "));
    assert_eq!(c.line().await, "+OK");
    assert!(c.line().await.starts_with("+OK Maildrop has 3 messages"));
    assert_eq!(c.line().await, "+OK Logging out");
    assert!(c.eof().await);
    assert_eq!(s.inbox_uids(ALICE).len(), 3);
}

#[tokio::test]
async fn bad_input_is_bounded_and_answered() {
    let (_tmp, data) = new_data();
    let s = start(&data, Options::default()).await;
    let (mut c, _) = Client::connect(s.pop3).await;
    // 1 MiB without a line end, then the end: one -ERR, and the session goes on.
    let junk = vec![b'A'; 1 << 20];
    c.send(&junk).await;
    c.send(b"\r\nNOOP\r\n").await;
    assert_eq!(c.line().await, "-ERR Line too long");
    assert_eq!(c.line().await, "-ERR Command not allowed before login");
    assert_eq!(c.cmd("HELO there").await, "-ERR Unknown command");
    assert_eq!(c.cmd("RETR").await, "-ERR RETR needs one argument: a message number");
    assert_eq!(c.cmd("\u{7f}\u{1}").await, "-ERR Unknown command");
    // 512 octets with CRLF is accepted; 513 is not.
    let ok_line = format!("USER {}", "u".repeat(505));
    assert_eq!(ok_line.len() + 2, 512);
    assert_eq!(c.cmd(&ok_line).await, "-ERR Argument too long");
    assert_eq!(c.cmd(&format!("{ok_line}u")).await, "-ERR Line too long");
    // Twenty consecutive errors close the connection.
    let mut closed = false;
    for _ in 0..20 {
        c.send(b"BOGUS\r\n").await;
        let l = c.line().await;
        if l == "-ERR Too many bad commands, closing connection" {
            closed = true;
            break;
        }
        assert_eq!(l, "-ERR Unknown command");
    }
    assert!(closed && c.eof().await);
}

#[tokio::test]
async fn uidls_are_stable_across_a_restart() {
    let (_tmp, data) = new_data();
    let s = start(&data, Options::default()).await;
    for i in 0..3 {
        s.deliver(ALICE, &message(&format!("r{i}"), "x\r\n"));
    }
    let mut c = Client::login(&s, ALICE).await;
    let before = c.multi_lines("UIDL").await;
    assert!(c.cmd("DELE 2").await.starts_with("+OK"));
    assert!(c.cmd("QUIT").await.starts_with("+OK"));
    assert!(c.eof().await);
    s.stop().await;

    let s = start(&data, Options::default()).await;
    let mut c = Client::login(&s, ALICE).await;
    let after = c.multi_lines("UIDL").await;
    let id = |l: &String| l.split_once(' ').unwrap().1.to_string();
    assert_eq!(after.iter().map(id).collect::<Vec<_>>(), vec![id(&before[0]), id(&before[2])]);
    assert_eq!(after[1], format!("2 {}", id(&before[2])), "renumbered, same unique-id");
    assert!(c.cmd("QUIT").await.starts_with("+OK"));
}

#[tokio::test]
async fn users_see_only_their_own_maildrop() {
    let (_tmp, data) = new_data();
    let s = start(&data, Options::default()).await;
    s.deliver(ALICE, &message("for alice", "x\r\n"));
    let mut c = Client::login(&s, BOB).await;
    assert_eq!(c.cmd("STAT").await, "+OK 0 0");
    assert_eq!(c.multi_lines("LIST").await, Vec::<String>::new());
    assert_eq!(c.cmd("RETR 1").await, "-ERR There is no message 1");
    assert_eq!(c.cmd("QUIT").await, "+OK Logging out");
    let _ = c.io.read_u8().await;
}
