//! The blocks held: each one's variants (symbols that agree on its parameters) and their
//! decoders; which variant of the block waited for goes out; blocks first seen far ahead.

use std::collections::HashSet;

use fanout_wire::time::Mono;

use super::restart::RESYNC_AFTER;
use super::Receiver;
use crate::block::parse_pieces;
use crate::codec::{BlockDecoder, BlockParams};
use crate::confirm::fits;
use crate::description::Mode;
use crate::guard::{self, NEAR_BLOCKS};
use crate::packet::SymbolHeader;

/// Symbols of one block that agree on its parameters (codec, F, T, pool).
pub(super) struct Variant {
    pub(super) params: BlockParams,
    pub(super) k: u32,
    pub(super) decoder: Option<BlockDecoder>,
    /// Distinct ESIs (also after decoding): the genuine variant has the most.
    pub(super) seen: HashSet<u32>,
    pub(super) source_seen: u32,
    /// The rebuilt block, content checked, waiting for its turn.
    pub(super) decoded: Option<Vec<u8>>,
    /// When its first packet came.
    pub(super) first_seen: Mono,
}

pub(super) struct PendingBlock {
    pub(super) first_seen: Mono,
    /// Its first packet was far ahead of the stream: until the stream gets there, it moves
    /// nothing, and once its latency is up it is dropped rather than given out.
    pub(super) born_far: bool,
    /// Normally one; packets contradicting the first ones get their own, so a forged or
    /// damaged first packet cannot make the real ones unusable.
    pub(super) variants: Vec<Variant>,
    /// Bytes held for this block (symbols, then the rebuilt blocks).
    pub(super) bytes: usize,
    /// When it was last reported missing, and how often.
    pub(super) reported: Option<Mono>,
    pub(super) reports: u8,
}

/// Symbols beyond K a block takes at most: RaptorQ fails to decode with K + 2 about once
/// in a million, so more only come from a broken or forged sender.
const MAX_SURPLUS: u32 = 32;

/// Parameter sets kept per block at most.
const MAX_VARIANTS: usize = 3;

impl PendingBlock {
    pub(super) fn decoded(&self) -> bool {
        self.variants.iter().any(|v| v.decoded.is_some())
    }

    pub(super) fn symbols(&self) -> u64 {
        self.variants.iter().map(|v| v.seen.len() as u64).sum()
    }
}

/// What to do with the block waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Turn {
    /// Give out this variant's content.
    Give(usize),
    /// Not rebuilt yet, or a variant with more packets may still be.
    Wait,
}

