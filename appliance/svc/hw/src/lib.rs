//! The disk and RAID health service, `hermes serve hw` (issue 5).
//!
//! What it is: the process that wires the `hermes-hw` models into a service. Four threads:
//! - the **sweeper** runs a full SMART sweep every `[hw] interval_secs` (default 5 min): discovery
//!   and bay map, one probe thread per disk with a deadline (a hung disk is judged "unknown, timed
//!   out" and is not probed again until its stuck probe returns), daily history under `DATA/hw/`,
//!   verdicts, and the monthly scrub schedule;
//! - the **watcher** polls md's sysfs every 500 ms ([`hermes_hw::md::watch`]), so a degraded array
//!   is reported within 2 s, applies the failure policy ([`policy`]) and looks for replacement
//!   disks in the bays of removed members;
//! - the **control socket** `run/hw.sock` ([`server`]) answers [`hermes_hw::api`] requests;
//! - the **alerter** ([`alert`]) mails `[hw] alert_to` through the router's MX listener.
//!
//! What it is not: async. Every SMART ioctl blocks, so the service has no async runtime at all;
//! each blocking call runs on a thread of its own with a deadline, and no lock is held across I/O.
//!
//! Invariants: every event is logged (one JSON line, fields `event`, `array`, `member`, `bay`),
//! kept in the status (the last [`hermes_hw::api::MAX_EVENTS`]) and, at warning level and above,
//! mailed; every reader takes `[hw] sysroot` as its root, so tests point the service at a fake
//! tree; the service never writes to a disk except through the failure policy (remove a faulty
//! member; add a blank replacement when `[hw] auto_replace` allows) and explicit requests.

pub mod alert;
pub mod policy;
pub mod server;
pub mod status;
pub mod sweep;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::Duration;

use anyhow::Context;
use hermes_core::config::{Config, HwConfig};
use hermes_core::paths::DataDir;
use hermes_hw::api::{self, EventInfo, EventSeverity};
use hermes_hw::discover::{BayConfig, BayMap, BayOverride, BlockDevice};
use hermes_hw::verdict::VerdictConfig;

/// Everything the service needs from the config, resolved once.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Root of `sys/`, `proc/` and `dev/` (`/` on a machine).
    pub root: PathBuf,
    pub dev_root: PathBuf,
    /// `DATA/hw`: history and scrub times.
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    pub interval: Duration,
    pub probe_timeout: Duration,
    pub bays: BayConfig,
    pub verdict: VerdictConfig,
    pub alert_to: Vec<String>,
    pub auto_replace: bool,
    pub scrub_interval_days: u32,
    pub scrub_speed_kib_s: u32,
    pub hostname: String,
    /// The router's MX listener when its endpoints file does not say (config's listen:smtp_port).
    pub smtp_fallback: String,
}

impl Settings {
    pub fn new(data: &DataDir, config: &Config) -> anyhow::Result<Settings> {
        let hw: &HwConfig = &config.hw;
        let root = PathBuf::from(&hw.sysroot);
        let bays = BayConfig {
            bays: hw.bays,
            overrides: hw
                .bay_overrides
                .iter()
                .map(|o| BayOverride { controller: o.controller.clone(), port: o.port.clone(), bay: o.bay })
                .collect(),
            exclude: hw.exclude.clone(),
        };
        bays.validate().map_err(|e| anyhow::anyhow!("[hw] bay map: {}", e.join("; ")))?;
        let mut verdict = VerdictConfig::default();
        verdict.hdd_temp_warn_c = hw.hdd_temp_warn_c.unwrap_or(verdict.hdd_temp_warn_c);
        verdict.hdd_temp_fail_c = hw.hdd_temp_fail_c.unwrap_or(verdict.hdd_temp_fail_c);
        verdict.ssd_temp_warn_c = hw.ssd_temp_warn_c.unwrap_or(verdict.ssd_temp_warn_c);
        verdict.ssd_temp_fail_c = hw.ssd_temp_fail_c.unwrap_or(verdict.ssd_temp_fail_c);
        verdict.validate().map_err(|e| anyhow::anyhow!("[hw] temperature limits: {}", e.join("; ")))?;
        let smtp_host =
            if config.listen.is_unspecified() { "127.0.0.1".to_string() } else { config.listen.to_string() };
        Ok(Settings {
            dev_root: root.join("dev"),
            root,
            state_dir: data.root().join("hw"),
            socket: api::socket_path(data.root()),
            interval: Duration::from_secs(hw.interval_secs),
            probe_timeout: Duration::from_secs(hw.probe_timeout_secs),
            bays,
            verdict,
            alert_to: hw.alert_to.clone(),
            auto_replace: hw.auto_replace,
            scrub_interval_days: hw.scrub_interval_days,
            scrub_speed_kib_s: hw.scrub_speed_kib_s,
            hostname: config.hostname.clone(),
            smtp_fallback: format!("{smtp_host}:{}", config.router.smtp_port),
        })
    }

    pub fn history_dir(&self) -> PathBuf {
        self.state_dir.join("history")
    }
}

