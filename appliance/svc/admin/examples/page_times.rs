//! Server-side render time and size of every admin page at 50,000 accounts.
//!
//! ```text
//! cargo run --release -p hermes-svc-admin --example page_times [-- ACCOUNTS [RUNS [ALIASES]]]
//! ```
//!
//! Builds a data folder with ACCOUNTS (default 50,000) accounts in 10 domains, ALIASES
//! (default 5,000) aliases, 5 routes and 20 config versions, starts the admin service
//! in-process on 127.0.0.1:0, signs in over HTTPS like a browser, then fetches each page RUNS
//! times (default 20) and prints the median and the worst of its `Server-Timing: app;dur=`
//! header (the time the server spent, without TLS and network) and the page size. The store,
//! router, supervisor and health sockets are absent, so pages that ask them show "not
//! running" (each such request fails at `connect`, so their time is not counted here; see
//! docs/performance.md).

#![allow(clippy::unwrap_used, reason = "a benchmark: a panic is the failure report")]

use hermes_core::config::Config;
use hermes_core::directory::{Directory, ImportEntry};
use hermes_core::paths::DataDir;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0VKc2t2H7Ye1i4PZ3E3cq3Jb0bQ9oIqKdD3G3lCw0pI";

struct Reply {
    head: String,
    body: Vec<u8>,
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
            .filter_map(|l| l.strip_prefix("set-cookie: ").or_else(|| l.strip_prefix("Set-Cookie: ")))
            .find_map(|c| {
                let (n, rest) = c.split_once('=')?;
                (n == name).then(|| rest.split(';').next().unwrap_or("").to_string())
            })
    }
}

