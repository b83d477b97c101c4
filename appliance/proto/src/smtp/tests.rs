//! Session tests: RFC 5321 / 3030 / 4954 / 3207 transcripts, fed whole and one byte at a time,
//! the smuggling and STARTTLS-injection cases, limits, and a no-panic random-input run.

use super::*;

/// How the test "caller" answers events.
#[derive(Clone)]
struct Policy {
    password: &'static str,
    reject_rcpt_domain: Option<&'static str>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { password: "secret", reject_rcpt_domain: Some("unknown.example") }
    }
}

#[derive(Default, Debug)]
struct Outcome {
    out: String,
    messages: Vec<Message<String>>,
    starttls: usize,
    closed: bool,
}

fn drive(server: &mut Server<String>, input: &[u8], policy: &Policy, bytewise: bool, o: &mut Outcome) {
    let chunks: Vec<&[u8]> = if bytewise { input.chunks(1).collect() } else { vec![input] };
    for chunk in chunks {
        server.feed(chunk);
        pump(server, policy, o);
    }
}

fn pump(server: &mut Server<String>, policy: &Policy, o: &mut Outcome) {
    while let Some(ev) = server.poll() {
        match ev {
            Event::Reply(r) => o.out.push_str(&r.to_string()),
            Event::StartTls => {
                o.starttls += 1;
            }
            Event::Auth(c) => {
                if c.password == policy.password {
                    server.auth_succeeded(c.username)
                } else {
                    server.auth_failed(Reply::new(535, (5, 7, 8), "Authentication credentials invalid"))
                }
            }
            Event::Mail(..) => server.accept_mail(),
            Event::Rcpt(p, _) => match (policy.reject_rcpt_domain, &p) {
                (Some(d), ForwardPath::Address(a)) if a.domain() == d => {
                    server.reject_rcpt(Reply::new(550, (5, 1, 1), "User unknown"))
                }
                _ => server.accept_rcpt(p.to_string()),
            },
            Event::Message(m) => {
                o.messages.push(m);
                server.complete_message(Reply::new(250, (2, 0, 0), "Queued"));
            }
            Event::Close => o.closed = true,
        }
    }
}

fn run_cfg(config: ServerConfig, tls: bool, input: &[u8], bytewise: bool) -> Outcome {
    let mut s = Server::new(config, tls);
    let mut o = Outcome::default();
    drive(&mut s, input, &Policy::default(), bytewise, &mut o);
    o
}

fn cfg() -> ServerConfig {
    ServerConfig::new("mx.example.org", 1000)
}

/// Runs whole and byte-at-a-time; both must agree.
fn run(config: ServerConfig, input: &[u8]) -> Outcome {
    let a = run_cfg(config.clone(), false, input, false);
    let b = run_cfg(config, false, input, true);
    assert_eq!(a.out, b.out, "bytewise differs for {:?}", String::from_utf8_lossy(input));
    assert_eq!(a.messages, b.messages);
    a
}

fn codes(out: &str) -> Vec<String> {
    out.lines().filter(|l| l.as_bytes().get(3) == Some(&b' ')).map(|l| l[..3].to_string()).collect()
}

#[test]
fn rfc5321_d1_transcript() {
    // RFC 5321 Appendix D.1, pipelined.
    let input = b"EHLO bar.com\r\nMAIL FROM:<Smith@bar.com>\r\nRCPT TO:<Jones@foo.com>\r\nRCPT TO:<Green@foo.com>\r\n\
RCPT TO:<Brown@foo.com>\r\nDATA\r\nBlah blah blah...\r\n...etc. etc. etc.\r\n.\r\nQUIT\r\n";
    let o = run(cfg(), input);
    assert_eq!(codes(&o.out), ["250", "250", "250", "250", "250", "354", "250", "221"], "{}", o.out);
    assert!(
        o.out.contains("250-PIPELINING\r\n") && o.out.contains("250-CHUNKING\r\n") && o.out.contains("250 DSN\r\n")
    );
    assert!(!o.out.contains("STARTTLS") && !o.out.contains("AUTH"), "not offered: {}", o.out);
    assert_eq!(o.messages.len(), 1);
    let m = &o.messages[0];
    assert_eq!(m.body, b"Blah blah blah...\r\n..etc. etc. etc.\r\n");
    assert_eq!(m.recipients.len(), 3);
    assert_eq!(m.protocol, "ESMTP");
    assert!(o.closed);
}

#[test]
fn helo_gives_plain_smtp_and_no_parameters() {
    let o = run(
        cfg(),
        b"HELO x\r\nMAIL FROM:<a@b.org> SIZE=5\r\nMAIL FROM:<a@b.org>\r\nRCPT TO:<c@d.org>\r\nDATA\r\nx\r\n.\r\n",
    );
    assert_eq!(codes(&o.out), ["250", "555", "250", "250", "354", "250"], "{}", o.out);
    assert_eq!(o.messages[0].protocol, "SMTP");
}

