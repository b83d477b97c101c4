//! The durable mail queue: one message file, one envelope record and one append-only status
//! log per queued message, under `DATA/queue/`.
//!
//! ```text
//! queue/lock              flock(2)ed exclusively by the one process that owns the queue
//! queue/tmp/              files being written; emptied at every open
//! queue/active/ID.msg     the message bytes (trace headers already prepended)
//! queue/active/ID.env     the envelope: one JSON line, then an end record
//!                         `end <sha256 of the JSON line> <message length> <sha256 of the message>`
//! queue/active/ID.log     per-recipient results, attempts, hold: one `JSON<TAB>crc32` line each
//! queue/corrupt/          envelopes that failed verification, kept for the admin
//! ```
//!
//! What it is not: no scheduling (the runner in [`crate::deliver`] decides what is due), no
//! in-memory index (the runner keeps one), no network.
//!
//! Invariants:
//! - **Commit point.** A message is queued exactly when `active/ID.env` exists: the message
//!   and the (empty) log are written and fsync'd in `tmp/`, renamed into `active/` first, the
//!   envelope renamed last, then `active/` is fsync'd. [`Queue::enqueue`] returns only after
//!   that, so the SMTP 250 that follows it is never for a message a crash can lose.
//! - **No partial message is ever delivered.** Recovery ([`Queue::open`]) drops `.msg`/`.log`
//!   files without an envelope (never acknowledged), and moves to `corrupt/` any envelope whose
//!   end record is missing or whose message length or SHA-256 does not match.
//! - **Status updates are durable.** [`Queue::append`] writes whole lines and fdatasyncs before
//!   returning; a torn last line (crash mid-append) fails its CRC and is ignored at replay, so
//!   the recipient is retried: a crash between an LMTP 250 and the log append can cause one
//!   duplicate delivery, never a loss (documented in `docs/router.md`).
//! - **Removal** unlinks the envelope first, so a crash mid-removal leaves orphans that the next
//!   recovery deletes, never a half-queued message. [`Queue::remove`] (admin deletion) fsyncs
//!   the folder; [`Queue::remove_finished`] does not: a finished message whose unlink a crash
//!   undid comes back either with every recipient final in its (fdatasync'd) log, and is
//!   removed again at recovery, or (local deliveries the store deduplicates by XDEDUP, see
//!   `deliver`) is redelivered and answered 250 by the store without a second copy.
//! - The empty status log made at enqueue is not fsync'd itself: it holds no data, the folder
//!   fsync makes its name durable, and a missing log reads as "nothing done yet".
//! - One owner: the queue lock is taken non-blocking; a second opener gets [`QueueError::Locked`].

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Largest envelope record read back: 1000 recipients of ~300 bytes each, with room.
const MAX_ENVELOPE_BYTES: u64 = 4 * 1024 * 1024;
/// Largest status log read back: one line per recipient per attempt over 5 days.
const MAX_LOG_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the queue is in use by another process (a running router)")]
    Locked,
    #[error("queue I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("no such queued message: {0}")]
    NotFound(String),
    #[error("corrupt queue record {0}: {1}")]
    Corrupt(String, String),
}

/// RFC 3461 NOTIFY as stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notify {
    #[serde(default)]
    pub never: bool,
    #[serde(default)]
    pub success: bool,
    #[serde(default)]
    pub failure: bool,
    #[serde(default)]
    pub delay: bool,
}

impl From<hermes_proto::smtp::Notify> for Notify {
    fn from(n: hermes_proto::smtp::Notify) -> Self {
        Notify { never: n.never, success: n.success, failure: n.failure, delay: n.delay }
    }
}

/// One recipient of a queued message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvRecipient {
    /// Where to deliver: a local account address, or a remote address.
    pub address: String,
    /// The address as given at RCPT (before alias expansion), for DSNs.
    pub original: String,
    /// Delivered to the local store over LMTP (true) or relayed by SMTP (false).
    pub local: bool,
    /// RFC 3461 NOTIFY: `None` is the default (failure and delay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Notify>,
    /// RFC 3461 ORCPT as `type;address`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orcpt: Option<String>,
}