async fn request(
    addr: &str,
    tls: &Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    cookies: &str,
    body: &str,
) -> Reply {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(tls.clone());
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut s = connector.connect(name, tcp).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if !cookies.is_empty() {
        req.push_str(&format!("Cookie: {cookies}\r\n"));
    }
    if method != "GET" {
        req.push_str(&format!(
            "Origin: https://{addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw).await;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let body = raw.get(split + 4..).unwrap_or(&[]).to_vec();
    Reply { head, body }
}

fn csrf(body: &[u8]) -> String {
    let t = String::from_utf8_lossy(body);
    let i = t.find("name=\"csrf\" value=\"").unwrap() + 19;
    t[i..i + t[i..].find('"').unwrap()].to_string()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let accounts: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(50_000);
    let runs: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(20);
    let aliases: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(5_000);
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path());
    hermes_runtime::tls::ensure_self_signed(&data, "localhost").unwrap();

    let t = std::time::Instant::now();
    let directory = Directory::open(&data).unwrap();
    let domains: Vec<String> = (0..10).map(|d| format!("dept{d}.example.edu")).collect();
    for d in &domains {
        directory.add_domain(d).unwrap();
    }
    let entries: Vec<ImportEntry> = (0..accounts)
        .map(|i| ImportEntry {
            address: format!("user{i:06}@{}", domains[i % domains.len()]),
            phc_hash: HASH.into(),
            quota_bytes: None,
        })
        .collect();
    for chunk in entries.chunks(5000) {
        directory.import_accounts(chunk).unwrap();
    }
    for i in 0..aliases {
        let d = &domains[i % domains.len()];
        directory.add_alias(&format!("list{i}@{d}"), &[format!("user{:06}@{d}", i * 10 % accounts.max(1))]).unwrap();
    }
    let mut config = String::from(
        "[admin]\nport = 0\n\n[server]\nhostname = \"mx.example.edu\"\n\n[router]\nrelay_networks = [\"192.0.2.0/24\"]\n",
    );
    for r in 0..5 {
        config.push_str(&format!("\n[[router.routes]]\ndomain = \"lab{r}.example.edu\"\nhosts = [\"mail.lab{r}.example.edu:25\"]\ntls = \"required\"\n"));
    }
    let mut text = config.clone();
    for v in 0..20 {
        text.push_str(&format!("# version {v}\n"));
        hermes_svc_admin::config_apply::apply(&data, &text).unwrap();
    }
    hermes_svc_admin::admins::AdminStore::open(&data)
        .unwrap()
        .create("bench", &hermes_core::secret::Secret::new("bench-password-123".to_string()))
        .unwrap();
    eprintln!("data: {accounts} accounts in {:.1} s", t.elapsed().as_secs_f64());

    let cfg = Config::from_toml(&text).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let d2 = data.clone();
    let task = tokio::spawn(hermes_svc_admin::run_until(d2, cfg, async move {
        let _ = rx.await;
    }));
    let mut addr = None;
    for _ in 0..400 {
        if let Ok(e) = hermes_runtime::endpoints::read_service_endpoints(&data, "admin") {
            addr = e.tcp.get("admin").cloned();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let addr = addr.unwrap();
    let pem = std::fs::read(data.tls_cert()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let tls = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );

    // Sign in like a browser.
    let login = request(&addr, &tls, "GET", "/login", "", "").await;
    let pre = login.cookie("__Host-hermes_pre").unwrap();
    let body = format!("csrf={}&name=bench&password=bench-password-123", csrf(&login.body));
    let r = request(&addr, &tls, "POST", "/login", &format!("__Host-hermes_pre={pre}"), &body).await;
    let session = r.cookie("__Host-hermes_admin").expect("signed in");
    let cookie = format!("__Host-hermes_admin={session}");

    let first = entries.first().map(|e| e.address.clone()).unwrap_or_default();
    let versions = hermes_svc_admin::config_apply::list(&data).unwrap();
    let pages = [
        "/".to_string(),
        "/?range=24h".into(),
        "/domains".into(),
        "/accounts".into(),
        "/accounts?q=user0123".into(),
        format!("/accounts?q=&domain=dept3.example.edu&page={}", accounts / 10 / 50),
        format!("/accounts/{first}"),
        "/aliases".into(),
        format!("/aliases?q=&domain=&page={}", aliases / 100),
        "/aliases?q=list12".into(),
        format!("/undelete?account={first}"),
        "/routes".into(),
        "/queue".into(),
        "/certificates".into(),
        "/disks".into(),
        "/logs".into(),
        "/config".into(),
        format!("/config/history/{}", versions.last().map(|v| v.id.clone()).unwrap_or_default()),
        "/system".into(),
        "/firmware".into(),
        "/tokens".into(),
        "/api/accounts?q=user01&per_page=50".into(),
        "/static/admin.css".into(),
    ];
    // Warm up (first listing of the directory).
    for p in &pages {
        request(&addr, &tls, "GET", p, &cookie, "").await;
    }
    let css = request(&addr, &tls, "GET", "/static/admin.css", "", "").await.body.len();
    println!("{:<52} {:>10} {:>10} {:>10}", "page", "median ms", "max ms", "bytes");
    let mut worst: f64 = 0.0;
    for p in &pages {
        let mut times = Vec::with_capacity(runs);
        let mut size = 0;
        for _ in 0..runs {
            let r = request(&addr, &tls, "GET", p, &cookie, "").await;
            assert!(r.head.starts_with("HTTP/1.1 200"), "{p}: {}", r.head.lines().next().unwrap_or(""));
            let ms: f64 = r
                .header("server-timing")
                .and_then(|v| v.strip_prefix("app;dur="))
                .and_then(|v| v.parse().ok())
                .unwrap();
            times.push(ms);
            size = r.body.len();
        }
        times.sort_by(|a, b| a.total_cmp(b));
        let max = times[times.len() - 1];
        worst = worst.max(max);
        let total = if p.starts_with("/static") || p.starts_with("/api") { size } else { size + css };
        println!("{:<52} {:>10.2} {:>10.2} {:>10}", p, times[times.len() / 2], max, total);
    }
    println!("worst page: {worst:.2} ms; sizes include the stylesheet (the whole page load without caching)");
    let _ = tx.send(());
    let _ = task.await;
}
