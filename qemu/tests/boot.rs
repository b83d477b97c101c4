//! Issue 6's main line, end to end on the appliance's disk image under QEMU (TCG) and UEFI, with
//! the 16 blank data disks of a full box (8 SATA on two AHCI controllers, 8 NVMe): OVMF boots
//! `target/image/hermes.img` through systemd-boot and slot A's UKI, and
//!
//! 1. on the unprovisioned disks `/data` is RAM: init says the mail services are not started and
//!    how to provision, `hermes: ready` comes once the admin UI is up, the mail ports are closed
//!    from outside, `status` shows the store and the router `not started: disks not provisioned`,
//!    and the firmware trial marks slot A good over the services that run there;
//! 2. the admin's first-boot setup over HTTPS (the forwarded port 8443) with the one-time token
//!    the console printed, an API token made on the Tokens page, a domain added with it
//!    (`POST /api/domains`), then `POST /api/disks/provision` (bays 0-15, 2 spares, 256 MiB of
//!    each disk) makes RAID10 and ext4 `hermes-data` through init, which carries the RAM
//!    `/data`'s `admin`, `config`, `tls` and `directory` onto the array and reboots the box;
//! 3. after the reboot `/data` is the md array and every service runs; what the admin set up on
//!    RAM is still there: no setup token, `/login` is the sign-in form (not the setup), the API
//!    token works and lists the domain, the password signs in, the certificate is the same; an
//!    account is created on the console, LMTP is not reachable from outside, two messages go in
//!    over SMTP and are read over IMAPS through the forwarded ports;
//! 4. `POST /api/system/reboot` reboots the box; both messages are still there (acknowledged mail
//!    is on the disks);
//! 5. `POST /api/system/factory-reset` (the host name typed): the box reboots, init erases
//!    `/data` and comes back still on the md array with a fresh config, the admin setup pending
//!    and the mail account gone;
//! 6. power off cleanly through QMP (the ACPI power button), and check on the boot disk that
//!    systemd-boot counted the boot (slot A no longer has 3 tries left).
//!
//! The console's `hermes hw provision` (the path the admin's request runs through init) is
//! covered by `qemu/tests/hw_raid.rs`.
//!
//! QEMU runs with `-no-reboot` and `Machine::boot` makes the data disks blank, so the box reboots
//! inside the same QEMU process: QMP `set-action` turns the guest's reboot into a reset (the
//! firmware, systemd-boot and the UKI again), and the boot disk, its ESP, the UEFI variables and
//! the data disks are the same box's.
//!
//! Needs `cargo xtask image` first, QEMU and OVMF (bookworm-backports' qemu-system-x86 and
//! ovmf) and mtools: so it is `#[ignore]`d in a plain `cargo test` and scripts/test.sh runs it
//! with `-- --ignored` after building the image. Logs stay in `target/qemu/test-boot/`, with the
//! boot times in `boot-times.txt`.

#![allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]

use hermes_qemu::https::{Admin, HTTP_TIMEOUT, bearer, connect, server_cert, tls_stream};
use hermes_qemu::{BootConfig, Machine};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Boot to ready under TCG: the issue's target is 20 s; allow for a busy 2-core machine and 16
/// disks to probe.
const READY_TIMEOUT: Duration = Duration::from_secs(300);
/// The trial's grace period (30 s) plus slack.
const MARK_GOOD_TIMEOUT: Duration = Duration::from_secs(150);
const PASSWORD: &str = "correct-horse-battery";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Waits for this boot's `hermes: ready`; prints and records the time since QEMU started.
fn ready(m: &mut Machine, times: &mut Vec<String>, what: &str) {
    m.wait_for_line("hermes: ready", READY_TIMEOUT).unwrap();
    record_ready(m, times, what);
}

/// Records the time of the `hermes: ready` just seen.
fn record_ready(m: &Machine, times: &mut Vec<String>, what: &str) {
    let line = format!("{what}: `hermes: ready` {:.1} s after QEMU started", m.uptime().as_secs_f64());
    eprintln!("boot: {line}");
    times.push(line);
    std::fs::write(m.run_dir().join("boot-times.txt"), times.join("\n") + "\n").unwrap();
}

/// After init accepted a reboot: it stops the services and reboots; the same QEMU resets.
fn rebooted(m: &mut Machine) -> Duration {
    m.wait_for_line("hermes: rebooting", Duration::from_secs(120)).unwrap();
    let at = m.uptime();
    m.wait_for_line("hermes: Hermes ", READY_TIMEOUT).unwrap();
    at
}

