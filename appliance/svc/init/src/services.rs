//! Running the manifest's services on the appliance: each as its own user with only its
//! capabilities (`sys`), in dependency order, restarted with backoff up to a start limit, and
//! stopped in reverse order at shutdown. Also the data folder's ownership, which is what makes
//! "writes only its declared paths" true on disk.
//!
//! What it is not: the host-mode supervisor (`hermes up`), which runs everything as the
//! invoking user; the pieces both share are in [`crate::child`].
//!
//! Invariants:
//! - a service starts only after every service in its `after` is running (listening);
//! - a service that exits more than [`START_LIMIT`] times within [`START_LIMIT_WINDOW`] is
//!   left stopped (`failed`) and reported; the others keep running;
//! - `hermes: ready` is printed once, when every `required` service that runs in this state
//!   of `/data` is running;
//! - on a RAM-backed `/data` (disks not provisioned) only the services with `on_ram_data` are
//!   started; the others stay [`State::NotStarted`] (acknowledged mail must survive power loss,
//!   and RAM does not), and `after` entries naming them are ignored;
//! - at shutdown services stop in the reverse of start order, each SIGTERM then SIGKILL after
//!   [`crate::child::STOP_TIMEOUT`].

use crate::child::{self, STARTUP_TIMEOUT, STOP_TIMEOUT, SUPERVISOR_PID_ENV};
use crate::reaper::Reaper;
use crate::sys::{Credentials, drop_privileges};
use hermes_core::ipc::ServiceEndpoints;
use hermes_core::manifest::{DataPath, Manifest, ServiceSpec, socket_gid};
use hermes_core::paths::DataDir;
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Gid, Pid, Uid, chown};
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A service may exit this many times within [`START_LIMIT_WINDOW`]; once more and it is left
/// stopped (systemd's default StartLimitBurst is 5 in 10 s; our backoff makes the window 2 min).
pub const START_LIMIT: usize = 5;
pub const START_LIMIT_WINDOW: Duration = Duration::from_secs(120);
/// How often a starting service's endpoints file is looked for.
const READY_POLL: Duration = Duration::from_millis(50);

/// Where a service is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Waiting,
    Starting,
    Running,
    Backoff,
    Failed,
    Stopping,
    Stopped,
    /// Not started in this state of `/data` (RAM-backed: see [`Supervisor::ram_data`]).
    NotStarted,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Waiting => "waiting",
            State::Starting => "starting",
            State::Running => "running",
            State::Backoff => "backoff",
            State::Failed => "failed",
            State::Stopping => "stopping",
            State::Stopped => "stopped",
            State::NotStarted => "not started",
        }
    }
}

/// One service's status, for the console's `status`.
#[derive(Debug, Clone)]
pub struct Status {
    pub name: String,
    pub state: State,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub last_exit: Option<String>,
    /// When the current process started (unix seconds).
    pub started_at: Option<i64>,
}

/// What the supervision tasks share.
pub struct Supervisor {
    pub manifest: Manifest,
    pub data: DataDir,
    pub exe: PathBuf,
    pub reaper: Arc<Reaper>,
    status: Mutex<Vec<Status>>,
    endpoints: Mutex<BTreeMap<String, ServiceEndpoints>>,
    /// Bumped whenever a state changes, so dependants and `ready` can wait.
    changed: watch::Sender<u64>,
    announced: Mutex<bool>,
    /// When init started, for the boot time in the `ready` report.
    started: Instant,
    /// Services the kernel command line's `hermes.test_fail=` names: never started, reported
    /// as failing (the update-rollback test builds a UKI with it; see docs/image.md).
    pub test_fail: Vec<String>,
    /// `Some(why)` when `/data` is RAM-backed (`disks not provisioned`, or the data volume did
    /// not mount): only the services with `on_ram_data` run.
    pub ram_data: Option<String>,
}

/// Why a service is not started on a RAM-backed `/data` whose disks are not provisioned.
pub const NOT_PROVISIONED: &str = "disks not provisioned";

