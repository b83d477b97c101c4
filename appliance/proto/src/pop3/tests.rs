//! Tests of the POP3 codec: the command table from RFC 1939 §5-7, RFC 2449, RFC 2595 and
//! RFC 5034 examples (whole lines and fed one byte at a time), framing limits, response
//! rendering, byte-stuffing and TOP, and the fuzz entry point on pseudo-random input.

use super::*;

fn secret(b: &[u8]) -> Secret<Vec<u8>> {
    Secret::new(b.to_vec())
}

/// (line as a client sends it, expected command)
fn table() -> Vec<(&'static [u8], Command)> {
    vec![
        // RFC 1939 §7 examples
        (b"USER mrose", Command::User("mrose".into())),
        (b"PASS secret", Command::Pass(secret(b"secret"))),
        (b"APOP mrose c4c9334bac560ecc979e58001b3e22fb", Command::Apop { name: "mrose".into() }),
        // §5
        (b"STAT", Command::Stat),
        (b"LIST", Command::List(None)),
        (b"LIST 2", Command::List(Some(2))),
        (b"RETR 1", Command::Retr(1)),
        (b"DELE 1", Command::Dele(1)),
        (b"NOOP", Command::Noop),
        (b"RSET", Command::Rset),
        (b"QUIT", Command::Quit),
        // §7
        (b"TOP 1 10", Command::Top { msg: 1, lines: 10 }),
        (b"TOP 1 0", Command::Top { msg: 1, lines: 0 }),
        (b"UIDL", Command::Uidl(None)),
        (b"UIDL 2", Command::Uidl(Some(2))),
        // RFC 2449, RFC 2595, RFC 6856
        (b"CAPA", Command::Capa),
        (b"STLS", Command::Stls),
        (b"UTF8", Command::Utf8),
        // RFC 5034 §6 example (PLAIN with an initial response), the empty one, and the listing
        (
            b"AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=",
            Command::Auth { mechanism: Some("PLAIN".into()), initial_response: Some(secret(b"test\0test\0test")) },
        ),
        (b"AUTH PLAIN =", Command::Auth { mechanism: Some("PLAIN".into()), initial_response: Some(secret(b"")) }),
        (b"AUTH plain", Command::Auth { mechanism: Some("PLAIN".into()), initial_response: None }),
        (b"AUTH", Command::Auth { mechanism: None, initial_response: None }),
        // leniency: case, extra spaces, passwords with spaces
        (b"stat", Command::Stat),
        (b"rEtR   7  ", Command::Retr(7)),
        (b"PASS two words ", Command::Pass(secret(b"two words "))),
        (b"PASS ", Command::Pass(secret(b""))),
        (b"user \xc3\xa9l\xc3\xa8ve@example.org", Command::User("\u{e9}l\u{e8}ve@example.org".into())),
        (b"LIST 4294967295", Command::List(Some(u32::MAX))),
    ]
}

#[test]
fn rfc_command_table() {
    for (line, want) in table() {
        assert_eq!(parse_command(line), Ok(want), "{}", String::from_utf8_lossy(line));
    }
}

#[test]
fn rfc_command_table_fed_one_byte_at_a_time() {
    let mut wire = Vec::new();
    for (line, _) in table() {
        wire.extend_from_slice(line);
        wire.extend_from_slice(b"\r\n");
    }
    let mut reader = LineReader::new(MAX_COMMAND_LINE);
    let mut got = Vec::new();
    for b in &wire {
        reader.feed(std::slice::from_ref(b));
        while let Some(ev) = reader.next_line() {
            let LineEvent::Line(l) = ev else { panic!("unexpected {ev:?}") };
            got.push(parse_command(&l).unwrap());
        }
    }
    let want: Vec<Command> = table().into_iter().map(|(_, c)| c).collect();
    assert_eq!(got, want);
    assert_eq!(reader.buffered(), 0);
}

