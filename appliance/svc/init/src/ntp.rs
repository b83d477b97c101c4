//! Time synchronisation: an SNTPv4 client (RFC 4330, RFC 5905 client mode) over the packet
//! codec in `hermes_proto::ntp`.
//!
//! Servers come from `DATA/config/network.toml` (`ntp = [...]`, re-read at every poll), else
//! from the DHCP leases' option 42. Each poll asks every server once ([`sync`]), keeps the best
//! answer (lowest stratum, then lowest round-trip delay) and, in init's loop only
//! ([`run`], [`poll_and_apply`]), steps the clock (clock_settime) when it is off by more than
//! [`STEP_THRESHOLD`] and slews it (adjtime) otherwise. Polls repeat every [`MIN_POLL`] doubling
//! to [`MAX_POLL`] while they succeed; a failed poll falls back to [`MIN_POLL`] and doubles
//! again with each failure. A RATE kiss-o'-death doubles the interval; DENY or RSTR drops the
//! server until `network.toml` changes.
//!
//! What it is not: an NTP daemon. One sample per server per poll, no clock filter, no
//! frequency discipline (the kernel's adjtime slew does the rest), no serving time to others,
//! no authentication (NTS).
//!
//! Invariants: [`sync`] measures and never touches the clock (tests run it on the host);
//! only [`apply`] changes it, called from init's loop and the control socket's `time_sync`;
//! an answer is believed only with our random cookie as its origin; every exchange has a
//! deadline ([`QUERY_TIMEOUT`]); one poll at a time ([`POLL_LOCK`]).

use hermes_core::network::NetworkConfig;
use hermes_proto::ntp::{self, Kiss, NtpError, Timestamp};
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Shortest interval between polls (RFC 5905's MINPOLL, 2^6 s).
pub const MIN_POLL: Duration = Duration::from_secs(64);
/// Longest interval between polls (2^10 s: a clock slewed at boot drifts well under a second
/// in that time).
pub const MAX_POLL: Duration = Duration::from_secs(1024);
/// How long one server may take to answer.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// Offsets larger than this are stepped; smaller ones slewed (ntpd steps above 128 ms, chrony's
/// `makestep` is usually 1 s; half a second is too much for mail timestamps to drift towards).
pub const STEP_THRESHOLD_NANOS: i64 = 500_000_000;
/// [`STEP_THRESHOLD_NANOS`] as a duration, for the docs.
pub const STEP_THRESHOLD: Duration = Duration::from_millis(500);
/// The earliest and latest time `time_set` accepts (2020-01-01 to 2100-01-01).
pub const MANUAL_RANGE: std::ops::Range<i64> = 1_577_836_800..4_102_444_800;

/// One poll at a time: init's loop and the control socket's `time_sync`.
pub static POLL_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What the status says.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Status {
    /// The servers polled, as written.
    pub servers: Vec<String>,
    /// `network.toml`, `dhcp` or `none`.
    pub source: &'static str,
    /// The last successful poll (Unix seconds).
    pub last_sync: Option<i64>,
    /// The server that answered best then.
    pub server: Option<String>,
    pub offset_ms: Option<f64>,
    pub delay_ms: Option<f64>,
    pub stratum: Option<u8>,
    /// `stepped`, `slewed` (or `measured` when nothing was applied).
    pub action: Option<&'static str>,
    /// Why the last poll failed (cleared by a success).
    pub error: Option<String>,
    /// The last poll (success or not).
    pub last_poll: Option<i64>,
    pub poll_interval_secs: u64,
    /// Servers dropped after a DENY or RSTR kiss-o'-death.
    pub denied: Vec<String>,
}

#[derive(Debug, Default)]
struct Shared {
    status: Status,
    dhcp: std::collections::BTreeMap<String, Vec<Ipv4Addr>>,
    denied: BTreeSet<String>,
    /// The `ntp` list the denied set belongs to (a new list clears it).
    denied_for: Vec<String>,
    rate_limited: bool,
}

static SHARED: Mutex<Option<Shared>> = Mutex::new(None);

fn with<T>(f: impl FnOnce(&mut Shared) -> T) -> T {
    let mut g = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    f(g.get_or_insert_with(Shared::default))
}

/// The status now.
pub fn status() -> Status {
    with(|s| {
        let mut st = s.status.clone();
        st.denied = s.denied.iter().cloned().collect();
        st
    })
}

/// Records option 42 of `iface`'s DHCP lease (empty: none).
pub fn set_dhcp_servers(iface: &str, servers: Vec<Ipv4Addr>) {
    with(|s| {
        s.dhcp.insert(iface.to_string(), servers);
    });
}

/// The servers to poll and where they come from: `network.toml`'s `ntp`, else DHCP's.
pub fn configured(network_toml: &Path) -> (Vec<String>, &'static str) {
    let from_file = std::fs::read_to_string(network_toml)
        .ok()
        .and_then(|t| NetworkConfig::parse(&t).ok())
        .map(|c| c.ntp)
        .unwrap_or_default();
    if !from_file.is_empty() {
        return (from_file, "network.toml");
    }
    let dhcp: Vec<String> = with(|s| {
        let mut v: Vec<String> = s.dhcp.values().flatten().map(|a| a.to_string()).collect();
        v.dedup();
        v
    });
    if dhcp.is_empty() { (Vec::new(), "none") } else { (dhcp, "dhcp") }
}

fn random_cookie() -> std::io::Result<u64> {
    use std::io::Read;
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(u64::from_ne_bytes(b))
}

fn now_ts() -> Timestamp {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    Timestamp::from_unix(d.as_secs(), d.subsec_nanos())
}

/// One server's answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Answer {
    pub addr: SocketAddr,
    pub stratum: u8,
    pub offset_nanos: i64,
    pub delay_nanos: i64,
}

