// SPDX-License-Identifier: MPL-2.0

//! `session-sink`'s data path, on the streaming threads: every buffer of a channel to every
//! receiver of it, to its multicast group and to its TCP receivers' queues; repair packets
//! to the one receiver or the group that asked. It reads the control thread's snapshot and
//! tells it of failing receivers; it never waits for it.

use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fanout_fec::packet::{self, Packet};
use gst::prelude::*;
use gst::subclass::prelude::*;
use gstfanoutfec::{packet_destination, packing};

use super::hold::release_rate;
use super::pad::{ChannelStats, SessionSinkPad};
use super::shared::{BlockSent, Destination, Shared, Snapshot, ToControl};
use super::tcp::Conn;
use super::wire::Wire;
use super::CAT;
use crate::sendqueue::Frame;
use crate::udp_fanout::{Fanout, Target, Targets};

/// Consecutive failed sends after which a receiver is evicted.
pub(super) const EVICT_AFTER_ERRORS: u64 = 1000;
/// What `wait-for-clients` keeps per channel before upstream has to wait.
const HELD_MAX_BYTES: usize = 32 << 20;

/// Where a channel's packets go, for one chain call.
struct Outputs<'a> {
    pad: &'a SessionSinkPad,
    index: u16,
    wire: Wire,
    unicast: Option<&'a Targets>,
    group: Option<&'a Targets>,
    tcp: &'a [Arc<Conn>],
    stats: &'a ChannelStats,
}

/// A chain call: held while `wait-for-clients` waits (upstream waits once the pad holds
/// too much), then sent.
pub(super) fn chain_list(
    shared: &Shared,
    pad: &SessionSinkPad,
    list: gst::BufferList,
) -> Result<gst::FlowSuccess, gst::FlowError> {
    // Repairs answer a receiver that is in; they can come on the control thread (a repair
    // request pushed upstream is answered at once), which must never wait on the hold it
    // opens.
    if shared.hold.is_waiting() && !list.iter().all(|b| packet_destination(b).is_some()) {
        // Kept here while there is room, so upstream goes on and an EOS (Ctrl-C under
        // gst-launch -e) can reach this pad and end the hold; past that, upstream waits.
        let mut held = pad.imp().held.lock().unwrap();
        let size = list.calculate_size();
        if held.1.saturating_add(size) <= HELD_MAX_BYTES {
            held.1 += size;
            held.0.push(list);
            return Ok(gst::FlowSuccess::Ok);
        }
        drop(held);
        shared.hold.wait(&pad.imp().flushing)?;
    }
    send_held(shared, pad);
    send_list(shared, pad, list)
}

/// What the hold kept for this pad, in order, once it opened.
/// Paced ([`release_rate`]): receivers take it in without overrunning.
pub(super) fn send_held(shared: &Shared, pad: &SessionSinkPad) {
    let (held, bytes) = std::mem::take(&mut *pad.imp().held.lock().unwrap());
    let pts = |l: &gst::BufferList| l.get(0).and_then(|b| b.pts());
    let span = match (held.first().and_then(pts), held.last().and_then(pts)) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a).nseconds()),
        _ => None,
    };
    let rate = release_rate(bytes, span);
    let start = Instant::now();
    let mut sent = 0u64;
    for list in held {
        sent = sent.saturating_add(list.calculate_size() as u64);
        let _ = send_list(shared, pad, list);
        let due = Duration::from_secs_f64(sent as f64 * 8.0 / rate as f64);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
    }
}

