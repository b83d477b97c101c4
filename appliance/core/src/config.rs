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
/// LMTP delivers to any local user without authentication: loopback only unless configured.
pub const DEFAULT_LMTP_LISTEN: &str = "127.0.0.1";
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
    pub router: Option<RawRouter>,
    pub sieve: Option<RawSieve>,
    pub managesieve: Option<RawManageSieve>,
    pub admin: Option<RawAdmin>,
    pub hw: Option<RawHw>,
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
    /// Address of the LMTP TCP listener (default loopback; see [`DEFAULT_LMTP_LISTEN`]).
    pub listen: Option<String>,
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
    /// Days expunged mail stays restorable (`hermes undelete`) before the hourly purge drops it.
    pub retention_days: Option<u64>,
    /// Over-quota answer at LMTP: `false` 452 4.2.2 (the sender retries), `true` 552 5.2.2.
    pub quota_permanent_failure: Option<bool>,
    /// Message-count limit (RFC 9208 MESSAGE) of accounts that have none of their own.
    /// Absent: unlimited.
    pub default_quota_messages: Option<u64>,
    /// Usage levels, in percent, at which a warning message is delivered (default [80, 95]).
    pub quota_warning_percents: Option<Vec<u8>>,
}

/// `[router]`: the SMTP hub (MX, submission, queue, routes). See `docs/router.md`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouter {
    /// MX port (25; host mode 10025). No AUTH here.
    pub smtp_port: Option<u16>,
    /// Submission with STARTTLS (587; host mode 10587).
    pub submission_port: Option<u16>,
    /// Submission over implicit TLS (465; host mode 10465).
    pub submissions_port: Option<u16>,
    pub max_recipients_mx: Option<usize>,
    pub max_recipients_submission: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    pub max_commands: Option<usize>,
    pub max_auth_failures: Option<usize>,
    /// Client networks allowed to relay without AUTH, as CIDR (`192.0.2.0/24`). Default none.
    pub relay_networks: Option<Vec<String>>,
    pub queue_lifetime_secs: Option<u64>,
    pub delay_warning_secs: Option<u64>,
    pub retry_min_secs: Option<u64>,
    pub retry_max_secs: Option<u64>,
    /// Concurrent deliveries the queue runner performs.
    pub delivery_concurrency: Option<usize>,
    /// DNS resolvers for MX lookups (`ip` or `ip:port`); empty: the system's resolv.conf.
    pub nameservers: Option<Vec<String>>,
    /// Port of MX hosts (25; tests point MX records at a loopback sink on another port).
    pub remote_smtp_port: Option<u16>,
    /// Domain of SRS addresses for forwarded mail (default: `server.hostname`); must route
    /// to this router (MX record).
    pub srs_domain: Option<String>,
    /// Per-domain routes to departmental servers.
    pub routes: Option<Vec<RawRoute>>,
}

/// One `[[router.routes]]` entry.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub domain: Option<String>,
    /// `host:port` entries, tried in order.
    pub hosts: Option<Vec<String>>,
    /// `required`, `opportunistic` (default) or `none`.
    pub tls: Option<String>,
    pub auth_user: Option<String>,
    pub auth_password: Option<String>,
    /// Verify recipients at RCPT time with a callout to these hosts (default true).
    pub verify_recipients: Option<bool>,
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
    pub router: RouterConfig,
    pub sieve: SieveConfig,
    pub managesieve: ManageSieveConfig,
    pub admin: AdminConfig,
    pub hw: HwConfig,
}

/// Host-mode SMTP ports: 25, 587 and 465 mapped to 10000 + P (design §2).
pub const DEFAULT_SMTP_PORT: u16 = 10025;
pub const DEFAULT_SUBMISSION_PORT: u16 = 10587;
pub const DEFAULT_SUBMISSIONS_PORT: u16 = 10465;
/// RFC 5321 §4.5.3.1.8 requires accepting 100 recipients; strangers get no more (spam runs).
pub const DEFAULT_MAX_RECIPIENTS_MX: usize = 100;
/// Authenticated users mail classes and committees: 1000 per message, as Gmail allows.
pub const DEFAULT_MAX_RECIPIENTS_SUBMISSION: usize = 1000;
/// Postfix's smtpd_client_connection_count_limit default (50): one host gets a fair share.
pub const DEFAULT_SMTP_MAX_CONNECTIONS_PER_IP: usize = 50;
/// Commands per SMTP session: thousands of messages over one connection is legitimate.
pub const DEFAULT_SMTP_MAX_COMMANDS: usize = 10_000;
/// Failed AUTH attempts per SMTP session before 421 (each also delayed, doubling per address).
pub const DEFAULT_SMTP_MAX_AUTH_FAILURES: usize = 3;
/// RFC 5321 §4.5.4.1: give up after 4-5 days; Postfix's maximal_queue_lifetime is 5 days.
pub const DEFAULT_QUEUE_LIFETIME_SECS: u64 = 5 * 86_400;
/// RFC 3461 delay DSN: Postfix's delay_warning_time, when enabled, is 4 hours.
pub const DEFAULT_DELAY_WARNING_SECS: u64 = 4 * 3_600;
/// First retry after 5 minutes (Postfix minimal_backoff_time 300 s), doubling to 1 hour
/// (RFC 5321 §4.5.4.1 suggests at least 30 minutes; Postfix's maximal_backoff_time is 4000 s).
pub const DEFAULT_RETRY_MIN_SECS: u64 = 300;
pub const DEFAULT_RETRY_MAX_SECS: u64 = 3_600;
/// Parallel deliveries: LMTP to the local store is fast; 20 outbound sessions, as Postfix's
/// default_destination_concurrency_limit, keeps remote hosts happy.
pub const DEFAULT_DELIVERY_CONCURRENCY: usize = 20;

