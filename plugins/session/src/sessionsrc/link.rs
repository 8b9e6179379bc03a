// SPDX-License-Identifier: MPL-2.0

//! One server's session in `session-src`: the way its packets come (a connected UDP socket,
//! multicast groups beside it, or a TCP connection), the [`Client`] state machine, delayed
//! loss reports, and `transport=auto`'s fallback. Runs on a thread of its own; each group
//! has a thread that only reads. What the element must hear of comes out as [`LinkEvent`]s,
//! handed to the function it gave; the link never calls into the element.
//!
//! Lock order: `session` only (one per server); events are handed out with it released.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::ops::{ControlFlow, Range};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fanout_element_kit::worker::{Stop, Turns, Worker};
use fanout_session::client;
use fanout_session::fallback::Why;
use fanout_session::frame::MAX_FRAME;
use fanout_session::message::{self, Datagram};
use fanout_session::{
    ChannelInfo, Client, ClientConfig, ClientEvent, Deframer, Fallback, LostEntry, Mono, Reason,
    Reports, Transport,
};
use gst::glib;
use gst::prelude::*;

use super::batch::{Batch, Spare};
use super::CAT;
use crate::gro;
use crate::multicast::{self, Iface};
use crate::tick::{self, TICK};
use crate::timebase::Timebase;
use fanout_element_kit::log_weak;

const TCP_RETRY: Duration = Duration::from_secs(1);
const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What a server's session tells the element.
#[derive(Debug)]
pub(super) enum LinkEvent {
    /// The server's channels, from a JOINED or a CHANNEL: pads for them.
    Channels {
        number: usize,
        channels: Vec<ChannelInfo>,
    },
    /// A JOINED: the first, or one after the server restarted.
    Joined { server: SocketAddr, again: bool },
    /// Packets of `channel` read together; `answer`s to a LOST go to whoever asked
    /// downstream.
    Data {
        number: usize,
        channel: u16,
        batch: Batch,
        answer: bool,
    },
    /// The server's stream of `channel` ended.
    Ended { number: usize, channel: u16 },
    Refused {
        number: usize,
        server: SocketAddr,
        reason: Reason,
        text: String,
    },
    /// No answer within `timeout` (said once until the next JOINED).
    Unreachable { server: SocketAddr },
    /// The server's data cannot be taken (passphrase, protection).
    Failed { server: SocketAddr, text: String },
    TransportChanged {
        server: SocketAddr,
        to: Transport,
        why: Why,
    },
    /// A group the server named cannot be joined.
    GroupUnavailable {
        server: SocketAddr,
        group: SocketAddr,
        error: String,
    },
    /// The session's thread went round once (about every tick): stats may be due.
    Turn,
}

/// Where the events go.
pub(super) type Events = Arc<dyn Fn(LinkEvent) + Send + Sync>;

/// How control messages leave.
enum Link {
    Udp(UdpSocket),
    Tcp(TcpStream),
    /// TCP connection being made.
    None,
}

impl Link {
    /// Sends one message. A TCP connection whose write failed (the server stopped reading
    /// for a second) is closed: a frame written in part would leave the server reading
    /// garbage. The session's thread sees it closed and connects again.
    fn send(&mut self, d: &[u8]) -> std::io::Result<()> {
        let sent = match self {
            Link::Udp(s) => s.send(d).map(drop),
            Link::Tcp(s) => match fanout_session::frame(&[d]) {
                Some(f) => s.write_all(&f),
                None => Ok(()),
            },
            Link::None => Ok(()),
        };
        if sent.is_err() {
            if let Link::Tcp(s) = self {
                let _ = s.shutdown(std::net::Shutdown::Both);
                *self = Link::None;
            }
        }
        sent
    }
}

/// What the thread reads from.
enum Input {
    /// The socket and its read timeout.
    Udp(UdpSocket, Duration),
    Tcp(TcpStream, Deframer),
    Connecting {
        at: Instant,
        /// Since when no connection was made: retries are eager at first.
        since: Instant,
    },
}

