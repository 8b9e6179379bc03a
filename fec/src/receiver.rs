//! The receiving side: merges symbols from any number of packets, sessions or senders of one
//! flow, rebuilds blocks, and gives back the original buffers in order.
//!
//! Sans-IO: fed datagrams and the time, it returns outputs; the element owns clocks and pads.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::ops::Range;
use std::sync::Arc;

use crate::block::{parse_pieces, BufferMeta};
use crate::codec::{BlockDecoder, BlockParams, Codec};
use crate::confirm::{fits, same_but_window, Candidates};
use crate::description::{Description, DescriptionAssembler, Mode};
use crate::guard::{self, AttackWatch, FlowFollower, Presence, NEAR_BLOCKS};
use crate::packet::{self, Packet, SymbolHeader};

#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    /// Only this flow is taken; `None` follows the flow that keeps coming (the first seen
    /// until another outnumbers it).
    pub flow: Option<u32>,
    /// How long (ns) an incomplete block is waited for, from its first packet (stream mode).
    pub latency: u64,
    /// Blocks held at most, waiting for earlier ones; more are refused.
    pub max_pending_blocks: u64,
    /// Bytes of symbols and rebuilt blocks held at most; past it only the block waited
    /// for takes new symbols.
    pub max_buffered_bytes: usize,
    /// How long (ns) an incomplete block waits before [`Receiver::missing`] reports it (at
    /// once when a later block's packets arrive); reported again after as long twice, then
    /// after twice as long each time (a long latency leaves room for repairs that come
    /// from far), at most [`MAX_REPORTS`] times. 0: never reported.
    pub report_delay: u64,
}

/// Times one block is reported missing at most.
pub const MAX_REPORTS: u8 = 8;

/// How long after its `reports`-th report a block is reported again: `delay`, `delay`,
/// then doubling (with the default 200 ms latency that is 3 reports, with 1 s 6).
fn report_gap(delay: u64, reports: u8) -> u64 {
    delay.saturating_mul(1 << reports.saturating_sub(2).min(16))
}
/// Blocks one call to [`Receiver::missing`] reports at most.
pub const MAX_MISSING: usize = 16;

/// A block waited for that is short of symbols: `needed` more would rebuild it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Missing {
    pub block: u64,
    pub needed: u32,
}

/// How long an incomplete block is waited for by default (ns): `fec-depayloader`'s `latency`.
pub const DEFAULT_LATENCY: u64 = 200_000_000;

impl Default for ReceiverConfig {
    fn default() -> Self {
        ReceiverConfig {
            flow: None,
            latency: DEFAULT_LATENCY,
            max_pending_blocks: 256,
            max_buffered_bytes: 256 << 20,
            report_delay: 0,
        }
    }
}

/// The bytes of one rebuilt buffer: a range of a decoded block, shared without a copy, or,
/// for a buffer spanning blocks, bytes of its own.
#[derive(Debug, Clone)]
pub enum Payload {
    Shared(Arc<Vec<u8>>, Range<usize>),
    Owned(Vec<u8>),
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        match self {
            Payload::Shared(block, range) => &block[range.clone()],
            Payload::Owned(v) => v,
        }
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.as_ref() == other.as_ref()
    }
}

impl Eq for Payload {}

#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    /// The stream description changed (first one included).
    Description(Description),
    /// One original buffer; `discont` after a loss.
    Buffer {
        meta: BufferMeta,
        data: Payload,
        discont: bool,
    },
    /// Blocks `first..first + count` could not be rebuilt in time; they held about `bytes`
    /// (their padded length; for blocks of which nothing arrived, a guess from the latest).
    Lost { first: u64, count: u64, bytes: u64 },
    /// After a loss, the time (ns) the lost buffers covered: from the end of the last buffer
    /// given out to the start of the next one.
    Gap { start: u64, duration: u64 },
    /// Packets that look forged have kept coming for seconds (said once): `suspect` of them.
    Attack { suspect: u64 },
    /// The sender restarted (a new stream identity, confirmed, while the stream followed had
    /// stopped): what was held of the old stream went out or was given up (`lost_blocks`,
    /// about `lost_bytes`, and `partial_buffers` cut short), and the new stream starts over
    /// at its own blocks (the next buffer has `discont`; new caps follow as a description
    /// if they changed). `resume`: where the old stream's output ended (its last buffer's
    /// PTS + duration), from which the new stream's times may be made to run on.
    Restart {
        stream: u64,
        lost_blocks: u64,
        lost_bytes: u64,
        partial_buffers: u64,
        resume: Option<u64>,
    },
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReceiverStats {
    pub packets: u64,
    /// Truncated, garbage, wrong version or checksum, or invalid header.
    pub malformed: u64,
    pub other_flow: u64,
    pub duplicates: u64,
    /// For blocks already given up: they came too late to help.
    pub late: u64,
    /// For blocks already rebuilt and given out: repair symbols that were not needed.
    pub surplus: u64,
    /// Contradicting the stream description (codec, symbol size, K above its maximum) or
    /// what the first packets of the same block said.
    pub inconsistent: u64,
    /// Too far ahead of the block being waited for.
    pub out_of_range: u64,
    /// Refused: the block has more symbols than any decoding needs, or memory is full.
    pub excess: u64,
    pub symbols: u64,
    pub blocks_decoded: u64,
    /// Decoded blocks that needed repair symbols.
    pub blocks_recovered: u64,
    pub blocks_lost: u64,
    /// Decodings whose content did not parse (a faulty or forged sender).
    pub bad_blocks: u64,
    pub buffers: u64,
    /// Bytes of the buffers given out.
    pub bytes_out: u64,
    /// About how many bytes the lost blocks held (see [`Output::Lost`]).
    pub lost_bytes: u64,
    /// Buffers cut by a lost block and dropped.
    pub partial_buffers_dropped: u64,
    pub descriptions: u64,
    pub resyncs: u64,
    /// Symbols of a block far ahead of the stream dropped when the stream did not reach it
    /// within the latency (a forged block number).
    pub unconfirmed: u64,
    /// Rebuilt variants of a block dropped for another one with more packets (forged).
    pub outvoted: u64,
    /// New descriptions dropped before they were confirmed (another came first).
    pub unconfirmed_descriptions: u64,
    /// Times `flow: None` left the flow it followed for one that kept coming.
    pub flow_switches: u64,
    /// Times the sender restarted (a new stream identity) and the receiver started over.
    pub restarts: u64,
    /// Symbols of a restarted sender that came before its restart was confirmed, taken
    /// into the new stream then (also counted `late`, `surplus` or `out-of-range` when they
    /// came).
    pub restart_replayed: u64,
}