impl Supervisor {
    pub fn new(
        manifest: Manifest,
        data: DataDir,
        exe: PathBuf,
        reaper: Arc<Reaper>,
        started: Instant,
        ram_data: Option<String>,
    ) -> Arc<Supervisor> {
        let status = manifest
            .services
            .iter()
            .map(|s| Status {
                name: s.name.clone(),
                state: if manifest.runs(&s.name, ram_data.is_some()) { State::Waiting } else { State::NotStarted },
                pid: None,
                restarts: 0,
                last_exit: None,
                started_at: None,
            })
            .collect();
        Arc::new(Supervisor {
            manifest,
            data,
            exe,
            reaper,
            status: Mutex::new(status),
            endpoints: Mutex::new(BTreeMap::new()),
            changed: watch::channel(0).0,
            announced: Mutex::new(false),
            started,
            test_fail: test_fail(&std::fs::read_to_string("/proc/cmdline").unwrap_or_default()),
            ram_data,
        })
    }

    /// Whether service `name` runs in this state of `/data`.
    pub fn runs(&self, name: &str) -> bool {
        self.manifest.runs(name, self.ram_data.is_some())
    }

    /// The services that do not run in this state of `/data`, in manifest order.
    pub fn not_started(&self) -> Vec<String> {
        self.manifest.services.iter().filter(|s| !self.runs(&s.name)).map(|s| s.name.clone()).collect()
    }

    /// What `status` says of a service that is not started: `not started: disks not provisioned`.
    pub fn not_started_reason(&self) -> String {
        format!("not started: {}", self.ram_data.as_deref().unwrap_or(NOT_PROVISIONED))
    }

    pub fn statuses(&self) -> Vec<Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, name: &str, f: impl FnOnce(&mut Status)) {
        {
            let mut all = self.status.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(s) = all.iter_mut().find(|s| s.name == name) {
                f(s);
            }
        }
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    fn state_of(&self, name: &str) -> Option<State> {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).iter().find(|s| s.name == name).map(|s| s.state)
    }

    /// The merged endpoints of running services.
    pub fn endpoints(&self) -> hermes_core::ipc::Endpoints {
        child::merge_endpoints(self.endpoints.lock().unwrap_or_else(|p| p.into_inner()).values())
    }

    /// Whether every required service that runs in this state of `/data` is running.
    pub fn all_required_running(&self) -> bool {
        let all = self.statuses();
        self.manifest
            .services
            .iter()
            .filter(|s| s.required && self.runs(&s.name))
            .all(|s| all.iter().any(|st| st.name == s.name && st.state == State::Running))
    }

    /// Waits until every service in `after` runs, or until `stop`.
    async fn wait_for_dependencies(&self, spec: &ServiceSpec, stop: &mut watch::Receiver<bool>) -> bool {
        let mut changes = self.changed.subscribe();
        loop {
            if *stop.borrow() {
                return false;
            }
            if spec.after.iter().filter(|a| self.runs(a)).all(|a| self.state_of(a) == Some(State::Running)) {
                return true;
            }
            tokio::select! {
                r = changes.changed() => if r.is_err() { return false },
                _ = stop.changed() => {}
            }
        }
    }

    fn ready(&self, name: &str, pid: u32, endpoints: ServiceEndpoints) {
        self.endpoints.lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_string(), endpoints);
        let restarted = self.statuses().iter().any(|s| s.name == name && s.restarts > 0);
        self.set(name, |s| s.state = State::Running);
        let merged = self.endpoints();
        let json = serde_json::to_vec_pretty(&merged).map(|mut j| {
            j.push(b'\n');
            j
        });
        if let Ok(json) = json {
            let _ = hermes_runtime::fs::write_atomic(&self.data.endpoints_file(), &json, 0o644);
        }
        // Sockets: the client group may connect (the service made them with its own group).
        if let Some(spec) = self.manifest.service(name) {
            for sock in &spec.sockets {
                let path = self.data.root().join(&sock.path);
                let gid = if sock.clients.is_empty() { Some(spec.gid) } else { socket_gid(&sock.path) };
                let _ = chown(&path, Some(Uid::from_raw(spec.uid)), gid.map(Gid::from_raw));
                let mode = if sock.clients.is_empty() { 0o600 } else { 0o660 };
                let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode));
            }
        }
        crate::log::say(&format!("{name} is up (pid {pid})"));
        let mut announced = self.announced.lock().unwrap_or_else(|p| p.into_inner());
        if !*announced && self.all_required_running() {
            *announced = true;
            let mut text = String::from("ready");
            for (k, v) in &merged {
                text.push_str(&format!("\n  {k:<12} {v}"));
            }
            crate::log::say(&text);
            crate::log::say(&format!("boot: ready {} ms after init started", self.started.elapsed().as_millis()));
            if let Some(why) = &self.ram_data {
                crate::log::say(&format!(
                    "RAM-backed /data ({why}): only {} run; not started: {}",
                    self.manifest
                        .services
                        .iter()
                        .filter(|s| self.runs(&s.name))
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    self.not_started().join(", ")
                ));
            }
        } else if restarted {
            crate::log::say(&format!("{name} is back"));
        }
    }
}

