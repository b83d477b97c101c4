//! Discovery and bay mapping on fake sysfs trees.

use super::*;
use crate::testutil::tree::{DiskSpec, FakeTree};

/// 12 SATA disks on two AHCI controllers (6 ports each), 2 NVMe, a USB boot stick, loop/zram/dm/md.
fn chassis(t: &FakeTree) {
    let names = ["sda", "sdb", "sdc", "sdd", "sde", "sdf", "sdg", "sdh", "sdi", "sdj", "sdk", "sdl"];
    for (i, name) in names.iter().enumerate() {
        let i = u32::try_from(i).unwrap_or(0);
        // Second controller (0000:00:17.0) probes first: its ports get the lower ata numbers and
        // the lower sd names, but it is later in PCI order.
        let (pci, port) = if i < 6 { ("0000:00:17.0", i + 1) } else { ("0000:00:1f.2", i + 1) };
        t.add_ata_disk(name, pci, port, i, &DiskSpec::hdd(&format!("WD-{i:04}")));
    }
    t.add_nvme(0, "0000:02:00.0", &DiskSpec::ssd("S5GX0001"));
    t.add_nvme(1, "0000:01:00.0", &DiskSpec::ssd("S5GX0002"));
    t.add_usb_disk("sdm", &DiskSpec::ssd("USB1"));
    for v in ["loop0", "ram0", "zram0", "dm-0", "md0", "sr0"] {
        t.add_virtual_block(v);
    }
}

#[test]
fn discovers_and_classifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = FakeTree::new(dir.path());
    chassis(&t);
    t.add_sas_disk("sdn", "0000:03:00.0", 20, 3, &DiskSpec::hdd("ZA1234"));
    let devs = discover(t.root()).expect("discover");
    let names: Vec<&str> = devs.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names.len(), 16, "{names:?}");
    assert!(!names.iter().any(|n| ["loop0", "ram0", "zram0", "dm-0", "md0", "sr0"].contains(n)));

    let sda = devs.iter().find(|d| d.name == "sda").expect("sda");
    assert_eq!(sda.kind, DiskKind::Ata);
    assert_eq!(sda.vendor.as_deref(), Some("ATA"));
    assert_eq!(sda.model.as_deref(), Some("WDC WD80EFZZ-68B"));
    assert_eq!(sda.serial.as_deref(), Some("WD-0000"));
    assert_eq!(sda.size_bytes, Some(15_628_053_168 * 512));
    assert_eq!(sda.rotational, Some(true));
    let loc = sda.location.as_ref().expect("location");
    assert_eq!(loc.controller, "/sys/devices/pci0000:00/0000:00:17.0");
    assert_eq!(loc.pci.as_deref(), Some("0000:00:17.0"));
    assert_eq!(loc.port, "ata1");
    assert_eq!(loc.device_path, "/sys/devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0");

    let nvme = devs.iter().find(|d| d.name == "nvme0n1").expect("nvme");
    assert_eq!(nvme.kind, DiskKind::Nvme);
    assert_eq!(nvme.serial.as_deref(), Some("S5GX0001"));
    assert_eq!(nvme.rotational, Some(false));
    assert_eq!(nvme.location.as_ref().and_then(|l| l.pci.as_deref()), Some("0000:02:00.0"));
    assert_eq!(nvme.location.as_ref().map(|l| l.port.as_str()), Some(""));

    let usb = devs.iter().find(|d| d.name == "sdm").expect("usb");
    assert!(usb.usb && usb.removable);

    let sas = devs.iter().find(|d| d.name == "sdn").expect("sas");
    assert_eq!(sas.kind, DiskKind::Scsi);
    assert_eq!(sas.location.as_ref().map(|l| l.port.as_str()), Some("end_device-20:3"));
    assert_eq!(sas.dev_node(Path::new("/dev")), PathBuf::from("/dev/sdn"));
}

#[test]
fn default_bays_follow_pci_then_port_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = FakeTree::new(dir.path());
    chassis(&t);
    let devs = discover(t.root()).expect("discover");
    let map = map_bays(&devs, &BayConfig::default());
    let order: Vec<&str> = map.bays.values().map(|(n, _)| n.as_str()).collect();
    // PCI order: 00:17.0 (sda..sdf), 00:1f.2 (sdg..sdl), 01:00.0 (nvme1), 02:00.0 (nvme0).
    assert_eq!(
        order,
        ["sda", "sdb", "sdc", "sdd", "sde", "sdf", "sdg", "sdh", "sdi", "sdj", "sdk", "sdl", "nvme1n1", "nvme0n1"]
    );
    assert_eq!(map.unmapped, vec![("sdm".to_string(), Unmapped::Usb)]);
    assert_eq!(map.bay_of("nvme0n1"), Some(13));
}

#[test]
fn natural_port_order_beats_string_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = FakeTree::new(dir.path());
    // ata10 must come after ata9 on the same controller.
    t.add_ata_disk("sdb", "0000:00:1f.2", 10, 1, &DiskSpec::hdd("B"));
    t.add_ata_disk("sda", "0000:00:1f.2", 9, 0, &DiskSpec::hdd("A"));
    let map = map_bays(&discover(t.root()).expect("discover"), &BayConfig::default());
    assert_eq!(map.bay_of("sda"), Some(0));
    assert_eq!(map.bay_of("sdb"), Some(1));
}

