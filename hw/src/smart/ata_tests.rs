//! Tests for the ATA decoders and builders: known layouts, then every prefix and random garbage.

use super::*;
use crate::testutil::XorShift;
use crate::testutil::pages::{self, Attr, Identify, LogEntry};

#[test]
fn identify_decodes_strings_capacity_and_features() {
    let id = decode_identify(&Identify::default().build()).expect("valid page");
    assert_eq!(id.model, "WDC WD80EFZZ-68BTXN0");
    assert_eq!(id.serial, "WD-CA0ABCDE");
    assert_eq!(id.firmware, "81.00A81");
    assert_eq!(id.sectors, 15_628_053_168);
    assert_eq!(id.capacity_bytes, 15_628_053_168 * 512);
    assert_eq!((id.logical_sector_size, id.physical_sector_size), (512, 4096));
    assert!(id.lba48 && id.smart_supported && id.smart_enabled && id.selftest_supported);
    assert_eq!(id.rotation, Rotation::Rpm(5400));
    assert_eq!(id.wwn, Some(0x5000_CCA2_9ABC_DEF0));
}

#[test]
fn identify_without_lba48_uses_words_60_61() {
    let page = Identify { lba48: false, sectors: 268_435_455, ..Identify::default() }.build();
    let id = decode_identify(&page).expect("valid");
    assert!(!id.lba48);
    assert_eq!(id.sectors, 268_435_455);
}

#[test]
fn identify_4kn_and_ssd_and_smart_disabled() {
    let page = Identify {
        logical_words: Some(2048),
        physical_shift: 0,
        rotation: 1,
        smart_enabled: false,
        wwn: None,
        ..Identify::default()
    }
    .build();
    let id = decode_identify(&page).expect("valid");
    assert_eq!((id.logical_sector_size, id.physical_sector_size), (4096, 4096));
    assert_eq!(id.capacity_bytes, 15_628_053_168 * 4096);
    assert_eq!(id.rotation, Rotation::SolidState);
    assert!(id.smart_supported && !id.smart_enabled);
    assert_eq!(id.wwn, None);
}

#[test]
fn identify_rejects_bad_integrity_word_atapi_and_zeros() {
    let mut page = Identify::default().build();
    page[60] ^= 0x01;
    assert!(matches!(decode_identify(&page), Err(DecodeError::Checksum { .. })));
    // Without the signature, no checksum is required.
    let mut page = Identify { integrity: false, ..Identify::default() }.build();
    page[60] ^= 0x01;
    assert!(decode_identify(&page).is_ok());
    let mut atapi = Identify { integrity: false, ..Identify::default() }.build();
    atapi[1] |= 0x80;
    assert!(matches!(decode_identify(&atapi), Err(DecodeError::Malformed { .. })));
    assert!(matches!(decode_identify(&[0u8; 512]), Err(DecodeError::Malformed { .. })));
    let bad_sector = Identify { logical_words: Some(3), ..Identify::default() }.build();
    assert!(matches!(decode_identify(&bad_sector), Err(DecodeError::Malformed { .. })));
}

#[test]
fn smart_data_decodes_attributes_selftest_and_polling_times() {
    let page = pages::smart_data_page(&pages::healthy_attrs(), 0x00);
    let d = decode_smart_data(&page, ChecksumPolicy::Verify).expect("valid");
    assert_eq!(d.revision, 0x10);
    assert_eq!(d.attributes.len(), pages::healthy_attrs().len());
    let a5 = d.attribute(5).expect("attr 5");
    assert!(a5.prefailure());
    assert_eq!((a5.current, a5.worst, a5.raw), (200, 200, 0));
    assert_eq!(d.temperature_c(), Some(36));
    assert_eq!(d.attribute(194).map(|a| a.raw >> 16 & 0xFF), Some(21));
    assert_eq!(d.power_on_hours(), Some(29_345));
    assert_eq!(d.selftest.status, SelfTestStatus::CompletedOk);
    assert_eq!((d.short_test_minutes, d.extended_test_minutes), (2, 781));
    assert!(d.checksum_ok);
}

