//! The admin UI of a booted box over HTTPS through a forwarded port, as a browser uses it (the
//! session cookie, the CSRF token, this origin) or as a script does (an API token), with a
//! hand-written HTTP/1.1 client on rustls: the QEMU tests' shared client (boot, network).
//!
//! What it is not: a general HTTP client. One request per connection (`Connection: close`),
//! the answer read to the end; certificates are not verified (a box starts with a self-signed
//! one).
//!
//! A test harness: it panics with the request and what came back when something is off.

#![allow(clippy::unwrap_used, reason = "a test harness: a panic is the failure report")]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one admin request may take unless the caller says otherwise.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(60);

/// Connects to 127.0.0.1:`port`, retrying for 30 s (a forwarded port answers once the guest's
/// service is up); reads time out after 60 s.
pub fn connect(port: u16) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => {
                s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                return s;
            }
            Err(e) if Instant::now() > deadline => panic!("cannot connect to 127.0.0.1:{port}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// A TLS client stream to 127.0.0.1:`port` that accepts any certificate.
pub fn tls_stream(port: u16) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let config = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert))
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("hermes").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    rustls::StreamOwned::new(conn, connect(port))
}

/// The admin UI over HTTPS through the forwarded port 8443, as a browser would use it: the
/// session cookie, the CSRF token (`X-CSRF-Token` for the JSON API) and this origin.
pub struct Admin {
    pub port: u16,
    pub cookie: String,
    pub csrf: String,
}

impl Admin {
    pub fn anonymous(port: u16) -> Admin {
        Admin { port, cookie: String::new(), csrf: String::new() }
    }

    /// One request on a fresh connection (`Connection: close`): status, head, body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: &[u8],
        timeout: Duration,
    ) -> (u16, String, String) {
        let mut tls = tls_stream(self.port);
        tls.sock.set_read_timeout(Some(timeout)).unwrap();
        let host = format!("127.0.0.1:{}", self.port);
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
        if !self.cookie.is_empty() {
            req.push_str(&format!("Cookie: {}\r\n", self.cookie));
        }
        if method != "GET" {
            req.push_str(&format!("Origin: https://{host}\r\nContent-Length: {}\r\n", body.len()));
        }
        for (k, v) in extra {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        tls.write_all(req.as_bytes()).unwrap();
        tls.write_all(body).unwrap();
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match tls.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
                // A peer that closes without close_notify: what came is the answer.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => panic!("{method} {path}: {e} after {:?}", String::from_utf8_lossy(&raw)),
            }
        }
        let text = String::from_utf8_lossy(&raw).to_string();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let code = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        (code, head.to_string(), body.to_string())
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        let (code, _, body) = self.request("GET", path, &[], b"", HTTP_TIMEOUT);
        (code, body)
    }

    pub fn get_head(&self, path: &str) -> (u16, String) {
        let (code, head, _) = self.request("GET", path, &[], b"", HTTP_TIMEOUT);
        (code, head)
    }

    pub fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> (u16, String, String) {
        let body = fields.iter().map(|(k, v)| format!("{k}={}", enc(v))).collect::<Vec<_>>().join("&");
        self.request(
            "POST",
            path,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
            HTTP_TIMEOUT,
        )
    }

    pub fn put_json(&self, path: &str, value: &serde_json::Value) -> (u16, String) {
        let body = serde_json::to_vec(value).unwrap();
        let (code, _, text) = self.request(
            "PUT",
            path,
            &[("Content-Type", "application/json"), ("X-CSRF-Token", &self.csrf)],
            &body,
            HTTP_TIMEOUT,
        );
        (code, text)
    }

    pub fn post_json(&self, path: &str, value: &serde_json::Value, timeout: Duration) -> (u16, String) {
        let body = serde_json::to_vec(value).unwrap();
        let (code, _, text) = self.request(
            "POST",
            path,
            &[("Content-Type", "application/json"), ("X-CSRF-Token", &self.csrf)],
            &body,
            timeout,
        );
        (code, text)
    }

    /// Loads `path` (a sign-in or setup form) and posts `fields` with its CSRF token and
    /// cookie; returns the signed-in session.
    pub fn sign_in(port: u16, path: &str, fields: &[(&str, &str)]) -> Admin {
        let mut a = Admin::anonymous(port);
        let (code, head, body) = a.request("GET", path, &[], b"", HTTP_TIMEOUT);
        assert_eq!(code, 200, "GET {path}: {head}");
        a.cookie = cookie(&head, "__Host-hermes_pre").map(|v| format!("__Host-hermes_pre={v}")).unwrap_or_default();
        let csrf = csrf_field(&body);
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        let (code, head, body) = a.post_form(path, &all);
        assert_eq!(code, 303, "POST {path}: {head}\n{body}");
        let session = cookie(&head, "__Host-hermes_admin").expect("a session cookie");
        a.cookie = format!("__Host-hermes_admin={session}");
        let (code, body) = a.get("/");
        assert_eq!(code, 200, "{body}");
        a.csrf = csrf_field(&body);
        a
    }

    /// The first-boot setup with the console's token: the admin `root` with `password`.
    pub fn setup(port: u16, token: &str, password: &str) -> Admin {
        Admin::sign_in(
            port,
            "/setup",
            &[("token", token), ("name", "root"), ("new_password", password), ("confirm", password)],
        )
    }

    /// Makes an API token on the Tokens page (as a browser); returns it (`hat_...`, shown once).
    pub fn create_api_token(&self, name: &str) -> String {
        let (code, head, body) = self.post_form("/tokens", &[("csrf", &self.csrf), ("name", name)]);
        assert_eq!(code, 200, "POST /tokens: {head}\n{body}");
        let i = body.find("hat_").expect("the new token on the page");
        body[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').collect()
    }

    /// Signs `root` in with `password`.
    pub fn login(port: u16, password: &str) -> Admin {
        Admin::sign_in(port, "/login", &[("name", "root"), ("password", password)])
    }
}

/// One JSON API request with an API token (`Authorization: Bearer`): status, head, body.
pub fn bearer(port: u16, token: &str, method: &str, path: &str, body: &[u8]) -> (u16, String, String) {
    let auth = format!("Bearer {token}");
    Admin::anonymous(port).request(
        method,
        path,
        &[("Authorization", &auth), ("Content-Type", "application/json")],
        body,
        HTTP_TIMEOUT,
    )
}

/// The DER of the certificate the admin UI presents.
pub fn server_cert(port: u16) -> Vec<u8> {
    let mut tls = tls_stream(port);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    tls.conn.peer_certificates().and_then(|c| c.first()).expect("a server certificate").to_vec()
}

pub fn cookie(head: &str, name: &str) -> Option<String> {
    head.lines().filter_map(|l| l.split_once(':')).filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie")).find_map(
        |(_, v)| {
            v.trim().strip_prefix(&format!("{name}=")).map(|rest| rest.split(';').next().unwrap_or("").to_string())
        },
    )
}

pub fn csrf_field(body: &str) -> String {
    let i = body.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    body[i..].split('"').next().unwrap().to_string()
}

pub fn enc(s: &str) -> String {
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

/// The appliance starts with a self-signed certificate; these tests check mail and the admin UI, not PKI.
#[derive(Debug)]
pub struct AcceptAnyCert;

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
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
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider().signature_verification_algorithms.supported_schemes()
    }
}