#[test]
fn invalid_commands_are_refused_with_fixed_texts() {
    for (line, kind) in [
        (&b""[..], ParseErrorKind::UnknownCommand),
        (b"   ", ParseErrorKind::UnknownCommand),
        (b"HELO x", ParseErrorKind::UnknownCommand),
        (b"STATUS", ParseErrorKind::UnknownCommand),
        (b"\xff\xfe", ParseErrorKind::UnknownCommand),
        (b"RETR", ParseErrorKind::BadArguments),
        (b"RETR 0", ParseErrorKind::BadArguments),
        (b"RETR -1", ParseErrorKind::BadArguments),
        (b"RETR +1", ParseErrorKind::BadArguments),
        (b"RETR 1 2", ParseErrorKind::BadArguments),
        (b"RETR 4294967296", ParseErrorKind::BadArguments),
        (b"RETR 99999999999999999999999", ParseErrorKind::BadArguments),
        (b"DELE x", ParseErrorKind::BadArguments),
        (b"LIST 1 2", ParseErrorKind::BadArguments),
        (b"TOP 1", ParseErrorKind::BadArguments),
        (b"TOP 1 -1", ParseErrorKind::BadArguments),
        (b"STAT 1", ParseErrorKind::BadArguments),
        (b"QUIT now", ParseErrorKind::BadArguments),
        (b"USER", ParseErrorKind::BadArguments),
        (b"USER a b", ParseErrorKind::BadArguments),
        (b"USER a\x01b", ParseErrorKind::BadArguments),
        (b"USER \xff", ParseErrorKind::BadArguments),
        (b"PASS", ParseErrorKind::BadArguments),
        (b"AUTH PL@IN", ParseErrorKind::BadArguments),
        (b"AUTH PLAIN !!!", ParseErrorKind::BadArguments),
        (b"AUTH PLAIN a b", ParseErrorKind::BadArguments),
        (b"AUTH AVERYVERYLONGMECHANISMNAME", ParseErrorKind::BadArguments),
    ] {
        let e = parse_command(line).unwrap_err();
        assert_eq!(e.kind, kind, "{}", String::from_utf8_lossy(line));
        assert!(!e.message.is_empty());
    }
    let long = format!("USER {}", "a".repeat(MAX_ARG + 1));
    assert!(parse_command(long.as_bytes()).is_err());
}

#[test]
fn sasl_continuation_lines() {
    assert_eq!(parse_sasl_response(b"*"), Ok(SaslResponse::Cancel));
    assert_eq!(parse_sasl_response(b""), Ok(SaslResponse::Data(secret(b""))));
    assert_eq!(parse_sasl_response(b"AHRpbQB0YW5zdGFhZnRhbnN0YWFm"), Ok(SaslResponse::Data(secret(b"\0tim\0tanstaaftanstaaf"))));
    // Unpadded base64 is accepted (some clients strip the padding).
    assert_eq!(parse_sasl_response(b"AGEAYg"), Ok(SaslResponse::Data(secret(b"\0a\0b"))));
    assert!(parse_sasl_response(b"not base64!").is_err());
    assert!(parse_sasl_response(b"A").is_err());
}

#[test]
fn secrets_are_redacted_in_debug() {
    let c = parse_command(b"PASS hunter2").unwrap();
    assert!(!format!("{c:?}").contains("hunter2"));
    let c = parse_command(b"AUTH PLAIN AGEAaHVudGVyMg==").unwrap();
    assert!(!format!("{c:?}").contains("hunter2"));
}

#[test]
fn framing_accepts_lf_and_crlf_and_keeps_partial_lines() {
    let mut r = LineReader::new(MAX_COMMAND_LINE);
    r.feed(b"NOOP\nSTAT\r\nLI");
    assert_eq!(r.next_line(), Some(LineEvent::Line(b"NOOP".to_vec())));
    assert_eq!(r.next_line(), Some(LineEvent::Line(b"STAT".to_vec())));
    assert_eq!(r.next_line(), None);
    r.feed(b"ST\r");
    assert_eq!(r.next_line(), None);
    r.feed(b"\n");
    assert_eq!(r.next_line(), Some(LineEvent::Line(b"LIST".to_vec())));
    assert_eq!(r.next_line(), None);
}

