//! Reboot, factory reset and disk provisioning, as the control socket's `reboot`,
//! `factory_reset` and `provision` requests (the admin UI asks them; root on the console may
//! too).
//!
//! - `reboot`: answered, then the ordinary orderly reboot.
//! - `factory_reset`: on disks, a root-owned marker [`MARKER`] is written on `/data` and
//!   fsync'd, then the box reboots; at the next boot, right after `/data` is mounted and before
//!   anything else touches it, init sees the marker, erases every other entry of `/data`
//!   ([`erase`]), syncs and removes the marker last ([`resume_at_boot`]). A power cut in the
//!   middle leaves the marker, so the next boot finishes the job. The disks stay provisioned
//!   (the md array and its file system are kept; only their contents go) and the firmware slots
//!   live on the ESP, which is not touched. On a RAM `/data` the reboot alone erases it.
//! - `provision`: init runs its own executable as a root child, `hermes --data /data hw
//!   provision --level raid10 --bays LIST --spares N [--size-mib M] --yes` (the very command
//!   the console runs), with a deadline ([`PROVISION_TIMEOUT`]) and its output captured
//!   ([`MAX_OUTPUT`]); on success init carries the admin's setup from the RAM `/data` onto
//!   the new array (`carry`: `admin`, `config`, `tls`, `directory`, at most 256 MiB; a failure
//!   is said in the answer's `carry_error` and on the console, and the box reboots anyway) and
//!   the box reboots so `/data` comes up on the new array.
//!
//! What it is not: authorisation. Who may connect is the socket's group (the manifest's
//! `[init] control_clients`); the admin UI re-authenticates its admin and audits before it asks.
//! Every request is said on the console with its caller.
//!
//! Invariants: a request is validated before anything runs or is written; an answer that
//! announces a reboot is sent before the reboot; one provisioning at a time
//! ([`PROVISION_LOCK`]); the reset marker is removed only after everything else is gone and
//! synced.

use crate::Halt;
use crate::control::Caller;
use crate::log::say;
use crate::services::{NOT_PROVISIONED, Supervisor};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::Duration;

/// The factory-reset marker, at the top of `/data` (root's, 0600). Services cannot create it:
/// the top of `/data` is root's.
pub const MARKER: &str = ".factory-reset";
/// Kept by [`erase`]: ext4's `lost+found` (e2fsck wants it where mke2fs made it).
pub const KEEP: &[&str] = &["lost+found"];
/// Longest provisioning: the CLI's own socket timeout for `hw provision` is 900 s; mdadm and
/// mke2fs run under hw's own deadlines inside it.
pub const PROVISION_TIMEOUT: Duration = Duration::from_secs(960);
/// Most output kept from the provisioning command.
pub const MAX_OUTPUT: u64 = 64 * 1024;
/// Most bays a request may name (hw's bay numbers are 0-255).
pub const MAX_BAY: u16 = 255;
/// Largest `size_mib` accepted (4 PiB per disk: far beyond any disk; bounds the number).
pub const MAX_SIZE_MIB: u64 = 1 << 32;
/// One provisioning at a time.
static PROVISION_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Who asked, for the console: `root` or `uid 203 (admin)`.
pub fn caller_name(sup: &Supervisor, caller: Caller) -> String {
    match caller {
        Caller::Root => "root (console)".to_string(),
        Caller::Service { uid } => match sup.manifest.services.iter().find(|s| s.uid == uid) {
            Some(s) => format!("uid {uid} ({})", s.name),
            None => format!("uid {uid}"),
        },
    }
}

fn error(text: impl Into<String>) -> serde_json::Value {
    serde_json::json!({"ok": false, "error": text.into()})
}

/// `{"op":"reboot"}`.
pub fn reboot(sup: &Supervisor, caller: Caller) -> (serde_json::Value, Option<Halt>) {
    say(&format!("control: reboot asked by {}", caller_name(sup, caller)));
    (serde_json::json!({"ok": true, "rebooting": true}), Some(Halt::Reboot))
}

