//! A DHCPv4 client (RFC 2131) for one interface: DISCOVER, OFFER, REQUEST, ACK over a UDP
//! socket bound to port 68 on that interface. The codec ([`encode`], [`parse`]) is sans-I/O;
//! [`acquire`] does the exchange. It asks for and reads option 42 (NTP servers) for `ntp`.
//!
//! What it is not: a full client. No INIT-REBOOT, no DECLINE after ARP probing, no relay
//! agents; renewal is a new exchange at half the lease time, done by the caller.
//!
//! Invariants: replies are accepted only for our transaction id and hardware address, as
//! BOOTREPLY with the magic cookie; option parsing is bounded by the packet and never panics;
//! [`acquire`] returns within its deadline.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

pub const DISCOVER: u8 = 1;
pub const OFFER: u8 = 2;
pub const REQUEST: u8 = 3;
pub const ACK: u8 = 5;
pub const NAK: u8 = 6;
const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// How long one exchange may take before it is retried (RFC 2131 §4.1 suggests 4 s first).
pub const ROUND_TIMEOUT: Duration = Duration::from_secs(3);

/// What a server granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub server: Ipv4Addr,
    pub lease_secs: u32,
    /// NTP servers (option 42).
    pub ntp: Vec<Ipv4Addr>,
}

/// A parsed server message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub kind: u8,
    pub xid: u32,
    pub yiaddr: Ipv4Addr,
    pub server: Option<Ipv4Addr>,
    pub mask: Option<Ipv4Addr>,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub lease_secs: Option<u32>,
    /// Option 42, NTP servers (RFC 2132 §8.3).
    pub ntp: Vec<Ipv4Addr>,
}

/// A client message (`DISCOVER`, or `REQUEST` for `requested` from `server`).
pub fn encode(kind: u8, xid: u32, mac: [u8; 6], requested: Option<(Ipv4Addr, Ipv4Addr)>, hostname: &str) -> Vec<u8> {
    let mut p = vec![0u8; 236];
    p[0] = 1; // BOOTREQUEST
    p[1] = 1; // Ethernet
    p[2] = 6;
    p[4..8].copy_from_slice(&xid.to_be_bytes());
    p[10..12].copy_from_slice(&0x8000u16.to_be_bytes()); // broadcast replies: we have no address yet
    p[28..34].copy_from_slice(&mac);
    p.extend_from_slice(&MAGIC);
    p.extend_from_slice(&[53, 1, kind]);
    if let Some((ip, server)) = requested {
        p.push(50);
        p.push(4);
        p.extend_from_slice(&ip.octets());
        p.push(54);
        p.push(4);
        p.extend_from_slice(&server.octets());
    }
    let name = &hostname.as_bytes()[..hostname.len().min(63)];
    if !name.is_empty() {
        p.push(12);
        p.push(name.len() as u8);
        p.extend_from_slice(name);
    }
    p.extend_from_slice(&[55, 6, 1, 3, 6, 42, 51, 54]);
    p.push(255);
    while p.len() < 300 {
        p.push(0); // BOOTP minimum size, some servers insist
    }
    p
}

fn ip4(b: &[u8]) -> Option<Ipv4Addr> {
    let b: [u8; 4] = b.get(..4)?.try_into().ok()?;
    Some(Ipv4Addr::from(b))
}

/// Parses a BOOTREPLY for hardware address `mac`.
pub fn parse(p: &[u8], mac: [u8; 6]) -> Option<Reply> {
    if p.len() < 240 || p[0] != 2 || p[1] != 1 || p[2] != 6 || p[28..34] != mac || p[236..240] != MAGIC {
        return None;
    }
    let mut r = Reply {
        kind: 0,
        xid: u32::from_be_bytes(p[4..8].try_into().ok()?),
        yiaddr: ip4(&p[16..20])?,
        server: None,
        mask: None,
        router: None,
        dns: Vec::new(),
        lease_secs: None,
        ntp: Vec::new(),
    };
    let mut i = 240;
    while i < p.len() {
        let code = p[i];
        if code == 255 {
            break;
        }
        if code == 0 {
            i += 1;
            continue;
        }
        let len = *p.get(i + 1)? as usize;
        let val = p.get(i + 2..i + 2 + len)?;
        match code {
            53 if len == 1 => r.kind = val[0],
            1 => r.mask = ip4(val),
            3 => r.router = ip4(val),
            6 => r.dns = val.chunks_exact(4).filter_map(ip4).collect(),
            42 => r.ntp = val.chunks_exact(4).filter_map(ip4).take(8).collect(),
            51 if len == 4 => r.lease_secs = Some(u32::from_be_bytes(val.try_into().ok()?)),
            54 => r.server = ip4(val),
            _ => {}
        }
        i += 2 + len;
    }
    (r.kind != 0).then_some(r)
}