impl Input {
    /// Connecting from `now`, the first try `delay` later.
    fn connecting(now: Instant, delay: Duration) -> Input {
        Input::Connecting {
            at: now + delay,
            since: now,
        }
    }
}

/// A group joined, with its reading thread; owned by the session's thread.
struct Group {
    addr: SocketAddr,
    socket: Arc<UdpSocket>,
    reader: Worker,
}

/// One server's protocol state, under one lock.
pub(super) struct Session {
    pub client: Client,
    link: Link,
    pub reports: Reports,
    pub fallback: Fallback,
    /// The group of each of the server's channels (its index), from its last JOINED.
    group_of: HashMap<u16, SocketAddr>,
    /// Packets come from groups now: losses are reported after a back-off.
    from_groups: bool,
    /// A JOINED from this server was handled.
    joined_once: bool,
    unreachable_told: bool,
}

/// One server's session, between READY→PAUSED and PAUSED→READY.
pub(super) struct ServerLink {
    /// Its place in `host`.
    pub number: usize,
    pub server: SocketAddr,
    cfg: ClientConfig,
    pub session: Mutex<Session>,
    sockets: SocketSettings,
    pub group_datagrams: AtomicU64,
    /// UDP reads (a GRO read holds many datagrams).
    pub udp_reads: AtomicU64,
    /// The element's time line (see `crate::timebase`), and where on it this started.
    time: Arc<Timebase>,
    start: Instant,
    events: Events,
    element: glib::WeakRef<gst::Element>,
}

/// How a link makes its UDP sockets.
#[derive(Debug, Clone, Copy)]
pub(super) struct SocketSettings {
    pub iface: Iface,
    /// Ask for UDP GRO (see `crate::gro`).
    pub gro: bool,
}

fn udp_socket(server: SocketAddr, gro: bool) -> std::io::Result<UdpSocket> {
    let domain = socket2::Domain::for_address(server);
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    // A block arrives as a burst.
    let _ = s.set_recv_buffer_size(4 << 20);
    let any: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    s.bind(&any.into())?;
    s.connect(&server.into())?;
    let s: UdpSocket = s.into();
    s.set_read_timeout(Some(TICK))?;
    if gro {
        gro::enable(&s);
    }
    Ok(s)
}

fn seed() -> u64 {
    getrandom::u64().unwrap_or_else(|_| std::process::id().into())
}

impl Session {
    /// Sends whatever the client has to send.
    fn flush(&mut self, link: &ServerLink) {
        while let Some(d) = self.client.poll_transmit() {
            if let Err(e) = self.link.send(&d) {
                log_weak!(debug, CAT, link.element, "send to {}: {e}", link.server);
            }
        }
    }

    /// A data packet from the server, by any way: fallback and delayed reports learn of
    /// it, and the delayed reports due now go out: while packets come, they go out on time
    /// from whichever thread reads them, not when the session's thread next wakes.
    fn data(&mut self, link: &ServerLink, via: Transport, channel: u16, payload: &[u8]) {
        self.fallback.came_over(via);
        if !self.reports.is_waiting() {
            return;
        }
        if let Ok(fanout_fec::packet::Packet::Symbol { header, .. }) =
            fanout_fec::packet::parse(payload)
        {
            self.reports.symbol(channel, header.flow, header.block);
        }
        self.send_due_reports(link);
    }

    /// The delayed reports whose back-off is over.
    fn send_due_reports(&mut self, link: &ServerLink) {
        self.reports.handle_timeout(link.now());
        let due: Vec<LostEntry> = std::iter::from_fn(|| self.reports.poll_report()).collect();
        self.send_reports(link, &due);
    }

    fn send_reports(&mut self, link: &ServerLink, due: &[LostEntry]) {
        if !due.is_empty() {
            self.client.report_lost(due);
            self.flush(link);
        }
    }
}

