//! Shared harness for the IMAP integration tests: a store service on 127.0.0.1:0 with a temp
//! data folder, one domain and two accounts, a self-signed certificate, and a small line-based
//! IMAP client (plain or TLS) plus a golden-transcript runner (`C:`/`S:` lines).
//!
//! Not a test itself; each `tests/imap_*.rs` includes it with `mod imap_common;`.

#![allow(dead_code, clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use hermes_core::config::Config;
use hermes_core::directory::Directory;
use hermes_core::paths::DataDir;
use hermes_core::secret::Secret;
use hermes_store::{Store, StoreConfig};
use hermes_svc_store::{Context, SharedContext};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

pub const ALICE: &str = "alice@example.org";
pub const BOB: &str = "bob@example.org";
pub const PASSWORD: &str = "correct horse";

pub struct Server {
    pub addr: SocketAddr,
    pub tls_addr: SocketAddr,
    pub ctx: SharedContext,
    pub data: DataDir,
    _tmp: tempfile::TempDir,
    _shutdown: tokio::sync::watch::Sender<bool>,
}

pub struct Options {
    pub plaintext_auth_on_loopback: bool,
    pub max_message_bytes: u64,
    pub max_sessions_per_user: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            plaintext_auth_on_loopback: true,
            max_message_bytes: 1 << 20,
            max_sessions_per_user: 10,
        }
    }
}

pub async fn start() -> Server {
    start_with(Options::default()).await
}

pub async fn start_with(opts: Options) -> Server {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path());
    let mut config = Config::host_default();
    config.imap.plaintext_auth_on_loopback = opts.plaintext_auth_on_loopback;
    config.limits.max_message_bytes = opts.max_message_bytes;
    config.limits.max_sessions_per_user = opts.max_sessions_per_user;
    config.limits.auth_fail_delay_ms = 10;
    config.limits.max_auth_fail_delay_ms = 40;
    let directory = Directory::open(&data).unwrap();
    directory.add_domain("example.org").unwrap();
    for who in [ALICE, BOB] {
        directory
            .add_account(who, &Secret::new(PASSWORD.to_string()), None)
            .unwrap();
    }
    let store = Store::open(
        &data.store_dir(),
        StoreConfig {
            max_message_bytes: opts.max_message_bytes,
            zstd_level: 3,
            ..StoreConfig::default()
        },
    )
    .unwrap();
    hermes_runtime::tls::ensure_self_signed(&data, "localhost").unwrap();
    let tls = hermes_runtime::tls::load_acceptor(&data).unwrap();
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let ctx = Arc::new(Context::new(config, data.clone(), directory, store, Some(tls), shutdown_rx).unwrap());
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let implicit = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = plain.local_addr().unwrap();
    let tls_addr = implicit.local_addr().unwrap();
    for (listener, implicit_tls) in [(plain, false), (implicit, true)] {
        let ctx = Arc::clone(&ctx);
        tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                tokio::spawn(hermes_svc_store::imap::serve(
                    stream,
                    peer,
                    implicit_tls,
                    Arc::clone(&ctx),
                ));
            }
        });
    }
    Server {
        addr,
        tls_addr,
        ctx,
        data,
        _tmp: tmp,
        _shutdown: shutdown_tx,
    }
}

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A minimal IMAP client for tests: raw lines in, raw lines out.
pub struct Client {
    pub io: BufReader<Box<dyn Io>>,
    next_tag: u32,
}

pub const TIMEOUT: Duration = Duration::from_secs(10);

impl Client {
    /// Connects in clear text and reads the greeting.
    pub async fn connect(server: &Server) -> (Client, String) {
        let tcp = TcpStream::connect(server.addr).await.unwrap();
        let mut c = Client {
            io: BufReader::new(Box::new(tcp)),
            next_tag: 1,
        };
        let greeting = c.line().await;
        (c, greeting)
    }

    /// Connects to the implicit-TLS port.
    pub async fn connect_tls(server: &Server) -> (Client, String) {
        let tcp = TcpStream::connect(server.tls_addr).await.unwrap();
        let tls = tls_connect(server, tcp).await;
        let mut c = Client {
            io: BufReader::new(Box::new(tls)),
            next_tag: 1,
        };
        let greeting = c.line().await;
        (c, greeting)
    }

    /// Connects and logs in as `who`.
    pub async fn login(server: &Server, who: &str) -> Client {
        let (mut c, _) = Client::connect(server).await;
        let r = c.cmd(&format!("LOGIN {who} \"{PASSWORD}\"")).await;
        assert!(r.last().unwrap().contains(" OK "), "{r:?}");
        c
    }

    pub fn from_io(io: Box<dyn Io>) -> Client {
        Client {
            io: BufReader::new(io),
            next_tag: 1,
        }
    }

