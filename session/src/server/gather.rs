// SPDX-License-Identifier: MPL-2.0

//! Gathering the loss reports of a channel's multicast receivers: the reports of one block
//! that arrive within the group window make one round, answered once (to the group, if
//! several receivers asked); reports a group repair already covers are dropped for a while.

use std::collections::HashMap;
use std::time::Duration;

use fanout_wire::time::Mono;

/// A block of a flow of a channel: (channel, flow, block).
pub(super) type BlockKey = (u16, u32, u64);

/// Blocks whose reports are being gathered at once; more are answered per receiver.
pub(super) const MAX_ROUNDS: usize = 4096;

/// Reports of one block from a channel's multicast receivers, being gathered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Round {
    pub(super) closes: Mono,
    pub(super) needed: u16,
    /// The first reporter, and whether anyone else reported.
    pub(super) first: u64,
    pub(super) several: bool,
}

/// The last group repair of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Served {
    until: Mono,
    count: u16,
}

/// What became of one report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gathered {
    /// A group repair of the block, sent a moment ago, covers it: it was sent before the
    /// repair arrived.
    Covered,
    /// It opened a round of its block.
    Opened,
    /// It joined the round of its block.
    Joined,
    /// [`MAX_ROUNDS`] rounds are open: it is to be answered on its own.
    Full,
}

#[derive(Default)]
pub(super) struct Gathering {
    rounds: HashMap<BlockKey, Round>,
    served: HashMap<BlockKey, Served>,
}

impl Gathering {
    /// Receiver `id` misses `needed` symbols of `key` at `now`; a round opened now closes
    /// `window` later.
    pub(super) fn report(
        &mut self,
        now: Mono,
        window: Duration,
        id: u64,
        key: BlockKey,
        needed: u16,
    ) -> Gathered {
        if let Some(s) = self.served.get(&key) {
            if now < s.until && needed <= s.count {
                return Gathered::Covered;
            }
        }
        if let Some(r) = self.rounds.get_mut(&key) {
            r.needed = r.needed.max(needed);
            r.several |= r.first != id;
            return Gathered::Joined;
        }
        if self.rounds.len() >= MAX_ROUNDS {
            return Gathered::Full;
        }
        self.rounds.insert(
            key,
            Round {
                closes: now + window,
                needed,
                first: id,
                several: false,
            },
        );
        Gathered::Opened
    }

    /// Takes out the rounds whose window is over at `now`.
    pub(super) fn close(&mut self, now: Mono) -> Vec<(BlockKey, Round)> {
        let due: Vec<BlockKey> = self
            .rounds
            .iter()
            .filter(|(_, r)| r.closes <= now)
            .map(|(k, _)| *k)
            .collect();
        due.into_iter()
            .map(|k| (k, self.rounds.remove(&k).expect("due")))
            .collect()
    }

    /// `count` symbols of `key` went to the group: reports asking no more are covered
    /// until `until`.
    pub(super) fn served(&mut self, key: BlockKey, until: Mono, count: u16) {
        self.served.insert(key, Served { until, count });
    }

    /// Forgets the group repairs whose hold is over at `now`.
    pub(super) fn forget_served(&mut self, now: Mono) {
        self.served.retain(|_, s| s.until > now);
    }

