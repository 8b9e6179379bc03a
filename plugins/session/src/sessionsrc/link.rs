// SPDX-License-Identifier: MPL-2.0

//! One server's session in `session-src`: the way its packets come (a connected UDP socket,
//! multicast groups beside it, or a TCP connection), the [`Client`] state machine, delayed
//! loss reports, and `transport=auto`'s fallback. Runs on its own thread; the groups each
//! have a thread that only reads.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fanout_session::client;
use fanout_session::fallback::Why;
use fanout_session::frame::MAX_FRAME;
use fanout_session::message::{self, Datagram};
use fanout_session::{
    ChannelInfo, Client, ClientConfig, ClientEvent, Deframer, Fallback, LostEntry, Mono, Reports,
    Transport,
};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::imp::{SessionSrc, CAT};
use super::receive;
use crate::multicast::{self, Iface};
use crate::tick::{self, TICK};

const TCP_RETRY: Duration = Duration::from_secs(1);
const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How control messages leave.
enum Link {
    Udp(UdpSocket),
    Tcp(TcpStream),
    /// TCP connection being made.
    None,
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
    fn connecting(at: Instant) -> Input {
        Input::Connecting {
            at,
            since: Instant::now(),
        }
    }
}

struct Group {
    addr: SocketAddr,
    socket: Arc<UdpSocket>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// One server's session, between READY→PAUSED and PAUSED→READY.
pub(super) struct Running {
    /// Its place in `host`.
    pub number: usize,
    pub server: SocketAddr,
    cfg: ClientConfig,
    link: Mutex<Link>,
    pub client: Mutex<Client>,
    pub reports: Mutex<Reports>,
    pub fallback: Mutex<Fallback>,
    groups: Mutex<Vec<Group>>,
    /// The group of each of the server's channels (its index), from its last JOINED.
    group_of: Mutex<HashMap<u16, SocketAddr>>,
    iface: Iface,
    pub group_datagrams: AtomicU64,
    /// Events taken from the client early (a JOINED read with the data after it), for the
    /// session's thread to handle in order.
    early_events: Mutex<Vec<ClientEvent>>,
    /// A JOINED from this server was handled.
    joined_once: AtomicBool,
    pub start: Instant,
    pub stop: AtomicBool,
}

fn udp_socket(server: SocketAddr) -> std::io::Result<UdpSocket> {
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
    Ok(s)
}

fn seed() -> u64 {
    getrandom::u64().unwrap_or_else(|_| std::process::id().into())
}

impl Running {
    /// Opens the first transport's socket and starts the session's thread.
    pub fn start(
        weak: glib::WeakRef<super::SessionSrc>,
        number: usize,
        server: SocketAddr,
        cfg: ClientConfig,
        fallback: Fallback,
        iface: Iface,
    ) -> std::io::Result<(Arc<Running>, JoinHandle<()>)> {
        let first = fallback.current();
        let (link, input, client) = match first {
            Transport::Tcp => (
                Link::None,
                Input::connecting(Instant::now()),
                Client::new_stream(cfg.clone(), Mono::ZERO, seed()),
            ),
            Transport::Multicast | Transport::Udp => {
                let socket = udp_socket(server)?;
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
        let running = Arc::new(Running {
            number,
            server,
            cfg,
            link: Mutex::new(link),
            client: Mutex::new(client),
            reports: Mutex::new(Reports::new(
                fanout_session::report::DEFAULT_BACKOFF,
                seed(),
            )),
            fallback: Mutex::new(fallback),
            groups: Mutex::default(),
            group_of: Mutex::default(),
            iface,
            group_datagrams: AtomicU64::new(0),
            early_events: Mutex::default(),
            joined_once: AtomicBool::new(false),
            start: Instant::now(),
            stop: AtomicBool::new(false),
        });
        {
            let mut client = running.client.lock().unwrap();
            running.flush(&mut client);
        }
        let r = running.clone();
        let thread = std::thread::Builder::new()
            .name("session-src".into())
            .spawn(move || run(weak, r, input))?;
        Ok((running, thread))
    }

    pub fn now(&self) -> Mono {
        Mono::ZERO + self.start.elapsed()
    }

    pub fn transport(&self) -> Transport {
        self.fallback.lock().unwrap().current()
    }

    /// Sends whatever the client has to send.
    pub fn flush(&self, client: &mut Client) {
        let mut link = self.link.lock().unwrap();
        while let Some(d) = client.poll_transmit() {
            let sent = match &mut *link {
                Link::Udp(s) => s.send(&d).map(drop),
                Link::Tcp(s) => match fanout_session::frame(&[&d]) {
                    Some(f) => s.write_all(&f),
                    None => Ok(()),
                },
                Link::None => Ok(()),
            };
            if let Err(e) = sent {
                gst::debug!(CAT, "send to {}: {e}", self.server);
            }
        }
    }

    /// Downstream misses symbols of a block: at once to a unicast server; after a random
    /// back-off (and only if still needed then) when the packets come from a group.
    pub fn report_lost(&self, entry: LostEntry) {
        if self.transport() == Transport::Multicast && !self.groups.lock().unwrap().is_empty() {
            self.reports.lock().unwrap().report(self.now(), entry);
            return;
        }
        let mut client = self.client.lock().unwrap();
        client.report_lost(&[entry]);
        self.flush(&mut client);
    }

    /// Sends the delayed reports whose back-off is over.
    fn send_due_reports(&self) {
        let due = {
            let mut reports = self.reports.lock().unwrap();
            if !reports.is_waiting() {
                return;
            }
            reports.handle_timeout(self.now());
            std::iter::from_fn(|| reports.poll_report()).collect::<Vec<_>>()
        };
        self.send_reports(&due);
    }

    fn send_reports(&self, due: &[LostEntry]) {
        if !due.is_empty() {
            let mut client = self.client.lock().unwrap();
            client.report_lost(due);
            self.flush(&mut client);
        }
    }

    /// Ends the session: LEAVE, groups left, threads told to stop.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let mut client = self.client.lock().unwrap();
        client.leave();
        self.flush(&mut client);
        drop(client);
        self.leave_groups();
    }

    fn leave_groups(&self) {
        let groups = std::mem::take(&mut *self.groups.lock().unwrap());
        for mut g in groups {
            g.stop.store(true, Ordering::SeqCst);
            multicast::leave(&g.socket, g.addr, self.iface);
            if let Some(t) = g.thread.take() {
                let _ = t.join();
            }
            gst::debug!(CAT, "left group {}", g.addr);
        }
    }

    /// A data packet from the server, by any way: fallback and delayed reports learn of it.
    /// Returns the delayed reports due now: while packets come, they go out on time from
    /// whichever thread reads them, not when the session's thread next wakes.
    fn data(&self, via: Transport, channel: u16, payload: &[u8]) -> Vec<LostEntry> {
        self.fallback.lock().unwrap().came_over(via);
        let mut reports = self.reports.lock().unwrap();
        if !reports.is_waiting() {
            return Vec::new();
        }
        if let Ok(fanout_fec::packet::Packet::Symbol { header, .. }) =
            fanout_fec::packet::parse(payload)
        {
            reports.symbol(channel, header.flow, header.block);
        }
        reports.handle_timeout(self.now());
        std::iter::from_fn(|| reports.poll_report()).collect()
    }
}

/// Reads the server's messages until stopped.
fn run(weak: glib::WeakRef<super::SessionSrc>, r: Arc<Running>, mut input: Input) {
    let mut buf = vec![0u8; 65_536];
    let mut unreachable_told = false;
    while !r.stop.load(Ordering::SeqCst) {
        let Some(src) = weak.upgrade() else { break };
        let imp = src.imp();
        read(imp, &r, &mut input, &mut buf);
        let now = r.now();
        let switch = {
            let mut fallback = r.fallback.lock().unwrap();
            fallback.handle_timeout(now);
            fallback.poll_change()
        };
        if let Some((t, why)) = switch {
            change_transport(imp, &r, &mut input, t, why);
        }
        r.send_due_reports();
        let mut events = std::mem::take(&mut *r.early_events.lock().unwrap());
        {
            let mut client = r.client.lock().unwrap();
            if client.poll_timeout().is_some_and(|t| t <= now) {
                client.handle_timeout(now);
            }
            r.flush(&mut client);
            events.extend(std::iter::from_fn(|| client.poll_event()));
        }
        for e in events {
            handle_event(imp, &r, &mut input, e, &mut unreachable_told);
        }
        if imp.ticker.due() {
            let running = imp.running.lock().unwrap().clone();
            gstfanoutfec::post_stats(&src, receive::stats(imp, &running));
        }
    }
}

fn read(imp: &SessionSrc, r: &Running, input: &mut Input, buf: &mut [u8]) {
    match input {
        Input::Udp(s, wait) => {
            // This thread also sends the delayed reports: it wakes when one is due.
            let w = tick::until(r.reports.lock().unwrap().poll_timeout(), r.now());
            if w != *wait && s.set_read_timeout(Some(w)).is_ok() {
                *wait = w;
            }
            match s.recv(buf) {
                Ok(n) => message_in(imp, r, Transport::Udp, &mut buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => (),
                // The server's port is closed (ICMP): the retries go on.
                Err(e) => gst::trace!(CAT, imp = imp, "receive: {e}"),
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
                            Ok(m) => message_in(imp, r, Transport::Tcp, &mut m.to_vec()),
                            Err(e) => {
                                gst::warning!(CAT, imp = imp, "{}: bad TCP frame {e:?}", r.server);
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
                gst::info!(CAT, imp = imp, "TCP connection to {} closed", r.server);
                *r.link.lock().unwrap() = Link::None;
                *input = Input::connecting(Instant::now() + TCP_RETRY);
            }
        }
        Input::Connecting { at, since } => {
            std::thread::sleep(TICK);
            if Instant::now() < *at {
                return;
            }
            match TcpStream::connect_timeout(&r.server, TCP_CONNECT_TIMEOUT) {
                Ok(s) => match tcp_ready(&s) {
                    Ok(link) => {
                        gst::info!(CAT, imp = imp, "TCP connection to {}", r.server);
                        *r.link.lock().unwrap() = Link::Tcp(link);
                        let mut client = r.client.lock().unwrap();
                        client.rejoin_now(r.now());
                        r.flush(&mut client);
                        drop(client);
                        *input = Input::Tcp(s, Deframer::new(MAX_FRAME));
                    }
                    Err(e) => gst::debug!(CAT, imp = imp, "TCP to {}: {e}", r.server),
                },
                Err(e) => {
                    gst::debug!(CAT, imp = imp, "TCP to {}: {e}", r.server);
                    // A receiver started before its server connects soon after it is up.
                    let eager = since.elapsed() < client::EAGER_FOR;
                    *at = Instant::now()
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

/// One message from the server (a datagram, or a TCP frame).
fn message_in(imp: &SessionSrc, r: &Running, via: Transport, bytes: &mut [u8]) {
    let now = r.now();
    let data = {
        let mut client = r.client.lock().unwrap();
        let d = client.handle_datagram(now, bytes).map(|d| {
            let due = r.data(via, d.channel, d.payload);
            let buffer = gst::Buffer::from_slice(d.payload.to_vec());
            (d.channel, buffer, d.answer, due)
        });
        if let Some((.., due)) = &d {
            client.report_lost(due);
        }
        r.flush(&mut client);
        let events: Vec<ClientEvent> = std::iter::from_fn(|| client.poll_event()).collect();
        (
            d.map(|(channel, buffer, answer, _)| (channel, buffer, answer)),
            events,
        )
    };
    let (data, events) = data;
    // A JOINED's pads are there before the DATA read right after it (TCP reads many frames
    // at once); the rest of the event is handled on the session's thread.
    for e in &events {
        if let ClientEvent::Joined { channels, .. } = e {
            receive::add_pads(imp, r.number, channels);
        }
    }
    r.early_events.lock().unwrap().extend(events);
    if let Some((channel, buffer, answer)) = data.filter(|(_, b, _)| b.size() > 0) {
        receive::push(imp, r.number, channel, buffer, answer);
    }
}

/// A group's reading thread: DATA of the channels that name this group, nothing else.
fn read_group(
    weak: glib::WeakRef<super::SessionSrc>,
    r: Arc<Running>,
    g: SocketAddr,
    socket: Arc<UdpSocket>,
    stop: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::SeqCst) {
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            Err(_) => continue,
        };
        let channel = match message::parse(&buf[..n]) {
            Ok(Datagram::Data(d)) => d.channel,
            _ => continue,
        };
        if r.group_of.lock().unwrap().get(&channel) != Some(&g) {
            continue;
        }
        // Opened with the channel's key: anyone can send to a group, only the server's
        // data counts (it also tells the client the server is alive).
        let payload = {
            let mut client = r.client.lock().unwrap();
            if !client.is_joined() {
                continue;
            }
            match client.handle_datagram(r.now(), &mut buf[..n]) {
                Some(d) => d.payload.to_vec(),
                None => continue,
            }
        };
        let Some(src) = weak.upgrade() else { break };
        r.group_datagrams.fetch_add(1, Ordering::Relaxed);
        let due = r.data(Transport::Multicast, channel, &payload);
        r.send_reports(&due);
        if payload.is_empty() {
            // A quiet channel's keepalive: the group works, there is nothing to pass on.
            continue;
        }
        let buffer = gst::Buffer::from_mut_slice(payload);
        receive::push(src.imp(), r.number, channel, buffer, false);
    }
}

/// Joins the groups the server named (and leaves those it no longer names), while this
/// session takes packets from groups.
fn sync_groups(imp: &SessionSrc, r: &Arc<Running>, channels: &[ChannelInfo]) {
    {
        let mut of = r.group_of.lock().unwrap();
        for c in channels {
            match c.group {
                Some(g) => of.insert(c.index, g),
                None => of.remove(&c.index),
            };
        }
    }
    let mut wanted: Vec<SocketAddr> = r.group_of.lock().unwrap().values().copied().collect();
    wanted.sort();
    wanted.dedup();
    let mut groups = r.groups.lock().unwrap();
    groups.retain_mut(|g| {
        let keep = wanted.contains(&g.addr);
        if !keep {
            g.stop.store(true, Ordering::SeqCst);
            multicast::leave(&g.socket, g.addr, r.iface);
        }
        keep
    });
    for addr in wanted {
        if groups.iter().any(|g| g.addr == addr) {
            continue;
        }
        let socket = match multicast::receiver(addr, r.iface, TICK) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                gst::element_imp_warning!(
                    imp,
                    gst::ResourceError::OpenRead,
                    ("cannot join multicast group {addr}: {e}")
                );
                continue;
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (weak, r, socket, stop) = (
                imp.obj().downgrade(),
                r.clone(),
                socket.clone(),
                stop.clone(),
            );
            std::thread::Builder::new()
                .name("session-src-group".into())
                .spawn(move || read_group(weak, r, addr, socket, stop))
                .ok()
        };
        gst::info!(CAT, imp = imp, "joined group {addr} of {}", r.server);
        groups.push(Group {
            addr,
            socket,
            stop,
            thread,
        });
    }
}

/// Moves to the next transport; says so on the bus.
fn change_transport(
    imp: &SessionSrc,
    r: &Arc<Running>,
    input: &mut Input,
    to: Transport,
    why: Why,
) {
    let obj = imp.obj();
    r.leave_groups();
    match to {
        Transport::Udp => {
            r.client.lock().unwrap().set_multicast(false, r.now());
        }
        Transport::Tcp => {
            let mut client = r.client.lock().unwrap();
            client.leave();
            r.flush(&mut client);
            // A new session over the connection, timed out from now.
            *client = Client::new_stream(r.cfg.clone(), r.now(), seed());
            *r.link.lock().unwrap() = Link::None;
            *input = Input::connecting(Instant::now());
        }
        Transport::Multicast => (),
    }
    gst::info!(
        CAT,
        imp = imp,
        "{}: now {} ({})",
        r.server,
        to.as_str(),
        why.as_str()
    );
    let s = gst::Structure::builder("fanout-session-transport")
        .field("server", r.server.to_string())
        .field("transport", to.as_str())
        .field("reason", why.as_str())
        .build();
    let _ = obj.post_message(gst::message::Element::builder(s).src(&*obj).build());
}

fn handle_event(
    imp: &SessionSrc,
    r: &Arc<Running>,
    input: &mut Input,
    e: ClientEvent,
    unreachable_told: &mut bool,
) {
    match e {
        ClientEvent::Joined {
            channels,
            new_session,
        } => {
            let first = !r.joined_once.swap(true, Ordering::SeqCst);
            if new_session && !first {
                gst::info!(CAT, imp = imp, "joined {} again (a new session)", r.server);
            } else if first {
                gst::info!(CAT, imp = imp, "joined {}", r.server);
            }
            *unreachable_told = false;
            receive::add_pads(imp, r.number, &channels);
            r.fallback.lock().unwrap().answered();
            let multicast = r.client.lock().unwrap().multicast();
            if multicast && r.transport() == Transport::Multicast {
                sync_groups(imp, r, &channels);
                if r.groups.lock().unwrap().is_empty() {
                    let change = {
                        let mut fallback = r.fallback.lock().unwrap();
                        fallback.no_group(r.now());
                        fallback.poll_change()
                    };
                    if let Some((to, why)) = change {
                        change_transport(imp, r, input, to, why);
                    }
                }
            }
        }
        ClientEvent::Changed { channel } => {
            receive::add_pads(imp, r.number, std::slice::from_ref(&channel));
            if r.transport() == Transport::Multicast && !r.groups.lock().unwrap().is_empty() {
                sync_groups(imp, r, std::slice::from_ref(&channel));
            }
        }
        ClientEvent::Refused { reason, text } => {
            let why = if text.is_empty() {
                reason.as_str().to_owned()
            } else {
                format!("{} ({text})", reason.as_str())
            };
            // With other servers answering, one refusing is a warning.
            if imp.channels.lock().unwrap().joined_other(r.number) {
                gst::element_imp_warning!(
                    imp,
                    gst::ResourceError::OpenRead,
                    ("{} refused the JOIN: {why}", r.server)
                );
            } else {
                gst::element_imp_error!(
                    imp,
                    gst::ResourceError::OpenRead,
                    ("{} refused the JOIN: {why}", r.server)
                );
            }
        }
        ClientEvent::Unreachable => {
            // transport=auto tries the next way on its own, sooner.
            if *unreachable_told || r.fallback.lock().unwrap().poll_timeout().is_some() {
                return;
            }
            *unreachable_told = true;
            let timeout = gst::ClockTime::from_nseconds(imp.settings.lock().unwrap().timeout);
            if imp.channels.lock().unwrap().joined_any() {
                gst::element_imp_warning!(
                    imp,
                    gst::ResourceError::Read,
                    ("no answer from {} for {timeout}: still trying", r.server)
                );
            } else {
                gst::element_imp_error!(
                    imp,
                    gst::ResourceError::OpenRead,
                    (
                        "no answer from {} within {timeout}: is a session-sink there?",
                        r.server
                    )
                );
            }
        }
        ClientEvent::Ended { channel } => receive::ended(imp, r.number, channel),
        ClientEvent::Failed { text } => {
            gst::element_imp_error!(
                imp,
                gst::ResourceError::NotAuthorized,
                ("Cannot take the data of {}: {text}", r.server)
            );
        }
    }
}
