//! Fuzz target: the SMTP server state machine (`hermes_proto::smtp::Server`) on arbitrary bytes.
//!
//! The first byte picks how the input is cut into `feed` calls, whether the session starts
//! over TLS, whether STARTTLS handshakes "succeed", and which recipients and credentials are
//! refused; the rest is the client's bytes. Checks, beyond "never panics": replies are
//! well-formed CRLF lines with a three-digit code, a queued message never exceeds the size
//! limit, and no message is queued from an unauthenticated session when AUTH is required.
#![no_main]

use hermes_proto::smtp::{Event, Reply, Server, ServerConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&mode, bytes)) = input.split_first() else { return };
    let chunk = 1 + (mode & 0x07) as usize;
    let mut config = ServerConfig::new("fuzz.example", 4096);
    config.max_line = 256;
    config.max_recipients = 8;
    config.starttls = true;
    config.auth = mode & 0x10 != 0;
    config.require_auth = config.auth;
    let mut server: Server<u32> = Server::new(config, mode & 0x08 != 0);
    let mut out = Vec::new();
    let mut n = 0u32;
    for piece in bytes.chunks(chunk) {
        server.feed(piece);
        while let Some(ev) = server.poll() {
            match ev {
                Event::Reply(r) => r.write_to(&mut out),
                Event::StartTls => server.tls_established(),
                Event::Auth(c) => {
                    if c.password == "pw" {
                        server.auth_succeeded(c.username)
                    } else {
                        server.auth_failed(Reply::new(535, (5, 7, 8), "no"))
                    }
                }
                Event::Mail(..) => {
                    if mode & 0x20 != 0 {
                        server.reject_mail(Reply::new(553, (5, 7, 1), "no"))
                    } else {
                        server.accept_mail()
                    }
                }
                Event::Rcpt(..) => {
                    n += 1;
                    if (n as u8) & (mode >> 6) & 1 == 1 {
                        server.reject_rcpt(Reply::new(550, (5, 1, 1), "no"));
                    } else {
                        server.accept_rcpt(n);
                    }
                }
                Event::Message(m) => {
                    assert!(m.body.len() <= 4096);
                    assert!(!m.recipients.is_empty());
                    if mode & 0x10 != 0 {
                        assert!(server.authenticated().is_some());
                    }
                    server.complete_message(Reply::new(250, (2, 0, 0), "ok"));
                }
                Event::Close => return,
            }
        }
    }
    for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        assert!(line.ends_with(b"\r") && line.len() >= 4);
        assert!(line[..3].iter().all(u8::is_ascii_digit));
        assert!(!line[..line.len() - 1].contains(&b'\r'));
    }
});
