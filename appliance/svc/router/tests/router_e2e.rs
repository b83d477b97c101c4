//! End-to-end tests of the router service in-process: real listeners on 127.0.0.1:0, a real
//! queue on disk, an LMTP sink on `run/lmtp.sock` (the sans-I/O LMTP codec standing in for the
//! store) and an SMTP sink standing in for a departmental server.
#![allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]

use hermes_core::config::Config;
use hermes_core::directory::Directory;
use hermes_core::paths::DataDir;
use hermes_core::secret::Secret;
use hermes_svc_router::client::{COMMAND_TIMEOUT, Client};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone)]
struct Got {
    from: String,
    rcpts: Vec<String>,
    body: Vec<u8>,
}

type Sink = Arc<Mutex<Vec<Got>>>;

struct Env {
    _tmp: tempfile::TempDir,
    data: DataDir,
    ports: std::collections::BTreeMap<String, String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    config: Config,
}

impl Env {
    fn addr(&self, name: &str) -> String {
        self.ports[name].clone()
    }
    async fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }
    async fn restart(&mut self) {
        self.stop().await;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let ep = self.data.service_endpoints_file("router");
        let _ = std::fs::remove_file(&ep);
        self.task =
            Some(tokio::spawn(hermes_svc_router::run_until(self.data.clone(), self.config.clone(), async move {
                let _ = rx.await;
            })));
        self.stop = Some(tx);
        self.ports = wait_endpoints(&self.data).await;
    }
}

async fn wait_endpoints(data: &DataDir) -> std::collections::BTreeMap<String, String> {
    let ep = data.service_endpoints_file("router");
    for _ in 0..200 {
        if let Ok(text) = std::fs::read_to_string(&ep) {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            return serde_json::from_value(v["tcp"].clone()).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("router did not start");
}

async fn start(extra_toml: &str) -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path());
    let dir = Directory::open(&data).unwrap();
    dir.add_domain("example.org").unwrap();
    let hash = hermes_core::directory::hash_password(&Secret::new("alice-pw".to_string())).unwrap();
    dir.import_account("alice@example.org", hash.expose(), None).unwrap();
    dir.import_account("bob@example.org", hash.expose(), None).unwrap();
    hermes_runtime::tls::ensure_self_signed(&data, "localhost").unwrap();
    let toml = format!(
        "[server]\nhostname = \"mx.example.org\"\n[limits]\nauth_fail_delay_ms = 10\nmax_auth_fail_delay_ms = 20\nmax_message_bytes = 100000\n[router]\nsmtp_port = 0\nsubmission_port = 0\nsubmissions_port = 0\nretry_min_secs = 1\nretry_max_secs = 2\n{extra_toml}"
    );
    let config = Config::from_toml(&toml).unwrap();
    let mut env = Env { _tmp: tmp, data, ports: Default::default(), stop: None, task: None, config };
    env.restart().await;
    env
}

/// An LMTP server on `run/lmtp.sock` that accepts everyone except `bob@...` (550).
fn lmtp_sink(data: &DataDir) -> (Sink, tokio::task::JoinHandle<()>) {
    use hermes_proto::lmtp::{Event, ForwardPath, Reply, Server, ServerConfig};
    let sink: Sink = Arc::default();
    let listener = hermes_runtime::listen::bind_unix(&data.lmtp_socket()).unwrap();
    let s2 = sink.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            let sink = s2.clone();
            tokio::spawn(async move {
                let mut server: Server<String> = Server::new(ServerConfig::new("store.test", 1 << 20));
                let mut out = server.greeting().to_bytes();
                let mut buf = vec![0u8; 65536];
                loop {
                    while let Some(ev) = server.poll() {
                        match ev {
                            Event::Reply(r) => r.write_to(&mut out),
                            Event::Rcpt(p) => match &p {
                                ForwardPath::Address(a) if a.local_part() == "bob" => {
                                    server.reject_rcpt(Reply::new(550, (5, 1, 1), "User unknown"))
                                }
                                _ => server.accept_rcpt(p.to_string()),
                            },
                            Event::Message(m) => {
                                let n = m.recipients.len();
                                sink.lock().unwrap().push(Got {
                                    from: m.from.to_string(),
                                    rcpts: m.recipients.iter().map(|r| r.data.clone()).collect(),
                                    body: m.body,
                                });
                                server.complete_message((0..n).map(|_| Reply::new(250, (2, 0, 0), "stored")));
                            }
                            Event::Close => {
                                let _ = stream.write_all(&out).await;
                                return;
                            }
                        }
                    }
                    if stream.write_all(&out).await.is_err() {
                        return;
                    }
                    out.clear();
                    let n = match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    server.feed(&buf[..n]);
                }
            });
        }
    });
    (sink, task)
}

