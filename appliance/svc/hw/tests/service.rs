//! The health service end to end on a fake sysfs/procfs tree: the real service threads, the real
//! control socket and client, a real SMTP conversation with a listener standing in for the
//! router's MX (a real TCP socket), and md state changes written into the tree as the kernel would.
//! The one thing not real is a disk: there are no SMART-capable disks here, so probes fail to
//! open their nodes (verdict unknown with the reason) and one disk is made to hang.

#![allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hermes_core::config::Config;
use hermes_core::paths::DataDir;
use hermes_hw::api::{self, ArrayState, MemberRole, Request, ScrubAction, SelftestKind, VerdictLevel};
use hermes_hw::discover::BlockDevice;
use hermes_hw::probe::ProbeConfig;
use hermes_hw::testutil::tree::{DiskSpec, FakeTree};
use hermes_hw::verdict::Readings;
use hermes_svc_hw::Service;

/// `sdc` hangs (as a disk stuck in the kernel would); the others are read for real.
fn probe(dev: &BlockDevice, cfg: &ProbeConfig) -> Readings {
    if dev.name == "sdc" {
        std::thread::sleep(Duration::from_secs(6));
    }
    hermes_hw::probe::read_disk(dev, cfg)
}

/// A minimal SMTP server: records (recipients, message) of each transaction.
fn smtp_sink() -> (u16, mpsc::Receiver<(Vec<String>, String)>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            let _ = w.write_all(b"220 sink ESMTP\r\n");
            let (mut rcpts, mut data, mut in_data) = (Vec::new(), String::new(), false);
            let mut line = String::new();
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                let l = line.trim_end_matches(['\r', '\n']).to_string();
                line.clear();
                if in_data {
                    if l == "." {
                        in_data = false;
                        let _ = w.write_all(b"250 queued\r\n");
                        let _ = tx.send((std::mem::take(&mut rcpts), std::mem::take(&mut data)));
                    } else {
                        data.push_str(&l);
                        data.push('\n');
                    }
                    continue;
                }
                let reply: &[u8] = if l.starts_with("EHLO") {
                    b"250-sink\r\n250 8BITMIME\r\n"
                } else if let Some(a) = l.strip_prefix("RCPT TO:<") {
                    rcpts.push(a.trim_end_matches('>').to_string());
                    b"250 ok\r\n"
                } else if l == "DATA" {
                    in_data = true;
                    b"354 go\r\n"
                } else if l == "QUIT" {
                    let _ = w.write_all(b"221 bye\r\n");
                    break;
                } else {
                    b"250 ok\r\n"
                };
                let _ = w.write_all(reply);
            }
        }
    });
    (port, rx)
}

