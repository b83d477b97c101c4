//! `hermes init`: PID 1 of the Hermes appliance.
//!
//! Boot, in order: mount the API file systems (proc, sys, devtmpfs, devpts, /run, /tmp,
//! cgroup2); load the kernel modules the manifest lists (`kmod`); mount `/data` (a volume
//! labelled `hermes-data` once hw has provisioned the disks, else RAM) and finish a factory
//! reset asked before the last reboot (`system_ops`: erase `/data`); write the first-boot
//! config and TLS certificate; set the hostname; bring the network up (`net`: static from
//! `network.toml`, else DHCPv4); give each data path its owner (`services::apply_ownership`);
//! start the watchdog; start the manifest's services as their own users in dependency order
//! (`services`): every one on disks, only those marked `on_ram_data` (the admin UI and hw, so
//! the admin can provision) on a RAM `/data`, where mail would be lost at the next boot (the
//! console says why the mail services are not started and how to provision); print
//! `hermes: ready` once the services this state allows are up.
//! The EFI system partition is mounted at /boot/efi and efivarfs with it (`esp`) right after
//! the modules load; a firmware slot on trial is marked good once the services stay healthy, or
//! the box reboots to fall back (`trial`, `firmware`).
//! Then: reap zombies (`reaper`), answer console commands (`console`) and the control socket
//! `DATA/run/control.sock` (`control`), and on SIGTERM, SIGINT
//! (Ctrl-Alt-Del), SIGUSR2, SIGPWR, the ACPI power button or a console `poweroff`/`reboot`,
//! shut down in order (services in reverse, sync, unmount or remount read-only, reboot(2)).
//!
//! What it is not: a general init system. It runs the manifest's services and nothing else;
//! there is no shell and no service files.
//!
//! Invariants:
//! - [`run`] never returns and never panics out: a panic in boot is caught, reported on the
//!   console, and the box reboots after [`PANIC_REBOOT_DELAY`] (PID 1 exiting would be a
//!   kernel panic);
//! - every step's failure is reported on the console and boot goes on with what works;
//! - services never run as root (`sys::drop_privileges`).

pub mod appliance_config;
pub mod carry;
pub mod child;
pub mod console;
pub mod control;
pub mod dhcp;
pub mod esp;
pub mod firmware;
pub mod kmod;
pub mod log;
pub mod mounts;
pub mod net;
pub mod netlink;
pub mod ntp;
pub mod reaper;
pub mod services;
pub mod sys;
pub mod system_ops;
pub mod trial;

use hermes_core::manifest::{MANIFEST_PATH, Manifest};
use hermes_core::paths::DataDir;
use log::say;
use nix::sys::reboot::RebootMode;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The data folder on the appliance.
pub const DATA: &str = "/data";
/// After a panic in boot, how long the message stays on the console before the reboot.
pub const PANIC_REBOOT_DELAY: Duration = Duration::from_secs(10);
/// How often the hardware watchdog is fed; every driver we ship defaults to 30 s or more.
pub const WATCHDOG_INTERVAL: Duration = Duration::from_secs(10);

/// What ends the running box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Halt {
    Poweroff,
    Reboot,
}

/// PID 1's entry point. Never returns.
pub fn run() -> ! {
    let started = Instant::now();
    let result = std::panic::catch_unwind(|| boot_and_serve(started));
    let halt = match result {
        Ok(halt) => halt,
        Err(_) => {
            say(&format!("init failed unexpectedly; rebooting in {} s", PANIC_REBOOT_DELAY.as_secs()));
            std::thread::sleep(PANIC_REBOOT_DELAY);
            Halt::Reboot
        }
    };
    finish(halt)
}

