//! md tests: mdstat samples, sysfs snapshots, state transitions and their events, scrub control.

use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::events::{Event, EventKind, diff};
use super::*;
use crate::testutil::XorShift;
use crate::testutil::tree::FakeTree;

const DISKS: [&str; 18] = [
    "sda", "sdb", "sdc", "sdd", "sde", "sdf", "sdg", "sdh", "sdi", "sdj", "sdk", "sdl", "sdm", "sdn", "sdo", "sdp",
    "sdq", "sdr",
];

fn header(members: &str) -> String {
    format!(
        "Personalities : [raid10] [raid1] [linear] [multipath] [raid0] [raid6] [raid5] [raid4] \nmd0 : active raid10 {members}\n"
    )
}

fn clean_members() -> String {
    let mut v: Vec<String> = DISKS[..16].iter().enumerate().rev().map(|(i, d)| format!("{d}[{i}]")).collect();
    v.insert(0, "sdq[16](S)".into());
    v.insert(0, "sdr[17](S)".into());
    v.join(" ")
}

const TAIL: &str = "md127 : active (auto-read-only) raid1 sdt1[1] sds1[0]\n      1046528 blocks super 1.2 [2/2] [UU]\n      \nunused devices: <none>\n";

fn mdstat_clean() -> String {
    format!(
        "{}      62511161344 blocks super 1.2 512K chunks 2 near-copies [16/16] [UUUUUUUUUUUUUUUU]\n      bitmap: 0/466 pages [0KB], 65536KB chunk\n\n{TAIL}",
        header(&clean_members())
    )
}

fn mdstat_degraded() -> String {
    let members = clean_members().replace("sdc[2]", "sdc[2](F)");
    format!(
        "{}      62511161344 blocks super 1.2 512K chunks 2 near-copies [16/15] [UU_UUUUUUUUUUUUU]\n      bitmap: 3/466 pages [12KB], 65536KB chunk\n\n{TAIL}",
        header(&members)
    )
}

fn mdstat_recovering() -> String {
    let members = clean_members().replace("sdc[2] ", "").replace("sdq[16](S)", "sdq[16]");
    format!(
        "{}      62511161344 blocks super 1.2 512K chunks 2 near-copies [16/15] [UU_UUUUUUUUUUUUU]\n      [====>................]  recovery = 21.3% (832424320/3906947584) finish=248.1min speed=206525K/sec\n      bitmap: 0/466 pages [0KB], 65536KB chunk\n\n{TAIL}",
        header(&members)
    )
}

fn mdstat_check() -> String {
    format!(
        "{}      62511161344 blocks super 1.2 512K chunks 2 near-copies [16/16] [UUUUUUUUUUUUUUUU]\n      [=>...................]  check =  7.5% (293021068/3906947584) finish=334.5min speed=180000K/sec\n\n{TAIL}",
        header(&clean_members())
    )
}

#[test]
fn mdstat_clean_raid10_with_two_spares() {
    let m = mdstat::parse(&mdstat_clean());
    assert_eq!(m.personalities.first().map(String::as_str), Some("raid10"));
    assert_eq!(m.arrays.len(), 2);
    let a = &m.arrays[0];
    assert_eq!((a.name.as_str(), a.level.as_deref(), a.active), ("md0", Some("raid10"), true));
    assert_eq!((a.raid_disks, a.working_disks, a.blocks_kib), (Some(16), Some(16), Some(62_511_161_344)));
    assert_eq!(a.members.len(), 18);
    assert_eq!(a.slots_up.len(), 16);
    let arr = a.clone().into_array();
    assert_eq!(arr.status, ArrayStatus::Clean);
    assert_eq!(arr.degraded, Some(0));
    let spares: Vec<&str> =
        arr.members.iter().filter(|m| m.state == MemberState::Spare).map(|m| m.name.as_str()).collect();
    assert_eq!(spares, ["sdq", "sdr"]);
    assert_eq!(arr.member("sdp").and_then(|m| m.slot), Some(15));
    let ro = &m.arrays[1];
    assert!(ro.read_only);
    assert_eq!(ro.level.as_deref(), Some("raid1"));
}

