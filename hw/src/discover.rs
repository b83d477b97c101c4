//! Block-device discovery from sysfs, and the map from devices to physical bays.
//!
//! What it is: [`discover`] lists whole disks under `ROOT/sys/block`, classifies them (ATA behind
//! SCSI/libata or a SAS HBA, other SCSI, NVMe, virtio), reads size, rotational, vendor/model/serial
//! and resolves where each hangs off the machine ([`Location`]: the HBA's PCI function and the port
//! under it). [`map_bays`] turns that into bays 0..N: by default in order of (controller PCI
//! address, port), overridden per chassis by [`BayConfig`].
//!
//! What it is not: a SMART prober (it only says which transport to use), a hotplug listener (callers
//! re-run it; it is cheap), or an SES enclosure reader (slot LEDs and enclosure slot numbers are
//! later work, see `docs/hw.md`).
//!
//! Invariants: every read is under the given root and bounded; a device whose attributes are
//! missing is still listed (with `None` fields) rather than dropped; the kinds considered are a
//! whitelist (`sd*`, `nvme<N>n<M>`, `vd*`), so loop, ram, zram, dm, md, optical and other virtual
//! devices can never be mapped to a bay; USB and removable devices, and paths the config excludes,
//! never get a bay either (they are boot media, not data disks).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::sysfs::{list_dir, read_attr, read_bounded, read_u64, under};

/// Most entries read from `/sys/block` (a 16-bay box has ~20; this bounds a pathological tree).
pub const MAX_BLOCK_DEVICES: usize = 4096;
/// Bays in the appliance's reference chassis (4U, 16 data disks).
pub const DEFAULT_BAYS: u16 = 16;

/// How a disk is reached, which decides how SMART is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiskKind {
    /// An ATA disk behind the SCSI layer (libata, or SAT in a SAS HBA): SMART via SG_IO ATA
    /// PASS-THROUGH.
    Ata,
    /// A SCSI/SAS disk: SMART through SCSI log pages (not decoded yet; see docs/hw.md).
    Scsi,
    /// NVMe namespace: SMART via the NVMe admin ioctl.
    Nvme,
    /// virtio-blk (virtual machines): no SMART.
    Virtio,
}

/// Where a disk hangs off the machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// The resolved `device` link, e.g.
    /// `/sys/devices/pci0000:00/0000:00:1f.2/ata3/host2/target2:0:0/2:0:0:0`.
    pub device_path: String,
    /// The path through the HBA's PCI function, e.g. `/sys/devices/pci0000:00/0000:00:1f.2`
    /// (empty when the device is not under PCI).
    pub controller: String,
    /// The HBA's PCI address, e.g. `0000:00:1f.2`.
    pub pci: Option<String>,
    /// The attachment point under the controller: `ata3` (libata port), `end_device-0:3`
    /// (SAS), `target2:0:0` (other SCSI); empty when the controller serves one disk (NVMe, virtio).
    pub port: String,
}

/// One whole disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockDevice {
    /// Kernel name: `sda`, `nvme0n1`, `vda`.
    pub name: String,
    pub kind: DiskKind,
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub size_bytes: Option<u64>,
    pub rotational: Option<bool>,
    pub removable: bool,
    /// Behind a USB controller (boot sticks, not data disks).
    pub usb: bool,
    pub location: Option<Location>,
}

