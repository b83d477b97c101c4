//! The QEMU harness: boots the appliance image built by `cargo xtask image` and gives tests a
//! handle on the running machine.
//!
//! - Two ways to boot ([`Boot`]), both under TCG (this machine has no KVM), q35, virtio-net on
//!   user networking:
//!   - direct kernel boot (`-kernel target/image/vmlinuz -initrd target/image/initramfs.cpio.zst`),
//!     the fastest ([`BootConfig::mail_ports`]);
//!   - UEFI: OVMF's code read-only in pflash, a per-machine copy of its variable store, and a
//!     per-machine copy of the disk image `target/image/hermes.img` on virtio-blk, booted by the
//!     firmware through systemd-boot and the UKI as on a server ([`BootConfig::uefi`]). The copy
//!     can be kept between boots ([`BootConfig::with_boot_disk`]) for reboot and update
//!     scenarios.
//! - Extra raw disk files, read-only or not ([`BootConfig::attach_disk`]): virtio-blk, in order
//!   after the boot disk.
//! - The serial console is QEMU's stdio: every byte is appended to `console.log` in the run
//!   folder, and complete lines are kept for [`Machine::wait_for_line`]; [`Machine::send_line`]
//!   types on it.
//! - Each guest port in [`BootConfig::forwards`] is forwarded from a free port on 127.0.0.1
//!   ([`Machine::port`]).
//! - A QMP socket (`qmp.sock`) for [`Machine::qmp`]: `system_powerdown`, `system_reset`,
//!   `device_del` (pull a disk), `quit`.
//! - Optionally 16 sparse data disks: 8 on AHCI (q35's controller and a second one), 8 NVMe.
//!
//! What it is not: a test framework. It boots, watches and drives one machine; the scenarios
//! are in `tests/`.
//!
//! Invariants: QEMU never outlives its [`Machine`] (killed on drop); the run folder with
//! `console.log`, `qemu.log` and the command line is kept after the run, so a failure can be
//! read afterwards; every wait has a deadline and fails with the last console lines.

pub mod https;

use anyhow::{Context, bail};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The QEMU binary (bookworm-backports' qemu-system-x86).
pub const QEMU: &str = "qemu-system-x86_64";
/// Memory for the guest: the initramfs is unpacked into RAM and `/data` is RAM until disks are
/// provisioned; 1 GiB leaves room for both.
pub const DEFAULT_MEMORY_MB: u32 = 1024;
/// Size of each sparse data disk (nothing is allocated until written).
pub const DATA_DISK_BYTES: u64 = 8 * 1024 * 1024 * 1024;
/// Number of data disks of a full box (design §1: a 4U server with 16 data disks).
pub const DATA_DISKS: usize = 16;
/// Console lines kept in memory for matching (the whole log stays in `console.log`).
const MAX_LINES: usize = 20_000;
/// OVMF's firmware code and its variable-store template, in order of preference: the 4 MiB
/// build (the only one newer Debian packages ship) and the 2 MiB build of Debian 12's package.
pub const OVMF_PAIRS: [(&str, &str); 2] = [
    ("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),
    ("/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"),
];

/// The OVMF code and variables template installed here (package `ovmf`).
pub fn ovmf() -> anyhow::Result<(PathBuf, PathBuf)> {
    OVMF_PAIRS
        .iter()
        .map(|(c, v)| (PathBuf::from(c), PathBuf::from(v)))
        .find(|(c, v)| c.exists() && v.exists())
        .with_context(|| {
            format!("OVMF is not installed (none of {OVMF_PAIRS:?}): apt-get install -t bookworm-backports ovmf")
        })
}

/// How the machine starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// `-kernel`, `-initrd` and `-append` from [`BootConfig::image_dir`].
    Direct,
    /// OVMF boots a disk image.
    Uefi(UefiBoot),
}

/// A UEFI boot: the machine's own boot disk and variable store, made from the image and OVMF's
/// template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UefiBoot {
    /// The disk image built by `cargo xtask image` (`target/image/hermes.img`); never written.
    pub image: PathBuf,
    /// The machine's boot disk (read-write: systemd-boot counts tries on it, updates write it).
    pub disk: PathBuf,
    /// The machine's UEFI variable store.
    pub vars: PathBuf,
    /// Reuse `disk` and `vars` if they exist (the same box booting again); otherwise both are
    /// fresh copies on every boot.
    pub keep: bool,
}