#[test]
fn smuggling_never_splits_a_message() {
    for smuggle in [&b"\n.\n"[..], b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n"] {
        let mut input = b"EHLO x\r\nMAIL FROM:<a@b.org>\r\nRCPT TO:<c@d.org>\r\nDATA\r\nhello".to_vec();
        input.extend_from_slice(smuggle);
        input.extend_from_slice(b"MAIL FROM:<evil@b.org>\r\nRCPT TO:<victim@d.org>\r\nDATA\r\nspoof\r\n.\r\nQUIT\r\n");
        let o = run(cfg(), &input);
        assert_eq!(o.messages.len(), 1, "{smuggle:?}");
        assert!(o.messages[0].body.windows(4).any(|w| w == b"MAIL"), "smuggled text stays in the body");
        assert_eq!(codes(&o.out), ["250", "250", "250", "354", "250", "221"], "{smuggle:?}: {}", o.out);
    }
}

#[test]
fn starttls_discards_pipelined_plaintext_and_resets() {
    let mut c = cfg();
    c.starttls = true;
    let mut s = Server::new(c, false);
    let mut o = Outcome::default();
    let p = Policy::default();
    drive(&mut s, b"EHLO x\r\nSTARTTLS\r\nMAIL FROM:<injected@b.org>\r\n", &p, false, &mut o);
    assert!(o.out.contains("250 STARTTLS\r\n"), "{}", o.out);
    assert_eq!(o.starttls, 1);
    assert!(o.out.ends_with("220 2.0.0 Ready to start TLS\r\n"), "{}", o.out);
    // More plaintext while the handshake is pending is ignored too.
    drive(&mut s, b"RCPT TO:<x@y.org>\r\n", &p, false, &mut o);
    s.tls_established();
    assert!(s.is_tls());
    o.out.clear();
    drive(&mut s, b"MAIL FROM:<a@b.org>\r\nEHLO x\r\nSTARTTLS\r\n", &p, false, &mut o);
    // No EHLO after TLS yet: 503; the second STARTTLS: 503; STARTTLS no longer advertised.
    assert_eq!(codes(&o.out), ["503", "250", "503"], "{}", o.out);
    assert!(!o.out.contains("STARTTLS\r\n250"), "{}", o.out);
    assert_eq!(o.starttls, 1);
}

fn submission() -> ServerConfig {
    let mut c = cfg();
    c.starttls = true;
    c.auth = true;
    c.require_auth = true;
    c
}

#[test]
fn auth_only_after_tls_and_required_for_mail() {
    let o =
        run_cfg(submission(), false, b"EHLO x\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nMAIL FROM:<a@b.org>\r\n", false);
    assert!(!o.out.contains("AUTH PLAIN LOGIN"), "AUTH not offered before TLS: {}", o.out);
    assert_eq!(codes(&o.out), ["250", "538", "530"], "{}", o.out);
    // Over TLS (implicit): offered, PLAIN with initial response works.
    let o = run_cfg(
        submission(),
        true,
        b"EHLO x\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nMAIL FROM:<a@b.org>\r\nAUTH PLAIN =\r\n",
        true,
    );
    assert!(o.out.contains("250-AUTH PLAIN LOGIN\r\n") || o.out.contains("250 AUTH PLAIN LOGIN\r\n"), "{}", o.out);
    assert_eq!(codes(&o.out), ["250", "235", "250", "503"], "{}", o.out);
}

#[test]
fn auth_login_and_plain_continuations() {
    // LOGIN: username and password as continuations (RFC 4954 style).
    let input = b"EHLO x\r\nAUTH LOGIN\r\nYWxpY2U=\r\nc2VjcmV0\r\nMAIL FROM:<alice@b.org>\r\n";
    let o = run_cfg(submission(), true, input, true);
    assert_eq!(codes(&o.out), ["250", "334", "334", "235", "250"], "{}", o.out);
    assert!(o.out.contains("334 VXNlcm5hbWU6\r\n") && o.out.contains("334 UGFzc3dvcmQ6\r\n"));
    // LOGIN with the username as initial response; PLAIN with an empty 334.
    let o = run_cfg(submission(), true, b"EHLO x\r\nAUTH LOGIN YWxpY2U=\r\nc2VjcmV0\r\n", false);
    assert_eq!(codes(&o.out), ["250", "334", "235"], "{}", o.out);
    let o = run_cfg(submission(), true, b"EHLO x\r\nAUTH PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\n", false);
    assert_eq!(codes(&o.out), ["250", "334", "235"], "{}", o.out);
    // Cancel, garbage, unknown mechanism.
    let o = run_cfg(submission(), true, b"EHLO x\r\nAUTH PLAIN\r\n*\r\nAUTH PLAIN\r\n!!!\r\nAUTH CRAM-MD5\r\n", false);
    assert_eq!(codes(&o.out), ["250", "334", "501", "334", "501", "504"], "{}", o.out);
}

