//! SEARCH, SORT and THREAD latency on large mailboxes, and POP3 download throughput, Hermes beside
//! Dovecot in the same run (issue 3, points 6 and 9). `scripts/bench-search.sh` starts both
//! servers and runs this; docs/performance.md ("Search, sort and thread") explains the method.
//!
//! What it does, for each server given:
//! 1. **Fill** (skipped when the mailbox already holds enough): delivers generated messages over
//!    LMTP, several sessions in parallel, the same messages to both servers (both fills run at
//!    once). The corpus: 2,000 senders (some with encoded-word names), threads of 1–12 messages
//!    linked by References/In-Reply-To, subjects with Re:/Fwd: leaders, bodies from a Zipf-like
//!    vocabulary as text/plain UTF-8, ISO-8859-1 quoted-printable, base64, multipart/alternative
//!    with HTML and multipart/mixed with a base64 attachment; a rare word in 1 message of 1,000,
//!    a common word in about a quarter.
//! 2. **IMAP**: a new session logs in and SELECTs the mailbox; each command is timed once
//!    (cold: the first after SELECT) and then 5 more times (warm: the median).
//! 3. **POP3**: USER/PASS, then RETR of every message of a maildrop: MB/s and messages/s.
//!
//! Plain std networking, blocking, one request at a time: the latency of one client.
//!
//! Usage: `search_bench --server NAME,IMAP,LMTP,POP3,USER_PATTERN,RCPT_PATTERN,BASE
//! [--server ...] --sizes 10000,100000 --pop 1000 --password pass [--runs 5] [--fill-sessions 4]`.
//! `USER_PATTERN` and `RCPT_PATTERN` contain `{n}`, replaced by the mailbox slot (1, 2, ... for
//! each size, then one for POP3) plus that server's `BASE`.

#![allow(clippy::unwrap_used)] // a benchmark tool: a failed unwrap is a failed run

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// The corpus

struct Rng(u64);
impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const SYLLABLES: &[&str] = &[
    "ka", "lo", "mi", "ren", "sto", "pa", "vel", "quo", "dra", "nis", "tor", "ben", "fi", "gra", "lu", "zem", "ar",
    "ol", "ex", "um",
];
/// A rare word: in message i when i % 1000 == 17 (0.1 %).
pub const RARE: &str = "xylophonist";
/// A common word: in about a quarter of the messages.
pub const COMMON: &str = "meeting";
/// A sender searched with SEARCH FROM (1 in 2,000 senders).
pub const SENDER: &str = "sender1234@";

fn word(r: &mut Rng) -> String {
    // Zipf-like: small ranks are far more frequent.
    let rank = (r.below(1000) * r.below(1000)) / 1000;
    let mut w = String::new();
    let mut n = rank + 7;
    for _ in 0..(2 + rank % 3) {
        w.push_str(SYLLABLES[(n % SYLLABLES.len() as u64) as usize]);
        n /= SYLLABLES.len() as u64;
    }
    w
}

fn sentence(r: &mut Rng, words: u64) -> String {
    let mut s: Vec<String> = (0..words).map(|_| word(r)).collect();
    if let Some(f) = s.first_mut() {
        let mut c = f.chars();
        if let Some(first) = c.next() {
            *f = first.to_uppercase().collect::<String>() + c.as_str();
        }
    }
    s.join(" ") + "."
}

fn sender(n: u64) -> (String, String) {
    let names = [
        "Anna Schmidt",
        "=?utf-8?q?J=C3=B6rg_M=C3=BCller?=",
        "Bob Jones",
        "=?iso-8859-1?q?Fran=E7oise_Dupr=E9?=",
        "Li Wei",
        "Zoë Adams",
    ];
    (format!("{} {n}", names[(n % names.len() as u64) as usize]), format!("sender{n}@example.net"))
}

fn qp_latin1(text: &str) -> String {
    let mut out = String::new();
    let mut col = 0;
    for c in text.chars() {
        let cp = c as u32;
        let piece = if (cp < 128 && c != '=') || c == ' ' {
            c.to_string()
        } else if cp < 256 {
            format!("={cp:02X}")
        } else {
            "?".into()
        };
        if col + piece.len() > 72 {
            out.push_str("=\r\n");
            col = 0;
        }
        col += piece.len();
        out.push_str(&piece);
    }
    out
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    let enc = base64::engine::general_purpose::STANDARD.encode(bytes);
    enc.as_bytes().chunks(76).map(|c| String::from_utf8_lossy(c).into_owned() + "\r\n").collect()
}

