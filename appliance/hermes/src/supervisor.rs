//! `hermes up`: the host-mode supervisor. It prepares the data folder (layout, default config,
//! self-signed certificate), starts every implemented service as a child process
//! (`hermes serve <svc> --data DIR`), passes their logs through, publishes where they listen in
//! `run/endpoints.json`, restarts a crashed service with exponential backoff, answers `status`
//! on `run/control.sock`, and on SIGTERM/SIGINT stops the children and exits 0.
//!
//! What it is not: PID 1 (`hermes init` on the appliance mounts, reaps orphans and applies
//! config; this runs as an ordinary user on any Linux host), a service (it opens no mail
//! sockets and reads no mail), or a log store: child log lines go to its stderr unchanged and are
//! appended to the size-rotated `DATA/log/hermes.log` (`hermes_runtime::logfile`), nothing more.
//!
//! Invariants:
//! - One supervisor per data folder: `run/supervisor.lock` is flock'ed for its whole life.
//! - Its stdout is for people (banner, `hermes: ready`, endpoints); its stderr carries only JSON
//!   lines: the children's own (passed through byte for byte) and its own (`service` =
//!   `supervisor`). A child line that is not JSON is wrapped in one, never dropped or mixed.
//! - `run/endpoints.json` is written atomically and only from endpoints files that a live child
//!   wrote (matching pid), so a reader never sees a port nobody listens on at that moment;
//!   it is removed on clean shutdown.
//! - A child never outlives a shutdown by more than [`STOP_TIMEOUT`]: SIGTERM, then SIGKILL.
//!   Children run in their own process group (a terminal's Ctrl-C reaches only the supervisor,
//!   which stops them in order) and ask the kernel for SIGTERM if the supervisor dies.

use crate::cli::Service;
use anyhow::{Context, anyhow, bail};
use hermes_core::config::Config;
use hermes_core::ipc::{ControlRequest, ControlResponse, Endpoints, ServiceEndpoints, ServiceState, ServiceStatus};
use hermes_core::paths::DataDir;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// The services `hermes up` runs, in start order (stopped in reverse).
pub const SERVICES: [Service; 4] = [Service::Store, Service::Router, Service::Admin, Service::Hw];
// Backoff, timeouts, exit descriptions, log pass-through and endpoint merging are shared with
// PID 1 (`hermes init`): they live in hermes_svc_init::child.
use hermes_svc_init::child::{
    INITIAL_BACKOFF, STARTUP_TIMEOUT, STOP_TIMEOUT, SUPERVISOR_PID_ENV, describe_exit, merge_endpoints, next_backoff,
};
/// How often a starting child's endpoints file is looked for.
const READY_POLL: Duration = Duration::from_millis(50);
/// Longest control request line; a control client sends `{"op":"status"}`.
const MAX_CONTROL_LINE: u64 = 4096;
/// A control connection idle this long is closed.
const CONTROL_IDLE: Duration = Duration::from_secs(30);

/// What every task of the supervisor shares.
struct Shared {
    data: DataDir,
    exe: PathBuf,
    started_at: i64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    services: Vec<ServiceStatus>,
    /// Endpoints of services that are up, by service name.
    endpoints: BTreeMap<String, ServiceEndpoints>,
    merged: Endpoints,
    /// Whether `hermes: ready` was printed (once every service was up the first time).
    announced: bool,
}

impl Shared {
    fn with_status<R>(&self, name: &str, f: impl FnOnce(&mut ServiceStatus) -> R) -> Option<R> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.services.iter_mut().find(|s| s.name == name).map(f)
    }
}

fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Prints a line for people on stdout; a closed stdout is not an error worth dying for.
fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// `hermes up`. Returns the process exit code: 0 after a clean shutdown, 2 for an invalid config.
pub fn up(data: &DataDir) -> anyhow::Result<ExitCode> {
    crate::layout::ensure_layout(data)?;
    let root =
        std::fs::canonicalize(data.root()).with_context(|| format!("cannot resolve {}", data.root().display()))?;
    let data = DataDir::new(root);
    let _lock = lock_supervisor(&data)?;

    let first_start = crate::layout::ensure_default_config(&data)?;
    let config = match crate::layout::load_config(&data) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hermes: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let log_file = match hermes_runtime::logfile::LogFile::open(
        data.log_dir().join("hermes.log"),
        hermes_runtime::logfile::DEFAULT_MAX_BYTES,
        hermes_runtime::logfile::DEFAULT_KEEP,
    ) {
        Ok(f) => Some(Arc::new(f)),
        Err(e) => {
            eprintln!(
                "hermes: cannot open {}: {e}; logging to stderr only",
                data.log_dir().join("hermes.log").display()
            );
            None
        }
    };
    let _ = LOG_FILE.set(log_file.clone());
    let _ = hermes_runtime::logging::init_tracing_to("supervisor", log_file);

    match hermes_runtime::tls::ensure_self_signed(&data, &config.hostname) {
        Ok(true) => say(&format!(
            "hermes: created a self-signed TLS certificate for {} at {}",
            config.hostname,
            data.tls_cert().display()
        )),
        Ok(false) => say(&format!("hermes: TLS certificate {}", data.tls_cert().display())),
        Err(e) => bail!("cannot create the TLS certificate: {e}"),
    }
    banner(&data, &config, first_start);
    admin_setup_notice(&data, &config)?;

    let exe = std::env::current_exe().context("cannot find the hermes executable")?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(supervise_all(data, exe))?;
    Ok(ExitCode::SUCCESS)
}

/// Takes `run/supervisor.lock` (held until the returned value drops) and records our pid in it.
fn lock_supervisor(data: &DataDir) -> anyhow::Result<Flock<std::fs::File>> {
    let path = data.run_dir().join("supervisor.lock");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
            let pid = std::fs::read_to_string(&path).unwrap_or_default();
            let pid = pid.trim();
            let who = if pid.is_empty() { String::new() } else { format!(" (pid {pid})") };
            bail!("another `hermes up` is already running on {}{who}", data.root().display());
        }
        Err((_, e)) => return Err(anyhow!("cannot lock {}: {e}", path.display())),
    };
    lock.set_len(0)?;
    (&*lock).write_all(format!("{}\n", std::process::id()).as_bytes())?;
    Ok(lock)
}

fn banner(data: &DataDir, config: &Config, first_start: bool) {
    let dir = data.root().display();
    if first_start {
        say(&format!(
            "hermes: first start; data folder {dir}\n\
             hermes: wrote the host-mode config {} (edit it and restart to change ports)\n\
             hermes: to add a mail domain and an account, in another terminal:\n\
             \x20   hermes --data {dir} domain add example.org\n\
             \x20   echo 'a-good-password' | hermes --data {dir} account add alice@example.org --password-stdin\n\
             hermes: then point an IMAP client at {}:{} (plaintext login allowed on loopback)",
            data.config_file().display(),
            config.listen,
            config.imap.port,
        ));
    } else {
        say(&format!("hermes: data folder {dir}"));
    }
}

/// First boot of the admin UI: while no admin account exists, issues a fresh one-time setup
/// token (stored hashed in `DATA/admin/setup-token`, replacing any earlier one) and prints it
/// here, on the console only: the token is a credential, so it never goes to the JSON log.
fn admin_setup_notice(data: &DataDir, config: &Config) -> anyhow::Result<()> {
    let Some(token) = hermes_svc_admin::admins::issue_setup_token(data).context("issuing the admin setup token")?
    else {
        return Ok(());
    };
    let url = if config.admin.port == 0 {
        "https://<the admin endpoint below>/setup".to_string()
    } else {
        format!("https://{}:{}/setup", config.listen, config.admin.port)
    };
    say(&format!(
        "hermes: no admin account yet. Open {url} and enter this one-time setup token\n\
         hermes: (valid {} hours, until the first admin is created; a restart issues a new one):\n\
         hermes: admin setup token: {token}",
        hermes_svc_admin::admins::SETUP_TOKEN_TTL_SECS / 3600
    ));
    tracing::info!("first-boot admin setup pending; the one-time token is on the console");
    Ok(())
}