#[test]
fn smart_data_raw_interpretation_follows_smartmontools_defaults() {
    let attrs = [
        Attr::new(5, 100, 0x0001_0000_0008),   // raw16: 8
        Attr::new(9, 50, 0x2A00_1234),         // raw24: 0x001234 (top byte: minutes)
        Attr::new(197, 100, 0x0001_0000_0002), // raw48
        Attr::new(250, 100, 0xAB_CDEF),        // unknown vendor attribute: raw48, no panic
    ];
    let d = decode_smart_data(&pages::smart_data_page(&attrs, 0xF3), ChecksumPolicy::Verify).expect("valid");
    assert_eq!(d.attribute(5).map(SmartAttribute::value), Some(8));
    assert_eq!(d.attribute(9).map(SmartAttribute::value), Some(0x001234));
    assert_eq!(d.attribute(197).map(SmartAttribute::value), Some(0x0001_0000_0002));
    assert_eq!(d.attribute(250).map(|a| (a.name(), a.value())), Some(("Unknown_Attribute", 0xAB_CDEF)));
    assert_eq!(d.temperature_c(), None);
    assert_eq!(d.selftest, SelfTestExecution { status: SelfTestStatus::InProgress, remaining_percent: 30 });
}

#[test]
fn smart_data_checksum_is_verified_unless_ignored() {
    let mut page = pages::smart_data_page(&pages::healthy_attrs(), 0);
    page[100] = page[100].wrapping_add(1);
    assert!(matches!(decode_smart_data(&page, ChecksumPolicy::Verify), Err(DecodeError::Checksum { sum: 1, .. })));
    let d = decode_smart_data(&page, ChecksumPolicy::Ignore).expect("lenient");
    assert!(!d.checksum_ok);
}

#[test]
fn thresholds_and_attribute_states() {
    let t = decode_thresholds(&pages::thresholds_page(&pages::healthy_thresholds()), ChecksumPolicy::Verify)
        .expect("valid");
    assert_eq!(t.by_id.get(&5), Some(&140));
    let mk = |current, worst| SmartAttribute { id: 5, flags: 0x33, current, worst, raw: 0 };
    assert_eq!(attribute_state(&mk(200, 200), &t), AttributeState::Ok);
    assert_eq!(attribute_state(&mk(140, 140), &t), AttributeState::FailingNow);
    assert_eq!(attribute_state(&mk(150, 100), &t), AttributeState::FailedInPast);
    // Threshold 0 always passes; unknown ids pass.
    let usage = SmartAttribute { id: 9, flags: 0x32, current: 1, worst: 1, raw: 0 };
    assert_eq!(attribute_state(&usage, &t), AttributeState::Ok);
}

#[test]
fn selftest_log_lists_newest_first_and_wraps() {
    let entries: Vec<LogEntry> =
        (0..23u16).map(|i| LogEntry { test: 1, status: 0x00, hours: 100 + i, lba: 0 }).collect();
    let log = decode_selftest_log(&pages::selftest_log_page(&entries), ChecksumPolicy::Verify).expect("valid");
    assert_eq!(log.entries.len(), 21);
    assert_eq!(log.entries[0].lifetime_hours, 122);
    assert_eq!(log.entries[20].lifetime_hours, 102);
}

#[test]
fn selftest_log_reports_failures_with_lba() {
    let entries = [
        LogEntry { test: 2, status: 0x00, hours: 10, lba: 0 },
        LogEntry { test: 1, status: 0x73, hours: 20, lba: 123_456 },
        LogEntry { test: 1, status: 0x10, hours: 21, lba: 0 },
    ];
    let log = decode_selftest_log(&pages::selftest_log_page(&entries), ChecksumPolicy::Verify).expect("valid");
    assert_eq!(log.entries.len(), 3);
    assert_eq!(log.entries[0].status, SelfTestStatus::AbortedByHost);
    let last = log.last_finished().expect("one finished");
    assert_eq!(last.status, SelfTestStatus::ReadFailed);
    assert_eq!(last.remaining_percent, 30);
    assert_eq!(last.first_failure_lba, Some(123_456));
    assert_eq!(last.test_name(), "short");
    assert_eq!(log.entries[2].first_failure_lba, None);
}

