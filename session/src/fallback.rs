// SPDX-License-Identifier: MPL-2.0

//! Which way packets come from a server, and when to try the next: multicast, then UDP
//! unicast, then TCP, each given a time to deliver a first packet.

use std::collections::VecDeque;
use std::time::Duration;

use fanout_wire::time::Mono;

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
    timeout: Duration,
    since: Mono,
    delivered: bool,
    /// Changes so far: (transport now used, why).
    pub changes: Vec<(Transport, Why)>,
    /// Changes not taken by [`Fallback::poll_change`] yet.
    pending: VecDeque<(Transport, Why)>,
}

impl Fallback {
    /// `auto` starts with multicast and falls back; otherwise `first` is kept.
    pub fn new(first: Transport, auto: bool, timeout: Duration, now: Mono) -> Fallback {
        Fallback {
            current: if auto { Transport::Multicast } else { first },
            auto,
            timeout,
            since: now,
            delivered: false,
            changes: Vec::new(),
            pending: VecDeque::new(),
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
    /// Moves on to UDP at once if nothing came from a group yet ([`Self::poll_change`]).
    pub fn no_group(&mut self, now: Mono) {
        if self.current == Transport::Multicast && !self.delivered {
            self.switch(now, Why::NoGroup);
        }
    }

    /// Moves on to the next transport if the current one stayed silent too long
    /// ([`Self::poll_change`] tells which); calling it earlier does nothing.
    pub fn handle_timeout(&mut self, now: Mono) {
        let silent = now.saturating_duration_since(self.since);
        if !self.auto || self.delivered || silent < self.timeout {
            return;
        }
        self.switch(now, Why::Silent);
    }

    /// The next change of transport to make, and why.
    pub fn poll_change(&mut self) -> Option<(Transport, Why)> {
        self.pending.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) next needs calling: when the current
    /// transport will have been silent for the fallback timeout. `None` once something came
    /// over it, without `transport=auto`, or over TCP, the last one.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Mono> {
        (self.auto && !self.delivered && self.current != Transport::Tcp)
            .then(|| self.since + self.timeout)
    }

    fn switch(&mut self, now: Mono, why: Why) {
        let Some(next) = self.current.next() else {
            return;
        };
        self.current = next;
        self.since = now;
        self.delivered = false;
        self.changes.push((next, why));
        self.pending.push_back((next, why));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ns: u64) -> Mono {
        Mono::from_nanos(ns)
    }

    /// A fallback timeout of 100 ns, from 0.
    fn fallback(first: Transport, auto: bool) -> Fallback {
        Fallback::new(first, auto, Duration::from_nanos(100), Mono::ZERO)
    }

    /// The transport a timeout at `now` changes to.
    fn poll(f: &mut Fallback, now: Mono) -> Option<Transport> {
        f.handle_timeout(now);
        let change = f.poll_change();
        assert_eq!(f.poll_change(), None, "one change at a time");
        change.map(|(t, why)| {
            assert_eq!(why, Why::Silent);
            t
        })
    }

    /// The transport a JOINED without a group at `now` changes to.
    fn no_group(f: &mut Fallback, now: Mono) -> Option<Transport> {
        f.no_group(now);
        f.poll_change().map(|(t, why)| {
            assert_eq!(why, Why::NoGroup);
            t
        })
    }

    #[test]
    fn auto_goes_multicast_udp_tcp_while_nothing_arrives() {
        let mut f = fallback(Transport::Udp, true);
        assert_eq!(f.current(), Transport::Multicast);
        assert_eq!(poll(&mut f, at(99)), None);
        assert_eq!(poll(&mut f, at(100)), Some(Transport::Udp));
        assert_eq!(f.poll_timeout(), Some(at(200)));
        f.came_over(Transport::Multicast); // late, from the group left
        assert_eq!(poll(&mut f, at(200)), Some(Transport::Tcp));
        assert_eq!(poll(&mut f, at(10_000)), None);
        assert_eq!(f.poll_timeout(), None);
        assert_eq!(
            f.changes,
            vec![(Transport::Udp, Why::Silent), (Transport::Tcp, Why::Silent)]
        );
    }

    #[test]
    fn an_answer_proves_udp_and_tcp_but_not_a_group() {
        let mut f = fallback(Transport::Udp, true);
        f.answered();
        assert_eq!(
            poll(&mut f, at(100)),
            Some(Transport::Udp),
            "a JOINED is not group data"
        );
        f.answered();
        assert_eq!(poll(&mut f, at(10_000)), None);
        assert_eq!(f.current(), Transport::Udp);
    }

    #[test]
    fn a_transport_that_delivered_is_kept() {
        let mut f = fallback(Transport::Udp, true);
        f.came_over(Transport::Multicast);
        assert_eq!(poll(&mut f, at(1_000_000)), None);
        assert_eq!(f.current(), Transport::Multicast);
    }

    #[test]
    fn no_group_moves_to_udp_at_once_and_fixed_transports_stay() {
        let mut f = fallback(Transport::Udp, true);
        assert_eq!(no_group(&mut f, at(5)), Some(Transport::Udp));
        assert_eq!(no_group(&mut f, at(6)), None);
        let mut f = fallback(Transport::Multicast, false);
        assert_eq!(poll(&mut f, at(1_000)), None);
        assert_eq!(f.current(), Transport::Multicast);
    }
}