#[test]
fn mdstat_degraded_and_recovering_with_progress() {
    let d = mdstat::parse(&mdstat_degraded()).arrays.remove(0).into_array();
    assert_eq!((d.status, d.degraded), (ArrayStatus::Degraded, Some(1)));
    assert_eq!(d.member("sdc").map(|m| &m.state), Some(&MemberState::Faulty));

    let r = mdstat::parse(&mdstat_recovering()).arrays.remove(0).into_array();
    assert_eq!(r.status, ArrayStatus::Recovering);
    assert!(r.member("sdc").is_none());
    assert_eq!(r.member("sdq").map(|m| (&m.state, m.slot)), Some((&MemberState::Rebuilding, None)));
    let s = r.sync.expect("sync");
    assert_eq!(s.action, SyncAction::Recover);
    assert_eq!(s.permille, Some(213));
    assert_eq!(s.done_sectors, Some(832_424_320 * 2));
    assert_eq!(s.total_sectors, Some(3_906_947_584 * 2));
    assert_eq!(s.speed_kib_s, Some(206_525));
    assert_eq!(s.eta_secs, Some(2481 * 6));
}

#[test]
fn mdstat_check_delayed_inactive_and_garbage() {
    let c = mdstat::parse(&mdstat_check()).arrays.remove(0).into_array();
    assert_eq!(c.status, ArrayStatus::Checking);
    assert_eq!(c.sync.as_ref().and_then(|s| s.permille), Some(75));

    let text = "md1 : active raid1 sdb2[1] sda2[0]\n      1000 blocks [2/2] [UU]\n        resync=DELAYED\nmd2 : inactive sdc[1](S) sdd[0](S)\n      2000 blocks super 1.2\n";
    let m = mdstat::parse(text);
    let md1 = m.arrays[0].clone().into_array();
    assert!(md1.sync.as_ref().is_some_and(|s| s.delayed));
    assert_eq!(md1.status, ArrayStatus::Clean);
    let md2 = m.arrays[1].clone().into_array();
    assert_eq!(md2.status, ArrayStatus::Inactive);
    assert_eq!(md2.level, None);
    assert!(md2.members.iter().all(|m| m.state == MemberState::Spare));

    // Every prefix of a real sample and random text: no panic, bounded output.
    let sample = mdstat_recovering();
    for n in 0..sample.len() {
        if sample.is_char_boundary(n) {
            let _ = mdstat::parse(&sample[..n]);
        }
    }
    let mut rng = XorShift::new(7);
    for _ in 0..300 {
        let bytes: Vec<u8> = rng
            .bytes(400)
            .into_iter()
            .map(|b| {
                b"md0 :active raid10[]()FS/%=.\n 0123456789UU_blocks finish=min speed=K/sec recovery"
                    [usize::from(b) % 80]
            })
            .collect();
        for a in mdstat::parse(&String::from_utf8_lossy(&bytes)).arrays {
            let _ = a.into_array();
        }
    }
    let huge = "md0 : active raid1 ".to_string() + &"sda[0] ".repeat(10_000);
    assert_eq!(mdstat::parse(&huge).arrays[0].members.len(), MAX_MEMBERS);
}

/// A 16-disk RAID10 with 2 hot spares in a fake sysfs tree.
fn raid10(t: &FakeTree) {
    let mut members: Vec<(&str, Option<u32>, &str)> =
        DISKS[..16].iter().zip(0u32..).map(|(d, i)| (*d, Some(i), "in_sync")).collect();
    members.push(("sdq", None, "spare"));
    members.push(("sdr", None, "spare"));
    t.add_md("md0", "raid10", 16, &members);
}

fn names(evs: &[Event]) -> Vec<String> {
    evs.iter()
        .map(|e| match &e.member {
            Some(m) => format!("{}:{m}", e.kind.name()),
            None => e.kind.name(),
        })
        .collect()
}