impl BlockDevice {
    /// The device node to open for ioctls, under `dev_root` (`/dev` on the box).
    pub fn dev_node(&self, dev_root: &Path) -> PathBuf {
        dev_root.join(&self.name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("cannot list {path}: {source}")]
    List { path: PathBuf, source: io::Error },
}

fn classify(name: &str) -> Option<DiskKind> {
    let digits_then = |s: &str| -> Option<usize> {
        let n = s.bytes().take_while(u8::is_ascii_digit).count();
        (n > 0).then_some(n)
    };
    if let Some(rest) = name.strip_prefix("sd") {
        return (!rest.is_empty() && rest.bytes().all(|b| b.is_ascii_lowercase())).then_some(DiskKind::Scsi);
    }
    if let Some(rest) = name.strip_prefix("vd") {
        return (!rest.is_empty() && rest.bytes().all(|b| b.is_ascii_lowercase())).then_some(DiskKind::Virtio);
    }
    if let Some(rest) = name.strip_prefix("nvme") {
        // nvme<ctrl>n<ns>; hidden multipath paths nvme<ctrl>c<path>n<ns> and partitions are not disks.
        let n = digits_then(rest)?;
        let rest = rest.get(n..)?.strip_prefix('n')?;
        let m = digits_then(rest)?;
        return (m == rest.len()).then_some(DiskKind::Nvme);
    }
    None
}

/// Lists and classifies whole disks under `ROOT/sys/block`, sorted by name.
pub fn discover(root: &Path) -> Result<Vec<BlockDevice>, DiscoverError> {
    let block = under(root, "/sys/block");
    let names =
        list_dir(&block, MAX_BLOCK_DEVICES).map_err(|source| DiscoverError::List { path: block.clone(), source })?;
    let canonical_root = fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let mut out = Vec::new();
    for name in names {
        let Some(kind) = classify(&name) else { continue };
        out.push(read_device(&canonical_root, &block.join(&name), name, kind));
    }
    Ok(out)
}

/// An attribute that is present, non-empty text.
fn text(path: &Path) -> Option<String> {
    read_attr(path).ok().flatten().filter(|s| !s.is_empty())
}

fn read_device(root: &Path, dir: &Path, name: String, mut kind: DiskKind) -> BlockDevice {
    let size_bytes = read_u64(&dir.join("size")).ok().flatten().map(|s| s.saturating_mul(512));
    let rotational = read_u64(&dir.join("queue/rotational")).ok().flatten().map(|r| r != 0);
    let removable = read_u64(&dir.join("removable")).ok().flatten() == Some(1);
    let dev = dir.join("device");
    let (mut vendor, mut model, mut serial) = (None, None, None);
    let mut location = resolve_location(root, &dev);
    match kind {
        DiskKind::Scsi => {
            vendor = text(&dev.join("vendor"));
            model = text(&dev.join("model"));
            serial = read_vpd_serial(&dev.join("vpd_pg80"));
            // libata and SAT HBAs report vendor "ATA" and expose the ATA Information VPD page.
            if vendor.as_deref() == Some("ATA") || dev.join("vpd_pg89").exists() {
                kind = DiskKind::Ata;
            }
        }
        DiskKind::Nvme => {
            let mut ctrl = dev.clone();
            // Native multipath: the namespace head is virtual; its paths hang off the controllers.
            let first_path = || list_dir(&dir.join("multipath"), 64).ok()?.into_iter().next();
            if location.as_ref().is_none_or(|l| l.pci.is_none())
                && let Some(path_dev) = first_path()
            {
                ctrl = dir.join("multipath").join(path_dev).join("device");
                location = resolve_location(root, &ctrl);
            }
            model = text(&ctrl.join("model"));
            serial = text(&ctrl.join("serial"));
        }
        DiskKind::Virtio => serial = text(&dir.join("serial")),
        DiskKind::Ata => {}
    }
    let usb = location.as_ref().is_some_and(|l| l.device_path.split('/').any(|c| c.starts_with("usb")));
    BlockDevice { name, kind, vendor, model, serial, size_bytes, rotational, removable, usb, location }
}

/// Unit serial number VPD page (0x80): 4-byte header (length at bytes 2..4), then ASCII.
fn read_vpd_serial(path: &Path) -> Option<String> {
    let b = read_bounded(path, 4096).ok().flatten()?;
    if b.get(1) != Some(&0x80) {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([*b.get(2)?, *b.get(3)?]));
    let s = crate::bytes::clean_ascii(b.get(4..4 + len.min(b.len().saturating_sub(4)))?);
    (!s.is_empty()).then_some(s)
}

/// `0000:00:1f.2` → (domain, bus, device, function).
pub fn parse_pci(s: &str) -> Option<(u16, u8, u8, u8)> {
    let (domain, rest) = s.split_once(':')?;
    let (bus, rest) = rest.split_once(':')?;
    let (dev, func) = rest.split_once('.')?;
    if domain.len() != 4 || bus.len() != 2 || dev.len() != 2 || func.len() != 1 {
        return None;
    }
    Some((
        u16::from_str_radix(domain, 16).ok()?,
        u8::from_str_radix(bus, 16).ok()?,
        u8::from_str_radix(dev, 16).ok()?,
        u8::from_str_radix(func, 16).ok()?,
    ))
}

fn resolve_location(root: &Path, dev_link: &Path) -> Option<Location> {
    let real = fs::canonicalize(dev_link).ok()?;
    let rel = real.strip_prefix(root).ok()?;
    let device_path = format!("/{}", rel.to_str()?);
    Some(location_from_path(&device_path))
}

/// Splits a resolved `/sys/devices/...` path into controller, PCI address and port.
pub fn location_from_path(device_path: &str) -> Location {
    let comps: Vec<&str> = device_path.split('/').collect();
    let last_pci = comps.iter().rposition(|c| parse_pci(c).is_some());
    let (controller, pci, below) = match last_pci {
        Some(i) => (comps[..=i].join("/"), Some(comps[i].to_string()), &comps[i + 1..]),
        None => (String::new(), None, &comps[..]),
    };
    let port = below
        .iter()
        .find(|c| c.strip_prefix("ata").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())))
        .or_else(|| below.iter().find(|c| c.starts_with("end_device-")))
        .or_else(|| below.iter().find(|c| c.starts_with("target")))
        .map(|c| (*c).to_string())
        .unwrap_or_default();
    Location { device_path: device_path.to_string(), controller, pci, port }
}