#[test]
fn failed_auth_limit_closes() {
    let bad = b"AUTH PLAIN AGFsaWNlAHdyb25n\r\n";
    let mut input = b"EHLO x\r\n".to_vec();
    for _ in 0..5 {
        input.extend_from_slice(bad);
    }
    let o = run_cfg(submission(), true, &input, false);
    assert_eq!(codes(&o.out), ["250", "535", "535", "535", "421"], "{}", o.out);
    assert!(o.closed);
}

#[test]
fn mx_port_has_no_auth() {
    let mut c = cfg();
    c.starttls = true;
    let o = run_cfg(c, true, b"EHLO x\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", false);
    assert_eq!(codes(&o.out), ["250", "503"], "{}", o.out);
}

#[test]
fn bdat_chunks() {
    // RFC 3030 §4.2 style: two chunks, the second LAST, pipelined.
    let input =
        b"EHLO x\r\nMAIL FROM:<a@b.org>\r\nRCPT TO:<c@d.org>\r\nBDAT 5\r\nhelloBDAT 9 LAST\r\n\r\n.x\r\n.\r\nNOOP\r\n";
    let o = run(cfg(), input);
    assert_eq!(codes(&o.out), ["250", "250", "250", "250", "250", "250"], "{}", o.out);
    assert_eq!(o.messages[0].body, b"hello\r\n.x\r\n.\r\n", "BDAT is not dot-unstuffed");
    // BDAT 0 LAST ends a message; DATA after BDAT is refused.
    let o = run(cfg(), b"EHLO x\r\nMAIL FROM:<a@b.org>\r\nRCPT TO:<c@d.org>\r\nBDAT 2\r\nhiBDAT 0 LAST\r\n");
    assert_eq!(o.messages[0].body, b"hi");
    let o = run(cfg(), b"EHLO x\r\nMAIL FROM:<a@b.org>\r\nRCPT TO:<c@d.org>\r\nBDAT 2\r\nhiDATA\r\n");
    assert_eq!(codes(&o.out), ["250", "250", "250", "250", "503"], "{}", o.out);
    // BDAT without a transaction: the chunk is consumed, not parsed as commands.
    let o = run(cfg(), b"EHLO x\r\nBDAT 10\r\nQUIT\r\nQUITNOOP\r\n");
    assert_eq!(codes(&o.out), ["250", "503", "250"], "{}", o.out);
}

#[test]
fn oversize_is_552_and_keeps_framing() {
    let mut input =
        b"EHLO x\r\nMAIL FROM:<a@b.org> SIZE=5000\r\nMAIL FROM:<a@b.org>\r\nRCPT TO:<c@d.org>\r\nDATA\r\n".to_vec();
    input.extend_from_slice(&b"y".repeat(3000));
    input.extend_from_slice(b"\r\n.\r\nNOOP\r\n");
    let o = run(cfg(), &input);
    assert_eq!(codes(&o.out), ["250", "552", "250", "250", "354", "552", "250"], "{}", o.out);
    assert!(o.messages.is_empty());
    let mut input = b"EHLO x\r\nMAIL FROM:<a@b.org>\r\nRCPT TO:<c@d.org>\r\nBDAT 800\r\n".to_vec();
    input.extend_from_slice(&[b'z'; 800]);
    input.extend_from_slice(b"BDAT 800 LAST\r\n");
    input.extend_from_slice(&[b'z'; 800]);
    input.extend_from_slice(b"NOOP\r\n");
    let o = run(cfg(), &input);
    assert_eq!(codes(&o.out), ["250", "250", "250", "250", "552", "250"], "{}", o.out);
}

#[test]
fn relay_tricks_and_source_routes_refused() {
    for rcpt in [
        "<user%elsewhere.example@d.org>",
        "<elsewhere.example!user@d.org>",
        "<\"user@elsewhere.example\"@d.org>",
        "<\"user%elsewhere\"@d.org>",
        "<@d.org:user@elsewhere.example>",
        "<@a.org,@b.org:user@elsewhere.example>",
    ] {
        let input = format!("EHLO x\r\nMAIL FROM:<a@b.org>\r\nRCPT TO:{rcpt}\r\n");
        let o = run(cfg(), input.as_bytes());
        let c = codes(&o.out);
        assert!(c[2] == "550" || c[2] == "501", "{rcpt}: {}", o.out);
    }
}

