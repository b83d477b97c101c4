//! Update and rollback on the disk image under UEFI (OVMF, systemd-boot, TCG): the same box (one
//! boot disk kept across boots) is
//!
//! 1. booted from `target/image/hermes.img`: slot A is on trial and init marks it good once the
//!    services stay healthy;
//! 2. handed a corrupt bundle on the console (refused, nothing written: the slots are unchanged);
//!    then a newer signed bundle (`V.1`) on a raw read-only disk, with QEMU killed 1.2 s into its
//!    console install (a power cut): the box boots again (the old slot, or `V.1` if the cut came
//!    after its rename, which then goes through its trial);
//! 3. updated through the admin UI over HTTPS (forwarded guest port 8443), as an admin would:
//!    the first-boot setup with the one-time token the box printed on its console, then the API
//!    refuses a corrupt bundle (422, init's reason) and a wrong password (403), and the Firmware
//!    page's form uploads `V.2` with "reboot into it now": the page says which slot was written
//!    and that the box reboots; the box reboots into `V.2`, which runs and is marked good, with
//!    the previous slot kept as the fallback;
//! 4. handed a newer bundle (`V.3`) whose UKI's command line carries `hermes.test_fail=admin`
//!    (init then never starts the admin UI, as if it crashed at every start): each boot of it
//!    fails its trial and reboots, systemd-boot counts the three tries down, and the box comes
//!    back on `V.2` by itself, which `firmware status` shows running with the failed one `bad`.
//!
//! The box has no data disks: `/data` is RAM and only the admin UI and hw run (the store and
//! the router are not started there, so they take no part in the trial): the trial and
//! `hermes: ready` count the admin UI, which is why the failing bundle breaks that one. RAM
//! `/data` also means every boot starts with no admin account and prints a new setup token.
//!
//! The bundles are built here from the last `cargo xtask image` (its kernel, initramfs and
//! command line in `target/image`, systemd's stub in `target/image-cache`) and signed with the
//! image's signing key (`HERMES_SIGNING_KEY` or the development key in `target/image-keys`),
//! exactly as `cargo xtask bundle` does. The HTTPS client is curl (`-k`: the box's certificate
//! is self-signed at its first boot, and the test has no other channel to learn it).
//!
//! Run: `cargo xtask image`, then
//! `HERMES_QEMU_TESTS=1 cargo test -p hermes-qemu --test firmware -- --ignored --nocapture`.
//! Logs stay in `target/qemu/test-firmware/` (one folder per boot; the admin UI's answers in
//! `admin/`); boot times are printed and written to `boot-times.txt` there. QEMU runs with
//! `-no-reboot`, so every guest reboot ends QEMU and the test boots the same disk again.

#![allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]

use hermes_image::bundle::{self, SigningKey};
use hermes_qemu::{BootConfig, Machine};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Power-on to `hermes: ready` under OVMF and TCG, with room for a busy machine.
const READY_TIMEOUT: Duration = Duration::from_secs(240);
/// The trial's grace period (30 s) plus slack.
const MARK_GOOD_TIMEOUT: Duration = Duration::from_secs(150);
/// A failing trial reboots when the admin UI reaches its start limit (~31 s of backoff) or at the
/// 120 s deadline; plus the boot.
const FAILED_TRIAL_TIMEOUT: Duration = Duration::from_secs(420);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn signing_key() -> SigningKey {
    let path = std::env::var_os("HERMES_SIGNING_KEY")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/image-keys/signing.key"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask image` first)", path.display()));
    SigningKey::from_hex(&text).unwrap()
}