/// Why a server gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    Io(String),
    #[error("no answer within {} s", QUERY_TIMEOUT.as_secs())]
    Timeout,
    #[error("{0}")]
    Refused(#[from] NtpError),
}

/// Asks `addr` once: a request with a fresh random cookie, then answers until one from `addr`
/// carries the cookie or the deadline passes (stray or spoofed packets are skipped).
pub fn query(addr: SocketAddr, timeout: Duration) -> Result<Answer, QueryError> {
    let io = |e: std::io::Error| QueryError::Io(e.to_string());
    let bind: SocketAddr = if addr.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let socket = UdpSocket::bind(bind).map_err(io)?;
    socket.connect(addr).map_err(io)?; // the kernel drops datagrams from other sources
    let cookie = random_cookie().map_err(io)?;
    let until = std::time::Instant::now() + timeout;
    let t1 = now_ts();
    socket.send(&ntp::request(cookie)).map_err(io)?;
    let mut buf = [0u8; 512];
    let mut last_refusal = None;
    loop {
        let Some(left) = until.checked_duration_since(std::time::Instant::now()) else {
            return Err(last_refusal.map(QueryError::Refused).unwrap_or(QueryError::Timeout));
        };
        socket.set_read_timeout(Some(left.max(Duration::from_millis(1)))).map_err(io)?;
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(e) => return Err(io(e)),
        };
        let t4 = now_ts();
        match ntp::parse_reply(&buf[..n], cookie) {
            Ok(reply) => {
                let s = ntp::measure(t1, &reply, t4);
                return Ok(Answer {
                    addr,
                    stratum: reply.stratum,
                    offset_nanos: s.offset_nanos,
                    delay_nanos: s.delay_nanos,
                });
            }
            // Somebody else's answer: keep waiting for ours.
            Err(NtpError::OriginMismatch) => last_refusal = Some(NtpError::OriginMismatch),
            Err(e) => return Err(QueryError::Refused(e)),
        }
    }
}

