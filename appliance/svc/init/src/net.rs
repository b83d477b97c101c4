//! Network bring-up and live changes: loopback, then each Ethernet interface from
//! `DATA/config/network.toml` (static IPv4/IPv6) or, for interfaces it does not give an
//! `ipv4`, DHCPv4. IPv6 autoconfiguration (SLAAC) is the kernel's once a link is up. DNS
//! servers go to `/run/resolv.conf` (the image's `/etc/resolv.conf` points there): the file's
//! `dns`, else the DHCP leases'.
//!
//! Live changes (the control socket's `network_apply`): the file is re-read and [`plan`]ned
//! against what is applied: addresses and default routes init set that are no longer wanted
//! are removed, the wanted ones (re)added, DHCP started or stopped per interface, resolv.conf
//! rewritten. A safety net like a mature appliance's: unless `network_confirm` arrives within
//! [`CONFIRM_WINDOW`], init restores the file as it was at the last good apply and applies it
//! again ([`revert_if_pending`]), so a typo cannot lock the admin out.
//!
//! What it is not: a network manager. No bonding, VLANs or routing policy (later issues); a
//! DHCP lease is renewed by a fresh exchange at half its time; addresses and routes that init
//! did not set (SLAAC, link-local) are left alone.
//!
//! Invariants: `network.toml` is parsed with `deny_unknown_fields` and every error reported
//! with its path; an invalid file leaves the box on DHCP at boot (so the admin can still reach
//! it) and is refused, changing nothing, by `network_apply`; bring-up never blocks boot longer
//! than [`DHCP_BOOT_DEADLINE`] per interface; a live apply never waits for DHCP.

use crate::dhcp;
use crate::netlink::Netlink;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long boot waits for a DHCP answer per interface before going on (and retrying in the
/// background): QEMU and a normal LAN answer in milliseconds.
pub const DHCP_BOOT_DEADLINE: Duration = Duration::from_secs(8);
/// Where resolvers are written.
pub const RESOLV_CONF: &str = "/run/resolv.conf";
/// How long a live change waits for `network_confirm` before it is rolled back: long enough to
/// reconnect to a new address and press a button, short enough to wait for at a console.
pub const CONFIRM_WINDOW: Duration = Duration::from_secs(120);

pub use hermes_core::network::{InterfaceConfig, NetworkConfig, parse_cidr};

/// Ethernet interfaces (ARPHRD_ETHER = 1), sorted by name.
pub fn ethernet_interfaces() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| std::fs::read_to_string(format!("/sys/class/net/{n}/type")).is_ok_and(|t| t.trim() == "1"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The hardware address of `iface`.
pub fn mac_of(iface: &str) -> Option<[u8; 6]> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{iface}/address")).ok()?;
    let bytes: Vec<u8> = text.trim().split(':').filter_map(|h| u8::from_str_radix(h, 16).ok()).collect();
    bytes.try_into().ok()
}

/// What a configuration wants on one interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    pub addresses: Vec<(IpAddr, u8)>,
    pub gateways: Vec<IpAddr>,
    pub dhcp: bool,
}

/// What `cfg` wants on `iface`: its static addresses and gateways, and DHCPv4 unless it has a
/// static `ipv4`.
pub fn wanted(cfg: &NetworkConfig, iface: &str) -> Wanted {
    let Some(s) = cfg.interfaces.iter().find(|i| i.name == iface) else {
        return Wanted { dhcp: true, ..Wanted::default() };
    };
    let addresses = s.ipv4.iter().chain(s.ipv6.iter()).filter_map(|c| parse_cidr(c).ok()).collect();
    let mut gateways = Vec::new();
    if s.ipv4.is_some()
        && let Some(g) = s.gateway4
    {
        gateways.push(g);
    }
    if !s.ipv6.is_empty()
        && let Some(g) = s.gateway6
    {
        gateways.push(g);
    }
    Wanted { addresses, gateways, dhcp: s.ipv4.is_none() }
}