/// An extra raw disk file on virtio-blk (e.g. an update bundle handed to the guest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraDisk {
    pub path: PathBuf,
    pub read_only: bool,
}

/// How to boot.
#[derive(Debug, Clone)]
pub struct BootConfig {
    /// Folder with `vmlinuz`, `initramfs.cpio.zst`, `cmdline` (`target/image`).
    pub image_dir: PathBuf,
    /// Where this run's logs, sockets and disks go (created; kept afterwards).
    pub run_dir: PathBuf,
    pub memory_mb: u32,
    pub cpus: u32,
    /// `(name, guest port)` pairs forwarded from free host ports.
    pub forwards: Vec<(String, u16)>,
    /// Attach [`DATA_DISKS`] blank sparse disks.
    pub data_disks: bool,
    /// Appended to the image's kernel command line (direct boot only: a UKI carries its own).
    pub extra_cmdline: String,
    pub boot: Boot,
    /// Extra raw disks, attached after the boot disk (`/dev/vdb`, `/dev/vdc`, ... under UEFI;
    /// `/dev/vda`, ... under direct boot).
    pub extra_disks: Vec<ExtraDisk>,
}

impl BootConfig {
    /// The appliance's mail ports: IMAP, IMAPS, POP3, POP3S, LMTP, SMTP, submission(s).
    pub fn mail_ports(image_dir: PathBuf, run_dir: PathBuf) -> BootConfig {
        let forwards = [
            ("imap", 143),
            ("imaps", 993),
            ("pop3", 110),
            ("pop3s", 995),
            ("lmtp", 24),
            ("smtp", 25),
            ("submission", 587),
            ("submissions", 465),
        ]
        .into_iter()
        .map(|(n, p)| (n.to_string(), p))
        .collect();
        BootConfig {
            image_dir,
            run_dir,
            memory_mb: DEFAULT_MEMORY_MB,
            cpus: 2,
            forwards,
            data_disks: false,
            extra_cmdline: String::new(),
            boot: Boot::Direct,
            extra_disks: Vec::new(),
        }
    }

    /// UEFI boot of the disk image `image` (`target/image/hermes.img`) with the mail ports
    /// forwarded; the boot disk and variable store are fresh copies in `run_dir` on every boot.
    pub fn uefi(image: PathBuf, run_dir: PathBuf) -> BootConfig {
        let image_dir = image.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut cfg = BootConfig::mail_ports(image_dir, run_dir.clone());
        cfg.boot = Boot::Uefi(UefiBoot {
            image,
            disk: run_dir.join("boot.img"),
            vars: run_dir.join("OVMF_VARS.fd"),
            keep: false,
        });
        cfg
    }

    /// Keeps the UEFI boot disk at `disk` (and its variable store beside it, `DISK.vars`)
    /// across boots: the first boot copies the image there, later boots with the same `disk`
    /// find what the box wrote (boot counting, a new slot, renamed entries). Use a different
    /// `run_dir` per boot to keep each boot's logs. No effect under direct boot.
    pub fn with_boot_disk(mut self, disk: PathBuf) -> BootConfig {
        if let Boot::Uefi(u) = &mut self.boot {
            let mut vars = disk.clone().into_os_string();
            vars.push(".vars");
            u.vars = PathBuf::from(vars);
            u.disk = disk;
            u.keep = true;
        }
        self
    }

    /// Attaches a raw disk file (virtio-blk), read-only or read-write.
    pub fn attach_disk(mut self, path: PathBuf, read_only: bool) -> BootConfig {
        self.extra_disks.push(ExtraDisk { path, read_only });
        self
    }
}

/// Console lines seen so far, shared with the reader thread.
#[derive(Default)]
struct Console {
    lines: Vec<String>,
    /// Lines dropped from the front when [`MAX_LINES`] was passed.
    dropped: usize,
    closed: bool,
}

/// A running machine.
pub struct Machine {
    child: Child,
    stdin: Option<ChildStdin>,
    console: Arc<(Mutex<Console>, Condvar)>,
    ports: BTreeMap<String, u16>,
    qmp_path: PathBuf,
    run_dir: PathBuf,
    started: Instant,
    /// Index of the first console line not yet consumed by a `wait_for_line`.
    cursor: usize,
}