impl Receiver {
    /// Takes a symbol; true if it rebuilt a block whose content parses.
    pub(super) fn add_symbol(&mut self, h: &SymbolHeader, data: &[u8], now: Mono) -> bool {
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
        if let Some(desc) = &self.description {
            self.loss.sample(variant, desc);
        }
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
    pub(super) fn mark_far(&mut self) {
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
    pub(super) fn drop_stale_far(&mut self, number: u64, now: Mono) {
        let stale = self
            .blocks
            .get(&number)
            .is_some_and(|b| b.born_far && now >= b.first_seen + self.cfg.latency);
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
    pub(super) fn turn(&self, number: u64) -> Turn {
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
}

#[cfg(test)]
mod tests {
    use super::super::test_blocks::{at, d, described, header, T};
    use super::*;
    use crate::{Codec, ReceiverConfig};

    /// A variant of symbol size `t`, K = 2, holding `seen` symbols, rebuilt or not.
    fn variant(t: u16, seen: u32, decoded: bool) -> Variant {
        Variant {
            params: BlockParams {
                codec: Codec::None,
                transfer_length: 2 * u64::from(t),
                symbol_size: t,
                pool: 0,
            },
            k: 2,
            decoder: None,
            seen: (0..seen).collect(),
            source_seen: seen.min(2),
            decoded: decoded.then(Vec::new),
            first_seen: Mono::ZERO,
        }
    }

    fn block(variants: Vec<Variant>) -> PendingBlock {
        PendingBlock {
            first_seen: Mono::ZERO,
            born_far: false,
            variants,
            bytes: 0,
            reported: None,
            reports: 0,
        }
    }

    fn receiver(latency: u64, mode: Mode) -> Receiver {
        let cfg = ReceiverConfig {
            latency: d(latency),
            ..ReceiverConfig::default()
        };
        described(cfg, Codec::None, mode)
    }

    /// One symbol of `number` (K = 2: held, not rebuilt) at `now`.
    fn add(rx: &mut Receiver, number: u64, now: u64) {
        let h = header(Codec::None, number, 0, 2);
        assert!(!rx.add_symbol(&h, &[0; T as usize], at(now)));
    }

    fn far(rx: &Receiver) -> Vec<(u64, bool)> {
        rx.blocks.iter().map(|(&n, b)| (n, b.born_far)).collect()
    }

    #[test]
    fn the_rebuilt_variant_with_the_most_packets_takes_its_turn() {
        let mut rx = receiver(100, Mode::Stream);
        assert_eq!(rx.turn(3), Turn::Wait, "nothing held");
        rx.blocks.insert(3, block(vec![variant(T, 5, false)]));
        assert_eq!(rx.turn(3), Turn::Wait, "not rebuilt");
        rx.blocks
            .insert(3, block(vec![variant(T, 3, true), variant(T, 5, false)]));
        assert_eq!(
            rx.turn(3),
            Turn::Wait,
            "one with more packets may still be rebuilt"
        );
        rx.blocks
            .insert(3, block(vec![variant(T, 3, true), variant(T, 3, false)]));
        assert_eq!(rx.turn(3), Turn::Give(0), "a tie goes to the rebuilt one");
        rx.blocks
            .insert(3, block(vec![variant(T, 3, true), variant(T, 5, true)]));
        assert_eq!(rx.turn(3), Turn::Give(1));
        // A variant the description rules out counts for nothing, however many it has.
        let other = variant(2 * T, 50, true);
        rx.blocks.insert(3, block(vec![other, variant(T, 3, true)]));
        assert_eq!(rx.turn(3), Turn::Give(1));
        rx.description = None;
        assert_eq!(
            rx.turn(3),
            Turn::Give(0),
            "without a description every variant fits"
        );
    }

    #[test]
    fn blocks_beyond_near_blocks_of_the_stream_are_born_far() {
        let mut rx = receiver(100, Mode::Stream);
        add(&mut rx, 4, 0);
        rx.next = Some(4);
        add(&mut rx, 4 + NEAR_BLOCKS, 0);
        add(&mut rx, 5 + NEAR_BLOCKS, 0);
        assert_eq!(far(&rx), vec![(4, false), (20, false), (21, true)]);
        // An earlier block before anything went out: the stream starts there, and what is
        // beyond its near blocks now counts as far.
        add(&mut rx, 2, 0);
        assert_eq!(rx.next, Some(2));
        assert_eq!(
            far(&rx),
            vec![(2, false), (4, false), (20, true), (21, true)]
        );
    }

    #[test]
    fn an_earlier_start_drops_blocks_beyond_max_pending() {
        let mut rx = receiver(100, Mode::Stream);
        add(&mut rx, 300, 0);
        add(&mut rx, 400, 0);
        rx.next = Some(300);
        assert_eq!(rx.buffered, 2 * usize::from(T));
        add(&mut rx, 100, 0);
        // 100 + 256 pending blocks at most: 400 goes.
        assert_eq!(far(&rx), vec![(100, false), (300, true)]);
        assert_eq!(rx.buffered, 2 * usize::from(T));
    }

    #[test]
    fn a_far_block_whose_latency_is_up_is_dropped_as_unconfirmed() {
        let mut rx = receiver(100, Mode::Stream);
        add(&mut rx, 0, 0);
        rx.next = Some(0);
        add(&mut rx, 3, 5);
        add(&mut rx, 30, 5);
        let h = header(Codec::None, 30, 1, 3);
        assert!(
            !rx.add_symbol(&h, &[1; T as usize], at(6)),
            "another variant"
        );
        assert_eq!(rx.blocks[&30].symbols(), 2);
        rx.drop_stale_far(30, at(104));
        rx.drop_stale_far(3, Mono::MAX);
        assert_eq!(far(&rx), vec![(0, false), (3, false), (30, true)]);
        rx.drop_stale_far(30, at(105));
        assert_eq!(far(&rx), vec![(0, false), (3, false)]);
        assert_eq!(rx.stats.unconfirmed, 2);
        assert_eq!(rx.buffered, 2 * usize::from(T));
        // A symbol of a stale far block drops it before it is taken: it starts anew.
        add(&mut rx, 40, 10);
        add(&mut rx, 40, 110);
        assert_eq!(rx.blocks[&40].first_seen, at(110));
        assert_eq!(rx.stats.unconfirmed, 3);
    }

    #[test]
    fn a_carousel_keeps_its_far_blocks() {
        let mut rx = receiver(100, Mode::Carousel);
        rx.next = Some(0);
        add(&mut rx, 30, 5);
        assert_eq!(far(&rx), vec![(30, true)]);
        rx.drop_stale_far(30, Mono::MAX);
        assert_eq!(far(&rx), vec![(30, true)]);
        assert_eq!(rx.stats.unconfirmed, 0);
    }
}
