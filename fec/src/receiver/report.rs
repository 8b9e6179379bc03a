//! Loss reports: which blocks waited for are short of symbols and due for a (first or
//! repeated) report, and when the next one is due.

use std::time::Duration;

use fanout_wire::time::{nanos, Mono};

use super::Receiver;
use crate::codec::Codec;
use crate::description::Mode;
use crate::guard::NEAR_BLOCKS;
use crate::sizing;

/// Times one block is reported missing at most.
pub const MAX_REPORTS: u8 = 8;

/// How long after its `reports`-th report a block is reported again: `delay`, `delay`,
/// then doubling (with the default 200 ms latency that is 3 reports, with 1 s 6).
fn report_gap(delay: Duration, reports: u8) -> Duration {
    Duration::from_nanos(nanos(delay).saturating_mul(1 << reports.saturating_sub(2).min(16)))
}

/// Blocks one call to [`Receiver::missing`] reports at most.
pub const MAX_MISSING: usize = 16;

/// A block waited for that is short of symbols: `needed` more would rebuild it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Missing {
    pub block: u64,
    pub needed: u32,
}

impl Receiver {
    /// Blocks waited for that are still short of symbols and due for a (first or repeated)
    /// report at `now`: what a repair request should ask for. [`Self::handle_timeout`] gives
    /// them too ([`Output::Missing`](super::Output::Missing)); this asks for them alone,
    /// giving nothing up, as a caller does after a batch of packets. Stream mode only (a carousel
    /// brings every block round again), never for codec none, at most [`MAX_MISSING`].
    /// A block none of whose packets arrived, though a later one's did, is asked for with
    /// the K of the latest block seen.
    pub fn missing(&mut self, now: Mono, out: &mut Vec<Missing>) {
        let delay = self.cfg.report_delay;
        let (Some(next), Some(desc)) = (self.next, &self.description) else {
            return;
        };
        if delay.is_zero() || desc.mode == Mode::Carousel {
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
                None => newest > n || now >= b.first_seen + delay,
                Some(t) => now >= t + report_gap(delay, b.reports),
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
            let short = v.k.saturating_add(margin).saturating_sub(have).max(1);
            let needed = sizing::to_ask(short, self.loss.loss());
            b.reported = Some(now);
            b.reports += 1;
            out.push(Missing { block: n, needed });
        }
        self.missing_absent(now, next, newest, out);
    }

