//! Just enough rtnetlink to configure interfaces: bring a link up, add and remove an address,
//! add and remove a default route, list the addresses and default routes (for the control
//! socket's `network_status`). Messages are built and parsed by hand (the formats are fixed in
//! `linux/rtnetlink.h`).
//!
//! What it is not: a netlink library. No events; every change asks for an ACK and waits for it;
//! a dump reads until NLMSG_DONE (bounded by [`MAX_DUMP_MESSAGES`]).
//!
//! Invariants: every request is acknowledged or fails with the kernel's errno; nothing here
//! blocks longer than [`ACK_TIMEOUT`].

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, sendto, setsockopt, socket,
    sockopt,
};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

/// How long the kernel may take to answer.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(2);

const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_GETADDR: u16 = 22;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_GETROUTE: u16 = 26;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_DUMP: u16 = 0x300;
/// Most messages one dump may return (a box has a handful of addresses and routes).
pub const MAX_DUMP_MESSAGES: usize = 4096;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
const IFF_UP: u32 = 0x1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_HOST: u8 = 254;
const RTN_UNICAST: u8 = 1;

/// An open rtnetlink socket.
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

fn family(ip: &IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => libc::AF_INET as u8,
        IpAddr::V6(_) => libc::AF_INET6 as u8,
    }
}

fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn attr(buf: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = 4 + data.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(data);
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}

/// A whole message: header + body (already padded).
pub fn message(kind: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(16 + body.len());
    m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(body);
    m
}

/// The body of RTM_NEWLINK setting IFF_UP on `index`.
pub fn link_up_body(index: u32) -> Vec<u8> {
    let mut b = vec![libc::AF_UNSPEC as u8, 0, 0, 0];
    b.extend_from_slice(&(index as i32).to_ne_bytes());
    b.extend_from_slice(&IFF_UP.to_ne_bytes());
    b.extend_from_slice(&IFF_UP.to_ne_bytes());
    b
}

/// The body of RTM_NEWADDR for `ip/prefix` on `index`.
pub fn addr_body(index: u32, ip: &IpAddr, prefix: u8) -> Vec<u8> {
    // Loopback addresses must have host scope (recent kernels refuse anything else).
    let scope = if ip.is_loopback() { RT_SCOPE_HOST } else { RT_SCOPE_UNIVERSE };
    let mut b = vec![family(ip), prefix, 0, scope];
    b.extend_from_slice(&index.to_ne_bytes());
    attr(&mut b, IFA_LOCAL, &ip_bytes(ip));
    attr(&mut b, IFA_ADDRESS, &ip_bytes(ip));
    b
}

/// The body of RTM_NEWROUTE for a default route via `gateway` out of `index`.
pub fn default_route_body(index: u32, gateway: &IpAddr) -> Vec<u8> {
    let mut b = vec![family(gateway), 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST];
    b.extend_from_slice(&0u32.to_ne_bytes());
    let zero = match gateway {
        IpAddr::V4(_) => vec![0u8; 4],
        IpAddr::V6(_) => vec![0u8; 16],
    };
    attr(&mut b, RTA_DST, &zero);
    attr(&mut b, RTA_GATEWAY, &ip_bytes(gateway));
    attr(&mut b, RTA_OIF, &index.to_ne_bytes());
    b
}

/// The errno in an NLMSG_ERROR answer for `seq` (0 = success); `None` if `buf` holds no
/// answer to it.
pub fn parse_ack(buf: &[u8], seq: u32) -> Option<i32> {
    let mut off = 0;
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes(buf[off..off + 4].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().ok()?);
        let mseq = u32::from_ne_bytes(buf[off + 8..off + 12].try_into().ok()?);
        if len < 16 || off + len > buf.len() {
            return None;
        }
        if kind == NLMSG_ERROR && mseq == seq && len >= 20 {
            return Some(-i32::from_ne_bytes(buf[off + 16..off + 20].try_into().ok()?));
        }
        off += (len + 3) & !3;
    }
    None
}

/// An address as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AddrEntry {
    pub index: u32,
    pub address: IpAddr,
    pub prefix: u8,
}

/// A default route as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RouteEntry {
    pub index: Option<u32>,
    pub gateway: IpAddr,
}

fn ip_from(family: u8, b: &[u8]) -> Option<IpAddr> {
    if family == libc::AF_INET as u8 {
        let a: [u8; 4] = b.get(..4)?.try_into().ok()?;
        Some(IpAddr::from(a))
    } else if family == libc::AF_INET6 as u8 {
        let a: [u8; 16] = b.get(..16)?.try_into().ok()?;
        Some(IpAddr::from(a))
    } else {
        None
    }
}