/// The changes that take the box from `old` (`None`: nothing applied yet, at boot) to `new`
/// on `interfaces`. Wanted addresses and routes are all (re)added: adding is idempotent
/// (NLM_F_REPLACE), and the kernel drops a route whose gateway's subnet went away.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub remove_routes: Vec<(String, IpAddr)>,
    pub remove_addresses: Vec<(String, IpAddr, u8)>,
    pub add_addresses: Vec<(String, IpAddr, u8)>,
    pub add_routes: Vec<(String, IpAddr)>,
    pub stop_dhcp: Vec<String>,
    pub start_dhcp: Vec<String>,
}

pub fn plan(old: Option<&NetworkConfig>, new: &NetworkConfig, interfaces: &[String]) -> Plan {
    let mut p = Plan::default();
    for iface in interfaces {
        let was = old.map(|o| wanted(o, iface)).unwrap_or_default();
        let will = wanted(new, iface);
        for g in &was.gateways {
            if !will.gateways.contains(g) {
                p.remove_routes.push((iface.clone(), *g));
            }
        }
        for a in &was.addresses {
            if !will.addresses.contains(a) {
                p.remove_addresses.push((iface.clone(), a.0, a.1));
            }
        }
        p.add_addresses.extend(will.addresses.iter().map(|a| (iface.clone(), a.0, a.1)));
        p.add_routes.extend(will.gateways.iter().map(|g| (iface.clone(), *g)));
        let running = old.is_some() && was.dhcp;
        if running && !will.dhcp {
            p.stop_dhcp.push(iface.clone());
        }
        if !running && will.dhcp {
            p.start_dhcp.push(iface.clone());
        }
    }
    p
}

/// A DHCP client thread's handle.
#[derive(Debug)]
struct Keeper {
    stop: Arc<AtomicBool>,
    lease: Arc<Mutex<Option<dhcp::Lease>>>,
}

/// A live change waiting for `network_confirm`.
#[derive(Debug, Clone)]
struct Pending {
    /// The file as it was at the last good apply (`None`: there was none).
    previous_text: Option<String>,
    deadline: i64,
    generation: u64,
}

