//! The configuration `hermes init` writes on a box's first boot (`/data/config/hermes.toml`
//! when absent): the appliance's standard ports on every address, plaintext logins refused
//! (clients use STARTTLS or implicit TLS; the box has a self-signed certificate until the admin
//! installs one).
//!
//! What it is not: the schema (hermes_core::config) or the host-mode default (hermes up).
//!
//! Invariant: the text validates with `Config::from_toml` (tested), and an existing file is
//! never overwritten.

/// The first-boot configuration for `hostname`.
pub fn default_text(hostname: &str) -> String {
    format!(
        r#"# Hermes configuration, written by `hermes init` on the appliance's first boot.
# Every key is optional; unknown keys are refused. Schema: hermes_core::config.

[server]
hostname = "{hostname}"
# Every address: the appliance serves the network.
listen = "0.0.0.0"

[imap]
port = 143
tls_port = 993
plaintext_auth_on_loopback = false

[pop3]
port = 110
tls_port = 995
plaintext_auth_on_loopback = false

[lmtp]
port = 24

[managesieve]
# RFC 5804's port.
port = 4190
plaintext_auth_on_loopback = false

[router]
smtp_port = 25
submission_port = 587
submissions_port = 465
relay_networks = []

[admin]
# The local admin web UI (HTTPS).
port = 8443
"#
    )
}

/// Writes the default unless a config exists; returns whether it wrote one.
pub fn ensure(data: &hermes_core::paths::DataDir, hostname: &str) -> std::io::Result<bool> {
    let path = data.config_file();
    if path.exists() {
        return Ok(false);
    }
    std::fs::create_dir_all(data.config_dir())?;
    hermes_runtime::fs::write_atomic(&path, default_text(hostname).as_bytes(), 0o640)?;
    Ok(true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    #[test]
    fn default_validates() {
        let c = hermes_core::config::Config::from_toml(&super::default_text("hermes")).unwrap();
        assert_eq!(c.imap.port, 143);
        assert!(!c.imap.plaintext_auth_on_loopback);
        assert!(c.listen.is_unspecified());
        assert_eq!(c.admin.port, 8443);
        assert_eq!(c.managesieve.port, 4190);
    }
}
