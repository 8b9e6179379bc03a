// SPDX-License-Identifier: MPL-2.0

//! Which way packets come from a server, and when to try the next: multicast, then UDP
//! unicast, then TCP, each given a time to deliver a first packet.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Transport {
    Multicast,
    Udp,
    Tcp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Multicast => "multicast",
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }

    fn next(self) -> Option<Transport> {
        match self {
            Transport::Multicast => Some(Transport::Udp),
            Transport::Udp => Some(Transport::Tcp),
            Transport::Tcp => None,
        }
    }
}

/// Why the transport changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Nothing arrived within the timeout.
    Silent,
    /// The server offers no multicast group for the channels joined.
    NoGroup,
}

impl Why {
    pub fn as_str(self) -> &'static str {
        match self {
            Why::Silent => "nothing arrived within fallback-timeout",
            Why::NoGroup => "the server has no multicast group for these channels",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Fallback {
    current: Transport,
    /// Try the next transport when this one is silent (`transport=auto`).
    auto: bool,
    timeout: u64,
    since: u64,
    delivered: bool,
    /// Changes so far: (transport now used, why).
    pub changes: Vec<(Transport, Why)>,
}

impl Fallback {
    /// `auto` starts with multicast and falls back; otherwise `first` is kept.
    pub fn new(first: Transport, auto: bool, timeout: u64, now: u64) -> Fallback {
        Fallback {
            current: if auto { Transport::Multicast } else { first },
            auto,
            timeout,
            since: now,
            delivered: false,
            changes: Vec::new(),
        }
    }

    pub fn current(&self) -> Transport {
        self.current
    }

    /// Whether a packet came the current way yet.
    pub fn delivered(&self) -> bool {
        self.delivered
    }

    /// Something came over `t`: a packet, or (for UDP and TCP, which carry the session
    /// itself) the server's answer.
    pub fn came_over(&mut self, t: Transport) {
        if t == self.current {
            self.delivered = true;
        }
    }

    /// The server answered (JOINED). Over UDP or TCP, which carry the session, that proves
    /// the way works both ways: an idle stream is no reason to move on. A group has to
    /// prove itself with data.
    pub fn answered(&mut self) {
        if self.current != Transport::Multicast {
            self.delivered = true;
        }
    }

    /// A JOINED named no group: with multicast asked for, the server sends unicast copies.
    pub fn no_group(&mut self, now: u64) -> Option<Transport> {
        if self.current == Transport::Multicast && !self.delivered {
            return self.switch(now, Why::NoGroup);
        }
        None
    }

    /// The transport to change to, when the current one stayed silent too long.
    pub fn poll(&mut self, now: u64) -> Option<Transport> {
        if !self.auto || self.delivered || now.saturating_sub(self.since) < self.timeout {
            return None;
        }
        self.switch(now, Why::Silent)
    }

    pub fn next_timeout(&self) -> Option<u64> {
        (self.auto && !self.delivered && self.current != Transport::Tcp)
            .then(|| self.since.saturating_add(self.timeout))
    }

    fn switch(&mut self, now: u64, why: Why) -> Option<Transport> {
        let next = self.current.next()?;
        self.current = next;
        self.since = now;
        self.delivered = false;
        self.changes.push((next, why));
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_goes_multicast_udp_tcp_while_nothing_arrives() {
        let mut f = Fallback::new(Transport::Udp, true, 100, 0);
        assert_eq!(f.current(), Transport::Multicast);
        assert_eq!(f.poll(99), None);
        assert_eq!(f.poll(100), Some(Transport::Udp));
        assert_eq!(f.next_timeout(), Some(200));
        f.came_over(Transport::Multicast); // late, from the group left
        assert_eq!(f.poll(200), Some(Transport::Tcp));
        assert_eq!(f.poll(10_000), None);
        assert_eq!(f.next_timeout(), None);
        assert_eq!(
            f.changes,
            vec![(Transport::Udp, Why::Silent), (Transport::Tcp, Why::Silent)]
        );
    }

    #[test]
    fn an_answer_proves_udp_and_tcp_but_not_a_group() {
        let mut f = Fallback::new(Transport::Udp, true, 100, 0);
        f.answered();
        assert_eq!(
            f.poll(100),
            Some(Transport::Udp),
            "a JOINED is not group data"
        );
        f.answered();
        assert_eq!(f.poll(10_000), None);
        assert_eq!(f.current(), Transport::Udp);
    }

    #[test]
    fn a_transport_that_delivered_is_kept() {
        let mut f = Fallback::new(Transport::Udp, true, 100, 0);
        f.came_over(Transport::Multicast);
        assert_eq!(f.poll(1_000_000), None);
        assert_eq!(f.current(), Transport::Multicast);
    }

    #[test]
    fn no_group_moves_to_udp_at_once_and_fixed_transports_stay() {
        let mut f = Fallback::new(Transport::Udp, true, 100, 0);
        assert_eq!(f.no_group(5), Some(Transport::Udp));
        assert_eq!(f.no_group(6), None);
        let mut f = Fallback::new(Transport::Multicast, false, 100, 0);
        assert_eq!(f.poll(1_000), None);
        assert_eq!(f.current(), Transport::Multicast);
    }
}