#[derive(Debug, Default)]
struct State {
    path: PathBuf,
    hostname: String,
    /// What is applied (`None` before boot's bring-up).
    applied: Option<NetworkConfig>,
    /// The file text last applied and kept (`None`: no file).
    good_text: Option<String>,
    keepers: BTreeMap<String, Keeper>,
    pending: Option<Pending>,
    generation: u64,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

fn with_state<T>(f: impl FnOnce(&mut State) -> T) -> T {
    let mut g = STATE.lock().unwrap_or_else(|e| e.into_inner());
    f(g.get_or_insert_with(State::default))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn write_resolv(dns: &[IpAddr]) {
    let text: String = dns.iter().map(|d| format!("nameserver {d}\n")).collect();
    let _ = std::fs::write(RESOLV_CONF, text);
}

/// resolv.conf from the file's `dns`, else every lease's.
fn refresh_resolv(st: &State) {
    let fixed = st.applied.as_ref().map(|c| c.dns.clone()).unwrap_or_default();
    if !fixed.is_empty() {
        return write_resolv(&fixed);
    }
    let mut dns: Vec<IpAddr> = Vec::new();
    for k in st.keepers.values() {
        if let Some(l) = lock(&k.lease).as_ref() {
            dns.extend(l.dns.iter().map(|d| IpAddr::V4(*d)));
        }
    }
    dns.dedup();
    if !dns.is_empty() || st.applied.is_some() {
        write_resolv(&dns);
    }
}

/// Applies a lease to `index`.
fn apply_lease(nl: &mut Netlink, index: u32, lease: &dhcp::Lease) -> nix::Result<()> {
    nl.add_address(index, &IpAddr::V4(lease.address), lease.prefix)?;
    if let Some(r) = lease.router {
        nl.default_route(index, &IpAddr::V4(r))?;
    }
    Ok(())
}

/// Removes what a lease set (on a stop, or when a renewal moved the address).
fn remove_lease(nl: &mut Netlink, index: u32, lease: &dhcp::Lease) {
    if let Some(r) = lease.router {
        let _ = nl.del_default_route(index, &IpAddr::V4(r));
    }
    let _ = nl.del_address(index, &IpAddr::V4(lease.address), lease.prefix);
}

fn sleep_unless_stopped(stop: &AtomicBool, total: Duration) -> bool {
    let step = Duration::from_millis(500);
    let mut left = total;
    while !left.is_zero() {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        let s = left.min(step);
        std::thread::sleep(s);
        left -= s;
    }
    !stop.load(Ordering::SeqCst)
}

/// Keeps a DHCP lease on `iface`: asks after `first_wait`, renews at half the lease, retries
/// every 30 s when there is none, until `stop` is set.
fn dhcp_keeper(
    iface: String,
    index: u32,
    mac: [u8; 6],
    hostname: String,
    stop: Arc<AtomicBool>,
    current: Arc<Mutex<Option<dhcp::Lease>>>,
    first_wait: Duration,
) {
    let mut wait = first_wait;
    loop {
        if !sleep_unless_stopped(&stop, wait) {
            return;
        }
        match dhcp::acquire(&iface, mac, &hostname, Duration::from_secs(20)) {
            Ok(new) if !stop.load(Ordering::SeqCst) => {
                let old = lock(&current).clone();
                if old.as_ref().map(|l| l.address) != Some(new.address) {
                    crate::log::say(&format!("network: {iface} {}/{} (DHCP)", new.address, new.prefix));
                }
                if let Ok(mut nl) = Netlink::open() {
                    if let Some(o) = &old
                        && (o.address, o.prefix) != (new.address, new.prefix)
                    {
                        remove_lease(&mut nl, index, o);
                    }
                    if let Err(e) = apply_lease(&mut nl, index, &new) {
                        crate::log::say(&format!("network: {iface}: cannot apply the lease: {e}"));
                    }
                }
                crate::ntp::set_dhcp_servers(&iface, new.ntp.clone());
                wait = Duration::from_secs(u64::from(new.lease_secs / 2).max(30));
                *lock(&current) = Some(new);
                with_state(|st| refresh_resolv(st));
            }
            Ok(_) => return,
            Err(e) => {
                crate::log::say(&format!("network: {iface}: {e}"));
                wait = Duration::from_secs(30);
            }
        }
    }
}

fn read_config(path: &Path) -> (Option<String>, Result<NetworkConfig, Vec<String>>) {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let parsed = NetworkConfig::parse(&text);
            (Some(text), parsed)
        }
        Err(_) => (None, Ok(NetworkConfig::default())),
    }
}