/// The last step: sync, unmount, reboot(2). If the kernel refuses, wait forever (PID 1 must
/// not exit).
fn finish(halt: Halt) -> ! {
    nix::unistd::sync();
    log::detach_file();
    esp::take_down();
    for e in mounts::take_down(Path::new(DATA)) {
        say(&e);
    }
    nix::unistd::sync();
    let mode = match halt {
        Halt::Poweroff => RebootMode::RB_POWER_OFF,
        Halt::Reboot => RebootMode::RB_AUTOBOOT,
    };
    say(match halt {
        Halt::Poweroff => "powering off",
        Halt::Reboot => "rebooting",
    });
    let err = nix::sys::reboot::reboot(mode);
    say(&format!("reboot(2) failed: {err:?}; halted"));
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn boot_and_serve(started: Instant) -> Halt {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    // Ctrl-Alt-Del becomes SIGINT to us instead of an instant reset.
    let _ = nix::sys::reboot::set_cad_enabled(false);
    for e in mounts::mount_api() {
        say(&e);
    }
    let kernel = nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    say(&format!("Hermes {} starting (kernel {kernel})", env!("CARGO_PKG_VERSION")));

    let manifest = match std::fs::read_to_string(MANIFEST_PATH)
        .map_err(|e| e.to_string())
        .and_then(|t| Manifest::parse(&t).map_err(|e| e.to_string()))
    {
        Ok(m) => Some(m),
        Err(e) => {
            say(&format!("{MANIFEST_PATH}: {e}; no services will start"));
            None
        }
    };

    let list = kmod::read_list(Path::new(kmod::MODULE_LIST));
    let t = Instant::now();
    let (loaded, problems) = kmod::load_all(&kmod::module_dir(), &list);
    say(&format!("modules: {loaded} loaded in {} ms", t.elapsed().as_millis()));
    for p in problems {
        say(&format!("modules: {p}"));
    }
    let (esp_lines, _) = esp::bring_up();
    for l in esp_lines {
        say(&format!("firmware: {l}"));
    }

    let data = DataDir::new(DATA);
    // md arrays first (hw provisions /data as RAID10): then the volume label can be found.
    for l in hermes_hw::provision::assemble_all(Path::new("/")) {
        say(&format!("raid: {l}"));
    }
    // `Some(why)` when /data is RAM: then only the services marked `on_ram_data` start.
    let ram: Option<String> = match mounts::find_data_volume() {
        Some(dev) => match mounts::mount_data_volume(&dev, Path::new(DATA)) {
            Ok(()) => {
                say(&format!("/data: {dev}"));
                None
            }
            Err(e) => {
                say(&format!("/data: cannot mount {dev}: {e}; using RAM"));
                ram_data();
                Some(format!("the data volume {dev} did not mount"))
            }
        },
        None => {
            say("/data: no provisioned disks; RAM-backed until the admin provisions them");
            ram_data();
            Some(services::NOT_PROVISIONED.to_string())
        }
    };
    if let (Some(why), Some(m)) = (&ram, &manifest) {
        ram_notice(m, why);
    }
    // A factory reset asked before the last reboot (or cut short by a power cut) is finished
    // before anything reads or writes /data: the log file, the config, ownership, services.
    if ram.is_none() {
        system_ops::resume_at_boot(Path::new(DATA));
    }
    let _ = std::fs::create_dir_all(data.log_dir());
    log::attach_file(data.log_dir().join("console.log"));

    let image_hostname = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    let image_hostname = if image_hostname.is_empty() { "hermes".to_string() } else { image_hostname };
    match appliance_config::ensure(&data, &image_hostname) {
        Ok(true) => say("config: first boot; wrote /data/config/hermes.toml"),
        Ok(false) => {}
        Err(e) => say(&format!("config: cannot write the default: {e}")),
    }
    let hostname = match std::fs::read_to_string(data.config_file()).map(|t| hermes_core::config::Config::from_toml(&t))
    {
        Ok(Ok(c)) => c.hostname,
        Ok(Err(e)) => {
            say(&format!("config: {} is invalid: {e:?}", data.config_file().display()));
            image_hostname
        }
        Err(e) => {
            say(&format!("config: cannot read {}: {e}", data.config_file().display()));
            image_hostname
        }
    };
    if let Err(e) = nix::unistd::sethostname(&hostname) {
        say(&format!("hostname: {e}"));
    }
    match hermes_runtime::tls::ensure_self_signed(&data, &hostname) {
        Ok(true) => say(&format!("tls: created a self-signed certificate for {hostname}")),
        Ok(false) => {}
        Err(e) => say(&format!("tls: {e}")),
    }
    // The directory's folders exist before ownership is applied: services only read it and
    // cannot create them (Directory::open creates what is missing).
    if let Err(e) = hermes_core::directory::Directory::open(&data) {
        say(&format!("directory: {e}"));
    }
    if manifest.as_ref().is_some_and(|m| m.service("admin").is_some()) {
        admin_setup_notice(&data);
    }
    if let Some(m) = &manifest {
        for p in services::apply_ownership(m, &data) {
            say(&format!("data: {p}"));
        }
    }

    let t = Instant::now();
    for line in net::bring_up(&data.config_dir().join("network.toml"), &hostname) {
        say(&format!("network: {line}"));
    }
    say(&format!("network: up in {} ms", t.elapsed().as_millis()));
    start_watchdog();

    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().max_blocking_threads(2).build() {
        Ok(r) => r,
        Err(e) => {
            say(&format!("cannot start the runtime: {e}; rebooting"));
            return Halt::Reboot;
        }
    };
    let halt = runtime.block_on(serve(manifest, data, started, ram));
    // The console reader blocks in read(2) on a thread of its own; dropping the runtime would
    // wait for it forever.
    runtime.shutdown_background();
    halt
}

/// First boot of the admin UI: while no admin account exists, a fresh one-time setup token is
/// issued (stored hashed by the admin service's store) and shown on the console only: it is a
/// credential, so it goes neither to the log file nor to the ring buffer.
fn admin_setup_notice(data: &DataDir) {
    use std::io::Write;
    match hermes_svc_admin::admins::issue_setup_token(data) {
        Ok(Some(token)) => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "hermes: no admin account yet. Open https://<this box>:8443/setup and enter this one-time token\n\
                 hermes: (valid {} hours, until the first admin is created; a reboot issues a new one):\n\
                 hermes: admin setup token: {token}",
                hermes_svc_admin::admins::SETUP_TOKEN_TTL_SECS / 3600
            );
            let _ = out.flush();
        }
        Ok(None) => {}
        Err(e) => say(&format!("admin: cannot issue the setup token: {e}")),
    }
}

