// SPDX-License-Identifier: MPL-2.0

//! `session-sink`'s control state, owned by its control thread: the protocol's
//! [`Server`], the TCP connections, the ENDs going out and the timers. Each turn takes the
//! datagrams and [`ToControl`] messages that arrived and the time, and hands back
//! [`Action`]s for the element to carry out (signals, repair requests, bus messages) with no
//! lock held. It calls nothing in the element, so it runs on a clock the caller gives.
//!
//! Other threads lock it only for what must be answered at once: the `stats` property, the
//! `remove-client` action, a channel's change (which gives its pad the key to seal with
//! before data flows) or release, and the element's stop (after the thread ended). Lock order: the element's `started`, then this, then `snapshot`.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fanout_session::seal::Sealer;
use fanout_session::{
    Event, JoinRequest, Mono, Now, Peer, Reason, RemoveReason, RepairTo, Server, Transmit,
};

use super::hold::Opened;
use super::shared::{
    BlockSent, Destination, Shared, Snapshot, TcpFrame, ToControl, MAX_TCP_FRAMES_WAITING,
};
use super::tcp::{self, Conn};
use super::CAT;
use crate::sendqueue::Frame;
use crate::tick;
use crate::udp_fanout::{Target, Targets};
use fanout_fec::sizing;

/// END is not acknowledged: sent this many times, this far apart.
pub(super) const END_REPEATS: u32 = 5;
pub(super) const END_SPACING: Duration = Duration::from_millis(30);
pub(super) const STATS_INTERVAL: Duration = fanout_element_kit::stats::STATS_INTERVAL;
/// A channel that sent nothing for this long tells its receivers it is there (CHANNEL).
pub(super) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);

/// A channel as the control thread sees it each turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ChannelView {
    pub index: u16,
    pub group: Option<std::net::SocketAddr>,
    pub ended: bool,
    /// Buffers taken so far (a channel with none since the last look is quiet).
    pub buffers: u64,
    /// Packets for everyone sent so far: what earns the channel its repair budget.
    pub stream_packets: u64,
}

/// What the element does after a turn, outside the control lock.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Action {
    /// `client-added`.
    Added(Peer),
    /// `client-removed`.
    Removed(Peer, RemoveReason),
    /// A `fanout-repair-request` up the channel's pad.
    Repair {
        channel: u16,
        flow: u32,
        block: u64,
        count: u32,
        to: Destination,
    },
    /// An empty DATA to the channel's group, which has been quiet.
    GroupKeepalive(u16),
    /// `wait-for-clients` let the data go.
    HoldOpened(Opened),
    /// Every channel ended and its receivers were told: EOS on the bus.
    Eos,
    /// The stats are due on the bus.
    PostStats,
}

/// A JOIN of a receiver not in yet: the application decides (`client-joining`) with no lock
/// held, then [`Control::decide`].
pub(super) struct Ask {
    pub from: Peer,
    pub token: String,
    req: JoinRequest,
}

struct PendingEnd {
    channel: u16,
    at: Instant,
    left: u32,
}

pub(super) struct Control {
    pub server: Server,
    rx: Receiver<ToControl>,
    /// `None` once closing.
    tcp_frames: Option<Receiver<TcpFrame>>,
    listener: Option<TcpListener>,
    conns: HashMap<SocketAddr, Arc<Conn>>,
    tcp_threads: Vec<JoinHandle<()>>,
    ends: Vec<PendingEnd>,
    /// The server's generation the snapshot was built from.
    generation: Option<u64>,
    buffers_seen: HashMap<u16, u64>,
    next_keepalive: Instant,
    next_stats: Instant,
    eos_posted: bool,
}

/// The server's time at `now`: since its start, and since the Unix epoch (cookies, a
/// receiver's "stay until"), both on the element's time line.
pub(super) fn server_now(shared: &Shared, now: Instant) -> Now {
    Now {
        mono: Mono::ZERO + now.saturating_duration_since(shared.start),
        unix: shared.time.unix_at(now),
    }
}

impl Control {
    pub fn new(
        server: Server,
        rx: Receiver<ToControl>,
        tcp_frames: Receiver<TcpFrame>,
        listener: Option<TcpListener>,
        now: Instant,
    ) -> Control {
        Control {
            server,
            rx,
            tcp_frames: Some(tcp_frames),
            listener,
            conns: HashMap::new(),
            tcp_threads: Vec::new(),
            ends: Vec::new(),
            generation: None,
            buffers_seen: HashMap::new(),
            next_keepalive: now + KEEPALIVE_INTERVAL,
            next_stats: now + STATS_INTERVAL,
            eos_posted: false,
        }
    }