/// A departmental SMTP server (plain, no TLS) on 127.0.0.1:0 accepting everything.
async fn smtp_sink() -> (Sink, u16) {
    use hermes_proto::smtp::{Event, Reply, Server, ServerConfig};
    let sink: Sink = Arc::default();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let s2 = sink.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = l.accept().await else { return };
            let sink = s2.clone();
            tokio::spawn(async move {
                let mut server: Server<String> = Server::new(ServerConfig::new("dept.test", 1 << 20), false);
                let mut out = server.greeting().to_bytes();
                let mut buf = vec![0u8; 65536];
                loop {
                    while let Some(ev) = server.poll() {
                        match ev {
                            Event::Reply(r) => r.write_to(&mut out),
                            Event::Mail(..) => server.accept_mail(),
                            Event::Rcpt(p, _) => server.accept_rcpt(p.to_string()),
                            Event::Message(m) => {
                                sink.lock().unwrap().push(Got {
                                    from: m.from.to_string(),
                                    rcpts: m.recipients.iter().map(|r| r.data.clone()).collect(),
                                    body: m.body,
                                });
                                server.complete_message(Reply::new(250, (2, 0, 0), "ok"));
                            }
                            Event::StartTls | Event::Auth(_) => return,
                            Event::Close => {
                                let _ = stream.write_all(&out).await;
                                return;
                            }
                        }
                    }
                    if stream.write_all(&out).await.is_err() {
                        return;
                    }
                    out.clear();
                    let n = match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    server.feed(&buf[..n]);
                }
            });
        }
    });
    (sink, port)
}

async fn connect(addr: &str) -> Client {
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut c = Client::new(Box::new(s));
    c.hello("client.test", false, true).await.unwrap();
    c
}

async fn cmd(c: &mut Client, line: &str) -> String {
    let r = c.command(line).await.unwrap();
    hermes_svc_router::client::reply_text(&r)
}

async fn send_data(c: &mut Client, body: &[u8]) -> String {
    let r = c.command("DATA").await.unwrap();
    assert_eq!(r.code, 354);
    c.send(&hermes_svc_router::client::dot_stuff(body)).await.unwrap();
    hermes_svc_router::client::reply_text(&c.read_reply(COMMAND_TIMEOUT).await.unwrap())
}

