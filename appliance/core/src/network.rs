//! `DATA/config/network.toml`, the appliance's network settings: static IPv4/IPv6 per Ethernet
//! interface (an interface it does not list, or lists without `ipv4`, takes DHCPv4), the
//! resolvers and the NTP servers. Init applies it
//! at boot (`hermes_svc_init::net`); the admin UI writes it, checked with the same parser.
//!
//! ```toml
//! dns = ["192.0.2.53"]
//! [[interface]]
//! name = "eth0"
//! ipv4 = "192.0.2.10/24"
//! gateway4 = "192.0.2.1"
//! ipv6 = ["2001:db8::10/64"]
//! gateway6 = "2001:db8::1"
//! ```
//!
//! with, at the top, `ntp = ["192.0.2.123", "ntp.example.net", "[2001:db8::123]:123"]` (a
//! host name, IPv4 or IPv6 address, optionally with a port; none: the DHCP lease's option 42).
//!
//! Parsed in two stages: raw strings (serde, `deny_unknown_fields`), then every field checked,
//! all errors reported at once, each as `path: message` (`interface[0].ipv4: ...`, `dns[1]: ...`,
//! `ntp[0]: ...`) so the admin UI can show each beside its field.

use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv6Addr};

/// `network.toml`, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NetworkConfig {
    /// Resolvers for statically configured boxes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<IpAddr>,
    /// NTP servers, each `host` or `host:port` ([`ntp_server`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ntp: Vec<String>,
    #[serde(rename = "interface", skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<InterfaceConfig>,
}

/// One `[[interface]]`, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InterfaceConfig {
    /// Kernel name (`eth0`).
    pub name: String,
    /// `192.0.2.10/24`; absent: DHCPv4.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway4: Option<IpAddr>,
    /// `2001:db8::10/64` entries.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ipv6: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<IpAddr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    #[serde(default, rename = "interface")]
    interfaces: Vec<RawInterface>,
    #[serde(default)]
    dns: Vec<String>,
    #[serde(default)]
    ntp: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInterface {
    name: String,
    ipv4: Option<String>,
    gateway4: Option<String>,
    #[serde(default)]
    ipv6: Vec<String>,
    gateway6: Option<String>,
}

/// The NTP port.
pub const NTP_PORT: u16 = 123;
/// Most NTP servers a file may list (a client asks each of them every poll).
pub const MAX_NTP_SERVERS: usize = 8;
/// Most resolvers (the C library reads three; more are kept for the record).
pub const MAX_DNS: usize = 8;
/// Most IPv6 addresses per interface.
pub const MAX_IPV6: usize = 16;

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

fn host_name_ok(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// An NTP server entry: `192.0.2.1`, `ntp.example.net`, `2001:db8::1`, or any of them with a
/// port (`192.0.2.1:123`, `ntp.example.net:1123`, `[2001:db8::1]:123`). Returns host and port.
pub fn ntp_server(s: &str) -> Result<(String, u16), String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty server".into());
    }
    if let Ok(v6) = s.parse::<Ipv6Addr>() {
        return Ok((v6.to_string(), NTP_PORT));
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(|| format!("`{s}`: missing `]`"))?;
        h.parse::<Ipv6Addr>().map_err(|_| format!("`{h}` is not an IPv6 address"))?;
        let port = match after {
            "" => NTP_PORT,
            p => p.strip_prefix(':').and_then(|p| p.parse().ok()).ok_or_else(|| format!("`{after}` is not `:port`"))?,
        };
        (h.to_string(), port)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().map_err(|_| format!("`{p}` is not a port number"))?),
            None => (s.to_string(), NTP_PORT),
        }
    };
    if port == 0 {
        return Err("port 0 is not a port".into());
    }
    if host.parse::<IpAddr>().is_err() && !host_name_ok(&host) {
        return Err(format!("`{host}` is neither an IP address nor a host name"));
    }
    Ok((host, port))
}

