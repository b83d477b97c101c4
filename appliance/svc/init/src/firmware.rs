//! Firmware slots on the EFI system partition: status, install of a signed bundle, marking the
//! running slot good. Used by init (boot, the trial watch, console and control socket) and by
//! `hermes firmware`.
//!
//! The ESP (mounted at [`ESP_MOUNT`]) holds systemd-boot and the slots as unified kernel images
//! under `EFI/Linux/` with systemd-boot's boot counting:
//!
//! ```text
//! hermes-0.1.0.efi          good: booted and marked good
//! hermes-0.2.0+3.efi        trial: just installed, 3 tries left
//! hermes-0.2.0+2-1.efi      trial: systemd-boot renamed it before its first try
//! hermes-0.2.0+0-3.efi      bad: no tries left; sorted last, so the older slot boots
//! ```
//!
//! systemd-boot boots the first entry: bad ones last, then the highest version. A new slot is
//! written as `hermes-V+3.efi`; each boot of it counts down; init marks it good (drops the
//! counter) once every service stays healthy ([`crate::trial`]); if it never does, the counter
//! reaches 0 and the old slot boots again: the rollback.
//!
//! What it is not: the bundle format (`hermes_image::bundle`) nor the boot loader (systemd-boot
//! renames the entries; this only writes new slots and drops counters).
//!
//! Invariants:
//! - every check (signature, version, which slot runs, space) happens before anything is
//!   written: a refused install leaves the ESP as it was;
//! - the running slot is never removed or overwritten; after an install the ESP holds exactly
//!   the running slot and the new one;
//! - a slot file is complete when it has its `.efi` name: it is written as [`TEMP_NAME`],
//!   fsync'd, renamed to a name that does not exist (FAT cannot replace a file atomically),
//!   and the renamed file and the folder fsync'd right away (`rename_durably`: vfat fills a
//!   renamed entry's size and clusters in only when the file is written back). A power cut at
//!   any point leaves the running slot bootable, but for the instant between a rename and its
//!   fsync (FAT has no atomic rename); a leftover temporary file is removed by [`clean`] (init
//!   runs it at boot).

/// The bundle format (re-exported for `hermes` and its tests).
pub use hermes_image::bundle;
use hermes_image::bundle::{BundleError, PublicKey};
use std::cmp::Ordering;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Where init mounts the ESP.
pub const ESP_MOUNT: &str = "/boot/efi";
/// The slots' folder inside the ESP (systemd-boot's type #2 entries).
pub const SLOT_DIR: &str = "EFI/Linux";
/// Every slot's file name starts with this.
pub const SLOT_PREFIX: &str = "hermes-";
/// Tries a new slot gets.
pub const TRIES: u32 = 3;
/// The temporary file a slot is written to before its rename (not `.efi`: the boot loader
/// ignores it).
pub const TEMP_NAME: &str = "hermes-install.tmp";
/// Room kept free on the ESP beyond the new slot (FAT metadata, the loader's renames).
pub const SPACE_MARGIN: u64 = 1024 * 1024;
/// efivarfs.
pub const EFIVARS: &str = "/sys/firmware/efi/efivars";
/// systemd-boot's vendor GUID for its variables (the Boot Loader Interface).
pub const LOADER_GUID: &str = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";

/// The public key bundles are checked against, built in at compile time: `cargo xtask image`
/// sets `HERMES_UPDATE_PUBKEY` (64 hex digits) for the image's build. Without it every bundle
/// is refused.
pub const BUILT_IN_KEY: Option<&str> = option_env!("HERMES_UPDATE_PUBKEY");

/// Why a firmware operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    #[error("{0}")]
    Bundle(#[from] BundleError),
    #[error(
        "this hermes was built without an update key (HERMES_UPDATE_PUBKEY), so it refuses every bundle; images built with `cargo xtask image` have one"
    )]
    NoKey,
    #[error("the built-in update key is invalid: {0}")]
    BadBuiltInKey(BundleError),
    #[error("bundle version {bundle} is older than the running {running}; refused (--force installs it anyway)")]
    Downgrade { bundle: String, running: String },
    #[error("bundle version {0} is the running version; nothing to install")]
    SameVersion(String),
    #[error("cannot tell which slot is running ({0}); refusing to install (it could remove the running slot)")]
    RunningUnknown(String),
    #[error(
        "the running slot {0} is still on trial (not yet marked good); refused, because installing removes the old slot it would fall back to (--force installs anyway)"
    )]
    RunningOnTrial(String),
    #[error("not enough space on the ESP: the slot needs {need} bytes, {have} are free")]
    NoSpace { need: u64, have: u64 },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0}")]
    Other(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FirmwareError + '_ {
    move |source| FirmwareError::Io { path: path.display().to_string(), source }
}

/// The built-in key, or why there is none.
pub fn trusted_key() -> Result<PublicKey, FirmwareError> {
    let hex = BUILT_IN_KEY.ok_or(FirmwareError::NoKey)?;
    PublicKey::from_hex(hex).map_err(FirmwareError::BadBuiltInKey)
}

