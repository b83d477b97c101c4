//! The SMTP/LMTP client the queue runner delivers with: reply reading with bounds, EHLO/LHLO
//! capabilities, optional STARTTLS, and one transaction (MAIL, RCPT..., DATA) with a result
//! per recipient.
//!
//! What it is not: no connection pooling, DNS or retry policy (the runner's), no BDAT
//! (DATA works everywhere), no certificate verification: like Postfix's `may`/`encrypt`
//! levels, TLS to MX hosts and departmental servers protects against passive listeners only
//! (DANE/MTA-STS are a later issue).
//!
//! Invariants:
//! - Every read is bounded ([`MAX_REPLY_LINE`], [`MAX_REPLY_LINES`]) and timed out
//!   ([`COMMAND_TIMEOUT`], [`DATA_TIMEOUT`] after the final dot, RFC 5321 §4.5.3.2).
//! - After STARTTLS the client refuses to continue if the server sent anything beyond the 220
//!   (a response-injection attempt), and forgets the pre-TLS capabilities (RFC 3207 §4.2).
//! - The body is dot-stuffed and ends with CRLF.CRLF whatever its last bytes are.
//! - With LMTP there is one reply per accepted recipient after DATA; with SMTP the one reply
//!   applies to every accepted recipient.

use hermes_proto::smtp::{EnhancedStatus, Reply};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// RFC 5321 §4.5.3.2: 5 minutes for command replies (we use less: a stuck peer holds a slot).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// RFC 5321 §4.5.3.2.6: 10 minutes for the reply after the final dot.
pub const DATA_TIMEOUT: Duration = Duration::from_secs(600);
pub const MAX_REPLY_LINE: usize = 4096;
pub const MAX_REPLY_LINES: usize = 100;

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("timeout waiting for the server")]
    Timeout,
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server refused something that ends the session (greeting, EHLO, MAIL, TLS).
    #[error("server said: {0}")]
    Refused(String),
}

/// One connection.
pub struct Client {
    io: Box<dyn Io>,
    buf: Vec<u8>,
    pub caps: Vec<String>,
    /// The current transaction got as far as sending the message (the server may have it).
    data_sent: bool,
}

/// A recipient's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered(String),
    Temporary(String),
    Permanent(String),
}

pub fn reply_text(r: &Reply) -> String {
    String::from_utf8_lossy(&r.to_bytes()).trim_end().replace("\r\n", " / ")
}

fn outcome(r: &Reply) -> Outcome {
    let t = reply_text(r);
    match r.code / 100 {
        2 => Outcome::Delivered(t),
        5 => Outcome::Permanent(t),
        _ => Outcome::Temporary(t),
    }
}

impl Client {
    pub fn new(io: Box<dyn Io>) -> Self {
        Client { io, buf: Vec::new(), caps: Vec::new(), data_sent: false }
    }

    /// Whether the last [`Client::transaction`] sent the message body (so a failure may
    /// still have delivered it); false means nothing of it reached the server.
    pub fn data_sent(&self) -> bool {
        self.data_sent
    }

    /// For a pooled connection: true when the server has neither closed it nor sent anything
    /// unsolicited (a 421 before closing, for instance). Never waits.
    pub async fn alive(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut b = [0u8; 1];
        // A zero timeout polls the read once: Pending (nothing to read) means alive.
        tokio::time::timeout(Duration::ZERO, self.io.read(&mut b)).await.is_err()
    }

