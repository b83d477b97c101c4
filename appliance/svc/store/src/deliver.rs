//! Local delivery: the trace headers every delivered message gets, the mapping of store results
//! to LMTP replies (shared with [`crate::lmtp`]), and `hermes deliver`
//! ([`deliver_command`]) for scripts.
//!
//! `hermes deliver --to ADDR [--from ADDR] < msg.eml` speaks LMTP to the running service's unix
//! socket when it accepts a connection, so the server stays the store's only writer; when no
//! server runs it opens the store itself (taking the store lock) and delivers directly. Either
//! way each recipient gets one result line, and the command fails if any recipient failed.
//!
//! What it is not: no queue and no retry — a temporary failure is reported and left to the
//! caller, as with `sendmail`-style local delivery agents; no Sieve (issue 3).
//!
//! Invariants: the message is stored with CRLF line ends (bare LF from a Unix file is
//! converted); a recipient is reported delivered only after the store said so (durable);
//! the LMTP client bounds every reply line and reply size it reads.

use anyhow::{Context as _, bail};
use hermes_core::config::Config;
use hermes_core::directory::{Directory, UserId};
use hermes_core::paths::DataDir;
use hermes_proto::lmtp::{Address, Reply};
use hermes_store::{DeliveryTarget, Store, StoreError};
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};

/// A delivery id for logs and the Received header: unique within a host (time, pid, counter).
/// Fixed width (8 + 5 + 6 hex digits until 2106), so the stored size of a message does not
/// depend on how many deliveries the process made before it.
pub(crate) fn new_delivery_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format!("{:08x}{:05x}{:06x}", now.as_secs(), std::process::id() & 0xfffff, n & 0xff_ffff)
}

/// Keeps only characters safe inside a header field's structured part.
fn header_safe(s: &str) -> String {
    s.chars()
        .take(255)
        .map(|c| if c.is_ascii_graphic() && !matches!(c, '(' | ')' | ';' | '\\') { c } else { '?' })
        .collect()
}

/// What the trace headers say about one delivery.
pub(crate) struct Trace<'a> {
    /// `<sender>` or `<>`, as in the envelope.
    pub return_path: &'a str,
    /// The LHLO name (or `localhost` for `hermes deliver`).
    pub helo: &'a str,
    /// `[192.0.2.1]` for TCP peers; `None` for the unix socket.
    pub peer_ip: Option<std::net::IpAddr>,
    pub hostname: &'a str,
    /// `LMTP`, `UTF8LMTP` (RFC 6531) or `local`.
    pub protocol: &'a str,
    pub id: &'a str,
    /// Named in `for <...>` only when the message has exactly one recipient (more would leak
    /// the other recipients' addresses into every copy).
    pub single_recipient: Option<&'a str>,
}

/// `Return-Path:` (identical for all recipients, so one stored copy serves them all) and
/// `Received:` (RFC 5321 §4.4). `Delivered-To:` is deliberately absent: it differs per
/// recipient and the store keeps one copy.
pub(crate) fn trace_headers(t: &Trace<'_>) -> Vec<u8> {
    let mut h = String::with_capacity(256);
    h.push_str("Return-Path: ");
    h.push_str(&header_safe(t.return_path));
    h.push_str("\r\nReceived: from ");
    h.push_str(&header_safe(t.helo));
    if let Some(ip) = t.peer_ip {
        match ip {
            std::net::IpAddr::V4(v4) => h.push_str(&format!(" ([{v4}])")),
            std::net::IpAddr::V6(v6) => h.push_str(&format!(" ([IPv6:{v6}])")),
        }
    }
    h.push_str(&format!("\r\n\tby {} (Hermes) with {} id {}", header_safe(t.hostname), t.protocol, header_safe(t.id)));
    if let Some(r) = t.single_recipient {
        h.push_str(&format!("\r\n\tfor <{}>", header_safe(r)));
    }
    h.push_str(&format!(";\r\n\t{}\r\n", chrono::Local::now().to_rfc2822()));
    h.into_bytes()
}

/// Store error → the recipient's reply. Text never carries paths or internals.
/// `quota_permanent` is `[store] quota_permanent_failure` (see [`crate::quota::over_quota_reply`]).
pub(crate) fn store_reply(
    rcpt: &str,
    result: &Result<hermes_store::Appended, StoreError>,
    id: &str,
    quota_permanent: bool,
) -> Reply {
    match result {
        Ok(_) => Reply::new(250, (2, 0, 0), format!("<{rcpt}> Delivered id {id}")),
        Err(StoreError::TooLarge) => Reply::new(552, (5, 3, 4), "Message size exceeds fixed maximum message size"),
        Err(StoreError::OverQuota) => crate::quota::over_quota_reply(rcpt, quota_permanent),
        Err(_) => Reply::new(451, (4, 3, 0), format!("<{rcpt}> Temporary failure, try again later")),
    }
}