/// Prefix length of a netmask (`255.255.255.0` → 24); non-contiguous masks count their ones.
pub fn prefix_of(mask: Ipv4Addr) -> u8 {
    u32::from(mask).count_ones() as u8
}

fn pseudo_random_xid(mac: [u8; 6]) -> u32 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]) ^ t ^ std::process::id()
}

/// Runs DISCOVER → OFFER → REQUEST → ACK on `interface` until `deadline`.
pub fn acquire(interface: &str, mac: [u8; 6], hostname: &str, deadline: Duration) -> std::io::Result<Lease> {
    let socket = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68))?;
    socket.set_broadcast(true)?;
    nix::sys::socket::setsockopt(
        &socket,
        nix::sys::socket::sockopt::BindToDevice,
        &std::ffi::OsString::from(interface),
    )
    .map_err(std::io::Error::from)?;
    let broadcast = SocketAddrV4::new(Ipv4Addr::BROADCAST, 67);
    let start = Instant::now();
    let mut buf = [0u8; 1500];
    while start.elapsed() < deadline {
        let xid = pseudo_random_xid(mac);
        socket.send_to(&encode(DISCOVER, xid, mac, None, hostname), broadcast)?;
        let Some(offer) = wait_for(&socket, &mut buf, mac, xid, &[OFFER]) else { continue };
        let Some(server) = offer.server else { continue };
        socket.send_to(&encode(REQUEST, xid, mac, Some((offer.yiaddr, server)), hostname), broadcast)?;
        let Some(ack) = wait_for(&socket, &mut buf, mac, xid, &[ACK, NAK]) else { continue };
        if ack.kind == NAK {
            continue;
        }
        return Ok(Lease {
            address: ack.yiaddr,
            prefix: ack.mask.or(offer.mask).map(prefix_of).unwrap_or(24),
            router: ack.router.or(offer.router),
            dns: if ack.dns.is_empty() { offer.dns } else { ack.dns },
            server,
            lease_secs: ack.lease_secs.or(offer.lease_secs).unwrap_or(3600),
            ntp: if ack.ntp.is_empty() { offer.ntp } else { ack.ntp },
        });
    }
    Err(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no DHCP answer on {interface}")))
}

fn wait_for(socket: &UdpSocket, buf: &mut [u8], mac: [u8; 6], xid: u32, kinds: &[u8]) -> Option<Reply> {
    let until = Instant::now() + ROUND_TIMEOUT;
    loop {
        let left = until.checked_duration_since(Instant::now())?;
        socket.set_read_timeout(Some(left.max(Duration::from_millis(1)))).ok()?;
        let (n, _) = socket.recv_from(buf).ok()?;
        if let Some(r) = parse(&buf[..n], mac)
            && r.xid == xid
            && kinds.contains(&r.kind)
        {
            return Some(r);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

    fn reply(kind: u8, xid: u32) -> Vec<u8> {
        let mut p = encode(kind, xid, MAC, None, "");
        p[0] = 2;
        p[16..20].copy_from_slice(&[10, 0, 2, 15]);
        p.truncate(240);
        p.extend_from_slice(&[53, 1, kind, 1, 4, 255, 255, 255, 0, 3, 4, 10, 0, 2, 2, 6, 4, 10, 0, 2, 3]);
        p.extend_from_slice(&[51, 4, 0, 1, 81, 128, 54, 4, 10, 0, 2, 2, 42, 8, 10, 0, 2, 4, 192, 0, 2, 123, 255]);
        p
    }

    #[test]
    fn offer_from_qemu_user_net_parses() {
        let r = parse(&reply(OFFER, 42), MAC).unwrap();
        assert_eq!(r.kind, OFFER);
        assert_eq!(r.xid, 42);
        assert_eq!(r.yiaddr, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(r.mask.map(prefix_of), Some(24));
        assert_eq!(r.router, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(r.dns, vec![Ipv4Addr::new(10, 0, 2, 3)]);
        assert_eq!(r.lease_secs, Some(86400));
        assert_eq!(r.server, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(r.ntp, vec![Ipv4Addr::new(10, 0, 2, 4), Ipv4Addr::new(192, 0, 2, 123)]);
    }

    #[test]
    fn wrong_mac_truncations_and_garbage_are_refused() {
        let good = reply(ACK, 1);
        assert!(parse(&good, [0; 6]).is_none());
        for n in 0..good.len() {
            let _ = parse(&good[..n], MAC); // never panics
        }
        let mut bad = good.clone();
        bad[241] = 200; // option length past the end
        assert!(parse(&bad, MAC).is_none());
    }

    #[test]
    fn requests_carry_the_offer() {
        let p = encode(REQUEST, 7, MAC, Some((Ipv4Addr::new(10, 0, 2, 15), Ipv4Addr::new(10, 0, 2, 2))), "hermes");
        assert!(p.len() >= 300);
        assert_eq!(&p[240..243], &[53, 1, REQUEST]);
        assert!(p.windows(6).any(|w| w == [50, 4, 10, 0, 2, 15]));
    }
}