/// The image's version and kernel release from `target/image/build.json`.
fn build_info() -> (String, String) {
    let text = std::fs::read_to_string(root().join("target/image/build.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    (v["version"].as_str().unwrap().to_string(), v["kernel"].as_str().unwrap().to_string())
}

/// A signed bundle of `version` from the last image build, with `extra` on its command line:
/// the bundle file's bytes (as `cargo xtask bundle` writes them, and as the admin UI takes them).
fn make_bundle(version: &str, extra: &str) -> Vec<u8> {
    let image = root().join("target/image");
    let (_, uname) = build_info();
    let stub =
        std::fs::read(root().join("target/image-cache/root/usr/lib/systemd/boot/efi/linuxx64.efi.stub")).unwrap();
    let linux = std::fs::read(image.join("vmlinuz")).unwrap();
    let initrd = std::fs::read(image.join("initramfs.cpio.zst")).unwrap();
    let cmdline = std::fs::read_to_string(image.join("cmdline")).unwrap();
    let cmdline = format!("{} {extra}", cmdline.trim()).trim().to_string();
    let uki = hermes_image::uki::build(&hermes_image::uki::UkiInputs {
        stub: &stub,
        version,
        cmdline: &cmdline,
        uname: &uname,
        linux: &linux,
        initrd: &initrd,
    })
    .unwrap();
    bundle::create(&signing_key(), version, 1_704_067_200, &uki).unwrap()
}

/// `bundle` as a raw disk: whole sectors (the header says where the bundle ends).
fn write_disk(bundle: &[u8], out: &Path) {
    let mut b = bundle.to_vec();
    b.resize(b.len().div_ceil(512) * 512, 0);
    std::fs::write(out, b).unwrap();
}

struct Boxed {
    dir: PathBuf,
    disk: PathBuf,
    disks: Vec<PathBuf>,
    boots: usize,
    times: Vec<String>,
}

impl Boxed {
    /// Boots the box (its kept boot disk) with the bundle disks attached read-only.
    fn boot(&mut self) -> Machine {
        self.boots += 1;
        let run = self.dir.join(format!("boot{}", self.boots));
        let _ = std::fs::remove_dir_all(&run);
        let mut cfg = BootConfig::uefi(root().join("target/image/hermes.img"), run).with_boot_disk(self.disk.clone());
        cfg.forwards.push(("admin".into(), 8443));
        for d in &self.disks {
            cfg = cfg.attach_disk(d.clone(), true);
        }
        Machine::boot(&cfg).unwrap()
    }

    fn ready(&mut self, m: &mut Machine, what: &str) {
        m.wait_for_line("hermes: ready", READY_TIMEOUT).unwrap();
        let line = format!(
            "boot {} ({what}): `hermes: ready` {:.1} s after QEMU started",
            self.boots,
            m.uptime().as_secs_f64()
        );
        eprintln!("{line}");
        self.times.push(line);
        std::fs::write(self.dir.join("boot-times.txt"), self.times.join("\n") + "\n").unwrap();
    }
}

/// What a guest reboot does to this QEMU (QMP `set-action`): `reset` keeps the same machine
/// going, `shutdown` ends QEMU as `-no-reboot` does.
fn reboot_action(m: &Machine, action: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match m.qmp(serde_json::json!({"execute": "set-action", "arguments": {"reboot": action}})) {
            Ok(_) => return,
            Err(e) if std::time::Instant::now() > deadline => panic!("QMP set-action reboot={action}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// `hermes firmware status` on the console: the running version and each slot's line.
fn firmware_status(m: &mut Machine) -> (String, Vec<String>) {
    m.send_line("hermes firmware status").unwrap();
    let running = m.wait_for_line("hermes: firmware: running", Duration::from_secs(60)).unwrap();
    let mut slots = Vec::new();
    loop {
        let (which, line) = m
            .wait_for_any(
                &["hermes: firmware: ", "hermes: console: ok", "hermes: console: failed"],
                Duration::from_secs(60),
            )
            .unwrap();
        match which {
            0 if line.contains(".efi") => slots.push(line),
            0 => {}
            1 => break,
            _ => panic!("firmware status failed: {line}"),
        }
    }
    let version = running.split("running ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap_or("").to_string();
    (version, slots)
}

fn slot<'a>(slots: &'a [String], version: &str) -> &'a str {
    slots
        .iter()
        .find(|l| l.contains(&format!("hermes-{version}")))
        .map(String::as_str)
        .unwrap_or_else(|| panic!("no slot {version} in {slots:?}"))
}

/// The admin UI over HTTPS through the forwarded port, driven by curl with a cookie jar, like a
/// browser: every request other than GET carries this origin's `Origin` header.
struct AdminUi {
    base: String,
    dir: PathBuf,
    requests: usize,
}

/// The admin password the test sets up.
const ADMIN_PW: &str = "firmware-test-admin-pw";

impl AdminUi {
    /// Signs up the first admin with the setup token the box printed on its console this boot.
    fn setup(m: &Machine, dir: PathBuf) -> AdminUi {
        let console = std::fs::read_to_string(m.run_dir().join("console.log")).unwrap();
        let token = console
            .lines()
            .rev()
            .filter_map(|l| l.split("hermes: admin setup token: ").nth(1))
            .find_map(|t| t.split_whitespace().next())
            .expect("the box printed no admin setup token on its console")
            .to_string();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut ui = AdminUi { base: format!("https://127.0.0.1:{}", m.port("admin").unwrap()), dir, requests: 0 };
        let (status, page) = ui.curl("/setup", &[]);
        assert_eq!(status, 200, "{page}");
        let csrf = csrf_of(&page);
        let (status, page) = ui.curl(
            "/setup",
            &[
                "--data-urlencode",
                &format!("csrf={csrf}"),
                "--data-urlencode",
                &format!("token={token}"),
                "--data-urlencode",
                "name=root",
                "--data-urlencode",
                &format!("new_password={ADMIN_PW}"),
                "--data-urlencode",
                &format!("confirm={ADMIN_PW}"),
            ],
        );
        assert_eq!(status, 303, "admin setup failed: {page}");
        ui
    }

    /// One request: the status and the body (kept in `dir` as `N.html`).
    fn curl(&mut self, path: &str, args: &[&str]) -> (u16, String) {
        self.requests += 1;
        let body = self.dir.join(format!("{}.html", self.requests));
        let jar = self.dir.join("cookies.txt");
        let out = std::process::Command::new("curl")
            .args(["-sS", "-k", "--max-time", "900", "-o"])
            .arg(&body)
            .args(["-w", "%{http_code}", "-c"])
            .arg(&jar)
            .arg("-b")
            .arg(&jar)
            .args(["-H", &format!("Origin: {}", self.base)])
            .args(args)
            .arg(format!("{}{path}", self.base))
            .output()
            .expect("curl is not installed");
        assert!(out.status.success(), "curl {path}: {}", String::from_utf8_lossy(&out.stderr));
        let status = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        (status, std::fs::read_to_string(&body).unwrap_or_default())
    }

    /// The session's CSRF token, from the Firmware page.
    fn csrf(&mut self) -> String {
        let (status, page) = self.curl("/firmware", &[]);
        assert_eq!(status, 200, "{page}");
        assert!(page.contains("action=\"/firmware/upload\""), "no upload form: {page}");
        csrf_of(&page)
    }

    /// `POST /api/firmware` with the session (and its CSRF header): status and JSON.
    fn api_upload(&mut self, file: &Path, password: &str) -> (u16, serde_json::Value) {
        let csrf = self.csrf();
        let (status, body) = self.curl(
            "/api/firmware?reboot=0",
            &[
                "-H",
                &format!("X-CSRF-Token: {csrf}"),
                "-H",
                &format!("X-Hermes-Password: {password}"),
                "-H",
                "Content-Type: application/octet-stream",
                "--data-binary",
                &format!("@{}", file.display()),
            ],
        );
        (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}")))
    }

    /// The Firmware page's form: password, "reboot into it now", then the file.
    fn form_upload(&mut self, file: &Path) -> (u16, String) {
        let csrf = self.csrf();
        self.curl(
            "/firmware/upload",
            &[
                "-F",
                &format!("csrf={csrf}"),
                "-F",
                &format!("password={ADMIN_PW}"),
                "-F",
                "reboot=1",
                "-F",
                &format!("bundle=@{};type=application/octet-stream", file.display()),
            ],
        )
    }
}

fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").unwrap_or_else(|| panic!("no csrf field: {page}")) + 19;
    page[at..].split('"').next().unwrap().to_string()
}

#[test]
#[ignore = "boots QEMU under UEFI for several minutes: HERMES_QEMU_TESTS=1 ... -- --ignored"]
fn update_marks_good_and_a_failing_update_rolls_back() {
    if std::env::var("HERMES_QEMU_TESTS").as_deref() != Ok("1") {
        eprintln!("firmware test not run: set HERMES_QEMU_TESTS=1 after `cargo xtask image` (scripts/test.sh does)");
        return;
    }
    assert!(hermes_qemu::qemu_available(), "qemu-system-x86_64 is not installed");
    let dir = root().join("target/qemu/test-firmware");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (base, _) = build_info();
    let cut = format!("{base}.1");
    let good = format!("{base}.2");
    let failing = format!("{base}.3");
    // /dev/vdb: a newer bundle, installed on the console and cut by a power loss; /dev/vdc: a
    // corrupt one; /dev/vdd: a newer one whose admin UI never starts (the one required service
    // that runs on this disk-less box's RAM /data). The good update is uploaded, not a disk.
    let cut_disk = dir.join("cut.bundle");
    let corrupt_disk = dir.join("corrupt.bundle");
    let failing_disk = dir.join("failing.bundle");
    let cut_bundle = make_bundle(&cut, "");
    write_disk(&cut_bundle, &cut_disk);
    let mut corrupt = cut_bundle.clone();
    let at = corrupt.len() / 2;
    corrupt[at] ^= 0x55;
    write_disk(&corrupt, &corrupt_disk);
    let corrupt_upload = dir.join("corrupt-upload.bundle");
    std::fs::write(&corrupt_upload, &corrupt).unwrap();
    let good_upload = dir.join(format!("hermes-{good}.bundle"));
    std::fs::write(&good_upload, make_bundle(&good, "")).unwrap();
    write_disk(&make_bundle(&failing, "hermes.test_fail=admin"), &failing_disk);
    let mut bx = Boxed {
        dir: dir.clone(),
        disk: dir.join("box.img"),
        disks: vec![cut_disk, corrupt_disk, failing_disk],
        boots: 0,
        times: Vec::new(),
    };

    // 1. First boot: slot A on trial, marked good.
    let mut m = bx.boot();
    m.wait_for_line(&format!("hermes: firmware: slot {base} is on trial"), READY_TIMEOUT).unwrap();
    bx.ready(&mut m, &format!("slot {base}, first boot"));
    m.wait_for_line(&format!("hermes: firmware: slot {base} marked good"), MARK_GOOD_TIMEOUT).unwrap();
    let (running, slots) = firmware_status(&mut m);
    assert_eq!(running, base);
    assert!(slot(&slots, &base).contains("good"), "{slots:?}");

    // 2. A corrupt bundle is refused and nothing changes.
    m.send_line("hermes firmware install /dev/vdc").unwrap();
    let refused = m.wait_for_line("hermes: console: failed", Duration::from_secs(120)).unwrap();
    assert!(refused.contains("corrupt") || refused.contains("signature"), "{refused}");
    let (_, after) = firmware_status(&mut m);
    assert_eq!(after, slots, "a refused bundle changed the ESP");

    // A power cut during an install: QEMU killed while the bundle is read, verified or written.
    m.send_line("hermes firmware install /dev/vdb --no-reboot").unwrap();
    m.wait_for_line("hermes: firmware: verifying the bundle on /dev/vdb", Duration::from_secs(60)).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    m.kill();
    drop(m);
    let mut m = bx.boot();
    // Like a real box, the one after a power cut may reset on its own before it comes up (the
    // boot loader gives up on a slot whose tries it counted): that reset must not end QEMU
    // here. Back to `-no-reboot` once it is up.
    reboot_action(&m, "reset");
    let (which, line) = m
        .wait_for_any(&[&format!("hermes: firmware: slot {cut} is on trial"), "hermes: ready"], READY_TIMEOUT)
        .unwrap();
    let cut_after_rename = which == 0;
    // The slot the box falls back to once the admin UI's update is installed.
    let fallback = if cut_after_rename { cut.clone() } else { base.clone() };
    eprintln!("power cut during the install: the box came back on {fallback}");
    if cut_after_rename {
        // The new slot was complete before the cut: it is tried like any update, and an update
        // is refused while the running slot is on trial, so the admin waits for it.
        bx.ready(&mut m, &format!("slot {cut}, after a power cut that hit after the rename"));
        m.wait_for_line(&format!("hermes: firmware: slot {cut} marked good"), MARK_GOOD_TIMEOUT).unwrap();
    } else {
        assert!(line.contains("hermes: ready"), "{line}");
        bx.times.push(format!(
            "boot {} (slot {base}, after a power cut during the install): `hermes: ready` {:.1} s after QEMU started",
            bx.boots,
            m.uptime().as_secs_f64()
        ));
        let console = std::fs::read_to_string(m.run_dir().join("console.log")).unwrap_or_default();
        if console.contains("left by an interrupted install") {
            eprintln!("power cut: the next boot removed the half-written temporary file");
        }
    }
    reboot_action(&m, "shutdown");
    let (running, before) = firmware_status(&mut m);
    assert_eq!(running, fallback);
    assert!(!before.iter().any(|l| l.contains("install.tmp")), "{before:?}");

    // 3. The update through the admin UI over HTTPS: first-boot setup with the console's token.
    let mut ui = AdminUi::setup(&m, dir.join("admin"));
    let (status, answer) = ui.api_upload(&corrupt_upload, ADMIN_PW);
    assert_eq!(status, 422, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(error.contains("corrupt") || error.contains("signature"), "{error}");
    assert!(!error.contains("/data"), "no path on the box is shown: {error}");
    let (status, answer) = ui.api_upload(&good_upload, "not-the-admin-password");
    assert_eq!(status, 403, "{answer}");
    let (_, after) = firmware_status(&mut m);
    assert_eq!(after, before, "a refused upload changed the ESP");
    let started = std::time::Instant::now();
    let (status, page) = ui.form_upload(&good_upload);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Installed: rebooting") && page.contains(&format!("Hermes {good} was written")), "{page}");
    eprintln!("admin UI: {good} uploaded and installed in {:.1} s", started.elapsed().as_secs_f64());
    m.wait_for_line("hermes: rebooting", Duration::from_secs(120)).unwrap();
    assert!(m.wait_exit(Duration::from_secs(60)).unwrap(), "QEMU did not end at the reboot");
    drop(m);
    let mut m = bx.boot();
    m.wait_for_line(&format!("hermes: firmware: slot {good} is on trial"), READY_TIMEOUT).unwrap();
    bx.ready(&mut m, &format!("slot {good}, after the update from the admin UI"));
    m.wait_for_line(&format!("hermes: firmware: slot {good} marked good"), MARK_GOOD_TIMEOUT).unwrap();
    let (running, slots) = firmware_status(&mut m);
    assert_eq!(running, good);
    assert!(slot(&slots, &good).contains("good") && slot(&slots, &good).contains('*'), "{slots:?}");
    assert!(slot(&slots, &fallback).contains("good"), "the old slot stays as the fallback: {slots:?}");

    // 4. A bundle whose admin UI never starts: three failed tries, then the old slot by itself.
    m.console("hermes firmware install /dev/vdd", &[], Duration::from_secs(300)).unwrap();
    m.wait_for_line("hermes: rebooting", Duration::from_secs(120)).unwrap();
    assert!(m.wait_exit(Duration::from_secs(60)).unwrap(), "QEMU did not end at the reboot");
    drop(m);
    for attempt in 1..=3 {
        let mut m = bx.boot();
        m.wait_for_line(&format!("hermes: firmware: slot {failing} is on trial"), READY_TIMEOUT).unwrap();
        let line =
            m.wait_for_line(&format!("hermes: firmware: slot {failing} on trial:"), FAILED_TRIAL_TIMEOUT).unwrap();
        eprintln!("failing slot, try {attempt}: {line} ({:.1} s after QEMU started)", m.uptime().as_secs_f64());
        assert!(line.contains("admin failed") || line.contains("not all healthy"), "{line}");
        assert!(m.wait_exit(Duration::from_secs(120)).unwrap(), "QEMU did not end at the reboot");
    }
    let mut m = bx.boot();
    bx.ready(&mut m, &format!("slot {good}, after the rollback"));
    let (running, slots) = firmware_status(&mut m);
    assert_eq!(running, good, "{slots:?}");
    assert!(slot(&slots, &failing).contains("bad"), "{slots:?}");
    assert!(slot(&slots, &good).contains("good"), "{slots:?}");
    m.qmp(serde_json::json!({"execute": "system_powerdown"})).unwrap();
    m.wait_for_line("hermes: powering off", Duration::from_secs(90)).unwrap();
    assert!(m.wait_exit(Duration::from_secs(60)).unwrap());
    eprintln!("{}", bx.times.join("\n"));
}
