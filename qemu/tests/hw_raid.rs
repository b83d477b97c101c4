//! Issue 5's scenario on the appliance image under QEMU (TCG, UEFI) with the 16 data disks of a
//! full box (8 SATA on two AHCI controllers, 8 NVMe; serials HERMES00..HERMES15):
//! 1. the health service reads SMART from every emulated disk through the real ioctls (SG_IO
//!    ATA PASS-THROUGH for SATA, the NVMe admin passthrough for NVMe): each bay shows its serial,
//!    a temperature and verdict `ok`, which needs IDENTIFY, SMART RETURN STATUS and SMART READ
//!    DATA (or Identify Controller and the SMART/Health log) to have been read and decoded;
//! 2. `hermes hw provision` on the serial console creates RAID10 over bays 0-15 with 2 spares
//!    and ext4 `hermes-data` (mdadm and mke2fs from the image);
//! 3. after the initial resync, `hermes hw fail 3 --yes` marks a member faulty (as `mdadm --fail`),
//!    the service reports it within 2 s, removes the member, and the rebuild onto a spare is
//!    followed to the end (array clean, a spare active).
//!
//! Needs `cargo xtask image` first and QEMU with OVMF, so it is `#[ignore]`d; scripts/test.sh runs
//! it with `-- --ignored` and HERMES_QEMU_TESTS=1 (without it the test fails rather than pass
//! vacuously). Logs stay in `target/qemu/test-hw-raid/`.

#![allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]

use hermes_qemu::{BootConfig, Machine};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const READY_TIMEOUT: Duration = Duration::from_secs(300);
/// The initial resync and the rebuild copy 8 GiB sparse disks under TCG.
const SYNC_TIMEOUT: Duration = Duration::from_secs(1800);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn status(m: &mut Machine) -> Vec<String> {
    m.console_output("hermes hw status", Duration::from_secs(120)).unwrap()
}

/// Polls `hermes hw status` until `done` holds for its lines; prints the array line as it goes.
fn follow(m: &mut Machine, what: &str, timeout: Duration, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        let lines = status(m);
        if let Some(a) = lines.iter().find(|l| l.trim_start().starts_with("md"))
            && *a != last
        {
            eprintln!("hw_raid: {:>5.0} s  {}", m.uptime().as_secs_f64(), a.trim());
            last = a.clone();
        }
        if done(&lines) {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not seen within {} s; last status:\n{}",
            timeout.as_secs(),
            lines.join("\n")
        );
        std::thread::sleep(Duration::from_secs(5));
    }
}

