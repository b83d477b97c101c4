//! Verdict rules on fixtures: one test per rule, plus the combination rules.

use super::*;
use crate::smart::ata::{ChecksumPolicy, decode_identify, decode_selftest_log, decode_smart_data, decode_thresholds};
use crate::smart::nvme::{decode_health_log, decode_identify_controller};
use crate::testutil::pages::{self, Attr, Identify, LogEntry, NvmeHealthPage, NvmeIdentify};

const V: ChecksumPolicy = ChecksumPolicy::Verify;

fn ata(attrs: &[Attr], log: &[LogEntry]) -> AtaReadings {
    AtaReadings {
        identity: decode_identify(&Identify::default().build()).map_err(|e| e.to_string()),
        status: Ok(SmartStatus::Passed),
        data: decode_smart_data(&pages::smart_data_page(attrs, 0), V).map_err(|e| e.to_string()),
        thresholds: decode_thresholds(&pages::thresholds_page(&pages::healthy_thresholds()), V)
            .map_err(|e| e.to_string()),
        selftest_log: decode_selftest_log(&pages::selftest_log_page(log), V).map_err(|e| e.to_string()),
    }
}

fn with_attr(id: u8, current: u8, raw: u64) -> Vec<Attr> {
    let mut attrs = pages::healthy_attrs();
    for a in &mut attrs {
        if a.id == id {
            a.current = current;
            a.worst = current;
            a.raw = raw;
        }
    }
    attrs
}

fn judge_default(r: Readings) -> Verdict {
    judge(&r, &BTreeMap::new(), &VerdictConfig::default())
}

fn codes(v: &Verdict) -> Vec<&str> {
    v.reasons.iter().map(|r| r.code.as_str()).collect()
}

#[test]
fn healthy_ata_disk_is_ok() {
    let v = judge_default(Readings::Ata(ata(&pages::healthy_attrs(), &[])));
    assert_eq!(v.health, Health::Ok, "{v:?}");
    assert!(v.reasons.is_empty());
}

#[test]
fn smart_status_failed_is_failing() {
    let mut r = ata(&pages::healthy_attrs(), &[]);
    r.status = Ok(SmartStatus::ThresholdExceeded);
    let v = judge_default(Readings::Ata(r));
    assert_eq!(v.health, Health::Failing);
    assert_eq!(codes(&v), ["smart_status_failed"]);
}

#[test]
fn each_backblaze_attribute_nonzero_warns_and_growing_fails() {
    for id in CRITICAL_ATTRIBUTES {
        let r = Readings::Ata(ata(&with_attr(id, 200, 8), &[]));
        let v = judge_default(r.clone());
        assert_eq!(v.health, Health::Warning, "attr {id}: {v:?}");
        assert_eq!(codes(&v), [format!("attr_{id}_nonzero").as_str()]);
        let grew = BTreeMap::from([(counter_key(id), 3u64)]);
        let v = judge(&r, &grew, &VerdictConfig::default());
        assert_eq!(v.health, Health::Failing, "attr {id}");
        assert!(v.reasons[0].message.contains("grew by 3"), "{}", v.reasons[0].message);
    }
}

#[test]
fn growth_comes_from_history_samples() {
    let r = Readings::Ata(ata(&with_attr(197, 100, 12), &[]));
    let now = sample_of(&r, 40 * 86_400);
    assert_eq!(now.counters.get("ata_197"), Some(&12));
    assert_eq!(now.temperature_c, Some(36));
    let mut before = now.clone();
    before.at -= 10 * 86_400;
    before.counters.insert("ata_197".into(), 4);
    let g = crate::history::growth(&[before], &now, DEFAULT_GROWTH_WINDOW_DAYS);
    assert_eq!(judge(&r, &g, &VerdictConfig::default()).health, Health::Failing);
}

#[test]
fn hdd_and_ssd_temperature_thresholds() {
    let hot = |t: u64| with_attr(194, 100, t);
    assert_eq!(judge_default(Readings::Ata(ata(&hot(54), &[]))).health, Health::Ok);
    assert_eq!(judge_default(Readings::Ata(ata(&hot(55), &[]))).health, Health::Warning);
    assert_eq!(judge_default(Readings::Ata(ata(&hot(65), &[]))).health, Health::Failing);
    let mut ssd = ata(&hot(65), &[]);
    ssd.identity = decode_identify(&Identify { rotation: 1, ..Identify::default() }.build()).map_err(|e| e.to_string());
    assert_eq!(judge_default(Readings::Ata(ssd)).health, Health::Ok);
}