/// RFC 5321: mail exchangers listen on port 25.
pub const DEFAULT_REMOTE_SMTP_PORT: u16 = 25;

/// A client network in CIDR form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// `192.0.2.0/24`, `2001:db8::/32`, or a single address.
    pub fn parse(s: &str) -> Option<Cidr> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - self.prefix as u32) };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - self.prefix as u32) };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// How a route uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteTls {
    Required,
    Opportunistic,
    None,
}

/// A validated route: mail for `domain` goes to `hosts` (in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub domain: String,
    pub hosts: Vec<(String, u16)>,
    pub tls: RouteTls,
    /// (user, password) for AUTH PLAIN at the departmental server.
    pub auth: Option<(String, crate::secret::Secret<String>)>,
    /// Callout verification of recipients at RCPT time.
    pub verify_recipients: bool,
}

/// The validated `[router]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterConfig {
    pub smtp_port: u16,
    pub submission_port: u16,
    pub submissions_port: u16,
    pub max_recipients_mx: usize,
    pub max_recipients_submission: usize,
    pub max_connections_per_ip: usize,
    pub max_commands: usize,
    pub max_auth_failures: usize,
    pub relay_networks: Vec<Cidr>,
    pub queue_lifetime_secs: u64,
    pub delay_warning_secs: u64,
    pub retry_min_secs: u64,
    pub retry_max_secs: u64,
    pub delivery_concurrency: usize,
    pub nameservers: Vec<std::net::SocketAddr>,
    pub remote_smtp_port: u16,
    /// `None`: use `server.hostname`.
    pub srs_domain: Option<String>,
    pub routes: Vec<Route>,
}