/// `{"op":"factory_reset"}`: the marker on disks, or just a reboot on RAM.
pub fn factory_reset(sup: &Supervisor, caller: Caller) -> (serde_json::Value, Option<Halt>) {
    let who = caller_name(sup, caller);
    if let Some(why) = &sup.ram_data {
        say(&format!("control: factory reset asked by {who}: /data is RAM ({why}); the reboot erases it"));
        return (
            serde_json::json!({"ok": true, "rebooting": true,
                "note": "/data is RAM (the disks are not provisioned): the reboot alone erases everything on it"}),
            Some(Halt::Reboot),
        );
    }
    match write_marker(sup.data.root(), &who) {
        Ok(()) => {
            say(&format!(
                "control: factory reset asked by {who}: marked; everything on /data is erased at the next boot; rebooting"
            ));
            (serde_json::json!({"ok": true, "rebooting": true}), Some(Halt::Reboot))
        }
        Err(e) => {
            say(&format!("control: factory reset asked by {who} failed: cannot write the marker: {e}"));
            (error("the factory reset could not be started (see the console); nothing was erased"), None)
        }
    }
}

/// Writes [`MARKER`] (0600) durably: the file, then the folder.
pub fn write_marker(root: &Path, who: &str) -> std::io::Result<()> {
    let path = root.join(MARKER);
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&path)?;
    let body = serde_json::json!({"asked_at": chrono::Utc::now().to_rfc3339(), "by": who});
    writeln!(f, "{body}")?;
    f.sync_all()?;
    std::fs::File::open(root)?.sync_all()
}

/// Whether a factory reset is pending on `root`: the marker exists, is a regular file and is
/// owned by `owner` (root on the box), so no service could have planted it.
pub fn pending(root: &Path, owner: u32) -> bool {
    std::fs::symlink_metadata(root.join(MARKER)).is_ok_and(|m| m.file_type().is_file() && m.uid() == owner)
}

/// Erases every entry of `root` except [`MARKER`] and [`KEEP`], without following links, then
/// fsyncs `root`. Returns how many top-level entries went. Goes on past an entry it cannot
/// remove and reports them all at the end (the marker stays, so the next boot tries again).
pub fn erase(root: &Path) -> Result<usize, String> {
    let entries = std::fs::read_dir(root).map_err(|e| format!("{}: {e}", root.display()))?;
    let mut removed = 0;
    let mut failed = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                failed.push(e.to_string());
                continue;
            }
        };
        let name = entry.file_name();
        if name == MARKER || KEEP.iter().any(|k| name == *k) {
            continue;
        }
        let path = entry.path();
        // symlink_metadata: a link is removed as a link, never followed.
        let result = match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_dir() => std::fs::remove_dir_all(&path),
            Ok(_) => std::fs::remove_file(&path),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => removed += 1,
            Err(e) => failed.push(format!("{}: {e}", name.to_string_lossy())),
        }
    }
    std::fs::File::open(root).and_then(|d| d.sync_all()).map_err(|e| format!("{}: fsync: {e}", root.display()))?;
    if failed.is_empty() { Ok(removed) } else { Err(failed.join("; ")) }
}

/// Removes the marker and fsyncs `root`: the last step of a reset.
pub fn finish(root: &Path) -> std::io::Result<()> {
    std::fs::remove_file(root.join(MARKER))?;
    std::fs::File::open(root)?.sync_all()
}

/// At boot, right after `/data` is mounted: finishes a pending factory reset (also one a
/// power cut interrupted). Says on the console what it did.
pub fn resume_at_boot(root: &Path) {
    if !pending(root, 0) {
        return;
    }
    say(
        "factory reset: erasing everything on /data (config, accounts, admin users, certificates, mail, queue, logs); the disks stay provisioned",
    );
    let t = std::time::Instant::now();
    match erase(root) {
        Ok(n) => {
            nix::unistd::sync();
            match finish(root) {
                Ok(()) => say(&format!(
                    "factory reset: done in {} ms ({n} entries erased); the box starts as new (first-boot config, admin setup)",
                    t.elapsed().as_millis()
                )),
                Err(e) => say(&format!("factory reset: erased, but the marker could not be removed: {e}")),
            }
        }
        Err(e) => say(&format!("factory reset: not finished ({e}); the next boot tries again")),
    }
}

