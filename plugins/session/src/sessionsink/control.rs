// SPDX-License-Identifier: MPL-2.0

//! `session-sink`'s control thread: receives the protocol's datagrams (and takes TCP
//! connections), runs the [`Server`](fanout_session::Server) state machine, emits the
//! signals (with no lock held), turns LOST reports into upstream repair requests, tells
//! receivers a channel ended, and posts `stats` every second. The streaming threads only
//! read [`Snapshot`]s it publishes.

use std::collections::{HashMap, HashSet};
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use fanout_session::{Event, Mono, Now, Peer, RemoveReason, RepairTo, Server, Transmit};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gstfanoutfec::repair_request;

use super::hold::Opened;
use super::imp::{Running, SessionSink, CAT};
use super::tcp::{self, Conn};
use crate::fanout::{Target, Targets};
use crate::tick::{self, TICK};

/// END is not acknowledged: sent this many times, this far apart.
const END_REPEATS: u32 = 5;
const END_SPACING: Duration = Duration::from_millis(30);
const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// A channel that sent nothing for this long tells its receivers it is there (CHANNEL).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);

/// Repairs for a channel's group carry this destination.
pub(crate) const GROUP_DESTINATION: u64 = 0;

/// Who gets what, as the streaming threads see it; replaced whole when receivers change.
#[derive(Default)]
pub(crate) struct Snapshot {
    /// UDP receivers taking unicast copies, per channel.
    pub channels: HashMap<u16, Targets>,
    /// TCP receivers, per channel.
    pub tcp: HashMap<u16, Vec<Arc<Conn>>>,
    /// The channel's multicast group, as one target.
    pub groups: HashMap<u16, Targets>,
    /// Every receiver of the channel (for repairs to one of them).
    pub members: HashMap<u16, HashSet<u64>>,
    pub by_id: HashMap<u64, Arc<Target>>,
    pub conns: HashMap<u64, Arc<Conn>>,
}

pub(super) fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    // Large buffers: a fan-out burst is many receivers times a block.
    let _ = s.set_send_buffer_size(8 << 20);
    let _ = s.set_recv_buffer_size(1 << 20);
    s.bind(&addr.into())?;
    let s: UdpSocket = s.into();
    s.set_read_timeout(Some(TICK))?;
    Ok(s)
}

pub(super) fn now(start: Instant) -> Now {
    let unix = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    Now {
        mono: Mono::ZERO + start.elapsed(),
        unix,
    }
}

fn rebuild(server: &Server, r: &Running, groups: &[(u16, SocketAddr)], old: &Snapshot) -> Snapshot {
    let mut snap = Snapshot::default();
    let mut channels: HashMap<u16, Vec<Arc<Target>>> = HashMap::new();
    let mut clients: Vec<(u64, Peer)> = server.clients().collect();
    // In join order: sends then walk the kernel's sockets in a steady order.
    clients.sort_unstable();
    let conns = r.conns.lock().unwrap();
    for (id, peer) in clients {
        let multicast = server.is_multicast(id);
        let conn = match peer {
            Peer::Tcp(a) => match conns.get(&a) {
                Some(c) => Some(c.clone()),
                // Closed meanwhile: taken out at the next turn.
                None => continue,
            },
            Peer::Udp(_) => None,
        };
        let target = match &conn {
            Some(c) => c.target.clone(),
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
                None => channels.entry(c).or_default().push(target.clone()),
            }
        }
        match conn {
            Some(conn) => {
                snap.conns.insert(id, conn);
            }
            None => {
                snap.by_id.insert(id, target);
            }
        }
    }
    snap.channels = channels
        .into_iter()
        .map(|(c, list)| (c, Targets::new(list)))
        .collect();
    for &(c, group) in groups {
        let target = Target {
            id: GROUP_DESTINATION,
            addr: group,
            stats: Arc::default(),
        };
        snap.groups.insert(c, Targets::new(vec![Arc::new(target)]));
    }
    snap
}

/// One message from a receiver, by UDP or TCP: a new receiver's JOIN goes past
/// `client-joining`, with no lock held while the application decides; a refresh (or a new
/// handshake) of a receiver already in keeps it without asking again.
pub(super) fn take_message(sink: &super::SessionSink, r: &Running, from: Peer, data: &[u8]) {
    let imp = sink.imp();
    let req = {
        let mut server = r.server.lock().unwrap();
        let req = match from {
            Peer::Udp(a) => server.handle_datagram(now(r.start), a, data),
            Peer::Tcp(a) => server.handle_stream(now(r.start), a, data),
        };
        match req {
            Some(req) if server.has(from) => {
                server.accept(now(r.start), req);
                return;
            }
            req => req,
        }
    };
    let Some(req) = req else { return };
    let token = String::from_utf8_lossy(&req.token).into_owned();
    let allowed = sink.emit_by_name::<bool>("client-joining", &[&from.to_string(), &token]);
    let mut server = r.server.lock().unwrap();
    if allowed {
        server.accept(now(r.start), req);
    } else {
        gst::info!(CAT, imp = imp, "JOIN from {from} not authorized");
        server.refuse(req, fanout_session::Reason::NotAuthorized, "");
    }
}