/// The one-time admin setup token this boot printed on the console.
fn setup_token(m: &mut Machine) -> String {
    let line = m.wait_for_line("hermes: admin setup token: ", READY_TIMEOUT).unwrap();
    line.rsplit("admin setup token: ").next().unwrap().trim().to_string()
}

/// Both SMTP messages over IMAPS (the store may take a moment after the router queued them).
fn both_messages(m: &Machine) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let subjects = loop {
        let subjects = imaps_subjects(m.port("imaps").unwrap(), "alice@example.org", PASSWORD);
        if subjects.len() >= 2 || Instant::now() > deadline {
            break subjects;
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    assert!(subjects.iter().any(|s| s.contains("first over SMTP")), "{subjects:?}\n{}", m.tail(30));
    assert!(subjects.iter().any(|s| s.contains("second over SMTP")), "{subjects:?}\n{}", m.tail(30));
    subjects
}

#[test]
#[ignore = "boots QEMU under UEFI with 16 data disks, provisions RAID10 from the admin API, reboots three times (minutes under TCG) after `cargo xtask image`; scripts/test.sh runs it with --ignored"]
fn unprovisioned_box_runs_only_the_admin_ui_then_raid10_from_the_admin_api_keeps_the_setup_takes_mail_keeps_it_across_a_reboot_and_factory_resets()
 {
    assert!(hermes_qemu::qemu_available(), "qemu-system-x86_64 is not installed");
    let run = root().join("target/qemu/test-boot");
    let _ = std::fs::remove_dir_all(&run);
    let mut cfg = BootConfig::uefi(root().join("target/image/hermes.img"), run.clone());
    cfg.data_disks = true;
    cfg.memory_mb = 1536;
    cfg.forwards.push(("admin".into(), 8443));
    let mut m = Machine::boot(&cfg).unwrap();
    // The guest's reboots reset this QEMU instead of ending it (`-no-reboot`): same box, same disks.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match m.qmp(serde_json::json!({"execute": "set-action", "arguments": {"reboot": "reset"}})) {
            Ok(_) => break,
            Err(e) if Instant::now() > deadline => panic!("QMP set-action: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    let mut times = Vec::new();

    // 1. Blank disks: /data is RAM, only the admin UI (and hw) start.
    // Init's first line: the firmware, systemd-boot and the UKI's stub started slot A's kernel.
    m.wait_for_line("hermes: ", READY_TIMEOUT).unwrap();
    let kernel = m.uptime();
    m.wait_for_line("hermes: /data: no provisioned disks", READY_TIMEOUT).unwrap();
    let why = m.wait_for_line("are not started", Duration::from_secs(30)).unwrap();
    assert!(why.contains("store") && why.contains("router") && why.contains("lost at the next boot"), "{why}");
    let how = m.wait_for_line("hermes hw provision", Duration::from_secs(30)).unwrap();
    assert!(how.contains("reboot") && how.contains("Disks page"), "{how}");
    let token = setup_token(&mut m);
    ready(&mut m, &mut times, "boot 1 (blank disks, RAM /data)");
    eprintln!("boot: init started {:.1} s after QEMU started", kernel.as_secs_f64());
    std::fs::write(run.join("ready-seconds"), format!("{:.1}\n", m.uptime().as_secs_f64())).unwrap();
    let status = m.console_output("status", Duration::from_secs(60)).unwrap();
    for name in ["store", "router"] {
        assert!(
            status.iter().any(|l| l.contains(&format!("{name} ")) && l.contains("not started: disks not provisioned")),
            "{name} not shown as not started:\n{}",
            status.join("\n")
        );
    }
    assert!(status.iter().any(|l| l.contains("admin ") && l.contains("running")), "{}", status.join("\n"));
    // No mail is taken on RAM: SMTP, submission and the mailbox ports are closed.
    for name in ["smtp", "submission", "imaps", "pop3s", "lmtp"] {
        assert_closed(m.port(name).unwrap(), name);
    }
    // The trial counts the services this state runs: slot A is marked good without the store.
    let version = env!("CARGO_PKG_VERSION");
    m.wait_for_line(&format!("hermes: firmware: slot {version} marked good"), MARK_GOOD_TIMEOUT).unwrap();

    // 2. Through the admin UI's API over HTTPS: first-boot setup with the console's token, then
    //    RAID10 over all 16 bays with 2 spares (256 MiB of each disk, as hw_raid.rs); init runs
    //    the provisioning as root and reboots.
    let admin_port = m.port("admin").unwrap();
    let admin = Admin::setup(admin_port, &token, PASSWORD);
    // Set up on RAM, to be found again on the array: an API token, a domain, the certificate.
    let api_token = admin.create_api_token("provisioning test");
    let (code, _, body) = bearer(admin_port, &api_token, "POST", "/api/domains", br#"{"domain": "example.org"}"#);
    assert_eq!(code, 201, "{body}");
    let cert_on_ram = server_cert(admin_port);
    let (code, body) = admin.post_json(
        "/api/disks/provision",
        &serde_json::json!({"password": PASSWORD, "bays": "0-15", "spares": 2, "size_mib": 256}),
        Duration::from_secs(900),
    );
    assert_eq!(code, 200, "{body}\n{}", m.tail(40));
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["rebooting"], true, "{body}");
    let output = answer["output"].as_str().unwrap_or_default();
    assert!(output.contains("created /dev/md") && output.contains("hermes-data"), "{body}");
    let asked = m.wait_for_line("hermes: control: provisioning asked by ", Duration::from_secs(30)).unwrap();
    assert!(asked.contains("(admin)") && asked.contains("--size-mib 256"), "{asked}");
    // Init carried the RAM /data's setup onto the array (the admin API's answer does not pass
    // init's `carried` on; the console says it).
    let carried = m.wait_for_line("hermes: control: provisioning: ", Duration::from_secs(60)).unwrap();
    assert!(carried.contains("carried admin, config, tls, directory from the RAM /data"), "{carried}\n{}", m.tail(40));
    eprintln!("boot: {carried}");
    let down = rebooted(&mut m);

    // 3. /data on the md array; every service runs; what the admin set up on RAM is there: the
    //    setup is not pending (no token on the console before ready).
    let data = m.wait_for_line("hermes: /data: ", READY_TIMEOUT).unwrap();
    assert!(data.contains("hermes: /data: /dev/md"), "{data}");
    let (which, line) = m.wait_for_any(&["hermes: admin setup token: ", "hermes: ready"], READY_TIMEOUT).unwrap();
    assert_eq!(which, 1, "the admin setup is pending again after provisioning: {line}\n{}", m.tail(40));
    record_ready(&m, &mut times, "boot 2 (RAID10 /data)");
    eprintln!("boot: the reboot took {:.1} s from `rebooting` to ready", (m.uptime() - down).as_secs_f64());
    let (code, head) = Admin::anonymous(admin_port).get_head("/login");
    assert_eq!(code, 200, "/login should be the sign-in form, not the setup: {head}");
    // The API token made on RAM works, and the domain added on RAM is there.
    let (code, _, body) = bearer(admin_port, &api_token, "GET", "/api/domains", b"");
    assert_eq!(code, 200, "the API token made on RAM: {body}");
    assert!(body.contains("\"example.org\""), "{body}");
    assert_eq!(server_cert(admin_port), cert_on_ram, "the certificate changed across provisioning");
    // The session ended with the reboot; the password made on RAM signs in.
    let admin = Admin::login(admin_port, PASSWORD);
    m.console("hermes account add alice@example.org --password-stdin", &[PASSWORD], Duration::from_secs(60)).unwrap();

    m.send_line("status").unwrap();
    let memory = m.wait_for_line("hermes: init: pid 1, memory", Duration::from_secs(30)).unwrap();
    eprintln!("boot: {memory}");
    m.wait_for_line("hermes: console: ok", Duration::from_secs(30)).unwrap();

    // LMTP delivers to any user without authentication: it must not be reachable from outside.
    assert_lmtp_not_exposed(m.port("lmtp").unwrap());
    smtp_deliver(m.port("smtp").unwrap(), "alice@example.org", "first over SMTP");
    smtp_deliver(m.port("smtp").unwrap(), "alice@example.org", "second over SMTP");
    // The SMTP message goes through the router's queue to the store; give it a moment.
    both_messages(&m);

    // 4. Reboot through the admin API: the acknowledged mail is on the disks.
    let (code, body) = admin.post_json("/api/system/reboot", &serde_json::json!({"password": PASSWORD}), HTTP_TIMEOUT);
    assert_eq!(code, 200, "{body}");
    let asked = m.wait_for_line("hermes: control: reboot asked by ", Duration::from_secs(30)).unwrap();
    assert!(asked.contains("(admin)"), "{asked}");
    rebooted(&mut m);
    let data = m.wait_for_line("hermes: /data: ", READY_TIMEOUT).unwrap();
    assert!(data.contains("hermes: /data: /dev/md"), "{data}");
    ready(&mut m, &mut times, "boot 3 (RAID10 /data, after a reboot)");
    let subjects = both_messages(&m);
    assert_eq!(subjects.len(), 2, "{subjects:?}");

    // 5. Factory reset through the admin API (sessions end with a reboot: sign in again).
    let admin = Admin::login(admin_port, PASSWORD);
    let (code, body) = admin.get("/api/system");
    assert_eq!(code, 200, "{body}");
    let hostname = serde_json::from_str::<serde_json::Value>(&body).unwrap()["hostname"].as_str().unwrap().to_string();
    let (code, body) = admin.post_json(
        "/api/system/factory-reset",
        &serde_json::json!({"password": PASSWORD, "confirm": "not-this-box"}),
        HTTP_TIMEOUT,
    );
    assert_eq!(code, 422, "{body}");
    let (code, body) = admin.post_json(
        "/api/system/factory-reset",
        &serde_json::json!({"password": PASSWORD, "confirm": hostname}),
        HTTP_TIMEOUT,
    );
    assert_eq!(code, 200, "{body}");
    let asked = m.wait_for_line("hermes: control: factory reset asked by ", Duration::from_secs(30)).unwrap();
    assert!(asked.contains("(admin)"), "{asked}");
    rebooted(&mut m);
    let data = m.wait_for_line("hermes: /data: ", READY_TIMEOUT).unwrap();
    assert!(data.contains("hermes: /data: /dev/md"), "still on the array: {data}");
    m.wait_for_line("hermes: factory reset: erasing everything on /data", Duration::from_secs(60)).unwrap();
    let done = m.wait_for_line("hermes: factory reset: ", Duration::from_secs(300)).unwrap();
    assert!(done.contains("factory reset: done"), "{done}");
    m.wait_for_line("hermes: config: first boot", Duration::from_secs(60)).unwrap();
    setup_token(&mut m);
    ready(&mut m, &mut times, "boot 4 (RAID10 /data, after a factory reset)");
    // The setup is pending again (the old admin is gone) and so is the mail account.
    let (code, head) = Admin::anonymous(admin_port).get_head("/login");
    assert!(code == 303 && head.to_ascii_lowercase().contains("location: /setup"), "{code} {head}");
    assert!(!imaps_login_ok(m.port("imaps").unwrap(), "alice@example.org", PASSWORD), "the account survived the reset");

    // 6. Power off, then the boot count on the ESP.
    m.qmp(serde_json::json!({"execute": "system_powerdown"})).unwrap();
    m.wait_for_line("hermes: power button pressed", Duration::from_secs(30)).unwrap();
    m.wait_for_line("hermes: store stopped", Duration::from_secs(60)).unwrap();
    m.wait_for_line("hermes: powering off", Duration::from_secs(60)).unwrap();
    assert!(m.wait_exit(Duration::from_secs(30)).unwrap(), "QEMU did not exit after poweroff");
    eprintln!("{}", times.join("\n"));

    // systemd-boot counted the boot on the ESP: `+3` became `+2-1` (or init already marked
    // the slot good: no counter at all). Never still `+3`. Here init marked it good at boot 1,
    // and the factory reset left the ESP alone.
    let entries = slot_entries(&run.join("boot.img"));
    let counted = format!("hermes-{version}+2-1.efi");
    let good = format!("hermes-{version}.efi");
    assert!(entries.iter().any(|e| *e == counted || *e == good), "slot A was not counted: {entries:?}");
    assert!(!entries.iter().any(|e| e.ends_with("+3.efi")), "{entries:?}");
    assert!(entries.contains(&good), "slot A was marked good on RAM data: {entries:?}");
    drop(m);
    // The logs stay; the data disk images (now partly allocated) go.
    for i in 0..hermes_qemu::DATA_DISKS {
        let _ = std::fs::remove_file(run.join(format!("disk{i:02}.img")));
    }
}

/// A port of a service that is not started: through the forward the connection is closed (or
/// reset) without a byte; a listening service would greet (SMTP, POP3) or wait for the client
/// (TLS), and either fails here.
fn assert_closed(port: u16, name: &str) {
    let Ok(s) = TcpStream::connect(("127.0.0.1", port)) else { return };
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut buf = [0u8; 64];
    match (&s).read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("{name} answered on RAM data: {:?}", String::from_utf8_lossy(&buf[..n])),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
            panic!("{name} is open on RAM data (the connection stayed up)")
        }
        Err(_) => {}
    }
}

