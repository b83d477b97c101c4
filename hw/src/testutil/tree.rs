//! Fake sysfs/procfs trees shaped like the kernel's: `sys/block` links into `sys/devices`, `device`
//! links up to the SCSI/NVMe device, md arrays with `md/` attributes and `dev-*` members, and
//! `proc/mdstat`.
//!
//! Not a kernel model: nothing changes unless the test writes it. Invariant: every path written is
//! below the tree's root, and links are relative (as in real sysfs), so the tree can be moved.

use std::fs;
use std::path::{Path, PathBuf};

/// Model/serial/size of a fake disk.
#[derive(Debug, Clone)]
pub struct DiskSpec {
    pub model: String,
    pub serial: String,
    /// In 512-byte sectors.
    pub sectors: u64,
    pub rotational: bool,
}

impl DiskSpec {
    pub fn hdd(serial: &str) -> Self {
        Self { model: "WDC WD80EFZZ-68B".into(), serial: serial.into(), sectors: 15_628_053_168, rotational: true }
    }
    pub fn ssd(serial: &str) -> Self {
        Self {
            model: "Samsung SSD 980 PRO 1TB".into(),
            serial: serial.into(),
            sectors: 1_953_525_168,
            rotational: false,
        }
    }
}

/// A fake root. Paths given to its methods are absolute-looking (`/sys/block/sda`) and land below it.
#[derive(Debug, Clone)]
pub struct FakeTree {
    root: PathBuf,
}

