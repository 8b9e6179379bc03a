//! Giving out: the block waited for goes out once rebuilt, or is given up when its time is
//! up; its pieces make the original buffers again (a buffer spanning blocks is held whole
//! until its last piece).

use std::sync::Arc;

use fanout_wire::time::Mono;

use super::pending::Turn;
use super::{Output, Payload, Receiver};
use crate::block::{parse_pieces, BufferMeta};
use crate::description::Mode;
use crate::guard::{self, NEAR_BLOCKS};

pub(super) struct PartialBuffer {
    pub(super) meta: BufferMeta,
    pub(super) data: Vec<u8>,
}

impl Receiver {
    /// The stream ends: everything decoded goes out in order, the rest is given up. Blocks
    /// first seen far ahead that the stream never reached were not its.
    pub(super) fn end_of_stream(&mut self, out: &mut Vec<Output>) {
        let far: Vec<u64> = self
            .blocks
            .iter()
            .filter(|(_, b)| b.born_far)
            .map(|(&n, _)| n)
            .collect();
        for n in far {
            self.drop_stale_far(n, Mono::MAX);
        }
        self.drain(Mono::MAX, out);
    }

    /// When the block waited for will be given up, if a packet does not complete it first:
    /// `latency` after its own first packet; for a run of blocks of which nothing came, after
    /// the first packet of the block held after them, and if that one is far ahead, not before
    /// the stream has gone from near the block waited for (one forged packet far ahead moves
    /// nothing). [`Mono::MAX`]: only the end of the stream gives it up.
    pub(super) fn give_up_at(&self) -> Option<Mono> {
        if self.description.as_ref()?.mode == Mode::Carousel {
            return None;
        }
        let next = self.next?;
        let (&held, block) = self.blocks.range(next..).next()?;
        let own = block.first_seen + self.cfg.latency;
        if guard::near(held, next) {
            return Some(own);
        }
        // Far ahead: only a stream that rebuilds blocks there corroborates it (a forged
        // symbol does not), and only once the stream has left the block waited for.
        let far = held..=held.saturating_add(NEAR_BLOCKS);
        if !self.blocks.range(far).any(|(_, b)| b.decoded()) {
            return Some(Mono::MAX);
        }
        Some(own.max(self.presence.silent_from(self.cfg.latency)))
    }

    pub(super) fn flush_partial(&mut self) {
        if self.partial.take().is_some() {
            self.stats.partial_buffers_dropped += 1;
        }
        self.discont = true;
    }