/// The file names in `/EFI/Linux` of the ESP on a disk image (mtools; the ESP starts at 1 MiB).
fn slot_entries(disk: &std::path::Path) -> Vec<String> {
    let out = std::process::Command::new("mdir")
        .arg("-i")
        .arg(format!("{}@@1M", disk.display()))
        .args(["-b", "::/EFI/Linux"])
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .expect("mdir (mtools) is not installed");
    assert!(out.status.success(), "mdir: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().rsplit('/').next().map(str::to_string))
        .filter(|l| !l.is_empty())
        .collect()
}

/// Reads one SMTP/LMTP reply (all its lines); returns the last line.
fn reply(r: &mut impl BufRead) -> String {
    loop {
        let mut line = String::new();
        assert!(r.read_line(&mut line).unwrap() > 0, "connection closed");
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            return line.trim_end().to_string();
        }
    }
}

fn expect(r: &mut impl BufRead, code: &str) {
    let line = reply(r);
    assert!(line.starts_with(code), "expected {code}, got {line}");
}

fn message(to: &str, subject: &str) -> String {
    format!(
        "From: bob@example.net\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{}@test>\r\n\r\nHello {subject}.\r\n.\r\n",
        subject.replace(' ', "-")
    )
}

/// The appliance's LMTP listener is on the guest's loopback only: through the forwarded port the
/// connection is closed without a greeting.
fn assert_lmtp_not_exposed(port: u16) {
    let Ok(s) = TcpStream::connect(("127.0.0.1", port)) else { return };
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut buf = [0u8; 64];
    let n = (&s).read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "LMTP answered from outside the box: {:?}", String::from_utf8_lossy(&buf[..n]));
}

