//! Update and rollback on the disk image under UEFI (OVMF, systemd-boot, TCG): the same box (one
//! boot disk kept across boots) is
//!
//! 1. booted from `target/image/hermes.img`: slot A is on trial and init marks it good once the
//!    services stay healthy;
//! 2. handed a corrupt bundle (refused, nothing written: the slots are unchanged); then a newer
//!    signed bundle on a raw read-only disk, with QEMU killed 1.2 s into the install (a power
//!    cut): the box boots again (the old slot, or the new one if the cut came after its rename);
//!    then the install again: `hermes firmware install /dev/vdX` writes the new slot and reboots
//!    into it; the new slot runs and is marked good;
//! 3. handed a newer bundle whose UKI's command line carries `hermes.test_fail=admin` (init then
//!    never starts the admin UI, as if it crashed at every start): each boot of it fails its
//!    trial and reboots, systemd-boot counts the three tries down, and the box comes back on the
//!    previous slot by itself, which `firmware status` shows running with the failed one `bad`.
//!
//! The box has no data disks: `/data` is RAM and only the admin UI and hw run (the store and
//! the router are not started there, so they take no part in the trial): the trial and
//! `hermes: ready` count the admin UI, which is why the failing bundle breaks that one.
//!
//! The bundles are built here from the last `cargo xtask image` (its kernel, initramfs and
//! command line in `target/image`, systemd's stub in `target/image-cache`) and signed with the
//! image's signing key (`HERMES_SIGNING_KEY` or the development key in `target/image-keys`),
//! exactly as `cargo xtask bundle` does.
//!
//! Run: `cargo xtask image`, then
//! `HERMES_QEMU_TESTS=1 cargo test -p hermes-qemu --test firmware -- --ignored --nocapture`.
//! Logs stay in `target/qemu/test-firmware/` (one folder per boot); boot times are printed and
//! written to `boot-times.txt` there. QEMU runs with `-no-reboot`, so every guest reboot ends
//! QEMU and the test boots the same disk again.

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

/// A signed bundle of `version` from the last image build, with `extra` on its command line.
fn make_bundle(version: &str, extra: &str, out: &Path) {
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
    let mut b = bundle::create(&signing_key(), version, 1_704_067_200, &uki).unwrap();
    // A raw disk: whole sectors (the header says where the bundle ends).
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
    let good = format!("{base}.1");
    let failing = format!("{base}.2");
    // /dev/vdb: a good newer bundle; /dev/vdc: a corrupt one; /dev/vdd: a newer one whose admin
    // UI never starts (the one required service that runs on this disk-less box's RAM /data).
    let good_disk = dir.join("good.bundle");
    let corrupt_disk = dir.join("corrupt.bundle");
    let failing_disk = dir.join("failing.bundle");
    make_bundle(&good, "", &good_disk);
    let mut corrupt = std::fs::read(&good_disk).unwrap();
    let at = corrupt.len() / 2;
    corrupt[at] ^= 0x55;
    std::fs::write(&corrupt_disk, corrupt).unwrap();
    make_bundle(&failing, "hermes.test_fail=admin", &failing_disk);
    let mut bx = Boxed {
        dir: dir.clone(),
        disk: dir.join("box.img"),
        disks: vec![good_disk, corrupt_disk, failing_disk],
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
    let (which, line) = m
        .wait_for_any(&[&format!("hermes: firmware: slot {good} is on trial"), "hermes: ready"], READY_TIMEOUT)
        .unwrap();
    let cut_after_rename = which == 0;
    eprintln!("power cut during the install: the box came back on {}", if cut_after_rename { &good } else { &base });
    if cut_after_rename {
        // The new slot was complete before the cut: it is tried like any update.
        bx.ready(&mut m, &format!("slot {good}, after a power cut that hit after the rename"));
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
        let (running, after) = firmware_status(&mut m);
        assert_eq!(running, base);
        assert!(!after.iter().any(|l| l.contains("install.tmp")), "{after:?}");
        // The good bundle installs and reboots into the new slot.
        m.console("hermes firmware install /dev/vdb", &[], Duration::from_secs(300)).unwrap();
        m.wait_for_line("hermes: rebooting", Duration::from_secs(120)).unwrap();
        assert!(m.wait_exit(Duration::from_secs(60)).unwrap(), "QEMU did not end at the reboot");
        drop(m);
        m = bx.boot();
        m.wait_for_line(&format!("hermes: firmware: slot {good} is on trial"), READY_TIMEOUT).unwrap();
        bx.ready(&mut m, &format!("slot {good}, after the update"));
    }
    m.wait_for_line(&format!("hermes: firmware: slot {good} marked good"), MARK_GOOD_TIMEOUT).unwrap();
    let (running, slots) = firmware_status(&mut m);
    assert_eq!(running, good);
    assert!(slot(&slots, &good).contains("good") && slot(&slots, &good).contains('*'), "{slots:?}");
    assert!(slot(&slots, &base).contains("good"), "the old slot stays as the fallback: {slots:?}");

    // 3. A bundle whose admin UI never starts: three failed tries, then the old slot by itself.
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
