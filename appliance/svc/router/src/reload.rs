//! Live reload (`{"op":"reload"}` on `run/router.sock`, or SIGHUP): re-read
//! `DATA/config/hermes.toml`, refuse an invalid one (the running settings stay), and apply
//! without dropping a connection whatever can be applied live.
//!
//! Applied live (new sessions and the next deliveries see them; a session or delivery in
//! progress keeps the snapshot it started with): `server.hostname`, `router.routes`,
//! `router.relay_networks`, the per-session limits (`max_recipients_*`, `max_commands`,
//! `max_auth_failures`, `limits.max_message_bytes`, the AUTH failure delays), the retry and
//! lifetime timers, `router.nameservers` (a new resolver), `router.remote_smtp_port`,
//! `router.srs_domain`, and the TLS certificate (re-read every time, for new connections).
//!
//! Needing a restart (reported in `restart_needed`, the new values are not in effect):
//! `server.listen`, the three SMTP ports, `limits.max_connections`,
//! `router.max_connections_per_ip` (the connection limiter counts live connections) and
//! `router.delivery_concurrency` (the runner's slot count).
//!
//! What it is not: a reload of the other services' sections (the store and admin reload
//! their own).
//!
//! Invariants: an invalid file changes nothing; settings named in `restart_needed` keep
//! their running values until the router restarts.

use crate::SharedContext;
use hermes_core::config::Config;
use serde::Serialize;

/// The answer to a reload.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ReloadReport {
    pub ok: bool,
    /// `path: message` per configuration error (when `ok` is false).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    pub applied: Vec<String>,
    pub restart_needed: Vec<String>,
    /// Problems that did not stop the reload (a certificate that no longer loads: the old one
    /// stays in use).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Reads the configuration file as `hermes serve` does (the host-mode default when absent).
pub fn read_config(ctx: &SharedContext) -> Result<Config, Vec<String>> {
    let path = ctx.data.config_file();
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            Config::from_toml(&text).map_err(|e| e.0.iter().map(|e| format!("{}: {}", e.path, e.message)).collect())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::host_default()),
        Err(e) => Err(vec![format!("{}: {e}", path.display())]),
    }
}

/// The settings that differ, split into (applied live, restart needed).
pub fn diff(old: &Config, new: &Config) -> (Vec<String>, Vec<String>) {
    let (o, n) = (&old.router, &new.router);
    let mut applied = Vec::new();
    let mut restart = Vec::new();
    let mut check = |changed: bool, name: &str, live: bool| {
        if changed {
            if live { applied.push(name.to_string()) } else { restart.push(name.to_string()) }
        }
    };
    check(old.listen != new.listen, "server.listen", false);
    check(o.smtp_port != n.smtp_port, "router.smtp_port", false);
    check(o.submission_port != n.submission_port, "router.submission_port", false);
    check(o.submissions_port != n.submissions_port, "router.submissions_port", false);
    check(old.limits.max_connections != new.limits.max_connections, "limits.max_connections", false);
    check(o.max_connections_per_ip != n.max_connections_per_ip, "router.max_connections_per_ip", false);
    check(o.delivery_concurrency != n.delivery_concurrency, "router.delivery_concurrency", false);
    check(old.hostname != new.hostname, "server.hostname", true);
    check(o.routes != n.routes, "router.routes", true);
    check(o.relay_networks != n.relay_networks, "router.relay_networks", true);
    check(o.max_recipients_mx != n.max_recipients_mx, "router.max_recipients_mx", true);
    check(o.max_recipients_submission != n.max_recipients_submission, "router.max_recipients_submission", true);
    check(o.max_commands != n.max_commands, "router.max_commands", true);
    check(o.max_auth_failures != n.max_auth_failures, "router.max_auth_failures", true);
    check(old.limits.max_message_bytes != new.limits.max_message_bytes, "limits.max_message_bytes", true);
    check(old.limits.auth_fail_delay_ms != new.limits.auth_fail_delay_ms, "limits.auth_fail_delay_ms", true);
    check(
        old.limits.max_auth_fail_delay_ms != new.limits.max_auth_fail_delay_ms,
        "limits.max_auth_fail_delay_ms",
        true,
    );
    check(o.queue_lifetime_secs != n.queue_lifetime_secs, "router.queue_lifetime_secs", true);
    check(o.delay_warning_secs != n.delay_warning_secs, "router.delay_warning_secs", true);
    check(o.retry_min_secs != n.retry_min_secs, "router.retry_min_secs", true);
    check(o.retry_max_secs != n.retry_max_secs, "router.retry_max_secs", true);
    check(o.nameservers != n.nameservers, "router.nameservers", true);
    check(o.remote_smtp_port != n.remote_smtp_port, "router.remote_smtp_port", true);
    check(o.srs_domain != n.srs_domain, "router.srs_domain", true);
    (applied, restart)
}