/// What one poll of every server found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncResult {
    /// The best answer (lowest stratum, then lowest delay).
    pub best: Option<(String, Answer)>,
    /// Servers that gave no usable answer, with why.
    pub errors: Vec<(String, QueryError)>,
}

/// Asks every server (resolving names) and picks the best answer. Never touches the clock.
pub fn sync(servers: &[String], timeout: Duration) -> SyncResult {
    let mut out = SyncResult::default();
    for server in servers {
        let addrs: Vec<SocketAddr> = match hermes_core::network::ntp_server(server) {
            Ok((host, port)) => match (host.as_str(), port).to_socket_addrs() {
                Ok(a) => a.take(4).collect(),
                Err(e) => {
                    out.errors.push((server.clone(), QueryError::Io(format!("cannot resolve {host}: {e}"))));
                    continue;
                }
            },
            Err(e) => {
                out.errors.push((server.clone(), QueryError::Io(e)));
                continue;
            }
        };
        let mut last_err = QueryError::Io("no address".into());
        let mut got = None;
        for addr in addrs {
            match query(addr, timeout) {
                Ok(a) => {
                    got = Some(a);
                    break;
                }
                Err(e) => last_err = e,
            }
        }
        match got {
            Some(a) => {
                let better =
                    out.best.as_ref().is_none_or(|(_, b)| (a.stratum, a.delay_nanos) < (b.stratum, b.delay_nanos));
                if better {
                    out.best = Some((server.clone(), a));
                }
            }
            None => out.errors.push((server.clone(), last_err)),
        }
    }
    out
}

/// Applies `offset_nanos` to the system clock: a step above [`STEP_THRESHOLD_NANOS`], else a
/// slew. Returns what it did.
pub fn apply(offset_nanos: i64) -> std::io::Result<&'static str> {
    if offset_nanos.abs() > STEP_THRESHOLD_NANOS {
        let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME).map_err(std::io::Error::from)?;
        let total = i128::from(now.tv_sec()) * 1_000_000_000 + i128::from(now.tv_nsec()) + i128::from(offset_nanos);
        let target = nix::sys::time::TimeSpec::new(
            total.div_euclid(1_000_000_000) as libc::time_t,
            total.rem_euclid(1_000_000_000) as libc::c_long,
        );
        nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, target).map_err(std::io::Error::from)?;
        Ok("stepped")
    } else {
        crate::sys::slew_clock(offset_nanos)?;
        Ok("slewed")
    }
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// One poll: the configured servers (minus denied ones), [`sync`], then [`apply`] the best
/// answer and record the status. Returns the status after the poll.
pub async fn poll_and_apply(network_toml: PathBuf) -> Status {
    let _guard = POLL_LOCK.lock().await;
    let (servers, source) = configured(&network_toml);
    let usable: Vec<String> = with(|s| {
        if s.denied_for != servers {
            s.denied.clear();
            s.denied_for = servers.clone();
        }
        servers.iter().filter(|x| !s.denied.contains(*x)).cloned().collect()
    });
    let result = if usable.is_empty() {
        None
    } else {
        tokio::task::spawn_blocking(move || sync(&usable, QUERY_TIMEOUT)).await.ok()
    };
    let applied = match result.as_ref().and_then(|r| r.best.as_ref()) {
        Some((_, a)) => Some(
            tokio::task::spawn_blocking({
                let off = a.offset_nanos;
                move || apply(off)
            })
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r),
        ),
        None => None,
    };
    with(|s| {
        let st = &mut s.status;
        st.servers = servers.clone();
        st.source = source;
        st.last_poll = Some(unix_now());
        s.rate_limited = false;
        if let Some(r) = &result {
            for (server, e) in &r.errors {
                match e {
                    QueryError::Refused(NtpError::Kiss(Kiss::Deny)) => {
                        crate::log::say(&format!("time: {server} refused us (kiss-o'-death DENY): not asked again"));
                        s.denied.insert(server.clone());
                    }
                    QueryError::Refused(NtpError::Kiss(Kiss::Rate)) => s.rate_limited = true,
                    _ => {}
                }
            }
        }
        let st = &mut s.status;
        match (&result, applied) {
            (None, _) if servers.is_empty() => {
                st.error = Some("no NTP server is configured (network.toml `ntp`, or DHCP option 42)".into())
            }
            (None, _) => st.error = Some("every NTP server refused us (DENY)".into()),
            (Some(r), Some(Ok(action))) => {
                if let Some((server, a)) = &r.best {
                    st.last_sync = Some(unix_now());
                    st.server = Some(server.clone());
                    st.offset_ms = Some(a.offset_nanos as f64 / 1e6);
                    st.delay_ms = Some(a.delay_nanos as f64 / 1e6);
                    st.stratum = Some(a.stratum);
                    st.action = Some(action);
                    st.error = None;
                    if action == "stepped" {
                        crate::log::say(&format!(
                            "time: clock stepped by {:.3} s from {server} (stratum {})",
                            a.offset_nanos as f64 / 1e9,
                            a.stratum
                        ));
                    }
                }
            }
            (Some(_), Some(Err(e))) => st.error = Some(format!("cannot set the clock: {e}")),
            (Some(r), None) => {
                st.error = Some(r.errors.iter().map(|(s, e)| format!("{s}: {e}")).collect::<Vec<_>>().join("; "))
            }
        }
    });
    status()
}

