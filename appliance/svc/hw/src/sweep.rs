//! The SMART sweep and the scrub schedule (the sweeper thread).
//!
//! What it is: [`sweep`] discovers the disks, maps them to bays and probes every mapped disk on a
//! thread of its own, all in parallel, waiting at most `[hw] probe_timeout_secs` for them; it
//! records the day's history sample, judges each disk and reports verdict changes. [`scrubs`]
//! starts the monthly `check` of each idle, healthy array.
//!
//! Invariants: a probe that misses the deadline leaves its disk "unknown (timed out)" and in the
//! stuck set, so the next sweeps do not pile threads onto a hung disk; the state lock is never
//! held while a disk or a file is touched.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hermes_hw::api::{self, EventSeverity, ReasonInfo, SelftestInfo, VerdictLevel};
use hermes_hw::discover::{self, BlockDevice, DiskKind};
use hermes_hw::history;
use hermes_hw::probe::ProbeConfig;
use hermes_hw::verdict::{self, Health, Readings, Verdict};

use crate::{DiskInfo, Shared, event, now};

/// The sweeper thread: a sweep at start, then every interval; scrubs after each sweep.
pub fn run(sh: &Shared) {
    loop {
        let started = Instant::now();
        sweep(sh);
        scrubs(sh);
        tracing::debug!(ms = started.elapsed().as_millis() as u64, "sweep done");
        if !sh.sleep(sh.settings.interval) {
            return;
        }
    }
}

/// One full sweep.
pub fn sweep(sh: &Shared) {
    let started = Instant::now();
    let cpu_before = process_cpu_ms();
    let s = &sh.settings;
    let devices = match discover::discover(&s.root) {
        Ok(d) => d,
        Err(e) => {
            sh.record(vec![event("DiscoveryFailed", EventSeverity::Warning, format!("disk discovery failed: {e}"))]);
            Vec::new()
        }
    };
    let map = crate::bay_map(&s.root, &s.bays, &devices);
    let cfg = ProbeConfig {
        dev_root: s.dev_root.clone(),
        timeout: s.probe_timeout.min(hermes_hw::ioctl::DEFAULT_TIMEOUT),
        ..ProbeConfig::default()
    };
    let (tx, rx) = mpsc::channel::<(String, Readings)>();
    let mut waiting: BTreeMap<String, BlockDevice> = BTreeMap::new();
    let mut results: BTreeMap<String, Readings> = BTreeMap::new();
    for (name, _) in map.bays.values() {
        let Some(dev) = devices.iter().find(|d| &d.name == name) else { continue };
        // Set here, cleared by the probe thread when the kernel lets it go: a disk whose last
        // probe is still inside an ioctl is not probed again.
        let busy = {
            let mut b = sh.busy.lock().unwrap_or_else(|p| p.into_inner());
            let flag = b.entry(name.clone()).or_default().clone();
            if flag.swap(true, Ordering::AcqRel) {
                results.insert(
                    name.clone(),
                    Readings::Unreadable(format!(
                        "timed out: the previous SMART probe of {name} has not returned (the disk hangs); \
                         not probed again until it does"
                    )),
                );
                continue;
            }
            flag
        };
        waiting.insert(name.clone(), dev.clone());
        let (dev, cfg, tx) = (dev.clone(), cfg.clone(), tx.clone());
        let flag = busy.clone();
        let read = sh.probe;
        let spawned = std::thread::Builder::new().name(format!("probe-{name}")).spawn(move || {
            let r = read(&dev, &cfg);
            flag.store(false, Ordering::Release);
            let _ = tx.send((dev.name.clone(), r));
        });
        if let Err(e) = spawned {
            busy.store(false, Ordering::Release);
            waiting.remove(name);
            results.insert(name.clone(), Readings::Unreadable(format!("cannot start a probe thread: {e}")));
        }
    }
    drop(tx);
    let deadline = Instant::now() + sh.settings.probe_timeout;
    while !waiting.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((name, r)) => {
                waiting.remove(&name);
                results.insert(name, r);
            }
            Err(_) => break,
        }
    }
    for name in waiting.keys() {
        results.insert(
            name.clone(),
            Readings::Unreadable(format!(
                "timed out: {name} did not answer its SMART reads within {} s",
                sh.settings.probe_timeout.as_secs()
            )),
        );
    }

    let at = now();
    let mut disks = BTreeMap::new();
    let mut changes = Vec::new();
    for (bay, (name, _)) in &map.bays {
        let Some(dev) = devices.iter().find(|d| &d.name == name) else { continue };
        let Some(readings) = results.remove(name) else { continue };
        let sample = verdict::sample_of(&readings, at);
        let (serial, model, firmware, capacity) = identity(dev, &readings);
        let mut growth = BTreeMap::new();
        let mut notes = Vec::new();
        if let Some(serial) = serial.as_deref()
            && !matches!(readings, Readings::Unreadable(_))
        {
            match history::disk_key(serial) {
                Ok(key) => {
                    let dir = sh.settings.history_dir();
                    match history::load(&dir, &key) {
                        Ok(h) => growth = history::growth(&h.samples, &sample, sh.settings.verdict.growth_window_days),
                        Err(e) => notes.push(format!("history unreadable: {e}")),
                    }
                    if let Err(e) = history::record_daily(&dir, &key, &sample) {
                        notes.push(format!("history not written: {e}"));
                    }
                }
                Err(e) => notes.push(e.to_string()),
            }
        }
        let v = verdict::judge(&readings, &growth, &sh.settings.verdict);
        let mut b = api::Bay::empty(*bay);
        b.present = true;
        b.device = Some(name.clone());
        b.kind = kind_of(dev.kind);
        b.model = model;
        b.serial = serial.clone();
        b.firmware = firmware;
        b.capacity_bytes = capacity;
        b.temperature_c = sample.temperature_c;
        b.power_on_hours = sample.power_on_hours;
        b.verdict = level(v.health);
        b.reasons = reasons(&v);
        for n in notes {
            b.reasons.push(ReasonInfo { level: VerdictLevel::Ok, code: "history".into(), message: n });
        }
        b.last_selftest = last_selftest(&readings);
        let key = serial.clone().unwrap_or_else(|| name.clone());
        changes.push((key, *bay, name.clone(), b.verdict, v));
        disks.insert(name.clone(), DiskInfo { bay: b });
    }
    let mut events = Vec::new();
    {
        let mut st = sh.state();
        for (key, bay, name, new, v) in changes {
            let old = st.last_health.insert(key, new);
            if old == Some(new) || (old.is_none() && new == VerdictLevel::Ok) {
                continue;
            }
            let severity = match new {
                VerdictLevel::Failing => EventSeverity::Critical,
                VerdictLevel::Warning => EventSeverity::Warning,
                _ => EventSeverity::Info,
            };
            let why: Vec<&str> =
                v.reasons.iter().filter(|r| r.level == v.health).map(|r| r.message.as_str()).take(3).collect();
            let was = old.map(|o| format!(" (was {})", level_name(o))).unwrap_or_default();
            let mut e = event(
                "VerdictChanged",
                severity,
                format!("bay {bay} ({name}) is {}{was}: {}", level_name(new), why.join("; ")),
            );
            e.bay = Some(bay);
            e.device = Some(name);
            events.push(e);
        }
        let probed = disks.len() as u32;
        st.disks = disks;
        st.devices = devices;
        st.map = map;
        st.sampled_at = at;
        st.last_sweep = Some(api::SweepCost {
            disks: probed,
            wall_ms: started.elapsed().as_millis() as u64,
            cpu_ms: match (cpu_before, process_cpu_ms()) {
                (Some(a), Some(b)) => b.saturating_sub(a),
                _ => 0,
            },
            interval_secs: sh.settings.interval.as_secs(),
        });
    }
    sh.record(events);
}