/// The services `hermes.test_fail=a,b` on a kernel command line names.
pub fn test_fail(cmdline: &str) -> Vec<String> {
    cmdline
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("hermes.test_fail="))
        .flat_map(|v| v.split(','))
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

/// The credentials of `spec` from the manifest.
pub fn credentials(manifest: &Manifest, spec: &ServiceSpec) -> Credentials {
    let mut groups = vec![spec.gid];
    groups.extend(manifest.supplementary_gids(spec));
    groups.sort_unstable();
    groups.dedup();
    Credentials {
        uid: spec.uid,
        gid: spec.gid,
        groups,
        capabilities: spec.capabilities.iter().map(|c| c.number()).collect(),
    }
}

/// The command that runs `spec`: `hermes ARGS... --data DATA`, dropped to its user.
pub fn command(sup: &Supervisor, spec: &ServiceSpec) -> Command {
    let mut cmd = Command::new(&sup.exe);
    cmd.args(&spec.command)
        .arg("--data")
        .arg(sup.data.root())
        .env_clear()
        .env("PATH", "/bin")
        .env(SUPERVISOR_PID_ENV, std::process::id().to_string())
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if nix::unistd::geteuid().is_root() {
        drop_privileges(&mut cmd, credentials(&sup.manifest, spec));
    }
    cmd
}

/// Supervises service `index` until `stop`.
pub async fn supervise(sup: Arc<Supervisor>, index: usize, mut stop: watch::Receiver<bool>) {
    let Some(spec) = sup.manifest.services.get(index).cloned() else { return };
    let name = spec.name.clone();
    if !sup.runs(&name) {
        // RAM-backed /data: it stays `NotStarted` (lib.rs said why on the console).
        return;
    }
    if !sup.wait_for_dependencies(&spec, &mut stop).await {
        sup.set(&name, |s| s.state = State::Stopped);
        return;
    }
    let mut backoff = child::INITIAL_BACKOFF;
    let mut exits: Vec<Instant> = Vec::new();
    loop {
        if *stop.borrow() {
            break;
        }
        let _ = std::fs::remove_file(sup.data.service_endpoints_file(&name));
        let started = Instant::now();
        let outcome = run_once(&sup, &spec, &mut stop).await;
        let Some(exit) = outcome else { break };
        sup.endpoints.lock().unwrap_or_else(|p| p.into_inner()).remove(&name);
        let uptime = started.elapsed();
        exits.retain(|t| t.elapsed() < START_LIMIT_WINDOW);
        exits.push(Instant::now());
        if exits.len() > START_LIMIT {
            sup.set(&name, |s| {
                s.state = State::Failed;
                s.pid = None;
                s.started_at = None;
                s.last_exit = Some(exit.clone());
            });
            crate::log::say(&format!(
                "{name} {exit}; it failed {} times within {} s: left stopped (the other services keep running)",
                exits.len(),
                START_LIMIT_WINDOW.as_secs()
            ));
            let _ = stopped(&mut stop).await;
            sup.set(&name, |s| s.state = State::Stopped);
            return;
        }
        let (delay, next) = child::next_backoff(backoff, uptime);
        backoff = next;
        sup.set(&name, |s| {
            s.state = State::Backoff;
            s.pid = None;
            s.started_at = None;
            s.last_exit = Some(exit.clone());
        });
        crate::log::say(&format!("{name} {exit}; restarting in {} s", delay.as_secs_f32()));
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopped(&mut stop) => break,
        }
        sup.set(&name, |s| s.restarts += 1);
    }
    sup.set(&name, |s| {
        s.state = State::Stopped;
        s.pid = None;
    });
}