/// A free TCP port on 127.0.0.1 (bound and released; QEMU binds it right after).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Whether QEMU is installed.
pub fn qemu_available() -> bool {
    Command::new(QEMU).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// The QEMU command line for `cfg` with host ports `ports` (without the binary).
pub fn qemu_args(cfg: &BootConfig, ports: &BTreeMap<String, u16>) -> anyhow::Result<Vec<String>> {
    let mut hostfwd = String::new();
    for (name, guest) in &cfg.forwards {
        let Some(host) = ports.get(name) else { continue };
        hostfwd.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
    }
    let qmp = cfg.run_dir.join("qmp.sock");
    let mut args: Vec<String> = vec![
        "-machine".into(),
        "q35".into(),
        "-accel".into(),
        "tcg".into(),
        "-cpu".into(),
        "max".into(),
        "-m".into(),
        cfg.memory_mb.to_string(),
        "-smp".into(),
        cfg.cpus.to_string(),
        "-display".into(),
        "none".into(),
        "-monitor".into(),
        "none".into(),
        "-serial".into(),
        "stdio".into(),
        "-no-reboot".into(),
        "-netdev".into(),
        format!("user,id=net0,hostname=hermes{hostfwd}"),
        "-device".into(),
        "virtio-net-pci,netdev=net0".into(),
        "-device".into(),
        "i6300esb".into(),
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", qmp.display()),
    ];
    match &cfg.boot {
        Boot::Direct => {
            let kernel = cfg.image_dir.join("vmlinuz");
            let initrd = cfg.image_dir.join("initramfs.cpio.zst");
            for f in [&kernel, &initrd] {
                if !f.exists() {
                    bail!("{} is missing: run `cargo xtask image` first", f.display());
                }
            }
            let cmdline = std::fs::read_to_string(cfg.image_dir.join("cmdline")).unwrap_or_default();
            let append = format!("{} {}", cmdline.trim(), cfg.extra_cmdline).trim().to_string();
            args.extend([
                "-kernel".into(),
                kernel.display().to_string(),
                "-initrd".into(),
                initrd.display().to_string(),
            ]);
            args.extend(["-append".into(), append]);
        }
        Boot::Uefi(u) => {
            let (code, _) = ovmf()?;
            args.push("-drive".into());
            args.push(format!("if=pflash,format=raw,unit=0,readonly=on,file={}", code.display()));
            args.push("-drive".into());
            args.push(format!("if=pflash,format=raw,unit=1,file={}", u.vars.display()));
            args.push("-drive".into());
            args.push(format!("if=none,id=boot,file={},format=raw,cache=unsafe", u.disk.display()));
            args.push("-device".into());
            args.push("virtio-blk-pci,drive=boot,bootindex=0,serial=HERMES-BOOT".into());
        }
    }
    for (i, d) in cfg.extra_disks.iter().enumerate() {
        if !d.path.exists() {
            bail!("extra disk {} is missing", d.path.display());
        }
        let ro = if d.read_only { ",readonly=on" } else { "" };
        args.push("-drive".into());
        args.push(format!("if=none,id=x{i},file={},format=raw,cache=unsafe{ro}", d.path.display()));
        args.push("-device".into());
        args.push(format!("virtio-blk-pci,drive=x{i},serial=HERMES-X{i}"));
    }
    if cfg.data_disks {
        args.extend(["-device".into(), "ahci,id=ahci1".into()]);
        for i in 0..DATA_DISKS {
            let file = cfg.run_dir.join(format!("disk{i:02}.img"));
            args.push("-drive".into());
            args.push(format!("if=none,id=d{i},file={},format=raw,cache=unsafe", file.display()));
            args.push("-device".into());
            args.push(match i {
                0..6 => format!("ide-hd,drive=d{i},bus=ide.{i},serial=HERMES{i:02}"),
                6..8 => format!("ide-hd,drive=d{i},bus=ahci1.{},serial=HERMES{i:02}", i - 6),
                _ => format!("nvme,drive=d{i},serial=HERMES{i:02}"),
            });
        }
    }
    Ok(args)
}

impl Machine {
    /// Boots a machine. Returns once QEMU runs; the guest boots in the background.
    pub fn boot(cfg: &BootConfig) -> anyhow::Result<Machine> {
        std::fs::create_dir_all(&cfg.run_dir).with_context(|| format!("cannot create {}", cfg.run_dir.display()))?;
        let mut ports = BTreeMap::new();
        for (name, _) in &cfg.forwards {
            ports.insert(name.clone(), free_port()?);
        }
        if cfg.data_disks {
            for i in 0..DATA_DISKS {
                let f = std::fs::File::create(cfg.run_dir.join(format!("disk{i:02}.img")))?;
                f.set_len(DATA_DISK_BYTES)?;
            }
        }
        if let Boot::Uefi(u) = &cfg.boot {
            prepare_uefi(u)?;
        }
        let qmp_path = cfg.run_dir.join("qmp.sock");
        let _ = std::fs::remove_file(&qmp_path);
        let args = qemu_args(cfg, &ports)?;
        std::fs::write(
            cfg.run_dir.join("qemu.cmdline"),
            format!("{QEMU} {}\n", args.iter().map(|a| format!("'{a}'")).collect::<Vec<_>>().join(" ")),
        )?;
        std::fs::write(cfg.run_dir.join("ports.json"), serde_json::to_string_pretty(&ports)?)?;
        let qemu_log = std::fs::File::create(cfg.run_dir.join("qemu.log"))?;
        let mut child = Command::new(QEMU)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(qemu_log)
            .spawn()
            .with_context(|| format!("cannot start {QEMU} (install qemu-system-x86 from bookworm-backports)"))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let stdin = child.stdin.take();
        let console = Arc::new((Mutex::new(Console::default()), Condvar::new()));
        let log = std::fs::File::create(cfg.run_dir.join("console.log"))?;
        {
            let console = console.clone();
            std::thread::Builder::new()
                .name("qemu-console".into())
                .spawn(move || read_console(stdout, log, &console))?;
        }
        Ok(Machine {
            child,
            stdin,
            console,
            ports,
            qmp_path,
            run_dir: cfg.run_dir.clone(),
            started: Instant::now(),
            cursor: 0,
        })
    }

    /// The host port forwarded to guest service `name`.
    pub fn port(&self, name: &str) -> anyhow::Result<u16> {
        self.ports.get(name).copied().with_context(|| format!("no forward named {name}"))
    }

    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// Time since QEMU started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The last `n` console lines, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        let c = self.console.0.lock().unwrap_or_else(|p| p.into_inner());
        let start = c.lines.len().saturating_sub(n);
        c.lines[start..].join("\n")
    }

    /// Waits for a console line containing `needle` after the last matched one; returns it.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> anyhow::Result<String> {
        self.wait_for_any(&[needle], timeout).map(|(_, l)| l)
    }

    /// Waits for a console line containing any of `needles`; returns `(which, line)`.
    pub fn wait_for_any(&mut self, needles: &[&str], timeout: Duration) -> anyhow::Result<(usize, String)> {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.console;
        let mut c = lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let start = self.cursor.saturating_sub(c.dropped);
            for (i, line) in c.lines.iter().enumerate().skip(start) {
                if let Some(which) = needles.iter().position(|n| line.contains(n)) {
                    self.cursor = c.dropped + i + 1;
                    return Ok((which, line.clone()));
                }
            }
            self.cursor = c.dropped + c.lines.len();
            if c.closed {
                drop(c);
                let qemu_log = std::fs::read_to_string(self.run_dir().join("qemu.log")).unwrap_or_default();
                bail!(
                    "QEMU exited while waiting for {needles:?}; QEMU said: {}; last console lines:\n{}",
                    qemu_log.trim(),
                    self.tail(40)
                );
            }
            let now = Instant::now();
            if now >= deadline {
                drop(c);
                bail!(
                    "no console line with {needles:?} within {} s; last console lines:\n{}",
                    timeout.as_secs(),
                    self.tail(40)
                );
            }
            c = cvar.wait_timeout(c, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Types `line` and Enter on the serial console.
    pub fn send_line(&mut self, line: &str) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("the console is closed")?;
        stdin.write_all(line.as_bytes())?;
        stdin.write_all(b"\n")?;
        stdin.flush()?;
        Ok(())
    }

    /// Runs an init console command (with optional extra input lines, e.g. a password) and
    /// waits for its `hermes: console: ok`; an error with the output on `failed`.
    pub fn console(&mut self, command: &str, input: &[&str], timeout: Duration) -> anyhow::Result<()> {
        self.send_line(command)?;
        for l in input {
            self.send_line(l)?;
        }
        let (which, line) = self.wait_for_any(&["hermes: console: ok", "hermes: console: failed"], timeout)?;
        if which == 1 {
            bail!("console command `{command}` failed: {line}; last lines:\n{}", self.tail(20));
        }
        Ok(())
    }

    /// Sends one QMP command (`{"execute": ...}`) on a fresh connection and returns `return`.
    pub fn qmp(&self, command: serde_json::Value) -> anyhow::Result<serde_json::Value> {
        let stream = UnixStream::connect(&self.qmp_path)
            .with_context(|| format!("cannot connect to {}", self.qmp_path.display()))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut writer = stream;
        let mut line = String::new();
        reader.read_line(&mut line)?; // greeting
        writer.write_all(b"{\"execute\":\"qmp_capabilities\"}\n")?;
        let _ = read_qmp_reply(&mut reader)?;
        writer.write_all(format!("{command}\n").as_bytes())?;
        read_qmp_reply(&mut reader)
    }

    /// Waits for QEMU to exit (the guest powered off); `Ok(true)` if it did within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<bool> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(false)
    }

    /// Kills QEMU now.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes the machine's boot disk and variable store (fresh copies, unless kept and present).