#[test]
fn dsn_parameters() {
    let input = b"EHLO x\r\nMAIL FROM:<a@b.org> RET=HDRS ENVID=QQ314159+2Bx SIZE=10 BODY=8BITMIME AUTH=<>\r\n\
RCPT TO:<c@d.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;c+40d.org\r\nRCPT TO:<e@d.org> NOTIFY=NEVER\r\nDATA\r\n.\r\n";
    let o = run(cfg(), input);
    let m = &o.messages[0];
    assert_eq!(m.params.ret, Some(Ret::Hdrs));
    assert_eq!(m.params.envid.as_deref(), Some("QQ314159+x"));
    let r0 = &m.recipients[0].params;
    assert_eq!(r0.notify, Some(Notify { success: true, failure: true, ..Default::default() }));
    assert_eq!(r0.orcpt, Some(("rfc822".into(), "c@d.org".into())));
    assert!(m.recipients[1].params.notify.is_some_and(|n| n.never));
    let bad = run(
        cfg(),
        b"EHLO x\r\nMAIL FROM:<a@b.org> ENVID=a+zz\r\nMAIL FROM:<a@b.org>\r\nRCPT TO:<c@d.org> NOTIFY=NEVER,DELAY\r\n",
    );
    assert_eq!(codes(&bad.out), ["250", "501", "250", "501"], "{}", bad.out);
}

#[test]
fn sequence_errors_and_unknown_recipient() {
    let o = run(cfg(), b"MAIL FROM:<a@b.org>\r\nEHLO x\r\nRCPT TO:<c@d.org>\r\nDATA\r\nMAIL FROM:<a@b.org>\r\nRCPT TO:<c@unknown.example>\r\nDATA\r\nRSET\r\nVRFY x\r\nHELP\r\nEXPN x\r\nFOO\r\n");
    assert_eq!(
        codes(&o.out),
        ["503", "250", "503", "503", "250", "550", "554", "250", "252", "214", "502", "500"],
        "{}",
        o.out
    );
}

#[test]
fn limits_recipients_errors_commands_lines() {
    let mut c = cfg();
    c.max_recipients = 2;
    let o = run(c, b"EHLO x\r\nMAIL FROM:<a@b.org>\r\nRCPT TO:<c@d.org>\r\nRCPT TO:<e@d.org>\r\nRCPT TO:<f@d.org>\r\n");
    assert_eq!(codes(&o.out), ["250", "250", "250", "250", "452"]);
    let mut c = cfg();
    c.max_errors = 3;
    let o = run(c, b"A\r\nB\r\nC\r\nD\r\n");
    assert_eq!(codes(&o.out), ["500", "500", "421"]);
    assert!(o.closed);
    let mut c = cfg();
    c.max_commands = 3;
    let o = run(c, b"NOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\n");
    assert_eq!(codes(&o.out), ["250", "250", "250", "421"]);
    let mut input = b"NOOP ".to_vec();
    input.extend_from_slice(&[b'a'; 10_000]);
    input.extend_from_slice(b"\r\nNOOP\r\n");
    let o = run(cfg(), &input);
    assert_eq!(codes(&o.out), ["500", "250"], "{}", o.out);
    assert!(o.out.contains("5.5.2"));
}

#[test]
fn bare_lf_command_lines_and_nul_bytes() {
    let o = run(cfg(), b"EHLO x\nNOOP\r\nNO\0OP\r\n");
    assert_eq!(codes(&o.out), ["250", "250", "500"], "{}", o.out);
}

#[test]
fn random_input_never_panics_and_stays_bounded() {
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet: &[&[u8]] = &[
        b"EHLO x\r\n",
        b"MAIL FROM:<a@b.org>\r\n",
        b"RCPT TO:<c@d.org>\r\n",
        b"DATA\r\n",
        b"BDAT 3\r\n",
        b"BDAT 2 LAST\r\n",
        b".\r\n",
        b"\r\n",
        b"\n",
        b"\r",
        b".",
        b"AUTH PLAIN\r\n",
        b"AUTH LOGIN\r\n",
        b"STARTTLS\r\n",
        b"RSET\r\n",
        b"\0",
        b"\xff",
        b"=",
        b"*\r\n",
        b"QUIT\r\n",
    ];
    for round in 0..300 {
        let mut c = submission();
        c.max_errors = 1000;
        c.max_line = 64;
        let tls = round % 2 == 0;
        let mut s = Server::new(c, tls);
        let mut o = Outcome::default();
        for _ in 0..200 {
            let piece: Vec<u8> = if next() % 4 == 0 {
                (0..(next() % 40)).map(|_| next() as u8).collect()
            } else {
                alphabet[(next() % alphabet.len() as u64) as usize].to_vec()
            };
            drive(&mut s, &piece, &Policy::default(), false, &mut o);
            if o.starttls > 0 && next() % 2 == 0 {
                s.tls_established();
                o.starttls = 0;
            }
            assert!(s.input.len() <= 64 * 1024 + 300, "input buffer bounded");
        }
    }
}