    /// When the next round closes.
    pub(super) fn next_close(&self) -> Option<Mono> {
        self.rounds.values().map(|r| r.closes).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: BlockKey = (3, 7, 42);

    fn at(ns: u64) -> Mono {
        Mono::from_nanos(ns)
    }

    fn ns(n: u64) -> Duration {
        Duration::from_nanos(n)
    }

    #[test]
    fn a_round_opens_gathers_and_closes_at_its_window() {
        let mut g = Gathering::default();
        assert_eq!(g.next_close(), None);
        assert_eq!(g.report(at(1000), ns(15), 1, KEY, 4), Gathered::Opened);
        assert_eq!(g.next_close(), Some(at(1015)));
        assert_eq!(g.report(at(1005), ns(15), 1, KEY, 2), Gathered::Joined);
        assert_eq!(g.close(at(1014)), vec![], "still open");
        let one = Round {
            closes: at(1015),
            needed: 4,
            first: 1,
            several: false,
        };
        assert_eq!(g.rounds[&KEY], one, "one reporter, twice, the larger need");
        assert_eq!(g.report(at(1010), ns(15), 2, KEY, 9), Gathered::Joined);
        assert_eq!(g.report(at(1014), ns(15), 1, KEY, 3), Gathered::Joined);
        let several = Round {
            needed: 9,
            several: true,
            ..one
        };
        assert_eq!(g.close(at(1015)), vec![(KEY, several)]);
        assert_eq!(g.next_close(), None);
        assert_eq!(g.close(Mono::MAX), vec![], "closed once");
        // The next report of the block opens a new round.
        assert_eq!(g.report(at(1016), ns(15), 2, KEY, 1), Gathered::Opened);
        assert_eq!(g.next_close(), Some(at(1031)));
    }

    #[test]
    fn rounds_of_other_blocks_close_on_their_own() {
        let mut g = Gathering::default();
        let other = (3, 7, 43);
        let other_flow = (3, 8, 42);
        assert_eq!(g.report(at(0), ns(10), 1, KEY, 1), Gathered::Opened);
        assert_eq!(g.report(at(4), ns(10), 2, other, 2), Gathered::Opened);
        assert_eq!(g.report(at(6), ns(10), 2, other_flow, 3), Gathered::Opened);
        assert_eq!(g.next_close(), Some(at(10)));
        let closed = g.close(at(14));
        assert_eq!(closed.len(), 2);
        let mut keys: Vec<BlockKey> = closed.iter().map(|(k, _)| *k).collect();
        keys.sort();
        assert_eq!(keys, vec![KEY, other]);
        assert_eq!(g.next_close(), Some(at(16)));
        assert_eq!(g.close(Mono::MAX)[0].1.needed, 3);
    }

    #[test]
    fn a_group_repair_covers_smaller_reports_for_its_hold() {
        let mut g = Gathering::default();
        g.served(KEY, at(2000), 5);
        assert_eq!(g.report(at(1999), ns(15), 1, KEY, 5), Gathered::Covered);
        assert_eq!(
            g.report(at(1999), ns(15), 1, (3, 7, 41), 1),
            Gathered::Opened
        );
        assert!(g.rounds.len() == 1, "a covered report opens no round");
        assert_eq!(
            g.report(at(1999), ns(15), 1, KEY, 6),
            Gathered::Opened,
            "asks more"
        );
        let mut g = Gathering::default();
        g.served(KEY, at(2000), 5);
        assert_eq!(
            g.report(at(2000), ns(15), 1, KEY, 1),
            Gathered::Opened,
            "hold over"
        );
        g.forget_served(at(1999));
        assert_eq!(g.served.len(), 1);
        g.forget_served(at(2000));
        assert!(g.served.is_empty());
    }

    #[test]
    fn at_most_max_rounds_are_open() {
        let mut g = Gathering::default();
        for b in 0..MAX_ROUNDS as u64 {
            assert_eq!(g.report(at(b), ns(100), 1, (0, 0, b), 1), Gathered::Opened);
        }
        assert_eq!(
            g.report(at(0), ns(100), 1, (0, 0, u64::MAX), 1),
            Gathered::Full
        );
        assert_eq!(g.report(at(0), ns(100), 2, (0, 0, 7), 3), Gathered::Joined);
        assert_eq!(g.close(at(100)).len(), 1, "the round opened at 0");
        assert_eq!(
            g.report(at(100), ns(100), 1, (0, 0, u64::MAX), 1),
            Gathered::Opened
        );
        assert_eq!(g.report(at(100), ns(100), 1, (1, 0, 0), 1), Gathered::Full);
    }
}