fn send_list(
    shared: &Shared,
    pad: &SessionSinkPad,
    list: gst::BufferList,
) -> Result<gst::FlowSuccess, gst::FlowError> {
    let snapshot = shared.snapshot();
    let index = pad.index();
    let out = Outputs {
        pad,
        index,
        wire: Wire::new(index, pad.imp().sealer.lock().unwrap().clone()),
        unicast: snapshot.channels.get(&index),
        group: snapshot.groups.get(&index),
        tcp: snapshot.tcp.get(&index).map_or(&[], |v| v.as_slice()),
        stats: &pad.imp().stats,
    };
    // Runs of packets for everyone go out together; a repair packet goes on its own.
    let mut maps: Vec<Packets<'_>> = Vec::new();
    let flush = |maps: &mut Vec<Packets<'_>>| {
        if maps.is_empty() {
            return;
        }
        let packets: Vec<&[u8]> = maps.iter().flat_map(Packets::slices).collect();
        send_all(shared, &out, &packets);
        maps.clear();
    };
    let mut sent: Option<BlockSent> = None;
    for buffer in list.iter() {
        out.stats.buffers.fetch_add(1, Ordering::Relaxed);
        out.stats
            .bytes
            .fetch_add(buffer.size() as u64, Ordering::Relaxed);
        let Some(packets) = Packets::of(pad, buffer) else {
            continue;
        };
        match packet_destination(buffer) {
            None => {
                let n = packets.slices().count() as u64;
                out.stats.stream_packets.fetch_add(n, Ordering::Relaxed);
                for p in packets.slices() {
                    count_symbol(shared, index, &mut sent, p);
                }
                maps.push(packets)
            }
            Some(dest) => {
                flush(&mut maps);
                match Destination::from_value(&dest) {
                    Some(dest) => {
                        for p in packets.slices() {
                            send_repair(shared, &snapshot, &out, dest, p);
                        }
                    }
                    None => gst::debug!(CAT, obj = pad, "repair for {dest:?}: nobody here"),
                }
            }
        }
    }
    flush(&mut maps);
    if let Some(b) = sent {
        shared.tell(ToControl::Sent(b));
    }
    Ok(gst::FlowSuccess::Ok)
}

/// A buffer's packets: the whole buffer, or where its packet list says (block packing).
struct Packets<'a> {
    map: gst::BufferMap<'a, gst::buffer::Readable>,
    places: Option<Vec<Range<usize>>>,
}

