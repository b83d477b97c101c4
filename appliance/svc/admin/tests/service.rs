//! The admin service in-process on 127.0.0.1:0: TLS, the endpoints file, security headers,
//! the setup → sign-in → form flow at the HTTP level, the connection limit, and graceful
//! shutdown. Requests are written by hand over a rustls client (no HTTP client dependency).

#![allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]

use hermes_core::config::Config;
use hermes_core::paths::DataDir;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Server {
    data: DataDir,
    addr: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path());
    hermes_runtime::tls::ensure_self_signed(&data, "localhost").unwrap();
    let config = Config::from_toml("[admin]\nport = 0\n").unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(hermes_svc_admin::run_until(data.clone(), config, async move {
        let _ = rx.await;
    }));
    let mut addr = None;
    for _ in 0..200 {
        if let Ok(e) = hermes_runtime::endpoints::read_service_endpoints(&data, "admin") {
            addr = e.tcp.get("admin").cloned();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    Server { data, addr: addr.expect("admin endpoints file"), stop: Some(tx), task, _dir: dir }
}

fn tls_config(data: &DataDir) -> Arc<rustls::ClientConfig> {
    let pem = std::fs::read(data.tls_cert()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
    fn cookie(&self, name: &str) -> Option<String> {
        self.head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .find_map(|(_, v)| {
                let v = v.trim();
                v.strip_prefix(&format!("{name}=")).map(|rest| rest.split(';').next().unwrap_or("").to_string())
            })
    }
    fn csrf(&self) -> String {
        let i = self.body.find("name=\"csrf\" value=\"").unwrap() + 19;
        self.body[i..].split('"').next().unwrap().to_string()
    }
}

/// One request on a fresh TLS connection (`Connection: close`).
async fn request(s: &Server, method: &str, path: &str, cookies: &str, extra: &str, body: &str) -> Reply {
    let tcp = tokio::net::TcpStream::connect(&s.addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(tls_config(&s.data));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", s.addr);
    if !cookies.is_empty() {
        req.push_str(&format!("Cookie: {cookies}\r\n"));
    }
    req.push_str(extra);
    if method != "GET" {
        req.push_str(&format!("Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Reply { status, head: head.to_string(), body: body.to_string() }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_login_forms_headers_and_shutdown() {
    let s = start().await;
    let origin = format!("Origin: https://{}\r\n", s.addr);

    // The stylesheet and security headers.
    let r = request(&s, "GET", "/static/admin.css", "", "", "").await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-security-policy").unwrap().contains("script-src 'none'"));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));

    // Unauthenticated: pages redirect, the API says 401.
    assert_eq!(request(&s, "GET", "/", "", "", "").await.status, 303);
    assert_eq!(request(&s, "GET", "/api/domains", "", "", "").await.status, 401);

    // First-boot setup with a token issued as `hermes up` would.
    let token = hermes_svc_admin::admins::AdminStore::open(&s.data).unwrap().issue_setup_token().unwrap().unwrap();
    let page = request(&s, "GET", "/setup", "", "", "").await;
    assert_eq!(page.status, 200);
    let pre = page.cookie("__Host-hermes_pre").unwrap();
    let pre_cookie = format!("__Host-hermes_pre={pre}");
    let body = format!(
        "csrf={}&token={}&name=root&new_password=a-long-password&confirm=a-long-password",
        page.csrf(),
        enc(&token)
    );
    // Without Origin: refused before anything happens.
    assert_eq!(request(&s, "POST", "/setup", &pre_cookie, "", &body).await.status, 403);
    let r = request(&s, "POST", "/setup", &pre_cookie, &origin, &body).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let session = r.cookie("__Host-hermes_admin").unwrap();
    let cookie = format!("__Host-hermes_admin={session}");

    // Signed in: a form with its CSRF token works, without it does not.
    let page = request(&s, "GET", "/domains", &cookie, "", "").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<label for=\"domain\">"));
    let r = request(&s, "POST", "/domains", &cookie, &origin, "domain=example.org").await;
    assert_eq!(r.status, 403);
    let r =
        request(&s, "POST", "/domains", &cookie, &origin, &format!("csrf={}&domain=example.org", page.csrf())).await;
    assert_eq!(r.status, 303);
    let dir = hermes_core::directory::Directory::open(&s.data).unwrap();
    assert_eq!(dir.list_domains().unwrap(), ["example.org"]);

    // An oversized body is refused.
    let big = format!("csrf={}&domain={}", page.csrf(), "a".repeat(100 * 1024));
    assert_eq!(request(&s, "POST", "/domains", &cookie, &origin, &big).await.status, 413);

    // Graceful shutdown: run_until returns, the port closes.
    let Server { stop, task, addr, .. } = s;
    stop.unwrap().send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), task).await.unwrap().unwrap().unwrap();
    assert!(tokio::net::TcpStream::connect(&addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_connection_limit_refuses_then_frees_slots_on_close() {
    let s = start().await;
    // Hold the per-address maximum of idle, never-handshaking connections...
    let mut idle = Vec::new();
    for _ in 0..hermes_svc_admin::run::MAX_CONNECTIONS_PER_IP {
        idle.push(tokio::net::TcpStream::connect(&s.addr).await.unwrap());
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // ...so the next one is closed at once, before any TLS.
    let mut extra = tokio::net::TcpStream::connect(&s.addr).await.unwrap();
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), extra.read(&mut buf)).await.unwrap().unwrap_or(0);
    assert_eq!(n, 0, "refused connections are closed");
    // Closing them frees the slots.
    drop(idle);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(request(&s, "GET", "/login", "", "", "").await.status, 303, "no admin yet: /login sends to /setup");
    let _ = s.stop.map(|t| t.send(()));
}

/// First-boot setup as `hermes up` would run it: the session cookie and the Origin header.
async fn signed_in(s: &Server) -> (String, String) {
    let origin = format!("Origin: https://{}\r\n", s.addr);
    let token = hermes_svc_admin::admins::AdminStore::open(&s.data).unwrap().issue_setup_token().unwrap().unwrap();
    let page = request(s, "GET", "/setup", "", "", "").await;
    let pre_cookie = format!("__Host-hermes_pre={}", page.cookie("__Host-hermes_pre").unwrap());
    let body = format!(
        "csrf={}&token={}&name=root&new_password=a-long-password&confirm=a-long-password",
        page.csrf(),
        enc(&token)
    );
    let r = request(s, "POST", "/setup", &pre_cookie, &origin, &body).await;
    assert_eq!(r.status, 303, "{}", r.body);
    (format!("__Host-hermes_admin={}", r.cookie("__Host-hermes_admin").unwrap()), origin)
}

/// Sends `head` and then a chunked body: `prefix`, `fill` bytes of filler, `suffix`, while
/// reading the answer at the same time (the server may answer and close before the end).
async fn chunked_upload(s: &Server, head: String, prefix: Vec<u8>, fill: u64, suffix: Vec<u8>) -> Reply {
    let tcp = tokio::net::TcpStream::connect(&s.addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(tls_config(&s.data));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let (mut rd, mut wr) = tokio::io::split(tls);
    let writer = tokio::spawn(async move {
        let chunk = |data: &[u8]| {
            let mut c = format!("{:x}\r\n", data.len()).into_bytes();
            c.extend_from_slice(data);
            c.extend_from_slice(b"\r\n");
            c
        };
        wr.write_all(head.as_bytes()).await?;
        // (An empty chunk would end the body.)
        if !prefix.is_empty() {
            wr.write_all(&chunk(&prefix)).await?;
        }
        let block = vec![0x5au8; 1024 * 1024];
        let mut left = fill;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            wr.write_all(&chunk(&block[..n])).await?;
            left -= n as u64;
        }
        if !suffix.is_empty() {
            wr.write_all(&chunk(&suffix)).await?;
        }
        wr.write_all(b"0\r\n\r\n").await?;
        wr.flush().await?;
        Ok::<_, std::io::Error>(wr)
    });
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(300), rd.read_to_end(&mut raw)).await.unwrap();
    writer.abort();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Reply { status, head: head.to_string(), body: body.to_string() }
}

fn uploads(s: &Server) -> Vec<std::path::PathBuf> {
    match std::fs::read_dir(hermes_svc_admin::web::firmware_upload::uploads_dir(&s.data)) {
        Ok(d) => d.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// The firmware upload's size bound holds for a body that never declares its length: the form
/// and the API stream more than 256 MiB, chunked, and get 413 with nothing left in
/// `DATA/admin/uploads`; a bundle within the bound reaches the control socket (none here: 503,
/// the upload removed); stale uploads are removed when the service starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firmware_upload_over_the_bound_is_413_and_leaves_nothing() {
    use hermes_svc_admin::web::firmware_upload::{MAX_UPLOAD_BYTES, uploads_dir};
    let s = start().await;
    let (cookie, origin) = signed_in(&s).await;
    let csrf = request(&s, "GET", "/firmware", &cookie, "", "").await.csrf();
    let boundary = "hermes-test-boundary";
    let prefix = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\na-long-password\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"bundle\"; filename=\"big.bundle\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    let suffix = format!("\r\n--{boundary}--\r\n").into_bytes();
    let form_head = |extra: &str| {
        format!(
            "POST /firmware/upload HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\n{origin}{extra}\
             Content-Type: multipart/form-data; boundary={boundary}\r\nTransfer-Encoding: chunked\r\n\
             Connection: close\r\n\r\n",
            s.addr
        )
    };

    // One byte over the bound, through the form.
    let r = chunked_upload(&s, form_head(""), prefix.clone(), MAX_UPLOAD_BYTES + 1, suffix.clone()).await;
    assert_eq!(r.status, 413, "{}", r.head);
    assert!(r.body.contains("256 MiB"), "{}", r.body);
    assert_eq!(uploads(&s), Vec::<std::path::PathBuf>::new());

    // And through the API.
    let api_head = format!(
        "POST /api/firmware?reboot=0 HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\n{origin}X-CSRF-Token: {csrf}\r\n\
         X-Hermes-Password: a-long-password\r\nContent-Type: application/octet-stream\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        s.addr
    );
    let r = chunked_upload(&s, api_head.clone(), Vec::new(), MAX_UPLOAD_BYTES + 1, Vec::new()).await;
    assert_eq!(r.status, 413, "{}", r.head);
    assert!(r.body.contains("\"error\"") && r.body.contains("256 MiB"), "{}", r.body);
    assert_eq!(uploads(&s), Vec::<std::path::PathBuf>::new());

    // Part headers are not buffered without end: a csrf part whose headers never end.
    let endless = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\nX-Pad: ").into_bytes();
    let r = chunked_upload(&s, form_head(""), endless, 4 * 1024 * 1024, suffix.clone()).await;
    assert_eq!(r.status, 400, "{}", r.head);
    assert!(r.body.contains("part headers were longer"), "{}", r.body);

    // Within the bound: stored, handed to the control socket (nobody listens here), removed.
    let r = chunked_upload(&s, form_head(""), prefix.clone(), 3 * 1024 * 1024, suffix.clone()).await;
    assert_eq!(r.status, 503, "{}", r.head);
    assert!(r.body.contains("supervisor is not running"), "{}", r.body);
    assert_eq!(uploads(&s), Vec::<std::path::PathBuf>::new());

    // Every attempt is audited, with what was received when it got that far.
    let audit = std::fs::read_to_string(s.data.root().join("admin/audit.log")).unwrap();
    let entries: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["action"] == "firmware.install")
        .collect();
    assert_eq!(entries.len(), 4, "{audit}");
    assert!(entries.iter().all(|e| e["ok"] == false));
    assert!(entries[3]["detail"].as_str().unwrap().starts_with(&format!("{} bytes, sha256 ", 3 * 1024 * 1024)));

    // A leftover of a crash is removed when the service starts again.
    let Server { stop, task, data, _dir, .. } = s;
    stop.unwrap().send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), task).await.unwrap().unwrap().unwrap();
    std::fs::write(uploads_dir(&data).join("0123.part"), b"half a bundle").unwrap();
    let config = Config::from_toml("[admin]\nport = 0\n").unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let again = tokio::spawn(hermes_svc_admin::run_until(data.clone(), config, async move {
        let _ = rx.await;
    }));
    for _ in 0..200 {
        if std::fs::read_dir(uploads_dir(&data)).unwrap().count() == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(std::fs::read_dir(uploads_dir(&data)).unwrap().count(), 0, "the stale upload is removed at start");
    tx.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), again).await.unwrap().unwrap().unwrap();
}