/// Sets the clock by hand (`time_set`): refused while an NTP server is configured, or for a
/// time outside [`MANUAL_RANGE`].
pub fn set_manually(network_toml: &Path, unix: i64) -> Result<(), String> {
    let (servers, _) = configured(network_toml);
    if !servers.is_empty() {
        return Err(format!(
            "the clock follows NTP ({}): remove the NTP servers to set it by hand",
            servers.join(", ")
        ));
    }
    if !MANUAL_RANGE.contains(&unix) {
        return Err(format!("{unix} is outside the years 2020 to 2100"));
    }
    nix::time::clock_settime(
        nix::time::ClockId::CLOCK_REALTIME,
        nix::sys::time::TimeSpec::new(unix as libc::time_t, 0),
    )
    .map_err(|e| format!("cannot set the clock: {e}"))?;
    crate::log::say(&format!("time: clock set by hand to {unix}"));
    Ok(())
}

/// The next interval: doubling from [`MIN_POLL`] to [`MAX_POLL`] on success; after a failure,
/// back to [`MIN_POLL`] unless the previous poll failed too (then doubling); a RATE kiss doubles.
pub fn next_interval(previous: Duration, ok: bool, previous_ok: bool, rate_limited: bool) -> Duration {
    let doubled = (previous * 2).clamp(MIN_POLL, MAX_POLL);
    if rate_limited || (ok && previous_ok) || (!ok && !previous_ok) { doubled } else { MIN_POLL }
}

/// Init's time loop: poll at boot (stepping the clock if it is far off), then every
/// [`MIN_POLL`] to [`MAX_POLL`]. Runs for the life of the box.
pub async fn run(network_toml: PathBuf) {
    let mut interval = MIN_POLL;
    let mut previous_ok = true;
    let mut first = true;
    loop {
        let st = poll_and_apply(network_toml.clone()).await;
        let ok = st.error.is_none();
        if first || ok != previous_ok {
            match (&st.error, st.offset_ms) {
                (None, Some(off)) => crate::log::say(&format!(
                    "time: synchronised with {} (offset {off:.1} ms)",
                    st.server.as_deref().unwrap_or("?")
                )),
                (Some(e), _) => crate::log::say(&format!("time: {e}")),
                _ => {}
            }
        }
        let rate_limited = with(|s| s.rate_limited);
        interval = if first { MIN_POLL } else { next_interval(interval, ok, previous_ok, rate_limited) };
        first = false;
        previous_ok = ok;
        with(|s| s.status.poll_interval_secs = interval.as_secs());
        tokio::time::sleep(interval).await;
    }
}