async fn wait_for(sink: &Sink, n: usize) -> Vec<Got> {
    for _ in 0..400 {
        if sink.lock().unwrap().len() >= n {
            return sink.lock().unwrap().clone();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("expected {n} messages, got {:?}", sink.lock().unwrap().len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mx_delivers_to_local_accounts_and_refuses_strangers() {
    let mut env = start("").await;
    let (sink, _t) = lmtp_sink(&env.data);
    let mut c = connect(&env.addr("smtp")).await;
    assert!(c.has("STARTTLS") && c.has("CHUNKING") && c.has("DSN") && c.has("PIPELINING"));
    assert!(!c.has("AUTH"), "no AUTH on the MX port");
    assert!(cmd(&mut c, "MAIL FROM:<sender@remote.example>").await.starts_with("250"));
    assert!(cmd(&mut c, "RCPT TO:<alice+tag@example.org>").await.starts_with("250"));
    assert!(cmd(&mut c, "RCPT TO:<nobody@example.org>").await.starts_with("550 5.1.1"));
    assert!(cmd(&mut c, "RCPT TO:<victim@elsewhere.example>").await.starts_with("554 5.7.1"));
    assert!(cmd(&mut c, "RCPT TO:<victim%elsewhere.example@example.org>").await.starts_with("550 5.7.1"));
    assert!(cmd(&mut c, "RCPT TO:<elsewhere.example!victim@example.org>").await.starts_with("550 5.7.1"));
    assert!(cmd(&mut c, "RCPT TO:<@example.org:victim@elsewhere.example>").await.starts_with("501"));
    assert!(cmd(&mut c, "RCPT TO:<\"victim@elsewhere.example\"@example.org>").await.starts_with("550 5.7.1"));
    let r = send_data(&mut c, b"Subject: hi\r\n\r\nhello\r\n").await;
    assert!(r.starts_with("250 2.0.0 Ok: queued as"), "{r}");
    let got = wait_for(&sink, 1).await;
    assert_eq!(got[0].rcpts, ["alice@example.org"]);
    assert_eq!(got[0].from, "<sender@remote.example>");
    let body = String::from_utf8_lossy(&got[0].body);
    assert!(
        body.starts_with("Received: from client.test ([127.0.0.1])\r\n\tby mx.example.org (Hermes) with ESMTP id "),
        "{body}"
    );
    assert!(!body.contains("Message-ID"), "MX does not add Message-ID");
    c.quit().await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submission_requires_tls_then_auth_and_owned_sender() {
    let (dept, port) = smtp_sink().await;
    let mut env = start(&format!(
        "[[router.routes]]\ndomain = \"dept.example\"\nhosts = [\"127.0.0.1:{port}\"]\ntls = \"none\"\n"
    ))
    .await;
    let (sink, _t) = lmtp_sink(&env.data);
    let mut c = connect(&env.addr("submission")).await;
    assert!(c.has("STARTTLS") && !c.has("AUTH"));
    assert!(cmd(&mut c, "AUTH PLAIN AGFsaWNlQGV4YW1wbGUub3JnAGFsaWNlLXB3").await.starts_with("538 5.7.11"));
    assert!(cmd(&mut c, "MAIL FROM:<alice@example.org>").await.starts_with("530 5.7.0"));
    let mut c = c.starttls("localhost", "client.test").await.unwrap();
    assert!(c.has("AUTH") && !c.has("STARTTLS"));
    assert!(cmd(&mut c, "AUTH PLAIN AGFsaWNlQGV4YW1wbGUub3JnAHdyb25n").await.starts_with("535 5.7.8"));
    assert!(cmd(&mut c, "AUTH PLAIN AGFsaWNlQGV4YW1wbGUub3JnAGFsaWNlLXB3").await.starts_with("235"));
    assert!(cmd(&mut c, "MAIL FROM:<bob@example.org>").await.starts_with("553 5.7.1"));
    assert!(cmd(&mut c, "MAIL FROM:<alice+x@example.org>").await.starts_with("250"));
    assert!(cmd(&mut c, "RCPT TO:<friend@dept.example>").await.starts_with("250"));
    assert!(cmd(&mut c, "RCPT TO:<bob@example.org>").await.starts_with("250"));
    let r = send_data(&mut c, b"Subject: out\r\n\r\nbody\r\n").await;
    assert!(r.starts_with("250"), "{r}");
    let got = wait_for(&dept, 1).await;
    let body = String::from_utf8_lossy(&got[0].body);
    assert!(body.contains("(Authenticated sender: alice@example.org)"), "{body}");
    assert!(body.contains("with ESMTPSA") && body.contains("(using TLSv1.3 with cipher"), "{body}");
    assert!(body.contains("\r\nMessage-ID: <") && body.contains("\r\nDate: "), "submission adds them: {body}");
    assert_eq!(got[0].rcpts, ["friend@dept.example"]);
    // bob is refused 550 by the "store": a bounce goes back to alice (local), from <>.
    let got = wait_for(&sink, 1).await;
    assert_eq!(got[0].from, "<>");
    assert_eq!(got[0].rcpts, ["alice@example.org"]);
    let report = String::from_utf8_lossy(&got[0].body);
    assert!(
        report.contains("Subject: Undelivered Mail Returned to Sender") && report.contains("Status: 5.1.1"),
        "{report}"
    );
    c.quit().await;
    // Implicit TLS port: AUTH offered at once.
    let tcp = tokio::net::TcpStream::connect(env.addr("submissions")).await.unwrap();
    let connector = tokio_rustls_connector();
    let tls = connector.connect(rustls::pki_types::ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    let mut c = Client::new(Box::new(tls));
    c.hello("client.test", false, true).await.unwrap();
    assert!(c.has("AUTH"));
    env.stop().await;
}

fn tokio_rustls_connector() -> tokio_rustls::TlsConnector {
    #[derive(Debug)]
    struct Any(Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for Any {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &rustls::pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &rustls::pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let p = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(p.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Any(p)))
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_survives_restart_and_retries_until_the_store_is_back() {
    let mut env = start("").await;
    // No store yet: the message is acknowledged and deferred.
    let mut c = connect(&env.addr("smtp")).await;
    assert!(cmd(&mut c, "MAIL FROM:<s@remote.example>").await.starts_with("250"));
    assert!(cmd(&mut c, "RCPT TO:<alice@example.org>").await.starts_with("250"));
    // BDAT, pipelined in two chunks.
    c.send(b"BDAT 6\r\nSubjecBDAT 14 LAST\r\nt: x\r\n\r\nbody\r\n").await.unwrap();
    assert!(c.read_reply(COMMAND_TIMEOUT).await.unwrap().code == 250);
    let r = c.read_reply(COMMAND_TIMEOUT).await.unwrap();
    assert!(hermes_svc_router::client::reply_text(&r).contains("queued as"));
    c.quit().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let listing = hermes_svc_router::control::request(&env.data, &hermes_svc_router::control::Request::List).unwrap();
    assert_eq!(listing.messages.len(), 1);
    assert!(
        listing.messages[0].attempts >= 1 && listing.messages[0].last_reply.contains("4.4.1"),
        "{:?}",
        listing.messages
    );
    // Restart the router: the message is recovered; then the store appears and it is delivered.
    env.restart().await;
    let (sink, _t) = lmtp_sink(&env.data);
    hermes_svc_router::control::request(&env.data, &hermes_svc_router::control::Request::Flush { id: None }).unwrap();
    let got = wait_for(&sink, 1).await;
    assert!(String::from_utf8_lossy(&got[0].body).ends_with("Subject: x\r\n\r\nbody\r\n"));
    for _ in 0..100 {
        let l = hermes_svc_router::control::request(&env.data, &hermes_svc_router::control::Request::List).unwrap();
        if l.messages.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        hermes_svc_router::control::request(&env.data, &hermes_svc_router::control::Request::List)
            .unwrap()
            .messages
            .is_empty()
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_uses_srs_and_bounces_to_srs_route_back() {
    let (dept, port) = smtp_sink().await;
    let mut env = start(&format!(
        "[[router.routes]]\ndomain = \"dept.example\"\nhosts = [\"127.0.0.1:{port}\"]\ntls = \"none\"\n"
    ))
    .await;
    Directory::open(&env.data).unwrap().add_alias("fwd@example.org", &["away@dept.example".into()]).unwrap();
    let mut c = connect(&env.addr("smtp")).await;
    assert!(cmd(&mut c, "MAIL FROM:<orig@dept.example>").await.starts_with("250"));
    assert!(cmd(&mut c, "RCPT TO:<fwd@example.org>").await.starts_with("250"));
    assert!(send_data(&mut c, b"Subject: fwd\r\n\r\nx\r\n").await.starts_with("250"));
    let got = wait_for(&dept, 1).await;
    let srs = got[0].from.trim_matches(['<', '>']).to_string();
    assert!(srs.starts_with("SRS0=") && srs.ends_with("@mx.example.org"), "{srs}");
    assert_eq!(got[0].rcpts, ["away@dept.example"]);
    // The bounce comes back to the SRS address and is routed to the original sender.
    assert!(cmd(&mut c, "MAIL FROM:<>").await.starts_with("250"));
    assert!(cmd(&mut c, &format!("RCPT TO:<{srs}>")).await.starts_with("250"));
    assert!(
        cmd(&mut c, "RCPT TO:<SRS0=AAAA=AA=dept.example=victim@mx.example.org>").await.starts_with("554 5.7.1"),
        "forged SRS"
    );
    assert!(send_data(&mut c, b"Subject: bounce\r\n\r\nx\r\n").await.starts_with("250"));
    let got = wait_for(&dept, 2).await;
    assert_eq!(got[1].rcpts, ["orig@dept.example"]);
    assert_eq!(got[1].from, "<>");
    c.quit().await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_report_then_bounce_after_queue_lifetime() {
    // A route to a closed port: every attempt fails temporarily.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut env = start(&format!(
        "delay_warning_secs = 1\nqueue_lifetime_secs = 3\n[[router.routes]]\ndomain = \"dead.example\"\nhosts = [\"127.0.0.1:{port}\"]\ntls = \"none\"\nverify_recipients = false\n"
    ))
    .await;
    let (sink, _t) = lmtp_sink(&env.data);
    let mut c = connect(&env.addr("submission")).await.starttls("localhost", "client.test").await.unwrap();
    assert!(cmd(&mut c, "AUTH PLAIN AGFsaWNlQGV4YW1wbGUub3JnAGFsaWNlLXB3").await.starts_with("235"));
    assert!(cmd(&mut c, "MAIL FROM:<alice@example.org> ENVID=QQ1").await.starts_with("250"));
    assert!(cmd(&mut c, "RCPT TO:<x@dead.example> ORCPT=rfc822;x@dead.example").await.starts_with("250"));
    assert!(send_data(&mut c, b"Subject: doomed\r\n\r\nx\r\n").await.starts_with("250"));
    c.quit().await;
    let got = wait_for(&sink, 2).await;
    let delay = String::from_utf8_lossy(&got[0].body);
    assert!(
        delay.contains("Subject: Delayed Mail (still being retried)") && delay.contains("Action: delayed"),
        "{delay}"
    );
    let bounce = String::from_utf8_lossy(&got[1].body);
    assert!(
        bounce.contains("Subject: Undelivered Mail Returned to Sender") && bounce.contains("Status: 5.4.7"),
        "{bounce}"
    );
    assert!(
        bounce.contains("Original-Envelope-Id: QQ1") && bounce.contains("Original-Recipient: rfc822; x@dead.example"),
        "{bounce}"
    );
    assert!(got.iter().all(|g| g.from == "<>" && g.rcpts == ["alice@example.org"]));
    env.stop().await;
}