#[test]
fn prefailure_attribute_below_threshold_fails_usage_warns() {
    // Attribute 1 (pre-fail, threshold 51) at 40.
    let v = judge_default(Readings::Ata(ata(&with_attr(1, 40, 0), &[])));
    assert_eq!(v.health, Health::Failing);
    assert_eq!(codes(&v), ["attr_1_below_threshold"]);
    let mut attrs = pages::healthy_attrs();
    attrs.push(Attr { id: 200, flags: 0x0032, current: 5, worst: 5, raw: 0 });
    let mut r = ata(&attrs, &[]);
    r.thresholds = decode_thresholds(&pages::thresholds_page(&[(200, 10)]), V).map_err(|e| e.to_string());
    assert_eq!(judge_default(Readings::Ata(r)).health, Health::Warning);
}

#[test]
fn selftest_last_failed_fails_older_failure_warns() {
    let fail = LogEntry { test: 1, status: 0x73, hours: 100, lba: 777 };
    let pass = LogEntry { test: 1, status: 0x00, hours: 200, lba: 0 };
    let aborted = LogEntry { test: 2, status: 0x10, hours: 300, lba: 0 };
    let v = judge_default(Readings::Ata(ata(&pages::healthy_attrs(), &[pass, fail, aborted])));
    assert_eq!(v.health, Health::Failing);
    assert!(v.reasons[0].message.contains("LBA 777"), "{}", v.reasons[0].message);
    let v = judge_default(Readings::Ata(ata(&pages::healthy_attrs(), &[fail, pass])));
    assert_eq!(v.health, Health::Warning);
    assert_eq!(codes(&v), ["selftest_failed_earlier"]);
}

#[test]
fn unreadable_parts_make_unknown_but_never_hide_problems() {
    let mut r = ata(&pages::healthy_attrs(), &[]);
    r.status = Err("timed out".into());
    let v = judge_default(Readings::Ata(r.clone()));
    assert_eq!(v.health, Health::Unknown);
    assert!(v.reasons[0].message.contains("timed out"));
    r.data = decode_smart_data(&pages::smart_data_page(&with_attr(5, 200, 1), 0), V).map_err(|e| e.to_string());
    assert_eq!(judge_default(Readings::Ata(r)).health, Health::Warning);

    // A truncated page → decoder error → unknown with the reason, no panic.
    let mut r = ata(&pages::healthy_attrs(), &[]);
    let page = pages::smart_data_page(&pages::healthy_attrs(), 0);
    r.data = decode_smart_data(&page[..300], V).map_err(|e| e.to_string());
    let v = judge_default(Readings::Ata(r));
    assert_eq!(v.health, Health::Unknown);
    assert!(v.reasons[0].message.contains("expected 512 bytes, got 300"), "{v:?}");

    let v = judge_default(Readings::Unreadable("no SMART transport".into()));
    assert_eq!((v.health, codes(&v)), (Health::Unknown, vec!["unreadable"]));
}

#[test]
fn notes_do_not_change_the_verdict() {
    let mut r = ata(&pages::healthy_attrs(), &[]);
    r.thresholds = Err("aborted".into());
    r.selftest_log = Err("aborted".into());
    let v = judge_default(Readings::Ata(r));
    assert_eq!(v.health, Health::Ok);
    assert_eq!(v.reasons.len(), 2);
}

#[test]
fn smart_disabled_is_unknown() {
    let mut r = ata(&pages::healthy_attrs(), &[]);
    r.identity =
        decode_identify(&Identify { smart_enabled: false, ..Identify::default() }.build()).map_err(|e| e.to_string());
    assert_eq!(codes(&judge_default(Readings::Ata(r))), ["smart_disabled"]);
}

fn nvme(page: NvmeHealthPage) -> Readings {
    Readings::Nvme(NvmeReadings {
        identity: decode_identify_controller(&NvmeIdentify::default().build()).map_err(|e| e.to_string()),
        health: decode_health_log(&page.build()).map_err(|e| e.to_string()),
        selftest_log: Ok(Default::default()),
    })
}