/// Test helpers panic on I/O errors: a broken fixture must fail the test loudly.
#[allow(clippy::expect_used)]
impl FakeTree {
    pub fn new(root: &Path) -> Self {
        fs::create_dir_all(root).expect("create fake root");
        Self { root: root.to_path_buf() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    /// Writes a file (creating parents).
    pub fn write(&self, abs: &str, content: impl AsRef<[u8]>) {
        let p = self.path(abs);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("create parent");
        }
        fs::write(&p, content).expect("write fake file");
    }

    pub fn remove(&self, abs: &str) {
        let p = self.path(abs);
        if p.is_dir() {
            fs::remove_dir_all(&p).expect("remove dir");
        } else if p.exists() || p.symlink_metadata().is_ok() {
            fs::remove_file(&p).expect("remove file");
        }
    }

    /// A relative symlink at `link` (absolute-looking) pointing at `target` (absolute-looking).
    pub fn symlink(&self, link: &str, target: &str) {
        let link_p = self.path(link);
        if let Some(parent) = link_p.parent() {
            fs::create_dir_all(parent).expect("create link parent");
        }
        let depth = link.trim_start_matches('/').split('/').count().saturating_sub(1);
        let rel = format!("{}{}", "../".repeat(depth), target.trim_start_matches('/'));
        let _ = fs::remove_file(&link_p);
        std::os::unix::fs::symlink(rel, &link_p).expect("symlink");
    }

    fn block_common(&self, name: &str, block_dir: &str, device_dir: &str, spec: &DiskSpec, removable: bool) {
        self.write(&format!("{block_dir}/size"), format!("{}\n", spec.sectors));
        self.write(&format!("{block_dir}/queue/rotational"), if spec.rotational { "1\n" } else { "0\n" });
        self.write(&format!("{block_dir}/removable"), if removable { "1\n" } else { "0\n" });
        self.symlink(&format!("{block_dir}/device"), device_dir);
        self.symlink(&format!("/sys/block/{name}"), block_dir);
    }

    fn scsi_vpd_serial(&self, device_dir: &str, serial: &str) {
        let mut page = vec![0x00, 0x80, 0x00, u8::try_from(serial.len()).expect("short serial")];
        page.extend_from_slice(serial.as_bytes());
        self.write(&format!("{device_dir}/vpd_pg80"), page);
    }

    /// A SATA disk on an AHCI controller: `/sys/devices/pci0000:00/<pci>/ata<port>/host<h>/...`.
    /// Returns the device directory.
    pub fn add_ata_disk(&self, name: &str, pci: &str, ata_port: u32, host: u32, spec: &DiskSpec) -> String {
        let dev = format!("/sys/devices/pci0000:00/{pci}/ata{ata_port}/host{host}/target{host}:0:0/{host}:0:0:0");
        self.write(&format!("{dev}/vendor"), "ATA     \n");
        self.write(&format!("{dev}/model"), format!("{}\n", spec.model));
        self.write(&format!("{dev}/vpd_pg89"), [0u8, 0x89, 0x02, 0x38]);
        self.scsi_vpd_serial(&dev, &spec.serial);
        self.block_common(name, &format!("{dev}/block/{name}"), &dev, spec, false);
        dev
    }

    /// A SAS disk behind an HBA (mpt3sas-like), phy `phy` on host `host`.
    pub fn add_sas_disk(&self, name: &str, pci: &str, host: u32, phy: u32, spec: &DiskSpec) -> String {
        let dev = format!(
            "/sys/devices/pci0000:00/0000:00:01.0/{pci}/host{host}/port-{host}:{phy}/end_device-{host}:{phy}/target{host}:0:{phy}/{host}:0:{phy}:0"
        );
        self.write(&format!("{dev}/vendor"), "SEAGATE \n");
        self.write(&format!("{dev}/model"), format!("{}\n", spec.model));
        self.scsi_vpd_serial(&dev, &spec.serial);
        self.block_common(name, &format!("{dev}/block/{name}"), &dev, spec, false);
        dev
    }

    /// An NVMe namespace `nvme<ctrl>n1` on its own PCI function behind a root port.
    pub fn add_nvme(&self, ctrl: u32, pci: &str, spec: &DiskSpec) -> String {
        let c = format!("/sys/devices/pci0000:00/0000:00:03.0/{pci}/nvme/nvme{ctrl}");
        self.write(&format!("{c}/model"), format!("{}\n", spec.model));
        self.write(&format!("{c}/serial"), format!("{}\n", spec.serial));
        self.write(&format!("{c}/firmware_rev"), "5B2QGXA7\n");
        let name = format!("nvme{ctrl}n1");
        self.block_common(&name, &format!("{c}/{name}"), &c, spec, false);
        c
    }

    /// An NVMe namespace under native multipath (Debian kernels): the block device is a virtual
    /// namespace head in `nvme-subsystem`, its path device hangs off the PCI controller.
    pub fn add_nvme_multipath(&self, ctrl: u32, pci: &str, spec: &DiskSpec) -> String {
        let c = format!("/sys/devices/pci0000:00/0000:00:03.0/{pci}/nvme/nvme{ctrl}");
        self.write(&format!("{c}/model"), format!("{}\n", spec.model));
        self.write(&format!("{c}/serial"), format!("{}\n", spec.serial));
        let path_name = format!("nvme{ctrl}c{ctrl}n1");
        let path_dir = format!("{c}/{path_name}");
        self.write(&format!("{path_dir}/size"), format!("{}\n", spec.sectors));
        self.symlink(&format!("{path_dir}/device"), &c);
        let subsys = format!("/sys/devices/virtual/nvme-subsystem/nvme-subsys{ctrl}");
        let name = format!("nvme{ctrl}n1");
        let head = format!("{subsys}/{name}");
        self.write(&format!("{subsys}/model"), format!("{}\n", spec.model));
        self.symlink(&format!("{head}/multipath/{path_name}"), &path_dir);
        self.block_common(&name, &head, &subsys, spec, false);
        c
    }

    /// A USB stick (the boot medium).
    pub fn add_usb_disk(&self, name: &str, spec: &DiskSpec) -> String {
        let dev = "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0/host9/target9:0:0/9:0:0:0".to_string();
        self.write(&format!("{dev}/vendor"), "SanDisk \n");
        self.write(&format!("{dev}/model"), format!("{}\n", spec.model));
        self.block_common(name, &format!("{dev}/block/{name}"), &dev, spec, true);
        dev
    }

    /// A virtual block device (loop, ram, zram, dm-…): `/sys/devices/virtual/block/<name>`.
    pub fn add_virtual_block(&self, name: &str) {
        let dir = format!("/sys/devices/virtual/block/{name}");
        self.write(&format!("{dir}/size"), "0\n");
        self.symlink(&format!("/sys/block/{name}"), &dir);
    }

    /// An md array with `md/` attributes and members `(device, slot, state)`; `slot` None = spare.
    pub fn add_md(&self, name: &str, level: &str, raid_disks: u32, members: &[(&str, Option<u32>, &str)]) {
        let dir = format!("/sys/devices/virtual/block/{name}");
        fs::create_dir_all(self.path(&format!("{dir}/md"))).expect("create md dir");
        self.symlink(&format!("/sys/block/{name}"), &dir);
        let md = format!("/sys/block/{name}/md");
        self.write(&format!("{md}/level"), format!("{level}\n"));
        self.write(&format!("{md}/raid_disks"), format!("{raid_disks}\n"));
        self.write(&format!("{md}/array_state"), "clean\n");
        self.write(&format!("{md}/degraded"), "0\n");
        self.write(&format!("{md}/sync_action"), "idle\n");
        self.write(&format!("{md}/sync_completed"), "none\n");
        self.write(&format!("{md}/sync_speed"), "0\n");
        self.write(&format!("{md}/sync_speed_max"), "200000 (system)\n");
        self.write(&format!("{md}/mismatch_cnt"), "0\n");
        for (dev, slot, state) in members {
            self.set_member(name, dev, *slot, state);
        }
    }

    /// Sets one `md/` attribute.
    pub fn set_md(&self, name: &str, attr: &str, value: &str) {
        self.write(&format!("/sys/block/{name}/md/{attr}"), format!("{value}\n"));
    }

    /// Sets a member's `state` and `slot` (creating it).
    pub fn set_member(&self, name: &str, dev: &str, slot: Option<u32>, state: &str) {
        let d = format!("/sys/block/{name}/md/dev-{dev}");
        self.write(&format!("{d}/state"), format!("{state}\n"));
        self.write(&format!("{d}/slot"), slot.map_or_else(|| "none\n".to_string(), |s| format!("{s}\n")));
    }

    pub fn remove_member(&self, name: &str, dev: &str) {
        self.remove(&format!("/sys/block/{name}/md/dev-{dev}"));
    }

    pub fn write_mdstat(&self, text: &str) {
        self.write("/proc/mdstat", text);
    }
}
