// SPDX-License-Identifier: MPL-2.0

//! Where a receiver is, and how its address is written (`session-sink`'s `remove-client`
//! action takes it as text).

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// Where a receiver is: a UDP address, or a TCP connection's peer address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Peer {
    Udp(SocketAddr),
    Tcp(SocketAddr),
}

impl Peer {
    pub fn addr(&self) -> SocketAddr {
        match *self {
            Peer::Udp(a) | Peer::Tcp(a) => a,
        }
    }

    pub fn is_tcp(&self) -> bool {
        matches!(self, Peer::Tcp(_))
    }
}

/// `ip:port` for UDP, `tcp:ip:port` for TCP.
impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Udp(a) => write!(f, "{a}"),
            Peer::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

impl FromStr for Peer {
    type Err = std::net::AddrParseError;
    fn from_str(s: &str) -> Result<Peer, Self::Err> {
        match s.strip_prefix("tcp:") {
            Some(a) => a.parse().map(Peer::Tcp),
            None => s.parse().map(Peer::Udp),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_written_as_it_is_parsed() {
        let udp = Peer::Udp("192.0.2.1:5000".parse().unwrap());
        let tcp = Peer::Tcp("[2001:db8::1]:6000".parse().unwrap());
        assert_eq!(udp.to_string(), "192.0.2.1:5000");
        assert_eq!(tcp.to_string(), "tcp:[2001:db8::1]:6000");
        assert_eq!("192.0.2.1:5000".parse::<Peer>(), Ok(udp));
        assert_eq!("tcp:[2001:db8::1]:6000".parse::<Peer>(), Ok(tcp));
        assert_eq!(udp.addr(), "192.0.2.1:5000".parse().unwrap());
        assert_eq!(tcp.addr(), "[2001:db8::1]:6000".parse().unwrap());
        assert!(tcp.is_tcp() && !udp.is_tcp());
    }

    #[test]
    fn a_peer_without_a_port_or_with_another_prefix_is_refused() {
        for bad in [
            "192.0.2.1",
            "udp:192.0.2.1:5000",
            "tcp:",
            "tcp:tcp:192.0.2.1:5000",
            "",
        ] {
            assert!(bad.parse::<Peer>().is_err(), "{bad:?}");
        }
    }
}