fn validate_router(r: RawRouter, errors: &mut Vec<ConfigError>) -> RouterConfig {
    let mut err = |path: &str, message: String| errors.push(ConfigError { path: format!("router.{path}"), message });
    let positive = |path: &str, v: u64, err: &mut dyn FnMut(&str, String)| {
        if v == 0 {
            err(path, "must be greater than zero".into());
        }
        v
    };
    let max_recipients_mx = positive("max_recipients_mx", r.max_recipients_mx.unwrap_or(DEFAULT_MAX_RECIPIENTS_MX) as u64, &mut err) as usize;
    let max_recipients_submission = positive(
        "max_recipients_submission",
        r.max_recipients_submission.unwrap_or(DEFAULT_MAX_RECIPIENTS_SUBMISSION) as u64,
        &mut err,
    ) as usize;
    let max_connections_per_ip =
        positive("max_connections_per_ip", r.max_connections_per_ip.unwrap_or(DEFAULT_SMTP_MAX_CONNECTIONS_PER_IP) as u64, &mut err) as usize;
    let max_commands = positive("max_commands", r.max_commands.unwrap_or(DEFAULT_SMTP_MAX_COMMANDS) as u64, &mut err) as usize;
    let max_auth_failures =
        positive("max_auth_failures", r.max_auth_failures.unwrap_or(DEFAULT_SMTP_MAX_AUTH_FAILURES) as u64, &mut err) as usize;
    let queue_lifetime_secs = positive("queue_lifetime_secs", r.queue_lifetime_secs.unwrap_or(DEFAULT_QUEUE_LIFETIME_SECS), &mut err);
    let delay_warning_secs = r.delay_warning_secs.unwrap_or(DEFAULT_DELAY_WARNING_SECS);
    let retry_min_secs = positive("retry_min_secs", r.retry_min_secs.unwrap_or(DEFAULT_RETRY_MIN_SECS), &mut err);
    let retry_max_secs = r.retry_max_secs.unwrap_or(DEFAULT_RETRY_MAX_SECS);
    if retry_max_secs < retry_min_secs {
        err("retry_max_secs", "must be at least router.retry_min_secs".into());
    }
    let delivery_concurrency =
        positive("delivery_concurrency", r.delivery_concurrency.unwrap_or(DEFAULT_DELIVERY_CONCURRENCY) as u64, &mut err) as usize;
    let mut relay_networks = Vec::new();
    for (i, n) in r.relay_networks.unwrap_or_default().iter().enumerate() {
        match Cidr::parse(n) {
            Some(c) => relay_networks.push(c),
            None => err(&format!("relay_networks[{i}]"), format!("not a network in CIDR form: {n:?}")),
        }
    }
    let mut nameservers = Vec::new();
    for (i, n) in r.nameservers.unwrap_or_default().iter().enumerate() {
        let parsed = n.parse::<std::net::SocketAddr>().ok().or_else(|| n.parse::<IpAddr>().ok().map(|ip| std::net::SocketAddr::new(ip, 53)));
        match parsed {
            Some(a) => nameservers.push(a),
            None => err(&format!("nameservers[{i}]"), format!("not an address or address:port: {n:?}")),
        }
    }
    let mut routes = Vec::new();
    for (i, raw) in r.routes.unwrap_or_default().into_iter().enumerate() {
        let path = format!("routes[{i}]");
        let domain = match raw.domain.as_deref().and_then(crate::directory::normalize_domain) {
            Some(d) => d,
            None => {
                err(&format!("{path}.domain"), "missing or not a valid domain".into());
                continue;
            }
        };
        let mut hosts = Vec::new();
        for (j, h) in raw.hosts.unwrap_or_default().iter().enumerate() {
            let parsed = h.rsplit_once(':').and_then(|(host, port)| {
                let host = host.trim_start_matches('[').trim_end_matches(']');
                (!host.is_empty()).then_some(())?;
                Some((host.to_string(), port.parse::<u16>().ok().filter(|p| *p > 0)?))
            });
            match parsed {
                Some(hp) => hosts.push(hp),
                None => err(&format!("{path}.hosts[{j}]"), format!("expected host:port, got {h:?}")),
            }
        }
        if hosts.is_empty() {
            err(&format!("{path}.hosts"), "at least one host:port is needed".into());
        }
        let tls = match raw.tls.as_deref().unwrap_or("opportunistic") {
            "required" => RouteTls::Required,
            "opportunistic" => RouteTls::Opportunistic,
            "none" => RouteTls::None,
            other => {
                err(&format!("{path}.tls"), format!("must be required, opportunistic or none, not {other:?}"));
                RouteTls::Opportunistic
            }
        };
        let auth = match (raw.auth_user, raw.auth_password) {
            (Some(u), Some(p)) => Some((u, crate::secret::Secret::new(p))),
            (None, None) => None,
            _ => {
                err(&format!("{path}.auth_user"), "auth_user and auth_password go together".into());
                None
            }
        };
        routes.push(Route { domain, hosts, tls, auth, verify_recipients: raw.verify_recipients.unwrap_or(true) });
    }
    RouterConfig {
        smtp_port: r.smtp_port.unwrap_or(DEFAULT_SMTP_PORT),
        submission_port: r.submission_port.unwrap_or(DEFAULT_SUBMISSION_PORT),
        submissions_port: r.submissions_port.unwrap_or(DEFAULT_SUBMISSIONS_PORT),
        max_recipients_mx,
        max_recipients_submission,
        max_connections_per_ip,
        max_commands,
        max_auth_failures,
        relay_networks,
        queue_lifetime_secs,
        delay_warning_secs,
        retry_min_secs,
        retry_max_secs,
        delivery_concurrency,
        nameservers,
        remote_smtp_port: r.remote_smtp_port.filter(|p| *p > 0).unwrap_or(DEFAULT_REMOTE_SMTP_PORT),
        srs_domain: match r.srs_domain.as_deref().map(|d| (d, crate::directory::normalize_domain(d))) {
            None => None,
            Some((_, Some(d))) => Some(d),
            Some((d, None)) => {
                err("srs_domain", format!("not a valid domain: {d:?}"));
                None
            }
        },
        routes,
    }
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
    /// LMTP accepts mail for any local user without authentication, so its TCP listener stays on
    /// loopback unless the admin names another address (the router and scripts use the unix socket).
    pub listen: IpAddr,
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
    /// How long expunged mail is kept for undelete, in days (0: until the next hourly purge).
    pub retention_days: u64,
    /// Answer an over-quota recipient at LMTP with a permanent 552 5.2.2 instead of 452 4.2.2.
    pub quota_permanent_failure: bool,
    /// Message limit of accounts whose own is "default"; `None` (the default): unlimited.
    pub default_quota_messages: Option<u64>,
    /// Warning thresholds in percent, strictly increasing, each 1..=100.
    pub quota_warning_percents: Vec<u8>,
}

/// Accounts have no message-count limit unless the site sets one: the byte quota already
/// bounds the disk, and a count limit only guards against millions of tiny messages (an
/// index cost), which the seed never saw. Dovecot's and Cyrus' defaults are unlimited too.
pub const DEFAULT_QUOTA_MESSAGES: Option<u64> = None;
/// Warnings at 80 % and 95 % of the quota: the pair `hermes_store::QUOTA_WARNING_PERCENTS`
/// explains (a store test keeps the two equal).
pub const DEFAULT_QUOTA_WARNING_PERCENTS: [u8; 2] = [80, 95];
/// Most warning levels: each costs one message per crossing; four is already a lot of mail.
pub const MAX_QUOTA_WARNING_LEVELS: usize = 4;