/// Says on the console why the mail services do not start on a RAM-backed `/data` and how to
/// provision the disks.
fn ram_notice(manifest: &Manifest, why: &str) {
    let held: Vec<&str> =
        manifest.services.iter().filter(|s| !manifest.runs(&s.name, true)).map(|s| s.name.as_str()).collect();
    let runs: Vec<&str> =
        manifest.services.iter().filter(|s| manifest.runs(&s.name, true)).map(|s| s.name.as_str()).collect();
    if held.is_empty() {
        return;
    }
    say(&format!(
        "/data is RAM ({why}): the mail services ({}) are not started: mail accepted now would be lost at the next boot",
        held.join(", ")
    ));
    say(&format!(
        "only {} run; to provision the disks: the admin UI's Disks page (https://<this box>:8443) shows the bays and provisions them, or on this console `hermes hw status`, then `hermes hw provision --level raid10 --bays 0-15 --spares 2 --yes` (your bays), and `reboot`",
        if runs.is_empty() { "init".to_string() } else { runs.join(", ") }
    ));
}

fn ram_data() {
    if let Err(e) = mounts::mount_ram_data(Path::new(DATA)) {
        say(&format!("/data: cannot mount RAM: {e}"));
    }
}

/// Feeds `/dev/watchdog` from a small thread, if the hardware (or softdog) has one.
fn start_watchdog() {
    use std::io::Write;
    let Ok(mut dev) = std::fs::OpenOptions::new().write(true).open("/dev/watchdog") else { return };
    say(&format!("watchdog: fed every {} s", WATCHDOG_INTERVAL.as_secs()));
    let _ = std::thread::Builder::new().name("watchdog".into()).stack_size(32 * 1024).spawn(move || {
        loop {
            let _ = dev.write_all(b"\0");
            let _ = dev.flush();
            std::thread::sleep(WATCHDOG_INTERVAL);
        }
    });
}

/// Watches `/dev/input/event*` for the ACPI power button (EV_KEY KEY_POWER press) and asks for
/// a poweroff: QEMU's `system_powerdown` and a real box's button.
fn watch_power_button(halt: mpsc::UnboundedSender<Halt>) {
    use std::io::Read;
    const EV_KEY: u16 = 1;
    const KEY_POWER: u16 = 116;
    let Ok(dir) = std::fs::read_dir("/dev/input") else { return };
    for entry in dir.flatten() {
        let path = entry.path();
        if !path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("event")) {
            continue;
        }
        let Ok(mut f) = std::fs::File::open(&path) else { continue };
        let halt = halt.clone();
        let _ = std::thread::Builder::new().name("power-button".into()).stack_size(32 * 1024).spawn(move || {
            // struct input_event on 64-bit: timeval (16), type u16, code u16, value i32.
            let mut ev = [0u8; 24];
            while f.read_exact(&mut ev).is_ok() {
                let kind = u16::from_ne_bytes([ev[16], ev[17]]);
                let code = u16::from_ne_bytes([ev[18], ev[19]]);
                let value = i32::from_ne_bytes([ev[20], ev[21], ev[22], ev[23]]);
                if kind == EV_KEY && code == KEY_POWER && value == 1 {
                    say("power button pressed");
                    let _ = halt.send(Halt::Poweroff);
                }
            }
        });
    }
}