impl ReceiverStats {
    /// Packets that look forged or foreign, for the attack watch (other flows only when
    /// following whichever keeps coming: a set flow shares its port on purpose).
    pub fn suspect(&self, following: bool) -> u64 {
        let other = if following { self.other_flow } else { 0 };
        [
            self.malformed,
            other,
            self.inconsistent,
            self.out_of_range,
            self.bad_blocks,
            self.unconfirmed,
            self.outvoted,
            self.unconfirmed_descriptions,
        ]
        .iter()
        .fold(0u64, |a, b| a.saturating_add(*b))
    }
}

/// Symbols of one block that agree on its parameters (codec, F, T, pool).
struct Variant {
    params: BlockParams,
    k: u32,
    decoder: Option<BlockDecoder>,
    /// Distinct ESIs (also after decoding): the genuine variant has the most.
    seen: HashSet<u32>,
    source_seen: u32,
    /// The rebuilt block, content checked, waiting for its turn.
    decoded: Option<Vec<u8>>,
    /// When its first packet came.
    first_seen: u64,
}

struct PendingBlock {
    first_seen: u64,
    /// Its first packet was far ahead of the stream: until the stream gets there, it moves
    /// nothing, and once its latency is up it is dropped rather than given out.
    born_far: bool,
    /// Normally one; packets contradicting the first ones get their own, so a forged or
    /// damaged first packet cannot make the real ones unusable.
    variants: Vec<Variant>,
    /// Bytes held for this block (symbols, then the rebuilt blocks).
    bytes: usize,
    /// When it was last reported missing, and how often.
    reported: Option<u64>,
    reports: u8,
}

struct PartialBuffer {
    meta: BufferMeta,
    data: Vec<u8>,
}

/// Symbols beyond K a block takes at most: RaptorQ fails to decode with K + 2 about once
/// in a million, so more only come from a broken or forged sender.
const MAX_SURPLUS: u32 = 32;

/// Parameter sets kept per block at most.
const MAX_VARIANTS: usize = 3;

impl PendingBlock {
    fn decoded(&self) -> bool {
        self.variants.iter().any(|v| v.decoded.is_some())
    }

    fn symbols(&self) -> u64 {
        self.variants.iter().map(|v| v.seen.len() as u64).sum()
    }
}

/// What to do with the block waited for.
enum Turn {
    /// Give out this variant's content.
    Give(usize),
    /// Not rebuilt yet, or a variant with more packets may still be.
    Wait,
}

/// Consecutive out-of-range packets after which the sender is taken to have restarted.
const RESYNC_AFTER: u32 = 256;

/// How long (ns) symbols behind the stream are kept while a description of another stream
/// (a restarted sender) is weighed: they are the new stream's first blocks.
const STASH_AGE: u64 = 10_000_000_000;

/// A symbol behind the stream followed, kept in case it is a restarted sender's.
struct Stashed {
    at: u64,
    header: SymbolHeader,
    data: Vec<u8>,
}

pub struct Receiver {
    cfg: ReceiverConfig,
    flow: Option<u32>,
    descriptions: DescriptionAssembler,
    description: Option<Description>,
    /// New descriptions waiting for confirmation.
    candidates: Candidates,
    blocks: BTreeMap<u64, PendingBlock>,
    next: Option<u64>,
    /// A buffer whose first pieces are in, waiting for the rest.
    partial: Option<PartialBuffer>,
    discont: bool,
    /// End (PTS + duration) of the last buffer given out.
    last_end: Option<u64>,
    out_of_range_run: u32,
    buffered: usize,
    /// Something was given out (or given up): from then on `next` only moves forward.
    started: bool,
    /// Blocks of which no packet arrived, reported missing: when last, and how often.
    absent: BTreeMap<u64, (Option<u64>, u8)>,
    /// Codec and K of the latest block seen: the guess for a block of which nothing came.
    last_k: Option<(Codec, u32)>,
    /// The latest blocks given up (at most `max_pending_blocks`): a symbol for one is late,
    /// one for any other block already behind is surplus.
    given_up: BTreeSet<u64>,
    /// When the stream was last near the block waited for.
    presence: Presence,
    follower: FlowFollower,
    attack: AttackWatch,
    /// When the stream was last seen at its position (the block waited for, the one just
    /// before, or near after): a running sender always sends there, a restarted one does
    /// not (it numbers from 0 again).
    ahead: Presence,
    /// When the description in force last came.
    described: Presence,
    /// Symbols behind the stream while a description of another stream is weighed.
    stash: VecDeque<Stashed>,
    stash_bytes: usize,
    pub stats: ReceiverStats,
}