#[test]
fn nvme_rules() {
    assert_eq!(judge_default(nvme(NvmeHealthPage::default())).health, Health::Ok);
    let cases: [(NvmeHealthPage, Health, &str); 9] = [
        (NvmeHealthPage { critical_warning: 0x01, ..Default::default() }, Health::Failing, "nvme_spare_critical"),
        (NvmeHealthPage { critical_warning: 0x02, ..Default::default() }, Health::Warning, "nvme_temperature_warning"),
        (NvmeHealthPage { critical_warning: 0x04, ..Default::default() }, Health::Failing, "nvme_reliability_degraded"),
        (NvmeHealthPage { critical_warning: 0x08, ..Default::default() }, Health::Failing, "nvme_read_only"),
        (
            NvmeHealthPage { available_spare: 5, spare_threshold: 10, ..Default::default() },
            Health::Failing,
            "nvme_spare_critical",
        ),
        (NvmeHealthPage { percentage_used: 90, ..Default::default() }, Health::Warning, "nvme_wearing_out"),
        (NvmeHealthPage { percentage_used: 100, ..Default::default() }, Health::Failing, "nvme_worn_out"),
        (NvmeHealthPage { media_errors: 2, ..Default::default() }, Health::Warning, "nvme_media_errors"),
        // 86 °C ≥ CCTEMP 358 K (85 °C).
        (NvmeHealthPage { temperature_k: 359, ..Default::default() }, Health::Failing, "temperature_critical"),
    ];
    for (page, health, code) in cases {
        let v = judge_default(nvme(page));
        assert_eq!(v.health, health, "{code}: {v:?}");
        assert_eq!(codes(&v), [code]);
    }
    let r = nvme(NvmeHealthPage { media_errors: 2, ..Default::default() });
    let g = BTreeMap::from([(NVME_MEDIA_ERRORS.to_string(), 1u64)]);
    let v = judge(&r, &g, &VerdictConfig::default());
    assert_eq!((v.health, codes(&v)), (Health::Failing, vec!["nvme_media_errors_growing"]));
    let s = sample_of(&r, 0);
    assert_eq!(s.counters.get(NVME_MEDIA_ERRORS), Some(&2));
    assert_eq!(s.power_on_hours, Some(8_760));
}

#[test]
fn nvme_unreadable_health_is_unknown() {
    let r = Readings::Nvme(NvmeReadings {
        identity: Err("timed out".into()),
        health: decode_health_log(&[0u8; 100]).map_err(|e| e.to_string()),
        selftest_log: Err("not supported".into()),
    });
    let v = judge_default(r);
    assert_eq!(v.health, Health::Unknown);
    assert_eq!(codes(&v), ["identify_failed", "selftest_log_unreadable", "health_unreadable"]);
}

#[test]
fn config_validation_reports_every_error() {
    assert!(VerdictConfig::default().validate().is_ok());
    let bad = VerdictConfig { hdd_temp_warn_c: 70, nvme_used_warn: 100, growth_window_days: 0, ..Default::default() };
    assert_eq!(bad.validate().map_err(|e| e.len()), Err(3));
    let parsed: VerdictConfig = serde_json::from_str(r#"{"hdd_temp_warn_c": 50}"#).expect("json");
    assert_eq!(parsed.hdd_temp_fail_c, DEFAULT_HDD_TEMP_FAIL_C);
    assert!(serde_json::from_str::<VerdictConfig>(r#"{"nope": 1}"#).is_err());
}

#[test]
fn nvme_selftest_failures() {
    let log = |entries: &[(u8, u8, u64, Option<u64>)]| {
        crate::smart::nvme::decode_selftest_log(&pages::nvme_selftest_log_page(0, 0, entries))
            .map_err(|e| e.to_string())
    };
    let mut r = NvmeReadings {
        identity: decode_identify_controller(&NvmeIdentify::default().build()).map_err(|e| e.to_string()),
        health: decode_health_log(&NvmeHealthPage::default().build()).map_err(|e| e.to_string()),
        selftest_log: log(&[(0x17, 2, 500, Some(99)), (0x10, 0, 400, None)]),
    };
    let v = judge_default(Readings::Nvme(r.clone()));
    assert_eq!((v.health, codes(&v)), (Health::Failing, vec!["selftest_failed"]));
    assert!(v.reasons[0].message.contains("LBA 99"));
    r.selftest_log = log(&[(0x10, 0, 600, None), (0x17, 2, 500, None)]);
    assert_eq!(judge_default(Readings::Nvme(r)).health, Health::Warning);
}