/// Runs the services, the console and the signal handlers until something asks to halt; then
/// stops everything in order.
async fn serve(manifest: Option<Manifest>, data: DataDir, started: Instant, ram: Option<String>) -> Halt {
    use tokio::signal::unix::{SignalKind, signal};
    let reaper = Arc::new(reaper::Reaper::default());
    tokio::spawn(reaper.clone().run());
    let (halt_tx, mut halt_rx) = mpsc::unbounded_channel::<Halt>();
    watch_power_button(halt_tx.clone());

    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/bin/hermes"));
    let manifest = manifest.unwrap_or(Manifest {
        image: hermes_core::manifest::ImageSpec {
            hostname: "hermes".into(),
            modules: vec![],
            optional_modules: vec![],
        },
        services: vec![],
        init: Default::default(),
    });
    let order = manifest.start_order().unwrap_or_default();
    let sup = services::Supervisor::new(manifest, data.clone(), exe.clone(), reaper.clone(), started, ram);
    // One stop signal per service, so shutdown stops them one at a time in reverse order.
    let tasks: Vec<_> = order
        .iter()
        .map(|&i| {
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            (stop_tx, tokio::spawn(services::supervise(sup.clone(), i, stop_rx)))
        })
        .collect();

    tokio::spawn(console_loop(sup.clone(), halt_tx.clone()));
    let started_at = chrono::Utc::now().timestamp() - started.elapsed().as_secs() as i64;
    tokio::spawn(control::serve(sup.clone(), started_at, halt_tx.clone()));
    // Time: SNTP against network.toml's `ntp` servers or DHCP's (steps the clock at boot).
    tokio::spawn(ntp::run(data.config_dir().join("network.toml")));
    let trial = trial::TrialConfig::load(&data.config_dir().join("firmware.toml"));
    tokio::spawn(trial::watch(sup.clone(), trial, started, halt_tx.clone()));

    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    let mut usr2 = signal(SignalKind::user_defined2()).ok();
    let mut pwr = signal(SignalKind::from_raw(libc::SIGPWR)).ok();
    async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
        match s {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    }
    let halt = tokio::select! {
        _ = next(&mut term) => { say("SIGTERM: rebooting"); Halt::Reboot }
        _ = next(&mut int) => { say("Ctrl-Alt-Del: rebooting"); Halt::Reboot }
        _ = next(&mut usr2) => { say("SIGUSR2: powering off"); Halt::Poweroff }
        _ = next(&mut pwr) => { say("SIGPWR: powering off"); Halt::Poweroff }
        h = halt_rx.recv() => h.unwrap_or(Halt::Reboot),
    };
    say("stopping services");
    for (stop_tx, task) in tasks.into_iter().rev() {
        let _ = stop_tx.send(true);
        let _ = task.await;
    }
    let _ = std::fs::remove_file(data.endpoints_file());
    let _ = std::fs::remove_file(data.control_socket());
    // Anything left (orphans of services) gets SIGTERM, then SIGKILL.
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(-1), nix::sys::signal::Signal::SIGTERM);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(-1), nix::sys::signal::Signal::SIGKILL);
    reaper.reap();
    halt
}