/// Delivers `raw` (trace headers included) to `users` (one target per distinct user, INBOX)
/// and returns one result per entry of `users`, in order. Blocking: call from `spawn_blocking`.
pub(crate) fn deliver_to_users(
    store: &Store,
    raw: &[u8],
    users: &[UserId],
) -> Vec<Result<hermes_store::Appended, StoreError>> {
    let mut distinct: Vec<&UserId> = Vec::new();
    for u in users {
        if !distinct.contains(&u) {
            distinct.push(u);
        }
    }
    let targets: Vec<DeliveryTarget> = distinct
        .iter()
        .map(|u| DeliveryTarget { user: (*u).clone(), mailbox: "INBOX".to_string(), flags: Vec::new() })
        .collect();
    let mut results = store.deliver(raw, None, &targets);
    results.resize_with(targets.len(), || Err(StoreError::Corrupt("missing delivery result".into())));
    users
        .iter()
        .map(|u| {
            let i = distinct.iter().position(|d| *d == u).unwrap_or(0);
            match &results[i] {
                Ok(a) => Ok(*a),
                Err(StoreError::TooLarge) => Err(StoreError::TooLarge),
                Err(StoreError::OverQuota) => Err(StoreError::OverQuota),
                Err(e) => Err(StoreError::Corrupt(e.to_string())),
            }
        })
        .collect()
}

/// Bare LF → CRLF (a message file written on Unix); CRLF and bare CR are kept.
pub fn to_crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 40);
    let mut prev = 0u8;
    for &b in raw {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

/// One recipient's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientResult {
    pub recipient: String,
    pub reply: Reply,
}

/// `hermes deliver`: delivers `raw` to `to` and prints one line per recipient
/// (`ADDR: CODE X.Y.Z text`); an error (non-zero exit) if any recipient failed.
pub fn deliver_command(data: &DataDir, to: &[String], from: Option<&str>, raw: Vec<u8>) -> anyhow::Result<()> {
    let results = deliver(data, to, from, raw)?;
    let mut failed = 0;
    for r in &results {
        let text = r.reply.to_string();
        let text = text.trim_end();
        if r.reply.code / 100 == 2 {
            println!("{}: {text}", r.recipient);
        } else {
            failed += 1;
            eprintln!("{}: {text}", r.recipient);
        }
    }
    if failed > 0 {
        bail!("{failed} of {} recipients failed", results.len());
    }
    Ok(())
}

/// Delivers and returns one result per recipient (the library form of [`deliver_command`]).
pub fn deliver(
    data: &DataDir,
    to: &[String],
    from: Option<&str>,
    raw: Vec<u8>,
) -> anyhow::Result<Vec<RecipientResult>> {
    if to.is_empty() {
        bail!("no recipients given");
    }
    if let Some(f) = from
        && !f.is_empty()
    {
        Address::parse(f).map_err(|e| anyhow::anyhow!("invalid sender {f:?}: {e}"))?;
    }
    let raw = to_crlf(&raw);
    let socket = data.lmtp_socket();
    match std::os::unix::net::UnixStream::connect(&socket) {
        Ok(stream) => lmtp_client(stream, to, from, &raw),
        Err(connect_error) => deliver_direct(data, to, from, &raw, &socket, connect_error),
    }
}