/// Runs the services until SIGTERM or SIGINT, then stops them and cleans `run/`.
async fn supervise_all(data: DataDir, exe: PathBuf) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Handlers first: a signal that arrives while children start must not kill us outright.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;

    clean_run_dir(&data);
    let shared = Arc::new(Shared {
        data: data.clone(),
        exe,
        started_at: now_unix(),
        state: Mutex::new(State {
            services: SERVICES
                .iter()
                .map(|s| ServiceStatus {
                    name: s.name().to_string(),
                    pid: None,
                    state: ServiceState::Starting,
                    restarts: 0,
                    started_at: None,
                    last_exit: None,
                })
                .collect(),
            ..State::default()
        }),
    });

    let control_path = data.control_socket();
    let listener = tokio::net::UnixListener::bind(&control_path)
        .with_context(|| format!("cannot listen on {}", control_path.display()))?;
    std::fs::set_permissions(&control_path, std::fs::Permissions::from_mode(0o600))?;
    let control = tokio::spawn(control_server(listener, shared.clone()));

    let (stop_tx, stop_rx) = watch::channel(false);
    let tasks: Vec<_> =
        SERVICES.iter().map(|&svc| (svc, tokio::spawn(supervise(svc, shared.clone(), stop_rx.clone())))).collect();
    tracing::info!(pid = std::process::id(), data = %data.root().display(), "supervisor started");

    let signal_name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = signal_name, "shutting down");
    say(&format!("hermes: {signal_name}: stopping services"));
    let _ = stop_tx.send(true);
    // Stop in reverse start order; each task enforces its own SIGTERM → SIGKILL deadline.
    for (svc, task) in tasks.into_iter().rev() {
        if let Err(e) = task.await {
            tracing::error!(service = svc.name(), error = %e, "supervision task failed");
        }
    }
    control.abort();
    clean_run_dir(&data);
    let _ = std::fs::remove_file(&control_path);
    tracing::info!("supervisor stopped");
    say("hermes: stopped");
    Ok(())
}

