//! `hermes-loadgen`: a load generator for IMAP and LMTP servers (Hermes, or a peer such as Dovecot).
//!
//! It is a benchmark tool, not a test: it measures, it asserts nothing. Three workloads:
//!
//! * **IMAP** (`--imap HOST:PORT --clients N`): each client loops one whole session —
//!   LOGIN, SELECT INBOX, FETCH 1:* (FLAGS), FETCH n BODY.PEEK[], STORE n +FLAGS (\Seen),
//!   APPEND a 10 KB message flagged \Deleted, EXPUNGE, LOGOUT — until `--duration` runs out.
//!   Every command is one "op"; a whole loop is one "session".
//! * **LMTP** (`--lmtp HOST:PORT --lmtp-clients M`): each client keeps one connection and delivers
//!   10 KB messages (MAIL, RCPT to a random user, DATA) until the duration runs out.
//! * **SMTP** (`--smtp HOST:PORT --smtp-sessions N --messages M`): N sessions send M messages
//!   in all (MAIL, RCPT to `--rcpts-per-message` recipients of `--rcpt-pattern` in round-robin,
//!   DATA, pipelined when offered) and time the last 250: the acceptance rate. With
//!   `--verify-imap HOST:PORT` it then polls `STATUS INBOX (MESSAGES)` of every recipient
//!   (logging in with `--user-pattern`/`--password`, same `{n}`) until every accepted copy is
//!   in the store: a message counts as delivered end to end only once IMAP shows it.
//! * **IDLE** (`--idle N`): opens N connections, logs in, selects INBOX and enters IDLE, reports
//!   when all are idling and, given `--rss-pid PID`, the server process's VmRSS before and after
//!   divided by N.
//!
//! It deliberately is not a general IMAP client: it parses just enough (tagged status, literals,
//! `* N EXISTS`) to drive the loop, and treats any NO/BAD or I/O error as an error of that op.
//! Only `--tls none` is supported: the benchmark compares servers, not TLS stacks.

use anyhow::{Context, Result, bail};
use clap::Parser;
use rand::Rng;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Semaphore;

#[derive(Parser, Debug, Clone)]
#[command(name = "hermes-loadgen", about = "IMAP/LMTP load generator for Hermes and peers")]
struct Args {
    /// IMAP server address (HOST:PORT); enables the IMAP workload (or the IDLE mode).
    #[arg(long)]
    imap: Option<String>,
    /// LMTP server address (HOST:PORT); enables the LMTP workload.
    #[arg(long)]
    lmtp: Option<String>,
    /// File of users: one `login<whitespace>password` per line.
    #[arg(long)]
    users: Option<String>,
    /// Login pattern when no --users file: `{n}` is replaced by 1..=--user-count.
    #[arg(long, default_value = "u{n}@example.org")]
    user_pattern: String,
    #[arg(long, default_value_t = 100)]
    user_count: usize,
    /// Password for every pattern user.
    #[arg(long, default_value = "pass")]
    password: String,
    /// LMTP recipient pattern (`{n}` as above); defaults to --user-pattern.
    #[arg(long)]
    rcpt_pattern: Option<String>,
    /// Concurrent IMAP clients.
    #[arg(long, default_value_t = 10)]
    clients: usize,
    /// Concurrent LMTP clients.
    #[arg(long, default_value_t = 4)]
    lmtp_clients: usize,
    /// Seconds to run the IMAP/LMTP workloads.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Message size in bytes for APPEND and LMTP.
    #[arg(long, default_value_t = 10 * 1024)]
    message_size: usize,
    /// Messages appended to each user's INBOX before the timed run (not measured).
    #[arg(long, default_value_t = 0)]
    prefill: usize,
    /// TLS mode; only `none` (plaintext) is supported.
    #[arg(long, default_value = "none")]
    tls: String,
    /// IDLE mode: open this many IDLE connections and report.
    #[arg(long)]
    idle: Option<usize>,
    /// Connections set up at once in IDLE mode.
    #[arg(long, default_value_t = 64)]
    idle_concurrency: usize,
    /// Seconds to hold the IDLE connections after all are idling.
    #[arg(long, default_value_t = 2.0)]
    hold: f64,
    /// IDLE mode: logins done (and closed) at the same concurrency before the "before" RSS is
    /// read, so the server's thread pool and allocator arenas (argon2 needs ~19 MiB per
    /// verification) are already warm and not counted as per-connection memory.
    #[arg(long, default_value_t = 256)]
    idle_warmup: usize,
    /// IDLE mode safety valve for a shared machine: stop opening connections once the measured
    /// process has grown by this many MiB (the report says so; the figure per connection stays valid).
    #[arg(long, default_value_t = 6144)]
    rss_limit_mib: u64,
    /// Process whose VmRSS is measured before/after (IDLE mode).
    #[arg(long)]
    rss_pid: Option<u32>,
    /// SMTP server address (HOST:PORT); enables the SMTP workload (see the module docs).
    #[arg(long)]
    smtp: Option<String>,
    /// Concurrent SMTP sessions.
    #[arg(long, default_value_t = 20)]
    smtp_sessions: usize,
    /// Messages sent in all (SMTP workload).
    #[arg(long, default_value_t = 2000)]
    messages: usize,
    /// Recipients per message (SMTP workload).
    #[arg(long, default_value_t = 1)]
    rcpts_per_message: usize,
    /// Envelope sender for the SMTP workload.
    #[arg(long, default_value = "loadgen@sender.example")]
    mail_from: String,
    /// SMTP workload: IMAP server where the recipients' INBOXes are counted (end to end).
    #[arg(long)]
    verify_imap: Option<String>,
    /// SMTP workload: give up waiting for delivery after this many seconds.
    #[arg(long, default_value_t = 600.0)]
    verify_timeout: f64,
    /// Print one JSON object instead of the human summary.
    #[arg(long)]
    json: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.tls != "none" {
        bail!("--tls {}: only `none` is supported", args.tls);
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run(args))
}