/// CPU time (user + system) this process has used, in milliseconds, from `/proc/self/stat`
/// (fields 14 and 15, in USER_HZ ticks: 100 per second on Linux whatever the kernel's HZ).
fn process_cpu_ms() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_stat_cpu_ms(&text)
}

/// The part after the command name (which may hold spaces and parentheses) is split on spaces:
/// state is field 3, utime field 14, stime field 15.
fn parse_stat_cpu_ms(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * 10)
}

fn identity(dev: &BlockDevice, r: &Readings) -> (Option<String>, Option<String>, Option<String>, Option<u64>) {
    match r {
        Readings::Ata(a) => match &a.identity {
            Ok(id) => {
                (Some(id.serial.clone()), Some(id.model.clone()), Some(id.firmware.clone()), Some(id.capacity_bytes))
            }
            Err(_) => (dev.serial.clone(), dev.model.clone(), None, dev.size_bytes),
        },
        Readings::Nvme(n) => match &n.identity {
            Ok(id) => (Some(id.serial.clone()), Some(id.model.clone()), Some(id.firmware.clone()), dev.size_bytes),
            Err(_) => (dev.serial.clone(), dev.model.clone(), None, dev.size_bytes),
        },
        Readings::Unreadable(_) => (dev.serial.clone(), dev.model.clone(), None, dev.size_bytes),
    }
}

