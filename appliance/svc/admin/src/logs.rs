//! Service logs for the Logs page: the JSON lines the services write (`{"ts","level","service",
//! "target","msg",...}`), read from the log files in `DATA/log/` (on the appliance, init writes
//! `DATA/log/console.log`; in host mode `hermes up` appends them to `DATA/log/hermes.log`, rotated
//! to `hermes.1.log`... at 32 MiB, besides its standard error).
//!
//! What it is not: a log store or an index. Each request reads the tail of each file (at most
//! [`MAX_TAIL_BYTES`] per file, [`MAX_FILES`] files) and filters it in memory, so older lines
//! than the tails are not searched (the page says so).
//!
//! Invariants: bounded reads (never a whole huge file); a line that is not JSON is shown as
//! text, never an error; every shown field is bounded in length.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

pub const MAX_TAIL_BYTES: u64 = 4 * 1024 * 1024;
pub const MAX_FILES: usize = 16;
pub const PER_PAGE: usize = 100;
const MAX_FIELD: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogLine {
    pub ts: String,
    pub level: String,
    pub service: String,
    pub msg: String,
    /// The other fields, `key=value` (values compact JSON).
    pub fields: String,
    /// The file it came from (name only).
    pub source: String,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Filter {
    #[serde(default)]
    pub service: String,
    /// Minimum level: `error`, `warn`, `info`, `debug` (empty: all).
    #[serde(default)]
    pub level: String,
    #[serde(default)]
    pub text: String,
    /// `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM` or RFC 3339 (UTC).
    #[serde(default)]
    pub since: String,
    #[serde(default)]
    pub until: String,
    #[serde(default)]
    pub page: Option<usize>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LogPage {
    pub total: usize,
    pub page: usize,
    pub per_page: usize,
    pub lines: Vec<LogLine>,
    /// Services seen in the tails (for the filter's choices).
    pub services: Vec<String>,
    /// Files read, and whether each was cut to its tail.
    pub sources: Vec<(String, bool)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
}

fn severity(level: &str) -> u8 {
    match level.to_ascii_lowercase().as_str() {
        "error" => 5,
        "warn" | "warning" => 4,
        "info" => 3,
        "debug" => 2,
        "trace" => 1,
        _ => 0,
    }
}

/// A filter time as Unix seconds (`end`: the end of a bare day, exclusive).
fn parse_time(s: &str, field: &'static str, end: bool) -> Result<Option<i64>, LogError> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(None);
    }
    let bad = || LogError::Invalid { field, message: "a date (YYYY-MM-DD), date and time or RFC 3339".into() };
    if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        let d = if end { d.succ_opt().ok_or_else(bad)? } else { d };
        return Ok(Some(d.and_hms_opt(0, 0, 0).ok_or_else(bad)?.and_utc().timestamp()));
    }
    for f in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(dt) = chrono::NaiveDateTime::parse_from_str(t, f) {
            return Ok(Some(dt.and_utc().timestamp()));
        }
    }
    chrono::DateTime::parse_from_rfc3339(t).map(|d| Some(d.timestamp())).map_err(|_| bad())
}

fn clip(s: &str) -> String {
    if s.len() <= MAX_FIELD {
        return s.to_string();
    }
    let mut end = MAX_FIELD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Parses one line (JSON or text).
pub fn parse_line(line: &str, source: &str) -> LogLine {
    if let Ok(serde_json::Value::Object(o)) = serde_json::from_str::<serde_json::Value>(line) {
        let get = |k: &str| o.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
        let mut fields = Vec::new();
        for (k, v) in &o {
            if matches!(k.as_str(), "ts" | "level" | "service" | "msg" | "target") {
                continue;
            }
            let t = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            fields.push(format!("{k}={t}"));
        }
        return LogLine {
            ts: clip(&get("ts")),
            level: clip(&get("level")),
            service: clip(&get("service")),
            msg: clip(&get("msg")),
            fields: clip(&fields.join(" ")),
            source: source.to_string(),
        };
    }
    LogLine {
        ts: String::new(),
        level: String::new(),
        service: String::new(),
        msg: clip(line),
        fields: String::new(),
        source: source.to_string(),
    }
}

/// The last [`MAX_TAIL_BYTES`] of a file, whole lines only; whether it was cut.
fn tail(path: &Path) -> std::io::Result<(String, bool)> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let cut = len > MAX_TAIL_BYTES;
    if cut {
        f.seek(SeekFrom::Start(len - MAX_TAIL_BYTES))?;
    }
    let mut buf = Vec::new();
    f.take(MAX_TAIL_BYTES).read_to_end(&mut buf)?;
    let start = if cut { buf.iter().position(|b| *b == b'\n').map(|i| i + 1).unwrap_or(buf.len()) } else { 0 };
    Ok((String::from_utf8_lossy(&buf[start..]).into_owned(), cut))
}

