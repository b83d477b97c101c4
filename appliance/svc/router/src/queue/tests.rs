use super::*;

fn env(id: &str, rcpts: &[&str]) -> Envelope {
    Envelope {
        id: id.to_string(),
        from: "sender@example.net".into(),
        recipients: rcpts
            .iter()
            .map(|r| EnvRecipient {
                address: r.to_string(),
                original: r.to_string(),
                local: true,
                notify: None,
                orcpt: None,
            })
            .collect(),
        ret: None,
        envid: None,
        arrival: 1,
        helo: "client.example".into(),
        client: "192.0.2.1".into(),
        auth_user: None,
        smtputf8: false,
        eightbit: false,
        size: 0,
        is_dsn: false,
    }
}

#[test]
fn enqueue_load_log_and_remove() {
    let dir = tempfile::tempdir().unwrap();
    let (q, found) = Queue::open(dir.path()).unwrap();
    assert!(found.is_empty());
    let id = new_id();
    let mut e = env(&id, &["a@example.org", "b@example.org"]);
    q.enqueue(&mut e, &[b"Received: x\r\n", b"Subject: hi\r\n\r\nbody\r\n"]).unwrap();
    assert_eq!(e.size, 34);
    assert_eq!(q.read_message(&id).unwrap(), b"Received: x\r\nSubject: hi\r\n\r\nbody\r\n");
    q.append(&id, &[LogRecord::Rcpt { i: 1, state: RcptState::Delivered, reply: "250 ok".into(), at: 5 }]).unwrap();
    q.append(&id, &[LogRecord::Attempt { at: 5, next: 305 }, LogRecord::Hold { on: true }]).unwrap();
    // A replayed "pending" after a final state does not resurrect the recipient.
    q.append(&id, &[LogRecord::Rcpt { i: 1, state: RcptState::Deferred, reply: "451".into(), at: 6 }]).unwrap();
    drop(q);
    let (q, found) = Queue::open(dir.path()).unwrap();
    assert_eq!(found.len(), 1);
    let s = &found[0].state;
    assert_eq!(s.rcpts[0].0, RcptState::Pending);
    assert_eq!(s.rcpts[1], (RcptState::Delivered, "250 ok".into()));
    assert_eq!((s.attempts, s.next_retry, s.hold), (1, 305, true));
    assert_eq!(found[0].envelope, e);
    q.remove(&id).unwrap();
    assert!(matches!(q.remove(&id), Err(QueueError::NotFound(_))));
    drop(q);
    assert!(Queue::open(dir.path()).unwrap().1.is_empty());
}

#[test]
fn second_owner_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _q = Queue::open(dir.path()).unwrap();
    assert!(matches!(Queue::open(dir.path()), Err(QueueError::Locked)));
}

#[test]
fn torn_log_line_is_ignored() {
    let r = LogRecord::Rcpt { i: 0, state: RcptState::Delivered, reply: "ok".into(), at: 1 };
    let mut bytes = log_line(&r).unwrap();
    let good = bytes.len();
    bytes.extend_from_slice(&log_line(&LogRecord::Hold { on: true }).unwrap());
    assert_eq!(parse_log(&bytes).len(), 2);
    assert_eq!(parse_log(&bytes[..bytes.len() - 1]).len(), 1, "no newline: torn");
    let mut flipped = bytes.clone();
    flipped[good + 3] ^= 1;
    assert_eq!(parse_log(&flipped).len(), 1, "bad crc: ignored");
}

#[test]
fn recovery_drops_uncommitted_and_quarantines_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let (q, _) = Queue::open(dir.path()).unwrap();
    let good = new_id();
    q.enqueue(&mut env(&good, &["a@x.org"]), &[b"hello\r\n"]).unwrap();
    let bad = format!("{}0", new_id());
    q.enqueue(&mut env(&bad, &["a@x.org"]), &[b"hello again\r\n"]).unwrap();
    drop(q);
    let active = dir.path().join("active");
    // An uncommitted message (crash before the envelope rename), and a tmp leftover.
    std::fs::write(active.join("00000000000000000001.msg"), b"partial").unwrap();
    std::fs::write(dir.path().join("tmp/00000000000000000002.env"), b"{").unwrap();
    // A truncated message file under a committed envelope.
    std::fs::write(active.join(format!("{bad}.msg")), b"hel").unwrap();
    let (_q, found) = Queue::open(dir.path()).unwrap();
    assert_eq!(found.iter().map(|q| q.envelope.id.clone()).collect::<Vec<_>>(), [good]);
    assert!(!active.join("00000000000000000001.msg").exists());
    assert!(dir.path().join(format!("corrupt/{bad}.env")).exists());
    assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
}

/// Child mode of [`kill_nine_never_loses_an_acknowledged_message`]: enqueue forever, print each
/// id after `enqueue` returned (the moment the SMTP server would answer 250).
#[test]
fn kill_nine_child() {
    let Ok(dir) = std::env::var("HERMES_QUEUE_CHILD_DIR") else { return };
    let (q, _) = Queue::open(Path::new(&dir)).unwrap();
    let body = vec![b'x'; 20_000];
    let mut out = std::io::stdout().lock();
    loop {
        let id = new_id();
        let mut e = env(&id, &["a@x.org", "b@x.org"]);
        q.enqueue(&mut e, &[b"Subject: t\r\n\r\n", &body]).unwrap();
        q.append(&id, &[LogRecord::Rcpt { i: 0, state: RcptState::Delivered, reply: "250".into(), at: 1 }]).unwrap();
        writeln!(out, "ACK {id}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn kill_nine_never_loses_an_acknowledged_message() {
    use std::io::BufRead;
    let exe = std::env::current_exe().unwrap();
    for round in 0..5u64 {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(&exe)
            .args(["--exact", "queue::tests::kill_nine_child", "--nocapture", "--test-threads=1"])
            .env("HERMES_QUEUE_CHILD_DIR", dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| l.rsplit_once("ACK ").map(|(_, id)| id.to_string()))
                .collect::<Vec<_>>()
        });
        std::thread::sleep(std::time::Duration::from_millis(150 + round * 97));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGKILL)
            .unwrap();
        child.wait().unwrap();
        let acked = reader.join().unwrap();
        let (_q, found) = Queue::open(dir.path()).unwrap();
        let ids: std::collections::HashSet<String> = found.iter().map(|q| q.envelope.id.clone()).collect();
        for id in &acked {
            assert!(ids.contains(id), "acknowledged {id} lost (round {round})");
        }
        for q in &found {
            let acked_here = acked.contains(&q.envelope.id);
            // Every acknowledged message shows its durable status record too.
            if acked_here {
                assert_eq!(q.state.rcpts[0].0, RcptState::Delivered);
            }
        }
        assert!(
            found.len() <= acked.len() + 1,
            "at most the one in flight is extra: {} found, {} acked",
            found.len(),
            acked.len()
        );
        assert!(!acked.is_empty(), "child made progress");
    }
}
