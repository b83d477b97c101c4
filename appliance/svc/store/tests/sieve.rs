//! Sieve end to end inside one process: scripts uploaded over ManageSieve (STARTTLS, SASL
//! PLAIN, the script commands and their response codes), then LMTP deliveries filtered by
//! them — fileinto, imap4flags, discard, vacation replies caught by an SMTP sink (sent from
//! `<>`, `:days` respected, list mail not answered), and a broken script delivering to INBOX
//! with the error readable over ManageSieve.
#![allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]

use base64::Engine as _;
use hermes_core::config::Config;
use hermes_core::directory::Directory;
use hermes_core::paths::DataDir;
use hermes_core::secret::Secret;
use hermes_store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

const USERS: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];

struct Server {
    _dir: tempfile::TempDir,
    data: DataDir,
    lmtp: String,
    managesieve: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// One message the sink received: (MAIL FROM, RCPT TO, data).
type Caught = (String, String, String);

/// A minimal SMTP server that accepts everything and reports each message.
async fn smtp_sink() -> (String, mpsc::UnboundedReceiver<Caught>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else { return };
            let tx = tx.clone();
            tokio::spawn(async move {
                let (r, mut w) = s.into_split();
                let mut r = BufReader::new(r);
                w.write_all(b"220 sink ESMTP\r\n").await.unwrap();
                let (mut from, mut to) = (String::new(), String::new());
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let upper = line.to_ascii_uppercase();
                    if upper.starts_with("EHLO") {
                        w.write_all(b"250-sink\r\n250 8BITMIME\r\n").await.unwrap();
                    } else if upper.starts_with("MAIL FROM:") {
                        from = line[10..].trim().to_string();
                        w.write_all(b"250 ok\r\n").await.unwrap();
                    } else if upper.starts_with("RCPT TO:") {
                        to = line[8..].trim().to_string();
                        w.write_all(b"250 ok\r\n").await.unwrap();
                    } else if upper.starts_with("DATA") {
                        w.write_all(b"354 go\r\n").await.unwrap();
                        let mut data = String::new();
                        loop {
                            let mut l = String::new();
                            r.read_line(&mut l).await.unwrap();
                            if l == ".\r\n" {
                                break;
                            }
                            data.push_str(&l);
                        }
                        tx.send((from.clone(), to.clone(), data)).unwrap();
                        w.write_all(b"250 queued\r\n").await.unwrap();
                    } else if upper.starts_with("QUIT") {
                        w.write_all(b"221 bye\r\n").await.unwrap();
                        return;
                    } else {
                        w.write_all(b"250 ok\r\n").await.unwrap();
                    }
                }
            });
        }
    });
    (addr, rx)
}

