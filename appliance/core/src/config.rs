//! Configuration in two stages: [`RawConfig`] is what serde reads from `hermes.toml`
//! (`deny_unknown_fields`, every field optional), [`Config`] is the validated result with every
//! default filled in. [`Config::from_toml`] reports every error at once, each with its field path.
//!
//! Every default is a named constant with the reason for its value.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Host-mode IMAP port: design §2 maps ports below 1024 to 10000 + P.
pub const DEFAULT_IMAP_PORT: u16 = 10143;
pub const DEFAULT_IMAPS_PORT: u16 = 10993;
/// POP3 110 and POP3S 995 mapped per design §2.
pub const DEFAULT_POP3_PORT: u16 = 10110;
pub const DEFAULT_POP3S_PORT: u16 = 10995;
/// LMTP has no assigned port; 24 (private mail system) is customary, so 10024 in host mode.
pub const DEFAULT_LMTP_PORT: u16 = 10024;
/// 64 KiB: far above any real client's command line (Dovecot allows 64 KiB too), small enough
/// that thousands of pre-login connections cannot exhaust memory.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;
/// Literals per command: MULTIAPPEND of a few hundred messages is plenty; more is abuse.
pub const DEFAULT_MAX_LITERALS_PER_COMMAND: usize = 1000;
/// Concurrent sessions per user: Thunderbird opens up to 5 per account, phones a few more;
/// 50 leaves room for several devices while stopping runaway clients.
pub const DEFAULT_MAX_SESSIONS_PER_USER: usize = 50;
/// Concurrent connections per client address, as Dovecot's mail_max_userip_connections guards.
/// A university NAT gateway fronts many users, so this is generous.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 500;
/// Total concurrent connections per service: 20,000 covers the seed's peak with headroom.
pub const DEFAULT_MAX_CONNECTIONS: usize = 20_000;
/// Delay before answering a failed login, doubling per failure from the same address up to
/// [`DEFAULT_MAX_AUTH_FAIL_DELAY_MS`]: slows guessing without hurting a typo.
pub const DEFAULT_AUTH_FAIL_DELAY_MS: u64 = 1_000;
pub const DEFAULT_MAX_AUTH_FAIL_DELAY_MS: u64 = 15_000;
/// RFC 9051 §5.4: an idle client may be logged out after at least 30 minutes.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 30 * 60;
/// Before login, a client has less reason to linger (RFC 9051 allows a short timeout).
pub const DEFAULT_PRELOGIN_TIMEOUT_SECS: u64 = 60;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub server: Option<RawServer>,
    pub imap: Option<RawImap>,
    pub lmtp: Option<RawLmtp>,
    pub pop3: Option<RawPop3>,
    pub limits: Option<RawLimits>,
    pub store: Option<RawStore>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub hostname: Option<String>,
    /// Address every service binds (host mode: 127.0.0.1).
    pub listen: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawImap {
    pub port: Option<u16>,
    pub tls_port: Option<u16>,
    /// Allow LOGIN/AUTHENTICATE without TLS from loopback addresses.
    pub plaintext_auth_on_loopback: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLmtp {
    pub port: Option<u16>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPop3 {
    pub port: Option<u16>,
    pub tls_port: Option<u16>,
    /// Allow USER/PASS and AUTH without TLS from loopback addresses.
    pub plaintext_auth_on_loopback: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_message_bytes: Option<u64>,
    pub max_line: Option<usize>,
    pub max_literals_per_command: Option<usize>,
    pub max_sessions_per_user: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    pub max_connections: Option<usize>,
    pub auth_fail_delay_ms: Option<u64>,
    pub max_auth_fail_delay_ms: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    pub prelogin_timeout_secs: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub zstd_level: Option<i32>,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub hostname: String,
    pub listen: IpAddr,
    pub imap: ImapConfig,
    pub lmtp: LmtpConfig,
    pub pop3: Pop3Config,
    pub limits: Limits,
    pub store: StoreSettings,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapConfig {
    /// 0 asks the kernel for a free port (tests); the bound port is reported in endpoints.json.
    pub port: u16,
    pub tls_port: u16,
    pub plaintext_auth_on_loopback: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pop3Config {
    /// 0 asks the kernel for a free port (tests); the bound port is reported in endpoints.json.
    pub port: u16,
    pub tls_port: u16,
    pub plaintext_auth_on_loopback: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LmtpConfig {
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_message_bytes: u64,
    pub max_line: usize,
    pub max_literals_per_command: usize,
    pub max_sessions_per_user: usize,
    pub max_connections_per_ip: usize,
    pub max_connections: usize,
    pub auth_fail_delay_ms: u64,
    pub max_auth_fail_delay_ms: u64,
    pub idle_timeout_secs: u64,
    pub prelogin_timeout_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    pub zstd_level: i32,
}

/// One problem in a config file, with the path of the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found, so the admin fixes them in one pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration:\n{}", .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl Config {
    /// Parses and validates a `hermes.toml`.
    pub fn from_toml(text: &str) -> Result<Config, ConfigErrors> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            ConfigErrors(vec![ConfigError { path: "hermes.toml".into(), message: e.message().to_string() }])
        })?;
        Config::validate(raw)
    }

    /// The embedded host-mode default: every service on 127.0.0.1, ports per design §2.
    pub fn host_default() -> Config {
        match Config::validate(RawConfig::default()) {
            Ok(c) => c,
            // The defaults are constants checked by the `defaults_validate` test.
            Err(e) => panic!("built-in defaults invalid: {e}"),
        }
    }

    pub fn validate(raw: RawConfig) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let server = raw.server.unwrap_or_default();
        let imap = raw.imap.unwrap_or_default();
        let lmtp = raw.lmtp.unwrap_or_default();
        let pop3 = raw.pop3.unwrap_or_default();
        let limits = raw.limits.unwrap_or_default();
        let store = raw.store.unwrap_or_default();

        let hostname = server.hostname.unwrap_or_else(|| "localhost".to_string());
        if hostname.is_empty()
            || hostname.len() > 253
            || !hostname.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        {
            errors.push(ConfigError { path: "server.hostname".into(), message: "not a valid host name".into() });
        }
        let listen_text = server.listen.unwrap_or_else(|| "127.0.0.1".to_string());
        let listen = match listen_text.parse::<IpAddr>() {
            Ok(a) => a,
            Err(_) => {
                errors.push(ConfigError { path: "server.listen".into(), message: format!("not an IP address: {listen_text:?}") });
                IpAddr::from([127, 0, 0, 1])
            }
        };

        let mut positive = |path: &str, v: u64| {
            if v == 0 {
                errors.push(ConfigError { path: path.into(), message: "must be greater than zero".into() });
            }
        };
        let max_message_bytes = limits.max_message_bytes.unwrap_or(crate::DEFAULT_MAX_MESSAGE_BYTES);
        positive("limits.max_message_bytes", max_message_bytes);
        let max_line = limits.max_line.unwrap_or(DEFAULT_MAX_LINE);
        positive("limits.max_line", max_line as u64);
        let max_literals_per_command = limits.max_literals_per_command.unwrap_or(DEFAULT_MAX_LITERALS_PER_COMMAND);
        positive("limits.max_literals_per_command", max_literals_per_command as u64);
        let max_sessions_per_user = limits.max_sessions_per_user.unwrap_or(DEFAULT_MAX_SESSIONS_PER_USER);
        positive("limits.max_sessions_per_user", max_sessions_per_user as u64);
        let max_connections_per_ip = limits.max_connections_per_ip.unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_IP);
        positive("limits.max_connections_per_ip", max_connections_per_ip as u64);
        let max_connections = limits.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        positive("limits.max_connections", max_connections as u64);
        let idle_timeout_secs = limits.idle_timeout_secs.unwrap_or(DEFAULT_IDLE_TIMEOUT_SECS);
        positive("limits.idle_timeout_secs", idle_timeout_secs);
        let prelogin_timeout_secs = limits.prelogin_timeout_secs.unwrap_or(DEFAULT_PRELOGIN_TIMEOUT_SECS);
        positive("limits.prelogin_timeout_secs", prelogin_timeout_secs);
        let auth_fail_delay_ms = limits.auth_fail_delay_ms.unwrap_or(DEFAULT_AUTH_FAIL_DELAY_MS);
        let max_auth_fail_delay_ms = limits.max_auth_fail_delay_ms.unwrap_or(DEFAULT_MAX_AUTH_FAIL_DELAY_MS);
        if max_auth_fail_delay_ms < auth_fail_delay_ms {
            errors.push(ConfigError {
                path: "limits.max_auth_fail_delay_ms".into(),
                message: "must be at least limits.auth_fail_delay_ms".into(),
            });
        }
        let zstd_level = store.zstd_level.unwrap_or(3);
        if !(1..=19).contains(&zstd_level) {
            errors.push(ConfigError { path: "store.zstd_level".into(), message: "must be between 1 and 19".into() });
        }

        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        Ok(Config {
            hostname,
            listen,
            imap: ImapConfig {
                port: imap.port.unwrap_or(DEFAULT_IMAP_PORT),
                tls_port: imap.tls_port.unwrap_or(DEFAULT_IMAPS_PORT),
                plaintext_auth_on_loopback: imap.plaintext_auth_on_loopback.unwrap_or(false),
            },
            lmtp: LmtpConfig { port: lmtp.port.unwrap_or(DEFAULT_LMTP_PORT) },
            pop3: Pop3Config {
                port: pop3.port.unwrap_or(DEFAULT_POP3_PORT),
                tls_port: pop3.tls_port.unwrap_or(DEFAULT_POP3S_PORT),
                plaintext_auth_on_loopback: pop3.plaintext_auth_on_loopback.unwrap_or(false),
            },
            limits: Limits {
                max_message_bytes,
                max_line,
                max_literals_per_command,
                max_sessions_per_user,
                max_connections_per_ip,
                max_connections,
                auth_fail_delay_ms,
                max_auth_fail_delay_ms,
                idle_timeout_secs,
                prelogin_timeout_secs,
            },
            store: StoreSettings { zstd_level },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        let c = Config::host_default();
        assert_eq!(c.imap.port, DEFAULT_IMAP_PORT);
        assert_eq!(c.limits.max_message_bytes, 25 * 1024 * 1024);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = Config::from_toml("[imap]\nportt = 1\n").unwrap_err();
        assert!(e.to_string().contains("portt"), "{e}");
    }

    #[test]
    fn all_errors_reported_at_once() {
        let e = Config::from_toml("[server]\nlisten = \"nope\"\n[store]\nzstd_level = 99\n").unwrap_err();
        let paths: Vec<_> = e.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["server.listen", "store.zstd_level"]);
    }
}