fn prepare_uefi(u: &UefiBoot) -> anyhow::Result<()> {
    let (_, vars_template) = ovmf()?;
    for (from, to) in [(&u.image, &u.disk), (&vars_template, &u.vars)] {
        if u.keep && to.exists() {
            continue;
        }
        if !from.exists() {
            bail!("{} is missing: run `cargo xtask image` first", from.display());
        }
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::copy(from, to).with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}

fn read_qmp_reply(reader: &mut impl BufRead) -> anyhow::Result<serde_json::Value> {
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            bail!("QMP closed the connection");
        }
        let v: serde_json::Value = serde_json::from_str(&line).with_context(|| format!("bad QMP line {line}"))?;
        if let Some(r) = v.get("return") {
            return Ok(r.clone());
        }
        if let Some(e) = v.get("error") {
            bail!("QMP error: {e}");
        }
        // An asynchronous event: keep reading.
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Copies QEMU's stdout (the serial console) to `log` and splits it into lines.
fn read_console(mut out: impl Read, mut log: std::fs::File, console: &(Mutex<Console>, Condvar)) {
    let mut buf = [0u8; 4096];
    let mut partial: Vec<u8> = Vec::new();
    loop {
        let n = match out.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let _ = log.write_all(&buf[..n]);
        partial.extend_from_slice(&buf[..n]);
        let mut new_lines = Vec::new();
        while let Some(pos) = partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = partial.drain(..=pos).collect();
            new_lines.push(clean_line(&line));
        }
        if !new_lines.is_empty() {
            let (lock, cvar) = console;
            let mut c = lock.lock().unwrap_or_else(|p| p.into_inner());
            c.lines.extend(new_lines);
            if c.lines.len() > MAX_LINES {
                let excess = c.lines.len() - MAX_LINES;
                c.lines.drain(..excess);
                c.dropped += excess;
            }
            cvar.notify_all();
        }
    }
    let (lock, cvar) = console;
    let mut c = lock.lock().unwrap_or_else(|p| p.into_inner());
    if !partial.is_empty() {
        c.lines.push(clean_line(&partial));
    }
    c.closed = true;
    cvar.notify_all();
}

