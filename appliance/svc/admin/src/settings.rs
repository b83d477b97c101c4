//! Routes and relay: per-field forms over parts of `hermes.toml` (`[[router.routes]]`,
//! `router.relay_networks`, `limits.max_message_bytes`, `router.max_recipients_mx`,
//! `router.max_recipients_submission`, `router.max_connections_per_ip`).
//!
//! Each form is validated field by field here (every error with its field, all at once), then
//! the edit is made on the TOML document with `toml_edit` (comments and the rest of the file
//! stay as they are) and the result goes through the same config-apply path as the Config
//! page (validated again as a whole, versioned, reloaded live by the services).
//!
//! What it is not: a second config model. The values shown are read from the file in force;
//! nothing is cached.
//!
//! Invariants: a route's AUTH password is never shown or returned (an empty password field
//! keeps the stored one); an open relay (`0.0.0.0/0`, `::/0`) is refused; every list is bounded.

use hermes_core::config::{Cidr, RawConfig};

/// Routes at most (a university has a few dozen departments).
pub const MAX_ROUTES: usize = 1000;
pub const MAX_HOSTS_PER_ROUTE: usize = 16;
pub const MAX_RELAY_NETWORKS: usize = 1000;
/// Largest message size limit offered: 2 GiB (the store keeps sizes in u64, but SMTP clients
/// and the LMTP path are tested up to this).
pub const MAX_MESSAGE_SIZE_LIMIT: u64 = 2 << 30;
pub const MIN_MESSAGE_SIZE_LIMIT: u64 = 64 << 10;
/// Recipient and per-address connection limits at most (beyond, the limit means nothing).
pub const MAX_COUNT_LIMIT: u64 = 1_000_000;

/// Field errors, each shown beside its field.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FieldErrors(pub Vec<FieldError>);

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl FieldErrors {
    fn add(&mut self, field: &'static str, message: impl Into<String>) {
        self.0.push(FieldError { field, message: message.into() });
    }
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.iter().find(|e| e.field == field).map(|e| e.message.as_str())
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A route as shown (no password).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RouteView {
    pub domain: String,
    pub hosts: Vec<String>,
    pub tls: String,
    pub auth_user: Option<String>,
    pub verify_recipients: bool,
}

/// The relay and limits fields as shown.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RelayView {
    pub relay_networks: Vec<String>,
    pub max_message_bytes: u64,
    pub max_recipients_mx: usize,
    pub max_recipients_submission: usize,
    pub max_connections_per_ip: usize,
}

/// The routes and relay settings of a config text (defaults filled in).
pub fn read(text: &str) -> Result<(Vec<RouteView>, RelayView), String> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| e.message().to_string())?;
    let cfg = hermes_core::config::Config::from_toml(text).map_err(|e| e.to_string())?;
    let router = raw.router.unwrap_or_default();
    let routes = router
        .routes
        .unwrap_or_default()
        .into_iter()
        .map(|r| RouteView {
            domain: r.domain.unwrap_or_default(),
            hosts: r.hosts.unwrap_or_default(),
            tls: r.tls.unwrap_or_else(|| "opportunistic".into()),
            auth_user: r.auth_user,
            verify_recipients: r.verify_recipients.unwrap_or(true),
        })
        .collect();
    let relay = RelayView {
        relay_networks: router.relay_networks.unwrap_or_default(),
        max_message_bytes: cfg.limits.max_message_bytes,
        max_recipients_mx: cfg.router.max_recipients_mx,
        max_recipients_submission: cfg.router.max_recipients_submission,
        max_connections_per_ip: cfg.router.max_connections_per_ip,
    };
    Ok((routes, relay))
}

/// A route as submitted.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct RouteInput {
    #[serde(default)]
    pub domain: String,
    /// `host:port` entries (one per line or comma-separated in forms).
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub tls: String,
    #[serde(default)]
    pub auth_user: String,
    /// Empty: keep the stored password (if the user stays the same).
    #[serde(default)]
    pub auth_password: String,
    #[serde(default)]
    pub verify_recipients: bool,
}

/// Splits a textarea or comma list into trimmed non-empty entries.
pub fn split_list(text: &str) -> Vec<String> {
    text.split(['\n', ',', ' ', '\t', '\r']).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

fn valid_host(h: &str) -> bool {
    if let Some(inner) = h.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    if h.parse::<std::net::Ipv4Addr>().is_ok() {
        return true;
    }
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// `host:port` (port 1–65535; IPv6 in brackets).
pub fn parse_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
    valid_host(host).then(|| (host.to_ascii_lowercase(), port))
}

/// A validated route: the entry to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidRoute {
    pub domain: String,
    pub hosts: Vec<String>,
    pub tls: String,
    /// (user, password or None to keep the stored one).
    pub auth: Option<(String, Option<String>)>,
    pub verify_recipients: bool,
}