    async fn fill(&mut self, timeout: Duration) -> Result<(), ClientError> {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(timeout, self.io.read(&mut chunk)).await.map_err(|_| ClientError::Timeout)??;
        if n == 0 {
            return Err(ClientError::Protocol("connection closed".into()));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// Reads one (possibly multi-line) reply.
    pub async fn read_reply(&mut self, timeout: Duration) -> Result<Reply, ClientError> {
        let mut lines: Vec<String> = Vec::new();
        let mut code = 0u16;
        loop {
            let nl = loop {
                if let Some(nl) = memchr::memchr(b'\n', &self.buf) {
                    break nl;
                }
                if self.buf.len() > MAX_REPLY_LINE {
                    return Err(ClientError::Protocol("reply line too long".into()));
                }
                self.fill(timeout).await?;
            };
            let raw: Vec<u8> = self.buf.drain(..=nl).collect();
            let text = String::from_utf8_lossy(&raw);
            let text = text.trim_end_matches(['\r', '\n']);
            let c: u16 = text
                .get(..3)
                .and_then(|c| c.parse().ok())
                .filter(|c| (200..600).contains(c))
                .ok_or_else(|| ClientError::Protocol("malformed reply".into()))?;
            if code != 0 && c != code {
                return Err(ClientError::Protocol("inconsistent multi-line reply".into()));
            }
            code = c;
            let more = text.as_bytes().get(3) == Some(&b'-');
            lines.push(text.get(4..).unwrap_or("").to_string());
            if !more {
                break;
            }
            if lines.len() >= MAX_REPLY_LINES {
                return Err(ClientError::Protocol("reply too long".into()));
            }
        }
        let mut status = None;
        let lines = lines
            .into_iter()
            .map(|l| {
                let (first, rest) = l.split_once(' ').unwrap_or((l.as_str(), ""));
                let nums: Vec<u16> = first.split('.').filter_map(|n| n.parse().ok()).collect();
                if nums.len() == 3 && first.split('.').count() == 3 && nums[0] < 10 {
                    status = Some(EnhancedStatus(nums[0] as u8, nums[1], nums[2]));
                    rest.to_string()
                } else {
                    l
                }
            })
            .collect();
        Ok(Reply { code, status, lines })
    }

    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        tokio::time::timeout(COMMAND_TIMEOUT, async {
            self.io.write_all(bytes).await?;
            self.io.flush().await
        })
        .await
        .map_err(|_| ClientError::Timeout)??;
        Ok(())
    }

    pub async fn command(&mut self, line: &str) -> Result<Reply, ClientError> {
        self.send(format!("{line}\r\n").as_bytes()).await?;
        self.read_reply(COMMAND_TIMEOUT).await
    }

    /// Reads the greeting and says EHLO (or LHLO); records the capabilities.
    pub async fn hello(&mut self, name: &str, lmtp: bool, greeting: bool) -> Result<(), ClientError> {
        if greeting {
            let g = self.read_reply(COMMAND_TIMEOUT).await?;
            if g.code != 220 {
                return Err(ClientError::Refused(reply_text(&g)));
            }
        }
        let verb = if lmtp { "LHLO" } else { "EHLO" };
        let r = self.command(&format!("{verb} {name}")).await?;
        if r.code != 250 {
            return Err(ClientError::Refused(reply_text(&r)));
        }
        self.caps = r.lines.iter().skip(1).map(|l| l.to_ascii_uppercase()).collect();
        Ok(())
    }

    pub fn has(&self, cap: &str) -> bool {
        self.caps.iter().any(|c| c.split(' ').next() == Some(cap))
    }

    /// STARTTLS and the TLS handshake; then EHLO again.
    pub async fn starttls(self, server_name: &str, ehlo: &str) -> Result<Client, ClientError> {
        let mut me = self;
        let r = me.command("STARTTLS").await?;
        if r.code != 220 {
            return Err(ClientError::Refused(reply_text(&r)));
        }
        if !me.buf.is_empty() {
            return Err(ClientError::Protocol("data injected before the TLS handshake".into()));
        }
        let name = rustls::pki_types::ServerName::try_from(server_name.to_string())
            .map_err(|_| ClientError::Protocol("invalid server name for TLS".into()))?;
        let connector = tokio_rustls::TlsConnector::from(tls_client_config());
        let tls = tokio::time::timeout(COMMAND_TIMEOUT, connector.connect(name, me.io))
            .await
            .map_err(|_| ClientError::Timeout)??;
        let mut c = Client::new(Box::new(tls));
        c.hello(ehlo, false, false).await?;
        Ok(c)
    }

    /// One transaction. `rcpts` in order; returns one outcome per recipient.
    pub async fn transaction(
        &mut self,
        lmtp: bool,
        from: &str,
        mail_params: &str,
        rcpts: &[(String, String)],
        body: &[u8],
    ) -> Result<Vec<Outcome>, ClientError> {
        self.data_sent = false;
        let pipelining = self.has("PIPELINING");
        let mut results: Vec<Option<Outcome>> = vec![None; rcpts.len()];
        let mut batch = format!("MAIL FROM:<{from}>{mail_params}\r\n");
        for (addr, params) in rcpts {
            batch.push_str(&format!("RCPT TO:<{addr}>{params}\r\n"));
        }
        if pipelining {
            batch.push_str("DATA\r\n");
            self.send(batch.as_bytes()).await?;
        } else {
            self.send(format!("MAIL FROM:<{from}>{mail_params}\r\n").as_bytes()).await?;
        }
        let mail = self.read_reply(COMMAND_TIMEOUT).await?;
        if mail.code / 100 != 2 {
            if pipelining {
                // Drain the RCPT and DATA replies the server owes us.
                for _ in 0..=rcpts.len() {
                    let _ = self.read_reply(COMMAND_TIMEOUT).await;
                }
            } else {
                let _ = self.command("RSET").await;
            }
            let o = outcome(&mail);
            return Ok(vec![o; rcpts.len()]);
        }
        let mut accepted = Vec::new();
        for (i, (addr, params)) in rcpts.iter().enumerate() {
            let r = if pipelining {
                self.read_reply(COMMAND_TIMEOUT).await?
            } else {
                self.command(&format!("RCPT TO:<{addr}>{params}")).await?
            };
            if r.code / 100 == 2 {
                accepted.push(i);
            } else {
                results[i] = Some(outcome(&r));
            }
        }
        let data = if pipelining {
            self.read_reply(COMMAND_TIMEOUT).await?
        } else if accepted.is_empty() {
            let _ = self.command("RSET").await;
            return Ok(results.into_iter().map(|r| r.unwrap_or(Outcome::Temporary("not attempted".into()))).collect());
        } else {
            self.command("DATA").await?
        };
        if data.code != 354 {
            for &i in &accepted {
                results[i] = Some(outcome(&data));
            }
            // The server still holds the transaction (MAIL accepted): end it, so that the
            // connection can carry the next message.
            let _ = self.command("RSET").await;
            return Ok(results.into_iter().map(|r| r.unwrap_or(Outcome::Temporary("not attempted".into()))).collect());
        }
        self.data_sent = !accepted.is_empty();
        self.send(&dot_stuff(if accepted.is_empty() { b"" } else { body })).await?;
        if lmtp {
            for &i in &accepted {
                let r = self.read_reply(DATA_TIMEOUT).await?;
                results[i] = Some(outcome(&r));
            }
        } else {
            let r = self.read_reply(DATA_TIMEOUT).await?;
            if !accepted.is_empty() {
                for &i in &accepted {
                    results[i] = Some(outcome(&r));
                }
            }
        }
        Ok(results.into_iter().map(|r| r.unwrap_or(Outcome::Temporary("not attempted".into()))).collect())
    }

    pub async fn quit(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let _ = self.send(b"QUIT\r\n").await;
            let _ = self.read_reply(Duration::from_secs(5)).await;
        })
        .await;
    }
}

