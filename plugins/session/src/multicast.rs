// SPDX-License-Identifier: MPL-2.0

//! Multicast sockets without GStreamer: a sender with TTL, interface and loopback set, and a
//! receiver bound to its group and port with an IGMP/MLD membership (socket2).

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// The interface an `iface` setting names: empty (the routing table decides), an IPv4
/// address, or an interface name. IPv4 takes the interface's address, IPv6 its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Iface {
    pub v4: Ipv4Addr,
    pub index: u32,
}

pub fn iface(name: &str) -> io::Result<Iface> {
    let name = name.trim();
    if name.is_empty() {
        return Ok(Iface {
            v4: Ipv4Addr::UNSPECIFIED,
            index: 0,
        });
    }
    if let Ok(v4) = name.parse::<Ipv4Addr>() {
        return Ok(Iface { v4, index: 0 });
    }
    let not_found = || io::Error::new(io::ErrorKind::NotFound, format!("no interface {name:?}"));
    let index = nix::net::if_::if_nametoindex(name).map_err(|_| not_found())?;
    let v4 = nix::ifaddrs::getifaddrs()
        .map_err(io::Error::from)?
        .filter(|a| a.interface_name == name)
        .find_map(|a| a.address?.as_sockaddr_in().map(|s| s.ip()))
        .unwrap_or(Ipv4Addr::UNSPECIFIED);
    Ok(Iface { v4, index })
}

/// A socket that sends to groups of `family`'s kind.
pub fn sender(v6: bool, ttl: u32, iface: Iface, looped: bool) -> io::Result<UdpSocket> {
    let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    let _ = s.set_send_buffer_size(4 << 20);
    if v6 {
        s.set_multicast_hops_v6(ttl)?;
        s.set_multicast_loop_v6(looped)?;
        if iface.index != 0 {
            s.set_multicast_if_v6(iface.index)?;
        }
        s.bind(&SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)).into())?;
    } else {
        s.set_multicast_ttl_v4(ttl)?;
        s.set_multicast_loop_v4(looped)?;
        if !iface.v4.is_unspecified() {
            s.set_multicast_if_v4(&iface.v4)?;
        }
        s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)).into())?;
    }
    Ok(s.into())
}

/// A socket bound to `group`'s address and port, a member of the group. Several receivers
/// on one host can take the same group (address reuse).
pub fn receiver(group: SocketAddr, iface: Iface, timeout: Duration) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::for_address(group), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    let _ = s.set_recv_buffer_size(4 << 20);
    // Bound to the group itself: only that group's datagrams to the port arrive.
    s.bind(&group.into())?;
    match group.ip() {
        IpAddr::V4(g) => s.join_multicast_v4(&g, &iface.v4)?,
        IpAddr::V6(g) => s.join_multicast_v6(&g, iface.index)?,
    }
    let s: UdpSocket = s.into();
    s.set_read_timeout(Some(timeout))?;
    Ok(s)
}

/// Leaves the group (closing the socket would too; this says it at once).
pub fn leave(socket: &UdpSocket, group: SocketAddr, iface: Iface) {
    let _ = match group.ip() {
        IpAddr::V4(g) => socket.leave_multicast_v4(&g, &iface.v4),
        IpAddr::V6(g) => socket.leave_multicast_v6(&g, iface.index),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interfaces_are_named_by_address_or_name() {
        assert_eq!(iface("").unwrap().v4, Ipv4Addr::UNSPECIFIED);
        assert_eq!(iface("127.0.0.1").unwrap().v4, Ipv4Addr::LOCALHOST);
        let lo = iface("lo").unwrap();
        assert_eq!(lo.v4, Ipv4Addr::LOCALHOST);
        assert!(lo.index > 0);
        assert!(iface("no-such-interface0").is_err());
    }
}