/// A slot's state from its boot counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// No counter: marked good.
    Good,
    /// Tries left: not yet marked good.
    Trial,
    /// No tries left: systemd-boot sorts it last.
    Bad,
}

impl Health {
    pub fn name(self) -> &'static str {
        match self {
            Health::Good => "good",
            Health::Trial => "trial",
            Health::Bad => "bad",
        }
    }
}

/// One slot on the ESP.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Slot {
    /// The file name in `EFI/Linux`.
    pub file: String,
    pub version: String,
    pub tries_left: Option<u32>,
    pub tries_done: Option<u32>,
    pub health: Health,
    pub running: bool,
    pub bytes: u64,
}

/// What `firmware status` reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Status {
    pub esp: String,
    /// In the order systemd-boot tries them.
    pub slots: Vec<Slot>,
    /// The running version, if known.
    pub running: Option<String>,
    /// How the running slot was found: `LoaderBootCountPath`, `LoaderEntrySelected` or
    /// `version` (no EFI variables: by the running version).
    pub running_from: Option<String>,
    /// The built-in key's id, `None` when this build refuses every bundle.
    pub key_id: Option<String>,
    /// Temporary files of an interrupted install (removed at the next boot or install).
    pub leftovers: Vec<String>,
}

/// A slot file name: `hermes-VERSION.efi`, `hermes-VERSION+LEFT.efi` or
/// `hermes-VERSION+LEFT-DONE.efi` (case-insensitive, as FAT and systemd-boot are).
pub fn parse_slot_name(name: &str) -> Option<(String, Option<(u32, u32)>)> {
    let lower = name.to_ascii_lowercase();
    let stem = lower.strip_prefix(SLOT_PREFIX)?.strip_suffix(".efi")?;
    let (version, counter) = match stem.rsplit_once('+') {
        Some((v, c)) => {
            let (left, done) = match c.split_once('-') {
                Some((l, d)) => (l.parse().ok()?, d.parse().ok()?),
                None => (c.parse().ok()?, 0),
            };
            if !c.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
                return None;
            }
            (v, Some((left, done)))
        }
        None => (stem, None),
    };
    // The version as written in the file name (case kept; ASCII lowercasing keeps offsets).
    let version = name.get(SLOT_PREFIX.len()..SLOT_PREFIX.len() + version.len())?;
    bundle::valid_version(version).then(|| (version.to_string(), counter))
}

/// How the running slot is identified.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Running {
    /// systemd-boot's `LoaderBootCountPath`: the entry file with its counter, as booted
    /// (`\EFI\Linux\hermes-0.2.0+2-1.efi`).
    pub count_path: Option<String>,
    /// systemd-boot's `LoaderEntrySelected`: the entry id (lowercase; with or without counter).
    pub entry: Option<String>,
    /// The running image's version (`/etc/os-release` `VERSION_ID`), when no variable says more.
    pub version: Option<String>,
}

impl Running {
    /// From efivarfs (`efivars`) and the image's version.
    pub fn detect(efivars: &Path, version: Option<String>) -> Running {
        Running {
            count_path: read_efivar_string(&efivars.join(format!("LoaderBootCountPath-{LOADER_GUID}"))),
            entry: read_efivar_string(&efivars.join(format!("LoaderEntrySelected-{LOADER_GUID}"))),
            version,
        }
    }

    /// On the appliance: the real efivarfs and `/etc/os-release`.
    pub fn here() -> Running {
        Running::detect(Path::new(EFIVARS), image_version())
    }

    /// Which of `slots` is running and how that was found.
    fn find(&self, slots: &[Slot]) -> Option<(usize, &'static str)> {
        if let Some(path) = &self.count_path {
            let file = path.rsplit(['\\', '/']).next().unwrap_or(path);
            if let Some(i) = slots.iter().position(|s| s.file.eq_ignore_ascii_case(file)) {
                return Some((i, "LoaderBootCountPath"));
            }
        }
        if let Some(entry) = &self.entry
            && let Some((version, _)) = parse_slot_name(entry)
            && let Some(i) = slots.iter().position(|s| s.version.eq_ignore_ascii_case(&version))
        {
            return Some((i, "LoaderEntrySelected"));
        }
        if let Some(v) = &self.version {
            let matching: Vec<usize> =
                slots.iter().enumerate().filter(|(_, s)| s.version.eq_ignore_ascii_case(v)).map(|(i, _)| i).collect();
            if let [i] = matching.as_slice() {
                return Some((*i, "version"));
            }
        }
        None
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(p) = &self.count_path {
            parts.push(format!("LoaderBootCountPath {p}"));
        }
        if let Some(e) = &self.entry {
            parts.push(format!("LoaderEntrySelected {e}"));
        }
        if let Some(v) = &self.version {
            parts.push(format!("image version {v}"));
        }
        if parts.is_empty() { "no EFI variables and no image version".into() } else { parts.join(", ") }
    }
}