    /// How long the control thread may wait for a datagram before its next timer: a
    /// gathering round closes on time, not a tick late; so does an END go out.
    #[must_use]
    pub fn poll_timeout(&self, shared: &Shared, now: Instant) -> Duration {
        let mut w = tick::until(self.server.poll_timeout(), server_now(shared, now).mono);
        if let Some(end) = self.ends.iter().map(|e| e.at).min() {
            w = w.min(
                end.saturating_duration_since(now)
                    .max(Duration::from_millis(1)),
            );
        }
        w
    }

    /// One message from a receiver, by UDP or TCP. A refresh (or a new handshake) of a
    /// receiver already in keeps it without asking again; a new receiver's JOIN is asked.
    pub fn take(&mut self, shared: &Shared, now: Instant, from: Peer, data: &[u8]) -> Option<Ask> {
        let t = server_now(shared, now);
        let req = match from {
            Peer::Udp(a) => self.server.handle_datagram(t, a, data),
            Peer::Tcp(a) => self.server.handle_stream(t, a, data),
        }?;
        if self.server.has(from) {
            self.server.accept(t, req);
            return None;
        }
        let token = String::from_utf8_lossy(&req.token).into_owned();
        Some(Ask { from, token, req })
    }

    /// The application's answer to an [`Ask`].
    pub fn decide(&mut self, shared: &Shared, now: Instant, ask: Ask, allowed: bool) {
        if allowed {
            self.server.accept(server_now(shared, now), ask.req);
        } else {
            self.server.refuse(ask.req, Reason::NotAuthorized, "");
        }
    }

    /// What the other threads told: TCP frames (which may ask; a turn takes at most
    /// [`MAX_TCP_FRAMES_WAITING`], so timers keep their time), closed connections, ended
    /// channels, failing receivers.
    pub fn take_messages(&mut self, shared: &Shared, now: Instant) -> Vec<Ask> {
        let mut asks = Vec::new();
        while let Ok(m) = self.rx.try_recv() {
            match m {
                ToControl::Closed(peer) => {
                    self.conns.remove(&peer);
                    self.server.connection_closed(peer);
                }
                ToControl::Ended(channel) => self.ends.push(PendingEnd {
                    channel,
                    at: now,
                    left: END_REPEATS,
                }),
                ToControl::Evict(ids) => {
                    for id in ids {
                        self.server.remove(id, RemoveReason::Evicted);
                    }
                }
                ToControl::Sent(b) => self.top_up(shared, now, b),
            }
        }
        let frames: Vec<TcpFrame> = match &self.tcp_frames {
            Some(rx) => rx.try_iter().take(MAX_TCP_FRAMES_WAITING).collect(),
            None => Vec::new(),
        };
        for f in frames {
            // What a connection sent before it closed is not taken after; a connection
            // not in yet is asked about once a turn, whatever it repeats meanwhile.
            let asked = asks.iter().any(|a: &Ask| a.from == Peer::Tcp(f.from));
            if self.conns.contains_key(&f.from) && !asked {
                asks.extend(self.take(shared, now, Peer::Tcp(f.from), &f.data));
            }
        }
        asks
    }

    /// Repair up front, with a block, for each unicast receiver of its channel that told a
    /// loss, and for its group by what its members told: what, with the block's own
    /// symbols, arrives at that loss in `top-up-confidence` cases of 100.
    fn top_up(&mut self, shared: &Shared, now: Instant, b: BlockSent) {
        let t = server_now(shared, now);
        let needed = b.k.saturating_add(b.margin);
        let confidence = self.server.config().top_up_confidence;
        let want = |loss| sizing::to_ask_with(needed, loss, confidence);
        self.server
            .top_up_block(t, (b.channel, b.flow, b.block), b.symbols, want);
    }

    /// Takes the TCP connections waiting, if listening.
    pub fn accept_tcp(&mut self, element: &gst::Element, shared: &Arc<Shared>) {
        if let Some(listener) = &self.listener {
            tcp::accept(
                element,
                listener,
                &mut self.conns,
                &mut self.tcp_threads,
                shared,
            );
        }
    }