/// The log files: regular files (or links to them) named `*.log` in `dir`, by name.
pub fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "log") && std::fs::metadata(p).is_ok_and(|m| m.is_file()))
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out.truncate(MAX_FILES);
    out
}

/// Reads, filters and pages the logs in `dir`, newest first. Blocking.
pub fn read(dir: &Path, f: &Filter) -> Result<LogPage, LogError> {
    let since = parse_time(&f.since, "since", false)?;
    let until = parse_time(&f.until, "until", true)?;
    let min = severity(&f.level);
    if !f.level.is_empty() && min == 0 {
        return Err(LogError::Invalid { field: "level", message: "error, warn, info or debug".into() });
    }
    let needle = f.text.trim().to_lowercase();
    let mut all = Vec::new();
    let mut srcs = Vec::new();
    let mut services = std::collections::BTreeSet::new();
    for p in sources(dir) {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let Ok((text, cut)) = tail(&p) else { continue };
        srcs.push((name.clone(), cut));
        for (i, l) in text.lines().enumerate() {
            if l.trim().is_empty() {
                continue;
            }
            let line = parse_line(l, &name);
            if !line.service.is_empty() && services.len() < 100 {
                services.insert(line.service.clone());
            }
            all.push((i, line));
        }
    }
    let ts_of = |l: &LogLine| chrono::DateTime::parse_from_rfc3339(&l.ts).ok().map(|d| d.timestamp());
    all.retain(|(_, l)| {
        (f.service.is_empty() || l.service == f.service)
            && (min == 0 || severity(&l.level) >= min)
            && (needle.is_empty()
                || l.msg.to_lowercase().contains(&needle)
                || l.fields.to_lowercase().contains(&needle)
                || l.service.to_lowercase().contains(&needle))
            && (since.is_none() || ts_of(l).is_some_and(|t| Some(t) >= since))
            && (until.is_none() || ts_of(l).is_some_and(|t| Some(t) < until))
    });
    // Newest first: by timestamp (ISO 8601 sorts as text), then by position in its file.
    all.sort_by(|(ia, a), (ib, b)| b.ts.cmp(&a.ts).then_with(|| ib.cmp(ia)));
    let total = all.len();
    let pages = total.div_ceil(PER_PAGE).max(1);
    let page = f.page.unwrap_or(1).clamp(1, pages);
    let lines = all.into_iter().skip((page - 1) * PER_PAGE).take(PER_PAGE).map(|(_, l)| l).collect();
    Ok(LogPage { total, page, per_page: PER_PAGE, lines, services: services.into_iter().collect(), sources: srcs })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn filters_pages_and_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("hermes: ready\n");
        for i in 0..250 {
            let (level, svc) = if i % 10 == 0 { ("WARN", "router") } else { ("INFO", "store") };
            text.push_str(&format!(
                "{{\"ts\":\"2026-11-28T10:{:02}:{:02}Z\",\"level\":\"{level}\",\"service\":\"{svc}\",\"msg\":\"line {i}\",\"peer\":\"192.0.2.{i}\"}}\n",
                i / 60,
                i % 60
            ));
        }
        std::fs::write(dir.path().join("hermes.log"), &text).unwrap();
        std::fs::write(dir.path().join("other.txt"), "ignored").unwrap();
        let all = read(dir.path(), &Filter::default()).unwrap();
        assert_eq!(all.total, 251);
        assert_eq!(all.lines[0].msg, "line 249", "newest first");
        assert_eq!(all.services, ["router", "store"]);
        let warn = read(dir.path(), &Filter { level: "warn".into(), ..Default::default() }).unwrap();
        assert_eq!(warn.total, 25);
        let r = read(dir.path(), &Filter { service: "router".into(), text: "192.0.2.30".into(), ..Default::default() })
            .unwrap();
        assert_eq!(r.total, 1);
        let t = read(
            dir.path(),
            &Filter { since: "2026-11-28T10:01".into(), until: "2026-11-28T10:02".into(), ..Default::default() },
        )
        .unwrap();
        assert_eq!(t.total, 60);
        let p3 = read(dir.path(), &Filter { page: Some(3), ..Default::default() }).unwrap();
        assert_eq!((p3.page, p3.lines.len()), (3, 51));
        assert!(read(dir.path(), &Filter { since: "yesterday".into(), ..Default::default() }).is_err());
        assert!(read(dir.path(), &Filter { level: "loud".into(), ..Default::default() }).is_err());
        // A file larger than the tail bound: only its tail is read, from a whole line.
        let big = "x".repeat(1000) + "\n";
        std::fs::write(dir.path().join("big.log"), big.repeat((MAX_TAIL_BYTES / 1000) as usize + 100)).unwrap();
        let r = read(dir.path(), &Filter::default()).unwrap();
        assert!(r.sources.iter().any(|(n, cut)| n == "big.log" && *cut));
    }
}