fn smtp_deliver(port: u16, to: &str, subject: &str) {
    let s = connect(port);
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    expect(&mut r, "220");
    for (cmd, code) in [
        ("EHLO test.example.net", "250"),
        ("MAIL FROM:<bob@example.net>", "250"),
        (&format!("RCPT TO:<{to}>"), "250"),
        ("DATA", "354"),
    ] {
        w.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
        expect(&mut r, code);
    }
    w.write_all(message(to, subject).as_bytes()).unwrap();
    expect(&mut r, "250");
    w.write_all(b"QUIT\r\n").unwrap();
}

/// The Subject lines of INBOX, over IMAPS (the appliance refuses plaintext logins).
fn imaps_subjects(port: u16, user: &str, password: &str) -> Vec<String> {
    let mut tls = tls_stream(port);
    let mut transcript = String::new();
    let mut read_until = |tls: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>, tag: &str| -> String {
        let mut out = String::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = tls.read(&mut buf).unwrap();
            assert!(n > 0, "IMAP connection closed: {out}");
            out.push_str(&String::from_utf8_lossy(&buf[..n]));
            if out.lines().any(|l| l.starts_with(tag)) {
                transcript.push_str(&out);
                return out;
            }
        }
    };
    read_until(&mut tls, "* OK");
    tls.write_all(format!("a LOGIN {user} \"{password}\"\r\n").as_bytes()).unwrap();
    let login = read_until(&mut tls, "a ");
    assert!(login.contains("a OK"), "{login}");
    tls.write_all(b"b SELECT INBOX\r\n").unwrap();
    read_until(&mut tls, "b ");
    tls.write_all(b"c FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n").unwrap();
    let fetch = read_until(&mut tls, "c ");
    tls.write_all(b"d LOGOUT\r\n").unwrap();
    fetch.lines().filter(|l| l.starts_with("Subject:")).map(|l| l.to_string()).collect()
}

/// Whether IMAPS LOGIN succeeds for `user`.
fn imaps_login_ok(port: u16, user: &str, password: &str) -> bool {
    let mut tls = tls_stream(port);
    let mut out = String::new();
    let mut buf = [0u8; 4096];
    let mut read_until = |tls: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>, tag: &str| loop {
        let n = tls.read(&mut buf).unwrap();
        assert!(n > 0, "IMAP connection closed: {out}");
        out.push_str(&String::from_utf8_lossy(&buf[..n]));
        if let Some(l) = out.lines().find(|l| l.starts_with(tag)) {
            return l.to_string();
        }
    };
    read_until(&mut tls, "* OK");
    tls.write_all(format!("a LOGIN {user} \"{password}\"\r\n").as_bytes()).unwrap();
    let answer = read_until(&mut tls, "a ");
    answer.starts_with("a OK")
}
