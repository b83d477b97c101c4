//! A small blocking SMTP client that hands vacation replies and redirects to the configured
//! relay (`[sieve] relay`), normally the router on this host.
//!
//! What it is: one transaction per call — EHLO, optional AUTH PLAIN, MAIL, RCPT, DATA, QUIT —
//! with dot-stuffing and bounded reply reading. What it is not: a queue. The relay queues and
//! retries; a failure here is returned to the caller, which logs it (vacation) or keeps the
//! message instead (redirect).
//!
//! Invariants: every read and write has a timeout ([`IO_TIMEOUT`], connect [`CONNECT_TIMEOUT`]);
//! reply lines are bounded ([`MAX_REPLY_LINE`], [`MAX_REPLY_LINES`]); credentials are only sent
//! to a relay on a loopback address (there is no STARTTLS here), never logged.

use hermes_core::secret::Secret;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The relay is local or on the LAN: a connection not made in 10 s will not be made.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Per read or write; RFC 5321 §4.5.3.2 allows minutes, but a local relay answers at once and
/// delivery (holding the LMTP client) must not hang on it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_REPLY_LINE: usize = 4096;
const MAX_REPLY_LINES: usize = 64;

/// Where and how to send.
#[derive(Debug, Clone)]
pub struct Relay {
    pub host: String,
    pub port: u16,
    pub auth: Option<(String, Secret<String>)>,
    /// Our EHLO name.
    pub helo: String,
}

/// Why the relay did not take the message.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("relay unreachable: {0}")]
    Io(#[from] std::io::Error),
    #[error("relay refused {stage}: {reply}")]
    Refused { stage: &'static str, reply: String },
    #[error("relay protocol error: {0}")]
    Protocol(&'static str),
}

fn read_reply(r: &mut impl BufRead) -> Result<(u16, String), RelayError> {
    let mut text = String::new();
    for _ in 0..MAX_REPLY_LINES {
        let mut line = Vec::new();
        let n = r.by_ref().take(MAX_REPLY_LINE as u64).read_until(b'\n', &mut line)?;
        if n == 0 {
            return Err(RelayError::Protocol("connection closed"));
        }
        if !line.ends_with(b"\n") {
            return Err(RelayError::Protocol("reply line too long"));
        }
        let s = String::from_utf8_lossy(&line);
        let s = s.trim_end();
        let code: u16 = s.get(..3).and_then(|c| c.parse().ok()).ok_or(RelayError::Protocol("malformed reply"))?;
        text = s.chars().take(200).collect();
        if s.as_bytes().get(3) != Some(&b'-') {
            return Ok((code, text));
        }
    }
    let _ = text;
    Err(RelayError::Protocol("reply too long"))
}

fn expect(r: &mut impl BufRead, stage: &'static str, ok: fn(u16) -> bool) -> Result<String, RelayError> {
    let (code, text) = read_reply(r)?;
    if ok(code) { Ok(text) } else { Err(RelayError::Refused { stage, reply: text }) }
}

fn clean(addr: &str) -> Result<&str, RelayError> {
    if addr.len() > 254 || addr.contains(['\r', '\n', '<', '>', ' ']) {
        return Err(RelayError::Protocol("unusable address"));
    }
    Ok(addr)
}

/// Sends `message` (CRLF line ends) from `mail_from` (empty: the null sender `<>`) to `rcpt`.
pub fn send(relay: &Relay, mail_from: &str, rcpt: &str, message: &[u8]) -> Result<(), RelayError> {
    let mail_from = clean(mail_from)?;
    let rcpt = clean(rcpt)?;
    let addrs: Vec<_> = (relay.host.as_str(), relay.port).to_socket_addrs()?.collect();
    let mut last = None;
    let mut stream = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, CONNECT_TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let stream = match stream {
        Some(s) => s,
        None => return Err(last.unwrap_or_else(|| std::io::Error::other("no address for the relay")).into()),
    };
    let loopback = stream.peer_addr().map(|a| a.ip().is_loopback()).unwrap_or(false);
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    expect(&mut r, "the connection", |c| c == 220)?;
    w.write_all(format!("EHLO {}\r\n", relay.helo).as_bytes())?;
    expect(&mut r, "EHLO", |c| c == 250)?;
    if let Some((user, password)) = &relay.auth {
        if !loopback {
            return Err(RelayError::Protocol("credentials are only sent to a loopback relay"));
        }
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{}", password.expose()));
        w.write_all(format!("AUTH PLAIN {token}\r\n").as_bytes())?;
        expect(&mut r, "AUTH", |c| c == 235)?;
    }
    let eight_bit = !message.is_ascii();
    w.write_all(format!("MAIL FROM:<{mail_from}>{}\r\n", if eight_bit { " BODY=8BITMIME" } else { "" }).as_bytes())?;
    expect(&mut r, "MAIL", |c| c / 100 == 2)?;
    w.write_all(format!("RCPT TO:<{rcpt}>\r\n").as_bytes())?;
    expect(&mut r, "RCPT", |c| c / 100 == 2)?;
    w.write_all(b"DATA\r\n")?;
    expect(&mut r, "DATA", |c| c == 354)?;
    let mut body = Vec::with_capacity(message.len() + 64);
    let mut at_line_start = true;
    for &b in message {
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
    expect(&mut r, "the message", |c| c / 100 == 2)?;
    let _ = w.write_all(b"QUIT\r\n");
    let _ = read_reply(&mut r);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn reply_reader_is_bounded() {
        let mut ok: &[u8] = b"250-a\r\n250 b\r\n";
        assert_eq!(read_reply(&mut ok).unwrap().0, 250);
        let long = vec![b'2'; 10_000];
        assert!(read_reply(&mut long.as_slice()).is_err());
        let mut many = Vec::new();
        for _ in 0..100 {
            many.extend_from_slice(b"250-x\r\n");
        }
        assert!(read_reply(&mut many.as_slice()).is_err());
        let mut junk: &[u8] = b"hello\r\n";
        assert!(read_reply(&mut junk).is_err());
    }

    #[test]
    fn addresses_cannot_inject_commands() {
        let relay = Relay { host: "127.0.0.1".into(), port: 9, auth: None, helo: "h".into() };
        assert!(matches!(send(&relay, "a@b>\r\nRSET", "c@d", b"x"), Err(RelayError::Protocol(_))));
    }
}