/// Checks a route field by field. `existing`: the current routes (to keep a stored password).
pub fn validate_route(input: &RouteInput, existing: &[RouteView]) -> Result<ValidRoute, FieldErrors> {
    let mut e = FieldErrors::default();
    let domain = match hermes_core::directory::normalize_domain(input.domain.trim()) {
        Some(d) => d,
        None => {
            e.add("domain", "not a valid domain name");
            String::new()
        }
    };
    let mut hosts = Vec::new();
    if input.hosts.is_empty() {
        e.add("hosts", "at least one host:port is needed");
    } else if input.hosts.len() > MAX_HOSTS_PER_ROUTE {
        e.add("hosts", format!("at most {MAX_HOSTS_PER_ROUTE} hosts"));
    } else {
        for h in &input.hosts {
            match parse_host_port(h.trim()) {
                Some((host, port)) => hosts.push(format!("{host}:{port}")),
                None => {
                    e.add("hosts", format!("not host:port (e.g. mail.dept.example.org:25): {h}"));
                    break;
                }
            }
        }
    }
    let tls = match input.tls.trim() {
        "" | "opportunistic" => "opportunistic",
        "required" => "required",
        "none" => "none",
        _ => {
            e.add("tls", "must be required, opportunistic or none");
            "opportunistic"
        }
    };
    let user = input.auth_user.trim();
    let pw = &input.auth_password;
    let auth = if user.is_empty() {
        if !pw.is_empty() {
            e.add("auth_user", "a password needs a user name");
        }
        None
    } else if user.len() > 320 || user.contains(|c: char| c.is_control()) {
        e.add("auth_user", "at most 320 characters, no control characters");
        None
    } else if pw.len() > 1024 || pw.contains(['\0', '\r', '\n']) {
        e.add("auth_password", "at most 1024 bytes, one line");
        None
    } else if tls == "none" {
        e.add("auth_user", "AUTH sends the password: choose TLS required or opportunistic");
        None
    } else if pw.is_empty() {
        let kept = existing.iter().any(|r| r.domain == domain && r.auth_user.as_deref() == Some(user));
        if !kept {
            e.add("auth_password", "a password is needed for this user");
        }
        Some((user.to_string(), None))
    } else {
        Some((user.to_string(), Some(pw.clone())))
    };
    if e.is_empty() {
        Ok(ValidRoute { domain, hosts, tls: tls.to_string(), auth, verify_recipients: input.verify_recipients })
    } else {
        Err(e)
    }
}

/// The relay and limits form as submitted (text fields, so a wrong value is shown back).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct RelayInput {
    #[serde(default)]
    pub relay_networks: Vec<String>,
    #[serde(default)]
    pub max_message_bytes: String,
    #[serde(default)]
    pub max_recipients_mx: String,
    #[serde(default)]
    pub max_recipients_submission: String,
    #[serde(default)]
    pub max_connections_per_ip: String,
}

/// Validated relay and limits values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidRelay {
    pub relay_networks: Vec<String>,
    pub max_message_bytes: u64,
    pub max_recipients_mx: u64,
    pub max_recipients_submission: u64,
    pub max_connections_per_ip: u64,
}

fn count(e: &mut FieldErrors, field: &'static str, text: &str) -> u64 {
    match text.trim().parse::<u64>() {
        Ok(n) if (1..=MAX_COUNT_LIMIT).contains(&n) => n,
        _ => {
            e.add(field, format!("a whole number from 1 to {MAX_COUNT_LIMIT}"));
            0
        }
    }
}

pub fn validate_relay(input: &RelayInput) -> Result<ValidRelay, FieldErrors> {
    let mut e = FieldErrors::default();
    let mut nets = Vec::new();
    if input.relay_networks.len() > MAX_RELAY_NETWORKS {
        e.add("relay_networks", format!("at most {MAX_RELAY_NETWORKS} networks"));
    } else {
        for n in &input.relay_networks {
            match Cidr::parse(n.trim()) {
                Some(c) if c.prefix == 0 => {
                    e.add("relay_networks", format!("{n} would make an open relay for the whole internet"));
                    break;
                }
                Some(c) => nets.push(format!("{}/{}", c.addr, c.prefix)),
                None => {
                    e.add("relay_networks", format!("not a network in CIDR form (e.g. 192.0.2.0/24): {n}"));
                    break;
                }
            }
        }
    }
    let size = match crate::ops::parse_size(&input.max_message_bytes) {
        Some(n) if (MIN_MESSAGE_SIZE_LIMIT..=MAX_MESSAGE_SIZE_LIMIT).contains(&n) => n,
        _ => {
            e.add("max_message_bytes", "a size from 64K to 2G (e.g. 50M; powers of 1024)");
            0
        }
    };
    let mx = count(&mut e, "max_recipients_mx", &input.max_recipients_mx);
    let sub = count(&mut e, "max_recipients_submission", &input.max_recipients_submission);
    let conns = count(&mut e, "max_connections_per_ip", &input.max_connections_per_ip);
    if mx != 0 && mx < 100 {
        e.add("max_recipients_mx", "RFC 5321 requires accepting at least 100 recipients");
    }
    if e.is_empty() {
        Ok(ValidRelay {
            relay_networks: nets,
            max_message_bytes: size,
            max_recipients_mx: mx,
            max_recipients_submission: sub,
            max_connections_per_ip: conns,
        })
    } else {
        Err(e)
    }
}