/// A validated `provision` request: the CLI's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionArgs {
    /// Bays, sorted, as the CLI's list (`0,1,2,...`).
    pub bays: Vec<u16>,
    pub spares: u16,
    pub size_mib: Option<u64>,
}

impl ProvisionArgs {
    /// The arguments after `hermes --data DATA`.
    pub fn argv(&self) -> Vec<String> {
        let list = self.bays.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
        let mut v: Vec<String> = ["hw", "provision", "--level", "raid10", "--bays", &list, "--spares"]
            .into_iter()
            .map(str::to_string)
            .collect();
        v.push(self.spares.to_string());
        if let Some(s) = self.size_mib {
            v.push("--size-mib".into());
            v.push(s.to_string());
        }
        v.push("--yes".into());
        v
    }
}

/// Checks a `provision` request before anything runs: at least four active disks (RAID10),
/// bays 0-255 each named once, a sane size.
pub fn validate_provision(bays: &[u16], spares: u16, size_mib: Option<u64>) -> Result<ProvisionArgs, String> {
    let mut why = Vec::new();
    if bays.is_empty() {
        why.push("no bays given".to_string());
    }
    if let Some(b) = bays.iter().find(|&&b| b > MAX_BAY) {
        why.push(format!("bay {b} does not exist (bays are 0-{MAX_BAY})"));
    }
    let mut sorted = bays.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != bays.len() {
        why.push("a bay is listed twice".to_string());
    }
    let min = hermes_hw::provision::MIN_RAID10_DEVICES;
    let active = sorted.len().saturating_sub(usize::from(spares));
    if !sorted.is_empty() && active < min {
        why.push(format!(
            "RAID10 needs at least {min} active disks: {} bays with {spares} spares leave {active}",
            sorted.len()
        ));
    }
    match size_mib {
        Some(0) => why.push("size_mib must be at least 1".to_string()),
        Some(s) if s > MAX_SIZE_MIB => why.push(format!("size_mib must be at most {MAX_SIZE_MIB}")),
        _ => {}
    }
    if why.is_empty() { Ok(ProvisionArgs { bays: sorted, spares, size_mib }) } else { Err(why.join("; ")) }
}

