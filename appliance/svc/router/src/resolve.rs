//! Recipient resolution and relay control: where an address goes, and whether this client
//! may send there.
//!
//! What it is: pure-ish functions over the [`Directory`] (file reads, no cache) and the
//! validated config. What it is not: delivery, DNS, or the relay-trick checks on address
//! syntax (those run earlier, in `hermes_proto::smtp::policy`).
//!
//! Resolution order for an address in a local (directory) domain, first match wins:
//! 1. an account (`user+tag@d` is the account `user@d`: subaddressing);
//! 2. an alias for the exact address, then for the address without its `+tag`;
//! 3. the domain's catch-all alias;
//! 4. a split domain (a `[[router.routes]]` entry for a local domain): the rest is relayed
//!    to the departmental server;
//! 5. otherwise unknown (550 5.1.1 at RCPT).
//!
//! Alias targets resolve recursively (to accounts, other aliases or external addresses).
//!
//! Invariants: expansion is bounded ([`MAX_ALIAS_DEPTH`] levels, [`MAX_EXPANSION`] targets)
//! and cycle-safe (an address already on the path is skipped); relaying to a non-local,
//! non-routed domain is allowed only to authenticated clients and `relay_networks` — no
//! network, loopback included, is trusted by default.

use hermes_core::config::{Config, Route};
use hermes_core::directory::{Directory, DirectoryError};
use std::net::IpAddr;

/// Alias nesting depth: real setups nest two or three levels; deeper is a loop or a mistake.
pub const MAX_ALIAS_DEPTH: usize = 8;
/// Targets one RCPT may expand to: a large department alias, not a mailing list.
pub const MAX_EXPANSION: usize = 2000;

/// Where one resolved address goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// A local account (its canonical address), delivered to the store over LMTP.
    Local(String),
    /// Another host: a departmental route or the domain's MX.
    Remote(String),
}

impl Target {
    pub fn address(&self) -> &str {
        match self {
            Target::Local(a) | Target::Remote(a) => a,
        }
    }
}

/// The route for `domain`, if the config names one.
pub fn route_for<'a>(config: &'a Config, domain: &str) -> Option<&'a Route> {
    let d = domain.to_ascii_lowercase();
    config.router.routes.iter().find(|r| r.domain == d)
}

fn split(address: &str) -> Option<(&str, &str)> {
    address.rsplit_once('@')
}

/// Resolves `address` in a local domain. `Ok(None)`: unknown. The caller has checked that the
/// domain is local.
pub fn resolve_local(dir: &Directory, config: &Config, address: &str) -> Result<Option<Vec<Target>>, DirectoryError> {
    let mut out = Vec::new();
    let mut path = Vec::new();
    if expand(dir, config, address, 0, &mut path, &mut out)? { Ok(Some(out)) } else { Ok(None) }
}

/// Appends `address`'s targets to `out`; false when the address is unknown.
fn expand(
    dir: &Directory,
    config: &Config,
    address: &str,
    depth: usize,
    path: &mut Vec<String>,
    out: &mut Vec<Target>,
) -> Result<bool, DirectoryError> {
    let Some((local, domain)) = split(address) else { return Ok(false) };
    let lower = address.to_ascii_lowercase();
    if path.contains(&lower) || depth > MAX_ALIAS_DEPTH {
        return Ok(true); // a loop: this branch adds nothing, the others still count
    }
    if !dir.has_domain(domain)? {
        push(out, Target::Remote(address.to_string()));
        return Ok(true);
    }
    if let Some(account) = dir.lookup(address)? {
        push(out, Target::Local(account.address));
        return Ok(true);
    }
    let base = local.split_once('+').map(|(u, _)| format!("{u}@{domain}"));
    let alias = match dir.lookup_alias(address)? {
        Some(a) => Some(a),
        None => match &base {
            Some(b) => dir.lookup_alias(b)?,
            None => None,
        },
    };
    let alias = match alias {
        Some(a) => Some(a),
        None => dir.catch_all(domain)?,
    };
    if let Some(alias) = alias {
        path.push(lower);
        for t in &alias.targets {
            if out.len() >= MAX_EXPANSION {
                break;
            }
            expand(dir, config, t, depth + 1, path, out)?;
        }
        path.pop();
        return Ok(true);
    }
    if route_for(config, domain).is_some() {
        push(out, Target::Remote(address.to_string()));
        return Ok(true);
    }
    Ok(false)
}

fn push(out: &mut Vec<Target>, t: Target) {
    if out.len() < MAX_EXPANSION && !out.contains(&t) {
        out.push(t);
    }
}

/// Whether `ip` is in a configured relay network.
pub fn trusted_network(config: &Config, ip: IpAddr) -> bool {
    config.router.relay_networks.iter().any(|n| n.contains(ip))
}