/// Dot-stuffs `body` and appends the end marker (CRLF added when the body lacks a final one).
pub fn dot_stuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 50 + 5);
    let mut at_line_start = true;
    for &b in body {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !body.is_empty() && !body.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// TLS for outbound SMTP: encryption without authentication of the peer (see module docs).
fn tls_client_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let verifier = Arc::new(NoVerify(provider.clone()));
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| b.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth());
            match config {
                Ok(c) => Arc::new(c),
                // The ring provider supports the default versions; this cannot fail in practice.
                Err(e) => panic!("TLS client configuration: {e}"),
            }
        })
        .clone()
}

#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn stuffing() {
        assert_eq!(dot_stuff(b".a\r\nb\r\n..\r\n"), b"..a\r\nb\r\n...\r\n.\r\n");
        assert_eq!(dot_stuff(b"no newline"), b"no newline\r\n.\r\n");
        assert_eq!(dot_stuff(b""), b".\r\n");
    }

    #[tokio::test]
    async fn pooled_connection_liveness() {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut c = Client::new(Box::new(a));
        assert!(c.alive().await, "open and quiet");
        b.write_all(b"421 4.4.2 closing\r\n").await.unwrap();
        assert!(!c.alive().await, "unsolicited bytes (a 421 before closing)");
        let (a, b) = tokio::io::duplex(1024);
        let mut c = Client::new(Box::new(a));
        drop(b);
        assert!(!c.alive().await, "closed by the server");
    }

    #[tokio::test]
    async fn replies_are_bounded_and_parsed() {
        let (a, mut b) = tokio::io::duplex(64 * 1024);
        let mut c = Client::new(Box::new(a));
        b.write_all(b"250-x.example\r\n250-PIPELINING\r\n250 SIZE 10\r\n550 5.1.1 no such user\r\n").await.unwrap();
        let r = c.read_reply(COMMAND_TIMEOUT).await.unwrap();
        assert_eq!(r.lines, ["x.example", "PIPELINING", "SIZE 10"]);
        let r = c.read_reply(COMMAND_TIMEOUT).await.unwrap();
        assert_eq!((r.code, r.status), (550, Some(EnhancedStatus(5, 1, 1))));
        b.write_all(&vec![b'2'; 10_000]).await.unwrap();
        assert!(c.read_reply(COMMAND_TIMEOUT).await.is_err());
    }
}
