//! The trial of a newly installed firmware slot: after `hermes: ready`, once every required
//! service has stayed healthy (running) for the grace period, the running slot is marked good
//! (`hermes: firmware: slot V marked good`); if they are not all healthy by the deadline, or a
//! required service was left stopped after its start limit (it cannot get better), init logs
//! it and reboots: systemd-boot counts the try and, after the last one, boots the old slot.
//!
//! ```toml
//! # DATA/config/firmware.toml (optional; these are the defaults)
//! trial_grace_seconds = 30
//! trial_deadline_seconds = 120
//! ```
//!
//! What it is not: a health check of the protocols. "Healthy" is what the supervisor knows:
//! each required service that runs in this state of `/data` is running (listening) and none has
//! failed. On a RAM-backed `/data` (disks not provisioned) that is the `on_ram_data` services
//! only (the admin UI): the store and the router are not started there, so they cannot fail
//! the trial, and a slot can be marked good before the disks are provisioned.
//!
//! Invariants: a slot that is already good is never touched; the decision ([`Trial::step`]) is
//! a pure function of time and service states; the deadline counts from init's start.

use crate::firmware::{self, Health, Running};
use crate::log::say;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long every service must stay healthy before the slot is marked good.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// How long after init starts the services may take to become healthy.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(120);
/// How often the watch looks.
const POLL: Duration = Duration::from_secs(1);

/// The trial settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrialConfig {
    pub grace: Duration,
    pub deadline: Duration,
}

impl Default for TrialConfig {
    fn default() -> Self {
        TrialConfig { grace: DEFAULT_GRACE, deadline: DEFAULT_DEADLINE }
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    trial_grace_seconds: Option<u64>,
    trial_deadline_seconds: Option<u64>,
}

impl TrialConfig {
    /// From `firmware.toml` text; the defaults for what it does not say. Refuses a grace of 0,
    /// a deadline shorter than the grace, or more than a day.
    pub fn parse(text: &str) -> Result<TrialConfig, String> {
        let f: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let cfg = TrialConfig {
            grace: f.trial_grace_seconds.map_or(DEFAULT_GRACE, Duration::from_secs),
            deadline: f.trial_deadline_seconds.map_or(DEFAULT_DEADLINE, Duration::from_secs),
        };
        let day = Duration::from_secs(86_400);
        if cfg.grace.is_zero() || cfg.deadline < cfg.grace || cfg.deadline > day {
            return Err("need 0 < trial_grace_seconds <= trial_deadline_seconds <= 86400".into());
        }
        Ok(cfg)
    }

    /// `DATA/config/firmware.toml`, or the defaults (an invalid file is reported, not obeyed).
    pub fn load(path: &Path) -> TrialConfig {
        match std::fs::read_to_string(path) {
            Ok(text) => TrialConfig::parse(&text).unwrap_or_else(|e| {
                say(&format!("firmware: {} is invalid ({e}); using the defaults", path.display()));
                TrialConfig::default()
            }),
            Err(_) => TrialConfig::default(),
        }
    }
}

/// What to do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Wait,
    MarkGood,
    Reboot(String),
}

/// The trial's memory: since when every service has been healthy.
#[derive(Debug, Default)]
pub struct Trial {
    healthy_since: Option<Duration>,
}

impl Trial {
    /// `elapsed`: since init started; `healthy`: every required service runs; `failed`: a
    /// required service left stopped after its start limit.
    pub fn step(&mut self, cfg: &TrialConfig, elapsed: Duration, healthy: bool, failed: Option<&str>) -> Verdict {
        if let Some(name) = failed {
            return Verdict::Reboot(format!("{name} failed (left stopped after its start limit)"));
        }
        if healthy {
            let since = *self.healthy_since.get_or_insert(elapsed);
            if elapsed.saturating_sub(since) >= cfg.grace {
                return Verdict::MarkGood;
            }
            return Verdict::Wait;
        }
        self.healthy_since = None;
        if elapsed >= cfg.deadline {
            return Verdict::Reboot(format!("services not all healthy {} s after boot", cfg.deadline.as_secs()));
        }
        Verdict::Wait
    }
}