impl ServerLink {
    /// Opens the first transport's socket and starts the session's thread.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        element: &gst::Element,
        time: Arc<Timebase>,
        number: usize,
        server: SocketAddr,
        cfg: ClientConfig,
        fallback: Fallback,
        sockets: SocketSettings,
        events: Events,
    ) -> std::io::Result<(Arc<ServerLink>, Worker)> {
        let first = fallback.current();
        let (link, input, client) = match first {
            Transport::Tcp => (
                Link::None,
                Input::connecting(time.now(), Duration::ZERO),
                Client::new_stream(cfg.clone(), Mono::ZERO, seed()),
            ),
            Transport::Multicast | Transport::Udp => {
                let socket = udp_socket(server, sockets.gro)?;
                let mc = ClientConfig {
                    multicast: first == Transport::Multicast,
                    ..cfg.clone()
                };
                (
                    Link::Udp(socket.try_clone()?),
                    Input::Udp(socket, TICK),
                    Client::new(mc, Mono::ZERO, seed()),
                )
            }
        };
        let session = Session {
            client,
            link,
            reports: Reports::new(fanout_session::report::DEFAULT_BACKOFF, seed()),
            fallback,
            group_of: HashMap::new(),
            from_groups: false,
            joined_once: false,
            unreachable_told: false,
        };
        let link = Arc::new(ServerLink {
            number,
            server,
            cfg,
            session: Mutex::new(session),
            sockets,
            group_datagrams: AtomicU64::new(0),
            udp_reads: AtomicU64::new(0),
            start: time.now(),
            time,
            events,
            element: element.downgrade(),
        });
        link.session.lock().unwrap().flush(&link);
        let turns = SessionThread {
            link: link.clone(),
            input,
            groups: Vec::new(),
            pending: Vec::new(),
            buf: vec![0u8; 65_536],
            spare: Spare::default(),
        };
        let thread = Worker::spawn("session-src", turns)?;
        Ok((link, thread))
    }

    fn now(&self) -> Mono {
        Mono::ZERO + self.time.now().saturating_duration_since(self.start)
    }

    /// Downstream misses symbols of a block: at once to a unicast server; after a random
    /// back-off (and only if still needed then) when the packets come from a group.
    pub fn report_lost(&self, entry: LostEntry) {
        let mut s = self.session.lock().unwrap();
        if s.fallback.current() == Transport::Multicast && s.from_groups {
            s.reports.report(self.now(), entry);
            return;
        }
        s.client.report_lost(&[entry]);
        s.flush(self);
    }

    /// Downstream loses `loss` of channel `channel`'s symbols lately: the server sends repair
    /// up front for it (LOSS), to this receiver, or to the group it takes the channel from.
    pub fn report_loss(&self, channel: u16, loss: f64) {
        let mut s = self.session.lock().unwrap();
        s.client.report_loss(channel, loss);
        s.flush(self);
    }

    /// Ends the session (LEAVE); the element then stops the session's thread, which leaves
    /// the groups on its way out.
    pub fn leave(&self) {
        let mut s = self.session.lock().unwrap();
        s.client.leave();
        s.flush(self);
    }

    fn tell(&self, e: LinkEvent) {
        (self.events)(e)
    }
}

/// The session's thread: reads the server's messages until stopped.
struct SessionThread {
    link: Arc<ServerLink>,
    input: Input,
    /// The groups joined, each with its reading thread.
    groups: Vec<Group>,
    /// Client events read with the data, for the end of the turn.
    pending: Vec<ClientEvent>,
    buf: Vec<u8>,
    spare: Spare,
}

impl Turns for SessionThread {
    fn turn(&mut self, _: &Stop) -> ControlFlow<()> {
        let link = &self.link;
        let (input, buf, spare) = (&mut self.input, &mut self.buf, &mut self.spare);
        read(link, input, buf, spare, &mut self.pending);
        let now = link.now();
        let switch = {
            let mut s = link.session.lock().unwrap();
            s.fallback.handle_timeout(now);
            s.fallback.poll_change()
        };
        if let Some((t, why)) = switch {
            change_transport(link, &mut self.groups, &mut self.input, t, why);
        }
        let events = {
            let mut s = link.session.lock().unwrap();
            if s.reports.is_waiting() {
                s.send_due_reports(link);
            }
            if s.client.poll_timeout().is_some_and(|t| t <= now) {
                s.client.handle_timeout(now);
            }
            s.flush(link);
            let mut events = std::mem::take(&mut self.pending);
            events.extend(std::iter::from_fn(|| s.client.poll_event()));
            events
        };
        for e in events {
            handle_event(link, &mut self.groups, &mut self.input, e);
        }
        link.tell(LinkEvent::Turn);
        ControlFlow::Continue(())
    }