async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

/// Starts the service once and runs it to its end: `Some(how it exited)`, or `None` when it
/// was stopped for shutdown.
async fn run_once(sup: &Arc<Supervisor>, spec: &ServiceSpec, stop: &mut watch::Receiver<bool>) -> Option<String> {
    let name = spec.name.as_str();
    if sup.test_fail.iter().any(|n| n == name) {
        sup.set(name, |s| s.state = State::Starting);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = stopped(stop) => return None,
        }
        return Some("exit status 1 (not started: hermes.test_fail on the kernel command line)".into());
    }
    let mut cmd = command(sup, spec);
    let (mut child, mut exited) = match sup.reaper.spawn(&mut cmd) {
        Ok(c) => c,
        Err(e) => return Some(format!("could not start: {e}")),
    };
    let pid = child.id();
    sup.set(name, |s| {
        s.state = State::Starting;
        s.pid = Some(pid);
        s.started_at = Some(chrono::Utc::now().timestamp());
    });
    let mut pipes = Vec::new();
    for (stream, fd) in [
        ("stdout", child.stdout.take().map(std::os::fd::OwnedFd::from)),
        ("stderr", child.stderr.take().map(std::os::fd::OwnedFd::from)),
    ] {
        let Some(fd) = fd else { continue };
        if let Ok(rx) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) {
            let service = name.to_string();
            pipes.push(tokio::spawn(async move {
                child::pass_through(rx, &service, stream, |line| crate::log::service_line(&line)).await;
            }));
        }
    }
    let started = Instant::now();
    let mut ready = false;
    let status = loop {
        tokio::select! {
            status = &mut exited => break status.ok(),
            _ = stopped(stop) => {
                sup.set(name, |s| s.state = State::Stopping);
                terminate(name, pid, &mut exited).await;
                for p in pipes {
                    let _ = tokio::time::timeout(Duration::from_secs(1), p).await;
                }
                return None;
            }
            _ = tokio::time::sleep(READY_POLL), if !ready => {
                match hermes_runtime::endpoints::read_service_endpoints(&sup.data, name) {
                    Ok(endpoints) if endpoints.pid == pid => {
                        ready = true;
                        sup.ready(name, pid, endpoints);
                    }
                    _ if started.elapsed() > STARTUP_TIMEOUT => {
                        crate::log::say(&format!("{name} did not start listening within {} s; killing it", STARTUP_TIMEOUT.as_secs()));
                        signal_group(pid, Signal::SIGKILL);
                    }
                    _ => {}
                }
            }
        }
    };
    for p in pipes {
        let _ = tokio::time::timeout(Duration::from_secs(1), p).await;
    }
    Some(match status {
        Some(s) => child::describe_exit(s),
        None => "lost".to_string(),
    })
}

fn signal_group(pid: u32, sig: Signal) {
    if let Ok(p) = i32::try_from(pid) {
        // The service leads its own process group: its helpers go too.
        let _ = kill(Pid::from_raw(-p), sig);
        let _ = kill(Pid::from_raw(p), sig);
    }
}

/// SIGTERM, up to [`STOP_TIMEOUT`], then SIGKILL.
async fn terminate(name: &str, pid: u32, exited: &mut tokio::sync::oneshot::Receiver<std::process::ExitStatus>) {
    signal_group(pid, Signal::SIGTERM);
    match tokio::time::timeout(STOP_TIMEOUT, &mut *exited).await {
        Ok(Ok(status)) => crate::log::say(&format!("{name} stopped ({})", child::describe_exit(status))),
        Ok(Err(_)) => {}
        Err(_) => {
            crate::log::say(&format!("{name} ignored SIGTERM for {} s; killing it", STOP_TIMEOUT.as_secs()));
            signal_group(pid, Signal::SIGKILL);
            let _ = tokio::time::timeout(Duration::from_secs(5), exited).await;
        }
    }
}

