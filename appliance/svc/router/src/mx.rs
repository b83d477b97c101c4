//! MX resolution for remote delivery (RFC 5321 §5.1) with hickory-resolver: the configured
//! nameservers (`router.nameservers`, `ip` or `ip:port`) or the system's resolv.conf.
//!
//! What it is not: no DANE/MTA-STS, no caching beyond the resolver's own TTL cache.
//!
//! Invariants:
//! - Hosts come in MX preference order (lowest first; equal preferences shuffled, RFC 5321
//!   §5.1); with no MX record the domain itself is the host (the A/AAAA fallback); a null MX
//!   (`MX 0 .`, RFC 7505) is a permanent failure.
//! - NXDOMAIN is permanent (5.1.2); timeouts and server failures are temporary (4.4.3), so
//!   the message is retried rather than bounced.
//! - At most [`MAX_MX_HOSTS`] hosts and [`MAX_ADDRESSES`] addresses per host are tried.

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use std::net::{IpAddr, SocketAddr};

/// MX hosts tried per delivery attempt (Postfix's smtp_mx_address_limit is 5 addresses).
pub const MAX_MX_HOSTS: usize = 5;
/// Addresses tried per MX host.
pub const MAX_ADDRESSES: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MxError {
    #[error("{0}")]
    Temporary(String),
    #[error("{0}")]
    Permanent(String),
}

pub struct Mx {
    resolver: TokioResolver,
}

impl Mx {
    /// A resolver for `nameservers` (empty: the system's configuration).
    pub fn new(nameservers: &[SocketAddr]) -> Result<Mx, String> {
        let builder = if nameservers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| e.to_string())?
        } else {
            let servers = nameservers
                .iter()
                .map(|a| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = a.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = a.port();
                    NameServerConfig::new(a.ip(), true, vec![udp, tcp])
                })
                .collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, Vec::new(), servers),
                TokioRuntimeProvider::default(),
            )
        };
        Ok(Mx { resolver: builder.build().map_err(|e| e.to_string())? })
    }

    /// The hosts to try for `domain`, best first.
    pub async fn hosts(&self, domain: &str) -> Result<Vec<String>, MxError> {
        if let Some(lit) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
            let ip = lit.strip_prefix("IPv6:").unwrap_or(lit);
            return match ip.parse::<IpAddr>() {
                Ok(_) => Ok(vec![ip.to_string()]),
                Err(_) => Err(MxError::Permanent("5.1.2 bad address literal".into())),
            };
        }
        let fqdn = format!("{}.", domain.trim_end_matches('.'));
        match self.resolver.mx_lookup(fqdn.as_str()).await {
            Ok(lookup) => {
                let mut mx: Vec<(u16, String)> = lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::MX(m) => Some((m.preference, m.exchange.to_ascii())),
                        _ => None,
                    })
                    .collect();
                if mx.is_empty() {
                    return Ok(vec![domain.to_string()]);
                }
                if mx.len() == 1 && (mx[0].1 == "." || mx[0].1.is_empty()) {
                    return Err(MxError::Permanent(format!("5.1.10 {domain} accepts no mail (null MX)")));
                }
                {
                    use rand::seq::SliceRandom;
                    mx.shuffle(&mut rand::thread_rng());
                }
                mx.sort_by_key(|(p, _)| *p);
                Ok(mx
                    .into_iter()
                    .map(|(_, h)| h.trim_end_matches('.').to_string())
                    .filter(|h| !h.is_empty())
                    .take(MAX_MX_HOSTS)
                    .collect())
            }
            Err(e) if e.is_nx_domain() => Err(MxError::Permanent(format!("5.1.2 domain {domain} does not exist"))),
            Err(e) if e.is_no_records_found() => Ok(vec![domain.to_string()]),
            Err(e) => Err(MxError::Temporary(format!("4.4.3 DNS lookup for {domain} failed: {e}"))),
        }
    }

    /// A and AAAA addresses of `host` (an IP literal is returned as is).
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, MxError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let fqdn = format!("{}.", host.trim_end_matches('.'));
        match self.resolver.lookup_ip(fqdn.as_str()).await {
            Ok(l) => Ok(l.iter().take(MAX_ADDRESSES).collect()),
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => {
                Err(MxError::Temporary(format!("4.4.4 host {host} has no address")))
            }
            Err(e) => Err(MxError::Temporary(format!("4.4.3 DNS lookup for {host} failed: {e}"))),
        }
    }
}
