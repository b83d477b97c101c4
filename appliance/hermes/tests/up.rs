//! End-to-end tests of `hermes up`, the host-mode supervisor, with the real store service:
//! start on kernel-chosen ports, endpoints.json, status, a second supervisor refused, a
//! `kill -9`ed store restarted (new pid, endpoints rewritten), and a clean SIGTERM shutdown.
#![allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Generous: a debug build on a busy two-core machine.
const DEADLINE: Duration = Duration::from_secs(60);

struct Supervisor {
    child: Child,
    data: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // A failed test must not leave a supervisor (and its store) behind.
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

fn start(config: &str) -> Supervisor {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("config")).unwrap();
    std::fs::write(data.join("config/hermes.toml"), config).unwrap();
    let log = std::fs::File::create(tmp.path().join("up.log")).unwrap();
    let out = std::fs::File::create(tmp.path().join("up.out")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_hermes"))
        .arg("up")
        .arg("--data")
        .arg(&data)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(log)
        .spawn()
        .unwrap();
    Supervisor { child, data, _tmp: tmp }
}

fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn endpoints(data: &Path) -> Option<serde_json::Map<String, serde_json::Value>> {
    let text = std::fs::read_to_string(data.join("run/endpoints.json")).ok()?;
    serde_json::from_str::<serde_json::Value>(&text).ok()?.as_object().cloned()
}

fn status(data: &Path) -> Option<serde_json::Value> {
    let out =
        Command::new(env!("CARGO_BIN_EXE_hermes")).arg("status").arg("--json").arg("--data").arg(data).output().ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn store_pid(data: &Path) -> Option<u32> {
    let s = status(data)?;
    let store = s["services"].as_array()?.iter().find(|s| s["name"] == "store")?.clone();
    (store["state"] == "running").then(|| store["pid"].as_u64()).flatten().map(|p| p as u32)
}

fn imap_greeting(addr: &str) -> String {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line
}

const PORT_ZERO: &str = "[imap]\nport = 0\ntls_port = 0\nplaintext_auth_on_loopback = true\n[pop3]\nport = 0\ntls_port = 0\n[lmtp]\nport = 0\n[managesieve]\nport = 0\n[admin]\nport = 0\n[router]\nsmtp_port = 0\nsubmission_port = 0\nsubmissions_port = 0\n";

#[test]
fn up_restart_and_clean_shutdown() {
    let mut sup = start(PORT_ZERO);
    let data = sup.data.clone();

    let first = wait_until("endpoints.json", || endpoints(&data).filter(|e| e.contains_key("imap")));
    for key in ["imap", "imaps", "lmtp", "lmtp_socket"] {
        assert!(first.contains_key(key), "{key} missing from {first:?}");
    }
    let imap = first["imap"].as_str().unwrap().to_string();
    assert!(imap.starts_with("127.0.0.1:") && !imap.ends_with(":0"), "{imap}");
    assert!(imap_greeting(&imap).starts_with("* OK"));
    assert!(data.join("tls/cert.pem").exists() && data.join("tls/key.pem").exists());

    // A second supervisor on the same data folder is refused.
    let second = Command::new(env!("CARGO_BIN_EXE_hermes")).arg("up").arg("--data").arg(&data).output().unwrap();
    assert_eq!(second.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&second.stderr).contains("already running"));

    // kill -9 the store: the supervisor restarts it and rewrites endpoints.json.
    let old_pid = wait_until("store running", || store_pid(&data));
    kill(Pid::from_raw(old_pid as i32), Signal::SIGKILL).unwrap();
    let new_pid = wait_until("store restarted", || store_pid(&data).filter(|&p| p != old_pid));
    let s = status(&data).unwrap();
    let store = s["services"].as_array().unwrap().iter().find(|s| s["name"] == "store").unwrap().clone();
    assert_eq!(store["restarts"], 1);
    assert!(store["last_exit"].as_str().unwrap().contains("SIGKILL"), "{store}");
    let again =
        wait_until("endpoints rewritten", || endpoints(&data).filter(|e| e != &first && e.contains_key("imap")));
    let recorded: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("run/endpoints.d/store.json")).unwrap()).unwrap();
    assert_eq!(recorded["pid"], new_pid);
    assert!(imap_greeting(again["imap"].as_str().unwrap()).starts_with("* OK"));

    // SIGTERM: children stopped, endpoints removed, exit 0.
    kill(Pid::from_raw(sup.child.id() as i32), Signal::SIGTERM).unwrap();
    let status = wait_until("supervisor exit", || sup.child.try_wait().unwrap());
    assert_eq!(status.code(), Some(0));
    assert!(!data.join("run/endpoints.json").exists());
    assert!(kill(Pid::from_raw(new_pid as i32), None).is_err(), "store still running after shutdown");

    // Every line the supervisor logged is JSON.
    let log = std::fs::read_to_string(data.parent().unwrap().join("up.log")).unwrap();
    for line in log.lines() {
        assert!(serde_json::from_str::<serde_json::Value>(line).is_ok(), "not JSON: {line}");
    }
    let out = std::fs::read_to_string(data.parent().unwrap().join("up.out")).unwrap();
    assert!(out.contains("hermes: ready"), "{out}");
}

#[test]
fn invalid_config_exits_2_with_every_error() {
    let mut sup = start("[server]\nlisten = \"nowhere\"\n[store]\nzstd_level = 99\n");
    let status = wait_until("supervisor exit", || sup.child.try_wait().unwrap());
    assert_eq!(status.code(), Some(2));
    let log = std::fs::read_to_string(sup.data.parent().unwrap().join("up.log")).unwrap();
    assert!(log.contains("server.listen") && log.contains("store.zstd_level"), "{log}");
}

#[test]
fn sigint_stops_cleanly() {
    let mut sup = start(PORT_ZERO);
    let data = sup.data.clone();
    wait_until("endpoints.json", || endpoints(&data).filter(|e| e.contains_key("imap")));
    let pid = wait_until("store running", || store_pid(&data));
    kill(Pid::from_raw(sup.child.id() as i32), Signal::SIGINT).unwrap();
    let status = wait_until("supervisor exit", || sup.child.try_wait().unwrap());
    assert_eq!(status.code(), Some(0));
    assert!(kill(Pid::from_raw(pid as i32), None).is_err(), "store still running after shutdown");
    assert!(!data.join("run/endpoints.json").exists() && !data.join("run/control.sock").exists());
}