    fn end(&mut self) {
        leave_groups(&self.link, &mut self.groups);
    }
}

fn read(
    link: &Arc<ServerLink>,
    input: &mut Input,
    buf: &mut [u8],
    spare: &mut Spare,
    pending: &mut Vec<ClientEvent>,
) {
    match input {
        Input::Udp(s, wait) => {
            // This thread also sends the delayed reports: it wakes when one is due.
            let next = link.session.lock().unwrap().reports.poll_timeout();
            let w = tick::until(next, link.now());
            if w != *wait && s.set_read_timeout(Some(w)).is_ok() {
                *wait = w;
            }
            match UdpRead::from(s, spare) {
                Ok(r) => spare.keep(datagrams_in(link, Transport::Udp, r, None, pending)),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => (),
                // The server's port is closed (ICMP): the retries go on.
                Err(e) => log_weak!(trace, CAT, link.element, "receive: {e}"),
            }
        }
        Input::Tcp(s, frames) => {
            let closed = match s.read(buf) {
                Ok(0) => true,
                Ok(n) => {
                    frames.push(&buf[..n]);
                    let mut bad = false;
                    while let Some(f) = frames.next_frame() {
                        match f {
                            Ok(m) => message_in(link, Transport::Tcp, &mut m.to_vec(), pending),
                            Err(e) => {
                                log_weak!(
                                    warning,
                                    CAT,
                                    link.element,
                                    "{}: bad TCP frame {e:?}",
                                    link.server
                                );
                                bad = true;
                                break;
                            }
                        }
                    }
                    bad
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
                Err(_) => true,
            };
            if closed {
                log_weak!(
                    info,
                    CAT,
                    link.element,
                    "TCP connection to {} closed",
                    link.server
                );
                link.session.lock().unwrap().link = Link::None;
                *input = Input::connecting(link.time.now(), TCP_RETRY);
            }
        }
        Input::Connecting { at, since } => {
            std::thread::sleep(TICK);
            if link.time.now() < *at {
                return;
            }
            match TcpStream::connect_timeout(&link.server, TCP_CONNECT_TIMEOUT) {
                Ok(s) => match tcp_ready(&s) {
                    Ok(w) => {
                        log_weak!(info, CAT, link.element, "TCP connection to {}", link.server);
                        let mut session = link.session.lock().unwrap();
                        session.link = Link::Tcp(w);
                        session.client.rejoin_now(link.now());
                        session.flush(link);
                        drop(session);
                        *input = Input::Tcp(s, Deframer::new(MAX_FRAME));
                    }
                    Err(e) => log_weak!(debug, CAT, link.element, "TCP to {}: {e}", link.server),
                },
                Err(e) => {
                    log_weak!(debug, CAT, link.element, "TCP to {}: {e}", link.server);
                    // A receiver started before its server connects soon after it is up.
                    let now = link.time.now();
                    let eager = now.saturating_duration_since(*since) < client::EAGER_FOR;
                    *at = now
                        + match eager {
                            true => client::RETRY_EAGER,
                            false => TCP_RETRY,
                        };
                }
            }
        }
    }
}

fn tcp_ready(s: &TcpStream) -> std::io::Result<TcpStream> {
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(TICK))?;
    let w = s.try_clone()?;
    w.set_write_timeout(Some(Duration::from_secs(1)))?;
    Ok(w)
}

