//! PID 1's log: every line goes to the console, to an in-memory ring buffer (the last
//! [`RING_LINES`] lines, for `log` on the console and later the admin UI), and to
//! `DATA/log/console.log` once `/data` is mounted.
//!
//! What it is not: a log store with rotation or search. The file is appended and cut in half
//! when it passes [`MAX_FILE_BYTES`].
//!
//! Invariants: logging never blocks PID 1 on a full disk or a slow console for long (writes
//! are best-effort and errors are dropped) and never panics; lines are written whole.

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

/// Lines kept in memory: about 200 KB at typical line lengths, within PID 1's budget.
pub const RING_LINES: usize = 1000;
/// The log file is halved past this size (16 MiB): enough for weeks of boot and service
/// events, never a threat to `/data`.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

struct Log {
    ring: VecDeque<String>,
    file: Option<(PathBuf, std::fs::File)>,
}

static LOG: Mutex<Log> = Mutex::new(Log { ring: VecDeque::new(), file: None });

fn with_log<R>(f: impl FnOnce(&mut Log) -> R) -> R {
    let mut guard = LOG.lock().unwrap_or_else(|p| p.into_inner());
    f(&mut guard)
}

/// Records a line (without trailing newline) and writes it to `console` (stdout for people,
/// stderr for JSON lines).
fn record(line: &str, to_stdout: bool) {
    let mut bytes = Vec::with_capacity(line.len() + 1);
    bytes.extend_from_slice(line.as_bytes());
    bytes.push(b'\n');
    if to_stdout {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&bytes);
        let _ = out.flush();
    } else {
        let _ = std::io::stderr().lock().write_all(&bytes);
    }
    with_log(|log| {
        if log.ring.len() >= RING_LINES {
            log.ring.pop_front();
        }
        log.ring.push_back(line.to_string());
        if let Some((path, file)) = &mut log.file {
            let _ = file.write_all(&bytes);
            if file.metadata().map(|m| m.len() > MAX_FILE_BYTES).unwrap_or(false) {
                let path = path.clone();
                log.file = None;
                halve(&path);
                log.file = open_append(&path).map(|f| (path, f));
            }
        }
    });
}

/// A message for people: `hermes: TEXT` on the console.
pub fn say(text: &str) {
    for line in text.lines() {
        record(&format!("hermes: {line}"), true);
    }
}

/// A finished JSON line from a service (see `child::format_line`).
pub fn service_line(line: &[u8]) {
    let text = String::from_utf8_lossy(line);
    record(text.trim_end_matches('\n'), false);
}

/// The ring buffer's lines, oldest first.
pub fn recent() -> Vec<String> {
    with_log(|log| log.ring.iter().cloned().collect())
}

fn open_append(path: &std::path::Path) -> Option<std::fs::File> {
    std::fs::OpenOptions::new().create(true).append(true).open(path).ok()
}

/// Keeps the second half of the file.
fn halve(path: &std::path::Path) {
    if let Ok(data) = std::fs::read(path) {
        let mut cut = data.len() / 2;
        while cut < data.len() && data[cut - 1] != b'\n' {
            cut += 1;
        }
        let _ = std::fs::write(path, &data[cut..]);
    }
}

/// Starts appending to `path` (once `/data` is mounted), first writing what the ring holds.
pub fn attach_file(path: PathBuf) {
    let Some(mut file) = open_append(&path) else { return };
    with_log(|log| {
        for line in &log.ring {
            let _ = writeln!(file, "{line}");
        }
        log.file = Some((path, file));
    });
}

/// Stops writing the file (before `/data` is unmounted).
pub fn detach_file() {
    with_log(|log| {
        if let Some((_, f)) = log.file.take() {
            let _ = f.sync_all();
        }
    });
}
