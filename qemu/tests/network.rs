//! Issue 7's network and time settings on the appliance, end to end under QEMU (direct boot,
//! RAM `/data`): the admin API over HTTPS (the forwarded port 8443) drives init's control socket.
//!
//! 1. At boot eth0 takes DHCP (QEMU's user network: 10.0.2.15/24 via 10.0.2.2) and init's time
//!    loop says no NTP server is configured; `GET /api/system/network` shows eth0 on DHCP with
//!    its lease address, `GET /api/system/time` allows a manual setting.
//! 2. `PUT /api/system/network` with a static IPv4 (the same address, so the forwarded port
//!    keeps working), an extra IPv6 address and an NTP server: init applies it at once (eth0
//!    static, the IPv6 address there, DHCP stopped) and, unconfirmed, restores the previous
//!    settings (no file: DHCP) after 120 s.
//! 3. The same change again, confirmed: it stays. `POST /api/system/time/sync` then asks a real
//!    chronyd on the host (QEMU's 10.0.2.2 is the host's loopback) and the guest measures a
//!    small offset; a manual setting is refused while NTP is configured.
//!
//! Needs `cargo xtask image` first, QEMU, and Debian's chrony: `#[ignore]`d in a plain
//! `cargo test`. Logs stay in `target/qemu/test-network/`.

#![allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]