/// Whether `sender` belongs to the authenticated `user` (their address, a subaddress of it,
/// or an alias whose every target is them).
pub fn sender_owned_by(dir: &Directory, user: &str, sender: &str) -> Result<bool, DirectoryError> {
    let Some((local, domain)) = split(sender) else { return Ok(false) };
    let base_local = local.split_once('+').map_or(local, |(u, _)| u);
    let base = format!("{base_local}@{domain}");
    if base.eq_ignore_ascii_case(user) {
        return Ok(true);
    }
    for candidate in [sender, base.as_str()] {
        if let Some(alias) = dir.lookup_alias(candidate)? {
            return Ok(!alias.targets.is_empty() && alias.targets.iter().all(|t| t.eq_ignore_ascii_case(user)));
        }
    }
    Ok(false)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;
    use hermes_core::paths::DataDir;

    fn setup() -> (tempfile::TempDir, Directory, Config) {
        let t = tempfile::tempdir().unwrap();
        let d = Directory::open(&DataDir::new(t.path())).unwrap();
        d.add_domain("example.org").unwrap();
        d.add_domain("split.example").unwrap();
        let hash = hermes_core::directory::hash_password(&hermes_core::secret::Secret::new("pw".to_string())).unwrap();
        for a in ["alice@example.org", "bob@example.org", "carol@split.example"] {
            d.import_account(a, hash.expose(), None).unwrap();
        }
        let c = Config::from_toml(
            "[router]\nrelay_networks = [\"192.0.2.0/24\"]\n[[router.routes]]\ndomain = \"split.example\"\nhosts = [\"127.0.0.1:2525\"]\n",
        )
        .unwrap();
        (t, d, c)
    }

    fn r(d: &Directory, c: &Config, a: &str) -> Option<Vec<Target>> {
        resolve_local(d, c, a).unwrap()
    }

    #[test]
    fn accounts_subaddresses_aliases_catch_all_split() {
        let (_t, d, c) = setup();
        assert_eq!(r(&d, &c, "Alice@example.org"), Some(vec![Target::Local("alice@example.org".into())]));
        assert_eq!(r(&d, &c, "alice+lists@example.org"), Some(vec![Target::Local("alice@example.org".into())]));
        assert_eq!(r(&d, &c, "nobody@example.org"), None);
        d.add_alias(
            "team@example.org",
            &["alice@example.org".into(), "bob@example.org".into(), "ext@other.net".into()],
        )
        .unwrap();
        assert_eq!(
            r(&d, &c, "team+x@example.org"),
            Some(vec![
                Target::Local("alice@example.org".into()),
                Target::Local("bob@example.org".into()),
                Target::Remote("ext@other.net".into())
            ])
        );
        // Loops terminate.
        d.add_alias("loop1@example.org", &["loop2@example.org".into(), "alice@example.org".into()]).unwrap();
        d.add_alias("loop2@example.org", &["loop1@example.org".into()]).unwrap();
        assert_eq!(r(&d, &c, "loop1@example.org"), Some(vec![Target::Local("alice@example.org".into())]));
        d.add_alias("@example.org", &["bob@example.org".into()]).unwrap();
        assert_eq!(r(&d, &c, "nobody@example.org"), Some(vec![Target::Local("bob@example.org".into())]));
        // Split domain: local users local, the rest relayed to the department.
        assert_eq!(r(&d, &c, "carol@split.example"), Some(vec![Target::Local("carol@split.example".into())]));
        assert_eq!(r(&d, &c, "dave@split.example"), Some(vec![Target::Remote("dave@split.example".into())]));
    }

    #[test]
    fn relay_networks_and_sender_ownership() {
        let (_t, d, c) = setup();
        assert!(trusted_network(&c, "192.0.2.9".parse().unwrap()));
        assert!(!trusted_network(&c, "127.0.0.1".parse().unwrap()));
        assert!(
            !trusted_network(&Config::host_default(), "127.0.0.1".parse().unwrap()),
            "loopback not trusted by default"
        );
        assert!(sender_owned_by(&d, "alice@example.org", "Alice+x@example.org").unwrap());
        assert!(!sender_owned_by(&d, "alice@example.org", "bob@example.org").unwrap());
        d.add_alias("al@example.org", &["alice@example.org".into()]).unwrap();
        d.add_alias("both@example.org", &["alice@example.org".into(), "bob@example.org".into()]).unwrap();
        assert!(sender_owned_by(&d, "alice@example.org", "al@example.org").unwrap());
        assert!(!sender_owned_by(&d, "alice@example.org", "both@example.org").unwrap());
    }
}
