//! `hermes status`: asks a running supervisor over `run/control.sock` and prints its services.
//!
//! What it is not: a health check of the services' protocols (it reports what the supervisor
//! knows: pids, states, restarts, uptime, endpoints).
//!
//! Invariant: never hangs: connect, write and read are bounded by [`CONTROL_TIMEOUT`].

use anyhow::{Context, anyhow, bail};
use hermes_core::ipc::{ControlRequest, ControlResponse, ServiceState};
use hermes_core::paths::DataDir;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// How long `hermes status` waits for the supervisor.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest answer read (a status answer is a few hundred bytes per service).
const MAX_RESPONSE: u64 = 1 << 20;

/// The exit code when no supervisor runs on the data folder (as `systemctl status` uses 3).
pub const NOT_RUNNING: u8 = 3;

/// Why `status` could not ask.
#[derive(Debug)]
pub enum StatusError {
    NotRunning(String),
    Other(anyhow::Error),
}

/// Sends one request and reads the one-line answer.
pub fn query(data: &DataDir, request: &ControlRequest) -> Result<ControlResponse, StatusError> {
    let path = data.control_socket();
    let stream = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => {
            return Err(StatusError::NotRunning(format!("not running (no supervisor on {})", data.root().display())));
        }
        Err(e) => return Err(StatusError::Other(anyhow!("cannot connect to {}: {e}", path.display()))),
    };
    let ask = || -> anyhow::Result<ControlResponse> {
        stream.set_read_timeout(Some(CONTROL_TIMEOUT))?;
        stream.set_write_timeout(Some(CONTROL_TIMEOUT))?;
        let mut line = serde_json::to_vec(request)?;
        line.push(b'\n');
        (&stream).write_all(&line)?;
        let mut answer = Vec::new();
        BufReader::new((&stream).take(MAX_RESPONSE))
            .read_until(b'\n', &mut answer)
            .context("reading the supervisor's answer")?;
        let response: ControlResponse =
            serde_json::from_slice(&answer).context("the supervisor's answer is not valid")?;
        if !response.ok {
            bail!("supervisor: {}", response.error.unwrap_or_else(|| "request refused".into()));
        }
        Ok(response)
    };
    ask().map_err(StatusError::Other)
}

/// `1h02m`, `5m03s`, `12s`.
pub fn format_duration(secs: i64) -> String {
    let secs = secs.max(0);
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d{h:02}h")
    } else if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

fn state_name(state: ServiceState) -> &'static str {
    match state {
        ServiceState::Starting => "starting",
        ServiceState::Running => "running",
        ServiceState::Backoff => "backoff",
        ServiceState::Stopping => "stopping",
        ServiceState::Stopped => "stopped",
    }
}

/// Renders a status answer for people.
pub fn render(r: &ControlResponse, now: i64) -> String {
    let mut out =
        format!("hermes: running (supervisor pid {}, up {})\n", r.supervisor_pid, format_duration(now - r.started_at));
    out.push_str(&format!(
        "{:<10} {:<9} {:>8} {:>8} {:>8}  LAST EXIT\n",
        "SERVICE", "STATE", "PID", "RESTARTS", "UPTIME"
    ));
    for s in &r.services {
        out.push_str(&format!(
            "{:<10} {:<9} {:>8} {:>8} {:>8}  {}\n",
            s.name,
            state_name(s.state),
            s.pid.map_or("-".to_string(), |p| p.to_string()),
            s.restarts,
            s.started_at.map_or("-".to_string(), |t| format_duration(now - t)),
            s.last_exit.as_deref().unwrap_or("-"),
        ));
    }
    if !r.endpoints.is_empty() {
        out.push_str("endpoints:\n");
        for (k, v) in &r.endpoints {
            out.push_str(&format!("  {k:<12} {v}\n"));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;
    use hermes_core::ipc::ServiceStatus;

    #[test]
    fn durations() {
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(-5), "0s");
        assert_eq!(format_duration(303), "5m03s");
        assert_eq!(format_duration(3720), "1h02m");
        assert_eq!(format_duration(90_000), "1d01h");
    }

    #[test]
    fn renders_services() {
        let mut r = ControlResponse { ok: true, supervisor_pid: 10, started_at: 100, ..Default::default() };
        r.services.push(ServiceStatus {
            name: "store".into(),
            pid: Some(42),
            state: ServiceState::Running,
            restarts: 1,
            started_at: Some(150),
            last_exit: Some("signal 9 (SIGKILL)".into()),
        });
        r.endpoints.insert("imap".into(), "127.0.0.1:10143".into());
        let text = render(&r, 160);
        assert!(text.contains("supervisor pid 10, up 1m00s"), "{text}");
        assert!(
            text.contains("store") && text.contains("running") && text.contains("42") && text.contains("10s"),
            "{text}"
        );
        assert!(text.contains("signal 9 (SIGKILL)") && text.contains("127.0.0.1:10143"), "{text}");
    }
}