/// What the queue keeps about a message besides its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: String,
    /// The reverse path without brackets; empty for the null sender `<>`.
    pub from: String,
    pub recipients: Vec<EnvRecipient>,
    /// RFC 3461 RET: `FULL` or `HDRS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envid: Option<String>,
    /// Unix seconds.
    pub arrival: i64,
    pub helo: String,
    /// Client IP address, or `local` for mail the router made itself (DSNs).
    pub client: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_user: Option<String>,
    pub smtputf8: bool,
    pub eightbit: bool,
    /// Message bytes (as stored, trace headers included).
    pub size: u64,
    /// A DSN the router generated (never itself bounced).
    #[serde(default)]
    pub is_dsn: bool,
}

/// A recipient's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RcptState {
    Pending,
    Deferred,
    Delivered,
    Failed,
}

impl RcptState {
    pub fn is_final(self) -> bool {
        matches!(self, RcptState::Delivered | RcptState::Failed)
    }
}

/// One status-log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum LogRecord {
    Rcpt { i: usize, state: RcptState, reply: String, at: i64 },
    Attempt { at: i64, next: i64 },
    Hold { on: bool },
    DelayNotified { at: i64 },
}

/// The replayed state of a queued message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageState {
    /// Per recipient, in envelope order: state and the last reply text.
    pub rcpts: Vec<(RcptState, String)>,
    pub attempts: u32,
    pub last_attempt: Option<i64>,
    /// Unix seconds; 0: now.
    pub next_retry: i64,
    pub hold: bool,
    pub delay_notified: bool,
}

impl MessageState {
    pub fn new(n: usize) -> Self {
        MessageState {
            rcpts: vec![(RcptState::Pending, String::new()); n],
            attempts: 0,
            last_attempt: None,
            next_retry: 0,
            hold: false,
            delay_notified: false,
        }
    }

    pub fn apply(&mut self, r: &LogRecord) {
        match r {
            LogRecord::Rcpt { i, state, reply, .. } => {
                if let Some(slot) = self.rcpts.get_mut(*i) {
                    // A final state never goes back (a replayed duplicate line cannot resurrect).
                    if !slot.0.is_final() {
                        *slot = (*state, reply.clone());
                    }
                }
            }
            LogRecord::Attempt { at, next } => {
                self.attempts = self.attempts.saturating_add(1);
                self.last_attempt = Some(*at);
                self.next_retry = *next;
            }
            LogRecord::Hold { on } => self.hold = *on,
            LogRecord::DelayNotified { .. } => self.delay_notified = true,
        }
    }

    /// Every recipient delivered or failed.
    pub fn is_done(&self) -> bool {
        self.rcpts.iter().all(|(s, _)| s.is_final())
    }
}

/// A queued message as recovery found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub envelope: Envelope,
    pub state: MessageState,
}

/// The queue folder, locked for this process.
#[derive(Debug)]
pub struct Queue {
    tmp: PathBuf,
    active: PathBuf,
    corrupt: PathBuf,
    _lock: Flock<File>,
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A new queue id: milliseconds since the epoch and 32 random bits, in hex (sorts by arrival).
pub fn new_id() -> String {
    use rand::RngCore;
    let ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
    format!("{ms:012x}{:08x}", rand::rngs::OsRng.next_u32())
}

fn read_bounded(path: &Path, max: u64) -> Result<Option<Vec<u8>>, QueueError> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut buf = Vec::new();
    f.take(max + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        return Err(QueueError::Corrupt(path.display().to_string(), "record too large".into()));
    }
    Ok(Some(buf))
}

fn log_line(r: &LogRecord) -> Result<Vec<u8>, QueueError> {
    let json = serde_json::to_vec(r).map_err(std::io::Error::other)?;
    let mut line = json.clone();
    line.extend_from_slice(format!("\t{:08x}\n", crc32fast::hash(&json)).as_bytes());
    Ok(line)
}

/// Parses a status log; stops at the first line that is torn or fails its CRC.
pub fn parse_log(bytes: &[u8]) -> Vec<LogRecord> {
    let mut out = Vec::new();
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let Some(line) = line.strip_suffix(b"\n") else { break };
        let Some(tab) = memchr::memrchr(b'\t', line) else { break };
        let (json, crc) = (&line[..tab], &line[tab + 1..]);
        let ok =
            std::str::from_utf8(crc).ok().and_then(|c| u32::from_str_radix(c, 16).ok()) == Some(crc32fast::hash(json));
        let Some(r) = ok.then(|| serde_json::from_slice::<LogRecord>(json).ok()).flatten() else { break };
        out.push(r);
    }
    out
}

