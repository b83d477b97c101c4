//! Session-level tests: RFC 2033 §4.2's example, fed whole and one byte at a time; pipelining;
//! sequencing errors; limits; smuggling; a no-panic run over pseudo-random input.

use super::*;

/// Drives a server over `chunks`; recipients whose local part starts with "no" are refused
/// 550 5.1.1; "green" gets 452 after DATA (over quota), everyone else 250.
fn run(chunks: &[&[u8]], config: ServerConfig) -> (String, Vec<Message<String>>, bool) {
    let mut s: Server<String> = Server::new(config);
    let mut out = Vec::new();
    let mut messages = Vec::new();
    let mut closed = false;
    s.greeting().write_to(&mut out);
    for chunk in chunks {
        s.feed(chunk);
        while let Some(ev) = s.poll() {
            match ev {
                Event::Reply(r) => r.write_to(&mut out),
                Event::Rcpt(path) => {
                    let name = path.to_string();
                    if name.starts_with("no") {
                        s.reject_rcpt(Reply::new(550, (5, 1, 1), "No such user here"));
                    } else {
                        s.accept_rcpt(name);
                    }
                }
                Event::Message(m) => {
                    let replies: Vec<Reply> = m
                        .recipients
                        .iter()
                        .map(|r| {
                            if r.data.starts_with("green") {
                                Reply::new(452, (4, 2, 2), format!("<{}> is temporarily over quota", r.path))
                            } else {
                                Reply::new(250, (2, 0, 0), format!("<{}> OK", r.path))
                            }
                        })
                        .collect();
                    messages.push(m);
                    s.complete_message(replies);
                }
                Event::Close => closed = true,
            }
        }
    }
    (String::from_utf8(out).unwrap(), messages, closed)
}

fn cfg() -> ServerConfig {
    ServerConfig::new("foo.edu", 1000)
}

const RFC2033_CLIENT: &[u8] = b"LHLO foo.edu\r\n\
MAIL FROM:<chris@bar.com>\r\n\
RCPT TO:<pat@foo.edu>\r\n\
RCPT TO:<nojones@foo.edu>\r\n\
RCPT TO:<green@foo.edu>\r\n\
DATA\r\n\
Blah blah blah...\r\n\
...etc. etc. etc.\r\n\
.\r\n\
QUIT\r\n";

const RFC2033_SERVER: &str = "220 foo.edu LMTP Hermes ready\r\n\
250-foo.edu\r\n\
250-PIPELINING\r\n\
250-ENHANCEDSTATUSCODES\r\n\
250-8BITMIME\r\n\
250-SIZE 1000\r\n\
250 SMTPUTF8\r\n\
250 2.1.0 OK\r\n\
250 2.1.5 <pat@foo.edu> OK\r\n\
550 5.1.1 No such user here\r\n\
250 2.1.5 <green@foo.edu> OK\r\n\
354 Start mail input; end with <CRLF>.<CRLF>\r\n\
250 2.0.0 <pat@foo.edu> OK\r\n\
452 4.2.2 <green@foo.edu> is temporarily over quota\r\n\
221 2.0.0 foo.edu closing connection\r\n";

#[test]
fn rfc2033_example_whole() {
    let (out, msgs, closed) = run(&[RFC2033_CLIENT], cfg());
    assert_eq!(out, RFC2033_SERVER);
    assert!(closed);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].body, b"Blah blah blah...\r\n..etc. etc. etc.\r\n");
    assert_eq!(msgs[0].from.to_string(), "<chris@bar.com>");
    assert_eq!(msgs[0].lhlo, "foo.edu");
    let rcpts: Vec<_> = msgs[0].recipients.iter().map(|r| r.data.as_str()).collect();
    assert_eq!(rcpts, ["pat@foo.edu", "green@foo.edu"]);
}

#[test]
fn rfc2033_example_byte_by_byte() {
    let chunks: Vec<&[u8]> = RFC2033_CLIENT.chunks(1).collect();
    let (out, msgs, _) = run(&chunks, cfg());
    assert_eq!(out, RFC2033_SERVER);
    assert_eq!(msgs[0].body, b"Blah blah blah...\r\n..etc. etc. etc.\r\n");
}

#[test]
fn every_split_point_gives_the_same_transcript() {
    for cut in 0..RFC2033_CLIENT.len() {
        let (a, b) = RFC2033_CLIENT.split_at(cut);
        let (out, _, _) = run(&[a, b], cfg());
        assert_eq!(out, RFC2033_SERVER, "split at {cut}");
    }
}