impl Server {
    async fn start(relay: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        let directory = Directory::open(&data).unwrap();
        directory.add_domain("example.org").unwrap();
        for user in USERS {
            directory.add_account(&format!("{user}@example.org"), &Secret::new("pw".to_string()), None).unwrap();
        }
        hermes_runtime::tls::ensure_self_signed(&data, "localhost").unwrap();
        let text = format!(
            "[server]\nhostname = \"mx.example.org\"\nlisten = \"127.0.0.1\"\n\
             [imap]\nport = 0\ntls_port = 0\n[pop3]\nport = 0\ntls_port = 0\n[lmtp]\nport = 0\n\
             [managesieve]\nport = 0\n[sieve]\nrelay = \"{relay}\"\n"
        );
        let config = Config::from_toml(&text).unwrap();
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
        Server {
            _dir: dir,
            data,
            lmtp: endpoints.tcp["lmtp"].clone(),
            managesieve: endpoints.tcp["managesieve"].clone(),
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

    /// (mailbox, subject, flags) of every message of `who` (opens the store: after `stop`).
    fn messages(&self, who: &str) -> Vec<(String, String, Vec<String>)> {
        let account = Directory::open(&self.data).unwrap().lookup(who).unwrap().unwrap();
        let config = Config::from_toml(&std::fs::read_to_string(self.data.config_file()).unwrap()).unwrap();
        let store = Store::open(&self.data.store_dir(), hermes_svc_store::run::store_config(&config)).unwrap();
        let us = store.user(&account.user_id).unwrap();
        let mut out = Vec::new();
        for mb in us.list_mailboxes() {
            let view = us.view(mb.id).unwrap();
            for m in view.messages.iter() {
                let raw = String::from_utf8(us.read_message(mb.id, m.uid).unwrap().to_vec()).unwrap();
                let subject = raw.lines().find_map(|l| l.strip_prefix("Subject: ")).unwrap_or("").to_string();
                out.push((mb.name.clone(), subject, m.flags.clone()));
            }
        }
        out
    }
}

/// A ManageSieve client over any stream: reads until the final OK/NO/BYE.
struct Client<S> {
    io: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    async fn send(&mut self, bytes: &[u8]) {
        self.io.get_mut().write_all(bytes).await.unwrap();
    }

    /// Lines up to and including the final response (literal contents inlined as lines).
    async fn response(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut l = String::new();
            let n = tokio::time::timeout(Duration::from_secs(10), self.io.read_line(&mut l)).await.unwrap().unwrap();
            assert!(n > 0, "connection closed after {lines:?}");
            let l = l.trim_end().to_string();
            if let Some(len) =
                l.strip_prefix('{').and_then(|x| x.strip_suffix('}')).and_then(|x| x.parse::<usize>().ok())
            {
                let mut buf = vec![0u8; len];
                self.io.read_exact(&mut buf).await.unwrap();
                lines.push(String::from_utf8(buf).unwrap());
                continue;
            }
            let done = l.starts_with("OK") || l.starts_with("NO") || l.starts_with("BYE");
            lines.push(l);
            if done {
                return lines;
            }
        }
    }

    async fn cmd(&mut self, command: &str) -> Vec<String> {
        self.send(format!("{command}\r\n").as_bytes()).await;
        self.response().await
    }

    async fn put(&mut self, name: &str, script: &str) -> Vec<String> {
        self.send(format!("PUTSCRIPT \"{name}\" {{{}+}}\r\n{script}\r\n", script.len()).as_bytes()).await;
        self.response().await
    }
}

fn last(lines: &[String]) -> &str {
    lines.last().map(String::as_str).unwrap_or("")
}

async fn tls_client(data: &DataDir, tcp: TcpStream) -> tokio_rustls::client::TlsStream<TcpStream> {
    let pem = std::fs::read(data.tls_cert()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap()
}

/// Logs `who` in over STARTTLS and returns the TLS client.
async fn login(server: &Server, who: &str) -> Client<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(&server.managesieve).await.unwrap();
    let mut plain = Client { io: BufReader::new(tcp) };
    let greeting = plain.response().await;
    assert!(greeting.iter().any(|l| l == "\"STARTTLS\""), "{greeting:?}");
    assert!(greeting.iter().any(|l| l == "\"SASL\" \"\""), "no PLAIN before TLS: {greeting:?}");
    let r = plain.cmd("AUTHENTICATE \"PLAIN\" \"AGFsaWNlQGV4YW1wbGUub3JnAHB3\"").await;
    assert!(last(&r).starts_with("NO (ENCRYPT-NEEDED)"), "{r:?}");
    assert_eq!(last(&plain.cmd("STARTTLS").await), "OK \"Begin TLS negotiation now\"");
    let tls = tls_client(&server.data, plain.io.into_inner()).await;
    let mut c = Client { io: BufReader::new(tls) };
    let caps = c.response().await;
    assert!(caps.iter().any(|l| l == "\"SASL\" \"PLAIN\""), "{caps:?}");
    assert!(caps.iter().any(|l| l == "\"VERSION\" \"1.0\""), "{caps:?}");
    assert!(
        caps.iter().any(|l| l.starts_with("\"SIEVE\" \"fileinto ") && l.contains("vacation") && !l.contains("reject")),
        "{caps:?}"
    );
    assert!(!caps.iter().any(|l| l == "\"STARTTLS\""), "{caps:?}");
    let ir = base64::engine::general_purpose::STANDARD.encode(format!("\0{who}@example.org\0pw"));
    let r = c.cmd(&format!("AUTHENTICATE \"PLAIN\" \"{ir}\"")).await;
    assert!(last(&r).starts_with("OK"), "{r:?}");
    c
}

async fn lmtp(addr: &str, from: &str, rcpts: &[&str], body: &str) -> Vec<String> {
    let (r, mut w) = TcpStream::connect(addr).await.unwrap().into_split();
    let mut r = BufReader::new(r);
    let mut replies = Vec::new();
    let read = async |r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>| loop {
        let mut l = String::new();
        tokio::time::timeout(Duration::from_secs(30), r.read_line(&mut l)).await.unwrap().unwrap();
        if l.as_bytes().get(3) != Some(&b'-') {
            return l.trim_end().to_string();
        }
    };
    read(&mut r).await;
    w.write_all(b"LHLO test\r\n").await.unwrap();
    read(&mut r).await;
    w.write_all(format!("MAIL FROM:<{from}>\r\n").as_bytes()).await.unwrap();
    assert!(read(&mut r).await.starts_with("250"));
    for rc in rcpts {
        w.write_all(format!("RCPT TO:<{rc}>\r\n").as_bytes()).await.unwrap();
        assert!(read(&mut r).await.starts_with("250"));
    }
    w.write_all(b"DATA\r\n").await.unwrap();
    assert!(read(&mut r).await.starts_with("354"));
    w.write_all(body.replace('\n', "\r\n").as_bytes()).await.unwrap();
    w.write_all(b".\r\n").await.unwrap();
    for _ in rcpts {
        replies.push(read(&mut r).await);
    }
    w.write_all(b"QUIT\r\n").await.unwrap();
    replies
}

fn msg(from: &str, to: &str, subject: &str, extra: &str) -> String {
    format!("From: {from}\nTo: {to}\nSubject: {subject}\nMessage-ID: <{subject}@example.net>\n{extra}\nHello there.\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managesieve_commands_over_starttls() {
    let (relay, _sink) = smtp_sink().await;
    let mut server = Server::start(&relay).await;
    let mut c = login(&server, "alice").await;
    let r = c.put("bad", "require \"fileinto\";\n\nfileinto ;\n").await;
    assert!(last(&r).starts_with("NO") && last(&r).contains("line 3"), "{r:?}");
    let r = c.put("rej", "require \"reject\";\nreject \"no\";\n").await;
    assert!(last(&r).starts_with("NO") && last(&r).contains("reject"), "{r:?}");
    assert!(last(&c.put("main", "require \"fileinto\";\nfileinto \"Work\";\n").await).starts_with("OK"));
    assert!(last(&c.cmd("CHECKSCRIPT {5+}\r\nkeep;").await).starts_with("OK"));
    assert!(last(&c.cmd("CHECKSCRIPT \"if true {\"").await).starts_with("NO"));
    assert!(last(&c.cmd("HAVESPACE \"x\" 100").await).starts_with("OK"));
    assert!(last(&c.cmd("HAVESPACE \"x\" 10000000").await).starts_with("NO (QUOTA/MAXSIZE)"));
    assert!(last(&c.cmd("SETACTIVE \"nope\"").await).starts_with("NO (NONEXISTENT)"));
    assert!(last(&c.cmd("SETACTIVE \"main\"").await).starts_with("OK"));
    let l = c.cmd("LISTSCRIPTS").await;
    assert_eq!(l, ["\"main\" ACTIVE", "OK \"Listscripts completed\""]);
    let g = c.cmd("GETSCRIPT \"main\"").await;
    assert_eq!(g[0], "require \"fileinto\";\nfileinto \"Work\";\n");
    assert!(last(&c.cmd("DELETESCRIPT \"main\"").await).starts_with("NO (ACTIVE)"));
    assert!(last(&c.put("other", "keep;").await).starts_with("OK"));
    assert!(last(&c.cmd("RENAMESCRIPT \"other\" \"main\"").await).starts_with("NO (ALREADYEXISTS)"));
    assert!(last(&c.cmd("RENAMESCRIPT \"main\" \"filters\"").await).starts_with("OK"));
    let l = c.cmd("LISTSCRIPTS").await;
    assert_eq!(l, ["\"filters\" ACTIVE", "\"other\"", "OK \"Listscripts completed\""]);
    assert!(last(&c.cmd("DELETESCRIPT \"other\"").await).starts_with("OK"));
    assert!(last(&c.cmd("NOOP \"t1\"").await).starts_with("OK (TAG \"t1\")"));
    assert!(last(&c.cmd("FROB").await).starts_with("NO"));
    assert!(last(&c.cmd("LOGOUT").await).starts_with("OK"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_runs_the_active_script() {
    let (relay, mut sink) = smtp_sink().await;
    let mut server = Server::start(&relay).await;
    let scripts = [
        (
            "alice",
            "require [\"fileinto\", \"imap4flags\", \"mailbox\"];\nif header :contains \"subject\" \"report\" { fileinto :create :flags \"\\\\Flagged\" \"Work\"; }\nif header :contains \"subject\" \"lunch\" { fileinto \"Missing\"; }\n",
        ),
        ("bob", "if header :contains \"subject\" \"spam\" { discard; }\n"),
        ("carol", "require \"vacation\";\nvacation :days 7 :subject \"Away until Monday\" \"I am away.\";\n"),
        ("dave", "require \"fileinto\";\nfileinto \"Work\";\n"),
        ("erin", "require \"imap4flags\";\naddflag \"\\\\Flagged\";\n"),
    ];
    for (who, script) in scripts {
        let mut c = login(&server, who).await;
        assert!(last(&c.put("s", script).await).starts_with("OK"), "{who}");
        assert!(last(&c.cmd("SETACTIVE \"s\"").await).starts_with("OK"), "{who}");
        c.cmd("LOGOUT").await;
    }
    // Break dave's script behind ManageSieve's back (as a disk edit or an upgrade could).
    let dave = Directory::open(&server.data).unwrap().lookup("dave@example.org").unwrap().unwrap();
    let dir = hermes_svc_store::sieve::scripts::ScriptStore::root_for(&server.data)
        .join(dave.user_id.as_str())
        .join("scripts");
    let file = std::fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
    std::fs::write(&file, "fileinto \"Work\" this is not sieve").unwrap();

    let ok = |r: Vec<String>| assert!(r.iter().all(|l| l.starts_with("250")), "{r:?}");
    ok(lmtp(
        &server.lmtp,
        "x@example.net",
        &["alice@example.org"],
        &msg("x@example.net", "alice@example.org", "TPS report", ""),
    )
    .await);
    ok(lmtp(
        &server.lmtp,
        "x@example.net",
        &["alice@example.org"],
        &msg("x@example.net", "alice@example.org", "lunch", ""),
    )
    .await);
    let r = lmtp(
        &server.lmtp,
        "x@example.net",
        &["bob@example.org", "erin@example.org"],
        &msg("x@example.net", "bob@example.org, erin@example.org", "spam offer", ""),
    )
    .await;
    assert!(r[0].starts_with("250") && r[0].contains("discarded"), "{r:?}");
    assert!(r[1].starts_with("250"), "{r:?}");
    ok(lmtp(
        &server.lmtp,
        "x@example.net",
        &["dave@example.org"],
        &msg("x@example.net", "dave@example.org", "to dave", ""),
    )
    .await);
    // Vacation: one reply, then silence within :days; never to lists or the null sender.
    ok(lmtp(
        &server.lmtp,
        "friend@example.net",
        &["carol@example.org"],
        &msg("Friend <friend@example.net>", "carol@example.org", "first", ""),
    )
    .await);
    ok(lmtp(
        &server.lmtp,
        "friend@example.net",
        &["carol@example.org"],
        &msg("Friend <friend@example.net>", "carol@example.org", "second", ""),
    )
    .await);
    ok(lmtp(
        &server.lmtp,
        "list-bounces@lists.example.net",
        &["carol@example.org"],
        &msg(
            "list@lists.example.net",
            "carol@example.org",
            "digest",
            "List-Id: <staff.lists.example.net>\nPrecedence: list\n",
        ),
    )
    .await);
    ok(lmtp(
        &server.lmtp,
        "news@example.net",
        &["carol@example.org"],
        &msg("news@example.net", "carol@example.org", "newsletter", "Precedence: bulk\n"),
    )
    .await);
    ok(lmtp(
        &server.lmtp,
        "",
        &["carol@example.org"],
        &msg("MAILER-DAEMON@example.net", "carol@example.org", "bounce", ""),
    )
    .await);

    let (from, to, data) = tokio::time::timeout(Duration::from_secs(10), sink.recv()).await.unwrap().unwrap();
    assert_eq!(from, "<>");
    assert_eq!(to, "<friend@example.net>");
    assert!(data.contains("Subject: Away until Monday\r\n"), "{data}");
    assert!(data.contains("Auto-Submitted: auto-replied\r\n"), "{data}");
    assert!(data.contains("In-Reply-To: <first@example.net>\r\n"), "{data}");
    assert!(data.contains("I am away."), "{data}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sink.try_recv().is_err(), "exactly one vacation reply");

    // The failure is readable over ManageSieve.
    let mut c = login(&server, "dave").await;
    let l = c.cmd("LISTSCRIPTS").await;
    assert!(last(&l).starts_with("OK (WARNINGS)") && last(&l).contains("does not compile"), "{l:?}");
    c.cmd("LOGOUT").await;
    server.stop().await;

    let alice = server.messages("alice@example.org");
    assert!(alice.contains(&("Work".into(), "TPS report".into(), vec!["\\Flagged".into()])), "{alice:?}");
    assert!(alice.contains(&("INBOX".into(), "lunch".into(), vec![])), "{alice:?}");
    assert!(server.messages("bob@example.org").is_empty(), "discarded");
    assert_eq!(
        server.messages("erin@example.org"),
        [("INBOX".to_string(), "spam offer".to_string(), vec!["\\Flagged".to_string()])]
    );
    assert_eq!(
        server.messages("dave@example.org"),
        [("INBOX".to_string(), "to dave".to_string(), vec![])],
        "broken script: INBOX"
    );
    assert_eq!(server.messages("carol@example.org").len(), 5, "vacation keeps every message");
}

/// One LMTP transaction with `MAIL FROM:<from> XDEDUP=token`; the replies after DATA.
async fn lmtp_dedup(addr: &str, token: &str, rcpt: &str, body: &str) -> Vec<String> {
    let (r, mut w) = TcpStream::connect(addr).await.unwrap().into_split();
    let mut r = BufReader::new(r);
    let read = async |r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>| loop {
        let mut l = String::new();
        tokio::time::timeout(Duration::from_secs(30), r.read_line(&mut l)).await.unwrap().unwrap();
        if l.as_bytes().get(3) != Some(&b'-') {
            return l.trim_end().to_string();
        }
    };
    read(&mut r).await;
    w.write_all(format!("LHLO test\r\nMAIL FROM:<friend@example.net> XDEDUP={token}\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n").as_bytes())
        .await
        .unwrap();
    for expect in ["250", "250", "250", "354"] {
        let l = read(&mut r).await;
        assert!(l.starts_with(expect), "{l}");
    }
    w.write_all(body.replace('\n', "\r\n").as_bytes()).await.unwrap();
    w.write_all(b".\r\n").await.unwrap();
    let reply = read(&mut r).await;
    w.write_all(b"QUIT\r\n").await.unwrap();
    vec![reply]
}

/// XDEDUP: a suppressed duplicate runs no Sieve action (a redirect is sent once per token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suppressed_duplicate_runs_no_sieve_action() {
    let (relay, mut sink) = smtp_sink().await;
    let mut server = Server::start(&relay).await;
    let mut c = login(&server, "bob").await;
    assert!(last(&c.put("s", "redirect \"elsewhere@remote.example\";\n").await).starts_with("OK"));
    assert!(last(&c.cmd("SETACTIVE \"s\"").await).starts_with("OK"));
    c.cmd("LOGOUT").await;
    let body = msg("friend@example.net", "bob@example.org", "forward-me", "");
    let r = lmtp_dedup(&server.lmtp, "tok-1", "bob@example.org", &body).await;
    assert!(r[0].starts_with("250 2.0.0") && !r[0].contains("duplicate"), "{r:?}");
    let (_, to, _) = tokio::time::timeout(Duration::from_secs(10), sink.recv()).await.unwrap().unwrap();
    assert_eq!(to, "<elsewhere@remote.example>");
    let r = lmtp_dedup(&server.lmtp, "tok-1", "bob@example.org", &body).await;
    assert_eq!(r, ["250 2.0.0 <bob@example.org> already delivered (duplicate suppressed)"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(sink.try_recv().is_err(), "the redirect ran again for a suppressed duplicate");
    // Another token is another delivery: redirected again.
    let r = lmtp_dedup(&server.lmtp, "tok-2", "bob@example.org", &body).await;
    assert!(!r[0].contains("duplicate"), "{r:?}");
    tokio::time::timeout(Duration::from_secs(10), sink.recv()).await.unwrap().unwrap();
    server.stop().await;
}