    /// One response line without CRLF.
    pub async fn line(&mut self) -> String {
        let mut buf = Vec::new();
        let n = tokio::time::timeout(TIMEOUT, self.io.read_until(b'\n', &mut buf))
            .await
            .expect("server answered in time")
            .unwrap();
        assert!(n > 0, "connection closed");
        while buf.last() == Some(&b'\n') || buf.last() == Some(&b'\r') {
            buf.pop();
        }
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Reads one line, or `None` at EOF.
    pub async fn line_or_eof(&mut self) -> Option<String> {
        let mut buf = Vec::new();
        let n = tokio::time::timeout(TIMEOUT, self.io.read_until(b'\n', &mut buf))
            .await
            .expect("server answered in time")
            .ok()?;
        if n == 0 {
            return None;
        }
        Some(
            String::from_utf8_lossy(&buf)
                .trim_end_matches(['\r', '\n'])
                .to_string(),
        )
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.io.get_mut().write_all(bytes).await.unwrap();
        self.io.get_mut().flush().await.unwrap();
    }

    /// Sends `tag command` and returns every line up to and including the tagged one.
    /// Literals in responses are returned inline (their lines split on CRLF like the rest).
    pub async fn cmd(&mut self, command: &str) -> Vec<String> {
        let tag = format!("t{}", self.next_tag);
        self.next_tag += 1;
        self.send_raw(format!("{tag} {command}\r\n").as_bytes())
            .await;
        self.until_tagged(&tag).await
    }

    pub async fn until_tagged(&mut self, tag: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let l = self.line().await;
            let done = l.starts_with(&format!("{tag} "));
            lines.push(l);
            if done {
                return lines;
            }
        }
    }

    /// APPEND with a synchronizing literal (waiting for the continuation, as imaplib does).
    pub async fn append(&mut self, mailbox: &str, flags: &str, msg: &[u8]) -> Vec<String> {
        let tag = format!("t{}", self.next_tag);
        self.next_tag += 1;
        let flags = if flags.is_empty() {
            String::new()
        } else {
            format!("{flags} ")
        };
        self.send_raw(format!("{tag} APPEND {mailbox} {flags}{{{}}}\r\n", msg.len()).as_bytes())
            .await;
        let cont = self.line().await;
        assert!(
            cont.starts_with("+ "),
            "expected continuation, got {cont:?}"
        );
        self.send_raw(msg).await;
        self.send_raw(b"\r\n").await;
        self.until_tagged(&tag).await
    }

    /// Reads whatever arrives within `wait` (for IDLE pushes), line by line.
    pub async fn lines_within(&mut self, wait: Duration) -> Vec<String> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let mut buf = Vec::new();
            match tokio::time::timeout_at(deadline, self.io.read_until(b'\n', &mut buf)).await {
                Ok(Ok(n)) if n > 0 => out.push(
                    String::from_utf8_lossy(&buf)
                        .trim_end_matches(['\r', '\n'])
                        .to_string(),
                ),
                _ => return out,
            }
        }
    }

    /// Reads exactly `n` raw bytes.
    pub async fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        tokio::time::timeout(TIMEOUT, self.io.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        buf
    }
}

pub async fn tls_connect(
    server: &Server,
    tcp: TcpStream,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let pem = std::fs::read(server.data.tls_cert()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

/// Runs a golden transcript. `C: ` lines are sent (CRLF appended); `S: ` lines must be the
/// server's next lines, where `<ANY>` matches any run of characters. Blank lines and lines
/// starting with `#` are ignored. The client should already be connected (greeting read).
pub async fn transcript(client: &mut Client, script: &str) {
    let mut expected: Vec<String> = Vec::new();
    async fn check(client: &mut Client, expected: &mut Vec<String>) {
        for want in expected.drain(..) {
            let got = client.line().await;
            assert!(
                glob(&want, &got),
                "transcript mismatch\n  want: {want}\n  got:  {got}"
            );
        }
    }
    for line in script.lines() {
        let line = line.trim_start();
        if let Some(c) = line.strip_prefix("C: ") {
            check(client, &mut expected).await;
            client.send_raw(format!("{c}\r\n").as_bytes()).await;
        } else if line == "C:" {
            check(client, &mut expected).await;
            client.send_raw(b"\r\n").await;
        } else if let Some(s) = line.strip_prefix("S: ") {
            expected.push(s.to_string());
        } else if line == "S:" {
            expected.push(String::new());
        } else if line.is_empty() || line.starts_with('#') {
        } else {
            panic!("bad transcript line: {line}");
        }
    }
    check(client, &mut expected).await;
}

/// `<ANY>` wildcard matching.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split("<ANY>").collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(pos) = rest.find(part) else {
                return false;
            };
            rest = &rest[pos + part.len()..];
        }
    }
    true
}

/// A small RFC 5322 message with CRLF line ends.
pub fn message(subject: &str, body: &str) -> Vec<u8> {
    format!("From: Carol <carol@example.net>\r\nTo: alice@example.org\r\nSubject: {subject}\r\nDate: Tue, 2 Jan 2024 10:00:00 +0000\r\nMessage-ID: <{subject}@example.net>\r\n\r\n{body}\r\n").into_bytes()
}