/// What one sweep learned about one disk.
#[derive(Debug, Clone)]
pub struct DiskInfo {
    /// The bay entry (bay number and array membership are filled in at status time).
    pub bay: api::Bay,
}

/// A bay whose member was removed from an array: a new disk there may replace it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub array: String,
    pub old_device: String,
    pub old_serial: Option<String>,
    /// Set once the disk now in the bay was looked at and refused (reported once).
    pub refused: Option<String>,
}

#[derive(Debug, Default)]
pub struct State {
    /// By device name, from the last sweep.
    pub disks: BTreeMap<String, DiskInfo>,
    pub devices: Vec<BlockDevice>,
    pub map: BayMap,
    pub sampled_at: i64,
    pub last_sweep: Option<api::SweepCost>,
    pub events: VecDeque<EventInfo>,
    pub pending: BTreeMap<u16, Pending>,
    /// Last verdict per disk serial (or name), to report changes.
    pub last_health: BTreeMap<String, api::VerdictLevel>,
}

/// Reads one disk (the real one is [`hermes_hw::probe::read_disk`]; tests give a disk that hangs).
pub type ProbeFn = fn(&BlockDevice, &hermes_hw::probe::ProbeConfig) -> hermes_hw::verdict::Readings;

/// What all threads share.
pub struct Shared {
    pub probe: ProbeFn,
    pub settings: Settings,
    pub data: DataDir,
    state: Mutex<State>,
    pub stop: AtomicBool,
    alerts: Mutex<Option<mpsc::Sender<alert::Alert>>>,
    /// Per device: whether a probe thread is inside the kernel right now.
    pub busy: Mutex<BTreeMap<String, Arc<std::sync::atomic::AtomicBool>>>,
}

impl Shared {
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Sleeps up to `d`, waking early when the service stops; false if it is stopping.
    pub fn sleep(&self, d: Duration) -> bool {
        let step = Duration::from_millis(100);
        let mut left = d;
        while !left.is_zero() {
            if self.stopping() {
                return false;
            }
            let s = left.min(step);
            std::thread::sleep(s);
            left -= s;
        }
        !self.stopping()
    }

    /// Logs, keeps and (at warning level and above) mails a batch of events.
    pub fn record(&self, events: Vec<EventInfo>) {
        if events.is_empty() {
            return;
        }
        for e in &events {
            let bay = e.bay.map(i64::from).unwrap_or(-1);
            let array = e.array.as_deref().unwrap_or("");
            let member = e.device.as_deref().unwrap_or("");
            match e.severity {
                EventSeverity::Critical => {
                    tracing::error!(event = %e.kind, array, member, bay, "{}", e.message)
                }
                EventSeverity::Warning => {
                    tracing::warn!(event = %e.kind, array, member, bay, "{}", e.message)
                }
                EventSeverity::Info => tracing::info!(event = %e.kind, array, member, bay, "{}", e.message),
            }
        }
        let alerting: Vec<EventInfo> = events
            .iter()
            .filter(|e| e.severity != EventSeverity::Info && !e.kind.starts_with("Alert"))
            .cloned()
            .collect();
        {
            let mut st = self.state();
            for e in events {
                st.events.push_back(e);
            }
            while st.events.len() > api::MAX_EVENTS {
                st.events.pop_front();
            }
        }
        if !alerting.is_empty() && !self.settings.alert_to.is_empty() {
            let tx = self.alerts.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(tx) = tx.as_ref() {
                let _ = tx.send(alert::Alert { events: alerting });
            }
        }
    }
}

/// Unix seconds now.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// An event of the service's own (not an md event).
pub fn event(kind: &str, severity: EventSeverity, message: String) -> EventInfo {
    EventInfo { time: now(), kind: kind.to_string(), severity, array: None, bay: None, device: None, message }
}

