//! Network bring-up: loopback, then each Ethernet interface from `DATA/config/network.toml`
//! (static IPv4/IPv6) or, for interfaces it does not list, DHCPv4. IPv6 autoconfiguration
//! (SLAAC) is the kernel's once a link is up. DNS servers go to `/run/resolv.conf` (the image's
//! `/etc/resolv.conf` points there).
//!
//! What it is not: a network manager. No bonding, VLANs or routing policy (later issues); a
//! DHCP lease is renewed by a fresh exchange at half its time.
//!
//! Invariants: `network.toml` is parsed with `deny_unknown_fields` and every error reported
//! with its path; an invalid file leaves the box on DHCP (so the admin can still reach it)
//! and says so; bring-up never blocks boot longer than [`DHCP_BOOT_DEADLINE`] per interface.

use crate::dhcp;
use crate::netlink::Netlink;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

/// How long boot waits for a DHCP answer per interface before going on (and retrying in the
/// background): QEMU and a normal LAN answer in milliseconds.
pub const DHCP_BOOT_DEADLINE: Duration = Duration::from_secs(8);
/// Where resolvers are written.
pub const RESOLV_CONF: &str = "/run/resolv.conf";

/// `network.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    #[serde(default, rename = "interface")]
    pub interfaces: Vec<InterfaceConfig>,
    /// Resolvers for statically configured boxes.
    #[serde(default)]
    pub dns: Vec<IpAddr>,
}

/// One `[[interface]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceConfig {
    /// Kernel name (`eth0`).
    pub name: String,
    /// `192.0.2.10/24`; absent: DHCPv4.
    pub ipv4: Option<String>,
    pub gateway4: Option<IpAddr>,
    /// `2001:db8::10/64` entries.
    #[serde(default)]
    pub ipv6: Vec<String>,
    pub gateway6: Option<IpAddr>,
}

/// `addr/prefix` with the family's prefix bound.
pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (a, p) = s.split_once('/').ok_or_else(|| format!("`{s}` needs a /prefix"))?;
    let ip: IpAddr = a.parse().map_err(|_| format!("`{a}` is not an IP address"))?;
    let prefix: u8 = p.parse().map_err(|_| format!("`{p}` is not a prefix length"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(format!("prefix {prefix} is longer than {max}"));
    }
    Ok((ip, prefix))
}

impl NetworkConfig {
    /// Parses and checks; every error with its path.
    pub fn parse(text: &str) -> Result<NetworkConfig, Vec<String>> {
        let cfg: NetworkConfig = toml::from_str(text).map_err(|e| vec![e.to_string()])?;
        let mut errors = Vec::new();
        for (i, iface) in cfg.interfaces.iter().enumerate() {
            if iface.name.is_empty() || iface.name.len() > 15 {
                errors.push(format!("interface[{i}].name: must be 1 to 15 characters"));
            }
            if let Some(v4) = &iface.ipv4 {
                match parse_cidr(v4) {
                    Ok((ip, _)) if !ip.is_ipv4() => errors.push(format!("interface[{i}].ipv4: `{v4}` is not IPv4")),
                    Ok(_) => {}
                    Err(e) => errors.push(format!("interface[{i}].ipv4: {e}")),
                }
            }
            for (j, v6) in iface.ipv6.iter().enumerate() {
                match parse_cidr(v6) {
                    Ok((ip, _)) if !ip.is_ipv6() => {
                        errors.push(format!("interface[{i}].ipv6[{j}]: `{v6}` is not IPv6"))
                    }
                    Ok(_) => {}
                    Err(e) => errors.push(format!("interface[{i}].ipv6[{j}]: {e}")),
                }
            }
            if iface.gateway4.is_some_and(|g| !g.is_ipv4()) {
                errors.push(format!("interface[{i}].gateway4: not IPv4"));
            }
            if iface.gateway6.is_some_and(|g| !g.is_ipv6()) {
                errors.push(format!("interface[{i}].gateway6: not IPv6"));
            }
        }
        if errors.is_empty() { Ok(cfg) } else { Err(errors) }
    }
}

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

fn write_resolv(dns: &[IpAddr]) {
    if dns.is_empty() {
        return;
    }
    let text: String = dns.iter().map(|d| format!("nameserver {d}\n")).collect();
    let _ = std::fs::write(RESOLV_CONF, text);
}

/// Applies a lease to `index`.
fn apply_lease(nl: &mut Netlink, index: u32, lease: &dhcp::Lease) -> nix::Result<()> {
    nl.add_address(index, &IpAddr::V4(lease.address), lease.prefix)?;
    if let Some(r) = lease.router {
        nl.default_route(index, &IpAddr::V4(r))?;
    }
    write_resolv(&lease.dns.iter().map(|d| IpAddr::V4(*d)).collect::<Vec<_>>());
    Ok(())
}