#[test]
fn framing_limit_is_inclusive_of_crlf() {
    let mut r = LineReader::new(10);
    r.feed(b"12345678\r\n123456789\r\n");
    assert_eq!(r.next_line(), Some(LineEvent::Line(b"12345678".to_vec())));
    assert_eq!(r.next_line(), Some(LineEvent::TooLong));
    assert_eq!(r.next_line(), None);
}

#[test]
fn over_long_line_is_discarded_without_buffering_and_reported_once() {
    let mut r = LineReader::new(MAX_COMMAND_LINE);
    r.feed(b"NOOP\r\n");
    // 1 MiB of one line, fed in pieces: the reader never holds more than the limit.
    let piece = vec![b'x'; 4096];
    for _ in 0..256 {
        r.feed(&piece);
        while let Some(ev) = r.next_line() {
            assert_eq!(ev, LineEvent::Line(b"NOOP".to_vec()));
        }
        assert!(r.buffered() <= piece.len() + MAX_COMMAND_LINE);
    }
    r.feed(b"yyy\r\nSTAT\r\n");
    assert_eq!(r.next_line(), Some(LineEvent::TooLong));
    assert_eq!(r.next_line(), Some(LineEvent::Line(b"STAT".to_vec())));
    assert_eq!(r.next_line(), None);
}

#[test]
fn over_long_line_fed_one_byte_at_a_time() {
    let mut r = LineReader::new(16);
    let mut events = Vec::new();
    for b in b"NOOP\r\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\nQUIT\r\n" {
        r.feed(std::slice::from_ref(b));
        while let Some(ev) = r.next_line() {
            events.push(ev);
        }
        assert!(r.buffered() < 16);
    }
    assert_eq!(
        events,
        vec![LineEvent::Line(b"NOOP".to_vec()), LineEvent::TooLong, LineEvent::Line(b"QUIT".to_vec())]
    );
}

#[test]
fn sasl_lines_may_be_longer_after_raising_the_limit() {
    let mut r = LineReader::new(MAX_COMMAND_LINE);
    r.set_max_line(MAX_SASL_LINE);
    let long = vec![b'A'; 4000];
    r.feed(&long);
    r.feed(b"\r\n");
    assert_eq!(r.next_line(), Some(LineEvent::Line(long)));
    r.set_max_line(MAX_COMMAND_LINE);
    assert_eq!(r.max_line(), MAX_COMMAND_LINE);
}

#[test]
fn discard_buffered_drops_pipelined_input() {
    let mut r = LineReader::new(MAX_COMMAND_LINE);
    r.feed(b"STLS\r\nUSER evil\r\nPA");
    assert_eq!(r.next_line(), Some(LineEvent::Line(b"STLS".to_vec())));
    assert_eq!(r.discard_buffered(), 13);
    assert_eq!(r.next_line(), None);
}

#[test]
fn responses_render_codes_and_stay_one_line() {
    assert_eq!(Response::ok("Hermes POP3 ready").to_bytes(), b"+OK Hermes POP3 ready\r\n");
    assert_eq!(
        Response::err("Authentication failed").with_code(RespCode::Auth).to_bytes(),
        b"-ERR [AUTH] Authentication failed\r\n"
    );
    assert_eq!(Response::err("x").with_code(RespCode::SysTemp).to_bytes(), b"-ERR [SYS/TEMP] x\r\n");
    assert_eq!(Response::err("x").with_code(RespCode::InUse).to_bytes(), b"-ERR [IN-USE] x\r\n");
    assert_eq!(Response::err("x").with_code(RespCode::LoginDelay).to_bytes(), b"-ERR [LOGIN-DELAY] x\r\n");
    assert_eq!(Response::ok("").to_bytes(), b"+OK\r\n");
    assert_eq!(Response::err("a\r\nb").to_bytes(), b"-ERR a  b\r\n");
    let long = Response::err("\u{e9}".repeat(600)).to_bytes();
    assert!(long.len() <= 512);
    assert!(std::str::from_utf8(&long).is_ok());
}

