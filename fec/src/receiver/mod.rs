//! The receiving side: merges symbols from any number of packets, sessions or senders of one
//! flow, rebuilds blocks, and gives back the original buffers in order.
//!
//! Sans-IO: fed datagrams and the time, it returns outputs; the element owns clocks and pads.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use fanout_wire::time::Mono;

use crate::codec::Codec;
use crate::confirm::Candidates;
use crate::description::{Description, DescriptionAssembler};
use crate::guard::{AttackWatch, FlowFollower, Presence};
use crate::packet::{self, Packet};

mod describe;
mod drain;
mod loss;
mod output;
mod pending;
mod report;
mod restart;
#[cfg(test)]
mod test_blocks;

use drain::PartialBuffer;
pub use loss::MAX_LOSS;
pub use output::{Output, Payload, ReceiverStats};
use pending::PendingBlock;
pub use report::{Missing, MAX_MISSING, MAX_REPORTS};
use restart::Stashed;

#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    /// Only this flow is taken; `None` follows the flow that keeps coming (the first seen
    /// until another outnumbers it).
    pub flow: Option<u32>,
    /// How long an incomplete block is waited for, from its first packet (stream mode).
    pub latency: Duration,
    /// Blocks held at most, waiting for earlier ones; more are refused.
    pub max_pending_blocks: u64,
    /// Bytes of symbols and rebuilt blocks held at most; past it only the block waited
    /// for takes new symbols.
    pub max_buffered_bytes: usize,
    /// How long an incomplete block waits before [`Receiver::missing`] reports it (at
    /// once when a later block's packets arrive); reported again after as long twice, then
    /// after twice as long each time (a long latency leaves room for repairs that come
    /// from far), at most [`MAX_REPORTS`] times. Zero: never reported.
    pub report_delay: Duration,
}

/// How long an incomplete block is waited for by default: `fec-depayloader`'s `latency`.
pub const DEFAULT_LATENCY: Duration = Duration::from_millis(200);

impl Default for ReceiverConfig {
    fn default() -> Self {
        ReceiverConfig {
            flow: None,
            latency: DEFAULT_LATENCY,
            max_pending_blocks: 256,
            max_buffered_bytes: 256 << 20,
            report_delay: Duration::ZERO,
        }
    }
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
    absent: BTreeMap<u64, (Option<Mono>, u8)>,
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
    /// The loss on the way here, which loss reports allow for.
    loss: loss::LossEstimate,
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
            loss: loss::LossEstimate::default(),
            stats: ReceiverStats::default(),
        }
    }

    /// The share of symbols lost on the way here lately (0 to [`MAX_LOSS`]), measured on
    /// the symbols sent with each block; loss reports ask for enough to make up for it.
    pub fn observed_loss(&self) -> f64 {
        self.loss.loss()
    }

    pub fn description(&self) -> Option<&Description> {
        self.description.as_ref()
    }

    /// Takes one datagram received at `now`.
    pub fn push(&mut self, datagram: &[u8], now: Mono, out: &mut Vec<Output>) {
        self.stats.packets += 1;
        self.push_packet(datagram, now, out);
        let following = self.cfg.flow.is_none();
        if self.attack.update(self.stats.suspect(following), now) {
            out.push(Output::Attack {
                suspect: self.stats.suspect(following),
            });
        }
    }

    fn push_packet(&mut self, datagram: &[u8], now: Mono, out: &mut Vec<Output>) {
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

    /// What is due at `now`: blocks whose time is up are given up ([`Output::Lost`] and
    /// what follows), blocks due for a loss report are asked for ([`Output::Missing`]). Call
    /// it when [`Self::poll_timeout`] passes; calling it earlier does nothing.
    pub fn handle_timeout(&mut self, now: Mono, out: &mut Vec<Output>) {
        self.drain(now, out);
        let mut missing = Vec::new();
        self.missing(now, &mut missing);
        out.extend(missing.into_iter().map(Output::Missing));
    }

    /// When [`handle_timeout`](Self::handle_timeout) next needs calling, if no packet comes
    /// first: the block waited for is given up then, or a block is due for a loss report
    /// ([`Self::next_report`]), whichever is sooner. `None`: nothing is due until a packet
    /// comes (a carousel; or a block held far ahead, which only the end of the stream gives
    /// up while the stream does not get there).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Mono> {
        let give_up = self.give_up_at().filter(|&t| t != Mono::MAX);
        match (give_up, self.next_report()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
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

    /// The flow taken.
    /// Whether it reports blocks missing at all (a report delay is set, stream mode).
    pub fn reports(&self) -> bool {
        !self.cfg.report_delay.is_zero()
            && self
                .description
                .as_ref()
                .is_some_and(|d| d.mode == crate::description::Mode::Stream)
    }

    pub fn flow(&self) -> Option<u32> {
        self.flow
    }

    fn remove(&mut self, number: u64) -> Option<PendingBlock> {
        let block = self.blocks.remove(&number)?;
        self.buffered -= block.bytes;
        Some(block)
    }
}

#[cfg(test)]
mod test_streams;

#[cfg(test)]
mod forged_tests;

#[cfg(test)]
mod restart_tests;
