//! The data folder on disk for the `hermes` binary: creating it, the default host-mode config
//! written on first start, and loading the config every command shares.
//!
//! What it is not: the list of paths (that is `hermes_core::paths`) or the config schema
//! (`hermes_core::config`).
//!
//! Invariants: the data root and its private folders are mode 0700 (it holds password hashes,
//! TLS keys and mail); an existing config file is never overwritten.

use anyhow::Context;
use hermes_core::config::{self, Config, ConfigErrors};
use hermes_core::paths::DataDir;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` (mode 0700) if missing.
fn private_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot create {}", dir.display())),
    }
}

/// Creates the data root (0700) if missing.
pub fn ensure_root(data: &DataDir) -> anyhow::Result<()> {
    private_dir(data.root())
}

/// Creates every folder of the layout that the supervisor and services expect.
pub fn ensure_layout(data: &DataDir) -> anyhow::Result<()> {
    ensure_root(data)?;
    for dir in
        [data.config_dir(), data.directory_dir(), data.store_dir(), data.queue_dir(), data.tls_dir(), data.run_dir(), data.log_dir()]
    {
        private_dir(&dir)?;
    }
    if let Some(endpoints_d) = data.service_endpoints_file("store").parent() {
        private_dir(endpoints_d)?;
    }
    // The run folder holds the control socket: only the owner may connect.
    std::fs::set_permissions(data.run_dir(), std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot set permissions of {}", data.run_dir().display()))?;
    Ok(())
}

/// The config `hermes up` writes on first start: host mode, every value at its default and
/// spelled out so the admin sees what to change.
pub fn default_config_text() -> String {
    format!(
        r#"# Hermes configuration, written by `hermes up` on first start (host mode).
# Every key is optional; the values below are the built-in defaults. Unknown keys are refused.
# Ports: design §2 maps each standard port P below 1024 to 10000 + P in host mode.
# A port of 0 lets the kernel choose; the real ports are in run/endpoints.json.

[server]
# The name in greetings and in the self-signed certificate.
hostname = "localhost"
# The address every service binds. Host mode stays on loopback.
listen = "127.0.0.1"

[imap]
port = {imap}
tls_port = {imaps}
# Host mode only: allow LOGIN and AUTHENTICATE without TLS from loopback clients
# (127.0.0.1, ::1), so local tools and tests need no certificate. Safe only because
# `listen` is loopback; set it to false before listening on a real network.
plaintext_auth_on_loopback = true

[pop3]
port = {pop3}
tls_port = {pop3s}
# As for IMAP: USER/PASS and AUTH without TLS from loopback clients only.
plaintext_auth_on_loopback = true

[lmtp]
port = {lmtp}

[managesieve]
# ManageSieve (RFC 5804) for editing Sieve filters; STARTTLS, then AUTHENTICATE PLAIN.
port = {managesieve}
# As for IMAP: AUTHENTICATE without TLS from loopback clients only.
plaintext_auth_on_loopback = true

[sieve]
# Vacation replies and redirects go out through this SMTP relay (host:port). Unset: the
# router's MX port on this host; "" turns them off (they are then logged and skipped). For
# replies to outside senders the relay must accept them from this host (router
# relay_networks, or relay_user/relay_password at a submission port on loopback).
# relay = "127.0.0.1:{smtp}"
max_script_bytes = {sieve_max_bytes}
max_scripts = {sieve_max_scripts}

[admin]
# The admin web UI (HTTPS, with the certificate in tls/). The appliance serves it on 8443.
port = {admin}

[limits]
max_message_bytes = {max_message}

[router]
# SMTP (MX, no AUTH), submission (STARTTLS, then AUTH) and submissions (implicit TLS).
smtp_port = {smtp}
submission_port = {submission}
submissions_port = {submissions}
# Client networks allowed to relay without AUTH (CIDR). None by default, loopback included.
relay_networks = []
# Retries back off from retry_min_secs doubling to retry_max_secs; a delay notice after
# delay_warning_secs; a bounce after queue_lifetime_secs.
retry_min_secs = {retry_min}
retry_max_secs = {retry_max}
delay_warning_secs = {delay_warning}
queue_lifetime_secs = {lifetime}
# Departmental servers (split domains: local accounts stay local, the rest is relayed):
# [[router.routes]]
# domain = "dept.example.org"
# hosts = ["mail.dept.example.org:25"]
# tls = "opportunistic"   # or "required", "none"

[hw]
# The disk health service. In host mode it watches this machine's disks read-only: SMART
# needs root, and it never scrubs or re-adds members of the host's own md arrays, which
# belong to the host (the appliance scrubs monthly and may re-add a replaced disk).
scrub_interval_days = 0
auto_replace = false
"#,
        imap = config::DEFAULT_IMAP_PORT,
        imaps = config::DEFAULT_IMAPS_PORT,
        lmtp = config::DEFAULT_LMTP_PORT,
        managesieve = config::DEFAULT_MANAGESIEVE_PORT,
        admin = config::DEFAULT_ADMIN_PORT,
        sieve_max_bytes = config::DEFAULT_SIEVE_MAX_SCRIPT_BYTES,
        sieve_max_scripts = config::DEFAULT_SIEVE_MAX_SCRIPTS,
        pop3 = config::DEFAULT_POP3_PORT,
        pop3s = config::DEFAULT_POP3S_PORT,
        max_message = hermes_core::DEFAULT_MAX_MESSAGE_BYTES,
        smtp = config::DEFAULT_SMTP_PORT,
        submission = config::DEFAULT_SUBMISSION_PORT,
        submissions = config::DEFAULT_SUBMISSIONS_PORT,
        retry_min = config::DEFAULT_RETRY_MIN_SECS,
        retry_max = config::DEFAULT_RETRY_MAX_SECS,
        delay_warning = config::DEFAULT_DELAY_WARNING_SECS,
        lifetime = config::DEFAULT_QUEUE_LIFETIME_SECS,
    )
}

/// Writes the default config unless one exists; returns whether it wrote it.
pub fn ensure_default_config(data: &DataDir) -> anyhow::Result<bool> {
    let path = data.config_file();
    if path.exists() {
        return Ok(false);
    }
    hermes_runtime::fs::write_atomic(&path, default_config_text().as_bytes(), 0o600)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(true)
}

/// Why the config could not be loaded.
#[derive(Debug)]
pub enum ConfigLoadError {
    Read(std::path::PathBuf, std::io::Error),
    Invalid(std::path::PathBuf, ConfigErrors),
}

impl std::fmt::Display for ConfigLoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigLoadError::Read(path, e) => write!(f, "cannot read {}: {e}", path.display()),
            ConfigLoadError::Invalid(path, errors) => {
                write!(f, "{} is invalid:", path.display())?;
                for e in &errors.0 {
                    write!(f, "\n  {e}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigLoadError {}

/// Loads and validates `DATA/config/hermes.toml`; the embedded host-mode default when the file
/// does not exist (a data folder made by `hermes domain add` before any `hermes up`).
pub fn load_config(data: &DataDir) -> Result<Config, ConfigLoadError> {
    let path = data.config_file();
    match std::fs::read_to_string(&path) {
        Ok(text) => Config::from_toml(&text).map_err(|e| ConfigLoadError::Invalid(path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::host_default()),
        Err(e) => Err(ConfigLoadError::Read(path, e)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn default_config_validates_with_loopback_plaintext() {
        let c = Config::from_toml(&default_config_text()).unwrap();
        assert!(c.imap.plaintext_auth_on_loopback);
        assert!(c.listen.is_loopback());
        assert_eq!(c.imap.port, config::DEFAULT_IMAP_PORT);
    }

    #[test]
    fn default_config_written_once() {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::new(tmp.path().join("d"));
        ensure_layout(&data).unwrap();
        assert!(ensure_default_config(&data).unwrap());
        std::fs::write(data.config_file(), "[imap]\nport = 0\n").unwrap();
        assert!(!ensure_default_config(&data).unwrap());
        assert_eq!(load_config(&data).unwrap().imap.port, 0);
        let mode = std::fs::metadata(data.root()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn invalid_config_lists_every_error() {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::new(tmp.path());
        ensure_layout(&data).unwrap();
        std::fs::write(data.config_file(), "[server]\nlisten = \"x\"\n[store]\nzstd_level = 99\n").unwrap();
        let e = load_config(&data).unwrap_err().to_string();
        assert!(e.contains("server.listen") && e.contains("store.zstd_level"), "{e}");
    }
}
