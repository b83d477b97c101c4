//! What a supervisor does with a child process, shared by the host-mode supervisor
//! (`hermes up`, appliance/hermes/src/supervisor.rs) and PID 1 (`hermes init`):
//! restart backoff, exit descriptions, passing a child's output through as JSON lines, and
//! merging the services' endpoint files into `run/endpoints.json`.
//!
//! What it is not: a process manager. Spawning, waiting and killing differ (PID 1 reaps every
//! orphan with `waitpid(-1)`, so it cannot let tokio wait for its children) and stay with each
//! supervisor.
//!
//! Invariants: a child's output line reaches the sink whole, as one JSON object per line
//! (JSON lines unchanged; anything else wrapped); a line longer than [`MAX_LOG_LINE`] is cut
//! and marked; backoff never exceeds [`MAX_BACKOFF`].

use hermes_core::ipc::{Endpoints, ServiceEndpoints};
use nix::sys::signal::Signal;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt};

/// First restart delay after a crash.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Restart delays double up to this: a broken service is retried twice a minute, not spun.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A child that ran this long before crashing was healthy: its next restart is immediate-ish
/// again (the backoff restarts at [`INITIAL_BACKOFF`]).
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(60);
/// How long a stopping child may take after SIGTERM before SIGKILL: the store lets sessions
/// finish their current command and flushes; 10 s is ample and keeps Ctrl-C responsive.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// A child that has not written its endpoints file by then is stuck: killed and restarted.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest child log line passed through; the rest of a longer line is cut (and marked).
pub const MAX_LOG_LINE: usize = 64 * 1024;
/// Set in each child's environment: the supervisor's pid, so the child can ask for a
/// parent-death signal and notice if its parent is already gone.
pub const SUPERVISOR_PID_ENV: &str = "HERMES_SUPERVISOR_PID";

/// How a child ended, for logs and `status`.
pub fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        format!("exit status {code}")
    } else if let Some(sig) = status.signal() {
        match Signal::try_from(sig) {
            Ok(s) => format!("signal {sig} ({})", s.as_str()),
            Err(_) => format!("signal {sig}"),
        }
    } else {
        status.to_string()
    }
}

/// The next restart delay: doubled, capped at [`MAX_BACKOFF`]; back to [`INITIAL_BACKOFF`] when
/// the crashed process had run for [`BACKOFF_RESET_AFTER`]. Returns `(delay now, next delay)`.
pub fn next_backoff(current: Duration, uptime: Duration) -> (Duration, Duration) {
    let delay = if uptime >= BACKOFF_RESET_AFTER { INITIAL_BACKOFF } else { current };
    (delay, (delay * 2).min(MAX_BACKOFF))
}

/// The flat `endpoints.json` map: each service's TCP endpoints by protocol, and its unix
/// sockets as `<name>_socket`.
pub fn merge_endpoints<'a>(services: impl Iterator<Item = &'a ServiceEndpoints>) -> Endpoints {
    let mut merged = Endpoints::new();
    for s in services {
        for (k, v) in &s.tcp {
            merged.insert(k.clone(), v.clone());
        }
        for (k, v) in &s.unix {
            merged.insert(format!("{k}_socket"), v.clone());
        }
    }
    merged
}

/// Reads a child's output line by line until EOF, handing each line to `sink` as a finished
/// JSON line (see [`format_line`]). Lines longer than [`MAX_LOG_LINE`] are cut.
pub async fn pass_through(reader: impl AsyncRead + Unpin, service: &str, stream: &str, mut sink: impl FnMut(Vec<u8>)) {
    let mut reader = tokio::io::BufReader::new(reader);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        let mut limited = (&mut reader).take(MAX_LOG_LINE as u64);
        match limited.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let truncated = !line.ends_with(b"\n");
        if truncated {
            // Skip the rest of an overlong line.
            let mut rest = Vec::new();
            let _ = (&mut reader).take(u64::MAX).read_until(b'\n', &mut rest).await;
        }
        if let Some(out) = format_line(&line, service, stream, truncated) {
            sink(out);
        }
    }
}

/// One child line as a JSON line ending in `\n`: a JSON object unchanged, anything else wrapped
/// in one naming the service and stream. `None` for an empty line.
pub fn format_line(line: &[u8], service: &str, stream: &str, truncated: bool) -> Option<Vec<u8>> {
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    if body.is_empty() {
        return None;
    }
    let is_json_object =
        body.first() == Some(&b'{') && !truncated && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok();
    let mut out = if is_json_object {
        body.to_vec()
    } else {
        let mut msg = String::from_utf8_lossy(body).into_owned();
        if truncated {
            msg.push('…');
        }
        let wrapped = serde_json::json!({
            "ts": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "level": if stream == "stderr" { "WARN" } else { "INFO" },
            "service": service,
            "stream": stream,
            "msg": msg,
        });
        wrapped.to_string().into_bytes()
    };
    out.push(b'\n');
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let mut b = INITIAL_BACKOFF;
        let mut delays = Vec::new();
        for _ in 0..8 {
            let (d, n) = next_backoff(b, Duration::from_secs(1));
            delays.push(d.as_secs());
            b = n;
        }
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
        let (d, n) = next_backoff(b, BACKOFF_RESET_AFTER);
        assert_eq!((d, n), (INITIAL_BACKOFF, INITIAL_BACKOFF * 2));
    }

    #[test]
    fn lines_are_passed_or_wrapped() {
        assert_eq!(format_line(b"{\"a\":1}\n", "s", "stderr", false).unwrap(), b"{\"a\":1}\n");
        let wrapped = format_line(b"panic here\r\n", "store", "stderr", false).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&wrapped).unwrap();
        assert_eq!(v["msg"], "panic here");
        assert_eq!(v["service"], "store");
        assert_eq!(format_line(b"\n", "s", "stdout", false), None);
    }

    #[tokio::test]
    async fn long_lines_are_cut() {
        let mut input = vec![b'x'; MAX_LOG_LINE + 10];
        input.extend_from_slice(b"\nnext\n");
        let mut got = Vec::new();
        pass_through(&input[..], "s", "stdout", |l| got.push(l)).await;
        assert_eq!(got.len(), 2);
        let first: serde_json::Value = serde_json::from_slice(&got[0]).unwrap();
        assert!(first["msg"].as_str().unwrap().ends_with('…'));
    }

    #[test]
    fn exit_descriptions() {
        assert_eq!(describe_exit(ExitStatus::from_raw(1 << 8)), "exit status 1");
        assert_eq!(describe_exit(ExitStatus::from_raw(9)), "signal 9 (SIGKILL)");
    }
}