#[test]
fn selftest_log_empty_and_bad_index() {
    let log = decode_selftest_log(&pages::selftest_log_page(&[]), ChecksumPolicy::Verify).expect("ok");
    assert!(log.entries.is_empty() && log.last_finished().is_none());
    let mut page = pages::selftest_log_page(&[]);
    page[508] = 22;
    pages::fix_checksum(&mut page);
    assert!(matches!(decode_selftest_log(&page, ChecksumPolicy::Verify), Err(DecodeError::Malformed { .. })));
}

// Byte layouts as smartmontools' sat_device::ata_pass_through builds them.
#[test]
fn cdbs_match_smartmontools_layout() {
    let hex = |c: [u8; 16]| c.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ");
    assert_eq!(hex(AtaCommand::identify().cdb), "85 08 0e 00 00 00 01 00 00 00 00 00 00 00 ec 00");
    assert_eq!(hex(AtaCommand::smart_read_data().cdb), "85 08 0e 00 d0 00 01 00 00 00 4f 00 c2 00 b0 00");
    assert_eq!(hex(AtaCommand::smart_read_thresholds().cdb), "85 08 0e 00 d1 00 01 00 00 00 4f 00 c2 00 b0 00");
    assert_eq!(hex(AtaCommand::smart_return_status().cdb), "85 06 2c 00 da 00 00 00 00 00 4f 00 c2 00 b0 00");
    assert_eq!(
        hex(AtaCommand::smart_execute_offline(SelfTestKind::Short).cdb),
        "85 06 0c 00 d4 00 00 00 01 00 4f 00 c2 00 b0 00"
    );
    assert_eq!(
        hex(AtaCommand::smart_execute_offline(SelfTestKind::Long).cdb),
        "85 06 0c 00 d4 00 00 00 02 00 4f 00 c2 00 b0 00"
    );
    assert_eq!(hex(AtaCommand::smart_read_log(LOG_SELFTEST).cdb), "85 08 0e 00 d5 00 01 00 06 00 4f 00 c2 00 b0 00");
    assert!(AtaCommand::smart_return_status().want_registers);
    assert_eq!(AtaCommand::identify().data_in, 512);
    assert_eq!(AtaCommand::smart_execute_offline(SelfTestKind::Abort).cdb[8], 0x7F);
}

fn regs(mid: u8, high: u8, status: u8) -> AtaRegisters {
    AtaRegisters { lba_mid: mid, lba_high: high, status, ..AtaRegisters::default() }
}

#[test]
fn smart_status_from_descriptor_and_fixed_sense() {
    let ok = pages::sense_descriptor(regs(0x4F, 0xC2, 0x50));
    let bad = pages::sense_descriptor(regs(0xF4, 0x2C, 0x50));
    assert_eq!(smart_status_from_sense(&ok), Ok(SmartStatus::Passed));
    assert_eq!(smart_status_from_sense(&bad), Ok(SmartStatus::ThresholdExceeded));
    assert_eq!(smart_status_from_sense(&pages::sense_fixed(regs(0x4F, 0xC2, 0x50))), Ok(SmartStatus::Passed));
    assert_eq!(
        smart_status_from_sense(&pages::sense_fixed(regs(0xF4, 0x2C, 0x50))),
        Ok(SmartStatus::ThresholdExceeded)
    );
    assert!(smart_status_from_sense(&pages::sense_descriptor(regs(1, 2, 0x50))).is_err());
    assert!(smart_status_from_sense(&[]).is_err());
    assert!(smart_status_from_sense(&[0x72, 1, 0, 0x1D, 0, 0, 0, 0]).is_err());
}