/// Owner, group and modes of the data folder from the manifest: each path's writer owns it
/// (0700, or 0750 with its readers' group), readers get `hermes-r-PATH`, nobody else gets in.
/// `run/` is root:hermes-run 1770 (services create their sockets and endpoint files there; the
/// sticky bit stops them removing each other's). Paths nobody writes belong to root.
///
/// A writer-only tree is walked only when its top folder is not already theirs (the store can
/// be large; what a service creates is already its own); trees with readers always are, and so
/// is `admin/` (init writes the setup token there as root before it runs).
pub fn apply_ownership(manifest: &Manifest, data: &DataDir) -> Vec<String> {
    let mut problems = Vec::new();
    let root = data.root();
    let _ = std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o711));
    for path in DataPath::ALL {
        let dir = root.join(path.dir_name());
        if let Err(e) = std::fs::create_dir_all(&dir) {
            problems.push(format!("{}: {e}", dir.display()));
            continue;
        }
        let writer = manifest.services.iter().find(|s| s.writes.contains(&path));
        let has_readers = manifest.services.iter().any(|s| s.reads.contains(&path));
        let uid = writer.map_or(0, |w| w.uid);
        let gid = if has_readers { hermes_core::manifest::read_gid(path) } else { writer.map_or(0, |w| w.gid) };
        // Paths with readers are small (config, directory, tls) and may hold files another
        // writer (the console CLI as root, or a 0600 file) just made: always walked. A
        // writer-only path (the store, the queue) is walked only when its top is not theirs.
        // `admin/` too: init writes the admin UI's setup token there as root at every boot
        // while no admin exists (small: the admin accounts and sessions).
        let deep = match std::fs::metadata(&dir) {
            Ok(m) => writer.is_none() || has_readers || path == DataPath::Admin || m.uid() != uid || m.gid() != gid,
            Err(_) => true,
        };
        if deep {
            walk(&dir, &mut |p: &Path, is_dir: bool| {
                let _ = chown(p, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
                if let Ok(meta) = std::fs::symlink_metadata(p) {
                    let owner_bits = meta.mode() & 0o700;
                    let group_bits = if has_readers { if is_dir { 0o050 } else { 0o040 } } else { 0 };
                    let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(owner_bits | group_bits));
                }
            });
        }
        let top = if has_readers { 0o750 } else { 0o700 };
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(top));
    }
    let run = data.run_dir();
    let endpoints_d = data.service_endpoints_file("x").parent().map(Path::to_path_buf);
    for dir in [Some(run), endpoints_d].into_iter().flatten() {
        if let Err(e) = std::fs::create_dir_all(&dir) {
            problems.push(format!("{}: {e}", dir.display()));
        }
        let _ = chown(&dir, Some(Uid::from_raw(0)), Some(Gid::from_raw(hermes_core::manifest::RUN_GID)));
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1770));
    }
    problems
}

