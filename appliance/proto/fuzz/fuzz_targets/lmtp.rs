//! Fuzz target: the LMTP server state machine (`hermes_proto::lmtp::Server`) on arbitrary bytes.
//!
//! The first byte picks how the input is cut into `feed` calls (so framing across chunk
//! boundaries is exercised) and which recipients are refused; the rest is the client's bytes.
//! Checks, beyond "never panics": replies are well-formed CRLF lines with a three-digit code,
//! and a delivered message never exceeds the size limit.
#![no_main]

use hermes_proto::lmtp::{Event, Reply, Server, ServerConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&mode, bytes)) = input.split_first() else { return };
    let chunk = 1 + (mode & 0x0f) as usize;
    let mut config = ServerConfig::new("fuzz.example", 4096);
    config.max_line = 256;
    config.max_recipients = 8;
    let mut server: Server<u32> = Server::new(config);
    let mut out = Vec::new();
    let mut n = 0u32;
    for piece in bytes.chunks(chunk) {
        server.feed(piece);
        while let Some(ev) = server.poll() {
            match ev {
                Event::Reply(r) => r.write_to(&mut out),
                Event::Rcpt(_) => {
                    n += 1;
                    if (n as u8) & (mode >> 4) & 1 == 1 {
                        server.reject_rcpt(Reply::new(550, (5, 1, 1), "no"));
                    } else {
                        server.accept_rcpt(n);
                    }
                }
                Event::Message(m) => {
                    assert!(m.body.len() <= 4096);
                    let replies: Vec<Reply> =
                        m.recipients.iter().map(|_| Reply::new(250, (2, 0, 0), "ok")).collect();
                    server.complete_message(replies);
                }
                Event::Close => return,
            }
        }
    }
    // Every reply line is "DDD[ -]...CRLF" with no bare CR or LF inside.
    for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        assert!(line.ends_with(b"\r") && line.len() >= 5);
        assert!(line[..3].iter().all(u8::is_ascii_digit));
        assert!(!line[..line.len() - 1].contains(&b'\r'));
    }
});