use hermes_qemu::https::{Admin, HTTP_TIMEOUT};
use hermes_qemu::{BootConfig, Machine};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const READY_TIMEOUT: Duration = Duration::from_secs(300);
const PASSWORD: &str = "correct-horse-battery";
/// The host's chronyd (not the init unit tests' 11123, which may run at the same time).
const NTP_PORT: u16 = 11124;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A real NTP server on the host's loopback: chronyd serving its clock at stratum 8, not
/// touching the host's clock (`-x`).
struct Chrony(std::process::Child, #[allow(dead_code, reason = "kept until chronyd is gone")] tempfile::TempDir);

impl Drop for Chrony {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chrony() -> Chrony {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("chrony.conf");
    std::fs::write(
        &conf,
        format!(
            "port {NTP_PORT}\nbindaddress 127.0.0.1\nallow 127.0.0.1\nlocal stratum 8\ncmdport 0\npidfile {d}/chronyd.pid\ndriftfile {d}/drift\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let child = std::process::Command::new("chronyd")
        .args(["-d", "-x", "-f"])
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("chronyd (Debian package chrony) must be installed");
    Chrony(child, dir)
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn eth0(network: &serde_json::Value) -> serde_json::Value {
    network["status"]["interfaces"].as_array().unwrap().iter().find(|i| i["name"] == "eth0").unwrap().clone()
}

fn has_address(iface: &serde_json::Value, address: &str, origin: &str) -> bool {
    iface["addresses"].as_array().unwrap().iter().any(|a| a["address"] == address && a["origin"] == origin)
}

/// Polls `GET /api/system/network` until `pred` holds (DHCP may take a moment).
fn network_until(admin: &Admin, what: &str, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (code, body) = admin.get("/api/system/network");
        assert_eq!(code, 200, "{body}");
        let v = json(&body);
        if pred(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: {v:#}");
        std::thread::sleep(Duration::from_secs(2));
    }
}

#[test]
#[ignore = "boots QEMU and waits out the 120 s rollback (minutes under TCG) after `cargo xtask image`; scripts/test.sh runs it with --ignored"]
fn network_changes_apply_live_roll_back_unless_confirmed_and_time_syncs_from_a_real_ntp_server() {
    assert!(hermes_qemu::qemu_available(), "qemu-system-x86_64 is not installed");
    let _ntp = chrony();
    let run = root().join("target/qemu/test-network");
    let _ = std::fs::remove_dir_all(&run);
    let mut cfg = BootConfig::mail_ports(root().join("target/image"), run.clone());
    cfg.forwards.push(("admin".into(), 8443));
    let mut m = Machine::boot(&cfg).unwrap();

    // 1. DHCP at boot; no NTP server.
    // The setup token comes before the network, which comes before ready.
    let token = m.wait_for_line("hermes: admin setup token: ", READY_TIMEOUT).unwrap();
    let token = token.rsplit("admin setup token: ").next().unwrap().trim().to_string();
    let lease = m.wait_for_line("hermes: network: eth0 ", READY_TIMEOUT).unwrap();
    assert!(lease.contains("10.0.2.15/24 via 10.0.2.2 (DHCP"), "{lease}");
    m.wait_for_line("hermes: ready", READY_TIMEOUT).unwrap();
    // Init's time loop starts with the services: its first word may come before or after ready.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !m.tail(1000).contains("hermes: time: no NTP server is configured") {
        assert!(Instant::now() < deadline, "no word from the time loop:\n{}", m.tail(40));
        std::thread::sleep(Duration::from_millis(500));
    }
    let admin = Admin::setup(m.port("admin").unwrap(), &token, PASSWORD);
    let v = network_until(&admin, "eth0 on DHCP", |v| has_address(&eth0(v), "10.0.2.15", "dhcp"));
    let e = eth0(&v);
    assert_eq!(e["mode"], "dhcp", "{e}");
    assert_eq!(e["link"], "up", "{e}");
    assert!(e["mac"].as_str().unwrap().starts_with("52:54:00"), "{e}");
    assert!(e["gateways"].as_array().unwrap().iter().any(|g| g == "10.0.2.2"), "{e}");
    assert!(v["text"].is_null() && v["status_error"].is_null(), "{v}");
    let (code, body) = admin.get("/api/system/time");
    assert_eq!(code, 200, "{body}");
    let t = json(&body);
    assert_eq!(t["source"], "none", "{t}");
    assert_eq!(t["manual_allowed"], true, "{t}");

    // 2. A static change, not confirmed: rolled back after 120 s.
    let change = serde_json::json!({
        "ntp": [format!("10.0.2.2:{NTP_PORT}")],
        "interface": [{"name": "eth0", "ipv4": "10.0.2.15/24", "gateway4": "10.0.2.2", "ipv6": ["fd00:7::5/64"]}],
    });
    let (code, body) = admin.put_json("/api/system/network", &change);
    assert_eq!(code, 200, "{body}\n{}", m.tail(20));
    let r = json(&body);
    assert_eq!(r["applied"], true, "{r}");
    let deadline = r["confirm_before"].as_i64().unwrap();
    m.wait_for_line("hermes: network: new settings applied", Duration::from_secs(30)).unwrap();
    let v = network_until(&admin, "eth0 static", |v| {
        let e = eth0(v);
        e["mode"] == "static" && has_address(&e, "10.0.2.15", "static") && has_address(&e, "fd00:7::5", "static")
    });
    assert_eq!(v["status"]["pending"]["confirm_before"], deadline, "{v}");
    // The page shows the new state and the button with the deadline.
    let (code, page) = admin.get("/system/network");
    assert_eq!(code, 200, "{page}");
    for needle in ["Keep these settings", "action=\"/system/network/confirm\"", "fd00:7::5", "static", "Network now"] {
        assert!(page.contains(needle), "{needle} not on the page");
    }
    assert!(!page.contains("id=\"network-refused\""), "init answered network_status");
    m.wait_for_line("hermes: network: the new settings were not confirmed in time", Duration::from_secs(400)).unwrap();
    let v = network_until(&admin, "back on DHCP", |v| {
        let e = eth0(v);
        e["mode"] == "dhcp" && has_address(&e, "10.0.2.15", "dhcp") && !has_address(&e, "fd00:7::5", "static")
    });
    assert!(v["text"].is_null(), "the file is gone again (there was none): {v}");
    assert!(v["status"]["pending"].is_null(), "{v}");

    // 3. Again, confirmed: it stays; then time from the host's chronyd.
    let (code, body) = admin.put_json("/api/system/network", &change);
    assert_eq!(code, 200, "{body}");
    let (code, body) = admin.post_json("/api/system/network/confirm", &serde_json::json!({}), HTTP_TIMEOUT);
    assert_eq!(code, 200, "{body}");
    m.wait_for_line("hermes: network: new settings confirmed", Duration::from_secs(30)).unwrap();
    let (code, body) = admin.post_json("/api/system/network/confirm", &serde_json::json!({}), HTTP_TIMEOUT);
    assert_eq!(code, 409, "nothing pending any more: {body}");
    let (code, body) = admin.post_json("/api/system/time/sync", &serde_json::json!({}), HTTP_TIMEOUT);
    assert_eq!(code, 200, "{body}\n{}", m.tail(20));
    let t = json(&body);
    assert_eq!(t["source"], "network.toml", "{t}");
    assert_eq!(t["server"], format!("10.0.2.2:{NTP_PORT}"), "{t}");
    assert!((1..=15).contains(&t["stratum"].as_u64().unwrap()), "{t}");
    assert!(t["offset_ms"].as_f64().unwrap().abs() < 5_000.0, "the guest's clock comes from the host's RTC: {t}");
    assert!(t["error"].is_null(), "{t}");
    let (code, body) = admin.put_json("/api/system/time", &serde_json::json!({"unix": 1_900_000_000}));
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("follows NTP"), "{body}");
    std::thread::sleep(Duration::from_secs(3));
    let v = network_until(&admin, "still static", |v| eth0(v)["mode"] == "static");
    assert!(v["status"]["pending"].is_null(), "{v}");
    drop(m);
}