/// Removes what a previous run may have left: merged and per-service endpoint files, the
/// control socket. Safe because we hold the supervisor lock.
fn clean_run_dir(data: &DataDir) {
    let _ = std::fs::remove_file(data.endpoints_file());
    let _ = std::fs::remove_file(data.control_socket());
    if let Some(dir) = data.service_endpoints_file("x").parent()
        && let Ok(entries) = std::fs::read_dir(dir)
    {
        for entry in entries.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Waits until the stop flag is set (or its sender is gone, which also means stop).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

/// Supervises one service: start, wait for its endpoints, restart on exit, stop on request.
async fn supervise(svc: Service, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let name = svc.name();
    let mut backoff = INITIAL_BACKOFF;
    loop {
        if *stop.borrow() {
            break;
        }
        let _ = std::fs::remove_file(shared.data.service_endpoints_file(name));
        let started = Instant::now();
        let outcome = match spawn_child(svc, &shared) {
            Ok(child) => run_child(svc, child, &shared, &mut stop).await,
            Err(e) => {
                tracing::error!(service = name, error = %e, "cannot start service");
                Some(format!("not started: {e}"))
            }
        };
        let Some(exit) = outcome else {
            // Stopped on request.
            shared.with_status(name, |s| {
                s.state = ServiceState::Stopped;
                s.pid = None;
            });
            return;
        };
        let uptime = started.elapsed();
        let (delay, next) = next_backoff(backoff, uptime);
        backoff = next;
        {
            let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
            state.endpoints.remove(name);
            if let Some(s) = state.services.iter_mut().find(|s| s.name == name) {
                s.state = ServiceState::Backoff;
                s.pid = None;
                s.started_at = None;
                s.last_exit = Some(exit.clone());
            }
        }
        let _ = std::fs::remove_file(shared.data.service_endpoints_file(name));
        tracing::error!(
            service = name,
            exit = %exit,
            uptime_secs = uptime.as_secs(),
            restart_in_ms = delay.as_millis() as u64,
            "service exited; restarting"
        );
        say(&format!("hermes: {name} {exit}; restarting in {}s", delay.as_secs_f32()));
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopped(&mut stop) => {
                shared.with_status(name, |s| s.state = ServiceState::Stopped);
                return;
            }
        }
        shared.with_status(name, |s| s.restarts += 1);
    }
    shared.with_status(name, |s| s.state = ServiceState::Stopped);
}

fn spawn_child(svc: Service, shared: &Shared) -> std::io::Result<tokio::process::Child> {
    let mut cmd = tokio::process::Command::new(&shared.exe);
    cmd.arg("serve")
        .arg(svc.name())
        .arg("--data")
        .arg(shared.data.root())
        .env(SUPERVISOR_PID_ENV, std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    cmd.spawn()
}

/// Runs one child to its end. `Some(how it exited)` if it ended by itself (or was killed for not
/// starting); `None` if it was stopped because the supervisor is shutting down.
async fn run_child(
    svc: Service,
    mut child: tokio::process::Child,
    shared: &Arc<Shared>,
    stop: &mut watch::Receiver<bool>,
) -> Option<String> {
    let name = svc.name();
    let pid = child.id().unwrap_or(0);
    shared.with_status(name, |s| {
        s.pid = Some(pid);
        s.state = ServiceState::Starting;
        s.started_at = Some(now_unix());
    });
    tracing::info!(service = name, pid, "service started");
    let mut pipes = Vec::new();
    if let Some(out) = child.stdout.take() {
        pipes.push(tokio::spawn(pass_through(out, name, "stdout")));
    }
    if let Some(err) = child.stderr.take() {
        pipes.push(tokio::spawn(pass_through(err, name, "stderr")));
    }

    let started = Instant::now();
    let mut ready = false;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            _ = stopped(stop) => {
                shared.with_status(name, |s| s.state = ServiceState::Stopping);
                stop_child(name, pid, &mut child).await;
                for p in pipes {
                    let _ = p.await;
                }
                return None;
            }
            _ = tokio::time::sleep(READY_POLL), if !ready => {
                match hermes_runtime::endpoints::read_service_endpoints(&shared.data, name) {
                    Ok(endpoints) if endpoints.pid == pid => {
                        ready = true;
                        service_ready(shared, name, pid, endpoints);
                    }
                    _ if started.elapsed() > STARTUP_TIMEOUT => {
                        tracing::error!(service = name, pid, timeout_secs = STARTUP_TIMEOUT.as_secs(), "service did not start listening; killing it");
                        let _ = child.start_kill();
                    }
                    _ => {}
                }
            }
        }
    };
    // Drain its last words (a panic message, say) before reporting the exit.
    for p in pipes {
        let _ = tokio::time::timeout(Duration::from_secs(1), p).await;
    }
    Some(match status {
        Ok(s) => describe_exit(s),
        Err(e) => format!("lost: {e}"),
    })
}