fn status(sock: &std::path::Path) -> api::Status {
    let r = api::request(sock, &Request::Status, Duration::from_secs(5)).unwrap();
    assert!(r.ok, "{r:?}");
    r.status.unwrap()
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn service_reports_bays_arrays_failures_and_mails_the_admin() {
    let sys = tempfile::tempdir().unwrap();
    let tree = FakeTree::new(sys.path());
    for (i, name) in ["sda", "sdb", "sdc", "sdd", "sde"].iter().enumerate() {
        let i = i as u32;
        tree.add_ata_disk(name, "0000:00:1f.2", i + 1, i, &DiskSpec::hdd(&format!("SER{i}")));
    }
    tree.add_md(
        "md0",
        "raid10",
        4,
        &[
            ("sda", Some(0), "in_sync"),
            ("sdb", Some(1), "in_sync"),
            ("sdc", Some(2), "in_sync"),
            ("sdd", Some(3), "in_sync"),
            ("sde", None, "spare"),
        ],
    );
    std::fs::create_dir_all(sys.path().join("dev")).unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(data_dir.path());
    let (smtp_port, mails) = smtp_sink();
    let config = Config::from_toml(&format!(
        "[server]\nhostname = \"mail.example.org\"\n[router]\nsmtp_port = {smtp_port}\n\
         [hw]\nsysroot = \"{}\"\ninterval_secs = 3600\nprobe_timeout_secs = 2\nalert_to = [\"admin@example.org\"]\n",
        sys.path().display()
    ))
    .unwrap();
    let svc = Service::start_with(&data, &config, probe).unwrap();
    let sock = api::socket_path(data.root());
    assert!(data.service_endpoints_file("hw").exists());

    // The first sweep: every bay read or judged within the probe deadline, the hung disk too.
    let started = Instant::now();
    let st = wait_for("the first sweep", Duration::from_secs(10), || {
        let st = status(&sock);
        (st.sampled_at > 0).then_some(st)
    });
    assert!(started.elapsed() < Duration::from_secs(5), "the sweep waited for the hung disk");
    assert_eq!(st.bays.len(), 16);
    assert!(st.bays[..5].iter().all(|b| b.present) && st.bays[5..].iter().all(|b| !b.present));
    let b0 = &st.bays[0];
    assert_eq!((b0.device.as_deref(), b0.kind, b0.verdict), (Some("sda"), api::DiskKind::Sata, VerdictLevel::Unknown));
    assert!(b0.reasons.iter().any(|r| r.message.contains("cannot open")), "{b0:?}");
    assert_eq!(b0.serial.as_deref(), Some("SER0"));
    let b2 = &st.bays[2];
    assert_eq!(b2.verdict, VerdictLevel::Unknown);
    assert!(b2.reasons.iter().any(|r| r.message.contains("timed out")), "{b2:?}");
    assert_eq!(st.bays[4].array.as_ref().map(|m| m.role), Some(MemberRole::Spare));
    let md0 = &st.arrays[0];
    assert_eq!((md0.name.as_str(), md0.level.as_str(), md0.state), ("md0", "raid10", ArrayState::Clean));
    assert_eq!(md0.spares, [4]);
    assert_eq!(md0.members.iter().filter(|m| m.role == MemberRole::Active).count(), 4);

    // A member fails: seen within 2 s, removed from the array, the admin mailed.
    tree.set_member("md0", "sdb", Some(1), "faulty");
    tree.set_md("md0", "degraded", "1");
    let failed_at = Instant::now();
    let ev = wait_for("the Fail event", Duration::from_secs(2), || {
        status(&sock).events.into_iter().find(|e| e.kind == "Fail")
    });
    assert!(failed_at.elapsed() <= Duration::from_secs(2));
    assert_eq!((ev.bay, ev.device.as_deref(), ev.array.as_deref()), (Some(1), Some("sdb"), Some("md0")));
    wait_for("DegradedArray", Duration::from_secs(2), || {
        status(&sock).events.into_iter().find(|e| e.kind == "DegradedArray")
    });
    let state = tree.path("/sys/block/md0/md/dev-sdb/state");
    wait_for("the removal", Duration::from_secs(5), || {
        (std::fs::read_to_string(&state).unwrap_or_default() == "remove").then_some(())
    });
    wait_for("MemberRemoved", Duration::from_secs(5), || {
        status(&sock).events.into_iter().find(|e| e.kind == "MemberRemoved" && e.bay == Some(1))
    });
    let (rcpts, mail) = mails.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(rcpts, ["admin@example.org"]);
    assert!(mail.contains("Subject: [hermes disk health] md0: member sdb (bay 1) failed"), "{mail}");
    assert!(mail.contains("From: Hermes disk health <hermes-hw@mail.example.org>"), "{mail}");
    assert!(mail.contains("DegradedArray"), "{mail}");
    let st = status(&sock);
    assert_eq!(st.arrays[0].state, ArrayState::Degraded);

    // The kernel rebuilds onto the spare; the service follows it to the end.
    tree.remove_member("md0", "sdb");
    tree.set_member("md0", "sde", Some(1), "spare");
    tree.set_md("md0", "sync_action", "recover");
    tree.set_md("md0", "sync_completed", "500 / 1000");
    tree.set_md("md0", "sync_speed", "1000");
    let a = wait_for("recovering", Duration::from_secs(2), || {
        let st = status(&sock);
        (st.arrays[0].state == ArrayState::Recovering).then(|| st.arrays[0].clone())
    });
    assert_eq!(a.progress_percent, Some(50.0));
    assert_eq!(a.sync_action, "recover");
    wait_for("RebuildStarted", Duration::from_secs(2), || {
        status(&sock).events.into_iter().find(|e| e.kind == "RebuildStarted")
    });
    tree.set_md("md0", "sync_action", "idle");
    tree.set_md("md0", "sync_completed", "none");
    tree.set_md("md0", "degraded", "0");
    tree.set_member("md0", "sde", Some(1), "in_sync");
    wait_for("RebuildFinished and SpareActive", Duration::from_secs(2), || {
        let ev = status(&sock).events;
        (ev.iter().any(|e| e.kind == "RebuildFinished") && ev.iter().any(|e| e.kind == "SpareActive")).then_some(())
    });
    assert_eq!(status(&sock).arrays[0].state, ArrayState::Clean);

    // A new disk in bay 1: with auto_replace off the admin is told how to add it.
    tree.remove("/sys/block/sdb");
    tree.add_ata_disk("sdf", "0000:00:1f.2", 2, 1, &DiskSpec::hdd("NEWDISK"));
    let e = wait_for("ReplacementWaiting", Duration::from_secs(8), || {
        status(&sock).events.into_iter().find(|e| e.kind == "ReplacementWaiting")
    });
    assert_eq!((e.bay, e.device.as_deref()), (Some(1), Some("sdf")));
    assert!(e.message.contains("auto_replace is off"), "{e:?}");

    // Scrub start and stop, and the refusals.
    let r = api::request(
        &sock,
        &Request::Scrub { array: "md0".into(), action: ScrubAction::Start },
        Duration::from_secs(5),
    );
    assert!(r.unwrap().ok);
    assert_eq!(std::fs::read_to_string(tree.path("/sys/block/md0/md/sync_action")).unwrap(), "check");
    let r =
        api::request(&sock, &Request::Scrub { array: "md0".into(), action: ScrubAction::Stop }, Duration::from_secs(5));
    assert!(r.unwrap().ok);
    assert_eq!(std::fs::read_to_string(tree.path("/sys/block/md0/md/sync_action")).unwrap(), "idle");
    let r = api::request(
        &sock,
        &Request::Scrub { array: "../md0".into(), action: ScrubAction::Start },
        Duration::from_secs(5),
    )
    .unwrap();
    assert!(!r.ok && r.error.unwrap().contains("not an md device name"));
    let r =
        api::request(&sock, &Request::Selftest { bay: 9, kind: SelftestKind::Short }, Duration::from_secs(5)).unwrap();
    assert_eq!(r.error.as_deref(), Some("bay 9 is empty"));
    let r =
        api::request(&sock, &Request::Selftest { bay: 0, kind: SelftestKind::Short }, Duration::from_secs(35)).unwrap();
    assert!(!r.ok && r.error.unwrap().contains("cannot open"));

    // Garbage on the socket is answered, never fatal.
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    s.write_all(b"{\"op\":\"format\"}\n").unwrap();
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    assert!(line.contains("\"ok\":false") && line.contains("bad request"), "{line}");
    assert!(status(&sock).bays.len() == 16);

    svc.stop();
    assert!(!sock.exists());
}