/// `VERSION_ID` of `/etc/os-release` (the image's), or this build's version.
pub fn image_version() -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    os_release_version(&text).or_else(|| Some(env!("CARGO_PKG_VERSION").to_string()))
}

/// `VERSION_ID=...` from os-release text (quotes removed).
pub fn os_release_version(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_ID="))
        .map(|v| v.trim().trim_matches(['"', '\'']).to_string())
        .filter(|v| !v.is_empty())
}

/// An efivarfs string variable: 4 bytes of attributes, then UTF-16LE up to a NUL.
pub fn parse_efivar_string(bytes: &[u8]) -> Option<String> {
    let data = bytes.get(4..)?;
    if data.len() > 4096 {
        return None;
    }
    let units: Vec<u16> =
        data.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).take_while(|u| *u != 0).collect();
    String::from_utf16(&units).ok().filter(|s| !s.is_empty())
}

fn read_efivar_string(path: &Path) -> Option<String> {
    let mut buf = Vec::new();
    std::fs::File::open(path).ok()?.take(4100).read_to_end(&mut buf).ok()?;
    parse_efivar_string(&buf)
}

fn slot_dir(esp: &Path) -> PathBuf {
    esp.join(SLOT_DIR)
}

/// The slots on `esp`, in the order systemd-boot tries them (bad last, then newest first),
/// with the running one marked.
pub fn slots(esp: &Path, running: &Running) -> Result<Vec<Slot>, FirmwareError> {
    let dir = slot_dir(esp);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
        let entry = entry.map_err(io(&dir))?;
        let Ok(name) = entry.file_name().into_string() else { continue };
        let Some((version, counter)) = parse_slot_name(&name) else { continue };
        let bytes = entry.metadata().map(|m| m.len()).unwrap_or(0);
        let health = match counter {
            None => Health::Good,
            Some((0, _)) => Health::Bad,
            Some(_) => Health::Trial,
        };
        out.push(Slot {
            file: name,
            version,
            tries_left: counter.map(|c| c.0),
            tries_done: counter.map(|c| c.1),
            health,
            running: false,
            bytes,
        });
    }
    out.sort_by(|a, b| {
        (a.health == Health::Bad)
            .cmp(&(b.health == Health::Bad))
            .then_with(|| bundle::version_cmp(&b.version, &a.version))
            .then_with(|| a.file.cmp(&b.file))
    });
    if let Some((i, _)) = running.find(&out) {
        out[i].running = true;
    }
    Ok(out)
}

/// Temporary files an interrupted install left.
fn leftovers(esp: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(slot_dir(esp)) else { return Vec::new() };
    let mut out: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| {
            let l = n.to_ascii_lowercase();
            l.starts_with(SLOT_PREFIX) && l.ends_with(".tmp")
        })
        .collect();
    out.sort();
    out
}

/// Removes the temporary files of an interrupted install; returns their names.
pub fn clean(esp: &Path) -> Vec<String> {
    let names = leftovers(esp);
    let dir = slot_dir(esp);
    let removed: Vec<String> = names.into_iter().filter(|n| std::fs::remove_file(dir.join(n)).is_ok()).collect();
    if !removed.is_empty() {
        let _ = fsync_dir(&dir);
    }
    removed
}

/// `firmware status`.
pub fn status(esp: &Path, running: &Running) -> Result<Status, FirmwareError> {
    let slots = slots(esp, running)?;
    let found = running.find(&slots);
    Ok(Status {
        esp: esp.display().to_string(),
        running: found.map(|(i, _)| slots[i].version.clone()).or_else(|| running.version.clone()),
        running_from: found.map(|(_, how)| how.to_string()),
        slots,
        key_id: trusted_key().ok().map(|k| k.id()),
        leftovers: leftovers(esp),
    })
}

/// Renders a status for people.
pub fn render(s: &Status) -> String {
    let mut out = format!(
        "running {} ({})\n",
        s.running.as_deref().unwrap_or("unknown"),
        s.running_from.as_deref().map_or("no matching slot".to_string(), |h| format!("from {h}"))
    );
    out.push_str(&format!(
        "{:<3} {:<12} {:<6} {:>5} {:>5} {:>10}  FILE\n",
        "", "VERSION", "STATE", "LEFT", "DONE", "BYTES"
    ));
    for slot in &s.slots {
        out.push_str(&format!(
            "{:<3} {:<12} {:<6} {:>5} {:>5} {:>10}  {}\n",
            if slot.running { "*" } else { "" },
            slot.version,
            slot.health.name(),
            slot.tries_left.map_or("-".into(), |n| n.to_string()),
            slot.tries_done.map_or("-".into(), |n| n.to_string()),
            slot.bytes,
            slot.file
        ));
    }
    match &s.key_id {
        Some(k) => out.push_str(&format!("update key: {k}\n")),
        None => out.push_str("update key: none built in (every bundle is refused)\n"),
    }
    for l in &s.leftovers {
        out.push_str(&format!("leftover from an interrupted install: {l} (removed at the next boot)\n"));
    }
    out
}

