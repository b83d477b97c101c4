//! Fuzz target: every decoder of bytes a disk or the kernel hands to hermes-hw, on arbitrary
//! input. The first byte picks the decoder (and, for ATA pages, whether checksums are verified);
//! the rest is the page. A decoder may refuse the page; it must never panic, loop or allocate
//! without bound. ATA: IDENTIFY DEVICE, SMART READ DATA with READ THRESHOLDS, the self-test
//! log, sense data (ATA PASS-THROUGH status); NVMe: Identify Controller, SMART / Health log,
//! self-test log; md: /proc/mdstat and `sync_completed`.
#![no_main]

use hermes_hw::smart::{ata, nvme};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, page)) = data.split_first() else { return };
    let policy = if sel & 1 == 0 { ata::ChecksumPolicy::Verify } else { ata::ChecksumPolicy::Ignore };
    match (sel >> 1) % 9 {
        0 => {
            let _ = ata::decode_identify(page);
        }
        1 => {
            // The same bytes as data and thresholds: attribute ids then line up, so the
            // attribute-state logic runs over every decoded attribute.
            if let (Ok(d), Ok(t)) = (ata::decode_smart_data(page, policy), ata::decode_thresholds(page, policy)) {
                for a in &d.attributes {
                    let _ = ata::attribute_state(a, &t);
                    let _ = ata::attribute_name(a.id);
                }
            }
        }
        2 => {
            let _ = ata::decode_selftest_log(page, policy);
        }
        3 => {
            let _ = ata::decode_sense(page);
            let _ = ata::smart_status_from_sense(page);
        }
        4 => {
            let _ = nvme::decode_identify_controller(page);
        }
        5 => {
            let _ = nvme::decode_health_log(page);
        }
        6 => {
            let _ = nvme::decode_selftest_log(page);
        }
        7 => {
            let _ = hermes_hw::md::mdstat::parse(&String::from_utf8_lossy(page));
        }
        _ => {
            let _ = hermes_hw::md::sysfs::parse_sync_completed(&String::from_utf8_lossy(page));
        }
    }
});