#[derive(Debug, Clone)]
struct User {
    login: String,
    password: String,
}

fn load_users(args: &Args) -> Result<Vec<User>> {
    let users: Vec<User> = match &args.users {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading {path}"))?
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|l| {
                let mut it = l.split_whitespace();
                let login = it.next().unwrap_or_default().to_string();
                let password = it.next().unwrap_or_default().to_string();
                User { login, password }
            })
            .collect(),
        None => (1..=args.user_count)
            .map(|n| User { login: args.user_pattern.replace("{n}", &n.to_string()), password: args.password.clone() })
            .collect(),
    };
    if users.is_empty() {
        bail!("no users");
    }
    Ok(users)
}

async fn run(args: Args) -> Result<()> {
    let users = Arc::new(load_users(&args)?);
    if let Some(n) = args.idle {
        let imap = args.imap.clone().context("--idle needs --imap")?;
        return idle_mode(&args, &imap, users, n).await;
    }
    if let Some(smtp) = args.smtp.clone() {
        return smtp_mode(&args, &smtp).await;
    }
    if args.imap.is_none() && args.lmtp.is_none() {
        bail!("nothing to do: give --imap and/or --lmtp (or --smtp, or --idle N)");
    }
    let body = Arc::new(make_message(args.message_size, "loadgen"));
    if let (Some(imap), true) = (&args.imap, args.prefill > 0) {
        prefill(imap, &users, args.prefill, &body).await?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut imap_tasks = Vec::new();
    if let Some(imap) = &args.imap {
        for i in 0..args.clients {
            let (imap, users, body, stop, errors) =
                (imap.clone(), users.clone(), body.clone(), stop.clone(), errors.clone());
            imap_tasks.push(tokio::spawn(async move { imap_client(i, imap, users, body, stop, errors).await }));
        }
    }
    let mut lmtp_tasks = Vec::new();
    let lmtp_errors = Arc::new(AtomicU64::new(0));
    if let Some(lmtp) = &args.lmtp {
        let rcpts: Arc<Vec<String>> = Arc::new(match &args.rcpt_pattern {
            Some(p) => (1..=args.user_count).map(|n| p.replace("{n}", &n.to_string())).collect(),
            None => users.iter().map(|u| u.login.clone()).collect(),
        });
        for i in 0..args.lmtp_clients {
            let (lmtp, rcpts, size, stop, errors) =
                (lmtp.clone(), rcpts.clone(), args.message_size, stop.clone(), lmtp_errors.clone());
            lmtp_tasks.push(tokio::spawn(async move { lmtp_client(i, lmtp, rcpts, size, stop, errors).await }));
        }
    }
    tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    stop.store(true, Ordering::SeqCst);
    let mut imap_stats = Stats::default();
    for t in imap_tasks {
        imap_stats.merge(t.await?);
    }
    let mut lmtp_stats = Stats::default();
    for t in lmtp_tasks {
        lmtp_stats.merge(t.await?);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let report = Report {
        elapsed_secs: elapsed,
        imap: args.imap.as_ref().map(|_| imap_stats.summary(elapsed, errors.load(Ordering::SeqCst))),
        lmtp: args.lmtp.as_ref().map(|_| lmtp_stats.summary(elapsed, lmtp_errors.load(Ordering::SeqCst))),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

/// A message of about `size` bytes with CRLF line ends and a unique Message-ID.
fn make_message(size: usize, tag: &str) -> Vec<u8> {
    let mut rng = rand::thread_rng();
    let id: u64 = rng.r#gen();
    let mut m = format!(
        "From: Load Generator <loadgen@example.org>\r\nTo: someone@example.org\r\nSubject: {tag} {id:016x}\r\n\
         Date: Sat, 28 Nov 2026 12:00:00 +0000\r\nMessage-ID: <{id:016x}.{tag}@loadgen.example.org>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
    )
    .into_bytes();
    let line = b"The quick brown fox jumps over the lazy dog; lorem ipsum dolor sit amet 0123456789.\r\n";
    while m.len() + line.len() <= size {
        m.extend_from_slice(line);
    }
    while m.len() + 2 < size {
        m.push(b'x');
    }
    m.extend_from_slice(b"\r\n");
    m
}

// ---------------------------------------------------------------------------------------------
// A minimal IMAP connection.

struct Imap {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
    tag: u64,
}

/// What a command returned: the untagged lines (literals inlined) and whether the tagged status was OK.
struct Reply {
    untagged: Vec<Vec<u8>>,
    ok: bool,
    status_line: String,
}

impl Imap {
    async fn connect(addr: &str) -> Result<Imap> {
        let s = TcpStream::connect(addr).await.with_context(|| format!("connect {addr}"))?;
        s.set_nodelay(true)?;
        let (r, w) = s.into_split();
        let mut c = Imap { r: BufReader::with_capacity(16 * 1024, r), w, tag: 0 };
        let greeting = c.read_line().await?;
        if !greeting.starts_with(b"* OK") && !greeting.starts_with(b"* PREAUTH") {
            bail!("bad greeting: {}", String::from_utf8_lossy(&greeting));
        }
        Ok(c)
    }

    /// Reads one response line, with any literals it announces appended inline.
    async fn read_line(&mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let start = out.len();
            let n = self.r.read_until(b'\n', &mut out).await?;
            if n == 0 {
                bail!("connection closed");
            }
            let line = &out[start..];
            // `{N}\r\n` at the end of the line announces a literal of N bytes.
            if let Some(len) = literal_len(line) {
                let at = out.len();
                out.resize(at + len, 0);
                self.r.read_exact(&mut out[at..]).await?;
                continue;
            }
            return Ok(out);
        }
    }

    fn next_tag(&mut self) -> String {
        self.tag += 1;
        format!("A{}", self.tag)
    }

    async fn read_until_tagged(&mut self, tag: &str) -> Result<Reply> {
        let mut untagged = Vec::new();
        loop {
            let line = self.read_line().await?;
            if line.starts_with(tag.as_bytes()) && line.get(tag.len()) == Some(&b' ') {
                let rest = &line[tag.len() + 1..];
                return Ok(Reply {
                    untagged,
                    ok: rest.starts_with(b"OK"),
                    status_line: String::from_utf8_lossy(&line).trim_end().to_string(),
                });
            }
            untagged.push(line);
        }
    }

    async fn command(&mut self, cmd: &str) -> Result<Reply> {
        let tag = self.next_tag();
        self.w.write_all(format!("{tag} {cmd}\r\n").as_bytes()).await?;
        self.read_until_tagged(&tag).await
    }

    /// A command whose last argument is a synchronising literal (waits for `+`).
    async fn command_with_literal(&mut self, head: &str, data: &[u8]) -> Result<Reply> {
        let tag = self.next_tag();
        self.w.write_all(format!("{tag} {head} {{{}}}\r\n", data.len()).as_bytes()).await?;
        loop {
            let line = self.read_line().await?;
            if line.starts_with(b"+") {
                break;
            }
            if line.starts_with(tag.as_bytes()) {
                return Ok(Reply { untagged: vec![], ok: false, status_line: String::from_utf8_lossy(&line).into() });
            }
        }
        self.w.write_all(data).await?;
        self.w.write_all(b"\r\n").await?;
        self.read_until_tagged(&tag).await
    }
}

fn literal_len(line: &[u8]) -> Option<usize> {
    let l = line.strip_suffix(b"\r\n").or_else(|| line.strip_suffix(b"\n"))?;
    let l = l.strip_suffix(b"}")?;
    let open = l.iter().rposition(|&b| b == b'{')?;
    let digits = &l[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn exists_of(untagged: &[Vec<u8>]) -> Option<u32> {
    untagged.iter().rev().find_map(|l| {
        let s = std::str::from_utf8(l).ok()?;
        let mut it = s.trim_end().split(' ');
        if it.next()? != "*" {
            return None;
        }
        let n = it.next()?.parse().ok()?;
        (it.next()? == "EXISTS").then_some(n)
    })
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

async fn login(c: &mut Imap, u: &User) -> Result<()> {
    let r = c.command(&format!("LOGIN {} {}", quote(&u.login), quote(&u.password))).await?;
    if !r.ok {
        bail!("LOGIN {}: {}", u.login, r.status_line);
    }
    Ok(())
}

async fn prefill(addr: &str, users: &[User], per_user: usize, body: &[u8]) -> Result<()> {
    let sem = Arc::new(Semaphore::new(16));
    let mut tasks = Vec::new();
    for u in users.iter().cloned() {
        let (addr, body, sem) = (addr.to_string(), body.to_vec(), sem.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await?;
            let mut c = Imap::connect(&addr).await?;
            login(&mut c, &u).await?;
            for _ in 0..per_user {
                let r = c.command_with_literal("APPEND INBOX", &body).await?;
                if !r.ok {
                    bail!("prefill APPEND for {}: {}", u.login, r.status_line);
                }
            }
            c.command("LOGOUT").await?;
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Statistics.

#[derive(Default)]
struct Stats {
    /// Per op name: latencies in microseconds.
    lat: std::collections::BTreeMap<&'static str, Vec<u32>>,
    sessions: u64,
}

impl Stats {
    fn record(&mut self, op: &'static str, t: Instant) {
        let us = t.elapsed().as_micros().min(u32::MAX as u128) as u32;
        self.lat.entry(op).or_default().push(us);
    }
    fn merge(&mut self, other: Stats) {
        for (k, mut v) in other.lat {
            self.lat.entry(k).or_default().append(&mut v);
        }
        self.sessions += other.sessions;
    }
    fn summary(mut self, elapsed: f64, errors: u64) -> Summary {
        let mut all: Vec<u32> = Vec::new();
        let mut per_op = Vec::new();
        for (k, v) in self.lat.iter_mut() {
            v.sort_unstable();
            all.extend_from_slice(v);
            per_op.push(OpSummary { op: k, count: v.len() as u64, p50_ms: pct(v, 0.50), p99_ms: pct(v, 0.99) });
        }
        all.sort_unstable();
        let ops = all.len() as u64;
        Summary {
            ops,
            ops_per_sec: ops as f64 / elapsed,
            sessions: self.sessions,
            sessions_per_sec: self.sessions as f64 / elapsed,
            p50_ms: pct(&all, 0.50),
            p99_ms: pct(&all, 0.99),
            errors,
            per_op,
        }
    }
}

fn pct(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i] as f64 / 1000.0
}

#[derive(Serialize)]
struct OpSummary {
    op: &'static str,
    count: u64,
    p50_ms: f64,
    p99_ms: f64,
}

#[derive(Serialize)]
struct Summary {
    ops: u64,
    ops_per_sec: f64,
    /// IMAP: complete login..logout loops; LMTP: messages delivered.
    sessions: u64,
    sessions_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    per_op: Vec<OpSummary>,
}

#[derive(Serialize)]
struct Report {
    elapsed_secs: f64,
    imap: Option<Summary>,
    lmtp: Option<Summary>,
}

fn print_report(r: &Report) {
    println!("elapsed {:.1}s", r.elapsed_secs);
    for (name, s) in [("IMAP", &r.imap), ("LMTP", &r.lmtp)] {
        let Some(s) = s else { continue };
        let unit = if name == "IMAP" { "sessions" } else { "messages" };
        println!(
            "{name}: {} ops ({:.1} ops/s), {} {unit} ({:.1}/s), latency p50 {:.2} ms p99 {:.2} ms, errors {}",
            s.ops, s.ops_per_sec, s.sessions, s.sessions_per_sec, s.p50_ms, s.p99_ms, s.errors
        );
        for o in &s.per_op {
            println!("  {:<12} {:>8}  p50 {:>8.2} ms  p99 {:>8.2} ms", o.op, o.count, o.p50_ms, o.p99_ms);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// IMAP workload.

async fn imap_client(
    idx: usize,
    addr: String,
    users: Arc<Vec<User>>,
    body: Arc<Vec<u8>>,
    stop: Arc<AtomicBool>,
    errors: Arc<AtomicU64>,
) -> Stats {
    let mut stats = Stats::default();
    while !stop.load(Ordering::Relaxed) {
        let user = &users[rand::thread_rng().gen_range(0..users.len())];
        match imap_session(&addr, user, &body, &mut stats).await {
            Ok(()) => stats.sessions += 1,
            Err(e) => {
                if errors.fetch_add(1, Ordering::Relaxed) < 5 {
                    eprintln!("imap client {idx}: {e:#}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    stats
}

async fn timed<T>(stats: &mut Stats, op: &'static str, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    let t = Instant::now();
    let v = f.await?;
    stats.record(op, t);
    Ok(v)
}

fn check(r: Reply, what: &str) -> Result<Reply> {
    if r.ok { Ok(r) } else { bail!("{what}: {}", r.status_line) }
}

async fn imap_session(addr: &str, user: &User, body: &[u8], stats: &mut Stats) -> Result<()> {
    let mut c = timed(stats, "connect", Imap::connect(addr)).await?;
    timed(stats, "login", login(&mut c, user)).await?;
    let sel = timed(stats, "select", async { check(c.command("SELECT INBOX").await?, "SELECT") }).await?;
    let exists = exists_of(&sel.untagged).unwrap_or(0);
    if exists > 0 {
        timed(stats, "fetch_flags", async { check(c.command("FETCH 1:* (FLAGS)").await?, "FETCH FLAGS") }).await?;
        let n = rand::thread_rng().gen_range(1..=exists);
        timed(stats, "fetch_body", async { check(c.command(&format!("FETCH {n} BODY.PEEK[]")).await?, "FETCH BODY") })
            .await?;
        timed(stats, "store", async { check(c.command(&format!("STORE {n} +FLAGS (\\Seen)")).await?, "STORE") })
            .await?;
    }
    timed(stats, "append", async { check(c.command_with_literal("APPEND INBOX (\\Deleted)", body).await?, "APPEND") })
        .await?;
    timed(stats, "expunge", async { check(c.command("EXPUNGE").await?, "EXPUNGE") }).await?;
    timed(stats, "logout", async { check(c.command("LOGOUT").await?, "LOGOUT") }).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// LMTP workload.

struct Lmtp {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

impl Lmtp {
    async fn connect(addr: &str) -> Result<Lmtp> {
        let s = TcpStream::connect(addr).await.with_context(|| format!("connect {addr}"))?;
        s.set_nodelay(true)?;
        let (r, w) = s.into_split();
        let mut c = Lmtp { r: BufReader::new(r), w };
        c.expect(2).await.context("greeting")?;
        c.w.write_all(b"LHLO loadgen.example.org\r\n").await?;
        c.expect(2).await.context("LHLO")?;
        Ok(c)
    }

    /// Reads one (possibly multi-line) reply; fails unless its code starts with `class`.
    async fn expect(&mut self, class: u8) -> Result<()> {
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line).await? == 0 {
                bail!("connection closed");
            }
            let b = line.as_bytes();
            if b.len() < 4 {
                bail!("short reply {line:?}");
            }
            if b[3] == b'-' {
                continue;
            }
            if b[0] != b'0' + class {
                bail!("unexpected reply {}", line.trim_end());
            }
            return Ok(());
        }
    }

    async fn deliver(&mut self, rcpt: &str, msg: &[u8]) -> Result<()> {
        self.w.write_all(format!("MAIL FROM:<loadgen@example.org>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n").as_bytes()).await?;
        self.expect(2).await.context("MAIL")?;
        self.expect(2).await.context("RCPT")?;
        self.expect(3).await.context("DATA")?;
        self.w.write_all(msg).await?; // make_message never starts a line with '.'
        self.w.write_all(b".\r\n").await?;
        self.expect(2).await.context("end of data")?; // one reply per accepted recipient
        Ok(())
    }
}

async fn lmtp_client(
    idx: usize,
    addr: String,
    rcpts: Arc<Vec<String>>,
    size: usize,
    stop: Arc<AtomicBool>,
    errors: Arc<AtomicU64>,
) -> Stats {
    let mut stats = Stats::default();
    let mut conn: Option<Lmtp> = None;
    while !stop.load(Ordering::Relaxed) {
        if conn.is_none() {
            match Lmtp::connect(&addr).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    if errors.fetch_add(1, Ordering::Relaxed) < 5 {
                        eprintln!("lmtp client {idx}: {e:#}");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        let rcpt = &rcpts[rand::thread_rng().gen_range(0..rcpts.len())];
        let msg = make_message(size, "lmtp");
        let t = Instant::now();
        let res = match conn.as_mut() {
            Some(c) => c.deliver(rcpt, &msg).await,
            None => continue,
        };
        match res {
            Ok(()) => {
                stats.record("deliver", t);
                stats.sessions += 1;
            }
            Err(e) => {
                if errors.fetch_add(1, Ordering::Relaxed) < 5 {
                    eprintln!("lmtp client {idx}: {e:#}");
                }
                conn = None;
            }
        }
    }
    if let Some(mut c) = conn {
        let _ = c.w.write_all(b"QUIT\r\n").await;
    }
    stats
}

// ---------------------------------------------------------------------------------------------
// SMTP workload: acceptance rate, then end-to-end delivery counted in the store over IMAP.

/// Reads one SMTP reply (multi-line aware); returns its code.
async fn smtp_reply(r: &mut BufReader<OwnedReadHalf>) -> Result<u16> {
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            bail!("connection closed");
        }
        let b = line.as_bytes();
        let code: u16 = line.get(..3).and_then(|c| c.parse().ok()).with_context(|| format!("bad reply {line:?}"))?;
        if b.get(3) == Some(&b'-') {
            continue;
        }
        return Ok(code);
    }
}

async fn smtp_expect(r: &mut BufReader<OwnedReadHalf>, class: u16, what: &str) -> Result<()> {
    let code = smtp_reply(r).await?;
    if code / 100 != class {
        bail!("{what}: reply {code}");
    }
    Ok(())
}

/// One SMTP session sending the messages `next` hands out; returns per-message latencies.
#[allow(clippy::too_many_arguments, reason = "one session's whole workload; a struct would only rename it")]
async fn smtp_session(
    addr: String,
    rcpts: Arc<Vec<String>>,
    per_message: usize,
    size: usize,
    from: String,
    next: Arc<AtomicU64>,
    total: u64,
    stats: &mut Stats,
) -> Result<u64> {
    let s = TcpStream::connect(&addr).await.with_context(|| format!("connect {addr}"))?;
    s.set_nodelay(true)?;
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    smtp_expect(&mut r, 2, "greeting").await?;
    w.write_all(b"EHLO loadgen.example.org\r\n").await?;
    let mut pipelining = false;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            bail!("connection closed");
        }
        if line.get(4..).is_some_and(|c| c.trim_end().eq_ignore_ascii_case("PIPELINING")) {
            pipelining = true;
        }
        if !line.starts_with("250") {
            bail!("EHLO: {}", line.trim_end());
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            break;
        }
    }
    let mut sent = 0;
    loop {
        let j = next.fetch_add(1, Ordering::SeqCst);
        if j >= total {
            break;
        }
        let msg = make_message(size, "smtp");
        let t = Instant::now();
        let to: Vec<&String> = (0..per_message).map(|k| &rcpts[(j as usize * per_message + k) % rcpts.len()]).collect();
        let mut cmds = format!("MAIL FROM:<{from}>\r\n");
        for a in &to {
            cmds.push_str(&format!("RCPT TO:<{a}>\r\n"));
        }
        cmds.push_str("DATA\r\n");
        if pipelining {
            w.write_all(cmds.as_bytes()).await?;
            smtp_expect(&mut r, 2, "MAIL").await?;
            for _ in &to {
                smtp_expect(&mut r, 2, "RCPT").await?;
            }
            smtp_expect(&mut r, 3, "DATA").await?;
        } else {
            for line in cmds.split_inclusive("\r\n") {
                w.write_all(line.as_bytes()).await?;
                let class = if line.starts_with("DATA") { 3 } else { 2 };
                smtp_expect(&mut r, class, line.trim_end()).await?;
            }
        }
        w.write_all(&msg).await?; // make_message never starts a line with '.'
        w.write_all(b".\r\n").await?;
        smtp_expect(&mut r, 2, "end of data").await?;
        stats.record("message", t);
        sent += 1;
    }
    w.write_all(b"QUIT\r\n").await?;
    let _ = smtp_reply(&mut r).await;
    Ok(sent)
}

/// `STATUS INBOX (MESSAGES)` of each user, on one logged-in connection per user.
async fn inbox_counts(conns: &mut [Imap]) -> Result<Vec<u64>> {
    let mut out = Vec::with_capacity(conns.len());
    for c in conns.iter_mut() {
        let r = check(c.command("STATUS INBOX (MESSAGES)").await?, "STATUS")?;
        let n = r
            .untagged
            .iter()
            .find_map(|l| {
                let s = String::from_utf8_lossy(l);
                let i = s.find("MESSAGES ")?;
                s[i + 9..].trim_end().trim_end_matches(')').split([' ', ')']).next()?.parse().ok()
            })
            .context("no MESSAGES in STATUS reply")?;
        out.push(n);
    }
    Ok(out)
}

#[derive(Serialize)]
struct SmtpReport {
    sessions: usize,
    messages: u64,
    recipients_per_message: usize,
    message_size: usize,
    accepted: u64,
    errors: u64,
    accept_secs: f64,
    accepted_per_sec: f64,
    accept_p50_ms: f64,
    accept_p99_ms: f64,
    /// End to end (with --verify-imap): copies found in the store, and the time from the first
    /// connection until the last one appeared.
    delivered: Option<u64>,
    e2e_secs: Option<f64>,
    delivered_per_sec: Option<f64>,
}

async fn smtp_mode(args: &Args, addr: &str) -> Result<()> {
    let rcpt_pattern = args.rcpt_pattern.clone().unwrap_or_else(|| args.user_pattern.clone());
    let rcpts: Arc<Vec<String>> =
        Arc::new((1..=args.user_count).map(|n| rcpt_pattern.replace("{n}", &n.to_string())).collect());
    let mut imap_conns = Vec::new();
    let mut baseline = Vec::new();
    if let Some(imap) = &args.verify_imap {
        let users = load_users(args)?;
        for u in &users {
            let mut c = Imap::connect(imap).await?;
            login(&mut c, u).await?;
            imap_conns.push(c);
        }
        baseline = inbox_counts(&mut imap_conns).await?;
    }
    let total = args.messages as u64;
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..args.smtp_sessions.max(1) {
        let (addr, rcpts, next, errors) = (addr.to_string(), rcpts.clone(), next.clone(), errors.clone());
        let (per, size, from) = (args.rcpts_per_message.max(1), args.message_size, args.mail_from.clone());
        tasks.push(tokio::spawn(async move {
            let mut stats = Stats::default();
            let mut sent = 0;
            // A failed session is reconnected; the message it was on is counted as an error.
            while next.load(Ordering::SeqCst) < total {
                match smtp_session(
                    addr.clone(),
                    rcpts.clone(),
                    per,
                    size,
                    from.clone(),
                    next.clone(),
                    total,
                    &mut stats,
                )
                .await
                {
                    Ok(n) => {
                        sent += n;
                        break;
                    }
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 5 {
                            eprintln!("smtp session {i}: {e:#}");
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            (stats, sent)
        }));
    }
    let mut stats = Stats::default();
    let mut accepted = 0;
    for t in tasks {
        let (s, n) = t.await?;
        stats.merge(s);
        accepted += n;
    }
    let accept_secs = start.elapsed().as_secs_f64();
    let lat = stats.lat.get_mut("message").map(std::mem::take).unwrap_or_default();
    let mut lat = lat;
    lat.sort_unstable();
    let (mut delivered, mut e2e_secs) = (None, None);
    if !imap_conns.is_empty() {
        let expected = accepted * args.rcpts_per_message.max(1) as u64;
        let deadline = Instant::now() + Duration::from_secs_f64(args.verify_timeout);
        loop {
            let now = inbox_counts(&mut imap_conns).await?;
            let got: u64 = now.iter().zip(&baseline).map(|(n, b)| n.saturating_sub(*b)).sum();
            if got >= expected || Instant::now() >= deadline {
                e2e_secs = Some(start.elapsed().as_secs_f64());
                delivered = Some(got);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for mut c in imap_conns {
            let _ = c.command("LOGOUT").await;
        }
    }
    let report = SmtpReport {
        sessions: args.smtp_sessions,
        messages: total,
        recipients_per_message: args.rcpts_per_message.max(1),
        message_size: args.message_size,
        accepted,
        errors: errors.load(Ordering::SeqCst),
        accept_secs,
        accepted_per_sec: accepted as f64 / accept_secs,
        accept_p50_ms: pct(&lat, 0.50),
        accept_p99_ms: pct(&lat, 0.99),
        delivered,
        e2e_secs,
        delivered_per_sec: match (delivered, e2e_secs) {
            (Some(d), Some(t)) => Some(d as f64 / t),
            _ => None,
        },
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "SMTP: {} of {} messages accepted in {:.2}s ({:.1}/s, p50 {:.2} ms, p99 {:.2} ms), {} errors",
            report.accepted,
            report.messages,
            report.accept_secs,
            report.accepted_per_sec,
            report.accept_p50_ms,
            report.accept_p99_ms,
            report.errors
        );
        if let (Some(d), Some(t)) = (delivered, e2e_secs) {
            println!("end to end: {d} copies in the store after {t:.2}s ({:.1}/s)", d as f64 / t);
        }
    }
    if let Some(d) = delivered
        && d < accepted * args.rcpts_per_message.max(1) as u64
    {
        bail!("only {d} of the accepted copies reached the store within {}s", args.verify_timeout);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// IDLE mode.

fn vm_rss_kib(pid: u32) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("/proc/{pid}/status"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

#[derive(Serialize)]
struct IdleReport {
    connections: usize,
    idling: usize,
    failed: usize,
    setup_secs: f64,
    rss_before_kib: Option<u64>,
    rss_after_kib: Option<u64>,
    rss_per_connection_kib: Option<f64>,
    /// Set when the RSS safety valve stopped the run before N connections.
    rss_limited: bool,
}

async fn idle_mode(args: &Args, addr: &str, users: Arc<Vec<User>>, n: usize) -> Result<()> {
    let sem = Arc::new(Semaphore::new(args.idle_concurrency.max(1)));
    let mut warm = Vec::new();
    for i in 0..args.idle_warmup {
        let (addr, user, sem) = (addr.to_string(), users[i % users.len()].clone(), sem.clone());
        warm.push(tokio::spawn(async move {
            let _permit = sem.acquire().await?;
            let mut c = Imap::connect(&addr).await?;
            login(&mut c, &user).await?;
            check(c.command("SELECT INBOX").await?, "SELECT")?;
            c.command("LOGOUT").await?;
            anyhow::Ok(())
        }));
    }
    for t in warm {
        t.await?.context("warm-up session")?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = args.rss_pid.map(vm_rss_kib).transpose()?;
    let start = Instant::now();
    let aborted = Arc::new(AtomicBool::new(false));
    if let (Some(pid), Some(before)) = (args.rss_pid, rss_before) {
        let (aborted, limit_kib) = (aborted.clone(), args.rss_limit_mib * 1024);
        tokio::spawn(async move {
            while !aborted.load(Ordering::SeqCst) {
                match vm_rss_kib(pid) {
                    Ok(now) if now.saturating_sub(before) > limit_kib => {
                        eprintln!(
                            "RSS of {pid} grew by more than {} MiB: opening no more connections",
                            limit_kib / 1024
                        );
                        aborted.store(true, Ordering::SeqCst);
                    }
                    Err(_) => aborted.store(true, Ordering::SeqCst),
                    _ => {}
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
    let (done_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<Result<()>>(n.max(1));
    let mut tasks = Vec::new();
    for i in 0..n {
        let (addr, user, sem, ready_tx) =
            (addr.to_string(), users[i % users.len()].clone(), sem.clone(), ready_tx.clone());
        let mut done_rx = done_tx.subscribe();
        let aborted = aborted.clone();
        tasks.push(tokio::spawn(async move {
            let setup = async {
                let _permit = sem.acquire().await?;
                if aborted.load(Ordering::SeqCst) {
                    bail!("not opened: RSS limit reached");
                }
                let mut c = Imap::connect(&addr).await?;
                login(&mut c, &user).await?;
                check(c.command("SELECT INBOX").await?, "SELECT")?;
                let tag = c.next_tag();
                c.w.write_all(format!("{tag} IDLE\r\n").as_bytes()).await?;
                loop {
                    let l = c.read_line().await?;
                    if l.starts_with(b"+") {
                        break;
                    }
                    if l.starts_with(tag.as_bytes()) {
                        bail!("IDLE refused: {}", String::from_utf8_lossy(&l).trim_end());
                    }
                }
                anyhow::Ok((c, tag))
            };
            match setup.await {
                Ok((mut c, tag)) => {
                    let _ = ready_tx.send(Ok(())).await;
                    let _ = done_rx.recv().await;
                    let _ = c.w.write_all(b"DONE\r\n").await;
                    let _ = c.read_until_tagged(&tag).await;
                    let _ = c.command("LOGOUT").await;
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e)).await;
                }
            }
        }));
    }
    drop(ready_tx);
    let (mut idling, mut failed) = (0usize, 0usize);
    while idling + failed < n {
        match ready_rx.recv().await {
            Some(Ok(())) => idling += 1,
            Some(Err(e)) => {
                failed += 1;
                if failed <= 5 && !aborted.load(Ordering::SeqCst) {
                    eprintln!("idle connection failed: {e:#}");
                }
            }
            None => break,
        }
    }
    let setup_secs = start.elapsed().as_secs_f64();
    let rss_limited = aborted.swap(true, Ordering::SeqCst); // also stops the watcher
    // Let the server settle (buffers shrink, lazy allocations happen) before measuring.
    tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    let rss_after = args.rss_pid.map(vm_rss_kib).transpose()?;
    let per = match (rss_before, rss_after) {
        (Some(b), Some(a)) if idling > 0 => Some((a as f64 - b as f64) / idling as f64),
        _ => None,
    };
    let _ = done_tx.send(());
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
    }
    let report = IdleReport {
        connections: n,
        idling,
        failed,
        setup_secs,
        rss_before_kib: rss_before,
        rss_after_kib: rss_after,
        rss_per_connection_kib: per,
        rss_limited,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "IDLE: {idling}/{n} connections idling after {setup_secs:.1}s ({failed} failed); RSS before {:?} KiB, after {:?} KiB, per connection {}",
            rss_before,
            rss_after,
            per.map(|p| format!("{p:.1} KiB")).unwrap_or_else(|| "n/a".into())
        );
    }
    if failed > 0 {
        bail!("{failed} IDLE connections failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_announcements_are_recognised() {
        assert_eq!(literal_len(b"* 1 FETCH (BODY[] {42}\r\n"), Some(42));
        assert_eq!(literal_len(b"A1 APPEND INBOX {7+}\r\n"), Some(7));
        assert_eq!(literal_len(b"* OK {not a literal}\r\n"), None);
        assert_eq!(literal_len(b"* 3 EXISTS\r\n"), None);
    }

    #[test]
    fn exists_is_taken_from_the_last_exists_line() {
        let lines = vec![b"* 3 EXISTS\r\n".to_vec(), b"* 0 RECENT\r\n".to_vec(), b"* 5 EXISTS\r\n".to_vec()];
        assert_eq!(exists_of(&lines), Some(5));
        assert_eq!(exists_of(&[b"* FLAGS ()\r\n".to_vec()]), None);
    }

    #[test]
    fn messages_have_the_requested_size_and_crlf_lines() {
        let m = make_message(10 * 1024, "t");
        assert_eq!(m.len(), 10 * 1024);
        assert!(m.ends_with(b"\r\n"));
        assert!(!m.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
        assert!(!m.windows(3).any(|w| w == b"\n.\r" || w == b"\n.."));
    }

    #[test]
    fn percentiles_pick_from_sorted_samples() {
        let v: Vec<u32> = (1..=100).map(|x| x * 1000).collect();
        assert_eq!(pct(&v, 0.5), 51.0);
        assert_eq!(pct(&v, 0.99), 99.0);
        assert_eq!(pct(&[], 0.5), 0.0);
    }
}