    pub(super) fn drain(&mut self, now: Mono, out: &mut Vec<Output>) {
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
                next < window_start || (now == Mono::MAX && held.is_some())
            } else {
                self.give_up_at().is_some_and(|d| now >= d)
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
                    if let (Some(v), Some(desc)) = (
                        b.as_ref().and_then(|b| b.variants.first()),
                        &self.description,
                    ) {
                        self.loss.sample(v, desc);
                    }
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

    pub(super) fn lose(&mut self, first: u64, count: u64, bytes: u64, out: &mut Vec<Output>) {
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

    pub(super) fn give_out(&mut self, bytes: Vec<u8>, out: &mut Vec<Output>) {
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

    pub(super) fn emit(&mut self, meta: BufferMeta, data: Payload, out: &mut Vec<Output>) {
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
mod tests {
    use super::super::test_blocks::{at, content, d, described, header, timed, T};
    use super::*;
    use crate::{Codec, ReceiverConfig};

    fn receiver(mode: Mode) -> Receiver {
        let cfg = ReceiverConfig {
            latency: d(100),
            ..ReceiverConfig::default()
        };
        described(cfg, Codec::None, mode)
    }

    fn buffer(meta: BufferMeta, data: &[u8], discont: bool) -> Output {
        Output::Buffer {
            meta,
            data: Payload::Owned(data.to_vec()),
            discont,
        }
    }

    const NO_META: BufferMeta = BufferMeta {
        pts: None,
        dts: None,
        duration: None,
        flags: 0,
    };

    #[test]
    fn a_buffer_spanning_blocks_goes_out_whole_when_its_last_piece_comes() {
        let mut rx = receiver(Mode::Stream);
        let (m1, m2, m3) = (timed(0, 10), timed(10, 10), timed(20, 10));
        let a = content(&[(true, true, m1, b"ab"), (true, false, m2, b"cd")]);
        let b = content(&[
            (false, false, NO_META, b"ef"),
            (false, true, NO_META, b"gh"),
            (true, true, m3, b"i"),
        ]);
        let mut out = Vec::new();
        rx.give_out(a, &mut out);
        assert_eq!(out, vec![buffer(m1, b"ab", false)]);
        // A whole buffer is a range of the block: after its 5-byte piece header.
        let Output::Buffer {
            data: Payload::Shared(_, range),
            ..
        } = &out[0]
        else {
            panic!("not shared: {out:?}");
        };
        assert_eq!(range, &(5..7));
        assert_eq!(rx.partial.as_ref().map(|p| &p.data[..]), Some(&b"cd"[..]));
        out.clear();
        rx.give_out(b, &mut out);
        assert_eq!(
            out,
            vec![buffer(m2, b"cdefgh", false), buffer(m3, b"i", false)]
        );
        assert!(matches!(
            out[0],
            Output::Buffer {
                data: Payload::Owned(_),
                ..
            }
        ));
        assert!(rx.partial.is_none());
        assert_eq!((rx.stats.buffers, rx.stats.bytes_out), (3, 9));
        assert_eq!(rx.last_end, Some(30));
        assert_eq!(rx.stats.partial_buffers_dropped, 0);
    }

    #[test]
    fn a_loss_drops_the_partial_buffer_and_the_next_one_says_discont_after_a_gap() {
        let mut rx = receiver(Mode::Stream);
        let mut out = Vec::new();
        let a = content(&[
            (true, true, timed(0, 10), b"ab"),
            (true, false, timed(10, 10), b"cd"),
        ]);
        rx.give_out(a, &mut out);
        out.clear();
        rx.lose(1, 1, 500, &mut out);
        assert_eq!(
            out,
            vec![Output::Lost {
                first: 1,
                count: 1,
                bytes: 500
            }]
        );
        assert!(rx.partial.is_none());
        assert_eq!(rx.stats.partial_buffers_dropped, 1);
        assert_eq!((rx.stats.blocks_lost, rx.stats.lost_bytes), (1, 500));
        out.clear();
        // The rest of the buffer cut short has no start: dropped, not counted again.
        let c = content(&[
            (false, true, NO_META, b"zz"),
            (true, true, timed(50, 10), b"j"),
        ]);
        rx.give_out(c, &mut out);
        assert_eq!(
            out,
            vec![
                Output::Gap {
                    start: 10,
                    duration: 40
                },
                buffer(timed(50, 10), b"j", true),
            ]
        );
        assert_eq!(rx.stats.partial_buffers_dropped, 1);
        out.clear();
        rx.give_out(content(&[(true, true, timed(60, 10), b"k")]), &mut out);
        assert_eq!(out, vec![buffer(timed(60, 10), b"k", false)]);
    }

    #[test]
    fn a_buffer_whose_end_never_came_is_dropped_at_the_next_start() {
        let mut rx = receiver(Mode::Stream);
        let mut out = Vec::new();
        rx.give_out(content(&[(true, false, timed(0, 10), b"ab")]), &mut out);
        assert_eq!(out, vec![]);
        rx.give_out(content(&[(true, true, timed(5, 10), b"cd")]), &mut out);
        // No gap: nothing went out before.
        assert_eq!(out, vec![buffer(timed(5, 10), b"cd", true)]);
        assert_eq!(rx.stats.partial_buffers_dropped, 1);
        out.clear();
        // A buffer without a time makes no gap either.
        rx.flush_partial();
        rx.give_out(content(&[(true, true, NO_META, b"e")]), &mut out);
        assert_eq!(out, vec![buffer(NO_META, b"e", true)]);
        assert_eq!(rx.last_end, Some(15));
        assert_eq!(rx.stats.partial_buffers_dropped, 1, "nothing was held");
    }

    #[test]
    fn the_blocks_given_up_are_the_latest_max_pending_ones() {
        let mut rx = receiver(Mode::Stream);
        let mut out = Vec::new();
        rx.lose(0, 1000, 0, &mut out);
        let range = |rx: &Receiver| {
            let g = &rx.given_up;
            (g.len(), g.first().copied(), g.last().copied())
        };
        assert_eq!(range(&rx), (256, Some(744), Some(999)));
        rx.lose(1000, 10, 0, &mut out);
        assert_eq!(range(&rx), (256, Some(754), Some(1009)));
        assert!(rx.started);
    }

    #[test]
    fn the_block_waited_for_is_given_up_after_its_latency_or_a_far_one_after_the_stream_left() {
        let mut rx = receiver(Mode::Stream);
        assert_eq!(rx.give_up_at(), None, "nothing waited for");
        let held = header(Codec::None, 0, 0, 2);
        rx.add_symbol(&held, &[0; T as usize], at(7));
        rx.next = Some(0);
        assert_eq!(rx.give_up_at(), Some(at(107)));
        rx.remove(0);
        let far = header(Codec::None, 30, 0, 2);
        rx.add_symbol(&far, &[0; T as usize], at(5));
        assert_eq!(
            rx.give_up_at(),
            Some(Mono::MAX),
            "one far symbol moves nothing"
        );
        // A rebuilt block there corroborates it: given up once the stream left block 0.
        let mut block = content(&[(true, true, NO_META, b"x")]);
        block.resize(usize::from(T), 0);
        assert!(rx.add_symbol(&header(Codec::None, 31, 0, 1), &block, at(6)));
        assert_eq!(
            rx.give_up_at(),
            Some(at(105)),
            "the stream was never near: 0 + 100"
        );
        rx.presence.seen(at(200));
        assert_eq!(rx.give_up_at(), Some(at(300)));
        let mut rx = receiver(Mode::Carousel);
        rx.add_symbol(&held, &[0; T as usize], at(7));
        assert_eq!(rx.give_up_at(), None, "a carousel gives up by its window");
    }
}