/// Expunged mail is kept 7 days: a user who deleted mail by mistake on a Friday can still ask
/// the next week. Must equal `hermes_store::DEFAULT_RETENTION_SECS` (a store test checks it).
pub const DEFAULT_RETENTION_DAYS: u64 = 7;
/// Longest retention accepted: ten years is beyond any policy, and keeps the seconds far from
/// overflow.
pub const MAX_RETENTION_DAYS: u64 = 3650;
/// Over quota at LMTP is temporary by default (452 4.2.2, RFC 3463 X.2.2 "mailbox full"): the
/// sending MTA keeps the message queued and retries (up to its queue lifetime, days), so a user
/// who cleans up after the 80 %/95 % warnings loses nothing, where a 5xx bounces it at once.
/// Cyrus makes the same choice (`lmtp_over_quota_perm_failure: 0`). Dovecot defaults the other
/// way (`quota_full_tempfail = no` answers 552 5.2.2), trading lost mail for a prompt bounce
/// and shorter queues elsewhere; sites that prefer that set `quota_permanent_failure = true`.
pub const DEFAULT_QUOTA_PERMANENT_FAILURE: bool = false;

/// Host-mode ManageSieve port: RFC 5804 assigns 4190, mapped to 10000 + P (design §2).
pub const DEFAULT_MANAGESIEVE_PORT: u16 = 14190;
/// Largest Sieve script, in octets: Pigeonhole's `sieve_max_script_size` is 1 MiB, but real
/// filter sets (Roundcube's managesieve plugin, hand-written vacation rules) stay under a few
/// KiB; 64 KiB leaves room for long rule lists while keeping compile time and memory trivial.
pub const DEFAULT_SIEVE_MAX_SCRIPT_BYTES: usize = 64 * 1024;
/// Scripts per user (only one is active): a handful of drafts and variants is normal use;
/// Pigeonhole's `sieve_quota_max_scripts` is unlimited by default, which we do not want.
pub const DEFAULT_SIEVE_MAX_SCRIPTS: usize = 20;
/// Redirects per message (RFC 5228 §4.2 asks implementations to bound them); Pigeonhole's
/// `sieve_max_redirects` default is 4.
pub const DEFAULT_SIEVE_MAX_REDIRECTS: usize = 4;
/// Interpreter steps per delivery: sieve-rs counts one per instruction; 100,000 runs any real
/// filter set (a few hundred rules) many times over and stops a runaway loop in milliseconds.
pub const DEFAULT_SIEVE_MAX_INSTRUCTIONS: usize = 100_000;
/// RFC 5230 §4.1: the minimum `:days` SHOULD be 1 and the default 7; sites may raise the
/// minimum, never lower it below one day without `vacation-seconds` (not offered).
pub const DEFAULT_VACATION_MIN_DAYS: u64 = 1;
pub const DEFAULT_VACATION_DAYS: u64 = 7;
/// Longest accepted `:days` (Pigeonhole's `sieve_vacation_max_period` default is 60 days).
pub const DEFAULT_VACATION_MAX_DAYS: u64 = 60;

/// `[sieve]`: filtering at delivery (see `docs/sieve.md`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSieve {
    /// `host:port` of the SMTP relay for vacation replies and redirects. Default: the router's
    /// MX port on this host when `[router]` is configured; otherwise none (both are skipped).
    pub relay: Option<String>,
    pub relay_user: Option<String>,
    pub relay_password: Option<String>,
    pub max_script_bytes: Option<usize>,
    pub max_scripts: Option<usize>,
    pub max_redirects: Option<usize>,
    pub max_instructions: Option<usize>,
    pub vacation_min_days: Option<u64>,
    pub vacation_default_days: Option<u64>,
    pub vacation_max_days: Option<u64>,
}

/// Host-mode admin UI port: the appliance serves it on 8443 (design §2), host mode on 18443.
pub const DEFAULT_ADMIN_PORT: u16 = 18443;

/// `[admin]`: the local admin web UI (HTTPS).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub port: Option<u16>,
}

/// The validated `[admin]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// HTTPS port (0: the kernel chooses; the real one is in `run/endpoints.json` as `admin`).
    pub port: u16,
}

fn validate_admin(r: RawAdmin) -> AdminConfig {
    AdminConfig { port: r.port.unwrap_or(DEFAULT_ADMIN_PORT) }
}

/// `[hw]` health sweep: every 5 minutes. SMART attributes move over days, not seconds; 16 disks
/// × 5 ioctls every 300 s is far below 1 % of a core (docs/hw.md, "Cost"). md failures are not
/// waited for: the md watcher polls sysfs every 500 ms on its own.
pub const DEFAULT_HW_INTERVAL_SECS: u64 = 300;
/// Shortest sweep interval accepted: SMART commands make some disks pause I/O briefly.
pub const MIN_HW_INTERVAL_SECS: u64 = 10;
/// Per-disk probe deadline: a disk that has not answered its SMART reads within 30 s is judged
/// "unknown (timed out)" and skipped until its stuck probe returns.
pub const DEFAULT_HW_PROBE_TIMEOUT_SECS: u64 = 30;
/// Bays of the reference chassis (a 4U server with 16 data disks).
pub const DEFAULT_HW_BAYS: u16 = 16;
/// Monthly `check` scrub, like Debian's `checkarray` cron job.
pub const DEFAULT_HW_SCRUB_INTERVAL_DAYS: u32 = 30;
/// Scrub throttle (KiB/s per disk): leaves most of the bandwidth to mail.
pub const DEFAULT_HW_SCRUB_SPEED_KIB_S: u32 = 50_000;