#[test]
fn sequence_errors() {
    let (out, _, _) = run(&[b"MAIL FROM:<a@b.org>\r\nHELO x\r\nLHLO x\r\nRCPT TO:<a@b.org>\r\nDATA\r\nMAIL FROM:<a@b.org>\r\nMAIL FROM:<a@b.org>\r\nDATA\r\n"], cfg());
    let codes: Vec<&str> = out.lines().map(|l| &l[..4]).collect();
    assert_eq!(
        codes,
        ["220 ", "503 ", "500 ", "250-", "250-", "250-", "250-", "250-", "250 ", "503 ", "503 ", "250 ", "503 ", "503 "]
    );
    assert!(out.contains("503 5.5.1 No valid recipients"));
}

#[test]
fn rset_noop_vrfy_help() {
    let (out, _, _) = run(&[b"LHLO x\r\nMAIL FROM:<>\r\nRSET\r\nRCPT TO:<a@b.org>\r\nNOOP\r\nVRFY bob\r\nHELP\r\n"], cfg());
    assert!(out.contains("250 2.1.0 OK\r\n250 2.0.0 OK\r\n503 5.5.1 Need MAIL command first\r\n250 2.0.0 OK\r\n252 2.5.2"));
    assert!(out.contains("214 2.0.0"));
}

#[test]
fn oversize_message_gets_552_per_recipient_and_session_continues() {
    let mut input = b"LHLO x\r\nMAIL FROM:<a@b.org>\r\nRCPT TO:<u1@foo.edu>\r\nRCPT TO:<u2@foo.edu>\r\nDATA\r\n".to_vec();
    input.extend(b"x".repeat(5000));
    input.extend(b"\r\n.\r\nNOOP\r\n");
    let (out, msgs, _) = run(&[&input], cfg());
    assert!(msgs.is_empty());
    assert!(out.ends_with("354 Start mail input; end with <CRLF>.<CRLF>\r\n552 5.3.4 Message size exceeds fixed maximum message size\r\n552 5.3.4 Message size exceeds fixed maximum message size\r\n250 2.0.0 OK\r\n"), "{out}");
}

#[test]
fn declared_size_over_limit_refused_at_mail() {
    let (out, _, _) = run(&[b"LHLO x\r\nMAIL FROM:<a@b.org> SIZE=1001\r\nMAIL FROM:<a@b.org> SIZE=1000\r\n"], cfg());
    assert!(out.contains("552 5.3.4"));
    assert!(out.ends_with("250 2.1.0 OK\r\n"));
}

#[test]
fn smuggled_end_of_data_is_content() {
    let input = b"LHLO x\r\nMAIL FROM:<a@b.org>\r\nRCPT TO:<u@foo.edu>\r\nDATA\r\nhi\n.\nMAIL FROM:<evil@x.org>\r\nRCPT TO:<v@foo.edu>\r\n\r\n.\r\n";
    let (out, msgs, _) = run(&[input], cfg());
    assert_eq!(msgs.len(), 1, "{out}");
    assert_eq!(msgs[0].body, b"hi\n.\nMAIL FROM:<evil@x.org>\r\nRCPT TO:<v@foo.edu>\r\n\r\n");
}

#[test]
fn overlong_line_is_answered_and_framing_kept() {
    let mut input = b"LHLO x\r\nNOOP ".to_vec();
    input.extend(b"a".repeat(10_000));
    input.extend(b"\r\nNOOP\r\n");
    let chunks: Vec<&[u8]> = input.chunks(7).collect();
    let (out, _, _) = run(&chunks, cfg());
    assert!(out.ends_with("500 5.5.2 Line too long\r\n250 2.0.0 OK\r\n"), "{out}");
}

#[test]
fn input_buffer_stays_bounded_on_endless_line() {
    let mut s: Server<()> = Server::new(cfg());
    for _ in 0..1000 {
        s.feed(&[b'a'; 1000]);
        while s.poll().is_some() {}
        assert!(s.input.len() - s.pos <= DEFAULT_MAX_LINE + 1000);
    }
}

#[test]
fn too_many_errors_closes() {
    let input = b"BOGUS\r\n".repeat(DEFAULT_MAX_ERRORS + 5);
    let (out, _, closed) = run(&[&input], cfg());
    assert!(closed);
    assert!(out.ends_with("421 4.7.0 foo.edu Too many errors, closing connection\r\n"));
    assert_eq!(out.matches("500 5.5.1").count(), DEFAULT_MAX_ERRORS - 1);
}

