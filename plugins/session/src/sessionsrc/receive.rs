// SPDX-License-Identifier: MPL-2.0

//! `session-src`'s channels: pads made from the servers' JOINED (one per channel name,
//! fed by every server that has it), packets queued for them, timestamped with the running
//! time of arrival, and the element's stats.

use std::collections::{HashMap, VecDeque};
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fanout_session::ChannelInfo;
use gst::glib;
use gst::prelude::*;

use super::batch::Batch;
use super::link::ServerLink;
use super::output::{self, Item, PadQueue};
use super::CAT;

/// One server's stream of a channel: the server's place in `host`, and its index for the
/// channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Source {
    pub server: usize,
    pub index: u16,
}

struct ChannelPad {
    /// (server number, the server's index for it): one channel name, any number of servers.
    sources: Vec<Source>,
    /// Sources whose stream ended; EOS when all did.
    ended: Vec<Source>,
    name: String,
    pad: gst::Pad,
    queue: Arc<PadQueue>,
    caps: Option<gst::Caps>,
    /// Caps (and stream-start, segment) pushed for the current `caps`.
    configured: bool,
    eos: bool,
    packets: u64,
    bytes: u64,
    /// Repairs asked for by receivers downstream (an edge's session-sink), per (flow,
    /// block): who asked, how many symbols each is still owed, until when.
    answers: HashMap<(u32, u64), VecDeque<Owed>>,
}

struct Owed {
    to: glib::SendValue,
    left: u32,
    until: Instant,
}

/// An ask the origin answered only in part is forgotten after this: about a repair round.
const OWED_FOR: Duration = Duration::from_secs(1);

/// Blocks with repairs awaited at once, at most: an edge's receivers ask for a few at a time.
const MAX_AWAITED: usize = 4096;

impl ChannelPad {
    /// Who an answer in `b` is owed to, counting it off.
    fn owed(&mut self, b: &gst::BufferRef) -> Option<glib::SendValue> {
        let map = b.map_readable().ok()?;
        let Ok(fanout_fec::packet::Packet::Symbol { header, .. }) = fanout_fec::packet::parse(&map)
        else {
            return None;
        };
        let key = (header.flow, header.block);
        let waiting = self.answers.get_mut(&key)?;
        let now = Instant::now();
        waiting.retain(|o| o.until > now);
        // In turn: an origin that grants less than asked shares it among the askers.
        let mut owed = waiting.pop_front()?;
        let to = owed.to.clone();
        owed.left = owed.left.saturating_sub(1);
        if owed.left > 0 {
            waiting.push_back(owed);
        }
        if waiting.is_empty() {
            self.answers.remove(&key);
        }
        Some(to)
    }
}

/// The channels joined and their pads.
#[derive(Default)]
pub(crate) struct Channels {
    list: Vec<ChannelPad>,
    dropped_not_playing: u64,
    unknown_channel: u64,
    /// Servers that answered a JOIN at least once.
    joined: Vec<usize>,
    no_more_pads: bool,
}

impl Channels {
    pub fn pads(&self) -> impl Iterator<Item = &gst::Pad> {
        self.list.iter().map(|c| &c.pad)
    }

    pub fn sources_of(&self, pad: &gst::Pad) -> Vec<Source> {
        self.list
            .iter()
            .find(|c| &c.pad == pad)
            .map(|c| c.sources.clone())
            .unwrap_or_default()
    }

    /// `count` repair symbols of `block` asked for downstream of `pad`, for `destination`:
    /// the answers that come go to it only.
    pub fn await_answer(
        &mut self,
        pad: &gst::Pad,
        flow: u32,
        block: u64,
        count: u32,
        destination: glib::SendValue,
    ) {
        let Some(c) = self.list.iter_mut().find(|c| &c.pad == pad) else {
            return;
        };
        if c.answers.len() >= MAX_AWAITED {
            // Answers long owed never come: start again rather than grow.
            c.answers.clear();
        }
        c.answers.entry((flow, block)).or_default().push_back(Owed {
            to: destination,
            // What the LOST passed on can ask for at most.
            left: count.min(u32::from(u16::MAX)),
            until: Instant::now() + OWED_FOR,
        });
    }