/// One message from the server (a datagram, or a TCP frame). A JOINED's channels are told
/// before the DATA read right after it (TCP reads many frames at once); the rest of its
/// events wait in `pending` for the session's thread.
fn message_in(link: &ServerLink, via: Transport, bytes: &mut [u8], pending: &mut Vec<ClientEvent>) {
    let now = link.now();
    let (data, events) = {
        let mut s = link.session.lock().unwrap();
        let d = s
            .client
            .handle_datagram(now, bytes)
            .map(|d| (d.channel, d.payload.to_vec(), d.answer));
        if let Some((channel, payload, _)) = &d {
            s.data(link, via, *channel, payload);
        }
        s.flush(link);
        let events: Vec<ClientEvent> = std::iter::from_fn(|| s.client.poll_event()).collect();
        (d, events)
    };
    events_in(link, events, pending);
    if let Some((channel, payload, answer)) = data.filter(|(_, p, _)| !p.is_empty()) {
        link.tell(LinkEvent::Data {
            number: link.number,
            channel,
            batch: Batch::copied(&[&payload]),
            answer,
        });
    }
}

/// The client's events of a read: pads for the channels a JOINED names at once, the rest
/// at the end of the turn.
fn events_in(link: &ServerLink, events: Vec<ClientEvent>, pending: &mut Vec<ClientEvent>) {
    for e in &events {
        if let ClientEvent::Joined { channels, .. } = e {
            link.tell(LinkEvent::Channels {
                number: link.number,
                channels: channels.clone(),
            });
        }
    }
    pending.extend(events);
}

/// One UDP read: a datagram, or a run of them coalesced by GRO, in a buffer of its own.
struct UdpRead {
    buffer: gst::Buffer,
    len: usize,
    segment: Option<usize>,
}

impl UdpRead {
    fn from(socket: &UdpSocket, spare: &mut Spare) -> std::io::Result<UdpRead> {
        let mut buffer = spare.take()?;
        let got = {
            let b = buffer.get_mut().expect("ours alone");
            let mut map = b.map_writable().map_err(std::io::Error::other)?;
            gro::recv(socket, &mut map)
        };
        match got {
            Ok((len, segment)) => Ok(UdpRead {
                buffer,
                len,
                segment,
            }),
            Err(e) => {
                spare.keep(buffer);
                Err(e)
            }
        }
    }
}

/// The datagrams of a read, opened in place under one lock: their DATA goes on in runs of
/// one channel, as [`Batch`]es. From a `group`, only DATA of channels the server named that
/// group for counts (anyone can send to a group). Gives the read's buffer back.
fn datagrams_in(
    link: &ServerLink,
    via: Transport,
    mut read: UdpRead,
    group: Option<SocketAddr>,
    pending: &mut Vec<ClientEvent>,
) -> gst::Buffer {
    let now = link.now();
    link.udp_reads.fetch_add(1, Ordering::Relaxed);
    let mut runs: Vec<(u16, bool, Vec<Range<usize>>)> = Vec::new();
    let events: Vec<ClientEvent> = {
        let b = read.buffer.get_mut().expect("ours alone");
        let Ok(mut map) = b.map_writable() else {
            return read.buffer;
        };
        let base = map.as_ptr() as usize;
        let mut s = link.session.lock().unwrap();
        for r in gro::segments(read.len, read.segment) {
            let bytes = &mut map[r];
            if let Some(g) = group {
                let Ok(Datagram::Data(d)) = message::parse(bytes) else {
                    continue;
                };
                if s.group_of.get(&d.channel) != Some(&g) || !s.client.is_joined() {
                    continue;
                }
            }
            let Some(d) = s.client.handle_datagram(now, bytes) else {
                continue;
            };
            let (channel, answer) = (d.channel, d.answer);
            let start = d.payload.as_ptr() as usize - base;
            let place = start..start + d.payload.len();
            if group.is_some() {
                link.group_datagrams.fetch_add(1, Ordering::Relaxed);
            }
            s.data(link, via, channel, d.payload);
            // An empty one is a quiet channel's keepalive: nothing to pass on.
            if place.is_empty() {
                continue;
            }
            match runs.last_mut() {
                Some((c, a, places)) if (*c, *a) == (channel, answer) => places.push(place),
                _ => runs.push((channel, answer, vec![place])),
            }
        }
        s.flush(link);
        // The session's thread takes the client's events; a group's reader leaves them to it.
        match group {
            None => std::iter::from_fn(|| s.client.poll_event()).collect(),
            Some(_) => Vec::new(),
        }
    };
    events_in(link, events, pending);
    let total = runs.iter().map(|(_, _, p)| p.len()).sum();
    if let Some(b) = read.buffer.get_mut() {
        b.set_size(read.len);
    }
    for (channel, answer, places) in runs {
        link.tell(LinkEvent::Data {
            number: link.number,
            channel,
            batch: Batch::of(&read.buffer, places, total),
            answer,
        });
    }
    read.buffer
}