/// `[hw]`: the disk and RAID health service (`hermes serve hw`, docs/hw.md).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHw {
    /// Seconds between SMART sweeps.
    pub interval_secs: Option<u64>,
    /// Seconds a disk's SMART probe may take before it is judged unknown (timed out).
    pub probe_timeout_secs: Option<u64>,
    /// Number of data bays.
    pub bays: Option<u16>,
    /// Bay map overrides: `{ controller = "/sys/devices/pci0000:00/0000:00:1f.2", port = "ata3", bay = 0 }`.
    pub bay_overrides: Option<Vec<RawBayOverride>>,
    /// Device-path prefixes (under /sys/devices/) never given a bay (the boot disk).
    pub exclude: Option<Vec<String>>,
    /// Addresses alerted by mail (local accounts or aliases of this server).
    pub alert_to: Option<Vec<String>>,
    /// HDD / SATA SSD temperature limits (°C): warning and failing.
    pub hdd_temp_warn_c: Option<i16>,
    pub hdd_temp_fail_c: Option<i16>,
    pub ssd_temp_warn_c: Option<i16>,
    pub ssd_temp_fail_c: Option<i16>,
    /// Add a new disk found in the bay of a removed member back to its array (as a spare).
    pub auto_replace: Option<bool>,
    /// Days between `check` scrubs (0: never).
    pub scrub_interval_days: Option<u32>,
    /// Scrub speed cap in KiB/s per disk.
    pub scrub_speed_kib_s: Option<u32>,
    /// The root under which `sys/`, `proc/` and `dev/` are read: `/` on a real machine; tests
    /// point it at a fake tree.
    pub sysroot: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBayOverride {
    pub controller: Option<String>,
    pub port: Option<String>,
    pub bay: Option<u16>,
}

/// One validated bay override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BayOverrideConfig {
    pub controller: String,
    pub port: Option<String>,
    pub bay: u16,
}

/// The validated `[hw]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HwConfig {
    pub interval_secs: u64,
    pub probe_timeout_secs: u64,
    pub bays: u16,
    pub bay_overrides: Vec<BayOverrideConfig>,
    pub exclude: Vec<String>,
    pub alert_to: Vec<String>,
    /// `None`: the verdict's built-in default (docs/hw.md).
    pub hdd_temp_warn_c: Option<i16>,
    pub hdd_temp_fail_c: Option<i16>,
    pub ssd_temp_warn_c: Option<i16>,
    pub ssd_temp_fail_c: Option<i16>,
    /// Off by default: a disk slid into a bay is not written to unless the admin said so.
    pub auto_replace: bool,
    pub scrub_interval_days: u32,
    pub scrub_speed_kib_s: u32,
    pub sysroot: String,
}

fn validate_hw(r: RawHw, errors: &mut Vec<ConfigError>) -> HwConfig {
    let mut bad = |path: &str, message: String| errors.push(ConfigError { path: format!("hw.{path}"), message });
    let interval_secs = r.interval_secs.unwrap_or(DEFAULT_HW_INTERVAL_SECS);
    if interval_secs < MIN_HW_INTERVAL_SECS {
        bad("interval_secs", format!("must be at least {MIN_HW_INTERVAL_SECS}"));
    }
    let probe_timeout_secs = r.probe_timeout_secs.unwrap_or(DEFAULT_HW_PROBE_TIMEOUT_SECS);
    if !(1..=600).contains(&probe_timeout_secs) {
        bad("probe_timeout_secs", "must be between 1 and 600".into());
    }
    let bays = r.bays.unwrap_or(DEFAULT_HW_BAYS);
    if !(1..=256).contains(&bays) {
        bad("bays", "must be between 1 and 256".into());
    }
    let mut bay_overrides = Vec::new();
    for (i, o) in r.bay_overrides.unwrap_or_default().into_iter().enumerate() {
        match (o.controller, o.bay) {
            (Some(controller), Some(bay)) if controller.starts_with("/sys/devices/") && bay < bays => {
                if bay_overrides.iter().any(|b: &BayOverrideConfig| b.bay == bay) {
                    bad(&format!("bay_overrides[{i}].bay"), format!("bay {bay} is assigned twice"));
                }
                bay_overrides.push(BayOverrideConfig { controller, port: o.port, bay });
            }
            _ => bad(
                &format!("bay_overrides[{i}]"),
                format!("needs `controller` (a path under /sys/devices/) and `bay` below {bays}"),
            ),
        }
    }
    let exclude = r.exclude.unwrap_or_default();
    for (i, e) in exclude.iter().enumerate() {
        if !e.starts_with("/sys/devices/") {
            bad(&format!("exclude[{i}]"), format!("{e:?} must start with /sys/devices/"));
        }
    }
    let alert_to = r.alert_to.unwrap_or_default();
    for (i, a) in alert_to.iter().enumerate() {
        let ok = a.len() <= 254
            && a.split_once('@').is_some_and(|(l, d)| {
                !l.is_empty()
                    && !d.is_empty()
                    && !a.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || matches!(b, b'<' | b'>'))
            });
        if !ok {
            bad(&format!("alert_to[{i}]"), format!("{a:?} is not a mail address"));
        }
    }
    for (name, warn, fail) in [("hdd", r.hdd_temp_warn_c, r.hdd_temp_fail_c), ("ssd", r.ssd_temp_warn_c, r.ssd_temp_fail_c)] {
        if let (Some(w), Some(f)) = (warn, fail)
            && w >= f
        {
            bad(&format!("{name}_temp_warn_c"), format!("must be below {name}_temp_fail_c"));
        }
        for (k, v) in [("warn", warn), ("fail", fail)] {
            if v.is_some_and(|v| !(1..=150).contains(&v)) {
                bad(&format!("{name}_temp_{k}_c"), "must be between 1 and 150 °C".into());
            }
        }
    }
    let sysroot = r.sysroot.unwrap_or_else(|| "/".to_string());
    if !sysroot.starts_with('/') {
        bad("sysroot", "must be an absolute path".into());
    }
    let scrub_speed_kib_s = r.scrub_speed_kib_s.unwrap_or(DEFAULT_HW_SCRUB_SPEED_KIB_S);
    if scrub_speed_kib_s < 1000 {
        bad("scrub_speed_kib_s", "must be at least 1000".into());
    }
    HwConfig {
        interval_secs,
        probe_timeout_secs,
        bays,
        bay_overrides,
        exclude,
        alert_to,
        hdd_temp_warn_c: r.hdd_temp_warn_c,
        hdd_temp_fail_c: r.hdd_temp_fail_c,
        ssd_temp_warn_c: r.ssd_temp_warn_c,
        ssd_temp_fail_c: r.ssd_temp_fail_c,
        auto_replace: r.auto_replace.unwrap_or(false),
        scrub_interval_days: r.scrub_interval_days.unwrap_or(DEFAULT_HW_SCRUB_INTERVAL_DAYS),
        scrub_speed_kib_s,
        sysroot,
    }
}