fn time_json(data: &hermes_core::paths::DataDir, st: &Status) -> serde_json::Value {
    let (servers, _) = configured(&data.config_dir().join("network.toml"));
    let mut v = serde_json::to_value(st).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("now".into(), serde_json::json!(unix_now()));
        o.insert("manual_allowed".into(), serde_json::json!(servers.is_empty()));
        o.insert("configured".into(), serde_json::json!(servers));
    }
    serde_json::json!({"ok": true, "time": v})
}

/// `time_status`.
pub fn op_status(data: &hermes_core::paths::DataDir) -> serde_json::Value {
    time_json(data, &status())
}

/// `time_sync`: polls now (and applies); the answer carries the result, `ok: false` with the
/// error when no server answered usably.
pub async fn op_sync(data: &hermes_core::paths::DataDir) -> serde_json::Value {
    let st = poll_and_apply(data.config_dir().join("network.toml")).await;
    match &st.error {
        None => time_json(data, &st),
        Some(e) => {
            let mut v = time_json(data, &st);
            v["ok"] = serde_json::json!(false);
            v["error"] = serde_json::json!(e);
            v
        }
    }
}

/// `time_set`.
pub async fn op_set(data: &hermes_core::paths::DataDir, unix: i64) -> serde_json::Value {
    let path = data.config_dir().join("network.toml");
    let result = {
        let _guard = POLL_LOCK.lock().await;
        let p = path.clone();
        tokio::task::spawn_blocking(move || set_manually(&p, unix)).await.unwrap_or_else(|e| Err(e.to_string()))
    };
    match result {
        Ok(()) => time_json(data, &status()),
        Err(e) => serde_json::json!({"ok": false, "error": e}),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;
    use std::process::{Child, Command};

    /// A real NTP server on loopback: Debian's chronyd, serving its local clock at stratum 8,
    /// not touching the host's clock (`-x`).
    struct Chrony {
        child: Child,
        _dir: tempfile::TempDir,
        _serial: std::sync::MutexGuard<'static, ()>,
    }

    /// One chronyd at a time: they share the port.
    static CHRONY_PORT: Mutex<()> = Mutex::new(());

    impl Drop for Chrony {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    const PORT: u16 = 11123;

    fn chrony() -> Chrony {
        let serial = CHRONY_PORT.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("chrony.conf");
        std::fs::write(
            &conf,
            format!(
                "port {PORT}\nbindaddress 127.0.0.1\nallow 127.0.0.1\nlocal stratum 8\ncmdport 0\npidfile {d}/chronyd.pid\ndriftfile {d}/drift\n",
                d = dir.path().display()
            ),
        )
        .unwrap();
        // chronyd drops to its own user; let it write the pid and drift files.
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        let child = Command::new("chronyd")
            .args(["-d", "-x", "-f"])
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chronyd (Debian package chrony) must be installed: apt-get install chrony");
        let c = Chrony { child, _dir: dir, _serial: serial };
        // Wait until it answers.
        let addr: SocketAddr = ([127, 0, 0, 1], PORT).into();
        let mut c = c;
        for _ in 0..100 {
            if query(addr, Duration::from_millis(100)).is_ok() {
                return c;
            }
            if let Ok(Some(exit)) = c.child.try_wait() {
                panic!("chronyd exited: {exit}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("chronyd did not answer on 127.0.0.1:{PORT}");
    }

    /// Against a real chronyd: the offset is near zero (same clock), the delay small and the
    /// stratum usable (chrony's `local stratum 8`); the clock is not touched.
    #[test]
    fn sync_against_a_real_chronyd_measures_a_near_zero_offset() {
        let _c = chrony();
        // A port nobody answers on: one the kernel just handed out and took back.
        let closed = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let servers = vec![format!("127.0.0.1:{PORT}"), format!("localhost:{closed}")];
        let r = sync(&servers, Duration::from_millis(500));
        let (server, best) = r.best.clone().unwrap();
        assert_eq!(server, servers[0]);
        assert!(best.offset_nanos.abs() < 50_000_000, "{best:?}");
        assert!((0..100_000_000).contains(&best.delay_nanos), "{best:?}");
        assert!((1..=15).contains(&best.stratum), "{best:?}");
        // The wrong port gives no answer (or a refusal), never a sample.
        assert_eq!(r.errors.len(), 1, "{r:?}");
        assert_eq!(r.errors[0].0, servers[1]);
    }

    /// A spoofer who answers from the right address but without our cookie is not believed:
    /// here a UDP "server" on loopback that replays chrony's answer to another request.
    #[test]
    fn an_answer_with_a_wrong_origin_is_refused() {
        let _c = chrony();
        // Get a genuine answer for some other cookie.
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.connect(("127.0.0.1", PORT)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.send(&ntp::request(0x1111_2222_3333_4444)).unwrap();
        let mut genuine = [0u8; 128];
        let n = s.recv(&mut genuine).unwrap();
        let genuine = genuine[..n].to_vec();
        assert!(ntp::parse_reply(&genuine, 0x1111_2222_3333_4444).is_ok());
        // A fake server that replays it to whoever asks.
        let fake = UdpSocket::bind("127.0.0.1:0").unwrap();
        let fake_addr = fake.local_addr().unwrap();
        let replay = std::thread::spawn(move || {
            let mut b = [0u8; 128];
            let (_, from) = fake.recv_from(&mut b).unwrap();
            fake.send_to(&genuine, from).unwrap();
        });
        let e = query(fake_addr, Duration::from_millis(500)).unwrap_err();
        assert_eq!(e, QueryError::Refused(NtpError::OriginMismatch));
        replay.join().unwrap();
    }

    /// The control socket's time and network requests, and `time_status`'s answer on a box
    /// with NTP configured (manual setting not allowed).
    #[test]
    fn control_requests_parse_and_status_answers() {
        use crate::control::Request;
        let parse = |t: &str| serde_json::from_str::<Request>(t);
        assert_eq!(parse(r#"{"op":"time_status"}"#).unwrap(), Request::TimeStatus);
        assert_eq!(parse(r#"{"op":"time_sync"}"#).unwrap(), Request::TimeSync);
        assert_eq!(parse(r#"{"op":"time_set","unix":1800000000}"#).unwrap(), Request::TimeSet { unix: 1_800_000_000 });
        assert!(parse(r#"{"op":"time_set"}"#).is_err());
        assert!(parse(r#"{"op":"time_set","unix":"soon"}"#).is_err());
        assert_eq!(parse(r#"{"op":"network_status"}"#).unwrap(), Request::NetworkStatus);
        assert_eq!(parse(r#"{"op":"network_apply"}"#).unwrap(), Request::NetworkApply);
        assert_eq!(parse(r#"{"op":"network_confirm"}"#).unwrap(), Request::NetworkConfirm);
        let dir = tempfile::tempdir().unwrap();
        let data = hermes_core::paths::DataDir::new(dir.path());
        std::fs::create_dir_all(data.config_dir()).unwrap();
        std::fs::write(data.config_dir().join("network.toml"), "ntp = [\"192.0.2.1\"]\n").unwrap();
        let v = op_status(&data);
        assert_eq!(v["ok"], true, "{v}");
        assert_eq!(v["time"]["manual_allowed"], false, "{v}");
        assert_eq!(v["time"]["configured"][0], "192.0.2.1", "{v}");
        assert!(v["time"]["now"].as_i64().unwrap() > 1_600_000_000, "{v}");
    }

    /// A server that answers our request, with our cookie as origin, as `build` says.
    fn fake_server(build: impl FnOnce(&[u8]) -> Vec<u8> + Send + 'static) -> (SocketAddr, std::thread::JoinHandle<()>) {
        let fake = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = fake.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let mut b = [0u8; 128];
            let (n, from) = fake.recv_from(&mut b).unwrap();
            fake.send_to(&build(&b[..n]), from).unwrap();
        });
        (addr, t)
    }

    /// A kiss-o'-death that carries our cookie is believed and reported with its code (the
    /// loop then drops a DENY server and slows down on RATE); a stratum-16 or unsynchronised
    /// answer is refused.
    #[test]
    fn kisses_and_unsynchronised_servers_are_reported() {
        let answer = |stratum: u8, leap: u8, refid: &'static [u8; 4]| {
            move |req: &[u8]| {
                let mut p = vec![0u8; 48];
                p[0] = (leap << 6) | (4 << 3) | 4;
                p[1] = stratum;
                p[12..16].copy_from_slice(refid);
                p[24..32].copy_from_slice(&req[40..48]);
                p[32..40].copy_from_slice(&now_ts().0.to_be_bytes());
                p[40..48].copy_from_slice(&now_ts().0.to_be_bytes());
                p
            }
        };
        let cases: [(u8, u8, &'static [u8; 4], NtpError); 4] = [
            (0, 0, b"DENY", NtpError::Kiss(Kiss::Deny)),
            (0, 0, b"RATE", NtpError::Kiss(Kiss::Rate)),
            (16, 0, b"XFAC", NtpError::Stratum(16)),
            (2, 3, b"GPS\0", NtpError::Unsynchronised),
        ];
        for (stratum, leap, refid, want) in cases {
            let (addr, t) = fake_server(answer(stratum, leap, refid));
            assert_eq!(query(addr, Duration::from_secs(2)), Err(QueryError::Refused(want)));
            t.join().unwrap();
        }
        // And a good one from the same fake is measured (same clock: offset near zero).
        let (addr, t) = fake_server(answer(3, 0, b"GPS\0"));
        let a = query(addr, Duration::from_secs(2)).unwrap();
        assert_eq!(a.stratum, 3);
        assert!(a.offset_nanos.abs() < 50_000_000, "{a:?}");
        t.join().unwrap();
    }

    #[test]
    fn intervals_double_and_fall_back() {
        assert_eq!(next_interval(MIN_POLL, true, true, false), Duration::from_secs(128));
        assert_eq!(next_interval(MAX_POLL, true, true, false), MAX_POLL);
        assert_eq!(next_interval(Duration::from_secs(512), false, true, false), MIN_POLL);
        assert_eq!(next_interval(MIN_POLL, false, false, false), Duration::from_secs(128));
        assert_eq!(next_interval(MIN_POLL, true, false, false), MIN_POLL);
        assert_eq!(next_interval(MIN_POLL, false, true, true), Duration::from_secs(128));
    }

    #[test]
    fn servers_come_from_the_file_else_from_dhcp() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("network.toml");
        std::fs::write(&file, "ntp = [\"192.0.2.1\", \"ntp.example.net:1123\"]\n").unwrap();
        assert_eq!(configured(&file), (vec!["192.0.2.1".into(), "ntp.example.net:1123".into()], "network.toml"));
        std::fs::write(&file, "").unwrap();
        set_dhcp_servers("test0", vec![Ipv4Addr::new(192, 0, 2, 123)]);
        assert_eq!(configured(&file), (vec!["192.0.2.123".into()], "dhcp"));
        set_dhcp_servers("test0", Vec::new());
        assert_eq!(configured(&file).1, "none");
        // Manual setting is refused while NTP is configured (and nothing touches the clock).
        std::fs::write(&file, "ntp = [\"192.0.2.1\"]\n").unwrap();
        assert!(set_manually(&file, 1_800_000_000).unwrap_err().contains("follows NTP"));
    }
}