/// Keeps the running values of the settings that need a restart, so that what the router
/// reports as its configuration is what it runs.
fn keep_restart_only(old: &Config, mut new: Config) -> Config {
    new.listen = old.listen;
    new.router.smtp_port = old.router.smtp_port;
    new.router.submission_port = old.router.submission_port;
    new.router.submissions_port = old.router.submissions_port;
    new.limits.max_connections = old.limits.max_connections;
    new.router.max_connections_per_ip = old.router.max_connections_per_ip;
    new.router.delivery_concurrency = old.router.delivery_concurrency;
    new
}

/// Serialises reloads (a SIGHUP and a socket request at once).
static RELOADING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Performs one reload.
pub async fn reload(ctx: &SharedContext) -> ReloadReport {
    let _one = RELOADING.lock().await;
    let c = ctx.clone();
    let new = match tokio::task::spawn_blocking(move || read_config(&c)).await {
        Ok(Ok(n)) => n,
        Ok(Err(errors)) => {
            tracing::warn!(errors = ?errors, "reload refused: invalid configuration; keeping the running one");
            return ReloadReport { ok: false, errors, ..Default::default() };
        }
        Err(e) => return ReloadReport { ok: false, errors: vec![e.to_string()], ..Default::default() },
    };
    let old = ctx.config();
    let (mut applied, restart_needed) = diff(&old, &new);
    let mut warnings = Vec::new();
    let new = keep_restart_only(&old, new);
    // TLS: re-read the certificate for new connections; a broken one keeps the old in use.
    let data = ctx.data.clone();
    match tokio::task::spawn_blocking(move || hermes_runtime::tls::load_acceptor(&data)).await {
        Ok(Ok(a)) => {
            ctx.live.set_tls(Some(a));
            applied.push("tls.certificate".into());
        }
        Ok(Err(e)) => warnings.push(format!("TLS certificate not reloaded: {e}")),
        Err(e) => warnings.push(format!("TLS certificate not reloaded: {e}")),
    }
    if old.hostname != new.hostname || old.router.srs_domain != new.router.srs_domain {
        let domain = new.router.srs_domain.clone().unwrap_or_else(|| new.hostname.clone());
        match crate::srs::Srs::load_or_create(&ctx.data.queue_dir().join("srs.key"), &domain) {
            Ok(s) => ctx.live.set_srs(s),
            Err(e) => warnings.push(format!("SRS not reconfigured: {e}")),
        }
    }
    let nameservers_changed = old.router.nameservers != new.router.nameservers;
    let routes_changed = old.router.routes != new.router.routes || old.hostname != new.hostname;
    ctx.callouts.set_helo(&new.hostname);
    if routes_changed {
        ctx.callouts.clear();
    }
    ctx.live.set_config(new);
    ctx.runner.reconfigure(nameservers_changed);
    for w in &warnings {
        tracing::warn!(warning = %w, "reload");
    }
    tracing::info!(applied = ?applied, restart_needed = ?restart_needed, "configuration reloaded");
    ReloadReport { ok: true, errors: Vec::new(), applied, restart_needed, warnings }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn diff_splits_live_and_restart_settings() {
        let old = Config::from_toml("[router]\n").unwrap();
        let new = Config::from_toml(
            "[router]\nsmtp_port = 2525\nrelay_networks = [\"192.0.2.0/24\"]\nmax_commands = 7\n\
             [[router.routes]]\ndomain = \"d.example\"\nhosts = [\"127.0.0.1:1\"]\n",
        )
        .unwrap();
        let (applied, restart) = diff(&old, &new);
        assert_eq!(applied, ["router.routes", "router.relay_networks", "router.max_commands"]);
        assert_eq!(restart, ["router.smtp_port"]);
        let kept = keep_restart_only(&old, new);
        assert_eq!(kept.router.smtp_port, old.router.smtp_port);
        assert_eq!(kept.router.max_commands, 7);
        assert_eq!(diff(&old, &old), (vec![], vec![]));
    }
}