fn deliver(imp: &SessionSink, r: &Running, tx: Transmit) {
    match tx.to {
        Peer::Udp(a) => {
            if let Err(e) = r.socket.send_to(&tx.data, a) {
                gst::debug!(CAT, imp = imp, "reply to {a}: {e}");
            }
        }
        Peer::Tcp(a) => {
            let conn = r.conns.lock().unwrap().get(&a).cloned();
            if let (Some(c), Some(f)) = (conn, fanout_session::frame(&[&tx.data])) {
                let open = !c.queue.is_closed();
                c.queue.push_control(f);
                if open && c.queue.is_closed() {
                    gst::debug!(CAT, imp = imp, "tcp:{a}: does not read its answers: closed");
                }
            }
        }
    }
}

struct PendingEnd {
    channel: u16,
    at: Instant,
    left: u32,
}

pub(super) fn run(weak: glib::WeakRef<super::SessionSink>, r: Arc<Running>) {
    let mut buf = vec![0u8; 2048];
    let mut generation = None;
    let mut next_stats = Instant::now() + STATS_INTERVAL;
    let mut ends: Vec<PendingEnd> = Vec::new();
    let mut eos_posted = false;
    let mut wait = TICK;
    let mut next_keepalive = Instant::now() + KEEPALIVE_INTERVAL;
    let mut buffers_seen: HashMap<u16, u64> = HashMap::new();
    while !r.stop.load(Ordering::SeqCst) {
        // A gathering round closes on time, not a tick late; so does an END go out.
        let next = r.server.lock().unwrap().poll_timeout();
        let mut w = tick::until(next, now(r.start).mono);
        if let Some(end) = ends.iter().map(|e| e.at).min() {
            let due = end.saturating_duration_since(Instant::now());
            w = w.min(due.max(Duration::from_millis(1)));
        }
        if w != wait && r.socket.set_read_timeout(Some(w)).is_ok() {
            wait = w;
        }
        let received = r.socket.recv_from(&mut buf);
        let Some(sink) = weak.upgrade() else { break };
        let imp = sink.imp();
        match received {
            Ok((n, from)) => take_message(&sink, &r, Peer::Udp(from), &buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => (),
            // An ICMP error for something sent earlier: nothing to do here.
            Err(e) => gst::trace!(CAT, imp = imp, "receive: {e}"),
        }
        tcp::accept(&weak, &r);
        service(imp, &r, &mut generation, &mut ends);
        if r.hold.is_waiting() {
            release_hold(imp, &r);
        }
        let all_ended = imp
            .sink_pads()
            .iter()
            .all(|p| p.imp().eos.load(Ordering::SeqCst));
        if !all_ended {
            eos_posted = false;
        } else if !eos_posted && ends.is_empty() && !imp.sink_pads().is_empty() {
            eos_posted = true;
            gst::debug!(CAT, imp = imp, "every channel ended");
            let _ = sink.post_message(gst::message::Eos::builder().src(&sink).build());
        }
        if Instant::now() >= next_keepalive {
            next_keepalive = Instant::now() + KEEPALIVE_INTERVAL;
            keep_quiet_channels_alive(imp, &r, &mut buffers_seen);
        }
        if Instant::now() >= next_stats {
            next_stats += STATS_INTERVAL;
            let s = stats(imp, &r);
            let _ = sink.post_message(gst::message::Element::builder(s).src(&sink).build());
        }
    }
}

/// Receivers of a channel with no buffer since the last look (a delayed output not started
/// yet, a hold) hear CHANNEL instead, and keep their sessions without a new handshake; its
/// multicast group hears an empty DATA, so receivers see the group works.
fn keep_quiet_channels_alive(imp: &SessionSink, r: &Running, seen: &mut HashMap<u16, u64>) {
    let mut server = r.server.lock().unwrap();
    for pad in imp.sink_pads() {
        let p = pad.imp();
        let buffers = p.stats.buffers.load(Ordering::Relaxed);
        let before = seen.insert(pad.index(), buffers);
        if before == Some(buffers) && !p.eos.load(Ordering::SeqCst) {
            server.keepalive(pad.index());
            imp.group_keepalive(r, &pad);
        }
    }
}

/// `wait-for-clients`: lets the data go once enough receivers joined or time is up.
fn release_hold(imp: &SessionSink, r: &Running) {
    let joined = r.server.lock().unwrap().client_count();
    match r.hold.check(joined) {
        Some(Opened::Joined { want }) => {
            gst::info!(
                CAT,
                imp = imp,
                "{joined} receiver(s) joined (waited for {want}): sending"
            );
        }
        Some(Opened::TimedOut { want, joined }) => {
            let timeout = gst::ClockTime::from_nseconds(imp.settings.lock().unwrap().wait_timeout);
            gst::element_imp_warning!(
                imp,
                gst::ResourceError::Failed,
                ("only {joined} of {want} receivers joined within {timeout}: sending to those")
            );
        }
        None => (),
    }
}

/// Everything but receiving: timers, evictions, ENDs, replies, events, the snapshot.
fn service(
    imp: &SessionSink,
    r: &Running,
    generation: &mut Option<u64>,
    ends: &mut Vec<PendingEnd>,
) {
    let t = now(r.start);
    let groups: Vec<(u16, SocketAddr)> = imp
        .sink_pads()
        .iter()
        .filter_map(|p| Some((p.index(), p.group()?)))
        .collect();
    let closed = std::mem::take(&mut *r.tcp_closed.lock().unwrap());
    let (transmits, events) = {
        let mut server = r.server.lock().unwrap();
        for pad in imp.sink_pads() {
            let sent = pad.imp().stats.stream_packets.load(Ordering::Relaxed);
            server.note_sent(pad.index(), sent);
        }
        for peer in closed {
            r.conns.lock().unwrap().remove(&peer);
            server.connection_closed(peer);
        }
        if server.poll_timeout().is_some_and(|d| d <= t.mono) {
            server.handle_timeout(t);
        }
        for id in std::mem::take(&mut *r.evict.lock().unwrap()) {
            server.remove(id, RemoveReason::Evicted);
        }
        for channel in std::mem::take(&mut *r.ended.lock().unwrap()) {
            ends.push(PendingEnd {
                channel,
                at: Instant::now(),
                left: END_REPEATS,
            });
        }
        let now = Instant::now();
        for e in ends.iter_mut().filter(|e| e.at <= now) {
            server.end_channel(e.channel);
            e.left -= 1;
            e.at = now + END_SPACING;
        }
        ends.retain(|e| e.left > 0);
        if *generation != Some(server.generation()) {
            *generation = Some(server.generation());
            let old = r.snapshot.lock().unwrap().clone();
            *r.snapshot.lock().unwrap() = Arc::new(rebuild(&server, r, &groups, &old));
        }
        let transmits: Vec<_> = std::iter::from_fn(|| server.poll_transmit()).collect();
        let events: Vec<_> = std::iter::from_fn(|| server.poll_event()).collect();
        (transmits, events)
    };
    for tx in transmits {
        deliver(imp, r, tx);
    }
    let sink = imp.obj();
    for e in events {
        match e {
            Event::Added { peer, .. } => {
                gst::info!(CAT, imp = imp, "receiver {peer} joined");
                sink.emit_by_name::<()>("client-added", &[&peer.to_string()]);
            }
            Event::Removed { peer, reason, .. } => {
                gst::info!(CAT, imp = imp, "receiver {peer} out: {}", reason.as_str());
                if let Peer::Tcp(a) = peer {
                    let conn = r.conns.lock().unwrap().remove(&a);
                    if let Some(c) = conn {
                        c.close(r);
                    }
                }
                sink.emit_by_name::<()>("client-removed", &[&peer.to_string(), &reason.as_str()]);
            }
            Event::Repair {
                to: RepairTo::Group,
                channel,
                flow,
                block,
                count,
            } => {
                let Some(pad) = imp.pad_of(channel) else {
                    continue;
                };
                gst::log!(
                    CAT,
                    imp = imp,
                    "{count} repairs of block {block} of flow {flow} to channel {channel}'s group"
                );
                pad.push_event(repair_request(flow, block, count, GROUP_DESTINATION));
            }
            Event::Repair {
                to: RepairTo::Receiver(id),
                channel,
                flow,
                block,
                count,
            } => {
                let snapshot = r.snapshot.lock().unwrap().clone();
                let target = snapshot
                    .by_id
                    .get(&id)
                    .or_else(|| snapshot.conns.get(&id).map(|c| &c.target));
                let (Some(target), Some(pad)) = (target, imp.pad_of(channel)) else {
                    continue;
                };
                // Credit for what a refused request (unknown block) never used does not
                // pile up past one burst.
                let burst = u64::from(r.server.lock().unwrap().config().repair_burst);
                let _ = target.stats.repair_credit.fetch_update(
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                    |c| Some(c.saturating_add(u64::from(count)).min(burst.max(1))),
                );
                gst::log!(
                    CAT,
                    imp = imp,
                    "{count} repairs of block {block} of flow {flow} for {}",
                    target.addr
                );
                pad.push_event(repair_request(flow, block, count, id));
            }
        }
    }
}

pub(super) fn empty_stats() -> gst::Structure {
    gst::Structure::builder("fanout-session-sink-stats")
        .field("clients", 0u32)
        .build()
}

pub(super) fn stats(imp: &SessionSink, r: &Running) -> gst::Structure {
    let server = r.server.lock().unwrap();
    let snapshot = r.snapshot.lock().unwrap().clone();
    let s = server.stats;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let channels: Vec<glib::SendValue> = imp
        .sink_pads()
        .iter()
        .map(|p| {
            let c = &p.imp().stats;
            let index = p.index();
            gst::Structure::builder("channel")
                .field("index", u32::from(index))
                .field("name", p.channel_name())
                .field(
                    "clients",
                    snapshot.channels.get(&index).map_or(0, |t| t.len()) as u32,
                )
                .field("buffers", load(&c.buffers))
                .field("bytes", load(&c.bytes))
                .field("datagrams", load(&c.datagrams))
                .field("repairs", load(&c.repairs))
                .field(
                    "multicast-group",
                    p.group().map(|g| g.to_string()).unwrap_or_default(),
                )
                .field("group-datagrams", load(&c.group_datagrams))
                .field("group-repairs", load(&c.group_repairs))
                .field("tcp-frames", load(&c.tcp_frames))
                .build()
                .to_send_value()
        })
        .collect();
    let udp = snapshot
        .by_id
        .iter()
        .map(|(id, t)| (*id, t, None::<&Arc<Conn>>));
    let tcp = snapshot
        .conns
        .iter()
        .map(|(id, c)| (*id, &c.target, Some(c)));
    let receivers: Vec<glib::SendValue> = udp
        .chain(tcp)
        .map(|(id, t, conn)| {
            let st = &t.stats;
            let transport = match conn {
                Some(_) => "tcp",
                None if server.is_multicast(id) => "multicast",
                None => "udp",
            };
            let channels: Vec<String> = server
                .channels_of(id)
                .iter()
                .filter_map(|&c| imp.pad_of(c).map(|p| p.channel_name()))
                .collect();
            let address = server.address_of(id).map(|p| p.to_string());
            gst::Structure::builder("receiver")
                .field("address", address.unwrap_or_default())
                .field("transport", transport)
                .field(
                    "queue-dropped",
                    conn.map_or(0, |c| c.queue.dropped.load(Ordering::Relaxed)),
                )
                .field("channels", channels.join(","))
                .field("packets", load(&st.packets))
                .field("bytes", load(&st.bytes))
                .field("repairs", load(&st.repairs))
                .field("repairs-refused", load(&st.repairs_refused))
                .field("gso-sends", load(&st.gso_sends))
                .field("send-errors", load(&st.send_errors))
                .build()
                .to_send_value()
        })
        .collect();
    gst::Structure::builder("fanout-session-sink-stats")
        .field("clients", server.client_count() as u32)
        .field("gso", r.fanout.gso())
        .field("datagrams-received", s.datagrams)
        .field("foreign", s.foreign)
        .field("malformed", s.malformed)
        .field("hellos", s.hellos)
        .field("joins", s.joins)
        .field("bad-cookies", s.bad_cookies)
        .field("refused", s.refused)
        .field("leaves", s.leaves)
        .field("unknown-session", s.unknown_session)
        .field("lost-reports", s.lost_reports)
        .field("repair-symbols-asked", s.repair_symbols_asked)
        .field("repair-symbols-granted", s.repair_symbols_granted)
        .field("replies-withheld", s.replies_withheld)
        .field("repairs-over-budget", s.repairs_over_budget)
        .field("group-repairs", s.group_repairs)
        .field("group-reports-covered", s.group_reports_covered)
        .field("tcp-connections", r.conns.lock().unwrap().len() as u32)
        .field("channels", gst::Array::from_values(channels))
        .field("receivers", gst::Array::from_values(receivers))
        .build()
}