    /// Blocks of which nothing arrived though a later one did: asked for with the K of the
    /// latest block seen (a guess; the repairs that come make the block known, and a short
    /// guess is completed by the next report).
    pub(super) fn missing_absent(
        &mut self,
        now: Mono,
        next: u64,
        newest: u64,
        out: &mut Vec<Missing>,
    ) {
        let delay = self.cfg.report_delay;
        self.absent = self.absent.split_off(&next);
        let Some((codec, k)) = self.last_k.filter(|(c, _)| *c != Codec::None) else {
            return;
        };
        let margin = if codec == Codec::RaptorQ { 2 } else { 0 };
        // Worked out once a block is due: this runs after every batch of packets.
        let mut needed = None;
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
                let due = reported.is_none_or(|t| now >= t + report_gap(delay, *reports));
                if due && *reports < MAX_REPORTS {
                    *reported = Some(now);
                    *reports += 1;
                    let loss = self.loss.loss();
                    let needed = *needed.get_or_insert_with(|| {
                        sizing::to_ask(k.saturating_add(margin).max(1), loss)
                    });
                    out.push(Missing { block: n, needed });
                }
                n += 1;
            }
        }
    }

    /// When [`Self::missing`] next has something to report, if no packet comes first:
    /// the reports' share of [`Self::poll_timeout`].
    pub fn next_report(&self) -> Option<Mono> {
        let delay = self.cfg.report_delay;
        let next = self.next?;
        if delay.is_zero() || self.description.as_ref()?.mode == Mode::Carousel {
            return None;
        }
        let horizon = next.saturating_add(NEAR_BLOCKS);
        let held = self
            .blocks
            .range(next..=horizon)
            .filter(|(_, b)| !b.decoded() && b.reports < MAX_REPORTS)
            .filter(|(_, b)| {
                b.variants
                    .first()
                    .is_some_and(|v| v.decoder.is_some() && v.params.codec != Codec::None)
            })
            .map(|(_, b)| match b.reported {
                None => b.first_seen + delay,
                Some(t) => t + report_gap(delay, b.reports),
            });
        // Only those `missing_absent` asks for again: before the newest block held. One a
        // later block was counted against, which has gone since (a new description dropped
        // it), waits for a later block; due now, it would fire the timer for nothing.
        let newest = self
            .blocks
            .range(..=horizon)
            .next_back()
            .map_or(0, |(&n, _)| n);
        let absent = self
            .absent
            .range(next..newest.max(next))
            .filter(|(n, (_, reports))| *reports < MAX_REPORTS && !self.blocks.contains_key(n))
            .filter_map(|(_, (reported, reports))| {
                reported.map(|t| t + report_gap(delay, *reports))
            });
        held.chain(absent).min()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_blocks::{at, d, datagram, described, MS};
    use super::*;
    use crate::{Output, ReceiverConfig};

    fn gap(delay: u64, reports: u8) -> u64 {
        nanos(report_gap(d(delay), reports))
    }

    fn next_report(rx: &Receiver) -> Option<u64> {
        rx.next_report().map(Mono::as_nanos)
    }

    fn poll_timeout(rx: &Receiver) -> Option<u64> {
        rx.poll_timeout().map(Mono::as_nanos)
    }

    fn reporting(delay: u64) -> Receiver {
        let cfg = ReceiverConfig {
            report_delay: d(delay),
            latency: d(10_000 * MS),
            ..ReceiverConfig::default()
        };
        described(cfg, Codec::RaptorQ, Mode::Stream)
    }

    fn missing(rx: &mut Receiver, now: u64) -> Vec<Missing> {
        let mut out = Vec::new();
        rx.missing(at(now), &mut out);
        out
    }

    #[test]
    fn the_report_gap_is_the_delay_twice_then_doubles() {
        let gaps: Vec<u64> = (0..8).map(|n| gap(10, n)).collect();
        assert_eq!(gaps, vec![10, 10, 10, 20, 40, 80, 160, 320]);
        assert_eq!(gap(10, 18), 10 << 16, "at most 2^16 times the delay");
        assert_eq!(gap(10, u8::MAX), 10 << 16);
        assert_eq!(gap(u64::MAX / 2 + 1, 3), u64::MAX, "saturating");
        assert_eq!(gap(0, 5), 0);
    }

    #[test]
    fn a_short_block_is_reported_after_the_delay_then_after_each_gap_eight_times() {
        let mut rx = reporting(10 * MS);
        let mut out = Vec::new();
        rx.push(&datagram(Codec::RaptorQ, 5, 0, 4), at(0), &mut out);
        assert_eq!(next_report(&rx), Some(10 * MS));
        assert_eq!(missing(&mut rx, 10 * MS - 1), vec![]);
        // K = 4, and RaptorQ's margin of 2, less the one symbol held.
        let first = Missing {
            block: 5,
            needed: 5,
        };
        assert_eq!(missing(&mut rx, 10 * MS), vec![first]);
        assert_eq!(missing(&mut rx, 10 * MS), vec![], "reported once per gap");
        assert_eq!(next_report(&rx), Some(20 * MS));
        rx.push(&datagram(Codec::RaptorQ, 5, 1, 4), at(15 * MS), &mut out);
        let mut times = Vec::new();
        while let Some(t) = next_report(&rx) {
            assert_eq!(missing(&mut rx, t - 1), vec![], "{t}");
            let m = missing(&mut rx, t);
            assert_eq!(
                m,
                vec![Missing {
                    block: 5,
                    needed: 4
                }],
                "{t}"
            );
            times.push(t / MS);
        }
        assert_eq!(times, vec![20, 30, 50, 90, 170, 330, 650]);
        assert_eq!(rx.blocks[&5].reports, MAX_REPORTS);
        assert_eq!(missing(&mut rx, u64::MAX), vec![]);
    }

    #[test]
    fn a_later_block_makes_the_earlier_due_at_once_and_absent_ones_are_asked_with_its_k() {
        let mut rx = reporting(10 * MS);
        let mut out = Vec::new();
        rx.push(&datagram(Codec::RaptorQ, 5, 0, 4), at(0), &mut out);
        rx.push(&datagram(Codec::RaptorQ, 8, 0, 3), at(MS), &mut out);
        rx.push(&datagram(Codec::RaptorQ, 8, 1, 3), at(MS), &mut out);
        assert_eq!(
            missing(&mut rx, MS),
            vec![
                Missing {
                    block: 5,
                    needed: 5
                },
                // Nothing of 6 and 7 came: the K of block 8 (3) and the margin.
                Missing {
                    block: 6,
                    needed: 5
                },
                Missing {
                    block: 7,
                    needed: 5
                },
            ]
        );
        // Block 8 waits for its own delay; 5, 6 and 7 for their gap.
        assert_eq!(next_report(&rx), Some(11 * MS));
        assert_eq!(
            missing(&mut rx, 11 * MS),
            vec![
                Missing {
                    block: 5,
                    needed: 5
                },
                Missing {
                    block: 8,
                    needed: 3
                },
                Missing {
                    block: 6,
                    needed: 5
                },
                Missing {
                    block: 7,
                    needed: 5
                },
            ]
        );
        assert_eq!(rx.absent.get(&6), Some(&(Some(at(11 * MS)), 2)));
    }

    #[test]
    fn absent_blocks_whose_later_block_went_are_not_due_until_one_comes_again() {
        let mut rx = reporting(10 * MS);
        let mut out = Vec::new();
        rx.push(&datagram(Codec::RaptorQ, 5, 0, 4), at(0), &mut out);
        rx.push(&datagram(Codec::RaptorQ, 8, 0, 3), at(MS), &mut out);
        assert_eq!(missing(&mut rx, MS).len(), 3, "5, and 6 and 7 absent");
        // Block 8 goes (as when a new description drops it): 6 and 7 have no later block.
        rx.blocks.remove(&8);
        assert_eq!(next_report(&rx), Some(11 * MS), "block 5's gap only");
        assert_eq!(
            missing(&mut rx, 11 * MS),
            vec![Missing {
                block: 5,
                needed: 5
            }]
        );
        let t = next_report(&rx).expect("block 5 again");
        assert!(t > 11 * MS, "never a time already past: {t}");
        // A later block again: 6 and 7 are asked for once more, their count kept.
        rx.push(&datagram(Codec::RaptorQ, 9, 0, 3), at(12 * MS), &mut out);
        let again = missing(&mut rx, 12 * MS);
        assert!(again.contains(&Missing {
            block: 6,
            needed: 5
        }));
        assert_eq!(rx.absent.get(&6), Some(&(Some(at(12 * MS)), 2)));
        // Nothing held at all (found by fuzzing): nothing due, and no panic.
        rx.blocks.clear();
        assert_eq!(next_report(&rx), None);
    }

    #[test]
    fn blocks_far_ahead_make_no_run_of_absent_blocks() {
        let mut rx = reporting(10 * MS);
        let mut out = Vec::new();
        rx.push(&datagram(Codec::RaptorQ, 0, 0, 4), at(0), &mut out);
        rx.push(&datagram(Codec::RaptorQ, 40, 0, 4), at(0), &mut out);
        assert_eq!(missing(&mut rx, 0), vec![]);
        assert_eq!(next_report(&rx), Some(10 * MS), "block 40 is not counted");
        assert_eq!(
            missing(&mut rx, 10 * MS),
            vec![Missing {
                block: 0,
                needed: 5
            }]
        );
        assert!(rx.absent.is_empty());
    }

    #[test]
    fn at_most_max_missing_blocks_a_call() {
        let mut rx = reporting(10 * MS);
        let mut out = Vec::new();
        rx.push(&datagram(Codec::RaptorQ, 0, 0, 4), at(0), &mut out);
        rx.push(&datagram(Codec::RaptorQ, 16, 0, 4), at(0), &mut out);
        let first = missing(&mut rx, 0);
        // Block 0 and the absent 1..=15 are due; 16 is not yet.
        assert_eq!(first.len(), MAX_MISSING);
        assert_eq!(first.last().map(|m| m.block), Some(15));
        // Blocks held come first, then the absent ones, up to the cap: 15 is left over.
        let m = missing(&mut rx, 10 * MS);
        let blocks: Vec<u64> = m.iter().map(|m| m.block).collect();
        let mut expected = vec![0, 16];
        expected.extend(1..15);
        assert_eq!(blocks, expected);
        assert_eq!(m[1].needed, 5, "block 16 holds one of its 4 symbols");
        assert_eq!(m[2].needed, 6, "absent: K and the margin");
        assert_eq!(
            missing(&mut rx, 10 * MS),
            vec![Missing {
                block: 15,
                needed: 6
            }]
        );
    }

    #[test]
    fn nothing_is_reported_without_a_delay_for_codec_none_or_in_a_carousel() {
        let mut rx = reporting(0);
        let mut out = Vec::new();
        rx.push(&datagram(Codec::RaptorQ, 5, 0, 4), at(0), &mut out);
        assert_eq!(
            (missing(&mut rx, u64::MAX), next_report(&rx)),
            (vec![], None)
        );
        let cfg = ReceiverConfig {
            report_delay: d(10 * MS),
            ..ReceiverConfig::default()
        };
        let mut rx = described(cfg.clone(), Codec::None, Mode::Stream);
        rx.push(&datagram(Codec::None, 5, 0, 4), at(0), &mut out);
        rx.push(&datagram(Codec::None, 7, 0, 4), at(0), &mut out);
        assert_eq!(
            (missing(&mut rx, 10 * MS), next_report(&rx)),
            (vec![], None)
        );
        let mut rx = described(cfg, Codec::RaptorQ, Mode::Carousel);
        rx.push(&datagram(Codec::RaptorQ, 0, 0, 4), at(0), &mut out);
        assert_eq!(
            (missing(&mut rx, 10 * MS), next_report(&rx)),
            (vec![], None)
        );
    }

    #[test]
    fn the_timeout_is_the_sooner_of_a_report_and_a_give_up_and_handling_it_does_both() {
        let cfg = ReceiverConfig {
            report_delay: d(10 * MS),
            latency: d(35 * MS),
            ..ReceiverConfig::default()
        };
        let mut rx = described(cfg, Codec::RaptorQ, Mode::Stream);
        let mut out = Vec::new();
        rx.push(&datagram(Codec::RaptorQ, 5, 0, 4), at(0), &mut out);
        assert_eq!(out, vec![]);
        let ask = || {
            Output::Missing(Missing {
                block: 5,
                needed: 5,
            })
        };
        let mut timeouts = Vec::new();
        while let Some(t) = poll_timeout(&rx) {
            rx.handle_timeout(at(t - 1), &mut out);
            assert_eq!(out, vec![], "nothing before {t}");
            rx.handle_timeout(at(t), &mut out);
            timeouts.push((t / MS, std::mem::take(&mut out)));
        }
        let lost = Output::Lost {
            first: 5,
            count: 1,
            bytes: 4 * 64,
        };
        assert_eq!(
            timeouts,
            vec![
                (10, vec![ask()]),
                (20, vec![ask()]),
                (30, vec![ask()]),
                // The next report would be at 50: the block is given up first.
                (35, vec![lost]),
            ]
        );
    }

    #[test]
    fn a_block_far_ahead_sets_no_timeout() {
        let cfg = ReceiverConfig {
            latency: d(35 * MS),
            ..ReceiverConfig::default()
        };
        let mut rx = described(cfg, Codec::RaptorQ, Mode::Stream);
        let mut out = Vec::new();
        rx.push(&datagram(Codec::RaptorQ, 0, 0, 4), at(0), &mut out);
        rx.push(&datagram(Codec::RaptorQ, 30, 0, 4), at(0), &mut out);
        assert_eq!(poll_timeout(&rx), Some(35 * MS));
        rx.handle_timeout(at(35 * MS), &mut out);
        assert_eq!(
            out,
            vec![Output::Lost {
                first: 0,
                count: 1,
                bytes: 256
            }]
        );
        assert_eq!(
            rx.give_up_at().map(Mono::as_nanos),
            Some(u64::MAX),
            "only the end of the stream"
        );
        assert_eq!(poll_timeout(&rx), None);
    }
}