/// `[managesieve]`: script editing (RFC 5804).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawManageSieve {
    /// 0 asks the kernel for a free port (tests).
    pub port: Option<u16>,
    /// Allow AUTHENTICATE without TLS from loopback addresses.
    pub plaintext_auth_on_loopback: Option<bool>,
}

/// The validated `[sieve]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SieveConfig {
    /// Where vacation replies and redirects are sent; `None`: they are logged and skipped.
    pub relay: Option<(String, u16)>,
    /// (user, password) for AUTH PLAIN at the relay.
    pub relay_auth: Option<(String, crate::secret::Secret<String>)>,
    pub max_script_bytes: usize,
    pub max_scripts: usize,
    pub max_redirects: usize,
    pub max_instructions: usize,
    pub vacation_min_days: u64,
    pub vacation_default_days: u64,
    pub vacation_max_days: u64,
}

/// The validated `[managesieve]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManageSieveConfig {
    pub port: u16,
    pub plaintext_auth_on_loopback: bool,
}

fn validate_managesieve(r: RawManageSieve) -> ManageSieveConfig {
    ManageSieveConfig {
        port: r.port.unwrap_or(DEFAULT_MANAGESIEVE_PORT),
        plaintext_auth_on_loopback: r.plaintext_auth_on_loopback.unwrap_or(false),
    }
}