fn parse_doc(text: &str) -> Result<toml_edit::DocumentMut, String> {
    text.parse::<toml_edit::DocumentMut>().map_err(|e| e.message().to_string())
}

fn table<'a>(doc: &'a mut toml_edit::DocumentMut, name: &str) -> Result<&'a mut toml_edit::Table, String> {
    let item = doc.entry(name).or_insert(toml_edit::Item::Table(toml_edit::Table::new()));
    item.as_table_mut().ok_or_else(|| format!("[{name}] in hermes.toml is not a table"))
}

fn int(n: u64) -> toml_edit::Item {
    toml_edit::value(i64::try_from(n).unwrap_or(i64::MAX))
}

fn str_array(items: &[String]) -> toml_edit::Item {
    let mut a = toml_edit::Array::new();
    for i in items {
        a.push(i.as_str());
    }
    toml_edit::value(a)
}

fn route_domain(t: &toml_edit::Table) -> Option<String> {
    t.get("domain").and_then(|d| d.as_str()).and_then(hermes_core::directory::normalize_domain)
}

/// `text` with the route for `r.domain` added or replaced.
pub fn set_route(text: &str, r: &ValidRoute) -> Result<String, String> {
    let mut doc = parse_doc(text)?;
    let router = table(&mut doc, "router")?;
    let routes = router
        .entry("routes")
        .or_insert(toml_edit::Item::ArrayOfTables(toml_edit::ArrayOfTables::new()))
        .as_array_of_tables_mut()
        .ok_or("router.routes in hermes.toml is not a list of [[router.routes]] tables")?;
    let pos = routes.iter().position(|t| route_domain(t).as_deref() == Some(r.domain.as_str()));
    if pos.is_none() && routes.len() >= MAX_ROUTES {
        return Err(format!("at most {MAX_ROUTES} routes"));
    }
    let old_pw = pos
        .and_then(|i| routes.get(i))
        .and_then(|t| t.get("auth_password"))
        .and_then(|p| p.as_str())
        .map(str::to_string);
    let mut t = toml_edit::Table::new();
    t.insert("domain", toml_edit::value(r.domain.as_str()));
    t.insert("hosts", str_array(&r.hosts));
    t.insert("tls", toml_edit::value(r.tls.as_str()));
    if let Some((user, pw)) = &r.auth {
        let pw = pw.clone().or(old_pw).ok_or("a password is needed for this user")?;
        t.insert("auth_user", toml_edit::value(user.as_str()));
        t.insert("auth_password", toml_edit::value(pw));
    }
    t.insert("verify_recipients", toml_edit::value(r.verify_recipients));
    match pos.and_then(|i| routes.get_mut(i)) {
        Some(existing) => *existing = t,
        None => routes.push(t),
    }
    Ok(doc.to_string())
}

/// `text` without the route for `domain` (`Ok(None)`: there is none).
pub fn delete_route(text: &str, domain: &str) -> Result<Option<String>, String> {
    let Some(domain) = hermes_core::directory::normalize_domain(domain.trim()) else { return Ok(None) };
    let mut doc = parse_doc(text)?;
    let Some(routes) = doc
        .get_mut("router")
        .and_then(|r| r.as_table_mut())
        .and_then(|r| r.get_mut("routes"))
        .and_then(|r| r.as_array_of_tables_mut())
    else {
        return Ok(None);
    };
    let before = routes.len();
    routes.retain(|t| route_domain(t).as_deref() != Some(domain.as_str()));
    if routes.len() == before {
        return Ok(None);
    }
    if routes.is_empty()
        && let Some(r) = doc.get_mut("router").and_then(|r| r.as_table_mut())
    {
        r.remove("routes");
    }
    Ok(Some(doc.to_string()))
}