impl<'a> Packets<'a> {
    /// `None` for a buffer that cannot be read or lists its packets wrongly: dropped, said.
    fn of(pad: &SessionSinkPad, buffer: &'a gst::BufferRef) -> Option<Packets<'a>> {
        let Ok(map) = buffer.map_readable() else {
            gst::warning!(CAT, obj = pad, "unreadable buffer dropped");
            return None;
        };
        let places = match packing::packets(buffer) {
            None => None,
            Some(Ok(places)) => Some(places),
            Some(Err(why)) => {
                let before = pad.imp().stats.bad_buffers.fetch_add(1, Ordering::Relaxed);
                gst::warning!(CAT, obj = pad, "block buffer dropped: {why}");
                if let (0, Some(sink)) = (before, pad.parent_element()) {
                    gst::element_warning!(
                        sink,
                        gst::StreamError::Format,
                        (
                            "A buffer on {} listed its packets wrongly: dropped",
                            pad.name()
                        ),
                        ["{why}; counted in the channel's bad-buffers"]
                    );
                }
                return None;
            }
        };
        Some(Packets { map, places })
    }

    fn slices(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let whole = self.places.is_none().then(|| self.map.as_slice());
        let listed = self.places.iter().flatten().map(|r| &self.map[r.clone()]);
        whole.into_iter().chain(listed)
    }
}

/// Counts a stream packet into the block being sent; the block before, if another, is
/// told to the control thread (a list holds one block, or runs of a few).
fn count_symbol(shared: &Shared, channel: u16, sent: &mut Option<BlockSent>, packet: &[u8]) {
    // The payloader's own packets, in this process: the header is all that is wanted.
    let Ok(Packet::Symbol { header: h, .. }) = packet::parse_unchecked(packet) else {
        return;
    };
    match sent {
        Some(b) if (b.flow, b.block) == (h.flow, h.block) => b.symbols += 1,
        _ => {
            if let Some(b) = sent.take() {
                shared.tell(ToControl::Sent(b));
            }
            *sent = Some(BlockSent {
                channel,
                flow: h.flow,
                block: h.block,
                k: h.source_symbols(),
                margin: h.codec.overhead(),
                symbols: 1,
            });
        }
    }
}

/// Packets for everyone: unicast copies, the group once, the TCP receivers' queues.
fn send_all(shared: &Shared, out: &Outputs, packets: &[&[u8]]) {
    out.wire
        .with(out.index, packets, false, |header, datagrams| {
            if let Some(targets) = out.unicast {
                send(shared, out.pad, &shared.fanout, header, datagrams, targets);
            }
            if let Some(group) = out.group {
                send_group(shared, out, header, datagrams, group);
            }
            for conn in out.tcp {
                for d in datagrams {
                    push_tcp(conn, out.stats, header, d);
                }
            }
        });
}

fn send_group(shared: &Shared, out: &Outputs, header: &[u8], datagrams: &[&[u8]], group: &Targets) {
    let Some(fanout) = group_fanout(shared, out.pad, group.list()[0].addr) else {
        return;
    };
    let (sent, _) = fanout.send(header, datagrams, group);
    out.stats
        .group_datagrams
        .fetch_add(sent.datagrams, Ordering::Relaxed);
}

fn group_fanout(
    shared: &Shared,
    pad: &SessionSinkPad,
    group: std::net::SocketAddr,
) -> Option<Arc<Fanout>> {
    shared
        .group_fanout(group)
        .map_err(|e| {
            gst::warning!(
                CAT,
                obj = pad,
                "cannot send to multicast group {group}: {e}"
            )
        })
        .ok()
}

/// A quiet channel's group hears a DATA datagram with an empty payload: receivers
/// waiting to see whether the group reaches them (`transport=auto`) learn it does before
/// the stream starts, instead of falling back to unicast for want of data.
pub(super) fn group_keepalive(shared: &Shared, pad: &SessionSinkPad) {
    let Some(addr) = pad.group() else { return };
    let Some(fanout) = group_fanout(shared, pad, addr) else {
        return;
    };
    let group = Targets::new(vec![Arc::new(Target {
        id: 0,
        addr,
        stats: Arc::default(),
    })]);
    let wire = Wire::new(pad.index(), pad.imp().sealer.lock().unwrap().clone());
    let (sent, _) = wire.with(pad.index(), &[&[]], false, |header, datagrams| {
        fanout.send(header, datagrams, &group)
    });
    pad.imp()
        .stats
        .group_datagrams
        .fetch_add(sent.datagrams, Ordering::Relaxed);
}

/// One DATA datagram (`header ‖ body`) into a TCP receiver's queue.
fn push_tcp(conn: &Conn, stats: &ChannelStats, header: &[u8], body: &[u8]) {
    if let Some(frame) = fanout_session::frame(&[header, body]) {
        stats.tcp_frames.fetch_add(1, Ordering::Relaxed);
        conn.stats.packets.fetch_add(1, Ordering::Relaxed);
        conn.stats
            .bytes
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        conn.queue.push(Frame::Data(frame));
    }
}

/// A repair packet for `dest`: the group, or one receiver of the channel within the
/// credit its loss reports gave it.
fn send_repair(shared: &Shared, snap: &Snapshot, out: &Outputs, dest: Destination, packet: &[u8]) {
    let id = match dest {
        Destination::Group => {
            if let Some(group) = out.group {
                out.stats.repairs.fetch_add(1, Ordering::Relaxed);
                out.stats.group_repairs.fetch_add(1, Ordering::Relaxed);
                out.wire
                    .with(out.index, &[packet], false, |header, datagrams| {
                        send_group(shared, out, header, datagrams, group)
                    });
            }
            return;
        }
        Destination::Receiver(id) => id,
    };
    if !snap
        .members
        .get(&out.index)
        .is_some_and(|m| m.contains(&id))
    {
        return;
    }
    let conn = snap.conns.get(&id);
    let Some(target) = snap.by_id.get(&id).or(conn.map(|(_, t)| t)) else {
        return;
    };
    if !target.stats.take_repair_credit() {
        target.stats.repairs_refused.fetch_add(1, Ordering::Relaxed);
        return;
    }
    out.stats.repairs.fetch_add(1, Ordering::Relaxed);
    target.stats.repairs.fetch_add(1, Ordering::Relaxed);
    out.wire
        .with(out.index, &[packet], true, |header, datagrams| match conn {
            Some((c, _)) => datagrams
                .iter()
                .for_each(|d| push_tcp(c, out.stats, header, d)),
            None => {
                let one = Targets::new(vec![target.clone()]);
                send(shared, out.pad, &shared.fanout, header, datagrams, &one);
            }
        });
}

fn send(
    shared: &Shared,
    pad: &SessionSinkPad,
    fanout: &Fanout,
    header: &[u8],
    packets: &[&[u8]],
    targets: &Targets,
) {
    let (sent, gso_refused) = fanout.send(header, packets, targets);
    pad.imp()
        .stats
        .datagrams
        .fetch_add(sent.datagrams, Ordering::Relaxed);
    if gso_refused && !shared.gso_refusal_told.swap(true, Ordering::Relaxed) {
        gst::debug!(
            CAT,
            obj = pad,
            "the kernel refused UDP GSO: sending plain datagrams from now on"
        );
    }
    if sent.errors > 0 {
        let failing: Vec<u64> = targets
            .list()
            .iter()
            .filter(|t| t.stats.errors_in_a_row.load(Ordering::Relaxed) >= EVICT_AFTER_ERRORS)
            .map(|t| t.id)
            .collect();
        if !failing.is_empty() {
            shared.tell(ToControl::Evict(failing));
        }
    }
}