#[test]
fn sysfs_transitions_clean_degraded_recovering_clean() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = FakeTree::new(dir.path());
    raid10(&t);
    let (mut w, initial) = watch::Watcher::new(t.root()).expect("watcher");
    assert!(initial.is_empty());
    let a = &w.snapshot().arrays["md0"];
    assert_eq!((a.status, a.members.len(), a.raid_disks), (ArrayStatus::Clean, 18, Some(16)));
    assert!(w.poll().expect("poll").is_empty());

    // sdc fails.
    t.set_member("md0", "sdc", Some(2), "faulty");
    t.set_md("md0", "degraded", "1");
    t.set_md("md0", "array_state", "active");
    assert_eq!(names(&w.poll().expect("poll")), ["Fail:sdc", "DegradedArray"]);
    assert_eq!(w.snapshot().arrays["md0"].status, ArrayStatus::Degraded);

    // The kernel removes it and starts rebuilding onto sdq.
    t.remove_member("md0", "sdc");
    t.set_member("md0", "sdq", Some(2), "spare");
    t.set_md("md0", "sync_action", "recover");
    t.set_md("md0", "sync_completed", "0 / 7813895168");
    t.set_md("md0", "sync_speed", "200000");
    let evs = w.poll().expect("poll");
    assert_eq!(names(&evs), ["RebuildStarted"]);
    assert_eq!(evs[0].detail.as_deref(), Some("recover"));
    let a = &w.snapshot().arrays["md0"];
    assert_eq!(a.status, ArrayStatus::Recovering);
    assert_eq!(a.member("sdq").map(|m| (&m.state, m.slot)), Some((&MemberState::Rebuilding, Some(2))));
    // 7813895168 sectors at 200000 KiB/s: 3906947584 KiB / 200000 = 19534 s.
    assert_eq!(a.sync.as_ref().and_then(|s| s.eta_secs), Some(19_534));

    // Progress: 10 % → nothing; 45 % → Rebuild40 only (one event for the highest step).
    t.set_md("md0", "sync_completed", "781389516 / 7813895168");
    assert!(w.poll().expect("poll").is_empty());
    t.set_md("md0", "sync_completed", "3516252826 / 7813895168");
    assert_eq!(names(&w.poll().expect("poll")), ["Rebuild40"]);
    assert_eq!(w.snapshot().arrays["md0"].sync.as_ref().and_then(|s| s.permille), Some(450));

    // Done.
    t.set_member("md0", "sdq", Some(2), "in_sync");
    t.set_md("md0", "sync_action", "idle");
    t.set_md("md0", "sync_completed", "none");
    t.set_md("md0", "degraded", "0");
    t.set_md("md0", "array_state", "clean");
    assert_eq!(names(&w.poll().expect("poll")), ["RebuildFinished", "SpareActive:sdq"]);
    assert_eq!(w.snapshot().arrays["md0"].status, ArrayStatus::Clean);
}

#[test]
fn pulled_disk_spare_failure_and_arrays_coming_and_going() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = FakeTree::new(dir.path());
    raid10(&t);
    let (mut w, _) = watch::Watcher::new(t.root()).expect("watcher");
    // A disk pulled between two polls: gone without being seen faulty.
    t.remove_member("md0", "sde");
    t.set_md("md0", "degraded", "1");
    // And a spare fails at the same time.
    t.set_member("md0", "sdr", None, "faulty");
    assert_eq!(names(&w.poll().expect("poll")), ["Fail:sde", "FailSpare:sdr", "DegradedArray"]);

    t.add_md("md1", "raid1", 2, &[("nvme0n1p2", Some(0), "in_sync")]);
    t.set_md("md1", "degraded", "1");
    assert_eq!(names(&w.poll().expect("poll")), ["NewArray", "DegradedArray"]);
    t.remove("/sys/block/md1");
    assert_eq!(names(&w.poll().expect("poll")), ["DeviceDisappeared"]);

    // Restarting the watcher reports arrays already degraded.
    let (_, initial) = watch::Watcher::new(t.root()).expect("watcher");
    assert_eq!(names(&initial), ["DegradedArray"]);
}

#[test]
fn check_with_mismatch_and_merge_with_mdstat() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = FakeTree::new(dir.path());
    raid10(&t);
    t.write_mdstat(&mdstat_check());
    t.set_md("md0", "sync_action", "check");
    t.set_md("md0", "sync_completed", "586042138 / 7813895168");
    t.set_md("md0", "sync_speed", "0");
    let snap = read_arrays(t.root()).expect("read");
    let a = &snap.arrays["md0"];
    assert_eq!(a.status, ArrayStatus::Checking);
    let s = a.sync.as_ref().expect("sync");
    // sysfs gives progress; mdstat's speed fills the zero sysfs speed, and the ETA follows.
    assert_eq!((s.permille, s.speed_kib_s), (Some(75), Some(180_000)));
    assert!(s.eta_secs.is_some());
    assert_eq!(a.level.as_deref(), Some("raid10"));
    assert_eq!(a.size_kib, Some(62_511_161_344));
    // md127 is only in mdstat: included from it.
    assert_eq!(snap.arrays["md127"].status, ArrayStatus::Clean);

    let before = sysfs::read_snapshot(t.root()).expect("snap");
    t.set_md("md0", "sync_action", "idle");
    t.set_md("md0", "sync_completed", "none");
    t.set_md("md0", "mismatch_cnt", "128");
    t.write_mdstat(&mdstat_clean());
    let after = read_arrays(t.root()).expect("read");
    assert_eq!(after.arrays["md0"].mismatch_cnt, Some(128));
    assert_eq!(after.arrays["md0"].status, ArrayStatus::Clean);
    let evs = diff(&before, &sysfs::read_snapshot(t.root()).expect("snap"));
    assert_eq!(names(&evs), ["RebuildFinished"]);
    assert_eq!(evs[0].detail.as_deref(), Some("check"));
    assert_eq!(serde_json::to_value(&evs[0]).expect("json")["event"], "RebuildFinished");
}