/// A group's reading thread: DATA of the channels that name this group, nothing else.
struct GroupReader {
    link: Arc<ServerLink>,
    group: SocketAddr,
    socket: Arc<UdpSocket>,
    spare: Spare,
}

impl Turns for GroupReader {
    fn turn(&mut self, _: &Stop) -> ControlFlow<()> {
        // A socket timeout at most: the thread looks at its stop flag between reads.
        if let Ok(read) = UdpRead::from(&self.socket, &mut self.spare) {
            let (link, group) = (&self.link, Some(self.group));
            let buffer = datagrams_in(link, Transport::Multicast, read, group, &mut Vec::new());
            self.spare.keep(buffer);
        }
        ControlFlow::Continue(())
    }
}

/// Joins the groups the server named (and leaves those it no longer names), while this
/// session takes packets from groups.
fn sync_groups(link: &Arc<ServerLink>, groups: &mut Vec<Group>, channels: &[ChannelInfo]) {
    let mut wanted: Vec<SocketAddr> = {
        let mut s = link.session.lock().unwrap();
        for c in channels {
            match c.group {
                Some(g) => s.group_of.insert(c.index, g),
                None => s.group_of.remove(&c.index),
            };
        }
        s.group_of.values().copied().collect()
    };
    wanted.sort();
    wanted.dedup();
    let (keep, gone): (Vec<Group>, Vec<Group>) = std::mem::take(groups)
        .into_iter()
        .partition(|g| wanted.contains(&g.addr));
    *groups = keep;
    let mut gone = gone;
    leave_groups(link, &mut gone);
    for addr in wanted {
        if groups.iter().any(|g| g.addr == addr) {
            continue;
        }
        let socket = match multicast::receiver(addr, link.sockets.iface, TICK) {
            Ok(s) => {
                if link.sockets.gro {
                    gro::enable(&s);
                }
                Arc::new(s)
            }
            Err(e) => {
                link.tell(LinkEvent::GroupUnavailable {
                    server: link.server,
                    group: addr,
                    error: e.to_string(),
                });
                continue;
            }
        };
        let turns = GroupReader {
            link: link.clone(),
            group: addr,
            socket: socket.clone(),
            spare: Spare::default(),
        };
        let reader = match Worker::spawn("session-src-group", turns) {
            Ok(w) => w,
            Err(e) => {
                multicast::leave(&socket, addr, link.sockets.iface);
                link.tell(LinkEvent::GroupUnavailable {
                    server: link.server,
                    group: addr,
                    error: e.to_string(),
                });
                continue;
            }
        };
        log_weak!(
            info,
            CAT,
            link.element,
            "joined group {addr} of {}",
            link.server
        );
        groups.push(Group {
            addr,
            socket,
            reader,
        });
    }
    link.session.lock().unwrap().from_groups = !groups.is_empty();
}

/// Leaves `groups` and waits for their threads (with no lock held: they take the session).
fn leave_groups(link: &ServerLink, groups: &mut Vec<Group>) {
    for g in groups.drain(..) {
        g.reader.stop();
        multicast::leave(&g.socket, g.addr, link.sockets.iface);
        g.reader.join();
        log_weak!(debug, CAT, link.element, "left group {}", g.addr);
    }
    link.session.lock().unwrap().from_groups = false;
}

