//! Alert mail: events at warning level and above, mailed to `[hw] alert_to` through the router.
//!
//! What it is: the alerter thread ([`run`]) and a small blocking SMTP client ([`send`]) that hands
//! one message to the router's MX listener on loopback (the address in
//! `run/endpoints.d/router.json`, else the config's listen address and SMTP port). The router
//! delivers it like any incoming mail: to local accounts, or through aliases (forwarded
//! externally with SRS). So the recipients must be local accounts or aliases of this server;
//! the MX listener refuses to relay anywhere else (docs/hw.md, "Alerts").
//!
//! What it is not: a queue. A mail the router does not take is retried [`ATTEMPTS`] times, a
//! minute apart, then given up with an `AlertFailed` event (the log and the status still have the
//! events).
//!
//! Invariants: every network step has a timeout; the envelope sender is null (`<>`), as for
//! other automatic notifications, so a failed delivery never loops back; header values are
//! built from our own text only (event messages are single-line ASCII-safe, checked here).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

use hermes_hw::api::{EventInfo, EventSeverity};

use crate::{Shared, event};

/// Tries per alert before giving up.
pub const ATTEMPTS: u32 = 3;
const RETRY_DELAY: Duration = Duration::from_secs(60);
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest SMTP reply line read.
const MAX_REPLY: u64 = 4096;

/// A batch of events to mail.
#[derive(Debug, Clone)]
pub struct Alert {
    pub events: Vec<EventInfo>,
}

pub fn run(sh: &Shared, rx: mpsc::Receiver<Alert>) {
    while let Ok(alert) = rx.recv() {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let target = target(sh);
            match send(&target, &sh.settings.hostname, &sh.settings.alert_to, &alert) {
                Ok(()) => {
                    tracing::info!(
                        event = "AlertSent",
                        to = %sh.settings.alert_to.join(", "),
                        via = %target,
                        "alert mailed: {}",
                        subject(&alert)
                    );
                    break;
                }
                Err(e) if attempt >= ATTEMPTS => {
                    sh.record(vec![event(
                        "AlertFailed",
                        EventSeverity::Warning,
                        format!(
                            "alert mail to {} not sent after {attempt} tries: {e}",
                            sh.settings.alert_to.join(", ")
                        ),
                    )]);
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempt, via = %target, "alert mail not sent; retrying in 60 s");
                    if !sh.sleep(RETRY_DELAY) {
                        return;
                    }
                }
            }
        }
    }
}

/// The router's MX listener: from its endpoints file, else the config.
pub fn target(sh: &Shared) -> String {
    hermes_runtime::endpoints::read_service_endpoints(&sh.data, "router")
        .ok()
        .and_then(|e| e.tcp.get("smtp").cloned())
        .unwrap_or_else(|| sh.settings.smtp_fallback.clone())
}

pub fn subject(a: &Alert) -> String {
    let worst = a.events.iter().find(|e| e.severity == EventSeverity::Critical).or(a.events.first());
    let first = worst.map(|e| e.message.clone()).unwrap_or_default();
    let more = if a.events.len() > 1 { format!(" (+{} more)", a.events.len() - 1) } else { String::new() };
    clean(&format!("[hermes disk health] {first}{more}"))
}

/// One header-safe line: control characters become spaces, at most 200 characters.
fn clean(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).take(200).collect()
}

/// The message text (RFC 5322, UTF-8 body).
pub fn message(hostname: &str, to: &[String], a: &Alert) -> String {
    let date = chrono::Utc::now().to_rfc2822();
    let id = format!("{}.{}@{hostname}", chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0), std::process::id());
    let mut body = String::from("The disk health service of this Hermes server reports:\r\n\r\n");
    for e in &a.events {
        let when = chrono::DateTime::from_timestamp(e.time, 0).map(|t| t.to_rfc3339()).unwrap_or_default();
        let sev = match e.severity {
            EventSeverity::Critical => "CRITICAL",
            EventSeverity::Warning => "WARNING",
            EventSeverity::Info => "info",
        };
        body.push_str(&format!("{when}  {sev:<8} {:<18} {}\r\n", e.kind, clean(&e.message)));
    }
    body.push_str("\r\nSee `hermes hw status` or the admin UI for every bay and array.\r\n");
    // Dot-stuffing (RFC 5321 4.5.2).
    let body = body
        .split("\r\n")
        .map(|l| if l.starts_with('.') { format!(".{l}") } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\r\n");
    format!(
        "From: Hermes disk health <hermes-hw@{hostname}>\r\nTo: {}\r\nSubject: {}\r\nDate: {date}\r\n\
         Message-ID: <{id}>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\nAuto-Submitted: auto-generated\r\n\r\n{body}",
        to.join(", "),
        subject(a)
    )
}

/// Hands one message to the SMTP server at `addr` (host:port).
pub fn send(addr: &str, hostname: &str, to: &[String], a: &Alert) -> anyhow::Result<()> {
    use std::net::ToSocketAddrs;
    let sock = addr.to_socket_addrs()?.next().ok_or_else(|| anyhow::anyhow!("{addr}: no address"))?;
    let stream = TcpStream::connect_timeout(&sock, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    expect(&mut r, 2, "greeting")?;
    cmd(&mut w, &mut r, &format!("EHLO {hostname}"), 2)?;
    cmd(&mut w, &mut r, "MAIL FROM:<>", 2)?;
    let mut accepted = 0;
    let mut refused = Vec::new();
    for rcpt in to {
        match cmd(&mut w, &mut r, &format!("RCPT TO:<{rcpt}>"), 2) {
            Ok(()) => accepted += 1,
            Err(e) => refused.push(format!("{rcpt}: {e}")),
        }
    }
    if accepted == 0 {
        let _ = cmd(&mut w, &mut r, "QUIT", 2);
        anyhow::bail!("every recipient refused ({})", refused.join("; "));
    }
    cmd(&mut w, &mut r, "DATA", 3)?;
    let msg = message(hostname, to, a);
    w.write_all(msg.as_bytes())?;
    cmd(&mut w, &mut r, "\r\n.", 2)?;
    let _ = cmd(&mut w, &mut r, "QUIT", 2);
    if !refused.is_empty() {
        tracing::warn!(refused = %refused.join("; "), "some alert recipients were refused");
    }
    Ok(())
}

fn cmd(w: &mut TcpStream, r: &mut impl BufRead, line: &str, class: u8) -> anyhow::Result<()> {
    w.write_all(format!("{line}\r\n").as_bytes())?;
    expect(r, class, line.trim())
}

/// Reads a (multi-line) reply and checks its first digit.
fn expect(r: &mut impl BufRead, class: u8, what: &str) -> anyhow::Result<()> {
    use std::io::Read;
    loop {
        let mut line = String::new();
        let n = r.by_ref().take(MAX_REPLY).read_line(&mut line)?;
        if n == 0 {
            anyhow::bail!("connection closed after {what}");
        }
        let code = line.get(..3).unwrap_or("");
        if line.as_bytes().get(3) == Some(&b'-') {
            continue;
        }
        if code.as_bytes().first() != Some(&(b'0' + class)) {
            anyhow::bail!("{what}: {}", line.trim());
        }
        return Ok(());
    }
}