/// A running service (threads and socket); [`Service::stop`] ends it.
pub struct Service {
    pub shared: Arc<Shared>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Service {
    /// Binds the socket, starts every thread and writes the endpoints file.
    pub fn start(data: &DataDir, config: &Config) -> anyhow::Result<Service> {
        Service::start_with(data, config, hermes_hw::probe::read_disk)
    }

    /// [`Service::start`] with another disk reader (tests: a disk that never answers).
    pub fn start_with(data: &DataDir, config: &Config, probe: ProbeFn) -> anyhow::Result<Service> {
        let settings = Settings::new(data, config)?;
        std::fs::create_dir_all(settings.history_dir())
            .with_context(|| format!("cannot create {}", settings.history_dir().display()))?;
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            probe,
            settings,
            data: data.clone(),
            state: Mutex::new(State::default()),
            stop: AtomicBool::new(false),
            alerts: Mutex::new(Some(tx)),
            busy: Mutex::new(BTreeMap::new()),
        });
        let listener = server::bind(&shared.settings.socket)?;
        let mut threads = Vec::new();
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new().name(name.to_string()).spawn(f).with_context(|| format!("thread {name}"))
        };
        {
            let sh = shared.clone();
            threads.push(spawn("hw-sweep", Box::new(move || sweep::run(&sh)))?);
        }
        {
            let sh = shared.clone();
            threads.push(spawn("hw-md-watch", Box::new(move || policy::watch(&sh)))?);
        }
        {
            let sh = shared.clone();
            threads.push(spawn("hw-socket", Box::new(move || server::serve(listener, &sh)))?);
        }
        {
            let sh = shared.clone();
            threads.push(spawn("hw-alert", Box::new(move || alert::run(&sh, rx)))?);
        }
        let mut endpoints =
            hermes_core::ipc::ServiceEndpoints { service: "hw".into(), pid: std::process::id(), ..Default::default() };
        endpoints.unix.insert("hw".into(), shared.settings.socket.display().to_string());
        hermes_runtime::endpoints::write_service_endpoints(data, &endpoints).context("writing the endpoints file")?;
        tracing::info!(
            root = %shared.settings.root.display(),
            interval_secs = shared.settings.interval.as_secs(),
            socket = %shared.settings.socket.display(),
            euid = nix::unistd::geteuid().as_raw(),
            "disk health service started"
        );
        Ok(Service { shared, threads })
    }

    /// Stops every thread (a probe stuck in the kernel is abandoned) and removes the socket.
    pub fn stop(self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        *self.shared.alerts.lock().unwrap_or_else(|p| p.into_inner()) = None;
        server::wake(&self.shared.settings.socket);
        for t in self.threads {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.shared.settings.socket);
        tracing::info!("disk health service stopped");
    }
}

/// `hermes serve hw`: runs until SIGTERM or SIGINT.
pub fn run(data: DataDir, config: Config) -> anyhow::Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    // Blocked before any thread starts, so every thread inherits the mask and only sigwait sees them.
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.thread_block().context("blocking SIGTERM/SIGINT")?;
    let service = Service::start(&data, &config)?;
    let sig = set.wait().context("waiting for a signal")?;
    tracing::info!(signal = ?sig, "shutting down");
    service.stop();
    Ok(())
}

/// The bay of `member` (a disk or one of its partitions) in `map`.
pub fn bay_of_member(map: &BayMap, member: &str) -> Option<u16> {
    map.bays.iter().find(|(_, (disk, _))| is_part_of(member, disk)).map(|(b, _)| *b)
}

/// `sda` is part of `sda`; `sda1` of `sda`; `nvme0n1p2` of `nvme0n1`.
pub fn is_part_of(member: &str, disk: &str) -> bool {
    member == disk
        || member.strip_prefix(disk).is_some_and(|r| {
            let r = r.strip_prefix('p').unwrap_or(r);
            !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit())
        })
}

/// Whether this process can run mdadm's create and assemble modes (it insists on euid 0).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The path under the root for an absolute path.
pub fn under(root: &Path, abs: &str) -> PathBuf {
    root.join(abs.trim_start_matches('/'))
}

/// Provisions the data array here and now (the caller is root: the console's CLI, or the service
/// in host mode under root). `confirmed`: the admin confirmed overwriting what the disks carry.
pub fn provision_local(
    root: &Path,
    bay_cfg: &BayConfig,
    bays: &[u16],
    spares: u16,
    size_mib: Option<u64>,
    confirmed: bool,
) -> anyhow::Result<String> {
    use hermes_hw::provision;
    let devices = hermes_hw::discover::discover(root)?;
    let map = crate::bay_map(root, bay_cfg, &devices);
    let snap = hermes_hw::md::read_arrays(root)?;
    let mounted = provision::mounted_devices(root);
    let dev_root = root.join("dev");
    let sig = |n: &str| provision::read_signature(&dev_root.join(n));
    let mut plan = provision::plan(bays, spares, &devices, &map, &snap, &mounted, &sig, confirmed)?;
    plan.size_mib = size_mib;
    tracing::warn!(array = %plan.array, active = ?plan.active, spares = ?plan.spares, "provisioning the data array");
    provision::provision(&plan, &dev_root, root)?;
    let list = |v: &[(u16, String)]| v.iter().map(|(b, d)| format!("{b}:{d}")).collect::<Vec<_>>().join(" ");
    Ok(format!(
        "created {} (RAID10, metadata 1.2) over bays {} with spare(s) {}; ext4 labelled {}; \
         it becomes /data at the next boot",
        plan.array,
        list(&plan.active),
        if plan.spares.is_empty() { "none".to_string() } else { list(&plan.spares) },
        provision::DATA_LABEL
    ))
}

/// The bay map, with boot media left out: a disk with a mounted filesystem on it or on one of its
/// partitions (the ESP, a host's root disk) is never a data bay. md members are whole disks whose
/// filesystem is mounted from the array, so they stay in.
pub fn bay_map(root: &Path, cfg: &BayConfig, devices: &[BlockDevice]) -> BayMap {
    let mounted = hermes_hw::provision::mounted_devices(root);
    let mut cfg = cfg.clone();
    for d in devices {
        if mounted.iter().any(|m| is_part_of(m, &d.name))
            && let Some(l) = &d.location
        {
            cfg.exclude.push(l.device_path.clone());
        }
    }
    hermes_hw::discover::map_bays(devices, &cfg)
}