fn load_config(data: &DataDir) -> anyhow::Result<Config> {
    match std::fs::read_to_string(data.config_file()) {
        Ok(text) => Ok(Config::from_toml(&text)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::host_default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", data.config_file().display())),
    }
}

fn deliver_direct(
    data: &DataDir,
    to: &[String],
    from: Option<&str>,
    raw: &[u8],
    socket: &std::path::Path,
    connect_error: std::io::Error,
) -> anyhow::Result<Vec<RecipientResult>> {
    let config = load_config(data)?;
    let directory = Directory::open(data).context("opening the directory")?;
    let store = match Store::open(&data.store_dir(), crate::run::store_config(&config)) {
        Ok(s) => s,
        Err(StoreError::Locked) => bail!(
            "the store is held by a running server, but its LMTP socket {} is unreachable ({connect_error})",
            socket.display()
        ),
        Err(e) => return Err(e).context("opening the store"),
    };
    store.set_quota_warnings(crate::quota::warning_composer(&config.hostname));
    store.set_quota_warning_percents(config.store.quota_warning_percents.clone());
    let mut results: Vec<Option<Reply>> = vec![None; to.len()];
    let mut users = Vec::new();
    let mut user_slots = Vec::new();
    for (i, rcpt) in to.iter().enumerate() {
        match directory.lookup(rcpt) {
            Ok(Some(account)) => {
                match store.user(&account.user_id) {
                    Ok(u) => crate::quota::apply_account(&u, &account, &config.store),
                    Err(e) => tracing::warn!(error = %e, "cannot open the recipient's store"), // delivery reports it
                }
                users.push(account.user_id);
                user_slots.push(i);
            }
            Ok(None) => results[i] = Some(Reply::new(550, (5, 1, 1), format!("<{rcpt}> User unknown"))),
            Err(e) => {
                tracing::warn!(error = %e, "directory lookup failed");
                results[i] = Some(Reply::new(451, (4, 3, 0), "Temporary lookup failure"));
            }
        }
    }
    if !users.is_empty() {
        let id = new_delivery_id();
        let return_path = format!("<{}>", from.unwrap_or(""));
        let single = (user_slots.len() == 1).then(|| to[user_slots[0]].as_str());
        let mut message = trace_headers(&Trace {
            return_path: &return_path,
            helo: "localhost",
            peer_ip: None,
            hostname: &config.hostname,
            protocol: "local",
            id: &id,
            single_recipient: single,
        });
        message.extend_from_slice(raw);
        let outcome = if raw.len() as u64 > config.limits.max_message_bytes {
            Vec::new() // every user slot then answers 552 below
        } else {
            deliver_to_users(&store, &message, &users)
        };
        for (k, slot) in user_slots.iter().enumerate() {
            let r = outcome.get(k).map_or_else(
                || Reply::new(552, (5, 3, 4), "Message size exceeds fixed maximum message size"),
                |res| store_reply(&to[*slot], res, &id, config.store.quota_permanent_failure),
            );
            results[*slot] = Some(r);
        }
    }
    Ok(to
        .iter()
        .zip(results)
        .map(|(rcpt, reply)| RecipientResult {
            recipient: rcpt.clone(),
            reply: reply.unwrap_or_else(|| Reply::new(451, (4, 3, 0), "Not attempted")),
        })
        .collect())
}

/// Longest reply line read from the server, and most lines in one reply: far above what
/// Hermes sends, small enough that a confused peer cannot exhaust memory.
const MAX_REPLY_LINE: usize = 4096;
const MAX_REPLY_LINES: usize = 64;

/// Reads one (possibly multi-line) reply.
fn read_reply(r: &mut impl BufRead) -> anyhow::Result<Reply> {
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = r.by_ref().take(MAX_REPLY_LINE as u64).read_until(b'\n', &mut line)?;
        if n == 0 {
            bail!("the LMTP server closed the connection");
        }
        if !line.ends_with(b"\n") {
            bail!("LMTP reply line too long");
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        let code: u16 = text
            .get(..3)
            .and_then(|c| c.parse().ok())
            .filter(|c| (200..600).contains(c))
            .ok_or_else(|| anyhow::anyhow!("malformed LMTP reply"))?;
        let sep = text.as_bytes().get(3).copied().unwrap_or(b' ');
        let rest = text.get(4..).unwrap_or("");
        lines.push((code, rest.to_string()));
        if sep != b'-' {
            break;
        }
        if lines.len() > MAX_REPLY_LINES {
            bail!("LMTP reply too long");
        }
    }
    let code = lines.last().map(|l| l.0).unwrap_or(451);
    // Split off an enhanced status code ("2.0.0 text").
    let mut status = None;
    let texts = lines
        .into_iter()
        .map(|(_, t)| {
            let mut parts = t.splitn(2, ' ');
            let first = parts.next().unwrap_or("");
            let nums: Vec<u16> = first.split('.').filter_map(|n| n.parse().ok()).collect();
            if nums.len() == 3 && first.split('.').count() == 3 && nums[0] < 10 {
                status = Some(hermes_proto::lmtp::EnhancedStatus(nums[0] as u8, nums[1], nums[2]));
                parts.next().unwrap_or("").to_string()
            } else {
                t
            }
        })
        .collect();
    Ok(Reply { code, status, lines: texts })
}

fn lmtp_client(
    stream: std::os::unix::net::UnixStream,
    to: &[String],
    from: Option<&str>,
    raw: &[u8],
) -> anyhow::Result<Vec<RecipientResult>> {
    // RFC 5321 §4.5.3.2: 5 minutes for commands, 10 for the reply after the final dot.
    stream.set_read_timeout(Some(std::time::Duration::from_secs(600)))?;
    stream.set_write_timeout(Some(std::time::Duration::from_secs(300)))?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    let expect = |reply: Reply, what: &str| -> anyhow::Result<Reply> {
        if reply.code / 100 != 2 && reply.code != 354 {
            bail!("LMTP server refused {what}: {}", reply.to_string().trim_end());
        }
        Ok(reply)
    };
    expect(read_reply(&mut r)?, "the connection")?;
    w.write_all(b"LHLO localhost\r\n")?;
    let caps = expect(read_reply(&mut r)?, "LHLO")?;
    let has = |cap: &str| caps.lines.iter().any(|l| l.split(' ').next().is_some_and(|c| c.eq_ignore_ascii_case(cap)));
    let mut mail = format!("MAIL FROM:<{}>", from.unwrap_or(""));
    let utf8 = !from.unwrap_or("").is_ascii() || to.iter().any(|t| !t.is_ascii());
    if utf8 && has("SMTPUTF8") {
        mail.push_str(" SMTPUTF8");
    }
    if !raw.is_ascii() && has("8BITMIME") {
        mail.push_str(" BODY=8BITMIME");
    }
    if has("SIZE") {
        mail.push_str(&format!(" SIZE={}", raw.len()));
    }
    mail.push_str("\r\n");
    w.write_all(mail.as_bytes())?;
    let mail_reply = read_reply(&mut r)?;
    if mail_reply.code / 100 != 2 {
        // The whole transaction failed (e.g. 552 size): every recipient gets that reply.
        let _ = w.write_all(b"QUIT\r\n");
        return Ok(to.iter().map(|t| RecipientResult { recipient: t.clone(), reply: mail_reply.clone() }).collect());
    }
    let mut results: Vec<Option<Reply>> = vec![None; to.len()];
    let mut accepted = Vec::new();
    for (i, rcpt) in to.iter().enumerate() {
        if rcpt.contains(['\r', '\n', '<', '>']) || rcpt.len() > 254 {
            results[i] = Some(Reply::new(501, (5, 1, 3), "Syntax error in address"));
            continue;
        }
        w.write_all(format!("RCPT TO:<{rcpt}>\r\n").as_bytes())?;
        let reply = read_reply(&mut r)?;
        if reply.code / 100 == 2 {
            accepted.push(i);
        } else {
            results[i] = Some(reply);
        }
    }
    if !accepted.is_empty() {
        w.write_all(b"DATA\r\n")?;
        let go = read_reply(&mut r)?;
        if go.code != 354 {
            for &i in &accepted {
                results[i] = Some(go.clone());
            }
        } else {
            let mut body = Vec::with_capacity(raw.len() + 64);
            let mut at_line_start = true;
            for &b in raw {
                if at_line_start && b == b'.' {
                    body.push(b'.');
                }
                body.push(b);
                at_line_start = b == b'\n';
            }
            if !body.ends_with(b"\r\n") {
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(b".\r\n");
            w.write_all(&body)?;
            for &i in &accepted {
                results[i] = Some(read_reply(&mut r)?);
            }
        }
    }
    let _ = w.write_all(b"QUIT\r\n");
    let _ = read_reply(&mut r);
    Ok(to
        .iter()
        .zip(results)
        .map(|(rcpt, reply)| RecipientResult {
            recipient: rcpt.clone(),
            reply: reply.unwrap_or_else(|| Reply::new(451, (4, 3, 0), "Not attempted")),
        })
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn crlf_conversion() {
        assert_eq!(to_crlf(b"a\nb\r\nc\rd\n"), b"a\r\nb\r\nc\rd\r\n");
    }

    #[test]
    fn reply_parsing() {
        let mut input: &[u8] = b"250-foo\r\n250-PIPELINING\r\n250 SIZE 10\r\n550 5.1.1 <x@y> User unknown\r\n";
        let r = read_reply(&mut input).unwrap();
        assert_eq!(r.code, 250);
        assert_eq!(r.lines, ["foo", "PIPELINING", "SIZE 10"]);
        let r = read_reply(&mut input).unwrap();
        assert_eq!((r.code, r.status.map(|s| s.to_string())), (550, Some("5.1.1".into())));
        assert_eq!(r.lines, ["<x@y> User unknown"]);
        let mut bad: &[u8] = b"hello\r\n";
        assert!(read_reply(&mut bad).is_err());
        let long = vec![b'2'; 10_000];
        assert!(read_reply(&mut long.as_slice()).is_err());
    }

    #[test]
    fn trace_headers_are_well_formed() {
        let h = trace_headers(&Trace {
            return_path: "<a@b.org>",
            helo: "mx (evil)\r\nX-Injected: 1",
            peer_ip: Some("192.0.2.1".parse().unwrap()),
            hostname: "mail.example.org",
            protocol: "LMTP",
            id: "abc",
            single_recipient: Some("u@example.org"),
        });
        let h = String::from_utf8(h).unwrap();
        assert!(h.starts_with("Return-Path: <a@b.org>\r\nReceived: from mx??evil???X-Injected:?1 ([192.0.2.1])\r\n\tby mail.example.org (Hermes) with LMTP id abc\r\n\tfor <u@example.org>;\r\n\t"), "{h}");
        assert!(h.ends_with("\r\n"));
        assert_eq!(h.matches("\r\n").count(), 5);
    }
}