fn end_record(json_line: &[u8], body_len: u64, body_sha: &[u8]) -> String {
    format!("end {} {} {}\n", hex::encode(Sha256::digest(json_line)), body_len, hex::encode(body_sha))
}

impl Queue {
    /// Opens (creating) the queue under `dir`, takes its lock and recovers: returns every
    /// committed message with its replayed state, sorted by id (arrival order).
    pub fn open(dir: &Path) -> Result<(Queue, Vec<Queued>), QueueError> {
        let tmp = dir.join("tmp");
        let active = dir.join("active");
        let corrupt = dir.join("corrupt");
        for d in [dir, &tmp, &active, &corrupt] {
            std::fs::DirBuilder::new().recursive(true).create(d)?;
        }
        let lockf = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(dir.join("lock"))?;
        let lock = Flock::lock(lockf, FlockArg::LockExclusiveNonblock).map_err(|_| QueueError::Locked)?;
        let q = Queue { tmp, active, corrupt, _lock: lock };
        for e in fs::read_dir(&q.tmp)? {
            let _ = fs::remove_file(e?.path());
        }
        let queued = q.recover()?;
        Ok((q, queued))
    }

    fn path(&self, id: &str, ext: &str) -> PathBuf {
        self.active.join(format!("{id}.{ext}"))
    }