/// `text` with the relay networks and limits set.
pub fn set_relay(text: &str, v: &ValidRelay) -> Result<String, String> {
    let mut doc = parse_doc(text)?;
    {
        let router = table(&mut doc, "router")?;
        router.insert("relay_networks", str_array(&v.relay_networks));
        router.insert("max_recipients_mx", int(v.max_recipients_mx));
        router.insert("max_recipients_submission", int(v.max_recipients_submission));
        router.insert("max_connections_per_ip", int(v.max_connections_per_ip));
    }
    let limits = table(&mut doc, "limits")?;
    limits.insert("max_message_bytes", int(v.max_message_bytes));
    Ok(doc.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    const BASE: &str = "# the box\n[server]\nhostname = \"mx.example.org\"\n\n[router]\nsmtp_port = 0 # tests\n";

    fn input(domain: &str, hosts: &[&str]) -> RouteInput {
        RouteInput {
            domain: domain.into(),
            hosts: hosts.iter().map(|s| s.to_string()).collect(),
            tls: "required".into(),
            verify_recipients: true,
            ..Default::default()
        }
    }

    #[test]
    fn routes_are_added_replaced_and_deleted_keeping_comments() {
        let r = validate_route(&input("Dept.Example.org", &["mail.dept.example.org:25", "[2001:db8::1]:2525"]), &[])
            .unwrap();
        let t = set_route(BASE, &r).unwrap();
        assert!(t.starts_with("# the box\n") && t.contains("smtp_port = 0 # tests"), "{t}");
        hermes_core::config::Config::from_toml(&t).unwrap();
        let (routes, _) = read(&t).unwrap();
        assert_eq!(routes[0].domain, "dept.example.org");
        assert_eq!(routes[0].hosts, ["mail.dept.example.org:25", "[2001:db8::1]:2525"]);
        // With AUTH; then an edit with an empty password keeps the stored one.
        let mut i = input("dept.example.org", &["mail.dept.example.org:587"]);
        i.auth_user = "relay".into();
        i.auth_password = "s3cret".into();
        let t = set_route(&t, &validate_route(&i, &routes).unwrap()).unwrap();
        let (routes, _) = read(&t).unwrap();
        assert_eq!(routes.len(), 1);
        i.auth_password.clear();
        let t = set_route(&t, &validate_route(&i, &routes).unwrap()).unwrap();
        assert!(t.contains("auth_password = \"s3cret\""), "{t}");
        let t = delete_route(&t, "DEPT.example.org").unwrap().unwrap();
        assert!(read(&t).unwrap().0.is_empty());
        assert_eq!(delete_route(&t, "dept.example.org").unwrap(), None);
    }

    #[test]
    fn route_fields_are_checked_one_by_one() {
        let mut i = input("bad_domain!", &["nohost", "x:99999"]);
        i.tls = "sometimes".into();
        i.auth_password = "pw".into();
        let e = validate_route(&i, &[]).unwrap_err();
        for f in ["domain", "hosts", "tls", "auth_user"] {
            assert!(e.get(f).is_some(), "{f}: {e:?}");
        }
        let mut i = input("d.example", &["h.example:25"]);
        i.auth_user = "u".into();
        assert!(validate_route(&i, &[]).unwrap_err().get("auth_password").is_some());
        i.tls = "none".into();
        i.auth_password = "p".into();
        assert!(validate_route(&i, &[]).unwrap_err().get("auth_user").is_some());
    }

    #[test]
    fn relay_and_limits() {
        let ok = RelayInput {
            relay_networks: vec!["192.0.2.0/24".into(), "2001:db8::/32".into(), "198.51.100.7".into()],
            max_message_bytes: "50M".into(),
            max_recipients_mx: "100".into(),
            max_recipients_submission: "500".into(),
            max_connections_per_ip: "20".into(),
        };
        let v = validate_relay(&ok).unwrap();
        let t = set_relay(BASE, &v).unwrap();
        let c = hermes_core::config::Config::from_toml(&t).unwrap();
        assert_eq!(c.limits.max_message_bytes, 50 << 20);
        assert_eq!(c.router.relay_networks.len(), 3);
        assert_eq!(c.router.max_recipients_submission, 500);
        let bad = RelayInput {
            relay_networks: vec!["0.0.0.0/0".into()],
            max_message_bytes: "1.5G".into(),
            max_recipients_mx: "5".into(),
            max_recipients_submission: "0".into(),
            max_connections_per_ip: "x".into(),
        };
        let e = validate_relay(&bad).unwrap_err();
        for f in [
            "relay_networks",
            "max_message_bytes",
            "max_recipients_mx",
            "max_recipients_submission",
            "max_connections_per_ip",
        ] {
            assert!(e.get(f).is_some(), "{f}: {e:?}");
        }
        assert!(validate_relay(&RelayInput { relay_networks: vec!["10.0.0.0/33".into()], ..ok }).is_err());
    }
}
