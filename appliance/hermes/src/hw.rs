//! `hermes hw ...`: disk and RAID health through the health service's socket `run/hw.sock`.
//!
//! What it is: the argument parsing of the `hw` subcommands, the table rendering of the status,
//! and two commands that only root runs locally: `provision` (mdadm's create mode insists on
//! euid 0, and the service runs without root on the appliance; the console runs the CLI as root)
//! and `fail` (mark a member faulty before pulling its disk, as `mdadm --fail`).
//!
//! What it is not: the service (`hermes serve hw`, crate hermes-svc-hw).
//!
//! Invariants: destructive commands need `--yes`; every socket request has a timeout.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use hermes_core::paths::DataDir;
use hermes_hw::api::{self, RaidLevel, Request, ScrubAction, SelftestKind, Status, VerdictLevel};

#[derive(Debug, Subcommand)]
pub enum HwCommand {
    /// Bays (model, serial, temperature, power-on hours, verdict and reasons) and arrays.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Start a SMART self-test on the disk in BAY.
    Selftest {
        bay: u16,
        #[arg(value_enum)]
        kind: TestKind,
    },
    /// Start or stop a `check` scrub of ARRAY (md0, md127, ...).
    Scrub {
        #[arg(value_enum)]
        action: ScrubWord,
        array: String,
    },
    /// Create the data array (destroys what the chosen disks hold): RAID10, ext4 `hermes-data`.
    Provision {
        /// RAID level (raid10 only).
        #[arg(long, value_enum, default_value = "raid10")]
        level: Level,
        /// Bays: `0-15`, `0,1,2,3`, `0-7,12-15`.
        #[arg(long, value_name = "LIST")]
        bays: String,
        /// How many of the chosen bays (the highest) become hot spares.
        #[arg(long, default_value_t = 0)]
        spares: u16,
        /// Use only this many MiB of each disk (mdadm --size; root only). Default: whole disks.
        #[arg(long, value_name = "MIB")]
        size_mib: Option<u64>,
        /// Confirm: every disk in the chosen bays is overwritten.
        #[arg(long)]
        yes: bool,
    },
    /// Mark the array member in BAY faulty (before pulling the disk), as `mdadm --fail`. Root only.
    Fail {
        bay: u16,
        /// Confirm: the array runs degraded until a spare has been rebuilt.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TestKind {
    Short,
    Long,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScrubWord {
    Start,
    Stop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Level {
    Raid10,
}

const TIMEOUT: Duration = Duration::from_secs(30);
const SELFTEST_TIMEOUT: Duration = Duration::from_secs(60);
const PROVISION_TIMEOUT: Duration = Duration::from_secs(900);

fn ask(data: &DataDir, req: &Request, timeout: Duration) -> anyhow::Result<api::Response> {
    let r = api::request(&api::socket_path(data.root()), req, timeout)?;
    if !r.ok {
        bail!("{}", r.error.unwrap_or_else(|| "the health service refused".into()));
    }
    Ok(r)
}

pub fn run(data: &DataDir, command: HwCommand) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match command {
        HwCommand::Status { json } => {
            let st = ask(data, &Request::Status, TIMEOUT)?.status.context("the answer has no status")?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&st)?)?;
            } else {
                write!(out, "{}", render(&st, chrono::Utc::now().timestamp()))?;
            }
        }
        HwCommand::Selftest { bay, kind } => {
            let kind = match kind {
                TestKind::Short => SelftestKind::Short,
                TestKind::Long => SelftestKind::Long,
            };
            let r = ask(data, &Request::Selftest { bay, kind }, SELFTEST_TIMEOUT)?;
            writeln!(out, "{}", r.message.unwrap_or_default())?;
        }
        HwCommand::Scrub { action, array } => {
            let action = match action {
                ScrubWord::Start => ScrubAction::Start,
                ScrubWord::Stop => ScrubAction::Stop,
            };
            let r = ask(data, &Request::Scrub { array, action }, TIMEOUT)?;
            writeln!(out, "{}", r.message.unwrap_or_default())?;
        }
        HwCommand::Provision { level: _, bays, spares, size_mib, yes } => {
            let bays = parse_bays(&bays)?;
            if !yes {
                bail!(
                    "provisioning overwrites every disk in bays {}; run it again with --yes to confirm",
                    bays.iter().map(u16::to_string).collect::<Vec<_>>().join(",")
                );
            }
            let msg = if nix::unistd::geteuid().is_root() {
                // mdadm --create runs only as root; as root we need not ask the (unprivileged) service.
                let config = crate::layout::load_config(data)?;
                let settings = hermes_svc_hw::Settings::new(data, &config)?;
                hermes_svc_hw::provision_local(&settings.root, &settings.bays, &bays, spares, size_mib, true)?
            } else {
                if size_mib.is_some() {
                    bail!("--size-mib is taken only when provisioning as root");
                }
                let req = Request::Provision { level: RaidLevel::Raid10, bays, spares };
                ask(data, &req, PROVISION_TIMEOUT)?.message.unwrap_or_default()
            };
            writeln!(out, "{msg}")?;
        }
        HwCommand::Fail { bay, yes } => {
            if !yes {
                bail!("marking bay {bay} faulty degrades its array; run it again with --yes to confirm");
            }
            if !nix::unistd::geteuid().is_root() {
                bail!("`hermes hw fail` writes md's sysfs and runs only as root (the appliance console)");
            }
            let config = crate::layout::load_config(data)?;
            let s = hermes_svc_hw::Settings::new(data, &config)?;
            let devices = hermes_hw::discover::discover(&s.root)?;
            let map = hermes_svc_hw::bay_map(&s.root, &s.bays, &devices);
            let Some((disk, _)) = map.bays.get(&bay) else { bail!("bay {bay} is empty") };
            let snap = hermes_hw::md::read_arrays(&s.root)?;
            let Some((array, member)) = snap.arrays.values().find_map(|a| {
                a.members
                    .iter()
                    .find(|m| hermes_svc_hw::is_part_of(&m.name, disk))
                    .map(|m| (a.name.clone(), m.name.clone()))
            }) else {
                bail!("bay {bay} ({disk}) is not a member of any array")
            };
            let t0 = std::time::Instant::now();
            let since = chrono::Utc::now().timestamp();
            hermes_hw::provision::fail_member(&s.root, &array, &member)?;
            writeln!(
                out,
                "{array}: {member} (bay {bay}) marked faulty; the health service removes it and md rebuilds onto a spare"
            )?;
            // Wait (at most 10 s) for the health service to report it, and say how long it took.
            let sock = api::socket_path(data.root());
            let seen = loop {
                let found = api::request(&sock, &Request::Status, Duration::from_secs(5))
                    .ok()
                    .and_then(|r| r.status)
                    .is_some_and(|st| {
                        st.events.iter().any(|e| {
                            matches!(e.kind.as_str(), "Fail" | "FailSpare")
                                && e.device.as_deref() == Some(member.as_str())
                                && e.time >= since
                        })
                    });
                if found {
                    break Some(t0.elapsed());
                }
                if t0.elapsed() > Duration::from_secs(10) {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            match seen {
                Some(d) => writeln!(out, "the health service reported the failure after {} ms", d.as_millis())?,
                None => writeln!(
                    out,
                    "the health service has not reported the failure within 10 s (is `hermes serve hw` running?)"
                )?,
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `0-15`, `0,1,2`, `0-3,8-11` → sorted, distinct bays (at most 256).
pub fn parse_bays(s: &str) -> anyhow::Result<Vec<u16>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (u16, u16) = (
            a.trim().parse().with_context(|| format!("`{part}` is not a bay or a range"))?,
            b.trim().parse().with_context(|| format!("`{part}` is not a bay or a range"))?,
        );
        if a > b || b > 255 {
            bail!("`{part}` is not a range of bays 0-255");
        }
        out.extend(a..=b);
    }
    out.sort_unstable();
    out.dedup();
    if out.is_empty() {
        bail!("no bays given");
    }
    Ok(out)
}

fn verdict_word(v: VerdictLevel) -> &'static str {
    match v {
        VerdictLevel::Ok => "ok",
        VerdictLevel::Unknown => "unknown",
        VerdictLevel::Warning => "WARNING",
        VerdictLevel::Failing => "FAILING",
    }
}

fn json_word<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

fn size(bytes: u64) -> String {
    let gb = bytes as f64 / 1e9;
    if gb >= 1000.0 { format!("{:.1}T", gb / 1000.0) } else { format!("{gb:.0}G") }
}

fn duration(secs: u64) -> String {
    if secs >= 3600 {
        format!("{}h{:02}m", secs / 3600, secs % 3600 / 60)
    } else {
        format!("{}m{:02}s", secs / 60, secs % 60)
    }
}

/// The human table of `hermes hw status`.
pub fn render(st: &Status, now: i64) -> String {
    let mut s = String::new();
    let sampled = if st.sampled_at > 0 {
        match &st.last_sweep {
            Some(c) => format!(
                "SMART read {} s ago; sweep of {} disks: {} ms, {} ms CPU = {:.3} % of a core every {} s",
                now.saturating_sub(st.sampled_at),
                c.disks,
                c.wall_ms,
                c.cpu_ms,
                c.core_percent(),
                c.interval_secs
            ),
            None => format!("SMART read {} s ago", now.saturating_sub(st.sampled_at)),
        }
    } else {
        "no SMART sweep yet".to_string()
    };
    s.push_str(&format!("Bays ({sampled})\n"));
    s.push_str(&format!(
        "{:>3}  {:<8} {:<6} {:<24} {:<20} {:>6} {:>4} {:>7}  {:<8} {}\n",
        "BAY", "DEVICE", "KIND", "MODEL", "SERIAL", "SIZE", "TEMP", "HOURS", "VERDICT", "ARRAY"
    ));
    for b in &st.bays {
        if !b.present {
            s.push_str(&format!("{:>3}  (empty)\n", b.bay));
            continue;
        }
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        let array =
            b.array.as_ref().map(|m| format!("{} {}", m.array, json_word(&m.role))).unwrap_or_else(|| "-".into());
        s.push_str(&format!(
            "{:>3}  {:<8} {:<6} {:<24} {:<20} {:>6} {:>4} {:>7}  {:<8} {}\n",
            b.bay,
            opt(b.device.clone()),
            json_word(&b.kind),
            opt(b.model.clone()).chars().take(24).collect::<String>(),
            opt(b.serial.clone()).chars().take(20).collect::<String>(),
            opt(b.capacity_bytes.map(size)),
            opt(b.temperature_c.map(|t| format!("{t}C"))),
            opt(b.power_on_hours.map(|h| h.to_string())),
            verdict_word(b.verdict),
            array
        ));
        if b.verdict != VerdictLevel::Ok {
            for r in b.reasons.iter().filter(|r| r.level != VerdictLevel::Ok) {
                s.push_str(&format!("       - {}\n", r.message));
            }
        }
        if let Some(t) = &b.last_selftest {
            s.push_str(&format!("       last self-test: {} {}\n", t.kind, t.result));
        }
    }
    for u in &st.unmapped {
        s.push_str(&format!("  -  {:<8} no bay ({})\n", u.device, u.reason));
    }
    s.push_str("\nArrays\n");
    if st.arrays.is_empty() {
        s.push_str("  none (provision with `hermes hw provision --bays 0-15 --spares 2 --yes`)\n");
    }
    for a in &st.arrays {
        let mut line = format!("  {} {} {}", a.name, a.level, json_word(&a.state));
        if a.sync_action != "idle" {
            line.push_str(&format!(" ({}", a.sync_action));
            if let Some(p) = a.progress_percent {
                line.push_str(&format!(" {p:.1}%"));
            }
            if let Some(sp) = a.speed_kib_s {
                line.push_str(&format!(", {} MB/s", sp / 1000));
            }
            if let Some(e) = a.eta_secs {
                line.push_str(&format!(", {} left", duration(e)));
            }
            line.push(')');
        }
        if let (Some(d), Some(n)) = (a.degraded, a.raid_disks)
            && d > 0
        {
            line.push_str(&format!(", {d} of {n} members missing"));
        }
        if let Some(m) = a.mismatch_cnt.filter(|m| *m > 0) {
            line.push_str(&format!(", mismatch_cnt {m}"));
        }
        s.push_str(&line);
        s.push('\n');
        let members: Vec<String> = a
            .members
            .iter()
            .map(|m| {
                let at = m.bay.map(|b| format!("bay {b}")).unwrap_or_else(|| m.device.clone());
                format!("{at} {}", json_word(&m.role))
            })
            .collect();
        s.push_str(&format!("    members: {}\n", members.join(", ")));
    }
    if !st.events.is_empty() {
        s.push_str("\nRecent events\n");
        let start = st.events.len().saturating_sub(10);
        for e in &st.events[start..] {
            let when = chrono::DateTime::from_timestamp(e.time, 0).map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string());
            s.push_str(&format!("  {} {:<16} {}\n", when.unwrap_or_default(), e.kind, e.message));
        }
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn bay_lists() {
        assert_eq!(parse_bays("0-3").unwrap(), [0, 1, 2, 3]);
        assert_eq!(parse_bays("0-1, 8-9,4,4").unwrap(), [0, 1, 4, 8, 9]);
        assert_eq!(parse_bays("0-15").unwrap().len(), 16);
        for bad in ["", "3-1", "a", "0-300", "1--2"] {
            assert!(parse_bays(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn render_shows_bays_reasons_and_progress() {
        let mut b = api::Bay::empty(0);
        b.present = true;
        b.device = Some("sda".into());
        b.kind = api::DiskKind::Sata;
        b.model = Some("QEMU HARDDISK".into());
        b.serial = Some("HERMES00".into());
        b.verdict = VerdictLevel::Warning;
        b.reasons = vec![api::ReasonInfo {
            level: VerdictLevel::Warning,
            code: "attr_5_nonzero".into(),
            message: "Reallocated_Sector_Ct (5) is 8".into(),
        }];
        let st = Status {
            bays: vec![b, api::Bay::empty(1)],
            arrays: vec![api::ArrayInfo {
                name: "md0".into(),
                level: "raid10".into(),
                state: api::ArrayState::Recovering,
                detail: String::new(),
                raid_disks: Some(4),
                degraded: Some(1),
                size_bytes: None,
                members: vec![],
                spares: vec![],
                sync_action: "recover".into(),
                progress_percent: Some(42.5),
                speed_kib_s: Some(120_000),
                eta_secs: Some(190),
                mismatch_cnt: None,
            }],
            events: vec![],
            sampled_at: 90,
            unmapped: vec![],
            last_sweep: Some(hermes_hw::api::SweepCost { disks: 16, wall_ms: 800, cpu_ms: 120, interval_secs: 300 }),
        };
        let text = render(&st, 100);
        assert!(text.contains("SMART read 10 s ago"), "{text}");
        assert!(text.contains("sweep of 16 disks: 800 ms, 120 ms CPU = 0.040 % of a core every 300 s"), "{text}");
        assert!(
            text.contains("HERMES00") && text.contains("WARNING") && text.contains("Reallocated_Sector_Ct (5) is 8")
        );
        assert!(text.contains("  1  (empty)"));
        assert!(
            text.contains("md0 raid10 recovering (recover 42.5%, 120 MB/s, 3m10s left), 1 of 4 members missing"),
            "{text}"
        );
    }
}