fn interface_name_ok(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 15
        && n != "."
        && n != ".."
        && n.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl NetworkConfig {
    /// Parses and checks; every error with its path.
    pub fn parse(text: &str) -> Result<NetworkConfig, Vec<String>> {
        let raw: RawNetwork = toml::from_str(text).map_err(|e| vec![e.message().to_string()])?;
        let mut errors = Vec::new();
        let mut cfg = NetworkConfig::default();
        if raw.dns.len() > MAX_DNS {
            errors.push(format!("dns: at most {MAX_DNS} servers"));
        }
        for (i, d) in raw.dns.iter().enumerate() {
            match d.trim().parse::<IpAddr>() {
                Ok(ip) => cfg.dns.push(ip),
                Err(_) => errors.push(format!("dns[{i}]: `{d}` is not an IP address")),
            }
        }
        if raw.ntp.len() > MAX_NTP_SERVERS {
            errors.push(format!("ntp: at most {MAX_NTP_SERVERS} servers"));
        }
        for (i, n) in raw.ntp.iter().enumerate() {
            match ntp_server(n) {
                Ok(_) => cfg.ntp.push(n.trim().to_string()),
                Err(e) => errors.push(format!("ntp[{i}]: {e}")),
            }
        }
        for (i, iface) in raw.interfaces.into_iter().enumerate() {
            if !interface_name_ok(&iface.name) {
                errors.push(format!("interface[{i}].name: 1 to 15 letters, digits, `-`, `_` or `.`"));
            } else if cfg.interfaces.iter().any(|c| c.name == iface.name) {
                errors.push(format!("interface[{i}].name: `{}` is listed twice", iface.name));
            }
            let mut out = InterfaceConfig { name: iface.name, ..InterfaceConfig::default() };
            if let Some(v4) = iface.ipv4.map(|s| s.trim().to_string()) {
                match parse_cidr(&v4) {
                    Ok((ip, _)) if !ip.is_ipv4() => errors.push(format!("interface[{i}].ipv4: `{v4}` is not IPv4")),
                    Ok((ip, p)) if ip.is_unspecified() || ip.is_multicast() || p == 0 => {
                        errors.push(format!("interface[{i}].ipv4: `{v4}` cannot be a host address"))
                    }
                    Ok(_) => out.ipv4 = Some(v4),
                    Err(e) => errors.push(format!("interface[{i}].ipv4: {e}")),
                }
            }
            if iface.ipv6.len() > MAX_IPV6 {
                errors.push(format!("interface[{i}].ipv6: at most {MAX_IPV6} addresses"));
            }
            for (j, v6) in iface.ipv6.iter().map(|s| s.trim()).enumerate() {
                match parse_cidr(v6) {
                    Ok((ip, _)) if !ip.is_ipv6() => {
                        errors.push(format!("interface[{i}].ipv6[{j}]: `{v6}` is not IPv6"))
                    }
                    Ok((ip, p)) if ip.is_unspecified() || ip.is_multicast() || p == 0 => {
                        errors.push(format!("interface[{i}].ipv6[{j}]: `{v6}` cannot be a host address"))
                    }
                    Ok(_) => out.ipv6.push(v6.to_string()),
                    Err(e) => errors.push(format!("interface[{i}].ipv6[{j}]: {e}")),
                }
            }
            for (key, value, v4) in [("gateway4", &iface.gateway4, true), ("gateway6", &iface.gateway6, false)] {
                let Some(g) = value.as_deref().map(str::trim) else { continue };
                match g.parse::<IpAddr>() {
                    Ok(ip) if ip.is_ipv4() == v4 && !ip.is_unspecified() && !ip.is_multicast() => {
                        if v4 {
                            out.gateway4 = Some(ip)
                        } else {
                            out.gateway6 = Some(ip)
                        }
                    }
                    Ok(_) => errors.push(format!(
                        "interface[{i}].{key}: `{g}` is not a usable {} address",
                        if v4 { "IPv4" } else { "IPv6" }
                    )),
                    Err(_) => errors.push(format!("interface[{i}].{key}: `{g}` is not an IP address")),
                }
            }
            if iface.gateway4.is_some()
                && out.ipv4.is_none()
                && !errors.iter().any(|e| e.starts_with(&format!("interface[{i}].ipv4")))
            {
                errors.push(format!("interface[{i}].gateway4: needs a static ipv4 (DHCP brings its own router)"));
            }
            if iface.gateway6.is_some() && iface.ipv6.is_empty() {
                errors.push(format!("interface[{i}].gateway6: needs at least one static ipv6 address"));
            }
            cfg.interfaces.push(out);
        }
        if errors.is_empty() { Ok(cfg) } else { Err(errors) }
    }

    /// The file text for this configuration (parses back to the same value).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// The NTP servers as host and port.
    pub fn ntp_servers(&self) -> Vec<(String, u16)> {
        self.ntp.iter().filter_map(|s| ntp_server(s).ok()).collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_parses_and_round_trips() {
        let text = "dns = [\"192.0.2.53\", \"2001:db8::53\"]\nntp = [\"192.0.2.1\", \"ntp.example.net:1123\", \"[2001:db8::1]:123\"]\n[[interface]]\nname = \"eth0\"\nipv4 = \"192.0.2.10/24\"\ngateway4 = \"192.0.2.1\"\nipv6 = [\"2001:db8::10/64\"]\ngateway6 = \"2001:db8::1\"\n[[interface]]\nname = \"eth1\"\n";
        let c = NetworkConfig::parse(text).unwrap();
        assert_eq!(c.interfaces.len(), 2);
        assert_eq!(c.interfaces[1].ipv4, None);
        assert_eq!(
            c.ntp_servers(),
            vec![("192.0.2.1".into(), 123), ("ntp.example.net".into(), 1123), ("2001:db8::1".into(), 123)]
        );
        assert_eq!(NetworkConfig::parse(&c.to_toml()).unwrap(), c);
        assert_eq!(NetworkConfig::parse("").unwrap(), NetworkConfig::default());
    }

    #[test]
    fn every_error_is_reported_with_its_path() {
        let errs = NetworkConfig::parse(
            "dns = [\"x\"]\nntp = [\"a b\", \"h:0\", \"[::1\"]\n[[interface]]\nname = \"eth0\"\nipv4 = \"2001:db8::1/64\"\nipv6 = [\"10.0.0.1/99\", \"ff02::1/64\"]\ngateway4 = \"::1\"\ngateway6 = \"nope\"\n[[interface]]\nname = \"eth0\"\n[[interface]]\nname = \"a/b\"\n",
        )
        .unwrap_err();
        let paths: Vec<&str> = errs.iter().map(|e| e.split_once(':').unwrap().0).collect();
        assert_eq!(
            paths,
            [
                "dns[0]",
                "ntp[0]",
                "ntp[1]",
                "ntp[2]",
                "interface[0].ipv4",
                "interface[0].ipv6[0]",
                "interface[0].ipv6[1]",
                "interface[0].gateway4",
                "interface[0].gateway6",
                "interface[1].name",
                "interface[2].name",
            ],
            "{errs:?}"
        );
        assert!(NetworkConfig::parse("[[interface]]\nname = \"eth0\"\ncolour = 1\n").is_err());
        let e = NetworkConfig::parse("[[interface]]\nname = \"eth0\"\ngateway4 = \"192.0.2.1\"\n").unwrap_err();
        assert!(e[0].starts_with("interface[0].gateway4: needs a static ipv4"), "{e:?}");
    }

    #[test]
    fn ntp_servers_and_cidrs() {
        assert_eq!(ntp_server("2001:db8::1").unwrap(), ("2001:db8::1".into(), 123));
        assert_eq!(ntp_server("127.0.0.1:11123").unwrap(), ("127.0.0.1".into(), 11123));
        assert!(ntp_server("-bad-.example").is_err());
        assert!(ntp_server("host:99999").is_err());
        assert!(ntp_server("").is_err());
        assert_eq!(parse_cidr("10.0.2.15/24").unwrap().1, 24);
        assert!(parse_cidr("10.0.2.15").is_err());
        assert!(parse_cidr("10.0.2.15/33").is_err());
    }
}
