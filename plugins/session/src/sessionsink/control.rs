// SPDX-License-Identifier: MPL-2.0

//! `session-sink`'s control thread: receives the protocol's datagrams, runs the
//! [`Server`](fanout_session::Server) state machine, emits the signals (with no lock held),
//! turns LOST reports into upstream repair requests, tells receivers a channel ended, and
//! posts `stats` every second. The streaming threads only read [`Snapshot`]s it publishes.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use fanout_session::{Event, Now, RemoveReason, Server};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gstfanoutfec::repair_request;

use super::imp::{Running, SessionSink, CAT};
use crate::fanout::{Target, Targets};

/// How long the thread waits for a datagram before it looks at its timers.
const TICK: Duration = Duration::from_millis(20);
/// END is not acknowledged: sent this many times, this far apart.
const END_REPEATS: u32 = 5;
const END_SPACING: Duration = Duration::from_millis(30);
const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// Who gets what, as the streaming threads see it; replaced whole when receivers change.
#[derive(Default)]
pub(crate) struct Snapshot {
    pub channels: HashMap<u16, Targets>,
    pub by_id: HashMap<u64, Arc<Target>>,
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

fn now(start: Instant) -> Now {
    let unix = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    Now {
        mono: start.elapsed().as_nanos() as u64,
        unix,
    }
}

fn rebuild(server: &Server, old: &Snapshot) -> Snapshot {
    let mut snap = Snapshot::default();
    let mut channels: HashMap<u16, Vec<Arc<Target>>> = HashMap::new();
    let mut clients: Vec<(u64, SocketAddr)> = server.clients().collect();
    // In join order: sends then walk the kernel's sockets in a steady order.
    clients.sort_unstable();
    for (id, addr) in clients {
        let target = old.by_id.get(&id).cloned().unwrap_or_else(|| {
            Arc::new(Target {
                id,
                addr,
                stats: Arc::default(),
            })
        });
        for &c in server.channels_of(id) {
            channels.entry(c).or_default().push(target.clone());
        }
        snap.by_id.insert(id, target);
    }
    snap.channels = channels
        .into_iter()
        .map(|(c, list)| (c, Targets::new(list)))
        .collect();
    snap
}

struct PendingEnd {
    channel: u16,
    at: Instant,
    left: u32,
}

pub(super) fn run(weak: glib::WeakRef<super::SessionSink>, r: Arc<Running>) {
    let start = Instant::now();
    let mut buf = vec![0u8; 2048];
    let mut generation = None;
    let mut next_stats = Instant::now() + STATS_INTERVAL;
    let mut ends: Vec<PendingEnd> = Vec::new();
    let mut eos_posted = false;
    while !r.stop.load(Ordering::SeqCst) {
        let received = r.socket.recv_from(&mut buf);
        let Some(sink) = weak.upgrade() else { break };
        let imp = sink.imp();
        match received {
            Ok((n, from)) => {
                let req = r
                    .server
                    .lock()
                    .unwrap()
                    .handle_datagram(now(start), from, &buf[..n]);
                if let Some(req) = req {
                    let token = String::from_utf8_lossy(&req.token).into_owned();
                    let allowed =
                        sink.emit_by_name::<bool>("client-joining", &[&from.to_string(), &token]);
                    let mut server = r.server.lock().unwrap();
                    if allowed {
                        server.accept(now(start), req);
                    } else {
                        gst::info!(CAT, imp = imp, "JOIN from {from} not authorized");
                        server.refuse(req, fanout_session::Reason::NotAuthorized, "");
                    }
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => (),
            // An ICMP error for something sent earlier: nothing to do here.
            Err(e) => gst::trace!(CAT, imp = imp, "receive: {e}"),
        }
        service(imp, &r, start, &mut generation, &mut ends);
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
        if Instant::now() >= next_stats {
            next_stats += STATS_INTERVAL;
            let s = stats(imp, &r);
            let _ = sink.post_message(gst::message::Element::builder(s).src(&sink).build());
        }
    }
}

/// Everything but receiving: timers, evictions, ENDs, replies, events, the snapshot.
fn service(
    imp: &SessionSink,
    r: &Running,
    start: Instant,
    generation: &mut Option<u64>,
    ends: &mut Vec<PendingEnd>,
) {
    let t = now(start);
    let (transmits, events) = {
        let mut server = r.server.lock().unwrap();
        if server.next_timeout().is_some_and(|d| d <= t.mono) {
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
            *r.snapshot.lock().unwrap() = Arc::new(rebuild(&server, &old));
        }
        let transmits: Vec<_> = std::iter::from_fn(|| server.poll_transmit()).collect();
        let events: Vec<_> = std::iter::from_fn(|| server.poll_event()).collect();
        (transmits, events)
    };
    for tx in transmits {
        if let Err(e) = r.socket.send_to(&tx.data, tx.to) {
            gst::debug!(CAT, imp = imp, "reply to {}: {e}", tx.to);
        }
    }
    let sink = imp.obj();
    for e in events {
        match e {
            Event::Added { addr, .. } => {
                gst::info!(CAT, imp = imp, "receiver {addr} joined");
                sink.emit_by_name::<()>("client-added", &[&addr.to_string()]);
            }
            Event::Removed { addr, reason, .. } => {
                gst::info!(CAT, imp = imp, "receiver {addr} out: {}", reason.as_str());
                sink.emit_by_name::<()>("client-removed", &[&addr.to_string(), &reason.as_str()]);
            }
            Event::Repair {
                id,
                channel,
                flow,
                block,
                count,
            } => {
                let snapshot = r.snapshot.lock().unwrap().clone();
                let (Some(target), Some(pad)) = (snapshot.by_id.get(&id), imp.pad_of(channel))
                else {
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
    gst::Structure::builder("application/x-fanout-session-sink-stats")
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
                .build()
                .to_send_value()
        })
        .collect();
    let receivers: Vec<glib::SendValue> = snapshot
        .by_id
        .values()
        .map(|t| {
            let st = &t.stats;
            let channels: Vec<String> = server
                .channels_of(t.id)
                .iter()
                .filter_map(|&c| imp.pad_of(c).map(|p| p.channel_name()))
                .collect();
            gst::Structure::builder("receiver")
                .field("address", t.addr.to_string())
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
    gst::Structure::builder("application/x-fanout-session-sink-stats")
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
        .field("channels", gst::Array::from_values(channels))
        .field("receivers", gst::Array::from_values(receivers))
        .build()
}
