//! End-to-end tests of the admin commands (`hermes domain ...`, `hermes account ...`) against
//! the real binary on a temporary data folder. No service runs: these commands work on the
//! directory directly.
#![allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn hermes(data: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hermes"))
        .arg("--data")
        .arg(data)
        .args(args)
        .env_remove("HERMES_DATA")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        // The command may refuse before reading its input (then the pipe is closed).
        let _ = pipe.write_all(text.as_bytes());
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn ok(data: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let out = hermes(data, args, stdin);
    assert!(out.status.success(), "hermes {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Fails with exit code 1 and one `hermes: ...` line containing `want`; never a panic.
fn fails(data: &Path, args: &[&str], stdin: Option<&str>, want: &str) {
    let out = hermes(data, args, stdin);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "hermes {args:?}: {err}");
    assert!(err.starts_with("hermes: ") && err.contains(want), "hermes {args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "one line expected: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn domain_and_account_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");

    fails(&data, &["account", "list"], None, "no data folder");
    ok(&data, &["domain", "add", "Example.ORG"], None);
    fails(&data, &["domain", "add", "example.org"], None, "already exists");
    fails(&data, &["domain", "add", "bad..name"], None, "invalid domain");
    assert_eq!(ok(&data, &["domain", "list"], None), "example.org\n");

    let out =
        ok(&data, &["account", "add", "Alice@Example.org", "--password-stdin", "--quota", "500M"], Some("s3cret\n"));
    assert!(out.contains("added alice@example.org (quota 500M"), "{out}");
    fails(&data, &["account", "add", "alice@example.org", "--password-stdin"], Some("x\n"), "already exists");
    fails(&data, &["account", "add", "bob@example.org", "--password-stdin"], Some("\n"), "must not be empty");
    fails(&data, &["account", "add", "bob@nowhere.org", "--password-stdin"], Some("x\n"), "no such domain");
    fails(&data, &["account", "add", "bob+x@example.org", "--password-stdin"], Some("x\n"), "invalid address");
    fails(
        &data,
        &["account", "add", "bob@example.org", "--password-stdin", "--quota", "lots"],
        Some("x\n"),
        "invalid size",
    );
    fails(
        &data,
        &["account", "add", "bob@example.org", "--password-hash", "$2y$10$notargon"],
        None,
        "invalid password hash",
    );
    let hash = "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHQxMjM0NTY3OA$ZNOIrrAHtmQzbCNX391HxJY0DBLY7ofdM/Ba6SOqVxg";
    ok(&data, &["account", "add", "bob@example.org", "--password-hash", hash], None);

    let list = ok(&data, &["account", "list"], None);
    let lines: Vec<_> = list.lines().collect();
    assert_eq!(lines.len(), 3, "{list}");
    assert!(lines[1].starts_with("alice@example.org") && lines[1].contains("500M"), "{list}");
    assert!(lines[2].starts_with("bob@example.org") && lines[2].contains("1G"), "{list}");
    assert!(!list.contains("argon2"), "hashes are never printed: {list}");

    ok(&data, &["account", "quota", "alice@example.org", "2G"], None);
    ok(&data, &["account", "passwd", "alice@example.org", "--password-stdin"], Some("n3w\n"));
    fails(&data, &["account", "passwd", "zed@example.org", "--password-stdin"], Some("x\n"), "no such account");

    let json: serde_json::Value =
        serde_json::from_str(&ok(&data, &["account", "list", "--json", "--domain", "example.org"], None)).unwrap();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["address"], "alice@example.org");
    assert_eq!(rows[0]["quota_bytes"], 2u64 << 30);
    assert!(rows[0].get("password_hash").is_none());

    // The CLI's changes are what the directory library (the server's view) sees.
    let dir = hermes_core::directory::Directory::open(&hermes_core::paths::DataDir::new(&data)).unwrap();
    let pw = |s: &str| hermes_core::secret::Secret::new(s.to_string());
    dir.authenticate("alice@example.org", &pw("n3w")).unwrap();
    assert!(dir.authenticate("alice@example.org", &pw("s3cret")).is_err());
    dir.authenticate("bob@example.org", &pw("password")).unwrap();

    fails(&data, &["domain", "del", "example.org"], None, "still has accounts");
    ok(&data, &["account", "del", "alice@example.org"], None);
    ok(&data, &["account", "del", "bob@example.org"], None);
    fails(&data, &["account", "del", "bob@example.org"], None, "no such account");
    ok(&data, &["domain", "del", "example.org"], None);
    assert_eq!(ok(&data, &["domain", "list"], None), "");
}

#[test]
fn import_file() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let hash = "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHQxMjM0NTY3OA$ZNOIrrAHtmQzbCNX391HxJY0DBLY7ofdM/Ba6SOqVxg";
    let file = tmp.path().join("accounts.tsv");
    std::fs::write(&file, format!("# migrated\na@one.org\t{hash}\t2G\n\nb@two.org\t{hash}\nbroken\n")).unwrap();
    let out = hermes(&data, &["account", "import", file.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("accounts.tsv:5: expected address<TAB>") && err.contains("no such domain: one.org"), "{err}");

    let out = hermes(
        &data,
        &["account", "import", "--create-domains", "-"],
        Some(&format!("a@one.org\t{hash}\t2G\nb@two.org\t{hash}\n")),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported 2 accounts; 0 failed"));
    let list = ok(&data, &["account", "list"], None);
    assert!(list.contains("a@one.org") && list.contains("2G") && list.contains("b@two.org"), "{list}");
}

#[test]
fn bad_usage_and_missing_supervisor() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // Neither password source: a usage error (clap exits 2), not a panic.
    let out = hermes(&data, &["account", "add", "a@b.org"], None);
    assert_eq!(out.status.code(), Some(2));
    let out = hermes(&data, &["status"], None);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not running"));
    // HERMES_DATA is honoured.
    let out = Command::new(env!("CARGO_BIN_EXE_hermes"))
        .args(["domain", "add", "env.example"])
        .env("HERMES_DATA", &data)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(ok(&data, &["domain", "list"], None), "env.example\n");
}
