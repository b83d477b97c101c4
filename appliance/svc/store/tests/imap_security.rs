//! Bad input and login policy: STARTTLS with a pipelined injection (CVE-2011-0411 class),
//! LOGINDISABLED before TLS, implicit TLS, AUTHENTICATE PLAIN (SASL-IR, continuation, cancel),
//! failed-login limits, sessions per user, over-limit literals answered `NO [TOOBIG]` with
//! framing kept, and garbage answered `BAD` while the connection survives.
//!
//! Run: `cargo test -p hermes-svc-store --test imap_security`.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod imap_common;
use base64::Engine as _;
use imap_common::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

fn b64(s: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_discards_pipelined_commands_and_enables_login() {
    let server = start_with(Options {
        plaintext_auth_on_loopback: false,
        ..Options::default()
    })
    .await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut plain = BufReader::new(tcp);
    let mut line = String::new();
    plain.read_line(&mut line).await.unwrap();
    assert!(
        line.contains(" STARTTLS ") && line.contains(" LOGINDISABLED "),
        "{line}"
    );
    assert!(!line.contains("AUTH=PLAIN"), "{line}");
    plain
        .get_mut()
        .write_all(b"p1 LOGIN alice@example.org \"correct horse\"\r\n")
        .await
        .unwrap();
    line.clear();
    plain.read_line(&mut line).await.unwrap();
    assert_eq!(
        line,
        "p1 NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure connections\r\n"
    );
    // The injection: a command pipelined in clear text right after STARTTLS.
    plain
        .get_mut()
        .write_all(b"s1 STARTTLS\r\ns2 LOGIN alice@example.org \"correct horse\"\r\n")
        .await
        .unwrap();
    line.clear();
    plain.read_line(&mut line).await.unwrap();
    assert_eq!(line, "s1 OK Begin TLS negotiation now\r\n");
    assert!(plain.buffer().is_empty());
    let tls = tls_connect(&server, plain.into_inner()).await;
    let mut c = Client::from_io(Box::new(tls));
    let r = c.cmd("CAPABILITY").await;
    assert_eq!(r.len(), 2, "only our command is answered, never s2: {r:?}");
    assert!(
        r[0].starts_with("* CAPABILITY IMAP4rev1 IMAP4rev2 AUTH=PLAIN SASL-IR "),
        "{r:?}"
    );
    assert!(
        !r[0].contains("STARTTLS") && !r[0].contains("LOGINDISABLED"),
        "{r:?}"
    );
    let r = c.cmd("SELECT INBOX").await;
    assert_eq!(
        r.last().unwrap(),
        "t2 BAD Command not allowed before login",
        "the injected LOGIN did not run"
    );
    let r = c.cmd("LOGIN alice@example.org \"correct horse\"").await;
    assert!(r[0].starts_with("t3 OK [CAPABILITY "), "{r:?}");
    let r = c.cmd("STARTTLS").await;
    assert_eq!(r[0], "t4 BAD Already authenticated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_and_authenticate_plain() {
    let server = start_with(Options {
        plaintext_auth_on_loopback: false,
        ..Options::default()
    })
    .await;
    let (mut c, greeting) = Client::connect_tls(&server).await;
    assert!(
        greeting.contains("AUTH=PLAIN")
            && !greeting.contains("STARTTLS")
            && !greeting.contains("LOGINDISABLED"),
        "{greeting}"
    );
    // Unknown mechanism, then cancel, then a malformed response.
    let r = c.cmd("AUTHENTICATE CRAM-MD5").await;
    assert_eq!(r[0], "t1 NO Unsupported authentication mechanism");
    c.send_raw(b"t2 AUTHENTICATE PLAIN\r\n").await;
    assert_eq!(c.line().await, "+ ");
    c.send_raw(b"*\r\n").await;
    assert_eq!(c.line().await, "t2 BAD Authentication cancelled");
    // The continuation form.
    c.send_raw(b"t3 AUTHENTICATE PLAIN\r\n").await;
    assert_eq!(c.line().await, "+ ");
    c.send_raw(format!("{}\r\n", b64(format!("\0{ALICE}\0{PASSWORD}").as_bytes())).as_bytes())
        .await;
    let l = c.line().await;
    assert!(
        l.starts_with("t3 OK [CAPABILITY IMAP4rev1 IMAP4rev2 "),
        "{l}"
    );

    // SASL-IR on a second connection, and a wrong password.
    let (mut d, _) = Client::connect_tls(&server).await;
    let r = d
        .cmd(&format!(
            "AUTHENTICATE PLAIN {}",
            b64(format!("\0{BOB}\0wrong").as_bytes())
        ))
        .await;
    assert_eq!(r[0], "t1 NO [AUTHENTICATIONFAILED] Authentication failed");
    let r = d
        .cmd(&format!(
            "AUTHENTICATE PLAIN {}",
            b64(format!("{BOB}\0{BOB}\0{PASSWORD}").as_bytes())
        ))
        .await;
    assert!(r[0].starts_with("t2 OK [CAPABILITY "), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_failed_logins_end_the_session() {
    let server = start().await;
    let (mut c, _) = Client::connect(&server).await;
    for i in 1..=2 {
        let r = c.cmd("LOGIN alice@example.org wrong").await;
        assert_eq!(
            r[0],
            format!("t{i} NO [AUTHENTICATIONFAILED] Authentication failed")
        );
    }
    let r = c.cmd("LOGIN alice@example.org wrong").await;
    assert_eq!(r[0], "t3 NO [AUTHENTICATIONFAILED] Authentication failed");
    assert_eq!(c.line().await, "* BYE Too many authentication failures");
    assert!(c.line_or_eof().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_per_user_are_limited() {
    let server = start_with(Options {
        max_sessions_per_user: 2,
        ..Options::default()
    })
    .await;
    let _a = Client::login(&server, ALICE).await;
    let mut b = Client::login(&server, ALICE).await;
    let (mut c, _) = Client::connect(&server).await;
    let r = c.cmd("LOGIN alice@example.org \"correct horse\"").await;
    assert_eq!(
        r[0],
        "t1 NO [LIMIT] Too many simultaneous sessions for this user"
    );
    // Another user is not affected; a slot frees up when a session ends.
    let _bob = Client::login(&server, BOB).await;
    b.cmd("LOGOUT").await;
    drop(b);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let r = c.cmd("LOGIN alice@example.org \"correct horse\"").await;
    assert!(r[0].starts_with("t2 OK"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_literals_get_toobig_and_framing_survives() {
    let server = start().await; // max_message_bytes = 1 MiB
    let mut c = Client::login(&server, ALICE).await;
    // Synchronizing: refused before the client sends it.
    c.send_raw(b"a1 APPEND INBOX {2000000}\r\n").await;
    assert_eq!(c.line().await, "a1 NO [TOOBIG] Literal too big");
    let r = c.cmd("NOOP").await;
    assert_eq!(r, vec!["t2 OK NOOP completed".to_string()]);
    // Non-synchronizing (LITERAL+): the octets arrive anyway and are skipped.
    let mut big = b"a3 APPEND INBOX {2000000+}\r\n".to_vec();
    big.extend(std::iter::repeat_n(b'x', 2_000_000));
    big.extend_from_slice(b"\r\na4 NOOP\r\n");
    c.send_raw(&big).await;
    assert_eq!(c.line().await, "a3 NO [TOOBIG] Literal too big");
    assert_eq!(c.line().await, "a4 OK NOOP completed");
    // Just under the limit is fine.
    let msg = message("fits", &"y".repeat(1000));
    let r = c.append("INBOX", "", &msg).await;
    assert!(r.last().unwrap().contains("OK [APPENDUID"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_gets_bad_and_the_connection_survives() {
    let server = start().await;
    let (mut c, _) = Client::connect(&server).await;
    c.send_raw(b"\x00\xff\xfe garbage\r\n").await;
    assert!(c.line().await.starts_with("* BAD "));
    c.send_raw(b"a1 FROBNICATE\r\n").await;
    assert!(c.line().await.starts_with("a1 BAD "));
    c.send_raw(b"a2 FETCH\r\n").await;
    assert!(c.line().await.starts_with("a2 BAD "));
    c.send_raw(b"a3 LOGIN \"unterminated\r\n").await;
    assert!(c.line().await.starts_with("a3 BAD "));
    // A line far beyond the pre-login limit is refused without being buffered.
    let mut long = b"a4 NOOP ".to_vec();
    long.extend(std::iter::repeat_n(b'z', 100_000));
    long.extend_from_slice(b"\r\n");
    c.send_raw(&long).await;
    assert_eq!(c.line().await, "a4 BAD Command line too long");
    let r = c.cmd("NOOP").await;
    assert_eq!(r, vec!["t1 OK NOOP completed".to_string()]);
    // After login, bad arguments are BAD too.
    c.cmd(&format!("LOGIN {ALICE} \"{PASSWORD}\"")).await;
    c.cmd("SELECT INBOX").await;
    for bad in [
        "FETCH 0 FLAGS",
        "FETCH 1:* (NOPE)",
        "STORE 1 +FLAGS",
        "SEARCH FOO",
        "UID FROB 1",
        "COPY",
    ] {
        let r = c.cmd(bad).await;
        assert!(r.last().unwrap().contains(" BAD "), "{bad}: {r:?}");
    }
    let r = c.cmd("FETCH 5 FLAGS").await;
    assert_eq!(r.last().unwrap(), "t10 BAD Invalid message sequence number");
    let r = c.cmd("NOOP").await;
    assert_eq!(r.last().unwrap(), "t11 OK NOOP completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_bad_commands_disconnect() {
    let server = start().await;
    let (mut c, _) = Client::connect(&server).await;
    let mut burst = Vec::new();
    for i in 0..25 {
        burst.extend_from_slice(format!("x{i} NONSENSE\r\n").as_bytes());
    }
    c.send_raw(&burst).await;
    let mut bads = 0;
    loop {
        match c.line_or_eof().await {
            Some(l) if l.contains(" BAD ") => bads += 1,
            Some(l) => {
                assert_eq!(l, "* BYE Too many invalid commands");
                break;
            }
            None => panic!("closed without BYE"),
        }
    }
    assert_eq!(bads, 20);
    assert!(c.line_or_eof().await.is_none());
}
