//! The health service's control socket `run/hw.sock`: request and response types, and a blocking
//! client ([`request`]).
//!
//! What it is: the wire format shared by the service (`hermes serve hw`), the CLI (`hermes hw ...`)
//! and the admin UI. JSON lines, one request per connection: the client writes one [`Request`] line,
//! the service answers one [`Response`] line and closes.
//!
//! ```text
//! {"op":"status"}                                          → {"ok":true,"status":{...}}
//! {"op":"selftest","bay":3,"kind":"short"}                 → {"ok":true,"message":"..."}
//! {"op":"scrub","array":"md0","action":"start"}            → {"ok":true,"message":"..."}
//! {"op":"provision","level":"raid10","bays":[0,1,...],"spares":2}
//! any failure                                              → {"ok":false,"error":"..."}
//! ```
//!
//! What it is not: the models themselves. These types are a stable projection of the internal
//! ones ([`crate::verdict`], [`crate::md`], [`crate::discover`]), so the internals can change
//! without breaking the admin UI. Fields are only ever added (with `#[serde(default)]`), never
//! renamed or removed.
//!
//! Invariants: the client bounds what it reads ([`MAX_RESPONSE`]) and never waits longer than its
//! timeout; the service bounds request lines ([`MAX_REQUEST`]).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The socket's path relative to the data folder.
pub const SOCKET: &str = "run/hw.sock";

/// The socket's path for the data folder `data_root`.
pub fn socket_path(data_root: &Path) -> std::path::PathBuf {
    data_root.join(SOCKET)
}

/// Longest request line the service reads.
pub const MAX_REQUEST: u64 = 4096;
/// Longest response line the client reads (16 bays × reasons + events fit in far less).
pub const MAX_RESPONSE: u64 = 16 * 1024 * 1024;
/// Events kept in the status (newest last).
pub const MAX_EVENTS: usize = 200;
/// Bays in the reference chassis.
pub const BAYS: u16 = 16;

/// One request line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// The whole picture: bays, arrays, recent events.
    Status,
    /// Start a SMART self-test on the disk in `bay`.
    Selftest { bay: u16, kind: SelftestKind },
    /// Start or stop a `check` scrub of an array.
    Scrub { array: String, action: ScrubAction },
    /// Create the data array (destructive: the service refuses bays holding arrays or filesystems,
    /// and the CLI asks for `--yes`).
    Provision {
        level: RaidLevel,
        bays: Vec<u16>,
        #[serde(default)]
        spares: u16,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelftestKind {
    Short,
    Long,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScrubAction {
    Start,
    Stop,
}

/// RAID levels Hermes provisions (only RAID10 today).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RaidLevel {
    Raid10,
}

/// One response line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Present for `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// A human-readable result for actions (selftest, scrub, provision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Response {
    pub fn error(e: impl std::fmt::Display) -> Self {
        Response { ok: false, error: Some(e.to_string()), ..Default::default() }
    }
    pub fn message(m: impl Into<String>) -> Self {
        Response { ok: true, message: Some(m.into()), ..Default::default() }
    }
}

/// Everything the admin sees.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Always one entry per bay, 0..bays, in order (empty bays have `present: false`).
    pub bays: Vec<Bay>,
    pub arrays: Vec<ArrayInfo>,
    /// Recent events, oldest first (at most [`MAX_EVENTS`]).
    pub events: Vec<EventInfo>,
    /// Unix seconds of the last SMART sweep (0 before the first).
    pub sampled_at: i64,
    /// Disks found that have no bay (boot media, USB, excluded, beyond the last bay), with why.
    #[serde(default)]
    pub unmapped: Vec<UnmappedDisk>,
    /// What the last SMART sweep cost (`None` before the first).
    #[serde(default)]
    pub last_sweep: Option<SweepCost>,
}

/// The cost of one SMART sweep, so the "under 1 % of a core" budget is measured, not guessed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SweepCost {
    /// Disks probed.
    pub disks: u32,
    /// Wall-clock time from the first probe to the last verdict.
    pub wall_ms: u64,
    /// CPU time (user + system) the whole service used meanwhile, in 10 ms ticks: an upper bound
    /// on the sweep's own cost (the md watcher and the socket are counted too).
    pub cpu_ms: u64,
    /// The sweep interval: `cpu_ms` over it is the share of one core.
    pub interval_secs: u64,
}

