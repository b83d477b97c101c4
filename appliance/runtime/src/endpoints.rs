//! `run/endpoints.d/<service>.json`: what a service actually bound (ports chosen by the kernel
//! when the config says 0), so the supervisor, tests and tools never guess.
//!
//! What it is not: the merged `run/endpoints.json`; the supervisor writes that from these files.
//!
//! Invariant: written atomically, only after every listener is bound, so a reader that sees the
//! file can connect to every endpoint in it.

use hermes_core::{ipc::ServiceEndpoints, paths::DataDir};

/// Writes `endpoints` to `DATA/run/endpoints.d/<endpoints.service>.json` atomically (mode 0644).
pub fn write_service_endpoints(data: &DataDir, endpoints: &ServiceEndpoints) -> std::io::Result<()> {
    if endpoints.service.is_empty()
        || !endpoints.service.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "invalid service name"));
    }
    let mut json = serde_json::to_vec_pretty(endpoints).map_err(std::io::Error::other)?;
    json.push(b'\n');
    crate::fs::write_atomic(&data.service_endpoints_file(&endpoints.service), &json, 0o644)
}

/// Reads a service's endpoints file (for the supervisor and tests).
pub fn read_service_endpoints(data: &DataDir, service: &str) -> std::io::Result<ServiceEndpoints> {
    let bytes = std::fs::read(data.service_endpoints_file(service))?;
    serde_json::from_slice(&bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        let mut e = ServiceEndpoints { service: "store".into(), pid: 42, ..Default::default() };
        e.tcp.insert("imap".into(), "127.0.0.1:10143".into());
        e.unix.insert("lmtp".into(), "/x/lmtp.sock".into());
        write_service_endpoints(&data, &e).unwrap();
        assert_eq!(read_service_endpoints(&data, "store").unwrap(), e);
    }

    #[test]
    fn refuses_path_like_service_names() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        let e = ServiceEndpoints { service: "../x".into(), ..Default::default() };
        assert!(write_service_endpoints(&data, &e).is_err());
    }
}