#[test]
#[ignore = "boots QEMU with 16 data disks and rebuilds a RAID10 member (many minutes under TCG) after `cargo xtask image`; scripts/test.sh runs it with --ignored"]
fn smart_from_emulated_disks_raid10_provisioned_failure_reported_within_2s_and_rebuilt_onto_a_spare() {
    assert_eq!(
        std::env::var("HERMES_QEMU_TESTS").as_deref(),
        Ok("1"),
        "set HERMES_QEMU_TESTS=1 (and build the image with `cargo xtask image --profile dev`) to run this scenario"
    );
    assert!(hermes_qemu::qemu_available(), "qemu-system-x86_64 is not installed");
    let run = root().join("target/qemu/test-hw-raid");
    let _ = std::fs::remove_dir_all(&run);
    let mut cfg = BootConfig::uefi(root().join("target/image/hermes.img"), run.clone());
    cfg.data_disks = true;
    cfg.memory_mb = 1536;
    let mut m = Machine::boot(&cfg).unwrap();
    m.wait_for_line("hermes: ready", READY_TIMEOUT).unwrap();

    // 1. SMART through the real ioctls: every HERMESnn disk in a bay, verdict ok, a temperature.
    let lines = follow(&mut m, "the first SMART sweep", Duration::from_secs(300), |l| {
        l.iter().any(|x| x.contains("SMART read"))
    });
    let mut kinds = (0, 0);
    for i in 0..16 {
        let serial = format!("HERMES{i:02}");
        let line = lines
            .iter()
            .find(|l| l.contains(&serial))
            .unwrap_or_else(|| panic!("{serial} not in a bay:\n{}", lines.join("\n")));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert!(cols.contains(&"ok"), "{serial} is not ok (SMART not read?): {line}\n{}", lines.join("\n"));
        assert!(
            cols.iter().any(|c| c.ends_with('C') && c[..c.len() - 1].parse::<i16>().is_ok()),
            "no temperature: {line}"
        );
        match cols.get(2).copied() {
            Some("sata") => kinds.0 += 1,
            Some("nvme") => kinds.1 += 1,
            other => panic!("{serial}: kind {other:?}: {line}"),
        }
    }
    assert_eq!(kinds, (8, 8), "8 SATA disks through SG_IO and 8 NVMe through the admin passthrough");
    // The sweep's cost (issue 5's target: under 1 % of one core at the 5-minute interval),
    // measured by the service itself over the whole sweep; TCG makes every ioctl dearer than on
    // real hardware, so this is an upper bound.
    let head = lines.iter().find(|l| l.contains("SMART read")).unwrap();
    eprintln!("hw_raid: {}", head.trim());
    let percent: f64 = head
        .split(" ms CPU = ")
        .nth(1)
        .and_then(|r| r.split(" % ").next())
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sweep cost in: {head}"));
    assert!(head.contains("sweep of 16 disks"), "{head}");
    assert!(percent < 1.0, "a SMART sweep of 16 disks costs {percent} % of a core at the interval: {head}");

    // 2. Provision RAID10 over all 16 bays, 2 hot spares, ext4 `hermes-data`. 256 MiB of each
    // disk: the resync and the rebuild write real blocks into the host's sparse files, and a
    // whole 8 GiB disk per member would fill a developer machine's disk (and take 20 minutes).
    let out = m
        .console_output(
            "hermes hw provision --level raid10 --bays 0-15 --spares 2 --size-mib 256 --yes",
            Duration::from_secs(600),
        )
        .unwrap();
    assert!(out.iter().any(|l| l.contains("created /dev/md") && l.contains("hermes-data")), "{}", out.join("\n"));
    let lines = follow(&mut m, "the initial resync to finish", SYNC_TIMEOUT, |l| {
        l.iter().any(|x| x.trim_start().starts_with("md") && x.contains("raid10 clean") && !x.contains('('))
    });
    let members = lines.iter().find(|l| l.contains("members:")).cloned().unwrap_or_default();
    assert_eq!(members.matches("active").count(), 14, "{members}");
    assert_eq!(members.matches("spare").count(), 2, "{members}");

    // 3. Fail the member in bay 3: reported within 2 s, removed, rebuilt onto a spare.
    let out = m.console_output("hermes hw fail 3 --yes", Duration::from_secs(60)).unwrap();
    let reported = out
        .iter()
        .find_map(|l| l.split("reported the failure after ").nth(1)?.strip_suffix(" ms")?.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no report of the failure:\n{}", out.join("\n")));
    eprintln!("hw_raid: the health service reported the failure after {reported} ms");
    assert!(reported <= 2000, "reported after {reported} ms");
    let lines = follow(&mut m, "the rebuild onto the spare to start", Duration::from_secs(120), |l| {
        l.iter().any(|x| x.contains("recovering") || x.contains("RebuildStarted"))
    });
    assert!(lines.iter().any(|l| l.contains("MemberRemoved") || l.contains("Fail")), "{}", lines.join("\n"));
    let lines = follow(&mut m, "the rebuild to finish", SYNC_TIMEOUT, |l| {
        l.iter().any(|x| x.trim_start().starts_with("md") && x.contains("raid10 clean") && !x.contains('('))
            && l.iter().any(|x| x.contains("SpareActive"))
    });
    let members = lines.iter().find(|l| l.contains("members:")).cloned().unwrap_or_default();
    assert_eq!(members.matches("active").count(), 14, "{members}");
    assert_eq!(members.matches("spare").count(), 1, "one spare left: {members}");
    assert!(!members.contains("bay 3 "), "bay 3 was removed from the array: {members}");
    assert!(lines.iter().any(|l| l.contains("RebuildFinished")), "{}", lines.join("\n"));
    let _ = m.qmp(serde_json::json!({"execute": "system_powerdown"}));
    let _ = m.wait_exit(Duration::from_secs(120));
    drop(m);
    // The logs stay; the disk images (now partly allocated) go.
    for i in 0..hermes_qemu::DATA_DISKS {
        let _ = std::fs::remove_file(run.join(format!("disk{i:02}.img")));
    }
}
