// SPDX-License-Identifier: MPL-2.0

//! Loss reports of a multicast receiver, spread over a random back-off and suppressed when
//! the repair symbols they ask for arrive meanwhile (another receiver asked first, and the
//! server answered to the whole group), as DVB-MABR and 3GPP MBMS unicast repair do.

use std::collections::VecDeque;
use std::time::Duration;

use fanout_wire::time::{nanos, Mono};

use crate::message::LostEntry;

/// Reports wait a uniformly random time in `[0, DEFAULT_BACKOFF)`: enough to spread a
/// burst of reports, short enough that a server's round gathers them all.
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(10);
/// Reports waiting at once; beyond it they go out without a back-off.
const MAX_PENDING: usize = 256;

struct Pending {
    entry: LostEntry,
    due: Mono,
    /// Symbols of the block that arrived since the report.
    arrived: u32,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReportStats {
    /// Reports that went out, and those the symbols arriving meanwhile made unneeded.
    pub sent: u64,
    pub suppressed: u64,
}

pub struct Reports {
    /// In ns: the random wait is drawn in them.
    backoff: u64,
    pending: Vec<Pending>,
    /// Reports whose back-off is over, for [`Reports::poll_report`].
    ready: VecDeque<LostEntry>,
    rng: u64,
    pub stats: ReportStats,
}

impl Reports {
    /// `backoff` 0 sends every report at once (a unicast receiver's).
    pub fn new(backoff: Duration, seed: u64) -> Reports {
        Reports {
            backoff: nanos(backoff),
            pending: Vec::new(),
            ready: VecDeque::new(),
            rng: seed,
            stats: ReportStats::default(),
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64*: cheap, and a seed of 0 must not stick at 0.
        let mut x = self.rng | 1;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A block misses `entry.needed` symbols as of `now`. A report of the same block still
    /// waiting takes the new count and keeps its time.
    pub fn report(&mut self, now: Mono, entry: LostEntry) {
        let same = |p: &Pending| {
            (p.entry.channel, p.entry.flow, p.entry.block)
                == (entry.channel, entry.flow, entry.block)
        };
        if let Some(p) = self.pending.iter_mut().find(|p| same(p)) {
            p.entry.needed = entry.needed;
            p.arrived = 0;
            return;
        }
        let wait = match self.backoff {
            0 => 0,
            _ if self.pending.len() >= MAX_PENDING => 0,
            b => self.random() % b,
        };
        self.pending.push(Pending {
            entry,
            due: now + Duration::from_nanos(wait),
            arrived: 0,
        });
    }

    /// A symbol of `block` arrived (only worth calling while [`Self::is_waiting`]).
    pub fn symbol(&mut self, channel: u16, flow: u32, block: u64) {
        for p in &mut self.pending {
            if (p.entry.channel, p.entry.flow, p.entry.block) == (channel, flow, block) {
                p.arrived = p.arrived.saturating_add(1);
            }
        }
    }

    pub fn is_waiting(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Takes the reports whose back-off is over at `now` out of waiting, each asking for
    /// what is still missing ([`Self::poll_report`]); those the symbols arriving meanwhile
    /// made unneeded are dropped. Calling it earlier does nothing.
    pub fn handle_timeout(&mut self, now: Mono) {
        let mut suppressed = 0;
        let mut sent = 0;
        let ready = &mut self.ready;
        self.pending.retain(|p| {
            if p.due > now {
                return true;
            }
            let still = u32::from(p.entry.needed).saturating_sub(p.arrived);
            if still == 0 {
                suppressed += 1;
            } else {
                sent += 1;
                ready.push_back(LostEntry {
                    needed: still as u16,
                    ..p.entry
                });
            }
            false
        });
        self.stats.suppressed += suppressed;
        self.stats.sent += sent;
    }

    /// The next report to send.
    pub fn poll_report(&mut self) -> Option<LostEntry> {
        self.ready.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) next needs calling: the end of the
    /// earliest back-off. `None` while no report waits.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Mono> {
        self.pending.iter().map(|p| p.due).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ns: u64) -> Mono {
        Mono::from_nanos(ns)
    }

    /// Reports with a back-off of `ns` nanoseconds.
    fn reports(ns: u64, seed: u64) -> Reports {
        Reports::new(Duration::from_nanos(ns), seed)
    }

    /// The reports a timeout at `now` sends.
    fn due(r: &mut Reports, now: Mono) -> Vec<LostEntry> {
        r.handle_timeout(now);
        std::iter::from_fn(|| r.poll_report()).collect()
    }

    fn entry(block: u64, needed: u16) -> LostEntry {
        LostEntry {
            channel: 0,
            flow: 1,
            block,
            needed,
        }
    }

    #[test]
    fn reports_wait_within_the_backoff_and_then_go_out() {
        let mut r = reports(30, 7);
        r.report(at(100), entry(5, 3));
        assert!(r
            .poll_timeout()
            .is_some_and(|d| (at(100)..at(130)).contains(&d)));
        assert!(due(&mut r, at(99)).is_empty());
        assert_eq!(due(&mut r, at(130)), vec![entry(5, 3)]);
        assert!(!r.is_waiting());
    }

    #[test]
    fn symbols_arriving_meanwhile_shrink_or_suppress_the_report() {
        let mut r = reports(30, 7);
        r.report(at(0), entry(5, 3));
        r.report(at(0), entry(6, 3));
        r.symbol(0, 1, 5);
        r.symbol(0, 1, 5);
        r.symbol(0, 1, 5);
        r.symbol(0, 1, 6);
        r.symbol(0, 2, 6); // another flow
        assert_eq!(due(&mut r, at(30)), vec![entry(6, 2)]);
        assert_eq!(r.stats.suppressed, 1);
        assert_eq!(r.stats.sent, 1);
    }

    #[test]
    fn a_new_report_of_a_waiting_block_replaces_its_count() {
        let mut r = reports(30, 7);
        r.report(at(0), entry(5, 9));
        r.symbol(0, 1, 5);
        r.report(at(10), entry(5, 4));
        assert_eq!(due(&mut r, at(40)), vec![entry(5, 4)]);
    }

    #[test]
    fn no_backoff_sends_at_once_and_the_spread_covers_the_window() {
        let mut r = reports(0, 1);
        r.report(at(5), entry(1, 1));
        assert_eq!(due(&mut r, at(5)).len(), 1);
        let mut r = reports(1000, 3);
        let mut dues = Vec::new();
        for b in 0..200 {
            r.report(at(0), entry(b, 1));
        }
        while let Some(d) = r.poll_timeout() {
            dues.push(d);
            due(&mut r, d);
        }
        assert!(dues.iter().all(|&d| d < at(1000)));
        assert!(dues.iter().any(|&d| d < at(250)) && dues.iter().any(|&d| d > at(750)));
    }
}