/// SIGTERM, up to [`STOP_TIMEOUT`], then SIGKILL.
async fn stop_child(name: &str, pid: u32, child: &mut tokio::process::Child) {
    if let Ok(p) = i32::try_from(pid) {
        let _ = kill(Pid::from_raw(p), Signal::SIGTERM);
    }
    match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
        Ok(Ok(status)) => tracing::info!(service = name, pid, exit = %describe_exit(status), "service stopped"),
        Ok(Err(e)) => tracing::warn!(service = name, pid, error = %e, "service wait failed"),
        Err(_) => {
            tracing::warn!(
                service = name,
                pid,
                timeout_secs = STOP_TIMEOUT.as_secs(),
                "service ignored SIGTERM; killing it"
            );
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}

/// Records a service as up, rewrites `run/endpoints.json`, and tells the user.
fn service_ready(shared: &Shared, name: &str, pid: u32, endpoints: ServiceEndpoints) {
    let (merged, announce, restarted) = {
        let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
        state.endpoints.insert(name.to_string(), endpoints);
        state.merged = merge_endpoints(state.endpoints.values());
        let mut restarted = false;
        if let Some(s) = state.services.iter_mut().find(|s| s.name == name) {
            s.state = ServiceState::Running;
            restarted = s.restarts > 0;
        }
        let all_up = state.services.iter().all(|s| s.state == ServiceState::Running);
        let announce = all_up && !state.announced;
        if announce {
            state.announced = true;
        }
        (state.merged.clone(), announce, restarted)
    };
    let write = serde_json::to_vec_pretty(&merged).map_err(std::io::Error::other).and_then(|mut json| {
        json.push(b'\n');
        hermes_runtime::fs::write_atomic(&shared.data.endpoints_file(), &json, 0o644)
    });
    if let Err(e) = write {
        tracing::error!(service = name, error = %e, path = %shared.data.endpoints_file().display(), "cannot write endpoints");
    }
    tracing::info!(service = name, pid, endpoints = ?merged, "service ready");
    if announce {
        let mut text = String::from("hermes: ready");
        for (k, v) in &merged {
            text.push_str(&format!("\n  {k:<12} {v}"));
        }
        say(&text);
    } else if restarted {
        say(&format!("hermes: {name} is back (pid {pid}); endpoints rewritten"));
    }
}

/// `DATA/log/hermes.log`, where every JSON log line also goes (the admin UI's Logs page reads it);
/// `None` inside when it could not be opened.
static LOG_FILE: std::sync::OnceLock<Option<Arc<hermes_runtime::logfile::LogFile>>> = std::sync::OnceLock::new();

/// Copies a child's output to our stderr (and `DATA/log/hermes.log`) line by line (see hermes_svc_init::child::pass_through:
/// JSON lines unchanged, anything else wrapped; one write per line, so lines never interleave).
async fn pass_through(reader: impl AsyncRead + Unpin, service: &'static str, stream: &'static str) {
    hermes_svc_init::child::pass_through(reader, service, stream, |line| {
        let _ = std::io::stderr().lock().write_all(&line);
        if let Some(Some(file)) = LOG_FILE.get() {
            file.write_line(&line);
        }
    })
    .await;
}

/// Serves `run/control.sock` until aborted.
async fn control_server(listener: tokio::net::UnixListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(control_session(stream, shared.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "control socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn control_session(stream: tokio::net::UnixStream, shared: Arc<Shared>) {
    let (read, mut write) = stream.into_split();
    let mut reader = tokio::io::BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let mut limited = (&mut reader).take(MAX_CONTROL_LINE);
        match tokio::time::timeout(CONTROL_IDLE, limited.read_until(b'\n', &mut line)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(_)) => {}
        }
        let too_long = !line.ends_with(b"\n");
        let response = if too_long {
            ControlResponse { ok: false, error: Some("request too long".into()), ..Default::default() }
        } else {
            match serde_json::from_slice::<ControlRequest>(&line) {
                Ok(ControlRequest::Status) => status_response(&shared),
                Err(e) => ControlResponse { ok: false, error: Some(refusal(&line, &e)), ..Default::default() },
            }
        };
        let Ok(mut json) = serde_json::to_vec(&response) else { return };
        json.push(b'\n');
        if write.write_all(&json).await.is_err() || too_long {
            return;
        }
    }
}

/// Why host mode does not do what a request (other than `status`) asks: the appliance's init
/// answers `reboot`, `factory_reset`, `provision` and the firmware ops; here the admin UI shows
/// this text as it is.
fn refusal(line: &[u8], parse_error: &serde_json::Error) -> String {
    let op = serde_json::from_slice::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v.get("op").and_then(|o| o.as_str()).map(|o| o.chars().take(64).collect::<String>()));
    let Some(op) = op else { return format!("bad request: {parse_error}") };
    match op.as_str() {
        "reboot" => "reboot acts on the appliance only: in host mode, stop and start `hermes up` instead".into(),
        "factory_reset" => "factory reset acts on the appliance only: in host mode, stop `hermes up` and \
                            remove or replace its data folder yourself"
            .into(),
        "provision" => "disk provisioning acts on the appliance only: it needs the appliance's data disks \
                        (in host mode the data folder is wherever `hermes up --data` points)"
            .into(),
        other => {
            format!("`{other}` acts on the appliance only (its init); host mode (`hermes up`) answers only `status`")
        }
    }
}