/// A console line without its line ending and terminal escape sequences.
pub fn clean_line(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                // CSI: ESC [ params final-byte
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for d in chars.by_ref() {
                        if ('@'..='~').contains(&d) {
                            break;
                        }
                    }
                }
            }
            '\r' | '\n' => {}
            c => out.push(c),
        }
    }
    out
}

impl Machine {
    /// Runs an init console command like [`Machine::console`] and returns the console lines it
    /// printed before `hermes: console: ok` (issue 5's RAID scenario reads `hermes hw` output).
    pub fn console_output(&mut self, command: &str, timeout: Duration) -> anyhow::Result<Vec<String>> {
        let start = {
            let c = self.console.0.lock().unwrap_or_else(|p| p.into_inner());
            c.dropped + c.lines.len()
        };
        self.cursor = self.cursor.max(start);
        self.console(command, &[], timeout)?;
        let c = self.console.0.lock().unwrap_or_else(|p| p.into_inner());
        let from = start.saturating_sub(c.dropped);
        let to = self.cursor.saturating_sub(c.dropped).saturating_sub(1);
        Ok(c.lines.get(from..to).map(<[String]>::to_vec).unwrap_or_default())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn lines_are_cleaned() {
        assert_eq!(clean_line(b"\x1b[?7l\x1b[2Jhermes: ready\r\n"), "hermes: ready");
    }

    #[test]
    fn command_line_has_forwards_disks_and_qmp() {
        let dir = std::env::temp_dir().join(format!("hermes-qemu-args-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["vmlinuz", "initramfs.cpio.zst"] {
            std::fs::write(dir.join(f), b"x").unwrap();
        }
        std::fs::write(dir.join("cmdline"), "console=ttyS0\n").unwrap();
        let mut cfg = BootConfig::mail_ports(dir.clone(), dir.clone());
        cfg.data_disks = true;
        let ports: BTreeMap<String, u16> = [("imaps".to_string(), 40993)].into_iter().collect();
        let args = qemu_args(&cfg, &ports).unwrap();
        let joined = args.join(" ");
        assert!(joined.contains("hostfwd=tcp:127.0.0.1:40993-:993"), "{joined}");
        assert_eq!(args.iter().filter(|a| a.starts_with("nvme,")).count(), 8);
        assert_eq!(args.iter().filter(|a| a.starts_with("ide-hd,")).count(), 8);
        assert!(joined.contains("qmp.sock,server=on,wait=off"));
        assert!(joined.contains("-kernel") && joined.contains("-append console=ttyS0"), "{joined}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn uefi_boot_copies_the_image_keeps_it_when_asked_and_attaches_disks() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("hermes.img");
        std::fs::write(&image, b"image v1").unwrap();
        let extra = dir.path().join("bundle.raw");
        std::fs::write(&extra, b"bundle").unwrap();
        let run = dir.path().join("run1");
        let cfg = BootConfig::uefi(image.clone(), run.clone()).attach_disk(extra.clone(), true);
        let Boot::Uefi(u) = &cfg.boot else { panic!("not UEFI") };
        assert_eq!(u.disk, run.join("boot.img"));
        let Ok((code, vars)) = ovmf() else { panic!("OVMF is not installed: apt-get install ovmf") };
        let args = qemu_args(&cfg, &BTreeMap::new()).unwrap().join(" ");
        assert!(args.contains(&format!("if=pflash,format=raw,unit=0,readonly=on,file={}", code.display())), "{args}");
        assert!(args.contains(&format!("unit=1,file={}", run.join("OVMF_VARS.fd").display())), "{args}");
        assert!(args.contains("virtio-blk-pci,drive=boot,bootindex=0"), "{args}");
        assert!(args.contains(&format!("file={},format=raw,cache=unsafe,readonly=on", extra.display())), "{args}");
        assert!(!args.contains("-kernel"), "{args}");

        // Fresh copies every boot...
        prepare_uefi(u).unwrap();
        assert_eq!(std::fs::read(run.join("boot.img")).unwrap(), b"image v1");
        assert_eq!(std::fs::read(run.join("OVMF_VARS.fd")).unwrap(), std::fs::read(&vars).unwrap());
        std::fs::write(run.join("boot.img"), b"written by the box").unwrap();
        prepare_uefi(u).unwrap();
        assert_eq!(std::fs::read(run.join("boot.img")).unwrap(), b"image v1");
        // ...unless the boot disk is kept.
        let boxdisk = dir.path().join("box.img");
        let kept = BootConfig::uefi(image.clone(), dir.path().join("run2")).with_boot_disk(boxdisk.clone());
        let Boot::Uefi(k) = &kept.boot else { panic!("not UEFI") };
        assert_eq!(k.vars, dir.path().join("box.img.vars"));
        prepare_uefi(k).unwrap();
        std::fs::write(&boxdisk, b"written by the box").unwrap();
        prepare_uefi(k).unwrap();
        assert_eq!(std::fs::read(&boxdisk).unwrap(), b"written by the box");
        assert!(
            qemu_args(&BootConfig::uefi(image, run).attach_disk(dir.path().join("nope"), false), &BTreeMap::new())
                .is_err()
        );
    }
}