/// `{"op":"provision",...}`: validates, runs the console's command as a root child, and
/// reboots when it succeeded.
pub async fn provision(
    sup: &Supervisor,
    caller: Caller,
    bays: &[u16],
    spares: u16,
    size_mib: Option<u64>,
) -> (serde_json::Value, Option<Halt>) {
    let who = caller_name(sup, caller);
    let args = match validate_provision(bays, spares, size_mib) {
        Ok(a) => a,
        Err(e) => {
            say(&format!("control: provisioning asked by {who} refused: {e}"));
            return (error(format!("refused: {e}")), None);
        }
    };
    match sup.ram_data.as_deref() {
        None => {
            let e = "/data is already on the disks (provisioned): provisioning again would erase the mail; \
                     a factory reset empties /data but keeps the array";
            say(&format!("control: provisioning asked by {who} refused: {e}"));
            return (error(e), None);
        }
        Some(why) if why != NOT_PROVISIONED => {
            let e = format!(
                "{why}: the disks hold a data volume that did not mount; provisioning would erase it (see the console)"
            );
            say(&format!("control: provisioning asked by {who} refused: {e}"));
            return (error(e), None);
        }
        Some(_) => {}
    }
    let Ok(_guard) = PROVISION_LOCK.try_lock() else {
        return (error("a provisioning is already running"), None);
    };
    let argv = args.argv();
    say(&format!("control: provisioning asked by {who}: hermes {}", argv.join(" ")));
    let (ok, output) = match run_root(sup, &argv, PROVISION_TIMEOUT).await {
        Ok(r) => r,
        Err(e) => {
            say(&format!("control: provisioning failed: {e}"));
            return (error(format!("provisioning could not run: {e}")), None);
        }
    };
    for line in output.lines() {
        say(&format!("provision: {line}"));
    }
    // As the console's `hermes ...`: the root child may have made files under /data.
    for p in crate::services::apply_ownership(&sup.manifest, &sup.data) {
        say(&format!("data: {p}"));
    }
    if !ok {
        say("control: provisioning failed; not rebooting");
        return (error(format!("provisioning failed: {}", output.trim())), None);
    }
    // The admin's setup on the RAM /data goes onto the new array before the reboot.
    let ram = sup.data.root().to_path_buf();
    let carried = match tokio::task::spawn_blocking(move || crate::carry::carry_to_new_volume(&ram)).await {
        Ok(r) => r,
        Err(e) => Err(format!("the copy stopped: {e}")),
    };
    let mut answer = serde_json::json!({"ok": true, "output": output, "rebooting": true});
    match carried {
        Ok(c) => {
            say(&format!("control: provisioning: {}", c.summary()));
            answer["carried"] = serde_json::json!({
                "folders": c.folders, "files": c.files, "dirs": c.dirs, "links": c.links,
                "bytes": c.bytes, "skipped": c.skipped, "summary": c.summary(),
            });
        }
        Err(e) => {
            say(&format!("control: provisioning: the setup made on the RAM /data was NOT carried to the array: {e}"));
            say(&format!("control: provisioning: {CARRY_FAILED}"));
            answer["carry_error"] = serde_json::Value::String(e);
            answer["note"] = serde_json::Value::String(CARRY_FAILED.to_string());
        }
    }
    say("control: provisioning done; rebooting so /data comes up on the array");
    (answer, Some(Halt::Reboot))
}

/// What the admin does when the RAM `/data` could not be carried to the new array.
pub const CARRY_FAILED: &str = "the box still reboots onto the new array, which starts empty: \
    do the first-boot setup again with the new one-time token the console shows, then the \
    configuration, certificate, domains, accounts and API tokens made before provisioning";