// ---------------------------------------------------------------------------------------------
// Bays
// ---------------------------------------------------------------------------------------------

/// The chassis' bay layout (part of the health config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BayConfig {
    /// Number of data bays.
    #[serde(default = "default_bays")]
    pub bays: u16,
    /// Fixed assignments, for chassis whose cabling does not follow PCI/port order.
    #[serde(default)]
    pub overrides: Vec<BayOverride>,
    /// Controller or device path prefixes never given a bay (e.g. the boot SSD's controller).
    #[serde(default)]
    pub exclude: Vec<String>,
}

fn default_bays() -> u16 {
    DEFAULT_BAYS
}

impl Default for BayConfig {
    fn default() -> Self {
        Self { bays: DEFAULT_BAYS, overrides: Vec::new(), exclude: Vec::new() }
    }
}

/// "The disk at this controller (path prefix) and port sits in this bay."
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BayOverride {
    /// A prefix of [`Location::controller`] (whole path components), e.g.
    /// `/sys/devices/pci0000:00/0000:00:1f.2`.
    pub controller: String,
    /// [`Location::port`] to match exactly; absent matches any port (one-disk controllers: NVMe).
    #[serde(default)]
    pub port: Option<String>,
    pub bay: u16,
}

impl BayConfig {
    /// Every error at once, each naming its field.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errs = Vec::new();
        if self.bays == 0 || self.bays > 256 {
            errs.push(format!("bays: {} is not within 1..=256", self.bays));
        }
        let mut seen_bays = BTreeSet::new();
        let mut seen_places = BTreeSet::new();
        for (i, o) in self.overrides.iter().enumerate() {
            if o.bay >= self.bays {
                errs.push(format!("overrides[{i}].bay: {} is not below bays = {}", o.bay, self.bays));
            }
            if !seen_bays.insert(o.bay) {
                errs.push(format!("overrides[{i}].bay: bay {} is assigned twice", o.bay));
            }
            if !o.controller.starts_with("/sys/devices/") {
                errs.push(format!("overrides[{i}].controller: {:?} must start with /sys/devices/", o.controller));
            }
            if !seen_places.insert((o.controller.trim_end_matches('/'), o.port.as_deref())) {
                errs.push(format!("overrides[{i}]: controller and port listed twice"));
            }
        }
        for (i, e) in self.exclude.iter().enumerate() {
            if !e.starts_with("/sys/devices/") {
                errs.push(format!("exclude[{i}]: {e:?} must start with /sys/devices/"));
            }
        }
        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }
}

/// `path` equals `prefix` or continues it at a `/` boundary.
fn has_prefix(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    path == prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
}

/// Why a disk has no bay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unmapped {
    Usb,
    Removable,
    Excluded,
    NoLocation,
    /// More disks than bays.
    NoFreeBay,
}