/// Install options.
#[derive(Debug, Clone, Copy, Default)]
pub struct InstallOptions {
    /// Allow a downgrade, and an install while the running slot is on trial.
    pub force: bool,
}

/// The steps of an install, for [`install_with`]'s hook (tests simulate a power cut by
/// stopping at one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// About to remove an old (not running) slot.
    RemoveOld(String),
    /// About to write the temporary file.
    WriteTemp,
    /// The temporary file is written and fsync'd; about to rename it.
    Rename,
    /// About to demote the running slot (forced downgrade only).
    DemoteRunning(String),
}

/// What an install did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Installed {
    pub version: String,
    pub file: String,
    pub removed: Vec<String>,
    /// The running slot's new name when a forced downgrade demoted it.
    pub demoted: Option<String>,
}

/// Verifies `bundle_bytes` with `key` and installs it on `esp`.
pub fn install(
    esp: &Path,
    bundle_bytes: &[u8],
    key: &PublicKey,
    running: &Running,
    opts: InstallOptions,
) -> Result<Installed, FirmwareError> {
    install_with(esp, bundle_bytes, key, running, opts, &mut |_| Ok(()))
}

/// [`install`] with `hook` called before each step; an error from it stops the install there
/// (as a power cut would).
pub fn install_with(
    esp: &Path,
    bundle_bytes: &[u8],
    key: &PublicKey,
    running: &Running,
    opts: InstallOptions,
    hook: &mut dyn FnMut(&Step) -> std::io::Result<()>,
) -> Result<Installed, FirmwareError> {
    install_steps(esp, bundle_bytes, key, running, opts, hook, None)
}