impl Receiver {
    pub fn new(cfg: ReceiverConfig) -> Receiver {
        Receiver {
            flow: cfg.flow,
            cfg,
            descriptions: DescriptionAssembler::default(),
            description: None,
            candidates: Candidates::default(),
            blocks: BTreeMap::new(),
            next: None,
            partial: None,
            discont: false,
            last_end: None,
            out_of_range_run: 0,
            buffered: 0,
            started: false,
            absent: BTreeMap::new(),
            last_k: None,
            given_up: BTreeSet::new(),
            presence: Presence::default(),
            follower: FlowFollower::default(),
            attack: AttackWatch::default(),
            ahead: Presence::default(),
            described: Presence::default(),
            stash: VecDeque::new(),
            stash_bytes: 0,
            stats: ReceiverStats::default(),
        }
    }

    pub fn description(&self) -> Option<&Description> {
        self.description.as_ref()
    }

    /// Takes one datagram received at `now` (ns, any monotonic clock).
    pub fn push(&mut self, datagram: &[u8], now: u64, out: &mut Vec<Output>) {
        self.stats.packets += 1;
        self.push_packet(datagram, now, out);
        let following = self.cfg.flow.is_none();
        if self.attack.update(self.stats.suspect(following), now) {
            out.push(Output::Attack {
                suspect: self.stats.suspect(following),
            });
        }
    }