    fn recover(&self) -> Result<Vec<Queued>, QueueError> {
        let mut ids_env = Vec::new();
        let mut others = Vec::new();
        for e in fs::read_dir(&self.active)? {
            let name = e?.file_name();
            let Some(name) = name.to_str() else { continue };
            match name.rsplit_once('.') {
                Some((id, "env")) if valid_id(id) => ids_env.push(id.to_string()),
                Some((id, "msg" | "log")) if valid_id(id) => others.push((id.to_string(), name.to_string())),
                _ => {}
            }
        }
        ids_env.sort();
        let mut out = Vec::new();
        for id in &ids_env {
            match self.load(id) {
                Ok(q) => out.push(q),
                Err(e) => {
                    tracing::error!(id = %id, error = %e, "corrupt queue entry moved aside");
                    for ext in ["env", "msg", "log"] {
                        let _ = fs::rename(self.path(id, ext), self.corrupt.join(format!("{id}.{ext}")));
                    }
                }
            }
        }
        let live: std::collections::HashSet<&str> = out.iter().map(|q| q.envelope.id.as_str()).collect();
        let mut removed = 0;
        for (id, name) in others {
            if !live.contains(id.as_str()) && !self.path(&id, "env").exists() {
                let _ = fs::remove_file(self.active.join(&name));
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::warn!(files = removed, "removed uncommitted queue files (never acknowledged)");
            fsync_dir(&self.active)?;
        }
        Ok(out)
    }

    /// Loads and verifies one committed message.
    pub fn load(&self, id: &str) -> Result<Queued, QueueError> {
        if !valid_id(id) {
            return Err(QueueError::NotFound(id.to_string()));
        }
        let env_bytes = read_bounded(&self.path(id, "env"), MAX_ENVELOPE_BYTES)?
            .ok_or_else(|| QueueError::NotFound(id.to_string()))?;
        let corrupt = |why: &str| QueueError::Corrupt(id.to_string(), why.to_string());
        let nl = memchr::memchr(b'\n', &env_bytes).ok_or_else(|| corrupt("no end record"))?;
        let (json_line, end) = env_bytes.split_at(nl + 1);
        let end = std::str::from_utf8(end).map_err(|_| corrupt("bad end record"))?;
        let mut parts = end.trim_end_matches('\n').split(' ');
        let (Some("end"), Some(json_sha), Some(len), Some(body_sha), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(corrupt("missing or malformed end record"));
        };
        if hex::encode(Sha256::digest(json_line)) != json_sha {
            return Err(corrupt("envelope checksum mismatch"));
        }
        let envelope: Envelope = serde_json::from_slice(json_line).map_err(|e| corrupt(&e.to_string()))?;
        if envelope.id != id {
            return Err(corrupt("envelope names another id"));
        }
        let len: u64 = len.parse().map_err(|_| corrupt("bad length"))?;
        let body = fs::read(self.path(id, "msg")).map_err(|_| corrupt("message file missing"))?;
        if body.len() as u64 != len || hex::encode(Sha256::digest(&body)) != body_sha {
            return Err(corrupt("message length or checksum mismatch"));
        }
        let mut state = MessageState::new(envelope.recipients.len());
        if let Some(log) = read_bounded(&self.path(id, "log"), MAX_LOG_BYTES)? {
            for r in parse_log(&log) {
                state.apply(&r);
            }
        }
        Ok(Queued { envelope, state })
    }

    /// Queues a message durably (see the module's commit point). `envelope.id` must come from
    /// [`new_id`]; `envelope.size` is set here. `parts` are concatenated (headers, body).
    pub fn enqueue(&self, envelope: &mut Envelope, parts: &[&[u8]]) -> Result<(), QueueError> {
        let id = envelope.id.clone();
        if !valid_id(&id) {
            return Err(QueueError::Corrupt(id, "invalid id".into()));
        }
        let tmp = |ext: &str| self.tmp.join(format!("{id}.{ext}"));
        let result = (|| -> Result<(), QueueError> {
            let mut hasher = Sha256::new();
            let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(tmp("msg"))?;
            let mut len = 0u64;
            for p in parts {
                f.write_all(p)?;
                hasher.update(p);
                len += p.len() as u64;
            }
            f.sync_all()?;
            drop(f);
            envelope.size = len;
            let mut json = serde_json::to_vec(&*envelope).map_err(std::io::Error::other)?;
            json.push(b'\n');
            let end = end_record(&json, len, &hasher.finalize());
            let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(tmp("env"))?;
            f.write_all(&json)?;
            f.write_all(end.as_bytes())?;
            f.sync_all()?;
            drop(f);
            // Empty: nothing to fsync (see the module's invariants); the folder fsync below
            // makes its name durable with the others.
            drop(OpenOptions::new().write(true).create_new(true).mode(0o600).open(tmp("log"))?);
            fs::rename(tmp("msg"), self.path(&id, "msg"))?;
            fs::rename(tmp("log"), self.path(&id, "log"))?;
            fs::rename(tmp("env"), self.path(&id, "env"))?;
            fsync_dir(&self.active)?;
            Ok(())
        })();
        if result.is_err() {
            for ext in ["msg", "env", "log"] {
                let _ = fs::remove_file(tmp(ext));
            }
        }
        result
    }

    /// Appends status records durably (fdatasync before returning).
    pub fn append(&self, id: &str, records: &[LogRecord]) -> Result<(), QueueError> {
        if !valid_id(id) || !self.path(id, "env").exists() {
            return Err(QueueError::NotFound(id.to_string()));
        }
        let mut bytes = Vec::new();
        for r in records {
            bytes.extend_from_slice(&log_line(r)?);
        }
        let mut f = OpenOptions::new().append(true).create(true).mode(0o600).open(self.path(id, "log"))?;
        f.write_all(&bytes)?;
        f.sync_data()?;
        Ok(())
    }

    /// The message bytes.
    pub fn read_message(&self, id: &str) -> Result<Vec<u8>, QueueError> {
        if !valid_id(id) {
            return Err(QueueError::NotFound(id.to_string()));
        }
        match fs::read(self.path(id, "msg")) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(QueueError::NotFound(id.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes a message durably (envelope first: the removal's commit point; then the folder
    /// is fsync'd). For admin deletion, which no log record backs.
    pub fn remove(&self, id: &str) -> Result<(), QueueError> {
        self.unlink(id)?;
        fsync_dir(&self.active)?;
        Ok(())
    }

    /// Removes a finished message without a folder fsync (see the module's invariants for why
    /// a crash that undoes the unlink neither loses nor duplicates anything).
    pub fn remove_finished(&self, id: &str) -> Result<(), QueueError> {
        self.unlink(id)
    }

    fn unlink(&self, id: &str) -> Result<(), QueueError> {
        if !valid_id(id) {
            return Err(QueueError::NotFound(id.to_string()));
        }
        match fs::remove_file(self.path(id, "env")) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(QueueError::NotFound(id.to_string())),
            Err(e) => return Err(e.into()),
        }
        let _ = fs::remove_file(self.path(id, "msg"));
        let _ = fs::remove_file(self.path(id, "log"));
        Ok(())
    }

    /// Ids of committed messages (envelope present), sorted.
    pub fn ids(&self) -> Result<Vec<String>, QueueError> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.active)? {
            let name = e?.file_name();
            if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".env")).filter(|id| valid_id(id)) {
                out.push(id.to_string());
            }
        }
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests;