/// Applies `new` over what `st` holds; returns one line per change for the console. `boot`:
/// DHCP is asked in the foreground (up to [`DHCP_BOOT_DEADLINE`]) so the console shows the lease.
fn apply(st: &mut State, nl: &mut Netlink, new: NetworkConfig, boot: bool) -> Vec<String> {
    let mut report = Vec::new();
    let ifaces = ethernet_interfaces();
    let index_of = |iface: &str| nix::net::if_::if_nametoindex(iface).ok();
    let p = plan(st.applied.as_ref(), &new, &ifaces);
    for iface in &ifaces {
        if let Some(index) = index_of(iface)
            && let Err(e) = nl.link_up(index)
        {
            report.push(format!("{iface}: cannot bring the link up: {e}"));
        }
    }
    for (iface, g) in &p.remove_routes {
        if let Some(index) = index_of(iface) {
            let _ = nl.del_default_route(index, g);
            report.push(format!("{iface}: route via {g} removed"));
        }
    }
    for (iface, ip, prefix) in &p.remove_addresses {
        if let Some(index) = index_of(iface) {
            match nl.del_address(index, ip, *prefix) {
                Ok(()) => report.push(format!("{iface} {ip}/{prefix} removed")),
                Err(e) => report.push(format!("{iface}: cannot remove {ip}/{prefix}: {e}")),
            }
        }
    }
    for iface in &p.stop_dhcp {
        if let Some(k) = st.keepers.remove(iface) {
            k.stop.store(true, Ordering::SeqCst);
            if let (Some(index), Some(lease)) = (index_of(iface), lock(&k.lease).take()) {
                remove_lease(nl, index, &lease);
                report.push(format!("{iface} {}/{} (DHCP) released", lease.address, lease.prefix));
            }
            crate::ntp::set_dhcp_servers(iface, Vec::new());
        }
    }
    for (iface, ip, prefix) in &p.add_addresses {
        let Some(index) = index_of(iface) else { continue };
        match nl.add_address(index, ip, *prefix) {
            Ok(()) => report.push(format!("{iface} {ip}/{prefix} (static)")),
            Err(e) => report.push(format!("{iface}: cannot add {ip}/{prefix}: {e}")),
        }
    }
    for (iface, g) in &p.add_routes {
        let Some(index) = index_of(iface) else { continue };
        if let Err(e) = nl.default_route(index, g) {
            report.push(format!("{iface}: cannot route via {g}: {e}"));
        }
    }
    for iface in &p.start_dhcp {
        let (Some(index), Some(mac)) = (index_of(iface), mac_of(iface)) else { continue };
        let lease = if boot {
            match dhcp::acquire(iface, mac, &st.hostname, DHCP_BOOT_DEADLINE) {
                Ok(lease) => match apply_lease(nl, index, &lease) {
                    Ok(()) => {
                        report.push(format!(
                            "{iface} {}/{} via {} (DHCP, {} s)",
                            lease.address,
                            lease.prefix,
                            lease.router.map(|r| r.to_string()).unwrap_or_else(|| "-".into()),
                            lease.lease_secs
                        ));
                        crate::ntp::set_dhcp_servers(iface, lease.ntp.clone());
                        Some(lease)
                    }
                    Err(e) => {
                        report.push(format!("{iface}: cannot apply the DHCP lease: {e}"));
                        None
                    }
                },
                Err(e) => {
                    report.push(format!("{iface}: {e}; retrying in the background"));
                    None
                }
            }
        } else {
            report.push(format!("{iface}: DHCP started"));
            None
        };
        let first_wait = match &lease {
            Some(l) => Duration::from_secs(u64::from(l.lease_secs / 2).max(30)),
            None if boot => Duration::from_secs(30),
            None => Duration::ZERO,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let current = Arc::new(Mutex::new(lease));
        let (host, name, s2, c2) = (st.hostname.clone(), iface.clone(), stop.clone(), current.clone());
        let _ = std::thread::Builder::new()
            .name(format!("dhcp-{iface}"))
            .stack_size(64 * 1024)
            .spawn(move || dhcp_keeper(name, index, mac, host, s2, c2, first_wait));
        st.keepers.insert(iface.clone(), Keeper { stop, lease: current });
    }
    st.applied = Some(new);
    refresh_resolv(st);
    report
}

/// Brings the network up at boot. Returns one line per interface for the console.
pub fn bring_up(config_path: &Path, hostname: &str) -> Vec<String> {
    let mut report = Vec::new();
    let mut nl = match Netlink::open() {
        Ok(nl) => nl,
        Err(e) => return vec![format!("netlink: {e}")],
    };
    if let Ok(lo) = nix::net::if_::if_nametoindex("lo")
        && let Err(e) = nl.link_up(lo)
    {
        report.push(format!("lo: {e}"));
    }
    let (text, parsed) = read_config(config_path);
    let config = match parsed {
        Ok(c) => c,
        Err(errors) => {
            report.push(format!("{} is invalid (using DHCP): {}", config_path.display(), errors.join("; ")));
            NetworkConfig::default()
        }
    };
    with_state(|st| {
        st.path = config_path.to_path_buf();
        st.hostname = hostname.to_string();
        st.good_text = text;
        report.extend(apply(st, &mut nl, config, true));
    });
    report
}

/// What `network_apply` answers.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Applied {
    pub changes: Vec<String>,
    /// Unix time at which the change is rolled back unless confirmed.
    pub confirm_before: i64,
    pub generation: u64,
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Re-reads `network.toml` and applies it now, pending confirmation. Blocking (netlink).
pub fn apply_live() -> Result<Applied, String> {
    let path = with_state(|st| st.path.clone());
    if path.as_os_str().is_empty() {
        return Err("the network was not brought up by init on this box".into());
    }
    let (_, parsed) = read_config(&path);
    let new = parsed.map_err(|e| format!("network.toml is invalid, nothing changed: {}", e.join("; ")))?;
    let mut nl = Netlink::open().map_err(|e| format!("netlink: {e}"))?;
    Ok(with_state(|st| {
        let changes = apply(st, &mut nl, new, false);
        for line in &changes {
            crate::log::say(&format!("network: {line}"));
        }
        st.generation += 1;
        let previous_text = match &st.pending {
            Some(p) => p.previous_text.clone(), // still the last confirmed one
            None => st.good_text.clone(),
        };
        let deadline = unix_now() + CONFIRM_WINDOW.as_secs() as i64;
        st.pending = Some(Pending { previous_text, deadline, generation: st.generation });
        crate::log::say(&format!(
            "network: new settings applied; rolled back in {} s unless confirmed",
            CONFIRM_WINDOW.as_secs()
        ));
        Applied { changes, confirm_before: deadline, generation: st.generation }
    }))
}

/// `network_confirm`: keeps the pending change.
pub fn confirm() -> Result<(), String> {
    with_state(|st| match st.pending.take() {
        Some(_) => {
            st.good_text = std::fs::read_to_string(&st.path).ok();
            crate::log::say("network: new settings confirmed");
            Ok(())
        }
        None => Err("no network change is waiting for confirmation".into()),
    })
}

/// After the window: if change `generation` is still pending, restores the previous file and
/// applies it. Returns whether it rolled back. Blocking.
pub fn revert_if_pending(generation: u64) -> bool {
    let Some((path, previous)) = with_state(|st| match &st.pending {
        Some(p) if p.generation == generation => Some((st.path.clone(), p.previous_text.clone())),
        _ => None,
    }) else {
        return false;
    };
    // Keep the file's owner (the admin service writes config/).
    let owner = std::fs::metadata(&path).ok().map(|m| {
        use std::os::unix::fs::MetadataExt;
        (m.uid(), m.gid(), m.mode() & 0o7777)
    });
    let written = match &previous {
        Some(text) => {
            let mode = owner.map(|o| o.2).unwrap_or(0o640);
            let r = hermes_runtime::fs::write_atomic(&path, text.as_bytes(), mode);
            if let (Ok(()), Some((uid, gid, _))) = (&r, owner) {
                let _ = nix::unistd::chown(
                    &path,
                    Some(nix::unistd::Uid::from_raw(uid)),
                    Some(nix::unistd::Gid::from_raw(gid)),
                );
            }
            r
        }
        None => std::fs::remove_file(&path)
            .or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) }),
    };
    if let Err(e) = written {
        crate::log::say(&format!("network: cannot restore {}: {e}", path.display()));
    }
    let config = previous.as_deref().and_then(|t| NetworkConfig::parse(t).ok()).unwrap_or_default();
    let Ok(mut nl) = Netlink::open() else { return false };
    with_state(|st| {
        if st.pending.as_ref().map(|p| p.generation) != Some(generation) {
            return false;
        }
        st.pending = None;
        for line in apply(st, &mut nl, config, false) {
            crate::log::say(&format!("network: {line}"));
        }
        crate::log::say("network: the new settings were not confirmed in time: the previous ones are back");
        true
    })
}