    fn of(&mut self, number: usize, index: u16) -> Option<&mut ChannelPad> {
        self.list.iter_mut().find(|c| {
            c.sources.contains(&Source {
                server: number,
                index,
            })
        })
    }

    /// Each pad with its queue, to end their tasks without holding the lock (a task may
    /// be in a pad function that takes it).
    pub fn tasks(&self) -> Vec<(gst::Pad, Arc<PadQueue>)> {
        self.list
            .iter()
            .map(|c| (c.pad.clone(), c.queue.clone()))
            .collect()
    }
}

impl Channels {
    /// Whether a server other than `number` answered a JOIN.
    pub fn joined_other(&self, number: usize) -> bool {
        self.joined.iter().any(|&n| n != number)
    }

    pub fn joined_any(&self) -> bool {
        !self.joined.is_empty()
    }

    /// Server `number`'s stream of `channel` ended; the pad ends when all its servers' did.
    pub fn ended(&mut self, number: usize, channel: u16) {
        if let Some(c) = self.of(number, channel).filter(|c| !c.eos) {
            let source = Source {
                server: number,
                index: channel,
            };
            if !c.ended.contains(&source) {
                c.ended.push(source);
            }
            if c.sources.iter().all(|s| c.ended.contains(s)) {
                gst::debug!(CAT, obj = c.pad, "the channel ended");
                c.eos = true;
                c.queue.push(Item::Eos);
            }
        }
    }

    /// EOS sent to the element (`gst-launch-1.0 -e` on Ctrl-C): every pad ends now. False
    /// if there is no pad to end (no server answered yet).
    pub fn end_all(&mut self) -> bool {
        for c in self.list.iter_mut().filter(|c| !c.eos) {
            c.eos = true;
            c.queue.push(Item::Eos);
        }
        !self.list.is_empty()
    }

    /// The channels server `number` gave: a name another server gave already shares its
    /// pad; a new name gets a pad from `make_pad`. Returns the new pads, to be added and
    /// started, and whether they are the first ever (then no-more-pads).
    pub fn add(
        &mut self,
        element: &gst::Element,
        number: usize,
        channels: &[ChannelInfo],
        make_pad: impl Fn(String) -> gst::Pad,
    ) -> (Vec<(gst::Pad, Arc<PadQueue>)>, bool) {
        let mut new = Vec::new();
        if !self.joined.contains(&number) {
            self.joined.push(number);
        }
        for info in channels {
            let caps = if info.caps.is_empty() {
                None
            } else {
                match gst::Caps::from_str(&info.caps) {
                    Ok(c) => Some(c),
                    Err(_) => {
                        gst::warning!(
                            CAT,
                            obj = element,
                            "channel {}: unreadable caps {:?}",
                            info.name,
                            info.caps
                        );
                        None
                    }
                }
            };
            let source = Source {
                server: number,
                index: info.index,
            };
            if let Some(c) = self.list.iter_mut().find(|c| c.name == info.name) {
                if !c.sources.contains(&source) {
                    c.sources.push(source);
                }
                if caps.is_some() && c.caps != caps {
                    c.caps = caps;
                    c.configured = false;
                }
                continue;
            }
            let pad = make_pad(format!("src_{}", self.list.len()));
            self.list.push(ChannelPad {
                sources: vec![source],
                ended: Vec::new(),
                name: info.name.clone(),
                pad: pad.clone(),
                queue: Arc::new(output::pad_queue()),
                caps,
                configured: false,
                eos: false,
                packets: 0,
                bytes: 0,
                answers: HashMap::new(),
            });
            new.push((pad, self.list.last().unwrap().queue.clone()));
        }
        let first = !new.is_empty() && !std::mem::replace(&mut self.no_more_pads, true);
        (new, first)
    }