/// The RFC 1939 §3 rule with a message full of awkward lines.
#[test]
fn retr_byte_stuffs_and_terminates() {
    let msg = b"Subject: dots\r\n\r\n.\r\n..two\r\nmid.dle\r\n.\r\nend";
    let mut out = Vec::new();
    encode_message(msg, Extent::Whole, &mut out);
    assert_eq!(out, b"Subject: dots\r\n\r\n..\r\n...two\r\nmid.dle\r\n..\r\nend\r\n.\r\n".to_vec());
}

#[test]
fn retr_converts_bare_lf_and_keeps_bare_cr() {
    let mut out = Vec::new();
    encode_message(b"A: b\n\nline\r\nbare\rcr\n.x\n", Extent::Whole, &mut out);
    assert_eq!(out, b"A: b\r\n\r\nline\r\nbare\rcr\r\n..x\r\n.\r\n".to_vec());
    let mut out = Vec::new();
    encode_message(b"", Extent::Whole, &mut out);
    assert_eq!(out, b".\r\n".to_vec());
}

#[test]
fn retr_is_the_same_in_any_chunking() {
    let msg = b"From: a\r\nSubject: x\n\r\n.leading\r\n\r\n.\n..\r\nlast\r";
    let mut whole = Vec::new();
    encode_message(msg, Extent::Whole, &mut whole);
    for size in 1..msg.len() {
        let mut e = BodyEncoder::new(Extent::Whole);
        let mut out = Vec::new();
        for piece in msg.chunks(size) {
            e.encode(piece, &mut out);
        }
        e.finish(&mut out);
        assert_eq!(out, whole, "chunk size {size}");
    }
    assert_eq!(fuzz::decode_multiline(&whole), Some(fuzz::normalize(msg)));
}

#[test]
fn top_sends_header_blank_line_and_n_body_lines() {
    let msg = b"From: a\r\nSubject: s\r\n\r\nline 1\r\n.line 2\r\nline 3\r\n";
    let top = |n| {
        let mut out = Vec::new();
        encode_message(msg, Extent::Top(n), &mut out);
        out
    };
    assert_eq!(top(0), b"From: a\r\nSubject: s\r\n\r\n.\r\n".to_vec());
    assert_eq!(top(1), b"From: a\r\nSubject: s\r\n\r\nline 1\r\n.\r\n".to_vec());
    assert_eq!(top(2), b"From: a\r\nSubject: s\r\n\r\nline 1\r\n..line 2\r\n.\r\n".to_vec());
    assert_eq!(top(3), b"From: a\r\nSubject: s\r\n\r\nline 1\r\n..line 2\r\nline 3\r\n.\r\n".to_vec());
    assert_eq!(top(1000), top(3));
    // Bare-LF header end and a message without any body.
    let mut out = Vec::new();
    encode_message(b"A: b\n\nbody\nmore\n", Extent::Top(1), &mut out);
    assert_eq!(out, b"A: b\r\n\r\nbody\r\n.\r\n".to_vec());
    let mut out = Vec::new();
    encode_message(b"A: b\r\nC: d", Extent::Top(0), &mut out);
    assert_eq!(out, b"A: b\r\nC: d\r\n.\r\n".to_vec());
}

#[test]
fn listing_lines_are_stuffed() {
    let mut out = Vec::new();
    multiline::push_line(&mut out, b"1 120");
    multiline::push_line(&mut out, b".odd");
    multiline::end(&mut out);
    assert_eq!(out, b"1 120\r\n..odd\r\n.\r\n".to_vec());
}

#[test]
fn fuzz_entry_point_survives_pseudo_random_input() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let alphabet: &[u8] = b"\r\n. AUTHPLAINUSERPASSRETRTOP0123456789*=\xff\x00";
    for _ in 0..3000 {
        let len = (next() % 300) as usize;
        let data: Vec<u8> = (0..len)
            .map(|_| {
                let r = next();
                if r % 3 == 0 { r as u8 } else { alphabet[(r >> 8) as usize % alphabet.len()] }
            })
            .collect();
        fuzz::run(&data);
    }
    for case in [&b""[..], b"\x00", b"\xff.\r\n.\n\r\r.", b"\x03AUTH PLAIN =\r\n*\r\n"] {
        fuzz::run(case);
    }
}