    /// Everything but receiving: timers, ENDs, replies, the snapshot, keepalives, the hold,
    /// the end of the stream and stats.
    pub fn service(
        &mut self,
        element: &gst::Element,
        shared: &Shared,
        now: Instant,
        channels: &[ChannelView],
    ) -> Vec<Action> {
        let t = server_now(shared, now);
        for c in channels {
            self.server.note_sent(c.index, c.stream_packets);
        }
        if self.server.poll_timeout().is_some_and(|d| d <= t.mono) {
            self.server.handle_timeout(t);
        }
        for e in self.ends.iter_mut().filter(|e| e.at <= now) {
            self.server.end_channel(e.channel);
            e.left -= 1;
            e.at = now + END_SPACING;
        }
        self.ends.retain(|e| e.left > 0);
        let mut actions = Vec::new();
        if now >= self.next_keepalive {
            self.next_keepalive = now + KEEPALIVE_INTERVAL;
            self.keep_quiet_channels_alive(channels, &mut actions);
        }
        if self.generation != Some(self.server.generation()) {
            self.generation = Some(self.server.generation());
            let old = shared.snapshot();
            *shared.snapshot.lock().unwrap() = Arc::new(self.rebuild(channels, &old));
        }
        while let Some(tx) = self.server.poll_transmit() {
            self.deliver(element, shared, tx);
        }
        while let Some(e) = self.server.poll_event() {
            actions.extend(self.act_on(shared, e));
        }
        if shared.hold.is_waiting() {
            actions.extend(
                shared
                    .hold
                    .check(self.server.client_count(), now)
                    .map(Action::HoldOpened),
            );
        }
        let all_ended = channels.iter().all(|c| c.ended);
        if !all_ended {
            self.eos_posted = false;
        } else if !self.eos_posted && self.ends.is_empty() && !channels.is_empty() {
            self.eos_posted = true;
            actions.push(Action::Eos);
        }
        if now >= self.next_stats {
            self.next_stats += STATS_INTERVAL;
            actions.push(Action::PostStats);
        }
        actions
    }

    /// Receivers of a channel with no buffer since the last look (a delayed output not
    /// started yet, a hold) hear CHANNEL instead, and keep their sessions without a new
    /// handshake; its multicast group hears an empty DATA, so receivers see the group works.
    fn keep_quiet_channels_alive(&mut self, channels: &[ChannelView], actions: &mut Vec<Action>) {
        for c in channels {
            let before = self.buffers_seen.insert(c.index, c.buffers);
            if before == Some(c.buffers) && !c.ended {
                self.server.keepalive(c.index);
                if c.group.is_some() {
                    actions.push(Action::GroupKeepalive(c.index));
                }
            }
        }
    }