/// Watches the running slot's trial; sends a reboot on `halt` when it fails. Returns at once
/// when there is no ESP, the running slot cannot be told, or it is already good.
pub async fn watch(
    sup: std::sync::Arc<crate::services::Supervisor>,
    cfg: TrialConfig,
    started: Instant,
    halt: tokio::sync::mpsc::UnboundedSender<crate::Halt>,
) {
    let esp = Path::new(firmware::ESP_MOUNT);
    let running = Running::here();
    let (version, health) = match firmware::running_health(esp, &running) {
        Some(v) => v,
        None => return,
    };
    if health == Health::Good {
        return;
    }
    say(&format!(
        "firmware: slot {version} is on trial: marked good once every service is healthy for {} s; rebooting if not within {} s",
        cfg.grace.as_secs(),
        cfg.deadline.as_secs()
    ));
    let mut trial = Trial::default();
    loop {
        tokio::time::sleep(POLL).await;
        let statuses = sup.statuses();
        let failed = sup
            .manifest
            .services
            .iter()
            .filter(|s| s.required && sup.runs(&s.name))
            .find(|s| statuses.iter().any(|st| st.name == s.name && st.state == crate::services::State::Failed))
            .map(|s| s.name.clone());
        let healthy = sup.all_required_running();
        match trial.step(&cfg, started.elapsed(), healthy, failed.as_deref()) {
            Verdict::Wait => {}
            Verdict::MarkGood => {
                let _guard = crate::control::FIRMWARE_LOCK.lock().await;
                match tokio::task::spawn_blocking(move || firmware::mark_good(esp, &Running::here())).await {
                    Ok(Ok(_)) => say(&format!("firmware: slot {version} marked good")),
                    Ok(Err(e)) => say(&format!("firmware: cannot mark slot {version} good: {e}")),
                    Err(e) => say(&format!("firmware: cannot mark slot {version} good: {e}")),
                }
                return;
            }
            Verdict::Reboot(reason) => {
                say(&format!(
                    "firmware: slot {version} on trial: {reason}; rebooting (the boot loader falls back to the previous slot when its tries are used up)"
                ));
                let _ = halt.send(crate::Halt::Reboot);
                return;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn config_file() {
        assert_eq!(TrialConfig::parse("").unwrap(), TrialConfig::default());
        let c = TrialConfig::parse("trial_grace_seconds = 5\ntrial_deadline_seconds = 60\n").unwrap();
        assert_eq!((c.grace, c.deadline), (s(5), s(60)));
        assert!(TrialConfig::parse("trial_grace_seconds = 0").is_err());
        assert!(TrialConfig::parse("trial_grace_seconds = 200").is_err());
        assert!(TrialConfig::parse("grace = 1").is_err());
    }

    #[test]
    fn healthy_for_the_grace_period_marks_good() {
        let cfg = TrialConfig::default();
        let mut t = Trial::default();
        assert_eq!(t.step(&cfg, s(10), false, None), Verdict::Wait);
        assert_eq!(t.step(&cfg, s(20), true, None), Verdict::Wait);
        assert_eq!(t.step(&cfg, s(49), true, None), Verdict::Wait);
        assert_eq!(t.step(&cfg, s(50), true, None), Verdict::MarkGood);
    }

    #[test]
    fn a_flap_restarts_the_grace_period() {
        let cfg = TrialConfig::default();
        let mut t = Trial::default();
        assert_eq!(t.step(&cfg, s(20), true, None), Verdict::Wait);
        assert_eq!(t.step(&cfg, s(45), false, None), Verdict::Wait);
        assert_eq!(t.step(&cfg, s(46), true, None), Verdict::Wait);
        assert_eq!(t.step(&cfg, s(70), true, None), Verdict::Wait);
        assert_eq!(t.step(&cfg, s(76), true, None), Verdict::MarkGood);
    }

    #[test]
    fn unhealthy_at_the_deadline_or_failed_reboots() {
        let cfg = TrialConfig::default();
        let mut t = Trial::default();
        assert_eq!(t.step(&cfg, s(119), false, None), Verdict::Wait);
        assert!(matches!(t.step(&cfg, s(120), false, None), Verdict::Reboot(r) if r.contains("120 s")));
        // Healthy past the deadline is given its grace period.
        let mut t = Trial::default();
        assert_eq!(t.step(&cfg, s(110), true, None), Verdict::Wait);
        assert_eq!(t.step(&cfg, s(130), true, None), Verdict::Wait);
        assert_eq!(t.step(&cfg, s(140), true, None), Verdict::MarkGood);
        // A failed service does not wait for the deadline.
        let mut t = Trial::default();
        assert!(matches!(t.step(&cfg, s(40), false, Some("store")), Verdict::Reboot(r) if r.contains("store failed")));
    }
}