impl SweepCost {
    /// Share of one core at the configured interval, in percent.
    pub fn core_percent(&self) -> f64 {
        if self.interval_secs == 0 {
            return 0.0;
        }
        self.cpu_ms as f64 / (self.interval_secs as f64 * 10.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiskKind {
    Sata,
    Sas,
    Nvme,
    Virtio,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictLevel {
    Ok,
    Unknown,
    Warning,
    Failing,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonInfo {
    pub level: VerdictLevel,
    /// Stable machine-readable code (`attr_197_nonzero`, `timeout`, …).
    pub code: String,
    pub message: String,
}

/// A disk's role in its array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    /// Active and in sync.
    Active,
    /// Being rebuilt onto.
    Rebuilding,
    Spare,
    Faulty,
    Journal,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// Array name (`md0`).
    pub array: String,
    pub role: MemberRole,
    /// The slot in the array (active and rebuilding members).
    #[serde(default)]
    pub slot: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelftestInfo {
    /// `short`, `extended`, `conveyance`, … as the disk names it.
    pub kind: String,
    /// `passed`, `in progress`, or the failure text.
    pub result: String,
    pub passed: bool,
    /// Disk power-on hours when the test ran.
    #[serde(default)]
    pub power_on_hours: Option<u64>,
}

/// One physical bay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bay {
    pub bay: u16,
    pub present: bool,
    /// Kernel name (`sda`, `nvme0n1`) when present.
    #[serde(default)]
    pub device: Option<String>,
    pub kind: DiskKind,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub serial: Option<String>,
    #[serde(default)]
    pub firmware: Option<String>,
    #[serde(default)]
    pub capacity_bytes: Option<u64>,
    #[serde(default)]
    pub temperature_c: Option<i16>,
    #[serde(default)]
    pub power_on_hours: Option<u64>,
    pub verdict: VerdictLevel,
    #[serde(default)]
    pub reasons: Vec<ReasonInfo>,
    #[serde(default)]
    pub array: Option<Membership>,
    #[serde(default)]
    pub last_selftest: Option<SelftestInfo>,
}

impl Bay {
    /// An empty bay.
    pub fn empty(bay: u16) -> Self {
        Bay {
            bay,
            present: false,
            device: None,
            kind: DiskKind::Unknown,
            model: None,
            serial: None,
            firmware: None,
            capacity_bytes: None,
            temperature_c: None,
            power_on_hours: None,
            verdict: VerdictLevel::Unknown,
            reasons: Vec::new(),
            array: None,
            last_selftest: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArrayState {
    Clean,
    Degraded,
    Recovering,
    Resyncing,
    /// A `check`/`repair` scrub is running (redundancy intact).
    Checking,
    /// Not running, or too many members lost to serve data.
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrayMember {
    /// Bay of the member's disk, when it is in a bay.
    #[serde(default)]
    pub bay: Option<u16>,
    /// Kernel name of the member (`sda`).
    pub device: String,
    pub role: MemberRole,
    #[serde(default)]
    pub slot: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArrayInfo {
    pub name: String,
    /// `raid10`, `raid1`, …
    pub level: String,
    pub state: ArrayState,
    /// md's own word for it (`clean`, `active`, `degraded`, `recovering`, …), for detail.
    #[serde(default)]
    pub detail: String,
    #[serde(default)]
    pub raid_disks: Option<u32>,
    #[serde(default)]
    pub degraded: Option<u32>,
    #[serde(default)]
    pub size_bytes: Option<u64>,
    /// All members (active, rebuilding, spare, faulty).
    pub members: Vec<ArrayMember>,
    /// Bays of the hot spares.
    pub spares: Vec<u16>,
    /// `resync`, `recover`, `check`, `repair`, `reshape`, or `idle`.
    pub sync_action: String,
    /// Percent done of the running sync action (0.0–100.0).
    #[serde(default)]
    pub progress_percent: Option<f32>,
    #[serde(default)]
    pub speed_kib_s: Option<u64>,
    #[serde(default)]
    pub eta_secs: Option<u64>,
    /// Mismatched sectors found by the last check.
    #[serde(default)]
    pub mismatch_cnt: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventSeverity {
    Info,
    Warning,
    Critical,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventInfo {
    /// Unix seconds.
    pub time: i64,
    /// mdadm's event name (`Fail`, `DegradedArray`, `RebuildStarted`, …), or the service's own
    /// (`VerdictChanged`, `DiskAppeared`, `DiskRemoved`, `MemberRemoved`, `MemberAdded`,
    /// `ScrubStarted`, `ScrubStopped`, `SelftestStarted`, `Provisioned`, `AlertSent`, `AlertFailed`).
    pub kind: String,
    pub severity: EventSeverity,
    #[serde(default)]
    pub array: Option<String>,
    #[serde(default)]
    pub bay: Option<u16>,
    #[serde(default)]
    pub device: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnmappedDisk {
    pub device: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the health service at {path}: {source} (is `hermes serve hw` running?)")]
    Connect { path: String, source: std::io::Error },
    #[error("health service I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("the health service did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the health service sent a malformed answer: {0}")]
    Malformed(String),
}

/// Sends one request to the service at `socket_path` and waits at most `timeout` for the answer.
pub fn request(socket_path: &Path, req: &Request, timeout: Duration) -> Result<Response, ClientError> {
    let deadline = Instant::now() + timeout;
    let mut s = UnixStream::connect(socket_path)
        .map_err(|source| ClientError::Connect { path: socket_path.display().to_string(), source })?;
    s.set_write_timeout(Some(timeout.max(Duration::from_millis(1))))?;
    let mut line = serde_json::to_vec(req).map_err(|e| ClientError::Malformed(e.to_string()))?;
    line.push(b'\n');
    s.write_all(&line).map_err(|e| timeout_or(e, timeout))?;
    let mut reader = BufReader::new(s.take(MAX_RESPONSE));
    let mut buf = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ClientError::Timeout(timeout));
        }
        reader.get_ref().get_ref().set_read_timeout(Some(left))?;
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) if buf.ends_with(b"\n") => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(timeout_or(e, timeout)),
        }
    }
    if buf.is_empty() {
        return Err(ClientError::Malformed("the connection closed without an answer".into()));
    }
    serde_json::from_slice(&buf).map_err(|e| ClientError::Malformed(e.to_string()))
}

fn timeout_or(e: std::io::Error, timeout: Duration) -> ClientError {
    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) {
        ClientError::Timeout(timeout)
    } else {
        ClientError::Io(e)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn requests_have_the_documented_wire_form() {
        let cases = [
            (Request::Status, r#"{"op":"status"}"#),
            (Request::Selftest { bay: 3, kind: SelftestKind::Long }, r#"{"op":"selftest","bay":3,"kind":"long"}"#),
            (
                Request::Scrub { array: "md0".into(), action: ScrubAction::Start },
                r#"{"op":"scrub","array":"md0","action":"start"}"#,
            ),
            (
                Request::Provision { level: RaidLevel::Raid10, bays: vec![0, 1, 2, 3], spares: 1 },
                r#"{"op":"provision","level":"raid10","bays":[0,1,2,3],"spares":1}"#,
            ),
        ];
        for (req, wire) in cases {
            assert_eq!(serde_json::to_string(&req).unwrap(), wire);
            assert_eq!(serde_json::from_str::<Request>(wire).unwrap(), req);
        }
        assert!(serde_json::from_str::<Request>(r#"{"op":"format"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"op":"selftest","bay":1,"kind":"quick"}"#).is_err());
        let p: Request = serde_json::from_str(r#"{"op":"provision","level":"raid10","bays":[0,1]}"#).unwrap();
        assert_eq!(p, Request::Provision { level: RaidLevel::Raid10, bays: vec![0, 1], spares: 0 });
    }

    #[test]
    fn status_round_trips() {
        let mut bay = Bay::empty(2);
        bay.present = true;
        bay.kind = DiskKind::Sata;
        bay.verdict = VerdictLevel::Warning;
        bay.array = Some(Membership { array: "md0".into(), role: MemberRole::Active, slot: Some(2) });
        let st = Status {
            bays: vec![Bay::empty(0), Bay::empty(1), bay],
            arrays: vec![ArrayInfo {
                name: "md0".into(),
                level: "raid10".into(),
                state: ArrayState::Recovering,
                detail: "recovering".into(),
                raid_disks: Some(4),
                degraded: Some(1),
                size_bytes: Some(1 << 30),
                members: vec![ArrayMember {
                    bay: Some(2),
                    device: "sdc".into(),
                    role: MemberRole::Active,
                    slot: Some(2),
                }],
                spares: vec![],
                sync_action: "recover".into(),
                progress_percent: Some(42.5),
                speed_kib_s: Some(1000),
                eta_secs: Some(60),
                mismatch_cnt: Some(0),
            }],
            events: vec![EventInfo {
                time: 1,
                kind: "Fail".into(),
                severity: EventSeverity::Critical,
                array: Some("md0".into()),
                bay: Some(2),
                device: Some("sdc".into()),
                message: "x".into(),
            }],
            sampled_at: 5,
            unmapped: vec![],
            last_sweep: Some(SweepCost { disks: 16, wall_ms: 900, cpu_ms: 300, interval_secs: 300 }),
        };
        let resp = Response { ok: true, status: Some(st), ..Default::default() };
        let text = serde_json::to_string(&resp).unwrap();
        assert!(text.starts_with(r#"{"ok":true,"status":{"bays":[{"bay":0,"present":false"#), "{text}");
        assert_eq!(serde_json::from_str::<Response>(&text).unwrap(), resp);
    }

    #[test]
    fn client_reports_an_absent_service_and_a_silent_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hw.sock");
        assert!(matches!(request(&path, &Request::Status, Duration::from_secs(1)), Err(ClientError::Connect { .. })));
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let t = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            std::thread::sleep(Duration::from_millis(700));
            drop(s);
        });
        let started = Instant::now();
        let r = request(&path, &Request::Status, Duration::from_millis(200));
        assert!(matches!(r, Err(ClientError::Timeout(_))), "{r:?}");
        assert!(started.elapsed() < Duration::from_millis(600));
        t.join().unwrap();
    }

    #[test]
    fn client_reads_one_answer_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hw.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let t = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut line = String::new();
            BufReader::new(&s).read_line(&mut line).unwrap();
            assert_eq!(line, "{\"op\":\"status\"}\n");
            (&s).write_all(b"{\"ok\":false,\"error\":\"nope\"}\n").unwrap();
        });
        let r = request(&path, &Request::Status, Duration::from_secs(5)).unwrap();
        assert_eq!(r, Response::error("nope"));
        t.join().unwrap();
    }
}