/// The attributes after a fixed-size body: (kind, payload) pairs, bounded by `b`.
fn attrs(b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 4 <= b.len() {
        let len = u16::from_ne_bytes([b[off], b[off + 1]]) as usize;
        let kind = u16::from_ne_bytes([b[off + 2], b[off + 3]]) & 0x3fff;
        if len < 4 || off + len > b.len() {
            break;
        }
        out.push((kind, &b[off + 4..off + len]));
        off += (len + 3) & !3;
    }
    out
}

/// Splits a netlink buffer into (kind, payload) messages; `done` when NLMSG_DONE or an error
/// ends the dump.
pub fn split_messages(buf: &[u8]) -> (Vec<(u16, &[u8])>, bool) {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
        let kind = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
        if len < 16 || off + len > buf.len() {
            return (out, true);
        }
        if kind == NLMSG_DONE || kind == NLMSG_ERROR {
            return (out, true);
        }
        out.push((kind, &buf[off + 16..off + len]));
        off += (len + 3) & !3;
    }
    (out, false)
}

/// An RTM_NEWADDR payload (ifaddrmsg + attributes).
pub fn parse_addr(p: &[u8]) -> Option<AddrEntry> {
    let family = *p.first()?;
    let prefix = *p.get(1)?;
    let index = u32::from_ne_bytes(p.get(4..8)?.try_into().ok()?);
    let list = attrs(p.get(8..)?);
    let pick = |k| list.iter().find(|(kind, _)| *kind == k).and_then(|(_, v)| ip_from(family, v));
    let address = pick(IFA_LOCAL).or_else(|| pick(IFA_ADDRESS))?;
    Some(AddrEntry { index, address, prefix })
}

/// An RTM_NEWROUTE payload, if it is a default route with a gateway in the main table.
pub fn parse_default_route(p: &[u8]) -> Option<RouteEntry> {
    let family = *p.first()?;
    let dst_len = *p.get(1)?;
    let table = *p.get(4)?;
    if dst_len != 0 || table != RT_TABLE_MAIN {
        return None;
    }
    let list = attrs(p.get(12..)?);
    let gateway = list.iter().find(|(k, _)| *k == RTA_GATEWAY).and_then(|(_, v)| ip_from(family, v))?;
    let index =
        list.iter().find(|(k, _)| *k == RTA_OIF).and_then(|(_, v)| v.get(..4)?.try_into().ok().map(u32::from_ne_bytes));
    Some(RouteEntry { index, gateway })
}