    fn push_packet(&mut self, datagram: &[u8], now: u64, out: &mut Vec<Output>) {
        let packet = match packet::parse(datagram) {
            Ok(p) => p,
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        let flow = match packet {
            Packet::Symbol { header, .. } => header.flow,
            Packet::Description { flow, .. } => flow,
        };
        let current = *self.flow.get_or_insert(flow);
        if self.cfg.flow.is_none() {
            if let Some(other) = self.follower.packet(flow, current, self.started, now) {
                self.follow(other);
            }
        }
        if self.flow != Some(flow) {
            self.stats.other_flow += 1;
            return;
        }
        match packet {
            Packet::Description {
                version,
                index,
                count,
                total_len,
                data,
                ..
            } => match self
                .descriptions
                .add(version, index, count, total_len, data)
            {
                Ok(Some(desc)) => self.offer_description(desc, now, out),
                Ok(None) => (),
                Err(_) => self.stats.malformed += 1,
            },
            Packet::Symbol { header, data } => {
                if self.next.is_some() {
                    self.presence.start(now);
                }
                self.candidates.symbol(&header.params());
                let rebuilt = self.add_symbol(&header, data, now);
                if rebuilt && self.description.is_none() {
                    // The first description, confirmed by a block of the stream.
                    if let Some(desc) = self.candidates.take_latest_fitting(&header.params()) {
                        self.described.seen(now);
                        self.set_description(desc, out);
                    }
                }
            }
        }
        if self.next.is_some() {
            self.presence.start(now);
        }
        self.check_restart(now, out);
        self.drain(now, out);
    }

    /// A description of another stream (a restarted sender) takes effect once confirmed as
    /// any change is, and only when the stream in force has stopped: nothing came at its
    /// position for `latency` (at least twice its usual pause) — the receiver then starts
    /// over at the new stream's blocks — or its description has not come for as long (a
    /// sender of the same blocks taking over: the description changes, nothing is dropped).
    /// A running sender keeps both coming, so no forged packet resets the receiver.
    fn check_restart(&mut self, now: u64, out: &mut Vec<Output>) {
        let Some(stream) = self.description.as_ref().map(|d| d.stream) else {
            return;
        };
        if !self.candidates.other_stream(stream) {
            self.stash.clear();
            self.stash_bytes = 0;
            return;
        }
        let latency = self.cfg.latency;
        let stopped = now >= self.ahead.silent_from(latency);
        let undescribed = now >= self.described.silent_from(latency);
        if !stopped && !undescribed {
            return;
        }
        let Some(desc) = self.candidates.take_new_stream(stream) else {
            return;
        };
        match stopped {
            true => self.restart(desc, out),
            false => self.set_description(desc, out),
        }
        self.described = Presence::default();
        self.described.seen(now);
    }

    /// The sender restarted: the old stream ends (what is rebuilt goes out, the rest is
    /// given up, as at its end), the new one starts as a receiver joining now would, with
    /// the symbols it sent since the old stream's last packet.
    fn restart(&mut self, desc: Description, out: &mut Vec<Output>) {
        let (lost, lost_bytes, partial) = (
            self.stats.blocks_lost,
            self.stats.lost_bytes,
            self.stats.partial_buffers_dropped,
        );
        self.end_of_stream(out);
        let resume = self.last_end;
        let since = self.ahead.last();
        let stash = std::mem::take(&mut self.stash);
        self.stash_bytes = 0;
        self.resync();
        self.stats.resyncs -= 1;
        self.stats.restarts += 1;
        self.last_end = None;
        self.presence = Presence::default();
        self.ahead = Presence::default();
        out.push(Output::Restart {
            stream: desc.stream,
            lost_blocks: self.stats.blocks_lost - lost,
            lost_bytes: self.stats.lost_bytes.saturating_sub(lost_bytes),
            partial_buffers: self.stats.partial_buffers_dropped - partial,
            resume,
        });
        self.set_description(desc, out);
        for s in stash {
            if since.is_none_or(|t| s.at > t) {
                self.stats.restart_replayed += 1;
                self.add_symbol(&s.header, &s.data, s.at);
            }
        }
    }

    /// Keeps a symbol behind the stream while a description of another stream is weighed:
    /// if that is a restarted sender's, it is one of its first blocks. Bounded by
    /// [`STASH_AGE`] and a quarter of `max_buffered_bytes`.
    fn stash_symbol(&mut self, h: &SymbolHeader, data: &[u8], now: u64) {
        let Some(stream) = self.description.as_ref().map(|d| d.stream) else {
            return;
        };
        let limit = self.cfg.max_buffered_bytes / 4;
        if !self.candidates.other_stream(stream) || data.len() > limit {
            return;
        }
        while let Some(first) = self.stash.front() {
            if self.stash_bytes + data.len() <= limit && now.saturating_sub(first.at) <= STASH_AGE {
                break;
            }
            self.stash_bytes -= first.data.len();
            self.stash.pop_front();
        }
        self.stash_bytes += data.len();
        self.stash.push_back(Stashed {
            at: now,
            header: *h,
            data: data.to_vec(),
        });
    }

    /// The stream ends: everything decoded goes out in order, the rest is given up. Blocks
    /// first seen far ahead that the stream never reached were not its.
    fn end_of_stream(&mut self, out: &mut Vec<Output>) {
        let far: Vec<u64> = self
            .blocks
            .iter()
            .filter(|(_, b)| b.born_far)
            .map(|(&n, _)| n)
            .collect();
        for n in far {
            self.drop_stale_far(n, u64::MAX);
        }
        self.drain(u64::MAX, out);
    }

    /// Gives up on blocks whose time is up; call when [`Self::deadline`] passes.
    pub fn handle_timeout(&mut self, now: u64, out: &mut Vec<Output>) {
        self.drain(now, out);
    }

    /// End of stream: gives out everything decoded, in order, and declares the rest lost.
    pub fn finish(&mut self, out: &mut Vec<Output>) {
        if self.description.is_none() {
            return;
        }
        self.end_of_stream(out);
        if self.partial.take().is_some() {
            self.stats.partial_buffers_dropped += 1;
        }
    }

    /// When the block waited for will be given up, if a packet does not complete it first:
    /// `latency` after its own first packet; for a run of blocks of which nothing came, after
    /// the first packet of the block held after them, and if that one is far ahead, not before
    /// the stream has gone from near the block waited for (one forged packet far ahead moves
    /// nothing).
    pub fn deadline(&self) -> Option<u64> {
        if self.description.as_ref()?.mode == Mode::Carousel {
            return None;
        }
        let next = self.next?;
        let (&held, block) = self.blocks.range(next..).next()?;
        let own = block.first_seen.saturating_add(self.cfg.latency);
        if guard::near(held, next) {
            return Some(own);
        }
        // Far ahead: only a stream that rebuilds blocks there corroborates it (a forged
        // symbol does not), and only once the stream has left the block waited for.
        let far = held..=held.saturating_add(NEAR_BLOCKS);
        if !self.blocks.range(far).any(|(_, b)| b.decoded()) {
            return Some(u64::MAX);
        }
        Some(own.max(self.presence.silent_from(self.cfg.latency)))
    }

    /// The flow taken.
    pub fn flow(&self) -> Option<u32> {
        self.flow
    }

    /// Blocks waited for that are still short of symbols and due for a (first or repeated)
    /// report at `now`: what a repair request should ask for. Stream mode only (a carousel
    /// brings every block round again), never for codec none, at most [`MAX_MISSING`].
    /// A block none of whose packets arrived, though a later one's did, is asked for with
    /// the K of the latest block seen.
    pub fn missing(&mut self, now: u64, out: &mut Vec<Missing>) {
        let delay = self.cfg.report_delay;
        let (Some(next), Some(desc)) = (self.next, &self.description) else {
            return;
        };
        if delay == 0 || desc.mode == Mode::Carousel {
            return;
        }
        // Blocks far ahead (maybe forged) make no run of absent blocks to ask for.
        let horizon = next.saturating_add(NEAR_BLOCKS);
        let newest = self
            .blocks
            .range(..=horizon)
            .next_back()
            .map_or(0, |(&n, _)| n);
        for (&n, b) in self.blocks.range_mut(next..=horizon) {
            if out.len() >= MAX_MISSING {
                break;
            }
            let decoded = b.decoded();
            let Some(v) = b.variants.first().filter(|v| v.decoder.is_some()) else {
                continue;
            };
            if decoded || b.reports >= MAX_REPORTS || v.params.codec == Codec::None {
                continue;
            }
            let due = match b.reported {
                None => newest > n || now >= b.first_seen.saturating_add(delay),
                Some(t) => now >= t.saturating_add(report_gap(delay, b.reports)),
            };
            if !due {
                continue;
            }
            // RaptorQ decodes from K symbols almost always, from K + 2 all but once in a
            // million; Reed-Solomon from exactly K.
            let margin = if v.params.codec == Codec::RaptorQ {
                2
            } else {
                0
            };
            let have = v.seen.len() as u32;
            let needed = v.k.saturating_add(margin).saturating_sub(have).max(1);
            b.reported = Some(now);
            b.reports += 1;
            out.push(Missing { block: n, needed });
        }
        self.missing_absent(now, next, newest, out);
    }

    /// Blocks of which nothing arrived though a later one did: asked for with the K of the
    /// latest block seen (a guess; the repairs that come make the block known, and a short
    /// guess is completed by the next report).
    fn missing_absent(&mut self, now: u64, next: u64, newest: u64, out: &mut Vec<Missing>) {
        let delay = self.cfg.report_delay;
        self.absent = self.absent.split_off(&next);
        let Some((codec, k)) = self.last_k.filter(|(c, _)| *c != Codec::None) else {
            return;
        };
        let margin = if codec == Codec::RaptorQ { 2 } else { 0 };
        let needed = k.saturating_add(margin).max(1);
        let mut n = next;
        while n < newest && out.len() < MAX_MISSING {
            let Some(&held) = self.blocks.range(n..).next().map(|(h, _)| h) else {
                break;
            };
            if held == n {
                self.absent.remove(&n);
                n += 1;
                continue;
            }
            while n < held && out.len() < MAX_MISSING {
                let (reported, reports) = self.absent.entry(n).or_insert((None, 0));
                let due =
                    reported.is_none_or(|t| now >= t.saturating_add(report_gap(delay, *reports)));
                if due && *reports < MAX_REPORTS {
                    *reported = Some(now);
                    *reports += 1;
                    out.push(Missing { block: n, needed });
                }
                n += 1;
            }
        }
    }

    /// When [`Self::missing`] next has something to report, if no packet comes first.
    pub fn next_report(&self) -> Option<u64> {
        let delay = self.cfg.report_delay;
        let next = self.next?;
        if delay == 0 || self.description.as_ref()?.mode == Mode::Carousel {
            return None;
        }
        let held = self
            .blocks
            .range(next..=next.saturating_add(NEAR_BLOCKS))
            .filter(|(_, b)| !b.decoded() && b.reports < MAX_REPORTS)
            .filter(|(_, b)| {
                b.variants
                    .first()
                    .is_some_and(|v| v.decoder.is_some() && v.params.codec != Codec::None)
            })
            .map(|(_, b)| match b.reported {
                None => b.first_seen.saturating_add(delay),
                Some(t) => t.saturating_add(report_gap(delay, b.reports)),
            });
        let absent = self
            .absent
            .range(next..)
            .filter(|(n, (_, reports))| *reports < MAX_REPORTS && !self.blocks.contains_key(n))
            .filter_map(|(_, (reported, reports))| {
                reported.map(|t| t.saturating_add(report_gap(delay, *reports)))
            });
        held.chain(absent).min()
    }

    /// A description assembled: the one in force again, or a new one, which takes effect only
    /// once confirmed (anyone can send one; see [`Candidates`]). The first one also when
    /// symbols that fit it are held already or a block that fits it is rebuilt, if no other
    /// competes. A window moving forward within what was received takes effect at once.
    fn offer_description(&mut self, desc: Description, now: u64, out: &mut Vec<Output>) {
        if self.description.as_ref() == Some(&desc) {
            self.described.seen(now);
            self.stats.unconfirmed_descriptions += self.candidates.current_arrived();
            return;
        }
        if let Some(current) = &self.description {
            let newest = self.blocks.keys().next_back().copied().unwrap_or(0);
            let newest = newest.max(self.next.unwrap_or(0));
            // Stream mode reads the window for nothing but a late packet's name.
            let plausible = desc.mode == Mode::Stream
                || (desc.first_block >= current.first_block
                    && desc.first_block <= newest.saturating_add(1));
            if same_but_window(current, &desc) {
                self.described.seen(now);
                self.stats.unconfirmed_descriptions += self.candidates.current_arrived();
                if plausible {
                    self.set_description(desc, out);
                }
                return;
            }
        }
        let current = self.description.is_some();
        let (confirmed, dropped) = self.candidates.arrived(desc, self.description.as_ref());
        self.stats.unconfirmed_descriptions += dropped;
        if let Some(desc) = confirmed {
            self.described.seen(now);
            return self.set_description(desc, out);
        }
        if !current {
            let held: Vec<BlockParams> = self
                .blocks
                .values()
                .flat_map(|b| b.variants.iter().map(|v| v.params))
                .collect();
            if let Some(desc) = held
                .iter()
                .find_map(|p| self.candidates.take_only_fitting(p))
            {
                self.described.seen(now);
                self.set_description(desc, out);
            }
        }
    }

    fn set_description(&mut self, desc: Description, out: &mut Vec<Output>) {
        self.stats.descriptions += 1;
        if self
            .description
            .as_ref()
            .is_none_or(|d| !same_but_window(d, &desc))
        {
            // The others start over against the one now in force.
            self.stats.unconfirmed_descriptions += self.candidates.clear();
        }
        // Variants held that contradict it were not the sender's.
        for block in self.blocks.values_mut() {
            block.variants.retain(|v| {
                let keep = fits(Some(&desc), &v.params);
                if !keep {
                    let held = match &v.decoded {
                        Some(d) => d.len(),
                        None => v.seen.len() * usize::from(v.params.symbol_size),
                    };
                    let held = held.min(block.bytes);
                    block.bytes -= held;
                    self.buffered -= held;
                    self.stats.inconsistent += v.seen.len() as u64;
                }
                keep
            });
            // Its time runs from the first packet of what is left.
            if let Some(t) = block.variants.iter().map(|v| v.first_seen).min() {
                block.first_seen = t;
            }
        }
        // A block left with nothing was never the sender's: it is made anew by its packets.
        let empty: Vec<u64> = self
            .blocks
            .iter()
            .filter(|(_, b)| b.variants.is_empty())
            .map(|(&n, _)| n)
            .collect();
        for n in empty {
            self.remove(n);
        }
        let caps_changed = self.description.as_ref().map(|d| &d.caps) != Some(&desc.caps);
        if self.next.is_none() {
            self.next = match desc.mode {
                Mode::Carousel => Some(desc.first_block),
                Mode::Stream => self.blocks.keys().next().copied(),
            };
            if let Some(next) = self.next {
                self.blocks = self.blocks.split_off(&next);
                self.buffered = self.blocks.values().map(|b| b.bytes).sum();
                self.mark_far();
            }
        }
        if caps_changed
            || self.description.as_ref().map(|d| d.time_segment) != Some(desc.time_segment)
        {
            out.push(Output::Description(desc.clone()));
        }
        self.description = Some(desc);
    }

    /// Takes a symbol; true if it rebuilt a block whose content parses.
    fn add_symbol(&mut self, h: &SymbolHeader, data: &[u8], now: u64) -> bool {
        if self.next.is_some_and(|n| h.block < n && !self.started) {
            // Before anything is given out, an earlier block is where the stream starts; blocks
            // too far from it (a forged or stale first packet) are dropped.
            self.next = Some(h.block);
            let too_far = h.block.saturating_add(self.cfg.max_pending_blocks);
            for (_, b) in self.blocks.split_off(&too_far) {
                self.buffered -= b.bytes;
            }
            self.mark_far();
        }
        if let Some(next) = self.next {
            if guard::near(h.block, next) {
                self.presence.seen(now);
                if h.block.saturating_add(1) >= next {
                    self.ahead.seen(now);
                }
            }
            let far_behind = h.block < next.saturating_sub(self.cfg.max_pending_blocks)
                && self
                    .description
                    .as_ref()
                    .is_none_or(|d| d.mode == Mode::Stream || h.block < d.first_block);
            if h.block < next && !far_behind {
                match self.given_up.contains(&h.block) {
                    true => self.stats.late += 1,
                    false => self.stats.surplus += 1,
                }
                self.out_of_range_run = 0;
                self.stash_symbol(h, data, now);
                return false;
            }
            if far_behind || h.block.saturating_sub(next) >= self.cfg.max_pending_blocks {
                if far_behind {
                    self.stash_symbol(h, data, now);
                }
                // A sender restarting (block numbers from anywhere) shows as a run of these.
                self.stats.out_of_range += 1;
                self.out_of_range_run += 1;
                if self.out_of_range_run >= RESYNC_AFTER {
                    self.resync();
                }
                return false;
            }
        } else if !self.blocks.contains_key(&h.block)
            && self.blocks.len() as u64 >= self.cfg.max_pending_blocks
        {
            // Not started yet (no description): keep the newest blocks only.
            if let Some((_, b)) = self.blocks.pop_first() {
                self.buffered -= b.bytes;
            }
        }
        self.out_of_range_run = 0;
        let params = h.params();
        if !fits(self.description.as_ref(), &params) {
            self.stats.inconsistent += 1;
            return false;
        }
        if self.buffered + data.len() > self.cfg.max_buffered_bytes && Some(h.block) != self.next {
            self.stats.excess += 1;
            return false;
        }
        self.drop_stale_far(h.block, now);
        let born_far = self
            .next
            .is_some_and(|n| h.block > n.saturating_add(NEAR_BLOCKS));
        let block = self.blocks.entry(h.block).or_insert_with(|| PendingBlock {
            first_seen: now,
            born_far,
            variants: Vec::new(),
            bytes: 0,
            reported: None,
            reports: 0,
        });
        let i = match block.variants.iter().position(|v| v.params == params) {
            Some(i) => i,
            None => {
                // Full: a variant of one packet gives way (a forged packet cannot keep the
                // genuine ones out); otherwise the newcomer is refused.
                if block.variants.len() >= MAX_VARIANTS {
                    let weakest = (0..block.variants.len())
                        .filter(|&j| block.variants[j].decoded.is_none())
                        .min_by_key(|&j| block.variants[j].seen.len())
                        .filter(|&j| block.variants[j].seen.len() <= 1);
                    let Some(j) = weakest else {
                        self.stats.inconsistent += 1;
                        return false;
                    };
                    let gone = block.variants.remove(j);
                    let bytes = gone.seen.len() * usize::from(gone.params.symbol_size);
                    block.bytes -= bytes;
                    self.buffered -= bytes;
                }
                if !born_far {
                    self.last_k = Some((params.codec, h.source_symbols()));
                }
                block.variants.push(Variant {
                    params,
                    k: h.source_symbols(),
                    decoder: BlockDecoder::new(&params),
                    seen: HashSet::new(),
                    source_seen: 0,
                    decoded: None,
                    first_seen: now,
                });
                block.variants.len() - 1
            }
        };
        let another_rebuilt = block.decoded();
        let variant = &mut block.variants[i];
        if variant.seen.len() as u32 >= variant.k.saturating_add(MAX_SURPLUS)
            && !variant.seen.contains(&h.esi)
        {
            self.stats.excess += 1;
            return false;
        }
        if variant.decoded.is_some() {
            // Counted for the vote, held no more.
            variant.seen.insert(h.esi);
            self.stats.duplicates += 1;
            return false;
        }
        // Before a description is in force, which variant is the sender's is not known yet.
        if (i > 0 || another_rebuilt) && self.description.is_some() {
            self.stats.inconsistent += 1;
        }
        if !variant.seen.insert(h.esi) {
            self.stats.duplicates += 1;
            return false;
        }
        self.stats.symbols += 1;
        block.bytes += data.len();
        self.buffered += data.len();
        if h.esi < variant.k {
            variant.source_seen += 1;
        }
        let Some(decoder) = variant.decoder.as_mut() else {
            return false;
        };
        let Some(mut bytes) = decoder.add(h.esi, data) else {
            return false;
        };
        bytes.truncate(h.transfer_length as usize);
        variant.decoder = None;
        // A variant decoding to content that does not parse was not the sender's block.
        if parse_pieces(&bytes).is_none() {
            self.stats.bad_blocks += 1;
            return false;
        }
        self.stats.blocks_decoded += 1;
        if variant.source_seen < variant.k {
            self.stats.blocks_recovered += 1;
        }
        // The symbols held give way to the rebuilt block.
        let held = variant.seen.len() * usize::from(variant.params.symbol_size);
        let held = held.min(block.bytes);
        self.buffered = self.buffered - held + bytes.len();
        block.bytes = block.bytes - held + bytes.len();
        variant.decoded = Some(bytes);
        true
    }

    /// Where the stream starts is known (or earlier): blocks held far ahead of it count as
    /// first seen far ahead.
    fn mark_far(&mut self) {
        let Some(next) = self.next else { return };
        for (_, b) in self
            .blocks
            .range_mut(next.saturating_add(NEAR_BLOCKS + 1)..)
        {
            b.born_far = true;
        }
    }

    /// A block first seen far ahead of the stream whose latency is up before the stream got
    /// there is dropped (its symbols counted `unconfirmed`): what it held was forged or stale.
    fn drop_stale_far(&mut self, number: u64, now: u64) {
        let stale = self
            .blocks
            .get(&number)
            .is_some_and(|b| b.born_far && now >= b.first_seen.saturating_add(self.cfg.latency));
        if stale
            && self
                .description
                .as_ref()
                .is_none_or(|d| d.mode == Mode::Stream)
        {
            if let Some(b) = self.remove(number) {
                self.stats.unconfirmed = self.stats.unconfirmed.saturating_add(b.symbols());
            }
        }
    }

    /// Which variant of the block waited for goes out: the rebuilt one with the most packets,
    /// if no variant that fits the description has more (the genuine block has the most).
    fn turn(&self, number: u64) -> Turn {
        let Some(block) = self.blocks.get(&number) else {
            return Turn::Wait;
        };
        let desc = self.description.as_ref();
        let fitting = || {
            block
                .variants
                .iter()
                .enumerate()
                .filter(|(_, v)| fits(desc, &v.params))
        };
        let most = fitting().map(|(_, v)| v.seen.len()).max().unwrap_or(0);
        fitting()
            .filter(|(_, v)| v.decoded.is_some() && v.seen.len() >= most)
            .map(|(i, _)| Turn::Give(i))
            .next()
            .unwrap_or(Turn::Wait)
    }

    fn remove(&mut self, number: u64) -> Option<PendingBlock> {
        let block = self.blocks.remove(&number)?;
        self.buffered -= block.bytes;
        Some(block)
    }

    /// Leaves the flow followed for `flow`: everything of the old one is dropped, and the
    /// new one starts as a receiver joining now would (with its own description).
    fn follow(&mut self, flow: u32) {
        self.stats.flow_switches += 1;
        self.flow = Some(flow);
        self.resync();
        self.stats.resyncs -= 1;
        self.description = None;
        self.stats.unconfirmed_descriptions += self.candidates.clear();
        self.descriptions = DescriptionAssembler::default();
        self.presence = Presence::default();
        self.ahead = Presence::default();
        self.described = Presence::default();
        self.stash.clear();
        self.stash_bytes = 0;
    }

    fn resync(&mut self) {
        self.stats.resyncs += 1;
        self.blocks.clear();
        self.absent.clear();
        self.given_up.clear();
        self.last_k = None;
        self.buffered = 0;
        self.started = false;
        self.next = None;
        self.out_of_range_run = 0;
        self.flush_partial();
    }

    fn flush_partial(&mut self) {
        if self.partial.take().is_some() {
            self.stats.partial_buffers_dropped += 1;
        }
        self.discont = true;
    }

    fn drain(&mut self, now: u64, out: &mut Vec<Output>) {
        let Some(desc) = &self.description else {
            return;
        };
        let carousel = desc.mode == Mode::Carousel;
        let window_start = desc.first_block;
        let symbol_size = u64::from(desc.symbol_size);
        if self.next.is_none() {
            self.next = self.blocks.keys().next().copied();
        }
        while let Some(next) = self.next {
            if let Turn::Give(i) = self.turn(next) {
                let mut block = self.remove(next).expect("held");
                let bytes = block.variants.swap_remove(i).decoded.expect("decoded");
                self.stats.outvoted += block
                    .variants
                    .iter()
                    .filter(|v| v.decoded.is_some())
                    .count() as u64;
                self.give_out(bytes, out);
                self.next = Some(next.saturating_add(1));
                continue;
            }
            if !carousel {
                // Reached but first seen far ahead and already past its time: forged.
                self.drop_stale_far(next, now);
            }
            let held = self.blocks.range(next..).next().map(|(&n, _)| n);
            let expired = if carousel {
                next < window_start || (now == u64::MAX && held.is_some())
            } else {
                self.deadline().is_some_and(|d| now >= d)
            };
            if !expired {
                break;
            }
            // Give up on `next`, or at once on the run of blocks never seen before the next
            // one held (a carousel: before its window).
            let upto = match held {
                Some(n) if n == next => next.saturating_add(1),
                Some(n) if next < window_start && carousel => n.min(window_start),
                Some(n) => n,
                None => window_start,
            };
            let count = upto.saturating_sub(next);
            let bytes = match held {
                Some(n) if n == next => {
                    let b = self.remove(next);
                    let rebuilt = b.iter().flat_map(|b| &b.variants);
                    self.stats.outvoted += rebuilt.filter(|v| v.decoded.is_some()).count() as u64;
                    b.and_then(|b| b.variants.first().map(|v| v.params.transfer_length))
                        .unwrap_or(0)
                }
                _ => {
                    let k = self.last_k.map_or(0, |(_, k)| u64::from(k));
                    count.saturating_mul(k).saturating_mul(symbol_size)
                }
            };
            self.lose(next, count, bytes, out);
            self.next = Some(upto);
            if !carousel && held.is_some_and(|n| n == upto && !guard::near(n, next)) {
                // The stream has moved there (it went silent here): the run of blocks it sent since
                // is its.
                let mut last = upto;
                for (&n, b) in self.blocks.range_mut(upto..) {
                    if !guard::near(n, last) {
                        break;
                    }
                    b.born_far = false;
                    last = n;
                }
            }
        }
    }

    fn lose(&mut self, first: u64, count: u64, bytes: u64, out: &mut Vec<Output>) {
        self.started = true;
        self.stats.blocks_lost += count;
        self.stats.lost_bytes = self.stats.lost_bytes.saturating_add(bytes);
        let end = first.saturating_add(count);
        let from = end.saturating_sub(self.cfg.max_pending_blocks).max(first);
        self.given_up.extend(from..end);
        while self.given_up.len() as u64 > self.cfg.max_pending_blocks {
            self.given_up.pop_first();
        }
        self.flush_partial();
        out.push(Output::Lost {
            first,
            count,
            bytes,
        });
    }

    fn give_out(&mut self, bytes: Vec<u8>, out: &mut Vec<Output>) {
        self.started = true;
        let block = Arc::new(bytes);
        let pieces = parse_pieces(&block).expect("checked when decoded");
        for piece in pieces {
            if piece.start && self.partial.is_some() {
                self.flush_partial();
            }
            if piece.start && piece.end {
                let at = piece.data.as_ptr() as usize - block.as_ptr() as usize;
                let data = Payload::Shared(block.clone(), at..at + piece.data.len());
                self.emit(piece.meta, data, out);
                continue;
            }
            if piece.start {
                self.partial = Some(PartialBuffer {
                    meta: piece.meta,
                    data: Vec::with_capacity(piece.data.len()),
                });
            }
            // A piece continuing a buffer whose start we never had is dropped.
            let Some(PartialBuffer { data, .. }) = self.partial.as_mut() else {
                continue;
            };
            data.extend_from_slice(piece.data);
            if piece.end {
                let PartialBuffer { meta, data } = self.partial.take().unwrap();
                self.emit(meta, Payload::Owned(data), out);
            }
        }
    }

    fn emit(&mut self, meta: BufferMeta, data: Payload, out: &mut Vec<Output>) {
        if let (true, Some(end), Some(pts)) = (self.discont, self.last_end, meta.pts) {
            if pts > end {
                out.push(Output::Gap {
                    start: end,
                    duration: pts - end,
                });
            }
        }
        if let Some(pts) = meta.pts {
            self.last_end = Some(pts.saturating_add(meta.duration.unwrap_or(0)));
        }
        self.stats.buffers += 1;
        self.stats.bytes_out = self
            .stats
            .bytes_out
            .saturating_add(data.as_ref().len() as u64);
        out.push(Output::Buffer {
            meta,
            data,
            discont: std::mem::take(&mut self.discont),
        });
    }
}

#[cfg(test)]
#[path = "receiver_test_streams.rs"]
mod test_streams;

#[cfg(test)]
#[path = "receiver_forged_tests.rs"]
mod forged_tests;

#[cfg(test)]
#[path = "receiver_restart_tests.rs"]
mod restart_tests;
