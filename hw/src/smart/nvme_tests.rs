//! Tests for the NVMe decoders and admin command layouts.

use super::*;
use crate::testutil::XorShift;
use crate::testutil::pages::{NvmeHealthPage, NvmeIdentify, nvme_selftest_log_page};

#[test]
fn identify_controller_fields() {
    let id = decode_identify_controller(&NvmeIdentify::default().build()).expect("valid");
    assert_eq!(id.vid, 0x144D);
    assert_eq!(id.serial, "S5GXNF0R123456");
    assert_eq!(id.model, "Samsung SSD 980 PRO 1TB");
    assert_eq!(id.firmware, "5B2QGXA7");
    assert_eq!(id.total_capacity, 1_000_204_886_016);
    assert_eq!((id.wctemp_k, id.cctemp_k), (355, 358));
    assert!(id.selftest_supported());
    assert_eq!(id.namespaces, 1);
}

#[test]
fn health_log_fields() {
    let page = NvmeHealthPage {
        critical_warning: 0x05,
        data_units_written: u128::from(u64::MAX) + 5,
        media_errors: 3,
        ..NvmeHealthPage::default()
    }
    .build();
    let h = decode_health_log(&page).expect("valid");
    assert!(h.critical_warning.spare_below_threshold());
    assert!(!h.critical_warning.temperature());
    assert!(h.critical_warning.reliability_degraded());
    assert_eq!(h.temperature_k, 310);
    assert_eq!(h.temperature_c(), Some(37));
    assert_eq!((h.available_spare, h.spare_threshold, h.percentage_used), (100, 10, 3));
    assert_eq!(h.data_units_read, 12_345_678);
    assert_eq!(h.data_units_written, u128::from(u64::MAX) + 5);
    assert_eq!((h.power_cycles, h.power_on_hours, h.unsafe_shutdowns), (120, 8_760, 7));
    assert_eq!((h.media_errors, h.error_log_entries), (3, 2));
    assert_eq!(h.sensors_k, vec![310]);
}

#[test]
fn health_log_rejects_impossible_pages() {
    assert!(matches!(decode_health_log(&[0u8; 512]), Err(DecodeError::Malformed { .. })));
    let page = NvmeHealthPage { available_spare: 180, ..NvmeHealthPage::default() }.build();
    assert!(matches!(decode_health_log(&page), Err(DecodeError::Malformed { .. })));
    assert!(matches!(decode_identify_controller(&[0u8; 4096]), Err(DecodeError::Malformed { .. })));
    assert_eq!(kelvin_to_celsius(0), None);
}

#[test]
fn decoders_never_panic_on_prefixes_or_garbage() {
    let id = NvmeIdentify::default().build();
    let health = NvmeHealthPage::default().build();
    for n in 0..IDENTIFY_LEN {
        assert!(matches!(decode_identify_controller(&id[..n]), Err(DecodeError::Length { .. })));
    }
    for n in 0..HEALTH_LOG_LEN {
        assert!(matches!(decode_health_log(&health[..n]), Err(DecodeError::Length { .. })));
    }
    let mut rng = XorShift::new(42);
    for _ in 0..500 {
        let _ = decode_identify_controller(&rng.bytes(IDENTIFY_LEN));
        let _ = decode_health_log(&rng.bytes(HEALTH_LOG_LEN));
    }
}

#[test]
fn admin_command_layouts() {
    assert_eq!(NVME_IOCTL_ADMIN_CMD, 0xC048_4E41);
    let id = NvmeAdminCmd::identify_controller();
    let b = id.to_bytes();
    assert_eq!(b[0], 0x06);
    assert_eq!(&b[4..8], &[0, 0, 0, 0]);
    assert_eq!(&b[36..40], &4096u32.to_le_bytes());
    assert_eq!(&b[40..44], &1u32.to_le_bytes());

    let log = NvmeAdminCmd::health_log();
    let b = log.to_bytes();
    assert_eq!(b[0], 0x02);
    assert_eq!(&b[4..8], &[0xFF; 4]);
    assert_eq!(&b[36..40], &512u32.to_le_bytes());
    // NUMDL = 127 (512 bytes = 128 dwords, 0-based), LID = 2.
    assert_eq!(&b[40..44], &[0x02, 0x00, 0x7F, 0x00]);
    assert_eq!(NvmeAdminCmd::get_log_page(LID_HEALTH, NSID_ALL, 512), Ok(log));

    let big = NvmeAdminCmd::get_log_page(0x06, 0, 64 * 1024).expect("64 KiB");
    assert_eq!(big.cdw10 >> 16, 0x3FFF);
    assert_eq!(big.cdw11, 0);
    for bad in [0, 3, 510, MAX_LOG_LEN + 4] {
        assert_eq!(NvmeAdminCmd::get_log_page(2, 0, bad), Err(BuildError::LogLength(bad)));
    }
}

#[test]
fn selftest_log_and_commands() {
    // Newest first: an extended test that failed segment 3 at LBA 4242, then a passed short one,
    // then an aborted one.
    let page =
        nvme_selftest_log_page(1, 40, &[(0x27, 3, 1_000, Some(4242)), (0x10, 0, 990, None), (0x21, 0, 980, None)]);
    let log = decode_selftest_log(&page).expect("valid");
    assert_eq!((log.current_operation, log.current_completion), (1, 40));
    assert_eq!(log.entries.len(), 3);
    let last = log.last_finished().expect("finished");
    assert_eq!(last.result, NvmeSelfTestResult::SegmentFailed);
    assert_eq!(
        (last.test_name(), last.segment, last.power_on_hours, last.failing_lba),
        ("extended", 3, 1_000, Some(4242))
    );
    assert!(last.result.is_failure());
    assert_eq!(log.entries[1].failing_lba, None);
    assert_eq!(log.entries[2].result, NvmeSelfTestResult::Aborted(1));
    for n in 0..SELFTEST_LOG_LEN {
        assert!(decode_selftest_log(&page[..n]).is_err());
    }
    let mut rng = XorShift::new(9);
    for _ in 0..300 {
        let _ = decode_selftest_log(&rng.bytes(SELFTEST_LOG_LEN));
    }

    let st = NvmeAdminCmd::device_self_test(NvmeSelfTest::Short).to_bytes();
    assert_eq!((st[0], &st[4..8], &st[40..44]), (0x14, &[0xFF; 4][..], &[1, 0, 0, 0][..]));
    assert_eq!(NvmeAdminCmd::device_self_test(NvmeSelfTest::Abort).cdw10, 0xF);
    let lg = NvmeAdminCmd::selftest_log();
    assert_eq!(Ok(lg), NvmeAdminCmd::get_log_page(LID_SELFTEST, 0, SELFTEST_LOG_LEN));
    assert_eq!(lg.cdw10, (140 << 16) | 6);
}