impl Netlink {
    pub fn open() -> nix::Result<Netlink> {
        let fd = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkRoute)?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))?;
        setsockopt(&fd, sockopt::ReceiveTimeout, &nix::sys::time::TimeVal::new(ACK_TIMEOUT.as_secs() as i64, 0))?;
        Ok(Netlink { fd, seq: 1 })
    }

    fn request(&mut self, kind: u16, flags: u16, body: &[u8]) -> nix::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let msg = message(kind, flags, seq, body);
        sendto(self.fd.as_raw_fd(), &msg, &NetlinkAddr::new(0, 0), MsgFlags::empty())?;
        let mut buf = vec![0u8; 8192];
        for _ in 0..16 {
            let n = recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
            match parse_ack(&buf[..n], seq) {
                Some(0) => return Ok(()),
                Some(e) => return Err(nix::errno::Errno::from_raw(e)),
                None => continue,
            }
        }
        Err(nix::errno::Errno::ETIMEDOUT)
    }

    pub fn link_up(&mut self, index: u32) -> nix::Result<()> {
        self.request(RTM_NEWLINK, 0, &link_up_body(index))
    }

    pub fn add_address(&mut self, index: u32, ip: &IpAddr, prefix: u8) -> nix::Result<()> {
        self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, &addr_body(index, ip, prefix))
    }

    pub fn default_route(&mut self, index: u32, gateway: &IpAddr) -> nix::Result<()> {
        self.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, &default_route_body(index, gateway))
    }

    pub fn del_address(&mut self, index: u32, ip: &IpAddr, prefix: u8) -> nix::Result<()> {
        self.request(RTM_DELADDR, 0, &addr_body(index, ip, prefix))
    }

    pub fn del_default_route(&mut self, index: u32, gateway: &IpAddr) -> nix::Result<()> {
        self.request(RTM_DELROUTE, 0, &default_route_body(index, gateway))
    }

    fn dump(&mut self, kind: u16, body: &[u8]) -> nix::Result<Vec<Vec<u8>>> {
        self.seq = self.seq.wrapping_add(1);
        let mut msg = message(kind, NLM_F_DUMP, self.seq, body);
        // A dump is answered with its messages and NLMSG_DONE, not with an ACK.
        msg[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        sendto(self.fd.as_raw_fd(), &msg, &NetlinkAddr::new(0, 0), MsgFlags::empty())?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
            let (msgs, done) = split_messages(&buf[..n]);
            out.extend(msgs.into_iter().map(|(_, p)| p.to_vec()));
            if done || n == 0 {
                return Ok(out);
            }
            if out.len() > MAX_DUMP_MESSAGES {
                return Err(nix::errno::Errno::EMSGSIZE);
            }
        }
    }

    /// Every address of every interface.
    pub fn addresses(&mut self) -> nix::Result<Vec<AddrEntry>> {
        let body = vec![libc::AF_UNSPEC as u8, 0, 0, 0, 0, 0, 0, 0];
        Ok(self.dump(RTM_GETADDR, &body)?.iter().filter_map(|p| parse_addr(p)).collect())
    }

    /// The default routes of the main table.
    pub fn default_routes(&mut self) -> nix::Result<Vec<RouteEntry>> {
        let body = vec![libc::AF_UNSPEC as u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        Ok(self.dump(RTM_GETROUTE, &body)?.iter().filter_map(|p| parse_default_route(p)).collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn messages_are_aligned_and_sized() {
        let body = addr_body(2, &"10.0.2.15".parse().unwrap(), 24);
        assert_eq!(body.len(), 8 + 8 + 8);
        let m = message(RTM_NEWADDR, NLM_F_CREATE, 7, &body);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize, m.len());
        assert_eq!(m.len() % 4, 0);
        let r = default_route_body(2, &"2001:db8::1".parse().unwrap());
        assert_eq!(r.len(), 12 + 20 + 20 + 8);
    }

    #[test]
    fn acks_are_matched_by_sequence() {
        let mut ack = message(NLMSG_ERROR, 0, 9, &[0u8; 20]);
        ack[16..20].copy_from_slice(&(-17i32).to_ne_bytes());
        assert_eq!(parse_ack(&ack, 9), Some(17));
        assert_eq!(parse_ack(&ack, 8), None);
        assert_eq!(parse_ack(&ack[..10], 9), None);
    }

    /// Brings loopback up in a fresh network namespace when allowed (root); a real kernel check.
    #[test]
    fn loopback_comes_up_in_a_private_namespace() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let out = std::thread::spawn(|| {
            if nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
                return None;
            }
            let mut nl = Netlink::open().ok()?;
            let lo = nix::net::if_::if_nametoindex("lo").ok()?;
            Some(
                nl.link_up(lo)
                    .map_err(|e| ("link", e))
                    .and_then(|()| nl.add_address(lo, &"127.0.0.2".parse().unwrap(), 8).map_err(|e| ("addr", e)))
                    .and_then(|()| nl.add_address(lo, &"192.0.2.7".parse().unwrap(), 24).map_err(|e| ("addr2", e)))
                    .and_then(|()| nl.default_route(lo, &"192.0.2.1".parse().unwrap()).map_err(|e| ("route", e)))
                    .and_then(|()| {
                        // Listed back, then removed, then gone from the lists.
                        let addrs = nl.addresses().map_err(|e| ("dump", e))?;
                        let routes = nl.default_routes().map_err(|e| ("dump routes", e))?;
                        let want = AddrEntry { index: lo, address: "192.0.2.7".parse().unwrap(), prefix: 24 };
                        if !addrs.contains(&want) || !routes.iter().any(|r| r.gateway.to_string() == "192.0.2.1") {
                            return Err(("listed", nix::errno::Errno::ENOENT));
                        }
                        nl.del_default_route(lo, &"192.0.2.1".parse().unwrap()).map_err(|e| ("del route", e))?;
                        nl.del_address(lo, &"192.0.2.7".parse().unwrap(), 24).map_err(|e| ("del addr", e))?;
                        let addrs = nl.addresses().map_err(|e| ("dump", e))?;
                        let routes = nl.default_routes().map_err(|e| ("dump routes", e))?;
                        if addrs.contains(&want) || !routes.is_empty() {
                            return Err(("still listed", nix::errno::Errno::EEXIST));
                        }
                        Ok(())
                    }),
            )
        })
        .join()
        .unwrap();
        if let Some(result) = out {
            assert_eq!(result, Ok(()));
        }
    }
}