/// Message `i` of the corpus (deterministic).
pub fn message(i: u64) -> Vec<u8> {
    let mut r = Rng::new(i + 1);
    // Threads: consecutive runs of 1..12 messages share a thread id.
    let thread = i / 6;
    let pos = i % 6;
    let mut tr = Rng::new(thread + 1_000_003);
    let topic = format!("{} {} {}", word(&mut tr), word(&mut tr), word(&mut tr));
    let prefix = match pos {
        0 => "",
        1 | 3 => "Re: ",
        2 => "RE: Re: ",
        4 => "Fwd: ",
        _ => "Re: [team] ",
    };
    let (name, addr) = sender(r.below(2000));
    let day = 1 + (i / 150) % 28;
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        [((i / 4200) % 12) as usize];
    let year = 2020 + i / 50_400;
    let mut m = format!(
        "Return-Path: <{addr}>\r\nReceived: from mx.example.net (mx.example.net [192.0.2.{}]) by mail.example.org with ESMTPS; {day} {month} {year} {:02}:{:02}:{:02} +0000\r\nFrom: {name} <{addr}>\r\nTo: Team <team@example.org>\r\n",
        i % 250,
        r.below(24),
        r.below(60),
        r.below(60)
    );
    if r.below(3) == 0 {
        m.push_str(&format!("Cc: {} <{}>\r\n", sender(r.below(2000)).0, sender(r.below(2000)).1));
    }
    m.push_str(&format!(
        "Subject: {prefix}{topic}\r\nDate: {}, {day} {month} {year} {:02}:{:02}:{:02} {}\r\nMessage-ID: <{i}.bench@example.net>\r\n",
        ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][(i % 7) as usize],
        r.below(24),
        r.below(60),
        r.below(60),
        ["+0000", "+0100", "-0500", "+0530"][(i % 4) as usize]
    ));
    if pos > 0 {
        let refs: Vec<String> = (0..pos).map(|p| format!("<{}.bench@example.net>", thread * 6 + p)).collect();
        m.push_str(&format!("In-Reply-To: {}\r\nReferences: {}\r\n", refs.last().unwrap(), refs.join("\r\n ")));
    }
    m.push_str("MIME-Version: 1.0\r\n");
    let mut text = String::new();
    for _ in 0..(3 + r.below(12)) {
        let words = 6 + r.below(14);
        text.push_str(&sentence(&mut r, words));
        text.push(' ');
        if r.below(4) == 0 {
            text.push_str("\r\n\r\n");
        }
    }
    if r.below(4) == 0 {
        text.push_str(&format!(" The {COMMON} is moved. "));
    }
    if i % 1000 == 17 {
        text.push_str(&format!(" Ask the {RARE} about it. "));
    }
    if r.below(5) == 0 {
        text.push_str(" Grüße, Łukasz — naïve café déjà vu. ");
    }
    match r.below(10) {
        0 | 1 => {
            m.push_str(
                "Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n",
            );
            m.push_str(&qp_latin1(&text));
            m.push_str("\r\n");
        }
        2 => {
            m.push_str("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n");
            m.push_str(&b64(text.as_bytes()));
        }
        3 | 4 => {
            m.push_str("Content-Type: multipart/alternative; boundary=\"alt-b\"\r\n\r\n--alt-b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
            m.push_str(&text);
            m.push_str("\r\n--alt-b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>");
            m.push_str(&text.replace("\r\n\r\n", "</p><p>"));
            m.push_str("</p></body></html>\r\n--alt-b--\r\n");
        }
        5 => {
            m.push_str("Content-Type: multipart/mixed; boundary=\"mix-b\"\r\n\r\n--mix-b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n");
            m.push_str(&text);
            m.push_str("\r\n--mix-b\r\nContent-Type: application/pdf; name=\"report.pdf\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"report.pdf\"\r\n\r\n");
            let blob: Vec<u8> = (0..(2000 + r.below(12000))).map(|_| r.next() as u8).collect();
            m.push_str(&b64(&blob));
            m.push_str("--mix-b--\r\n");
        }
        _ => {
            m.push_str("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
            m.push_str(&text);
            m.push_str("\r\n");
        }
    }
    m.into_bytes()
}

// ---------------------------------------------------------------------------------------------
// Clients

type Io<T> = std::io::Result<T>;

fn err(msg: String) -> std::io::Error {
    std::io::Error::other(msg)
}

fn connect(addr: &str) -> Io<(BufReader<TcpStream>, TcpStream)> {
    let s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(600)))?;
    Ok((BufReader::with_capacity(1 << 16, s.try_clone()?), s))
}