/// Keeps a DHCP lease on `iface`: renews at half the lease, retries every 30 s when there is
/// none. Runs on its own thread for the life of the box.
fn dhcp_keeper(iface: String, index: u32, mac: [u8; 6], hostname: String, mut lease: Option<dhcp::Lease>) {
    loop {
        let wait = match &lease {
            Some(l) => Duration::from_secs(u64::from(l.lease_secs / 2).max(30)),
            None => Duration::from_secs(30),
        };
        std::thread::sleep(wait);
        match dhcp::acquire(&iface, mac, &hostname, Duration::from_secs(20)) {
            Ok(new) => {
                if lease.as_ref().map(|l| l.address) != Some(new.address) {
                    crate::log::say(&format!("network: {iface} {}/{} (DHCP)", new.address, new.prefix));
                }
                if let Ok(mut nl) = Netlink::open()
                    && let Err(e) = apply_lease(&mut nl, index, &new)
                {
                    crate::log::say(&format!("network: {iface}: cannot apply the lease: {e}"));
                }
                lease = Some(new);
            }
            Err(e) => crate::log::say(&format!("network: {iface}: {e}")),
        }
    }
}

/// Brings the network up. Returns one line per interface for the console.
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
    let config = match std::fs::read_to_string(config_path) {
        Ok(text) => match NetworkConfig::parse(&text) {
            Ok(c) => c,
            Err(errors) => {
                report.push(format!("{} is invalid (using DHCP): {}", config_path.display(), errors.join("; ")));
                NetworkConfig::default()
            }
        },
        Err(_) => NetworkConfig::default(),
    };
    write_resolv(&config.dns);
    for iface in ethernet_interfaces() {
        let Ok(index) = nix::net::if_::if_nametoindex(iface.as_str()) else { continue };
        if let Err(e) = nl.link_up(index) {
            report.push(format!("{iface}: cannot bring the link up: {e}"));
            continue;
        }
        let stat = config.interfaces.iter().find(|i| i.name == iface);
        let mut dhcp4 = true;
        if let Some(s) = stat {
            for (cidr, gw) in s.ipv4.iter().map(|c| (c, s.gateway4)).chain(s.ipv6.iter().map(|c| (c, s.gateway6))) {
                let Ok((ip, prefix)) = parse_cidr(cidr) else { continue };
                match nl.add_address(index, &ip, prefix) {
                    Ok(()) => report.push(format!("{iface} {ip}/{prefix} (static)")),
                    Err(e) => report.push(format!("{iface}: cannot add {ip}/{prefix}: {e}")),
                }
                if let Some(g) = gw
                    && g.is_ipv4() == ip.is_ipv4()
                    && let Err(e) = nl.default_route(index, &g)
                {
                    report.push(format!("{iface}: cannot route via {g}: {e}"));
                }
            }
            dhcp4 = s.ipv4.is_none();
        }
        if !dhcp4 {
            continue;
        }
        let Some(mac) = mac_of(&iface) else { continue };
        let lease = match dhcp::acquire(&iface, mac, hostname, DHCP_BOOT_DEADLINE) {
            Ok(lease) => match apply_lease(&mut nl, index, &lease) {
                Ok(()) => {
                    report.push(format!(
                        "{iface} {}/{} via {} (DHCP, {} s)",
                        lease.address,
                        lease.prefix,
                        lease.router.map(|r| r.to_string()).unwrap_or_else(|| "-".into()),
                        lease.lease_secs
                    ));
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
        };
        let host = hostname.to_string();
        let name = iface.clone();
        let _ = std::thread::Builder::new()
            .name(format!("dhcp-{iface}"))
            .stack_size(64 * 1024)
            .spawn(move || dhcp_keeper(name, index, mac, host, lease));
    }
    report
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn static_config_parses_and_checks() {
        let c = NetworkConfig::parse(
            "dns = [\"192.0.2.53\"]\n[[interface]]\nname = \"eth0\"\nipv4 = \"192.0.2.10/24\"\ngateway4 = \"192.0.2.1\"\nipv6 = [\"2001:db8::10/64\"]\n",
        )
        .unwrap();
        assert_eq!(c.interfaces[0].ipv4.as_deref(), Some("192.0.2.10/24"));
        let errs = NetworkConfig::parse(
            "[[interface]]\nname = \"eth0\"\nipv4 = \"2001:db8::1/64\"\nipv6 = [\"10.0.0.1/99\"]\ngateway4 = \"::1\"\n",
        )
        .unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(NetworkConfig::parse("[[interface]]\nname = \"eth0\"\ncolour = 1\n").is_err());
    }

    #[test]
    fn cidrs() {
        assert_eq!(parse_cidr("10.0.2.15/24").unwrap().1, 24);
        assert!(parse_cidr("10.0.2.15").is_err());
        assert!(parse_cidr("10.0.2.15/33").is_err());
    }
}