    /// Queues a packet of `channel` of server `number` for its pad, timestamped `pts` (the
    /// running time of its arrival). An `answer` to a LOST goes to the receiver downstream
    /// that asked for it, if one did.
    pub fn push(
        &mut self,
        number: usize,
        channel: u16,
        batch: Batch,
        answer: bool,
        playing: bool,
        pts: Option<gst::ClockTime>,
    ) {
        if !playing {
            self.dropped_not_playing += 1;
            return;
        }
        let Some(c) = self.of(number, channel) else {
            self.unknown_channel += 1;
            return;
        };
        if c.eos {
            return;
        }
        c.packets += batch.len() as u64;
        c.bytes += batch.bytes() as u64;
        let mut discont = false;
        if !c.configured {
            // Caps unknown (the server's input has none): data without caps, as udpsrc does.
            c.configured = true;
            c.queue.push(Item::Setup(c.caps.clone()));
            discont = true;
        }
        if !answer {
            c.queue.push(Item::Batch {
                batch,
                pts,
                discont,
            });
            return;
        }
        // Answers go on one by one, each to whoever downstream is owed it.
        for i in 0..batch.len() {
            let Some(mut p) = batch.packet(i) else {
                continue;
            };
            let b = p.make_mut();
            if let Some(dest) = c.owed(b) {
                gstfanoutfec::set_packet_destination(b, &dest);
            }
            b.set_pts(pts);
            if discont && i == 0 {
                b.set_flags(gst::BufferFlags::DISCONT);
            }
            c.queue.push(Item::Buffer(p));
        }
    }
}

pub(super) fn empty_stats() -> gst::Structure {
    gst::Structure::builder("fanout-session-src-stats")
        .field("joined", false)
        .build()
}

/// Totals over the servers (`joined`: to any), and `servers`: each one's session.
pub(super) fn stats(links: &[Arc<ServerLink>], ch: &Channels) -> gst::Structure {
    let mut total = fanout_session::client::ClientStats::default();
    let mut joined = false;
    let servers: Vec<glib::SendValue> = links
        .iter()
        .map(|r| {
            let session = r.session.lock().unwrap();
            let c = &session.client;
            let s = c.stats;
            joined |= c.is_joined();
            total += s;
            let reports = session.reports.stats;
            let fallback = &session.fallback;
            let changes: Vec<String> = fallback
                .changes
                .iter()
                .map(|(t, _)| t.as_str().to_owned())
                .collect();
            gst::Structure::builder("server")
                .field("address", r.server.to_string())
                .field("joined", c.is_joined())
                .field("transport", fallback.current().as_str())
                .field("transport-changes", changes.join(","))
                .field("group-datagrams", r.group_datagrams.load(Ordering::Relaxed))
                .field("udp-reads", r.udp_reads.load(Ordering::Relaxed))
                .field("reports-delayed", reports.sent)
                .field("reports-suppressed", reports.suppressed)
                .field("datagrams", s.datagrams)
                .field("data", s.data)
                .field("joins", s.joins)
                .field("lost-reports", s.lost_reports)
                .build()
                .to_send_value()
        })
        .collect();
    let channels: Vec<glib::SendValue> = ch
        .list
        .iter()
        .map(|c| {
            gst::Structure::builder("channel")
                .field("name", &c.name)
                .field("pad", c.pad.name().as_str())
                .field("servers", c.sources.len() as u32)
                .field("packets", c.packets)
                .field("bytes", c.bytes)
                .field("ended", c.eos)
                .field("dropped-overflow", c.queue.dropped())
                .build()
                .to_send_value()
        })
        .collect();
    gst::Structure::builder("fanout-session-src-stats")
        .field("joined", joined)
        .field("datagrams", total.datagrams)
        .field("data", total.data)
        .field("foreign", total.foreign)
        .field("malformed", total.malformed)
        .field("forged", total.forged)
        .field("replayed", total.replayed)
        .field("unkeyed", total.unkeyed)
        .field("joins", total.joins)
        .field("lost-reports", total.lost_reports)
        .field("lost-entries", total.lost_entries)
        .field("dropped-not-playing", ch.dropped_not_playing)
        .field("unknown-channel", ch.unknown_channel)
        .field("servers", gst::Array::from_values(servers))
        .field("channels", gst::Array::from_values(channels))
        .build()
}