fn line(r: &mut BufReader<TcpStream>, buf: &mut Vec<u8>) -> Io<usize> {
    buf.clear();
    let n = r.read_until(b'\n', buf)?;
    if n == 0 {
        return Err(err("connection closed".into()));
    }
    Ok(n)
}

struct Imap {
    r: BufReader<TcpStream>,
    w: TcpStream,
    tag: u32,
}

impl Imap {
    fn login(addr: &str, user: &str, pass: &str) -> Io<Imap> {
        let (mut r, w) = connect(addr)?;
        let mut b = Vec::new();
        line(&mut r, &mut b)?;
        let mut s = Imap { r, w, tag: 0 };
        s.cmd(&format!("LOGIN \"{user}\" \"{pass}\""))?;
        Ok(s)
    }

    /// Sends one command; returns (untagged response bytes, elapsed). Fails on NO/BAD.
    fn cmd(&mut self, c: &str) -> Io<(Vec<u8>, Duration)> {
        self.tag += 1;
        let tag = format!("b{}", self.tag);
        let t = Instant::now();
        self.w.write_all(format!("{tag} {c}\r\n").as_bytes())?;
        let mut untagged = Vec::new();
        let mut b = Vec::new();
        loop {
            line(&mut self.r, &mut b)?;
            if b.starts_with(tag.as_bytes()) && b.get(tag.len()) == Some(&b' ') {
                let elapsed = t.elapsed();
                if !b[tag.len() + 1..].starts_with(b"OK") {
                    return Err(err(format!("{c}: {}", String::from_utf8_lossy(&b).trim_end())));
                }
                return Ok((untagged, elapsed));
            }
            untagged.extend_from_slice(&b);
        }
    }
}

fn exists_of(untagged: &[u8]) -> u64 {
    String::from_utf8_lossy(untagged)
        .lines()
        .filter_map(|l| l.strip_prefix("* ")?.strip_suffix(" EXISTS")?.parse().ok())
        .next_back()
        .unwrap_or(0)
}

fn count_in(untagged: &[u8], prefix: &str) -> usize {
    String::from_utf8_lossy(untagged)
        .lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .map(|rest| rest.split_whitespace().filter(|w| w.chars().all(|c| c.is_ascii_digit())).count())
        .sum()
}

/// Delivers messages `from..to` of the corpus to `rcpt` over `sessions` parallel LMTP sessions.
fn fill(lmtp: &str, rcpt: &str, from: u64, to: u64, sessions: u64) -> Io<Duration> {
    let t = Instant::now();
    let results: Vec<Io<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..sessions)
            .map(|k| {
                scope.spawn(move || -> Io<()> {
                    let (mut r, mut w) = connect(lmtp)?;
                    let mut b = Vec::new();
                    line(&mut r, &mut b)?;
                    w.write_all(b"LHLO bench.example\r\n")?;
                    loop {
                        line(&mut r, &mut b)?;
                        if b.get(3) == Some(&b' ') {
                            break;
                        }
                    }
                    let mut i = from + k;
                    while i < to {
                        let mut data = message(i);
                        // Dot-stuffing.
                        let mut out = Vec::with_capacity(data.len() + 64);
                        out.extend_from_slice(
                            format!("MAIL FROM:<bench@example.net>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n").as_bytes(),
                        );
                        for l in data.split_mut(|&c| c == b'\n') {
                            if l.is_empty() {
                                continue;
                            }
                            if l.first() == Some(&b'.') {
                                out.push(b'.');
                            }
                            out.extend_from_slice(l);
                            out.push(b'\n');
                        }
                        out.extend_from_slice(b".\r\n");
                        w.write_all(&out)?;
                        for step in ["MAIL", "RCPT", "DATA", "final"] {
                            line(&mut r, &mut b)?;
                            let ok = if step == "DATA" { b.starts_with(b"354") } else { b.starts_with(b"250") };
                            if !ok {
                                return Err(err(format!(
                                    "LMTP {step} for message {i}: {}",
                                    String::from_utf8_lossy(&b).trim_end()
                                )));
                            }
                        }
                        i += sessions;
                    }
                    w.write_all(b"QUIT\r\n")?;
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(err("fill thread panicked".into())))).collect()
    });
    for r in results {
        r?;
    }
    Ok(t.elapsed())
}