/// Runs `EXE --data DATA ARGS` as root (init's own child), with a deadline; returns whether it
/// succeeded and what it printed (stdout then stderr, at most [`MAX_OUTPUT`] bytes each).
async fn run_root(sup: &Supervisor, args: &[String], timeout: Duration) -> Result<(bool, String), String> {
    use tokio::io::AsyncReadExt;
    let mut cmd = std::process::Command::new(&sup.exe);
    cmd.arg("--data")
        .arg(sup.data.root())
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let (mut child, exited) = sup.reaper.spawn(&mut cmd).map_err(|e| e.to_string())?;
    async fn read(fd: Option<std::os::fd::OwnedFd>) -> Vec<u8> {
        let mut buf = Vec::new();
        if let Some(fd) = fd
            && let Ok(mut rx) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd)
        {
            let _ = (&mut rx).take(MAX_OUTPUT).read_to_end(&mut buf).await;
        }
        buf
    }
    let out = child.stdout.take().map(std::os::fd::OwnedFd::from);
    let err = child.stderr.take().map(std::os::fd::OwnedFd::from);
    let work = async {
        let (o, e) = tokio::join!(read(out), read(err));
        (o, e, exited.await)
    };
    match tokio::time::timeout(timeout, work).await {
        Ok((o, e, status)) => {
            let mut text = String::from_utf8_lossy(&o).trim_end().to_string();
            let e = String::from_utf8_lossy(&e);
            if !e.trim().is_empty() {
                text = format!("{text}\n{}", e.trim_end()).trim_start().to_string();
            }
            match status {
                Ok(s) => Ok((
                    s.success(),
                    if s.success() {
                        text
                    } else {
                        format!("{text}\n({})", crate::child::describe_exit(s)).trim_start().to_string()
                    },
                )),
                Err(_) => Ok((false, format!("{text}\n(no exit status)").trim_start().to_string())),
            }
        }
        Err(_) => {
            let _ = child.kill();
            Err(format!("it did not finish within {} s and was stopped", timeout.as_secs()))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    fn tree(root: &Path) {
        for d in [
            "config/history",
            "directory/domains/example.org",
            "store/u1/INBOX",
            "queue",
            "log",
            "admin/accounts",
            "tls",
            "lost+found",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("config/hermes.toml"), "x").unwrap();
        std::fs::write(root.join("store/u1/INBOX/1.eml"), "mail").unwrap();
        std::fs::write(root.join("admin/accounts/root.json"), "{}").unwrap();
        std::fs::write(root.join("tls/key.pem"), "k").unwrap();
        std::fs::write(root.join("lost+found/keep"), "fsck").unwrap();
        std::fs::write(root.join("stray-file"), "x").unwrap();
    }

    /// Everything but the marker and lost+found goes; a link is removed, its target kept.
    #[test]
    fn erase_keeps_only_the_marker_and_lost_found() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("precious"), "keep me").unwrap();
        let root = dir.path();
        tree(root);
        std::os::unix::fs::symlink(outside.path(), root.join("link-out")).unwrap();
        write_marker(root, "test").unwrap();
        let uid = nix::unistd::getuid().as_raw();
        assert!(pending(root, uid));
        assert!(!pending(root, uid + 1), "a marker someone else owns is ignored");
        let n = erase(root).unwrap();
        assert_eq!(n, 9, "config directory store queue log admin tls stray-file link-out");
        let mut left: Vec<String> =
            std::fs::read_dir(root).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(left, [MARKER, "lost+found"]);
        assert!(root.join("lost+found/keep").exists());
        assert_eq!(std::fs::read_to_string(outside.path().join("precious")).unwrap(), "keep me");
        assert!(pending(root, uid), "the marker goes last");
        finish(root).unwrap();
        assert!(!pending(root, uid));
        assert!(!root.join(MARKER).exists());
    }

    /// A power cut in the middle: the marker is still there, and erasing again finishes the job.
    #[test]
    fn erase_resumes_after_an_interrupted_run() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        tree(root);
        write_marker(root, "test").unwrap();
        // Half done: some entries already gone.
        std::fs::remove_dir_all(root.join("store")).unwrap();
        std::fs::remove_dir_all(root.join("config")).unwrap();
        assert!(pending(root, nix::unistd::getuid().as_raw()));
        erase(root).unwrap();
        assert_eq!(erase(root).unwrap(), 0, "nothing left the second time");
        finish(root).unwrap();
        let left: Vec<_> = std::fs::read_dir(root).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, ["lost+found"]);
    }

    fn supervisor(root: &Path, ram: Option<&str>) -> std::sync::Arc<Supervisor> {
        let manifest = hermes_core::manifest::Manifest::parse(include_str!("../../../../image/manifest.toml")).unwrap();
        Supervisor::new(
            manifest,
            hermes_core::paths::DataDir::new(root),
            std::path::PathBuf::from("/bin/false"),
            std::sync::Arc::new(crate::reaper::Reaper::default()),
            std::time::Instant::now(),
            ram.map(str::to_string),
        )
    }

    /// The answers, with who asked; nothing runs for a refused request.
    #[tokio::test]
    async fn answers_refusals_and_the_reset_marker() {
        let dir = tempfile::tempdir().unwrap();
        let admin_uid = 203;
        let caller = Caller::Service { uid: admin_uid };
        // On disks: provisioning is refused; a factory reset writes the marker and reboots.
        let sup = supervisor(dir.path(), None);
        assert!(caller_name(&sup, caller).contains("admin"), "{}", caller_name(&sup, caller));
        let (v, halt) = provision(&sup, caller, &[0, 1, 2, 3], 0, None).await;
        assert_eq!(v["ok"], false);
        assert!(v["error"].as_str().unwrap().contains("already on the disks"), "{v}");
        assert_eq!(halt, None);
        let (v, halt) = reboot(&sup, Caller::Root);
        assert_eq!((v["rebooting"].as_bool(), halt), (Some(true), Some(Halt::Reboot)));
        assert!(!dir.path().join(MARKER).exists());
        let (v, halt) = factory_reset(&sup, caller);
        assert_eq!((v["ok"].as_bool(), v["rebooting"].as_bool(), halt), (Some(true), Some(true), Some(Halt::Reboot)));
        assert!(pending(dir.path(), nix::unistd::getuid().as_raw()));
        // On RAM: the reset is just a reboot (no marker); invalid bays are refused first.
        let ram = tempfile::tempdir().unwrap();
        let sup = supervisor(ram.path(), Some(NOT_PROVISIONED));
        let (v, halt) = factory_reset(&sup, caller);
        assert!(v["note"].as_str().unwrap().contains("RAM"), "{v}");
        assert_eq!(halt, Some(Halt::Reboot));
        assert!(!ram.path().join(MARKER).exists());
        let (v, halt) = provision(&sup, caller, &[0, 1, 2], 0, None).await;
        assert!(v["error"].as_str().unwrap().contains("at least 4 active disks"), "{v}");
        assert_eq!(halt, None);
        // A volume that did not mount is never provisioned over.
        let sup = supervisor(ram.path(), Some("the data volume /dev/md127 did not mount"));
        let (v, _) = provision(&sup, caller, &[0, 1, 2, 3], 0, None).await;
        assert!(v["error"].as_str().unwrap().contains("did not mount"), "{v}");
        // On RAM with blank disks the command runs; here the executable is /bin/false: it fails,
        // the answer says so and there is no reboot.
        let sup = supervisor(ram.path(), Some(NOT_PROVISIONED));
        tokio::spawn(sup.reaper.clone().run());
        let (v, halt) = provision(&sup, Caller::Root, &[0, 1, 2, 3], 0, Some(256)).await;
        assert_eq!(v["ok"], false);
        assert!(v["error"].as_str().unwrap().contains("provisioning failed"), "{v}");
        assert_eq!(halt, None);
    }

    #[test]
    fn provision_requests_are_validated_before_anything_runs() {
        let ok = validate_provision(&[3, 0, 1, 2, 4, 5], 2, Some(256)).unwrap();
        assert_eq!(ok.bays, [0, 1, 2, 3, 4, 5]);
        assert_eq!(
            ok.argv(),
            [
                "hw",
                "provision",
                "--level",
                "raid10",
                "--bays",
                "0,1,2,3,4,5",
                "--spares",
                "2",
                "--size-mib",
                "256",
                "--yes"
            ]
        );
        assert_eq!(
            validate_provision(&[0, 1, 2, 3], 0, None).unwrap().argv().last().map(String::as_str),
            Some("--yes")
        );
        assert!(!validate_provision(&[0, 1, 2, 3], 0, None).unwrap().argv().contains(&"--size-mib".to_string()));
        for (bays, spares, size, why) in [
            (vec![], 0, None, "no bays given"),
            (vec![0, 1, 2], 0, None, "at least 4 active disks"),
            (vec![0, 1, 2, 3, 4, 5], 3, None, "leave 3"),
            (vec![0, 1, 1, 2, 3], 0, None, "listed twice"),
            (vec![0, 1, 2, 300], 0, None, "bay 300 does not exist"),
            (vec![0, 1, 2, 3], 0, Some(0), "size_mib must be at least 1"),
            (vec![0, 1, 2, 3], 0, Some(u64::MAX), "size_mib must be at most"),
            (vec![0, 1, 2, 3], 65535, None, "leave 0"),
        ] {
            let e = validate_provision(&bays, spares, size).unwrap_err();
            assert!(e.contains(why), "{bays:?} {spares} {size:?}: {e}");
        }
    }
}