#[test]
fn pass_through_outcomes() {
    let ok_sense = pages::sense_descriptor(regs(0x4F, 0xC2, 0x50));
    let out = |scsi, host, driver, sense: &'static [u8]| SgOutcome {
        scsi_status: scsi,
        host_status: host,
        driver_status: driver,
        sense,
    };
    // Data-in success: GOOD, nothing else.
    assert_eq!(check_pass_through(&out(0, 0, 0, &[]), false), Ok(None));
    // CK_COND success: CHECK CONDITION + DRIVER_SENSE + recovered error with registers.
    let leaked: &'static [u8] = Box::leak(ok_sense.into_boxed_slice());
    let r = check_pass_through(&out(2, 0, 0x08, leaked), true).expect("registers");
    assert_eq!(r.map(|r| (r.lba_mid, r.lba_high)), Some((0x4F, 0xC2)));
    // Timeouts.
    assert_eq!(check_pass_through(&out(0, 0x03, 0, &[]), false), Err(PassThroughError::Timeout));
    assert_eq!(check_pass_through(&out(0, 0, 0x06, &[]), false), Err(PassThroughError::Timeout));
    // Transport failure (DID_NO_CONNECT: disk gone).
    assert!(matches!(
        check_pass_through(&out(0, 0x01, 0, &[]), false),
        Err(PassThroughError::Transport { host: 1, .. })
    ));
    // ATA abort (SMART disabled): ABORTED COMMAND with ERR/ABRT.
    let abort: &'static [u8] = Box::leak(
        pages::sense_descriptor_with_key(0x0B, AtaRegisters { status: 0x51, error: 0x04, ..Default::default() })
            .into_boxed_slice(),
    );
    assert_eq!(
        check_pass_through(&out(2, 0, 0x08, abort), false),
        Err(PassThroughError::Ata { status: 0x51, error: 0x04 })
    );
    // Not a SAT device: ILLEGAL REQUEST, invalid opcode.
    let illegal: &'static [u8] = &[0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x20, 0x00, 0, 0, 0, 0];
    assert!(matches!(
        check_pass_through(&out(2, 0, 0x08, illegal), false),
        Err(PassThroughError::Unsupported { asc: 0x20, .. })
    ));
    // CK_COND but the SATL returned nothing.
    assert_eq!(check_pass_through(&out(0, 0, 0, &[]), true), Err(PassThroughError::NoRegisters));
}

/// Every decoder, fed every prefix and 2000 random pages, returns without panicking.
#[test]
fn decoders_never_panic_on_prefixes_or_garbage() {
    let identify = Identify::default().build();
    let data = pages::smart_data_page(&pages::healthy_attrs(), 0);
    let log = pages::selftest_log_page(&[LogEntry { test: 1, status: 0, hours: 1, lba: 0 }]);
    for n in 0..SECTOR {
        assert!(matches!(decode_identify(&identify[..n]), Err(DecodeError::Length { .. })));
        assert!(decode_smart_data(&data[..n], ChecksumPolicy::Ignore).is_err());
        assert!(decode_thresholds(&data[..n], ChecksumPolicy::Ignore).is_err());
        assert!(decode_selftest_log(&log[..n], ChecksumPolicy::Ignore).is_err());
    }
    assert!(decode_identify(&[0u8; 513]).is_err());
    let mut rng = XorShift::new(0x5EED);
    for _ in 0..2000 {
        let page = rng.bytes(SECTOR);
        let _ = decode_identify(&page);
        let _ = decode_smart_data(&page, ChecksumPolicy::Ignore);
        let _ = decode_thresholds(&page, ChecksumPolicy::Ignore);
        let _ = decode_selftest_log(&page, ChecksumPolicy::Ignore);
        let len = usize::try_from(rng.next_u64() % 64).unwrap_or(0);
        let sense = rng.bytes(len);
        let _ = decode_sense(&sense);
        let _ = smart_status_from_sense(&sense);
        let o = SgOutcome { scsi_status: 2, host_status: 0, driver_status: 8, sense: &sense };
        let _ = check_pass_through(&o, true);
    }
    // Sense prefixes of a valid descriptor never panic and never invent registers.
    let s = pages::sense_descriptor(regs(0x4F, 0xC2, 0x50));
    for n in 0..s.len() {
        assert!(decode_sense(&s[..n]).and_then(|s| s.registers).is_none());
    }
}