fn pop3_download(addr: &str, user: &str, pass: &str) -> Io<(u64, u64, Duration)> {
    let (mut r, mut w) = connect(addr)?;
    let mut b = Vec::new();
    line(&mut r, &mut b)?;
    let ask = |w: &mut TcpStream, r: &mut BufReader<TcpStream>, c: &str| -> Io<String> {
        w.write_all(format!("{c}\r\n").as_bytes())?;
        let mut b = Vec::new();
        line(r, &mut b)?;
        let s = String::from_utf8_lossy(&b).trim_end().to_string();
        if !s.starts_with("+OK") {
            return Err(err(format!("POP3 {}: {s}", c.split(' ').next().unwrap_or(""))));
        }
        Ok(s)
    };
    ask(&mut w, &mut r, &format!("USER {user}"))?;
    ask(&mut w, &mut r, &format!("PASS {pass}"))?;
    let stat = ask(&mut w, &mut r, "STAT")?;
    let n: u64 = stat.split_whitespace().nth(1).and_then(|x| x.parse().ok()).unwrap_or(0);
    let t = Instant::now();
    let mut bytes = 0u64;
    for i in 1..=n {
        ask(&mut w, &mut r, &format!("RETR {i}"))?;
        loop {
            let k = line(&mut r, &mut b)?;
            if b == b".\r\n" {
                break;
            }
            bytes += k as u64;
        }
    }
    let elapsed = t.elapsed();
    let _ = ask(&mut w, &mut r, "QUIT");
    Ok((n, bytes, elapsed))
}

// ---------------------------------------------------------------------------------------------
// The run

struct Server {
    name: String,
    imap: String,
    lmtp: String,
    pop3: String,
    user: String,
    rcpt: String,
    base: u64,
}