#[test]
fn overrides_exclusions_and_overflow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = FakeTree::new(dir.path());
    chassis(&t);
    let devs = discover(t.root()).expect("discover");
    let cfg: BayConfig = serde_json::from_str(
        r#"{
            "bays": 13,
            "overrides": [
                {"controller": "/sys/devices/pci0000:00/0000:00:1f.2", "port": "ata12", "bay": 0},
                {"controller": "/sys/devices/pci0000:00/0000:00:03.0/0000:02:00.0", "bay": 12}
            ],
            "exclude": ["/sys/devices/pci0000:00/0000:00:03.0/0000:01:00.0"]
        }"#,
    )
    .expect("config");
    assert!(cfg.validate().is_ok());
    let map = map_bays(&devs, &cfg);
    assert_eq!(map.bays.get(&0), Some(&("sdl".to_string(), BaySource::Override)));
    assert_eq!(map.bays.get(&12), Some(&("nvme0n1".to_string(), BaySource::Override)));
    assert_eq!(map.bay_of("sda"), Some(1));
    assert_eq!(map.bay_of("sdk"), Some(11));
    assert!(map.unmapped.contains(&("nvme1n1".to_string(), Unmapped::Excluded)));
    assert_eq!(map.bays.len(), 13);

    let small = BayConfig { bays: 4, ..BayConfig::default() };
    let map = map_bays(&devs, &small);
    assert_eq!(map.bays.len(), 4);
    assert_eq!(map.unmapped.iter().filter(|(_, w)| *w == Unmapped::NoFreeBay).count(), 10);
}

#[test]
fn config_validation_reports_every_error() {
    let bad = BayConfig {
        bays: 16,
        overrides: vec![
            BayOverride {
                controller: "/sys/devices/pci0000:00/0000:00:1f.2".into(),
                port: Some("ata1".into()),
                bay: 16,
            },
            BayOverride { controller: "pci0000:00".into(), port: None, bay: 3 },
            BayOverride { controller: "/sys/devices/x".into(), port: None, bay: 3 },
        ],
        exclude: vec!["/dev/sda".into()],
    };
    let errs = bad.validate().expect_err("invalid");
    assert_eq!(errs.len(), 4, "{errs:?}");
    assert!(errs[0].starts_with("overrides[0].bay"));
    assert!(serde_json::from_str::<BayConfig>(r#"{"bay": 3}"#).is_err());
}

#[test]
fn location_parsing() {
    let l = location_from_path(
        "/sys/devices/pci0000:00/0000:00:01.0/0000:03:00.0/host0/port-0:0/expander-0:0/port-0:0:7/end_device-0:0:7/target0:0:7/0:0:7:0",
    );
    assert_eq!(l.pci.as_deref(), Some("0000:03:00.0"));
    assert_eq!(l.port, "end_device-0:0:7");
    let v = location_from_path("/sys/devices/platform/foo/host0/target0:0:1/0:0:1:0");
    assert_eq!((v.pci, v.controller.as_str(), v.port.as_str()), (None, "", "target0:0:1"));
    assert_eq!(parse_pci("0000:00:1f.2"), Some((0, 0, 0x1f, 2)));
    assert_eq!(parse_pci("0000:00:1f"), None);
    assert_eq!(parse_pci("zzzz:00:1f.2"), None);
    for (name, kind) in [
        ("sda", Some(DiskKind::Scsi)),
        ("sdab", Some(DiskKind::Scsi)),
        ("sda1", None),
        ("nvme0n1", Some(DiskKind::Nvme)),
        ("nvme0c0n1", None),
        ("nvme0n1p1", None),
        ("nvme0", None),
        ("vda", Some(DiskKind::Virtio)),
        ("md0", None),
        ("loop0", None),
        ("sd", None),
    ] {
        assert_eq!(classify(name), kind, "{name}");
    }
}

#[test]
fn missing_sys_block_is_empty_and_broken_devices_are_listed() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(discover(dir.path()).expect("empty").is_empty());
    let t = FakeTree::new(dir.path());
    // A disk whose device link dangles and whose attributes are missing.
    t.symlink("/sys/block/sdz", "/sys/devices/gone/block/sdz");
    let devs = discover(t.root()).expect("discover");
    assert_eq!(devs.len(), 1);
    assert_eq!((devs[0].location.clone(), devs[0].size_bytes), (None, None));
    let map = map_bays(&devs, &BayConfig::default());
    assert_eq!(map.unmapped, vec![("sdz".to_string(), Unmapped::NoLocation)]);
}

#[test]
fn nvme_native_multipath_resolves_to_the_pci_controller() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = FakeTree::new(dir.path());
    t.add_nvme_multipath(0, "0000:05:00.0", &DiskSpec::ssd("S5MP0001"));
    let devs = discover(t.root()).expect("discover");
    assert_eq!(devs.len(), 1);
    let d = &devs[0];
    assert_eq!((d.name.as_str(), d.kind), ("nvme0n1", DiskKind::Nvme));
    assert_eq!(d.serial.as_deref(), Some("S5MP0001"));
    let loc = d.location.as_ref().expect("location");
    assert_eq!(loc.pci.as_deref(), Some("0000:05:00.0"));
    assert_eq!(loc.controller, "/sys/devices/pci0000:00/0000:00:03.0/0000:05:00.0");
    assert_eq!(map_bays(&devs, &BayConfig::default()).bay_of("nvme0n1"), Some(0));
}