#[test]
fn recipient_limit() {
    let mut c = cfg();
    c.max_recipients = 2;
    let (out, _, _) = run(&[b"LHLO x\r\nMAIL FROM:<a@b.org>\r\nRCPT TO:<a@foo.edu>\r\nRCPT TO:<nob@foo.edu>\r\nRCPT TO:<c@foo.edu>\r\n"], c);
    assert!(out.ends_with("550 5.1.1 No such user here\r\n452 4.5.3 Too many recipients\r\n"), "{out}");
}

#[test]
fn smtputf8_rules() {
    let (out, _, _) = run(
        &["LHLO x\r\nMAIL FROM:<jösé@b.org>\r\nMAIL FROM:<a@b.org>\r\nRCPT TO:<jösé@foo.edu>\r\nRSET\r\nMAIL FROM:<jösé@b.org> SMTPUTF8\r\nRCPT TO:<jösé@foo.edu>\r\n".as_bytes()],
        cfg(),
    );
    let tail: Vec<&str> = out.lines().skip(7).collect();
    assert_eq!(tail, ["553 5.6.7 Non-ASCII address requires SMTPUTF8", "250 2.1.0 OK", "553 5.6.7 Non-ASCII address requires SMTPUTF8", "250 2.0.0 OK", "250 2.1.0 OK", "250 2.1.5 <jösé@foo.edu> OK"]);
}

#[test]
fn bare_lf_commands_and_binary_garbage() {
    let (out, _, _) = run(&[b"LHLO x\nNOOP\n\xff\xfe\r\nNO\0OP\r\n"], cfg());
    assert!(out.ends_with("250 2.0.0 OK\r\n500 5.5.2 Invalid characters in command\r\n500 5.5.2 Invalid characters in command\r\n"), "{out}");
}

#[test]
fn nothing_after_quit() {
    let (out, _, closed) = run(&[b"QUIT\r\nNOOP\r\n", b"NOOP\r\n"], cfg());
    assert!(closed);
    assert!(out.ends_with("221 2.0.0 foo.edu closing connection\r\n"));
}

#[test]
fn no_panic_on_random_input() {
    // xorshift: deterministic, no dependency.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let alphabet: &[&[u8]] = &[
        b"LHLO x\r\n", b"MAIL FROM:<a@b.org>\r\n", b"RCPT TO:<u@x.org>\r\n", b"RCPT TO:<no@x.org>\r\n", b"DATA\r\n",
        b"\r\n.\r\n", b".", b"\r", b"\n", b"RSET\r\n", b"<", b">", b"\"", b"@", b"\\", b" SIZE=9", b"\xc3", b"\0",
    ];
    for _ in 0..300 {
        let mut input = Vec::new();
        for _ in 0..(next() % 200) {
            let r = next();
            if r % 3 == 0 {
                input.push((r >> 8) as u8);
            } else {
                input.extend_from_slice(alphabet[(r as usize >> 8) % alphabet.len()]);
            }
        }
        let chunk = 1 + (next() % 17) as usize;
        let chunks: Vec<&[u8]> = input.chunks(chunk).collect();
        let mut c = cfg();
        c.max_line = 64;
        let _ = run(&chunks, c);
    }
}

#[test]
fn xdedup_is_offered_only_when_configured() {
    let (out, _, _) = run(&[b"LHLO x\r\nMAIL FROM:<a@b.org> XDEDUP=abc\r\n"], cfg());
    assert!(!out.contains("XDEDUP"), "{out}");
    assert!(out.ends_with("555 5.5.4 Unsupported parameter\r\n"), "{out}");
    let mut c = cfg();
    c.xdedup = true;
    let (out, msgs, _) = run(
        &[b"LHLO x\r\nMAIL FROM:<a@b.org> XDEDUP=a/b\r\nMAIL FROM:<a@b.org> XDEDUP=id-1.2_3\r\nRCPT TO:<u@foo.edu>\r\nDATA\r\nhi\r\n.\r\n"],
        c,
    );
    assert!(out.contains("250-XDEDUP\r\n") || out.contains("250 XDEDUP\r\n"), "{out}");
    assert!(out.contains("501 5.5.4"), "{out}");
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].params.xdedup.as_deref(), Some("id-1.2_3"));
}