#[test]
fn scrub_control() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = FakeTree::new(dir.path());
    raid10(&t);
    let r = t.root();
    control::start_check(r, "md0").expect("start");
    assert_eq!(std::fs::read_to_string(t.path("/sys/block/md0/md/sync_action")).ok().as_deref(), Some("check"));
    assert!(matches!(control::start_check(r, "md0"), Err(MdError::Busy { .. })));
    control::stop_scrub(r, "md0").expect("stop");
    assert_eq!(std::fs::read_to_string(t.path("/sys/block/md0/md/sync_action")).ok().as_deref(), Some("idle"));
    control::stop_scrub(r, "md0").expect("idle is fine");

    t.set_md("md0", "sync_action", "recover");
    assert!(matches!(control::stop_scrub(r, "md0"), Err(MdError::NotScrubbing { .. })));
    t.set_md("md0", "sync_action", "idle");
    t.set_md("md0", "degraded", "1");
    assert!(matches!(control::start_check(r, "md0"), Err(MdError::Degraded { .. })));

    control::set_speed_limit(r, "md0", Some(50_000)).expect("limit");
    assert_eq!(std::fs::read_to_string(t.path("/sys/block/md0/md/sync_speed_max")).ok().as_deref(), Some("50000"));
    control::set_speed_limit(r, "md0", None).expect("system");
    assert_eq!(std::fs::read_to_string(t.path("/sys/block/md0/md/sync_speed_max")).ok().as_deref(), Some("system"));

    for bad in ["sda", "md", "md0/../../etc", "md0 ", "../md0", ""] {
        assert!(matches!(control::start_check(r, bad), Err(MdError::BadName(_))), "{bad:?}");
    }
    assert!(matches!(control::start_check(r, "md9"), Err(MdError::NoSuchArray(_))));

    assert!(control::scrub_due(None, 0, 30));
    assert!(!control::scrub_due(Some(0), 29 * 86_400, 30));
    assert!(control::scrub_due(Some(0), 30 * 86_400, 30));
}

#[test]
fn watch_reports_a_failure_within_two_seconds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = FakeTree::new(dir.path());
    raid10(&t);
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<(Instant, Vec<Event>)>();
    std::thread::scope(|s| {
        let root = t.root().to_path_buf();
        let stop = &stop;
        let handle = s.spawn(move || {
            watch::watch(
                &root,
                watch::POLL_INTERVAL,
                stop,
                |_, evs| {
                    let _ = tx.send((Instant::now(), evs));
                },
                |_| {},
            )
        });
        std::thread::sleep(Duration::from_millis(100));
        let failed_at = Instant::now();
        t.set_member("md0", "sdh", Some(7), "faulty");
        t.set_md("md0", "degraded", "1");
        let got = rx.recv_timeout(Duration::from_secs(3));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (seen_at, evs) = got.expect("event within 3 s");
        assert!(seen_at.duration_since(failed_at) < Duration::from_secs(2));
        assert_eq!(evs.first().map(|e| e.kind), Some(EventKind::Fail));
        assert!(handle.join().is_ok());
    });
}

#[test]
fn missing_trees_are_empty_not_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(read_arrays(dir.path()).expect("empty").arrays.is_empty());
    assert_eq!(sysfs::parse_sync_completed("delayed"), (None, None, true));
    assert_eq!(sysfs::parse_sync_completed("12 / 34"), (Some(12), Some(34), false));
    assert_eq!(sysfs::parse_sync_completed("none"), (None, None, false));
    let m = sysfs::member("sda", "in_sync,write_mostly", Some(3));
    assert_eq!((m.state, m.slot, m.flags.len()), (MemberState::InSync, Some(3), 2));
    assert_eq!(sysfs::member("sdb", "blocked", None).state, MemberState::Other("blocked".into()));
}