fn operstate(iface: &str) -> String {
    std::fs::read_to_string(format!("/sys/class/net/{iface}/operstate"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `network_status`: interfaces with MAC, link state, addresses and where they came from,
/// default routes, resolvers, the file and any change waiting for confirmation.
pub fn status() -> serde_json::Value {
    let (path, applied, pending, leases) = with_state(|st| {
        let leases: BTreeMap<String, Option<dhcp::Lease>> =
            st.keepers.iter().map(|(n, k)| (n.clone(), lock(&k.lease).clone())).collect();
        (st.path.clone(), st.applied.clone(), st.pending.clone(), leases)
    });
    let mut nl = Netlink::open().ok();
    let addrs = nl.as_mut().and_then(|n| n.addresses().ok()).unwrap_or_default();
    let routes = nl.as_mut().and_then(|n| n.default_routes().ok()).unwrap_or_default();
    let cfg = applied.unwrap_or_default();
    let interfaces: Vec<serde_json::Value> = ethernet_interfaces()
        .into_iter()
        .map(|iface| {
            let index = nix::net::if_::if_nametoindex(iface.as_str()).unwrap_or(0);
            let mac = mac_of(&iface)
                .map(|m| m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"))
                .unwrap_or_default();
            let w = wanted(&cfg, &iface);
            let lease = leases.get(&iface).cloned().flatten();
            let addresses: Vec<serde_json::Value> = addrs
                .iter()
                .filter(|a| a.index == index)
                .map(|a| {
                    let origin = if w.addresses.contains(&(a.address, a.prefix)) {
                        "static"
                    } else if lease.as_ref().is_some_and(|l| IpAddr::V4(l.address) == a.address) {
                        "dhcp"
                    } else {
                        "kernel" // SLAAC, link-local
                    };
                    serde_json::json!({"address": a.address, "prefix": a.prefix, "origin": origin})
                })
                .collect();
            let gateways: Vec<IpAddr> = routes.iter().filter(|r| r.index == Some(index)).map(|r| r.gateway).collect();
            serde_json::json!({
                "name": iface,
                "mac": mac,
                "link": operstate(&iface),
                "mode": if w.dhcp { "dhcp" } else { "static" },
                "addresses": addresses,
                "gateways": gateways,
                "lease": lease.map(|l| serde_json::json!({
                    "address": l.address, "prefix": l.prefix, "router": l.router, "dns": l.dns,
                    "ntp": l.ntp, "server": l.server, "lease_secs": l.lease_secs,
                })),
            })
        })
        .collect();
    let dns: Vec<String> = std::fs::read_to_string(RESOLV_CONF)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver ").map(|s| s.trim().to_string()))
        .collect();
    let text = std::fs::read_to_string(&path).ok();
    serde_json::json!({
        "interfaces": interfaces,
        "dns": dns,
        "config_text": text,
        "pending": pending.map(|p| serde_json::json!({"confirm_before": p.deadline})),
    })
}

/// `network_status`.
pub async fn op_status() -> serde_json::Value {
    match tokio::task::spawn_blocking(status).await {
        Ok(n) => serde_json::json!({"ok": true, "network": n}),
        Err(e) => serde_json::json!({"ok": false, "error": e.to_string()}),
    }
}

/// `network_apply`: applies now and arms the rollback timer.
pub async fn op_apply() -> serde_json::Value {
    match tokio::task::spawn_blocking(apply_live).await {
        Ok(Ok(a)) => {
            let generation = a.generation;
            tokio::spawn(async move {
                tokio::time::sleep(CONFIRM_WINDOW).await;
                let _ = tokio::task::spawn_blocking(move || revert_if_pending(generation)).await;
            });
            serde_json::json!({"ok": true, "changes": a.changes, "confirm_before": a.confirm_before})
        }
        Ok(Err(e)) => serde_json::json!({"ok": false, "error": e}),
        Err(e) => serde_json::json!({"ok": false, "error": e.to_string()}),
    }
}

/// `network_confirm`.
pub fn op_confirm() -> serde_json::Value {
    match confirm() {
        Ok(()) => serde_json::json!({"ok": true}),
        Err(e) => serde_json::json!({"ok": false, "error": e}),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    fn cfg(text: &str) -> NetworkConfig {
        NetworkConfig::parse(text).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn static_config_parses_and_checks() {
        let c = cfg(
            "dns = [\"192.0.2.53\"]\n[[interface]]\nname = \"eth0\"\nipv4 = \"192.0.2.10/24\"\ngateway4 = \"192.0.2.1\"\nipv6 = [\"2001:db8::10/64\"]\n",
        );
        assert_eq!(c.interfaces[0].ipv4.as_deref(), Some("192.0.2.10/24"));
        assert!(NetworkConfig::parse("[[interface]]\nname = \"eth0\"\ncolour = 1\n").is_err());
    }

    /// At boot nothing is applied: DHCP starts wherever there is no static IPv4, and every
    /// static address and gateway is added.
    #[test]
    fn boot_plan_adds_everything() {
        let new = cfg(
            "[[interface]]\nname = \"eth0\"\nipv4 = \"192.0.2.10/24\"\ngateway4 = \"192.0.2.1\"\nipv6 = [\"2001:db8::10/64\"]\ngateway6 = \"2001:db8::1\"\n",
        );
        let p = plan(None, &new, &["eth0".into(), "eth1".into()]);
        assert_eq!(
            p.add_addresses,
            vec![("eth0".into(), ip("192.0.2.10"), 24), ("eth0".into(), ip("2001:db8::10"), 64)]
        );
        assert_eq!(p.add_routes, vec![("eth0".into(), ip("192.0.2.1")), ("eth0".into(), ip("2001:db8::1"))]);
        assert_eq!(p.start_dhcp, vec!["eth1".to_string()]);
        assert!(p.remove_addresses.is_empty() && p.remove_routes.is_empty() && p.stop_dhcp.is_empty());
    }

    /// A live change removes only what is no longer wanted and switches DHCP per interface.
    #[test]
    fn live_plan_removes_the_unwanted_and_switches_dhcp() {
        let old = cfg(
            "[[interface]]\nname = \"eth0\"\nipv4 = \"192.0.2.10/24\"\ngateway4 = \"192.0.2.1\"\nipv6 = [\"2001:db8::10/64\", \"2001:db8::11/64\"]\n",
        );
        let new = cfg(
            "[[interface]]\nname = \"eth0\"\nipv6 = [\"2001:db8::11/64\"]\ngateway6 = \"2001:db8::1\"\n[[interface]]\nname = \"eth1\"\nipv4 = \"198.51.100.7/25\"\ngateway4 = \"198.51.100.1\"\n",
        );
        let ifaces = ["eth0".to_string(), "eth1".to_string()];
        let p = plan(Some(&old), &new, &ifaces);
        assert_eq!(p.remove_routes, vec![("eth0".into(), ip("192.0.2.1"))]);
        assert_eq!(
            p.remove_addresses,
            vec![("eth0".into(), ip("192.0.2.10"), 24), ("eth0".into(), ip("2001:db8::10"), 64)]
        );
        assert_eq!(
            p.add_addresses,
            vec![("eth0".into(), ip("2001:db8::11"), 64), ("eth1".into(), ip("198.51.100.7"), 25)]
        );
        assert_eq!(p.add_routes, vec![("eth0".into(), ip("2001:db8::1")), ("eth1".into(), ip("198.51.100.1"))]);
        assert_eq!(p.start_dhcp, vec!["eth0".to_string()], "eth0 lost its static IPv4");
        assert_eq!(p.stop_dhcp, vec!["eth1".to_string()], "eth1 gained one");
        // Applying the same file again changes nothing but re-adding (idempotent).
        let same = plan(Some(&new), &new, &ifaces);
        assert!(same.remove_addresses.is_empty() && same.remove_routes.is_empty());
        assert!(same.start_dhcp.is_empty() && same.stop_dhcp.is_empty());
        // And back: the reverse plan restores the old addresses.
        let back = plan(Some(&new), &old, &ifaces);
        assert_eq!(back.stop_dhcp, vec!["eth0".to_string()]);
        assert_eq!(back.start_dhcp, vec!["eth1".to_string()]);
        assert!(back.add_addresses.contains(&("eth0".into(), ip("192.0.2.10"), 24)));
        assert!(back.remove_addresses.contains(&("eth1".into(), ip("198.51.100.7"), 25)));
    }

    #[test]
    fn nothing_to_confirm_without_a_change() {
        assert!(confirm().is_err());
        assert!(!revert_if_pending(12345));
        assert!(apply_live().unwrap_err().contains("not brought up by init"));
    }
}