/// How a bay was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BaySource {
    Override,
    Default,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BayMap {
    /// Bay → (device name, how the bay was decided).
    pub bays: BTreeMap<u16, (String, BaySource)>,
    /// Devices without a bay, and why.
    pub unmapped: Vec<(String, Unmapped)>,
}

impl BayMap {
    pub fn bay_of(&self, name: &str) -> Option<u16> {
        self.bays.iter().find(|(_, (n, _))| n == name).map(|(b, _)| *b)
    }
}

/// Natural-order key for the non-PCI part of a path: digit runs compare as numbers.
fn natural_key(s: &str) -> Vec<(String, u64)> {
    let mut key = Vec::new();
    let mut text = String::new();
    let mut num: Option<u64> = None;
    for c in s.chars() {
        if let Some(d) = c.to_digit(10) {
            num = Some(num.unwrap_or(0).saturating_mul(10).saturating_add(u64::from(d)));
        } else {
            if let Some(n) = num.take() {
                key.push((std::mem::take(&mut text), n));
            }
            text.push(c);
        }
    }
    key.push((text, num.unwrap_or(0)));
    key
}

/// Default order: the controller's PCI address (numerically: domain, bus, device, function), then
/// the path below the controller in natural order (`ata9` before `ata10`); non-PCI devices last.
fn location_order(a: &Location, b: &Location) -> Ordering {
    let key = |l: &Location| {
        let pci = l.pci.as_deref().and_then(parse_pci);
        let rest = l.device_path.strip_prefix(&l.controller).unwrap_or(&l.device_path);
        (pci.is_none(), pci, natural_key(rest))
    };
    key(a).cmp(&key(b))
}

/// Maps disks to bays: overrides first, then the remaining disks in default order into the free
/// bays. A second disk matching an override whose bay is taken falls back to the default order.
pub fn map_bays(devices: &[BlockDevice], cfg: &BayConfig) -> BayMap {
    let mut map = BayMap::default();
    let mut candidates: Vec<(&BlockDevice, &Location)> = Vec::new();
    for d in devices {
        let why = match &d.location {
            _ if d.usb => Some(Unmapped::Usb),
            _ if d.removable => Some(Unmapped::Removable),
            None => Some(Unmapped::NoLocation),
            Some(l) if cfg.exclude.iter().any(|e| has_prefix(&l.device_path, e)) => Some(Unmapped::Excluded),
            Some(l) => {
                candidates.push((d, l));
                None
            }
        };
        if let Some(why) = why {
            map.unmapped.push((d.name.clone(), why));
        }
    }
    candidates.sort_by(|a, b| location_order(a.1, b.1).then_with(|| a.0.name.cmp(&b.0.name)));

    let mut rest = Vec::new();
    for (d, l) in candidates {
        let hit = cfg
            .overrides
            .iter()
            .find(|o| has_prefix(&l.controller, &o.controller) && o.port.as_ref().is_none_or(|p| *p == l.port));
        match hit {
            Some(o) if o.bay < cfg.bays && !map.bays.contains_key(&o.bay) => {
                map.bays.insert(o.bay, (d.name.clone(), BaySource::Override));
            }
            _ => rest.push(d),
        }
    }
    let reserved: BTreeSet<u16> = cfg.overrides.iter().map(|o| o.bay).collect();
    let free: Vec<u16> = (0..cfg.bays).filter(|b| !map.bays.contains_key(b) && !reserved.contains(b)).collect();
    let mut free = free.into_iter();
    let mut leftover = Vec::new();
    for d in rest {
        match free.next() {
            Some(b) => {
                map.bays.insert(b, (d.name.clone(), BaySource::Default));
            }
            None => leftover.push(d),
        }
    }
    // Bays reserved by overrides whose disk is absent are used last, so a full chassis still maps.
    let spare: Vec<u16> = (0..cfg.bays).filter(|b| !map.bays.contains_key(b)).collect();
    let mut spare = spare.into_iter();
    for d in leftover {
        match spare.next() {
            Some(b) => {
                map.bays.insert(b, (d.name.clone(), BaySource::Default));
            }
            None => map.unmapped.push((d.name.clone(), Unmapped::NoFreeBay)),
        }
    }
    map
}

#[cfg(test)]
#[path = "discover_tests.rs"]
mod tests;