impl Server {
    fn user_of(&self, n: u64) -> String {
        self.user.replace("{n}", &(n + self.base).to_string())
    }
    fn rcpt_of(&self, n: u64) -> String {
        self.rcpt.replace("{n}", &(n + self.base).to_string())
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

const OPS: &[(&str, &str)] = &[
    ("SEARCH TEXT rare", "UID SEARCH TEXT xylophonist"),
    ("SEARCH TEXT common", "UID SEARCH TEXT meeting"),
    ("SEARCH BODY common", "UID SEARCH BODY meeting"),
    ("SEARCH FROM", "UID SEARCH FROM sender1234@"),
    ("SEARCH SUBJECT", "UID SEARCH SUBJECT kalo"),
    ("SORT (DATE)", "UID SORT (DATE) UTF-8 ALL"),
    ("SORT (REVERSE DATE)", "UID SORT (REVERSE DATE) UTF-8 ALL"),
    ("SORT (SUBJECT)", "UID SORT (SUBJECT) UTF-8 ALL"),
    ("SORT (FROM)", "UID SORT (FROM) UTF-8 ALL"),
    ("THREAD REFERENCES", "UID THREAD REFERENCES UTF-8 ALL"),
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") || args.is_empty() {
        eprintln!(
            "{}",
            include_str!("search_bench.rs")
                .lines()
                .take_while(|l| l.starts_with("//!"))
                .map(|l| l.trim_start_matches("//!"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        return;
    }
    let mut servers = Vec::new();
    let mut sizes = vec![10_000u64, 100_000];
    let mut pop = 1000u64;
    let mut password = "pass".to_string();
    let mut sessions = 4u64;
    let mut runs = 5usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().unwrap_or_default();
        match a.as_str() {
            "--server" => {
                let v = val();
                let p: Vec<&str> = v.split(',').collect();
                assert_eq!(p.len(), 7, "--server NAME,IMAP,LMTP,POP3,USER_PATTERN,RCPT_PATTERN,BASE");
                servers.push(Server {
                    name: p[0].into(),
                    imap: p[1].into(),
                    lmtp: p[2].into(),
                    pop3: p[3].into(),
                    user: p[4].into(),
                    rcpt: p[5].into(),
                    base: p[6].parse().unwrap_or(0),
                });
            }
            "--sizes" => sizes = val().split(',').filter_map(|s| s.parse().ok()).collect(),
            "--pop" => pop = val().parse().unwrap_or(1000),
            "--password" => password = val(),
            "--fill-sessions" => sessions = val().parse().unwrap_or(4),
            "--runs" => runs = val().parse().unwrap_or(5),
            other => panic!("unknown argument {other}"),
        }
    }
    let mut boxes: Vec<(u64, u64)> = sizes.iter().enumerate().map(|(i, &n)| (i as u64 + 1, n)).collect();
    if pop > 0 {
        boxes.push((sizes.len() as u64 + 1, pop));
    }

    // 1. Fill every server's mailboxes at once (one thread per server; LMTP sessions inside).
    println!("== fill");
    std::thread::scope(|scope| {
        for s in &servers {
            let boxes = &boxes;
            let password = &password;
            scope.spawn(move || {
                for &(n, want) in boxes {
                    let user = s.user_of(n);
                    let have = Imap::login(&s.imap, &user, password)
                        .and_then(|mut c| c.cmd("EXAMINE INBOX"))
                        .map(|(u, _)| exists_of(&u))
                        .unwrap_or_else(|e| panic!("{}: {user}: {e}", s.name));
                    if have >= want {
                        println!("{}: {user} has {have} messages (wanted {want}): not filled", s.name);
                        continue;
                    }
                    let took = fill(&s.lmtp, &s.rcpt_of(n), have, want, sessions)
                        .unwrap_or_else(|e| panic!("{}: fill {user}: {e}", s.name));
                    println!(
                        "{}: {user}: delivered {} messages in {:.1} s ({:.0}/s)",
                        s.name,
                        want - have,
                        took.as_secs_f64(),
                        (want - have) as f64 / took.as_secs_f64()
                    );
                }
            });
        }
    });

    // 2. IMAP latency, one server after the other (so they do not compete for the cores).
    let mut rows: Vec<(String, u64, String, f64, f64)> = Vec::new();
    for &(n, want) in boxes.iter().take(sizes.len()) {
        for s in &servers {
            let user = s.user_of(n);
            let mut c = Imap::login(&s.imap, &user, &password).unwrap();
            let (u, sel) = c.cmd("SELECT INBOX").unwrap();
            let exists = exists_of(&u);
            println!("{} {user}: SELECT {exists} messages in {:.1} ms", s.name, ms(sel));
            rows.push((s.name.clone(), want, "SELECT".into(), ms(sel), f64::NAN));
            for (label, cmd) in OPS {
                let (u, cold) = c.cmd(cmd).unwrap();
                let found = count_in(&u, "* SEARCH").max(count_in(&u, "* SORT")).max(count_in(&u, "* THREAD"));
                let warm: Vec<Duration> = (0..runs).map(|_| c.cmd(cmd).unwrap().1).collect();
                let warm = median(warm);
                println!(
                    "{} {want:>7} {label:<22} cold {:>9.1} ms  warm {:>9.1} ms  ({} numbers, {} bytes)",
                    s.name,
                    ms(cold),
                    ms(warm),
                    found,
                    u.len()
                );
                rows.push((s.name.clone(), want, label.to_string(), ms(cold), ms(warm)));
            }
            let _ = c.cmd("LOGOUT");
        }
    }

    // 3. POP3 download.
    if let Some(&(n, _)) = boxes.get(sizes.len()) {
        for s in &servers {
            let user = s.user_of(n);
            match pop3_download(&s.pop3, &user, &password) {
                Ok((msgs, bytes, t)) => {
                    let secs = t.as_secs_f64().max(1e-9);
                    println!(
                        "{} POP3 {user}: {msgs} messages, {:.1} MB in {:.2} s: {:.1} MB/s, {:.0} msgs/s",
                        s.name,
                        bytes as f64 / 1e6,
                        secs,
                        bytes as f64 / 1e6 / secs,
                        msgs as f64 / secs
                    );
                    rows.push((
                        s.name.clone(),
                        msgs,
                        "POP3 RETR all (MB/s)".into(),
                        bytes as f64 / 1e6 / secs,
                        msgs as f64 / secs,
                    ));
                }
                Err(e) => println!("{} POP3 {user}: {e}", s.name),
            }
        }
    }

    // Results as JSON lines (scripts/bench-search.sh builds the table).
    println!("== results");
    for (server, size, op, cold, warm) in rows {
        let num = |x: f64| if x.is_finite() { format!("{x:.3}") } else { "null".into() };
        println!(
            "{{\"server\":\"{server}\",\"messages\":{size},\"op\":\"{op}\",\"cold_ms\":{},\"warm_ms\":{}}}",
            num(cold),
            num(warm)
        );
    }
    let _ = std::io::stdout().flush();
    let _ = std::io::stdin().read(&mut [0u8; 0]);
}