fn last_selftest(r: &Readings) -> Option<SelftestInfo> {
    match r {
        Readings::Ata(a) => {
            let e = a.selftest_log.as_ref().ok()?.entries.first()?;
            Some(SelftestInfo {
                kind: e.test_name().to_string(),
                result: e.status.describe(),
                passed: !e.status.is_failure(),
                power_on_hours: Some(u64::from(e.lifetime_hours)),
            })
        }
        Readings::Nvme(n) => {
            let log = n.selftest_log.as_ref().ok()?;
            if log.current_operation != 0 {
                return Some(SelftestInfo {
                    kind: if log.current_operation == 2 { "extended" } else { "short" }.to_string(),
                    result: format!("in progress, {}% done", log.current_completion),
                    passed: true,
                    power_on_hours: None,
                });
            }
            let e = log.entries.first()?;
            Some(SelftestInfo {
                kind: e.test_name().to_string(),
                result: format!("{:?}", e.result),
                passed: !e.result.is_failure(),
                power_on_hours: Some(e.power_on_hours),
            })
        }
        Readings::Unreadable(_) => None,
    }
}

pub fn kind_of(k: DiskKind) -> api::DiskKind {
    match k {
        DiskKind::Ata => api::DiskKind::Sata,
        DiskKind::Scsi => api::DiskKind::Sas,
        DiskKind::Nvme => api::DiskKind::Nvme,
        DiskKind::Virtio => api::DiskKind::Virtio,
    }
}

pub fn level(h: Health) -> VerdictLevel {
    match h {
        Health::Ok => VerdictLevel::Ok,
        Health::Unknown => VerdictLevel::Unknown,
        Health::Warning => VerdictLevel::Warning,
        Health::Failing => VerdictLevel::Failing,
    }
}

pub fn level_name(l: VerdictLevel) -> &'static str {
    match l {
        VerdictLevel::Ok => "ok",
        VerdictLevel::Unknown => "unknown",
        VerdictLevel::Warning => "warning",
        VerdictLevel::Failing => "failing",
    }
}

fn reasons(v: &Verdict) -> Vec<ReasonInfo> {
    v.reasons
        .iter()
        .map(|r| ReasonInfo { level: level(r.level), code: r.code.clone(), message: r.message.clone() })
        .collect()
}

/// Starts the scheduled `check` of each idle, healthy array whose last scrub is older than the
/// interval. An array seen for the first time starts its clock now (a new array was just
/// written in full by its initial resync).
pub fn scrubs(sh: &Shared) {
    let days = sh.settings.scrub_interval_days;
    if days == 0 {
        return;
    }
    let Ok(snap) = hermes_hw::md::read_arrays(&sh.settings.root) else { return };
    let path = sh.settings.state_dir.join("scrub.json");
    let mut times: BTreeMap<String, i64> =
        std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    let t = now();
    let mut changed = false;
    let mut events = Vec::new();
    for a in snap.arrays.values() {
        let last = times.get(&a.name).copied();
        if last.is_none() {
            times.insert(a.name.clone(), t);
            changed = true;
            continue;
        }
        if !hermes_hw::md::control::scrub_due(last, t, days) || a.is_degraded() || a.sync.is_some() {
            continue;
        }
        let root = &sh.settings.root;
        let _ = hermes_hw::md::control::set_speed_limit(root, &a.name, Some(sh.settings.scrub_speed_kib_s));
        match hermes_hw::md::control::start_check(root, &a.name) {
            Ok(()) => {
                times.insert(a.name.clone(), t);
                changed = true;
                let mut e = event(
                    "ScrubStarted",
                    EventSeverity::Info,
                    format!(
                        "{}: scheduled check started (every {days} days, at most {} KiB/s)",
                        a.name, sh.settings.scrub_speed_kib_s
                    ),
                );
                e.array = Some(a.name.clone());
                events.push(e);
            }
            Err(e) => {
                events.push(event("ScrubFailed", EventSeverity::Warning, format!("{}: scheduled check: {e}", a.name)))
            }
        }
    }
    if changed
        && let Ok(json) = serde_json::to_vec(&times)
        && let Err(e) = hermes_runtime::fs::write_atomic(&path, &json, 0o600)
    {
        events.push(event("StateNotSaved", EventSeverity::Warning, format!("{}: {e}", path.display())));
    }
    sh.record(events);
}

/// How long to wait for a self-test start command (the disk only acknowledges it).
pub const SELFTEST_START_TIMEOUT: Duration = Duration::from_secs(30);

#[cfg(test)]
mod cost_tests {
    use super::*;

    #[test]
    fn cpu_time_comes_from_proc_stat_fields_14_and_15() {
        let line = "4242 (hermes (hw) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 37 5 0 0 20 0 3 0 99 1000 50";
        assert_eq!(parse_stat_cpu_ms(line), Some(420));
        assert_eq!(parse_stat_cpu_ms("garbage"), None);
        assert_eq!(parse_stat_cpu_ms("1 (x) S 1"), None);
        assert!(process_cpu_ms().is_some(), "this process's own stat is readable");
    }
}