    fn act_on(&mut self, shared: &Shared, e: Event) -> Option<Action> {
        match e {
            Event::Added { peer, .. } => {
                if let Some(c) = self.tcp_conn(peer) {
                    c.joined.store(true, Ordering::Relaxed);
                }
                Some(Action::Added(peer))
            }
            Event::Removed { peer, reason, .. } => {
                if let Peer::Tcp(a) = peer {
                    if let Some(c) = self.conns.remove(&a) {
                        c.close(shared);
                    }
                }
                Some(Action::Removed(peer, reason))
            }
            Event::Repair {
                to: RepairTo::Group,
                channel,
                flow,
                block,
                count,
            } => Some(Action::Repair {
                channel,
                flow,
                block,
                count,
                to: Destination::Group,
            }),
            Event::Repair {
                to: RepairTo::Receiver(id),
                channel,
                flow,
                block,
                count,
            } => {
                let snapshot = shared.snapshot();
                let stats = match snapshot.by_id.get(&id) {
                    Some(t) => &t.stats,
                    None => &snapshot.conns.get(&id)?.1.stats,
                };
                // Credit for what a refused request (unknown block) never used does not
                // pile up past one burst.
                let burst = u64::from(self.server.config().repair_burst);
                let _ =
                    stats
                        .repair_credit
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                            Some(c.saturating_add(u64::from(count)).min(burst.max(1)))
                        });
                Some(Action::Repair {
                    channel,
                    flow,
                    block,
                    count,
                    to: Destination::Receiver(id),
                })
            }
        }
    }

    fn tcp_conn(&self, peer: Peer) -> Option<&Arc<Conn>> {
        match peer {
            Peer::Tcp(a) => self.conns.get(&a),
            Peer::Udp(_) => None,
        }
    }

    fn deliver(&self, element: &gst::Element, shared: &Shared, tx: Transmit) {
        match tx.to {
            Peer::Udp(a) => {
                if let Err(e) = shared.socket.send_to(&tx.data, a) {
                    gst::debug!(CAT, obj = element, "reply to {a}: {e}");
                }
            }
            Peer::Tcp(a) => {
                let conn = self.conns.get(&a);
                if let (Some(c), Some(f)) = (conn, fanout_session::frame(&[&tx.data])) {
                    let open = !c.queue.is_closed();
                    c.queue.push(Frame::Control(f));
                    if open && c.queue.is_closed() {
                        gst::debug!(
                            CAT,
                            obj = element,
                            "tcp:{a}: does not read its answers: closed"
                        );
                    }
                }
            }
        }
    }

    fn rebuild(&self, channels: &[ChannelView], old: &Snapshot) -> Snapshot {
        let server = &self.server;
        let mut snap = Snapshot::default();
        let mut unicast: HashMap<u16, Vec<Arc<Target>>> = HashMap::new();
        let mut clients: Vec<(u64, Peer)> = server.clients().collect();
        // In join order: sends then walk the kernel's sockets in a steady order.
        clients.sort_unstable();
        for (id, peer) in clients {
            let multicast = server.is_multicast(id);
            let conn = match peer {
                Peer::Tcp(a) => match self.conns.get(&a) {
                    Some(c) => Some(c.clone()),
                    // Closed meanwhile: taken out at the next turn.
                    None => continue,
                },
                Peer::Udp(_) => None,
            };
            let target = match &conn {
                Some(c) => Arc::new(Target {
                    id,
                    addr: c.peer,
                    stats: c.stats.clone(),
                }),
                None => old.by_id.get(&id).cloned().unwrap_or_else(|| {
                    Arc::new(Target {
                        id,
                        addr: peer.addr(),
                        stats: Arc::default(),
                    })
                }),
            };
            for &c in server.channels_of(id) {
                snap.members.entry(c).or_default().insert(id);
                if multicast && server.group_of(c).is_some() {
                    continue;
                }
                match &conn {
                    Some(conn) => snap.tcp.entry(c).or_default().push(conn.clone()),
                    None => unicast.entry(c).or_default().push(target.clone()),
                }
            }
            match conn {
                Some(conn) => {
                    snap.conns.insert(id, (conn, target));
                }
                None => {
                    snap.by_id.insert(id, target);
                }
            }
        }
        snap.channels = unicast
            .into_iter()
            .map(|(c, list)| (c, Targets::new(list)))
            .collect();
        for c in channels {
            let Some(group) = c.group else { continue };
            let target = Target {
                id: 0,
                addr: group,
                stats: Arc::default(),
            };
            snap.groups
                .insert(c.index, Targets::new(vec![Arc::new(target)]));
        }
        snap
    }

    /// Tells the server of a channel, and gives back the key its data is sealed with.
    pub fn set_channel(
        &mut self,
        index: u16,
        name: &str,
        caps: &str,
        group: Option<SocketAddr>,
    ) -> Option<Arc<Sealer>> {
        self.server.set_channel(index, name, caps, group);
        // The snapshot's groups follow at the next turn.
        self.generation = None;
        self.server.sealer(index)
    }

    /// `remove-client`: false if no receiver has that address.
    pub fn remove_client(&mut self, peer: Peer) -> bool {
        let id = self
            .server
            .clients()
            .find(|(_, a)| *a == peer)
            .map(|(id, _)| id);
        id.is_some_and(|id| self.server.remove(id, RemoveReason::Removed))
    }

    pub fn tcp_connections(&self) -> usize {
        self.conns.len()
    }

    /// Closes every connection and waits for their threads (the element stops).
    pub fn close(&mut self, shared: &Shared) {
        // Readers waiting to hand a frame over let go.
        self.tcp_frames = None;
        for c in self.conns.values() {
            c.close(shared);
        }
        for t in self.tcp_threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    //! The control state on a clock the test drives; its datagrams go over loopback to a
    //! receiver run by the protocol's own client.
    use super::*;
    use crate::sessionsink::hold::Hold;
    use crate::sessionsink::shared::GroupSettings;
    use fanout_session::message::{parse, Datagram, Message};
    use fanout_session::{Client, ClientConfig, ServerConfig, Stay};
    use std::net::UdpSocket;
    use std::sync::mpsc;

    const MS: Duration = Duration::from_millis(1);

    struct Rig {
        control: Control,
        shared: Arc<Shared>,
        element: gst::Element,
        client: Client,
        socket: UdpSocket,
        t0: Instant,
    }

    impl Rig {
        fn new(wait_for: u32) -> Rig {
            gst::init().unwrap();
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            let (tx, rx) = mpsc::channel();
            let (frames_tx, frames_rx) = mpsc::sync_channel(MAX_TCP_FRAMES_WAITING);
            let time = Arc::new(crate::timebase::Timebase::default());
            let hold = Hold::new(wait_for, 0, time.now());
            let shared = Arc::new(Shared::new(
                time,
                Arc::new(socket),
                false,
                GroupSettings {
                    ttl: 1,
                    iface: crate::multicast::iface("").unwrap(),
                    looped: false,
                    gso: false,
                },
                hold,
                16,
                1 << 16,
                tx,
                frames_tx,
            ));
            let t0 = shared.start;
            let listener = super::super::tcp::listen("127.0.0.1:0".parse().unwrap()).unwrap();
            let mut control = Control::new(
                Server::new(ServerConfig::new(vec![7; 32])),
                rx,
                frames_rx,
                Some(listener),
                t0,
            );
            control.set_channel(0, "a", "video/mpegts", None);
            let client_socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            client_socket.set_read_timeout(Some(100 * MS)).unwrap();
            let cfg = ClientConfig {
                channels: vec!["a".into()],
                stay: Stay::For(30_000_000_000),
                idle_rejoin: Duration::MAX,
                ..ClientConfig::default()
            };
            Rig {
                control,
                shared,
                element: gst::ElementFactory::make("identity").build().unwrap(),
                client: Client::new(cfg, Mono::ZERO, 1),
                socket: client_socket,
                t0,
            }
        }

        fn channels(&self, ended: bool, buffers: u64) -> Vec<ChannelView> {
            vec![ChannelView {
                index: 0,
                group: None,
                ended,
                buffers,
                stream_packets: buffers,
            }]
        }

        /// One turn at `at` after the start: what the receiver sent goes in first.
        fn turn(&mut self, at: Duration, channels: &[ChannelView]) -> Vec<Action> {
            let now = self.t0 + at;
            let from = Peer::Udp(self.socket.local_addr().unwrap());
            while let Some(d) = self.client.poll_transmit() {
                if let Some(ask) = self.control.take(&self.shared, now, from, &d) {
                    self.control.decide(&self.shared, now, ask, true);
                }
            }
            for ask in self.control.take_messages(&self.shared, now) {
                self.control.decide(&self.shared, now, ask, true);
            }
            self.control
                .service(&self.element, &self.shared, now, channels)
        }

        /// What reached the receiver, as messages (the client takes them in too).
        fn received(&mut self, at: Duration) -> Vec<Message> {
            let mut out = Vec::new();
            self.socket.set_nonblocking(true).unwrap();
            let mut buf = [0u8; 2048];
            // Loopback delivers at once; a short grace for a busy machine.
            std::thread::sleep(5 * MS);
            while let Ok(n) = self.socket.recv(&mut buf) {
                if let Ok(Datagram::Control(m)) = parse(&buf[..n]) {
                    out.push(m);
                }
                self.client.handle_datagram(Mono::ZERO + at, &mut buf[..n]);
            }
            out
        }

        fn join(&mut self) {
            for step in 0..4 {
                let at = Duration::from_millis(step);
                self.turn(at, &self.channels(false, 0));
                self.received(at);
            }
            assert_eq!(self.control.server.client_count(), 1, "joined");
        }
    }

    fn ends(m: &[Message]) -> usize {
        m.iter()
            .filter(|m| matches!(m, Message::End { .. }))
            .count()
    }

    #[test]
    fn an_end_goes_out_five_times_30_ms_apart_then_the_bus_hears_eos() {
        let mut rig = Rig::new(0);
        rig.join();
        let start = 10 * MS;
        rig.shared.tell(ToControl::Ended(0));
        let ended = rig.channels(true, 0);
        let mut told = Vec::new();
        // Every 10 ms for 200 ms: ENDs at 0, 30, 60, 90 and 120 ms, EOS with the last.
        for step in 0..20u32 {
            let at = start + step * 10 * MS;
            let actions = rig.turn(at, &ended);
            let n = ends(&rig.received(at));
            if n > 0 {
                told.push((step * 10, n));
            }
            assert_eq!(
                actions.contains(&Action::Eos),
                step == 12,
                "EOS once, after the last END ({step})"
            );
        }
        assert_eq!(told, [(0, 1), (30, 1), (60, 1), (90, 1), (120, 1)]);
    }

    #[test]
    fn a_quiet_channel_says_channel_each_second_a_busy_one_does_not() {
        let mut rig = Rig::new(0);
        rig.join();
        let channel_msgs = |m: &[Message]| {
            m.iter()
                .filter(|m| matches!(m, Message::Channel { .. }))
                .count()
        };
        // First look at 1 s; quiet since then at 2 s: CHANNEL.
        rig.turn(Duration::from_secs(1), &rig.channels(false, 5));
        assert_eq!(channel_msgs(&rig.received(Duration::from_secs(1))), 0);
        rig.turn(Duration::from_millis(1500), &rig.channels(false, 5));
        assert_eq!(
            channel_msgs(&rig.received(Duration::from_millis(1500))),
            0,
            "not due"
        );
        rig.turn(Duration::from_secs(2), &rig.channels(false, 5));
        assert_eq!(channel_msgs(&rig.received(Duration::from_secs(2))), 1);
        // Data flowed meanwhile: nothing to say.
        rig.turn(Duration::from_secs(3), &rig.channels(false, 9));
        assert_eq!(channel_msgs(&rig.received(Duration::from_secs(3))), 0);
    }

    #[test]
    fn stats_are_due_once_a_second_on_the_clock_given() {
        let mut rig = Rig::new(0);
        let quiet = rig.channels(false, 0);
        let posts = |a: &[Action]| a.iter().filter(|a| **a == Action::PostStats).count();
        assert_eq!(posts(&rig.turn(999 * MS, &quiet)), 0);
        assert_eq!(posts(&rig.turn(1000 * MS, &quiet)), 1);
        assert_eq!(posts(&rig.turn(1500 * MS, &quiet)), 0);
        assert_eq!(posts(&rig.turn(2000 * MS, &quiet)), 1);
    }

    #[test]
    fn the_hold_opens_with_the_receiver_it_waited_for() {
        let mut rig = Rig::new(1);
        let quiet = rig.channels(false, 0);
        assert!(!rig
            .turn(Duration::ZERO, &quiet)
            .iter()
            .any(|a| matches!(a, Action::HoldOpened(_))));
        let mut opened = Vec::new();
        let mut added = Vec::new();
        for step in 1..5 {
            let at = Duration::from_millis(step);
            for a in rig.turn(at, &quiet) {
                match a {
                    Action::HoldOpened(o) => opened.push(o),
                    Action::Added(p) => added.push(p),
                    _ => (),
                }
            }
            rig.received(at);
        }
        assert_eq!(added.len(), 1);
        assert_eq!(opened, [Opened::Joined { want: 1 }]);
        assert!(!rig.shared.hold.is_waiting());
    }

    #[test]
    fn a_tcp_connection_repeating_its_join_is_asked_about_once_a_turn() {
        let mut rig = Rig::new(0);
        let addr = rig.control.listener.as_ref().unwrap().local_addr().unwrap();
        let _peer = std::net::TcpStream::connect(addr).unwrap();
        let start = Instant::now();
        while rig.control.tcp_connections() == 0 && start.elapsed() < Duration::from_secs(10) {
            rig.control.accept_tcp(&rig.element, &rig.shared);
            std::thread::sleep(MS);
        }
        let from = *rig.control.conns.keys().next().expect("accepted");
        let mut client = Client::new_stream(
            ClientConfig {
                channels: vec!["a".into()],
                ..ClientConfig::default()
            },
            Mono::ZERO,
            1,
        );
        let join = client.poll_transmit().unwrap();
        for _ in 0..20 {
            assert!(rig.shared.tcp_frame(TcpFrame {
                from,
                data: join.clone(),
            }));
        }
        let asks = rig.control.take_messages(&rig.shared, rig.t0);
        assert_eq!(asks.len(), 1, "one ask for one connection");
        assert_eq!(asks[0].from, Peer::Tcp(from));
        // Its frames after it closed are not taken.
        let conn = rig.control.conns[&from].clone();
        conn.close(&rig.shared);
        assert!(rig.shared.tcp_frame(TcpFrame { from, data: join }));
        assert!(rig.control.take_messages(&rig.shared, rig.t0).is_empty());
        rig.control.close(&rig.shared);
    }
}