/// Moves to the next transport; the element says so on the bus.
fn change_transport(
    link: &Arc<ServerLink>,
    groups: &mut Vec<Group>,
    input: &mut Input,
    to: Transport,
    why: Why,
) {
    leave_groups(link, groups);
    {
        let mut s = link.session.lock().unwrap();
        match to {
            Transport::Udp => s.client.set_multicast(false, link.now()),
            Transport::Tcp => {
                s.client.leave();
                s.flush(link);
                // A new session over the connection, timed out from now.
                s.client = Client::new_stream(link.cfg.clone(), link.now(), seed());
                s.link = Link::None;
                *input = Input::connecting(link.time.now(), Duration::ZERO);
            }
            Transport::Multicast => (),
        }
    }
    link.tell(LinkEvent::TransportChanged {
        server: link.server,
        to,
        why,
    });
}

fn handle_event(
    link: &Arc<ServerLink>,
    groups: &mut Vec<Group>,
    input: &mut Input,
    e: ClientEvent,
) {
    match e {
        ClientEvent::Joined {
            channels,
            new_session,
        } => {
            let (first, multicast) = {
                let mut s = link.session.lock().unwrap();
                let first = !std::mem::replace(&mut s.joined_once, true);
                s.unreachable_told = false;
                s.fallback.answered();
                let multicast =
                    s.client.multicast() && s.fallback.current() == Transport::Multicast;
                (first, multicast)
            };
            if first || new_session {
                link.tell(LinkEvent::Joined {
                    server: link.server,
                    again: !first,
                });
            }
            link.tell(LinkEvent::Channels {
                number: link.number,
                channels: channels.clone(),
            });
            if multicast {
                sync_groups(link, groups, &channels);
                if groups.is_empty() {
                    let change = {
                        let mut s = link.session.lock().unwrap();
                        s.fallback.no_group(link.now());
                        s.fallback.poll_change()
                    };
                    if let Some((to, why)) = change {
                        change_transport(link, groups, input, to, why);
                    }
                }
            }
        }
        ClientEvent::Changed { channel } => {
            link.tell(LinkEvent::Channels {
                number: link.number,
                channels: vec![channel.clone()],
            });
            let multicast = link.session.lock().unwrap().fallback.current() == Transport::Multicast;
            if multicast && !groups.is_empty() {
                sync_groups(link, groups, std::slice::from_ref(&channel));
            }
        }
        ClientEvent::Refused { reason, text } => link.tell(LinkEvent::Refused {
            number: link.number,
            server: link.server,
            reason,
            text,
        }),
        ClientEvent::Unreachable => {
            // transport=auto tries the next way on its own, sooner.
            let tell = {
                let mut s = link.session.lock().unwrap();
                let tell = !s.unreachable_told && s.fallback.poll_timeout().is_none();
                s.unreachable_told |= tell;
                tell
            };
            if tell {
                link.tell(LinkEvent::Unreachable {
                    server: link.server,
                });
            }
        }
        ClientEvent::Ended { channel } => link.tell(LinkEvent::Ended {
            number: link.number,
            channel,
        }),
        ClientEvent::Failed { text } => link.tell(LinkEvent::Failed {
            server: link.server,
            text,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn a_tcp_write_that_fails_closes_the_connection_rather_than_leave_half_a_frame() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut reading = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        // The server side: never reads.
        let (_server, _) = listener.accept().unwrap();
        let mut link = Link::Tcp(tcp_ready(&reading).unwrap());
        let message = vec![7u8; 60_000];
        let failed = (0..100_000).any(|_| link.send(&message).is_err());
        assert!(
            failed,
            "the kernel's buffers filled and the write timed out"
        );
        assert!(matches!(link, Link::None));
        // The session's reading side sees the connection closed, and connects again.
        reading
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut b = [0u8; 1];
        assert_eq!(reading.read(&mut b).unwrap(), 0);
        // Nothing more goes out on a closed link, and nothing fails.
        assert!(link.send(&message).is_ok());
    }
}