/// A KiB field of PID 1's /proc/self/status (`VmRSS:` all resident memory, including the
/// shared pages of the executable; `RssAnon:` what is ours alone).
pub fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Reads console lines (on a blocking thread) and runs them.
async fn console_loop(sup: Arc<services::Supervisor>, halt: mpsc::UnboundedSender<Halt>) {
    let (tx, mut rx) = mpsc::channel::<String>(16);
    let echo_off = console::disable_echo();
    tokio::task::spawn_blocking(move || {
        let stdin = std::io::stdin();
        let mut line = String::new();
        loop {
            line.clear();
            match std::io::BufRead::read_line(&mut stdin.lock(), &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if tx.blocking_send(line.trim_end_matches(['\r', '\n']).to_string()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let _ = echo_off;
    while let Some(line) = rx.recv().await {
        match console::parse(&line) {
            console::Line::Empty => {}
            console::Line::Status => {
                for s in sup.statuses() {
                    if s.state == services::State::NotStarted {
                        say(&format!("{:<10} {}", s.name, sup.not_started_reason()));
                        continue;
                    }
                    say(&format!(
                        "{:<10} {:<9} pid {:<7} restarts {}{}",
                        s.name,
                        s.state.name(),
                        s.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                        s.restarts,
                        s.last_exit.map(|e| format!(" (last: {e})")).unwrap_or_default()
                    ));
                }
                for (k, v) in sup.endpoints() {
                    say(&format!("  {k:<12} {v}"));
                }
                say(&format!(
                    "init: pid 1, memory {} KiB resident ({} KiB private)",
                    status_kib("VmRSS:").unwrap_or(0),
                    status_kib("RssAnon:").unwrap_or(0)
                ));
                say("console: ok");
            }
            console::Line::Log => {
                for l in log::recent() {
                    println!("{l}");
                }
                say("console: ok");
            }
            console::Line::Poweroff => {
                say("console: ok");
                let _ = halt.send(Halt::Poweroff);
            }
            console::Line::Reboot => {
                say("console: ok");
                let _ = halt.send(Halt::Reboot);
            }
            console::Line::Firmware(cmd) => firmware_console(cmd, &halt).await,
            console::Line::Hermes { args, stdin_line } => {
                let input = if stdin_line { rx.recv().await } else { None };
                run_cli(&sup, &args, input).await;
            }
            console::Line::Unknown(word) => {
                say(&format!(
                    "console: failed (unknown command `{word}`; try status, log, poweroff, reboot, hermes domain|account|deliver|queue|firmware ...)"
                ));
            }
        }
    }
}

/// A console `hermes firmware ...`, run by init itself (it owns the ESP and the reboot).
async fn firmware_console(cmd: console::Firmware, halt: &mpsc::UnboundedSender<Halt>) {
    match cmd {
        console::Firmware::Status { json } => match control::firmware_status().await {
            Ok(s) if json => {
                println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
                say("console: ok");
            }
            Ok(s) => {
                for l in firmware::render(&s).lines() {
                    say(&format!("firmware: {l}"));
                }
                say("console: ok");
            }
            Err(e) => say(&format!("console: failed ({e})")),
        },
        console::Firmware::MarkGood => match control::firmware_mark_good().await {
            Ok(Some(name)) => {
                say(&format!("firmware: the running slot is now {name} (good)"));
                say("console: ok");
            }
            Ok(None) => {
                say("firmware: the running slot is already good");
                say("console: ok");
            }
            Err(e) => say(&format!("console: failed ({e})")),
        },
        console::Firmware::Install { path, force, reboot } => {
            say(&format!("firmware: verifying the bundle on {path}"));
            match control::firmware_install(PathBuf::from(&path), force).await {
                Ok(done) => {
                    if !done.removed.is_empty() {
                        say(&format!("firmware: removed the old slot {}", done.removed.join(", ")));
                    }
                    if let Some(d) = &done.demoted {
                        say(&format!("firmware: the running slot is kept as the fallback {d}"));
                    }
                    say(&format!(
                        "firmware: installed {} as {} ({} tries){}",
                        done.version,
                        done.file,
                        firmware::TRIES,
                        if reboot { "; rebooting into it" } else { "; it boots at the next reboot" }
                    ));
                    say("console: ok");
                    if reboot {
                        let _ = halt.send(Halt::Reboot);
                    }
                }
                Err(e) => say(&format!("console: failed (firmware install refused: {e})")),
            }
        }
    }
}

/// Runs `hermes --data /data ARGS` as root with `input` on its standard input, prints what it
/// said, and re-applies the data folder's ownership.
async fn run_cli(sup: &services::Supervisor, args: &[String], input: Option<String>) {
    use tokio::io::AsyncReadExt;
    let mut cmd = std::process::Command::new(&sup.exe);
    cmd.arg("--data")
        .arg(sup.data.root())
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let (mut child, exited) = match sup.reaper.spawn(&mut cmd) {
        Ok(c) => c,
        Err(e) => {
            say(&format!("console: failed ({e})"));
            return;
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        if let Some(text) = input {
            let _ = writeln!(stdin, "{text}");
        }
    }
    let mut output = Vec::new();
    for fd in [child.stdout.take().map(std::os::fd::OwnedFd::from), child.stderr.take().map(std::os::fd::OwnedFd::from)]
        .into_iter()
        .flatten()
    {
        if let Ok(mut rx) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) {
            let mut buf = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(120), (&mut rx).take(1 << 20).read_to_end(&mut buf)).await;
            output.extend_from_slice(&buf);
        }
    }
    let status = tokio::time::timeout(Duration::from_secs(120), exited).await;
    for line in String::from_utf8_lossy(&output).lines() {
        println!("{line}");
    }
    for p in services::apply_ownership(&sup.manifest, &sup.data) {
        say(&format!("data: {p}"));
    }
    match status {
        Ok(Ok(s)) if s.success() => say("console: ok"),
        Ok(Ok(s)) => say(&format!("console: failed ({})", child::describe_exit(s))),
        _ => say("console: failed (no exit status)"),
    }
}