/// Calls `f` on `dir` and everything under it (symlinks are not followed).
fn walk(dir: &Path, f: &mut impl FnMut(&Path, bool)) {
    f(dir, true);
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            walk(&e.path(), f);
        } else if !t.is_symlink() {
            f(&e.path(), false);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest::parse(include_str!("../../../../image/manifest.toml")).unwrap()
    }

    /// On a RAM-backed /data (issue 6 point 1) only admin and hw run: the store and the router
    /// stay `not started`, the admin does not wait for the store, and `ready` (and the trial's
    /// health) counts only what runs.
    #[tokio::test]
    async fn ram_data_runs_only_the_services_allowed_there() {
        let dir = tempfile::tempdir().unwrap();
        let sup = |ram: Option<String>| {
            Supervisor::new(
                manifest(),
                DataDir::new(dir.path()),
                PathBuf::from("/bin/false"),
                Arc::new(Reaper::default()),
                Instant::now(),
                ram,
            )
        };
        let ram = sup(Some(NOT_PROVISIONED.into()));
        let state = |s: &Supervisor, n: &str| s.state_of(n).unwrap();
        for n in ["store", "router"] {
            assert_eq!(state(&ram, n), State::NotStarted);
            assert!(!ram.runs(n));
        }
        assert_eq!(ram.not_started(), ["store", "router"]);
        assert_eq!(ram.not_started_reason(), "not started: disks not provisioned");
        for n in ["admin", "hw"] {
            assert_eq!(state(&ram, n), State::Waiting);
        }
        // The store is never started: supervise returns at once and leaves it `not started`.
        let (_stop_tx, stop) = watch::channel(false);
        let store = ram.manifest.services.iter().position(|s| s.name == "store").unwrap();
        tokio::time::timeout(Duration::from_secs(5), supervise(ram.clone(), store, stop.clone())).await.unwrap();
        assert_eq!(state(&ram, "store"), State::NotStarted);
        // The admin's `after = ["store"]` does not hold it back on RAM.
        let admin = ram.manifest.service("admin").unwrap().clone();
        let mut stop2 = stop.clone();
        assert!(
            tokio::time::timeout(Duration::from_secs(5), ram.wait_for_dependencies(&admin, &mut stop2)).await.unwrap()
        );
        // Ready once the admin UI alone runs (hw is not required).
        assert!(!ram.all_required_running());
        ram.set("admin", |s| s.state = State::Running);
        assert!(ram.all_required_running());

        // On disks every service runs, and ready needs the store and the router too.
        let disks = sup(None);
        assert!(disks.not_started().is_empty());
        assert_eq!(state(&disks, "store"), State::Waiting);
        disks.set("admin", |s| s.state = State::Running);
        assert!(!disks.all_required_running());
        assert!(
            !tokio::time::timeout(Duration::from_millis(200), disks.wait_for_dependencies(&admin, &mut stop2))
                .await
                .unwrap_or(false)
        );
        for n in ["store", "router"] {
            disks.set(n, |s| s.state = State::Running);
        }
        assert!(disks.all_required_running());
    }

    #[test]
    fn test_fail_flag() {
        assert_eq!(test_fail("console=ttyS0 hermes.test_fail=store,router quiet"), ["store", "router"]);
        assert!(test_fail("console=ttyS0 quiet").is_empty());
    }

    #[test]
    fn credentials_follow_the_manifest() {
        let m = manifest();
        let router = m.service("router").unwrap();
        let c = credentials(&m, router);
        assert_eq!((c.uid, c.gid), (202, 202));
        assert_eq!(c.capabilities, vec![10]);
        assert!(c.groups.contains(&socket_gid("run/lmtp.sock").unwrap()));
        assert!(c.groups.contains(&hermes_core::manifest::read_gid(DataPath::Directory)));
        let store = m.service("store").unwrap();
        assert!(!credentials(&m, store).groups.contains(&socket_gid("run/lmtp.sock").unwrap()));
    }

    #[test]
    fn ownership_gives_writers_their_paths_and_readers_a_group() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let m = manifest();
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        std::fs::create_dir_all(data.directory_dir().join("accounts")).unwrap();
        std::fs::write(data.directory_dir().join("accounts/a"), "x").unwrap();
        std::fs::set_permissions(data.directory_dir().join("accounts/a"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        assert!(apply_ownership(&m, &data).is_empty());
        let store = std::fs::metadata(data.store_dir()).unwrap();
        assert_eq!((store.uid(), store.mode() & 0o777), (201, 0o700));
        let account = std::fs::metadata(data.directory_dir().join("accounts/a")).unwrap();
        // The directory's writer (the admin service) owns it; its readers get the group.
        let writer = m.services.iter().find(|s| s.writes.contains(&DataPath::Directory)).map_or(0, |s| s.uid);
        assert_eq!(account.uid(), writer);
        assert_eq!(account.gid(), hermes_core::manifest::read_gid(DataPath::Directory));
        assert_eq!(account.mode() & 0o777, 0o640);
        let run = std::fs::metadata(data.run_dir()).unwrap();
        assert_eq!(run.mode() & 0o7777, 0o1770);
        // The next boot on the same disks: admin/ is already the admin's, and init (root) writes
        // the setup token into it again; it must become the admin's (else the UI cannot start).
        let token = data.root().join("admin/setup-token");
        std::fs::write(&token, "{}").unwrap();
        assert_eq!(std::fs::metadata(&token).unwrap().uid(), 0);
        assert!(apply_ownership(&m, &data).is_empty());
        let admin = m.service("admin").unwrap().uid;
        assert_eq!(std::fs::metadata(&token).unwrap().uid(), admin);
    }
}