fn status_response(shared: &Shared) -> ControlResponse {
    let state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
    ControlResponse {
        ok: true,
        error: None,
        supervisor_pid: std::process::id(),
        started_at: shared.started_at,
        services: state.services.clone(),
        endpoints: state.merged.clone(),
    }
}

/// Called first thing in a supervised child (`hermes serve`): ask for SIGTERM when the
/// supervisor dies, and exit at once if it already has (the parent changed before we asked).
pub fn guard_parent_death() -> anyhow::Result<()> {
    let Ok(expected) = std::env::var(SUPERVISOR_PID_ENV) else { return Ok(()) };
    let Ok(expected) = expected.parse::<i32>() else { return Ok(()) };
    nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)?;
    if nix::unistd::getppid() != Pid::from_raw(expected) {
        bail!("supervisor (pid {expected}) is gone");
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn endpoints_merge_flat() {
        let mut s = ServiceEndpoints { service: "store".into(), pid: 1, ..Default::default() };
        s.tcp.insert("imap".into(), "127.0.0.1:10143".into());
        s.tcp.insert("lmtp".into(), "127.0.0.1:10024".into());
        s.unix.insert("lmtp".into(), "/d/run/lmtp.sock".into());
        let m = merge_endpoints([&s].into_iter());
        assert_eq!(m.get("imap").map(String::as_str), Some("127.0.0.1:10143"));
        assert_eq!(m.get("lmtp").map(String::as_str), Some("127.0.0.1:10024"));
        assert_eq!(m.get("lmtp_socket").map(String::as_str), Some("/d/run/lmtp.sock"));
    }

    #[test]
    fn control_requests_parse() {
        assert_eq!(serde_json::from_str::<ControlRequest>(r#"{"op":"status"}"#).unwrap(), ControlRequest::Status);
        assert!(serde_json::from_str::<ControlRequest>(r#"{"op":"reboot"}"#).is_err());
        assert!(serde_json::from_str::<ControlRequest>("garbage").is_err());
    }

    /// The appliance's ops are refused with a reason a person can act on, never as a parse error.
    #[test]
    fn appliance_ops_are_refused_in_words() {
        let refuse = |line: &str| {
            let e = serde_json::from_str::<ControlRequest>(line).unwrap_err();
            refusal(line.as_bytes(), &e)
        };
        let r = refuse(r#"{"op":"reboot"}"#);
        assert!(r.contains("appliance only") && r.contains("hermes up"), "{r}");
        let r = refuse(r#"{"op":"factory_reset"}"#);
        assert!(r.starts_with("factory reset acts on the appliance only"), "{r}");
        let r = refuse(r#"{"op":"provision","bays":[0,1,2,3],"spares":0}"#);
        assert!(r.starts_with("disk provisioning acts on the appliance only"), "{r}");
        let r = refuse(r#"{"op":"firmware_status"}"#);
        assert!(r.contains("`firmware_status` acts on the appliance only"), "{r}");
        assert!(refuse("garbage").starts_with("bad request"));
        assert!(refuse(r#"{"no_op":1}"#).starts_with("bad request"));
    }
}