/// The install; `free` overrides the ESP's free space (tests of the small-ESP order).
fn install_steps(
    esp: &Path,
    bundle_bytes: &[u8],
    key: &PublicKey,
    running: &Running,
    opts: InstallOptions,
    hook: &mut dyn FnMut(&Step) -> std::io::Result<()>,
    free: Option<u64>,
) -> Result<Installed, FirmwareError> {
    // 1. Everything that can refuse, before anything is written.
    let verified = bundle::verify(bundle_bytes, key)?;
    let version = verified.meta.version.clone();
    let slots = slots(esp, running)?;
    let Some((run_i, _)) = running.find(&slots) else {
        return Err(FirmwareError::RunningUnknown(running.describe()));
    };
    let current = &slots[run_i];
    match bundle::version_cmp(&version, &current.version) {
        Ordering::Equal => return Err(FirmwareError::SameVersion(version)),
        Ordering::Less if !opts.force => {
            return Err(FirmwareError::Downgrade { bundle: version, running: current.version.clone() });
        }
        _ => {}
    }
    if current.health != Health::Good && !opts.force {
        return Err(FirmwareError::RunningOnTrial(current.version.clone()));
    }
    let downgrade = bundle::version_cmp(&version, &current.version) == Ordering::Less;
    let old: Vec<&Slot> = slots.iter().filter(|s| !s.running).collect();
    let dir = slot_dir(esp);
    let temp = dir.join(TEMP_NAME);
    let temp_size = std::fs::metadata(&temp).map(|m| m.len()).unwrap_or(0);
    let old_size: u64 = old.iter().map(|s| s.bytes).sum();
    let need = verified.payload.len() as u64 + SPACE_MARGIN;
    let free = match free {
        Some(f) => f,
        None => free_bytes(esp)?,
    };
    if free + old_size + temp_size < need {
        return Err(FirmwareError::NoSpace { need, have: free + old_size + temp_size });
    }
    let file = format!("{SLOT_PREFIX}{version}+{TRIES}.efi");

    // 2. Write. With room for three slots the new one is written before the old is removed;
    // otherwise the old goes first. The running slot stays either way.
    let _ = clean(esp);
    let room_first = free + temp_size >= need;
    let mut removed = Vec::new();
    let mut remove_old = |hook: &mut dyn FnMut(&Step) -> std::io::Result<()>| -> Result<(), FirmwareError> {
        for slot in &old {
            hook(&Step::RemoveOld(slot.file.clone())).map_err(io(&dir))?;
            let path = dir.join(&slot.file);
            std::fs::remove_file(&path).map_err(io(&path))?;
            removed.push(slot.file.clone());
        }
        if !old.is_empty() {
            fsync_dir(&dir)?;
        }
        Ok(())
    };
    if !room_first {
        remove_old(hook)?;
    }
    hook(&Step::WriteTemp).map_err(io(&temp))?;
    if let Err(e) = write_synced(&temp, verified.payload) {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    if room_first && let Err(e) = remove_old(hook) {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    // No slot of this version is left (it is not the running one, and the others are gone):
    // the rename never replaces a file, which FAT could not do atomically.
    let target = dir.join(&file);
    hook(&Step::Rename).map_err(io(&target))?;
    if target.exists() {
        let _ = std::fs::remove_file(&temp);
        return Err(FirmwareError::Other(format!("{} exists; refusing to replace it", target.display())));
    }
    rename_durably(&temp, &target)?;

    // 3. A forced downgrade: systemd-boot boots the highest version first, so the running slot
    // is given 0 tries: sorted last, still there to fall back to (bad entries sort by version
    // among themselves, so if the new slot fails too the running one boots).
    let mut demoted = None;
    if downgrade {
        let name = format!("{SLOT_PREFIX}{}+0.efi", current.version);
        hook(&Step::DemoteRunning(name.clone())).map_err(io(&dir))?;
        let to = dir.join(&name);
        if !to.exists() {
            rename_durably(&dir.join(&current.file), &to)?;
            demoted = Some(name);
        }
    }
    Ok(Installed { version, file, removed, demoted })
}

/// Marks the running slot good (drops its boot counter). `Ok(None)` if it already was.
pub fn mark_good(esp: &Path, running: &Running) -> Result<Option<String>, FirmwareError> {
    let slots = slots(esp, running)?;
    let Some((i, _)) = running.find(&slots) else {
        return Err(FirmwareError::RunningUnknown(running.describe()));
    };
    let slot = &slots[i];
    if slot.health == Health::Good {
        return Ok(None);
    }
    let dir = slot_dir(esp);
    let name = format!("{SLOT_PREFIX}{}.efi", slot.version);
    let to = dir.join(&name);
    if to.exists() {
        return Err(FirmwareError::Other(format!("{} exists; cannot mark {} good", to.display(), slot.file)));
    }
    rename_durably(&dir.join(&slot.file), &to)?;
    Ok(Some(name))
}

/// The running slot's health, if it can be told.
pub fn running_health(esp: &Path, running: &Running) -> Option<(String, Health)> {
    let slots = slots(esp, running).ok()?;
    slots.into_iter().find(|s| s.running).map(|s| (s.version, s.health))
}

fn write_synced(path: &Path, data: &[u8]) -> Result<(), FirmwareError> {
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(path).map_err(io(path))?;
    f.write_all(data).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// Renames `from` to `to` (which does not exist) and makes it stick: on vfat a rename writes
/// the new directory entry with no clusters and size 0 and fills them in only when the file's
/// inode is written back, so the file itself is fsync'd after the rename (found by the QEMU
/// power-cut test: a cut within 30 s of a rename left a 0-byte slot and an unbootable box),
/// then the folder.
fn rename_durably(from: &Path, to: &Path) -> Result<(), FirmwareError> {
    std::fs::rename(from, to).map_err(io(to))?;
    std::fs::File::open(to).and_then(|f| f.sync_all()).map_err(io(to))?;
    if let Some(dir) = to.parent() {
        fsync_dir(dir)?;
    }
    Ok(())
}

fn fsync_dir(dir: &Path) -> Result<(), FirmwareError> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

fn free_bytes(esp: &Path) -> Result<u64, FirmwareError> {
    let st = nix::sys::statvfs::statvfs(esp)
        .map_err(|e| FirmwareError::Io { path: esp.display().to_string(), source: e.into() })?;
    Ok((st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64))
}

/// Reads one bundle from a file or a raw block device (whose size is rounded up past the
/// bundle: the header gives the length). Bounded by [`bundle::MAX_BUNDLE`].
pub fn read_bundle(path: &Path) -> Result<Vec<u8>, FirmwareError> {
    let f = std::fs::File::open(path).map_err(io(path))?;
    read_bundle_from(f, path)
}

/// [`read_bundle`] from a file already open (`path` names it in errors).
pub fn read_bundle_from(mut f: std::fs::File, path: &Path) -> Result<Vec<u8>, FirmwareError> {
    let mut head = vec![0u8; bundle::PREFIX_LEN];
    read_full(&mut f, &mut head).map_err(io(path))?;
    let hlen = bundle::header_len(&head)?;
    head.resize(hlen, 0);
    read_full(&mut f, &mut head[bundle::PREFIX_LEN..]).map_err(io(path))?;
    let total = bundle::total_len(&head)?;
    if total > bundle::MAX_BUNDLE {
        return Err(BundleError::PayloadTooLarge(total).into());
    }
    let mut bytes = head;
    let rest = total - hlen as u64;
    (&mut f).take(rest).read_to_end(&mut bytes).map_err(io(path))?;
    let got = bytes.len() as u64;
    if got < total {
        return Err(BundleError::Truncated { expected: total, got }.into());
    }
    // A regular file is exactly one bundle; a block device may be longer.
    let meta = f.metadata().map_err(io(path))?;
    if meta.is_file() && meta.len() > total {
        return Err(BundleError::TrailingBytes(meta.len() - total).into());
    }
    Ok(bytes)
}

/// Reads exactly `buf.len()` bytes; a short file is a truncated bundle, not an I/O error.
fn read_full(f: &mut impl Read, buf: &mut [u8]) -> std::io::Result<()> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("not an update bundle: it ends after {n} bytes"),
                ));
            }
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;
    use hermes_image::bundle::SigningKey;

    fn key() -> SigningKey {
        SigningKey::from_seed([7; 32])
    }

    fn uki(version: &str) -> Vec<u8> {
        let mut v = format!("MZ fake UKI VERSION_ID={version}\n").into_bytes();
        v.resize(50_000, 0xAB);
        v
    }

    fn bundle(version: &str) -> Vec<u8> {
        bundle::create(&key(), version, 0, &uki(version)).unwrap()
    }

    /// An ESP with `files` in EFI/Linux, each a fake UKI of its version.
    fn esp(files: &[&str]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join(SLOT_DIR)).unwrap();
        std::fs::create_dir_all(d.path().join("loader")).unwrap();
        for f in files {
            let (v, _) = parse_slot_name(f).unwrap();
            std::fs::write(d.path().join(SLOT_DIR).join(f), uki(&v)).unwrap();
        }
        d
    }

    fn names(esp: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(esp.join(SLOT_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    fn by_version(v: &str) -> Running {
        Running { version: Some(v.into()), ..Default::default() }
    }

    /// What systemd-boot would boot: the first slot in its order.
    fn boots(esp: &Path) -> Slot {
        slots(esp, &Running::default()).unwrap().into_iter().next().unwrap()
    }

    /// systemd-boot's rename before a try of a counted entry.
    fn loader_tries(esp: &Path) -> String {
        let s = boots(esp);
        if let (Some(left), Some(done)) = (s.tries_left, s.tries_done)
            && left > 0
        {
            let to = format!("hermes-{}+{}-{}.efi", s.version, left - 1, done + 1);
            std::fs::rename(esp.join(SLOT_DIR).join(&s.file), esp.join(SLOT_DIR).join(&to)).unwrap();
            return to;
        }
        s.file
    }

    #[test]
    fn slot_names() {
        assert_eq!(parse_slot_name("hermes-0.1.0.efi"), Some(("0.1.0".into(), None)));
        assert_eq!(parse_slot_name("hermes-0.2.0+3.efi"), Some(("0.2.0".into(), Some((3, 0)))));
        assert_eq!(parse_slot_name("HERMES-0.2.0+2-1.EFI"), Some(("0.2.0".into(), Some((2, 1)))));
        assert_eq!(parse_slot_name("hermes-0.2.0+0-3.efi"), Some(("0.2.0".into(), Some((0, 3)))));
        assert_eq!(parse_slot_name("hermes-install.tmp"), None);
        assert_eq!(parse_slot_name("hermes-1+x.efi"), None);
        assert_eq!(parse_slot_name("other-1.efi"), None);
        assert_eq!(parse_slot_name("hermes-.efi"), None);
    }

    #[test]
    fn efivar_strings() {
        let mut raw = vec![6, 0, 0, 0];
        for u in "hermes-0.2.0+2-1.efi".encode_utf16().chain([0]) {
            raw.extend_from_slice(&u.to_le_bytes());
        }
        assert_eq!(parse_efivar_string(&raw).as_deref(), Some("hermes-0.2.0+2-1.efi"));
        assert_eq!(parse_efivar_string(&[1, 2]), None);
        assert_eq!(os_release_version("ID=hermes\nVERSION_ID=\"0.3.1\"\n").as_deref(), Some("0.3.1"));
    }

    #[test]
    fn running_from_variables() {
        let d = tempfile::tempdir().unwrap();
        let write = |name: &str, value: &str| {
            let mut raw = vec![6, 0, 0, 0];
            for u in value.encode_utf16().chain([0]) {
                raw.extend_from_slice(&u.to_le_bytes());
            }
            std::fs::write(d.path().join(format!("{name}-{LOADER_GUID}")), raw).unwrap();
        };
        write("LoaderEntrySelected", "hermes-0.2.0.efi");
        let esp = esp(&["hermes-0.1.0.efi", "hermes-0.2.0+2-1.efi"]);
        let r = Running::detect(d.path(), Some("0.1.0".into()));
        let s = status(esp.path(), &r).unwrap();
        assert_eq!(s.running.as_deref(), Some("0.2.0"));
        assert_eq!(s.running_from.as_deref(), Some("LoaderEntrySelected"));
        write("LoaderBootCountPath", "\\EFI\\Linux\\hermes-0.2.0+2-1.efi");
        let s = status(esp.path(), &Running::detect(d.path(), None)).unwrap();
        assert_eq!(s.running_from.as_deref(), Some("LoaderBootCountPath"));
        assert!(s.slots.iter().any(|x| x.running && x.health == Health::Trial && x.tries_done == Some(1)));
        assert!(render(&s).contains("trial"));
    }

    #[test]
    fn update_boot_mark_good_then_update_again() {
        let esp = esp(&["hermes-0.1.0.efi"]);
        let pk = key().public();
        let done = install(esp.path(), &bundle("0.2.0"), &pk, &by_version("0.1.0"), InstallOptions::default()).unwrap();
        assert_eq!(done.file, "hermes-0.2.0+3.efi");
        assert_eq!(names(esp.path()), ["hermes-0.1.0.efi", "hermes-0.2.0+3.efi"]);
        assert_eq!(std::fs::read(esp.path().join(SLOT_DIR).join(&done.file)).unwrap(), uki("0.2.0"));
        // The loader tries the new slot first.
        assert_eq!(loader_tries(esp.path()), "hermes-0.2.0+2-1.efi");
        let running = by_version("0.2.0");
        assert_eq!(running_health(esp.path(), &running), Some(("0.2.0".into(), Health::Trial)));
        // Another install while on trial is refused, with nothing written.
        let err = install(esp.path(), &bundle("0.3.0"), &pk, &running, InstallOptions::default()).unwrap_err();
        assert!(matches!(err, FirmwareError::RunningOnTrial(_)), "{err}");
        assert_eq!(names(esp.path()), ["hermes-0.1.0.efi", "hermes-0.2.0+2-1.efi"]);
        assert_eq!(mark_good(esp.path(), &running).unwrap().as_deref(), Some("hermes-0.2.0.efi"));
        assert_eq!(mark_good(esp.path(), &running).unwrap(), None);
        assert_eq!(boots(esp.path()).file, "hermes-0.2.0.efi");
        // The next update replaces the old slot, keeps the running one.
        let done = install(esp.path(), &bundle("0.3.0"), &pk, &running, InstallOptions::default()).unwrap();
        assert_eq!(done.removed, ["hermes-0.1.0.efi"]);
        assert_eq!(names(esp.path()), ["hermes-0.2.0.efi", "hermes-0.3.0+3.efi"]);
    }

    #[test]
    fn a_slot_that_never_gets_marked_good_rolls_back() {
        let esp = esp(&["hermes-0.1.0.efi"]);
        install(esp.path(), &bundle("0.2.0"), &key().public(), &by_version("0.1.0"), InstallOptions::default())
            .unwrap();
        // Three failed tries: the loader counts down, then sorts the bad slot last.
        assert_eq!(loader_tries(esp.path()), "hermes-0.2.0+2-1.efi");
        assert_eq!(loader_tries(esp.path()), "hermes-0.2.0+1-2.efi");
        assert_eq!(loader_tries(esp.path()), "hermes-0.2.0+0-3.efi");
        assert_eq!(loader_tries(esp.path()), "hermes-0.1.0.efi");
        let s = status(esp.path(), &by_version("0.1.0")).unwrap();
        assert_eq!(s.slots[0].version, "0.1.0");
        assert!(s.slots[0].running);
        assert_eq!(s.slots[1].health, Health::Bad);
        // The old slot runs and is good: a fixed bundle installs over the bad one.
        let done =
            install(esp.path(), &bundle("0.2.1"), &key().public(), &by_version("0.1.0"), InstallOptions::default())
                .unwrap();
        assert_eq!(done.removed, ["hermes-0.2.0+0-3.efi"]);
        assert_eq!(names(esp.path()), ["hermes-0.1.0.efi", "hermes-0.2.1+3.efi"]);
    }

    #[test]
    fn refusals_write_nothing() {
        let esp = esp(&["hermes-0.1.0.efi", "hermes-0.0.9+0-3.efi"]);
        let before = names(esp.path());
        let pk = key().public();
        let running = by_version("0.1.0");
        let opts = InstallOptions::default();
        let check = |err: FirmwareError, what: &str| {
            assert!(err.to_string().contains(what), "{err}");
            assert_eq!(names(esp.path()), before);
        };
        check(install(esp.path(), &bundle("0.0.5"), &pk, &running, opts).unwrap_err(), "older than the running");
        check(install(esp.path(), &bundle("0.1.0"), &pk, &running, opts).unwrap_err(), "is the running version");
        let other = SigningKey::from_seed([8; 32]);
        let foreign = bundle::create(&other, "0.2.0", 0, &uki("0.2.0")).unwrap();
        check(install(esp.path(), &foreign, &pk, &running, opts).unwrap_err(), "signed by key");
        let mut corrupt = bundle("0.2.0");
        corrupt[200] ^= 1;
        check(install(esp.path(), &corrupt, &pk, &running, opts).unwrap_err(), "corrupt");
        let good = bundle("0.2.0");
        check(install(esp.path(), &good[..good.len() - 10], &pk, &running, opts).unwrap_err(), "truncated");
        check(install(esp.path(), &good, &pk, &by_version("9.9").clone(), opts).unwrap_err(), "cannot tell which slot");
        check(install(esp.path(), b"garbage", &pk, &running, opts).unwrap_err(), "not an update bundle");
    }

    #[test]
    fn forced_downgrade_keeps_the_running_slot_as_fallback() {
        let esp = esp(&["hermes-0.1.0.efi", "hermes-0.2.0.efi"]);
        let running = by_version("0.2.0");
        let done =
            install(esp.path(), &bundle("0.1.5"), &key().public(), &running, InstallOptions { force: true }).unwrap();
        assert_eq!(done.demoted.as_deref(), Some("hermes-0.2.0+0.efi"));
        assert_eq!(names(esp.path()), ["hermes-0.1.5+3.efi", "hermes-0.2.0+0.efi"]);
        // The downgrade boots; if it never gets marked good, 0.2.0 boots again.
        assert_eq!(loader_tries(esp.path()), "hermes-0.1.5+2-1.efi");
        loader_tries(esp.path());
        loader_tries(esp.path());
        assert_eq!(boots(esp.path()).version, "0.2.0");
    }

    /// A power cut before each step of an install (and one halfway through the write): the box
    /// still boots a good slot, the leftover is cleaned, and the install then works.
    #[test]
    fn power_cut_at_every_step() {
        for stop_at in 0..4 {
            for prefill in [false, true] {
                let esp = esp(&["hermes-0.1.0.efi", "hermes-0.0.9+0-3.efi"]);
                let running = by_version("0.1.0");
                let mut n = 0;
                let mut hook = |step: &Step| -> std::io::Result<()> {
                    let here = n;
                    n += 1;
                    if here == stop_at {
                        if *step == Step::Rename {
                            // The cut hit after the temp file was written but before the rename;
                            // also leave a half-written temp on the second variant.
                            if prefill {
                                let t = esp.path().join(SLOT_DIR).join(TEMP_NAME);
                                let len = std::fs::metadata(&t).unwrap().len();
                                std::fs::OpenOptions::new().write(true).open(&t).unwrap().set_len(len / 2).unwrap();
                            }
                        }
                        return Err(std::io::Error::other("power cut"));
                    }
                    Ok(())
                };
                // A small ESP (no room for a third slot) removes the old slot first.
                let free = if prefill { Some(SPACE_MARGIN + 45_000) } else { None };
                let r = install_steps(
                    esp.path(),
                    &bundle("0.2.0"),
                    &key().public(),
                    &running,
                    InstallOptions::default(),
                    &mut hook,
                    free,
                );
                if stop_at < 3 {
                    assert!(r.is_err(), "stop {stop_at}");
                }
                // After the reboot: what boots is a complete slot file; init cleans leftovers.
                let first = boots(esp.path());
                assert!(first.health != Health::Bad, "stop {stop_at}: {first:?}");
                let content = std::fs::read(esp.path().join(SLOT_DIR).join(&first.file)).unwrap();
                assert_eq!(content, uki(&first.version), "stop {stop_at}: {} is incomplete", first.file);
                assert!(names(esp.path()).contains(&"hermes-0.1.0.efi".to_string()), "stop {stop_at}");
                clean(esp.path());
                assert!(leftovers(esp.path()).is_empty());
                // And the install can be done again (unless it completed).
                if r.is_err() {
                    install(esp.path(), &bundle("0.2.0"), &key().public(), &running, InstallOptions::default())
                        .unwrap();
                }
                assert_eq!(names(esp.path()), ["hermes-0.1.0.efi", "hermes-0.2.0+3.efi"], "stop {stop_at}");
            }
        }
    }

    #[test]
    fn leftover_temp_file_is_cleaned_and_reported() {
        let esp = esp(&["hermes-0.1.0.efi"]);
        std::fs::write(esp.path().join(SLOT_DIR).join(TEMP_NAME), b"half").unwrap();
        let s = status(esp.path(), &by_version("0.1.0")).unwrap();
        assert_eq!(s.leftovers, [TEMP_NAME]);
        assert!(render(&s).contains("interrupted install"));
        assert_eq!(clean(esp.path()), [TEMP_NAME]);
        assert_eq!(names(esp.path()), ["hermes-0.1.0.efi"]);
    }

    #[test]
    fn bundles_read_from_files_and_devices() {
        let d = tempfile::tempdir().unwrap();
        let b = bundle("0.2.0");
        let file = d.path().join("x.bundle");
        std::fs::write(&file, &b).unwrap();
        assert_eq!(read_bundle(&file).unwrap(), b);
        // A "device": the bundle padded to a sector multiple is read by its header's length;
        // a regular file with trailing bytes is refused.
        let mut padded = b.clone();
        padded.resize(b.len().div_ceil(512) * 512 + 512, 0);
        std::fs::write(&file, &padded).unwrap();
        assert!(read_bundle(&file).unwrap_err().to_string().contains("after its signature"));
        std::fs::write(&file, &b[..b.len() / 2]).unwrap();
        assert!(read_bundle(&file).unwrap_err().to_string().contains("truncated"));
        std::fs::write(&file, b"HERMES").unwrap();
        assert!(read_bundle(&file).unwrap_err().to_string().contains("not an update bundle"));
        std::fs::write(&file, vec![0u8; 4096]).unwrap();
        assert!(read_bundle(&file).unwrap_err().to_string().contains("bad magic"));
    }

    #[test]
    fn built_in_key_or_a_clear_refusal() {
        match BUILT_IN_KEY {
            Some(_) => assert!(trusted_key().is_ok()),
            None => assert!(trusted_key().unwrap_err().to_string().contains("refuses every bundle")),
        }
    }
}