/// `router_mx`: the listen address and MX port when `[router]` is configured (the default relay).
fn validate_sieve(r: RawSieve, router_mx: Option<(IpAddr, u16)>, errors: &mut Vec<ConfigError>) -> SieveConfig {
    let mut err = |path: &str, message: String| errors.push(ConfigError { path: format!("sieve.{path}"), message });
    let relay = match r.relay.as_deref() {
        Some("") => None,
        Some(text) => {
            let parsed = text.rsplit_once(':').and_then(|(host, port)| {
                let host = host.trim_start_matches('[').trim_end_matches(']');
                (!host.is_empty() && !host.contains(char::is_whitespace)).then_some(())?;
                Some((host.to_string(), port.parse::<u16>().ok().filter(|p| *p > 0)?))
            });
            if parsed.is_none() {
                err("relay", format!("expected host:port, got {text:?}"));
            }
            parsed
        }
        None => router_mx.map(|(ip, port)| {
            // The router binds the same listen address; an unspecified one is reachable on loopback.
            let host = if ip.is_unspecified() { "127.0.0.1".to_string() } else { ip.to_string() };
            (host, port)
        }),
    };
    let relay_auth = match (r.relay_user, r.relay_password) {
        (Some(u), Some(p)) => Some((u, crate::secret::Secret::new(p))),
        (None, None) => None,
        _ => {
            err("relay_user", "relay_user and relay_password go together".into());
            None
        }
    };
    let mut positive = |path: &str, v: u64| {
        if v == 0 {
            err(path, "must be greater than zero".into());
        }
        v
    };
    let max_script_bytes = positive("max_script_bytes", r.max_script_bytes.unwrap_or(DEFAULT_SIEVE_MAX_SCRIPT_BYTES) as u64) as usize;
    let max_scripts = positive("max_scripts", r.max_scripts.unwrap_or(DEFAULT_SIEVE_MAX_SCRIPTS) as u64) as usize;
    let max_instructions = positive("max_instructions", r.max_instructions.unwrap_or(DEFAULT_SIEVE_MAX_INSTRUCTIONS) as u64) as usize;
    let vacation_min_days = positive("vacation_min_days", r.vacation_min_days.unwrap_or(DEFAULT_VACATION_MIN_DAYS));
    let vacation_max_days = r.vacation_max_days.unwrap_or(DEFAULT_VACATION_MAX_DAYS);
    let vacation_default_days = r.vacation_default_days.unwrap_or(DEFAULT_VACATION_DAYS).clamp(vacation_min_days, vacation_max_days.max(vacation_min_days));
    if vacation_max_days < vacation_min_days {
        err("vacation_max_days", "must be at least sieve.vacation_min_days".into());
    }
    if max_script_bytes > 1024 * 1024 {
        err("max_script_bytes", "must be at most 1048576".into());
    }
    SieveConfig {
        relay,
        relay_auth,
        max_script_bytes,
        max_scripts,
        max_redirects: r.max_redirects.unwrap_or(DEFAULT_SIEVE_MAX_REDIRECTS),
        max_instructions,
        vacation_min_days,
        vacation_default_days,
        vacation_max_days,
    }
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
        // Read before `raw.router` is consumed: a `[router]` section makes it the default Sieve relay.
        let router_configured = raw.router.is_some();
        let router = validate_router(raw.router.unwrap_or_default(), &mut errors);
        let managesieve = validate_managesieve(raw.managesieve.unwrap_or_default());
        let admin = validate_admin(raw.admin.unwrap_or_default());
        let hw = validate_hw(raw.hw.unwrap_or_default(), &mut errors);

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
        let retention_days = store.retention_days.unwrap_or(DEFAULT_RETENTION_DAYS);
        if retention_days > MAX_RETENTION_DAYS {
            errors.push(ConfigError {
                path: "store.retention_days".into(),
                message: format!("must be at most {MAX_RETENTION_DAYS}"),
            });
        }
        let quota_permanent_failure = store.quota_permanent_failure.unwrap_or(DEFAULT_QUOTA_PERMANENT_FAILURE);
        let default_quota_messages = store.default_quota_messages.or(DEFAULT_QUOTA_MESSAGES);
        if default_quota_messages == Some(0) {
            errors.push(ConfigError {
                path: "store.default_quota_messages".into(),
                message: "must be greater than zero (leave it out for unlimited)".into(),
            });
        }
        let quota_warning_percents = store.quota_warning_percents.unwrap_or_else(|| DEFAULT_QUOTA_WARNING_PERCENTS.to_vec());
        if quota_warning_percents.len() > MAX_QUOTA_WARNING_LEVELS
            || quota_warning_percents.iter().any(|p| !(1..=100).contains(p))
            || quota_warning_percents.windows(2).any(|w| w[0] >= w[1])
        {
            errors.push(ConfigError {
                path: "store.quota_warning_percents".into(),
                message: format!("must be at most {MAX_QUOTA_WARNING_LEVELS} increasing percentages between 1 and 100"),
            });
        }

        let listen_for_relay = listen;
        let sieve = validate_sieve(raw.sieve.unwrap_or_default(), router_configured.then_some((listen_for_relay, router.smtp_port)), &mut errors);

        let lmtp_listen_text = lmtp.listen.clone().unwrap_or_else(|| DEFAULT_LMTP_LISTEN.to_string());
        let lmtp_listen = match lmtp_listen_text.parse::<IpAddr>() {
            Ok(a) => a,
            Err(_) => {
                errors.push(ConfigError { path: "lmtp.listen".into(), message: format!("not an IP address: {lmtp_listen_text:?}") });
                IpAddr::from([127, 0, 0, 1])
            }
        };
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
            lmtp: LmtpConfig { port: lmtp.port.unwrap_or(DEFAULT_LMTP_PORT), listen: lmtp_listen },
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
            store: StoreSettings {
                zstd_level,
                retention_days,
                quota_permanent_failure,
                default_quota_messages,
                quota_warning_percents,
            },
            router,
            sieve,
            managesieve,
            admin,
            hw,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
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
    fn router_section_validates_and_reports_paths() {
        let c = Config::host_default();
        assert_eq!(c.router.smtp_port, DEFAULT_SMTP_PORT);
        assert!(c.router.relay_networks.is_empty(), "no network is trusted by default");
        let c = Config::from_toml(
            "[router]\nrelay_networks = [\"192.0.2.0/24\", \"::1\"]\n[[router.routes]]\ndomain = \"Dept.Example.org\"\nhosts = [\"127.0.0.1:2525\"]\ntls = \"none\"\n",
        )
        .unwrap();
        assert!(c.router.relay_networks[0].contains("192.0.2.77".parse().unwrap()));
        assert!(!c.router.relay_networks[0].contains("192.0.3.1".parse().unwrap()));
        assert!(c.router.relay_networks[1].contains("::1".parse().unwrap()));
        assert_eq!(c.router.routes[0].domain, "dept.example.org");
        assert_eq!(c.router.routes[0].hosts, [("127.0.0.1".to_string(), 2525)]);
        let e = Config::from_toml("[router]\nrelay_networks = [\"10.0.0.0/33\"]\n[[router.routes]]\ndomain = \"x.org\"\nhosts = [\"nope\"]\n").unwrap_err();
        let paths: Vec<_> = e.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["router.relay_networks[0]", "router.routes[0].hosts[0]", "router.routes[0].hosts"]);
    }

    #[test]
    fn store_retention_and_quota_failure_mode() {
        let c = Config::host_default();
        assert_eq!(c.store.retention_days, DEFAULT_RETENTION_DAYS);
        assert!(!c.store.quota_permanent_failure);
        let c = Config::from_toml("[store]\nretention_days = 0\nquota_permanent_failure = true\n").unwrap();
        assert_eq!((c.store.retention_days, c.store.quota_permanent_failure), (0, true));
        let e = Config::from_toml("[store]\nretention_days = 100000\n").unwrap_err();
        assert_eq!(e.0[0].path, "store.retention_days");
    }

    #[test]
    fn store_message_quota_and_warning_levels() {
        let c = Config::host_default();
        assert_eq!(c.store.default_quota_messages, None);
        assert_eq!(c.store.quota_warning_percents, [80, 95]);
        let c = Config::from_toml("[store]\ndefault_quota_messages = 50000\nquota_warning_percents = [50, 90, 99]\n").unwrap();
        assert_eq!((c.store.default_quota_messages, c.store.quota_warning_percents), (Some(50000), vec![50, 90, 99]));
        for bad in ["default_quota_messages = 0", "quota_warning_percents = [90, 80]", "quota_warning_percents = [0]",
            "quota_warning_percents = [101]", "quota_warning_percents = [10, 20, 30, 40, 50]"] {
            let e = Config::from_toml(&format!("[store]\n{bad}\n")).unwrap_err();
            assert!(e.0[0].path.starts_with("store."), "{bad}");
        }
        assert!(Config::from_toml("[store]\nquota_warning_percents = []\n").is_ok(), "no warnings at all is allowed");
    }

    #[test]
    fn hw_section() {
        let c = Config::host_default();
        assert_eq!((c.hw.interval_secs, c.hw.bays, c.hw.auto_replace), (DEFAULT_HW_INTERVAL_SECS, 16, false));
        assert_eq!(c.hw.sysroot, "/");
        let c = Config::from_toml(
            "[hw]\ninterval_secs = 60\nalert_to = [\"root@example.org\"]\nauto_replace = true\n\
             bay_overrides = [{ controller = \"/sys/devices/pci0000:00/0000:00:1f.2\", port = \"ata3\", bay = 0 }]\n",
        )
        .unwrap();
        assert_eq!(c.hw.interval_secs, 60);
        assert_eq!(c.hw.alert_to, ["root@example.org"]);
        assert!(c.hw.auto_replace);
        assert_eq!(c.hw.bay_overrides[0].port.as_deref(), Some("ata3"));
        for bad in [
            "interval_secs = 1",
            "alert_to = [\"nobody\"]",
            "hdd_temp_warn_c = 70\nhdd_temp_fail_c = 60",
            "bay_overrides = [{ controller = \"/x\", bay = 0 }]",
            "bay_overrides = [{ controller = \"/sys/devices/a\", bay = 16 }]",
            "exclude = [\"/dev/sda\"]",
            "sysroot = \"relative\"",
            "colour = 1",
        ] {
            assert!(Config::from_toml(&format!("[hw]\n{bad}\n")).is_err(), "{bad}");
        }
    }

    #[test]
    fn sieve_and_managesieve_sections() {
        let c = Config::host_default();
        assert_eq!(c.managesieve.port, DEFAULT_MANAGESIEVE_PORT);
        assert_eq!(c.sieve.relay, None, "no router section: no default relay");
        assert_eq!(c.sieve.max_script_bytes, DEFAULT_SIEVE_MAX_SCRIPT_BYTES);
        let c = Config::from_toml("[router]\nsmtp_port = 2525\n").unwrap();
        assert_eq!(c.sieve.relay, Some(("127.0.0.1".to_string(), 2525)), "the router's MX port by default");
        let c = Config::from_toml("[router]\n[sieve]\nrelay = \"\"\n").unwrap();
        assert_eq!(c.sieve.relay, None, "an empty relay turns the default off");
        let c = Config::from_toml("[sieve]\nrelay = \"[::1]:25\"\nrelay_user = \"u\"\nrelay_password = \"p\"\n[managesieve]\nport = 0\n").unwrap();
        assert_eq!(c.sieve.relay, Some(("::1".to_string(), 25)));
        assert!(!format!("{:?}", c.sieve).contains("\"p\""), "password redacted");
        assert_eq!(c.managesieve.port, 0);
        let e = Config::from_toml("[sieve]\nrelay = \"nope\"\nrelay_user = \"u\"\nmax_scripts = 0\n").unwrap_err();
        let paths: Vec<_> = e.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["sieve.relay", "sieve.relay_user", "sieve.max_scripts"]);
    }

    #[test]
    fn admin_section() {
        assert_eq!(Config::host_default().admin.port, DEFAULT_ADMIN_PORT);
        assert_eq!(Config::from_toml("[admin]\nport = 0\n").unwrap().admin.port, 0);
        assert!(Config::from_toml("[admin]\nprot = 1\n").is_err());
    }

    #[test]
    fn all_errors_reported_at_once() {
        let e = Config::from_toml("[server]\nlisten = \"nope\"\n[store]\nzstd_level = 99\n").unwrap_err();
        let paths: Vec<_> = e.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["server.listen", "store.zstd_level"]);
    }
}
