//! `hermes firmware` against the real binary on a temporary ESP folder (`--esp`, `--running`):
//! status (text and JSON), mark-good renaming the running entry, and install refusals that
//! leave the ESP as it was: a bundle signed by a key this build does not trust (or every bundle,
//! for a build without a key), a garbage file, and a reboot off the appliance.
#![allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]

use hermes_svc_init::firmware::bundle::{self, SigningKey};
use std::path::Path;
use std::process::{Command, Output};

fn hermes(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hermes")).args(args).env_remove("HERMES_DATA").output().unwrap()
}

fn esp_with(files: &[&str]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("EFI/Linux")).unwrap();
    for f in files {
        std::fs::write(d.path().join("EFI/Linux").join(f), vec![0x4D; 4096]).unwrap();
    }
    d
}

fn names(esp: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(esp.join("EFI/Linux"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn status_and_mark_good() {
    let esp = esp_with(&["hermes-0.1.0.efi", "hermes-0.2.0+2-1.efi"]);
    let dir = esp.path().to_str().unwrap();
    let out = hermes(&["firmware", "status", "--esp", dir, "--running", "0.2.0"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("running 0.2.0"), "{text}");
    let trial = text.lines().find(|l| l.contains("hermes-0.2.0+2-1.efi")).unwrap();
    assert!(trial.starts_with('*') && trial.contains("trial"), "{text}");
    let out = hermes(&["firmware", "status", "--json", "--esp", dir, "--running", "0.2.0"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["slots"][0]["health"], "trial");
    assert_eq!(json["slots"][0]["tries_left"], 2);
    assert_eq!(json["slots"][1]["health"], "good");

    let out = hermes(&["firmware", "mark-good", "--esp", dir, "--running", "0.2.0"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("hermes-0.2.0.efi (good)"));
    assert_eq!(names(esp.path()), ["hermes-0.1.0.efi", "hermes-0.2.0.efi"]);
    let out = hermes(&["firmware", "mark-good", "--esp", dir, "--running", "0.2.0"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("already good"));
}

#[test]
fn installs_are_refused_with_nothing_written() {
    let esp = esp_with(&["hermes-0.1.0.efi"]);
    let dir = esp.path().to_str().unwrap();
    let files = tempfile::tempdir().unwrap();
    // Signed by a key no build trusts (the xtask's keys are random).
    let stranger = SigningKey::from_seed([42; 32]);
    let b = bundle::create(&stranger, "0.2.0", 0, &vec![0x4D; 10_000]).unwrap();
    let path = files.path().join("x.bundle");
    std::fs::write(&path, b).unwrap();
    let p = path.to_str().unwrap();
    let out = hermes(&["firmware", "install", p, "--no-reboot", "--esp", dir, "--running", "0.1.0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.starts_with("hermes: "), "{err}");
    assert!(err.contains("refuses every bundle") || err.contains("is signed by key"), "{err}");
    // Garbage.
    std::fs::write(&path, b"not a bundle at all, just text").unwrap();
    let out = hermes(&["firmware", "install", p, "--no-reboot", "--esp", dir, "--running", "0.1.0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not an update bundle") || err.contains("refuses every bundle"), "{err}");
    // A reboot is only possible on the appliance: refused before anything else.
    let out = hermes(&["firmware", "install", p, "--esp", dir, "--running", "0.1.0"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-reboot"));
    // Not an ESP.
    let out = hermes(&["firmware", "status", "--esp", files.path().to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a Hermes EFI system partition"));
    assert_eq!(names(esp.path()), ["hermes-0.1.0.efi"]);
}
