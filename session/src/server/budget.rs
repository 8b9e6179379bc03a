// SPDX-License-Identifier: MPL-2.0

//! Repair credit: a token [`Bucket`] per receiver (and per channel group), refilled with
//! time, and a [`Budget`] per channel, earned by the packets the channel sends.

use fanout_wire::time::Mono;

use super::ServerConfig;

/// A channel's overall repair credit, in hundredths of a packet: each packet the channel
/// sends earns `channel_repair_percent`, up to four bursts' worth.
#[derive(Debug, Clone, Copy)]
pub(super) struct Budget {
    centi: u64,
    sent_seen: u64,
}

impl Budget {
    pub(super) fn full(cfg: &ServerConfig) -> Budget {
        Budget {
            centi: Budget::cap(cfg),
            sent_seen: 0,
        }
    }

    fn cap(cfg: &ServerConfig) -> u64 {
        u64::from(cfg.repair_burst).saturating_mul(4 * 100)
    }

    /// The channel sent `total` packets so far.
    pub(super) fn earn(&mut self, cfg: &ServerConfig, total: u64) {
        let new = total.saturating_sub(self.sent_seen);
        self.sent_seen = self.sent_seen.max(total);
        let earned = new.saturating_mul(u64::from(cfg.channel_repair_percent));
        self.centi = self.centi.saturating_add(earned).min(Budget::cap(cfg));
    }

    /// Up to `n` symbols; how many it allows.
    pub(super) fn allow(&self, cfg: &ServerConfig, n: u64) -> u64 {
        match cfg.channel_repair_percent {
            0 => n,
            _ => n.min(self.centi / 100),
        }
    }

    pub(super) fn spend(&mut self, n: u64) {
        self.centi = self.centi.saturating_sub(n.saturating_mul(100));
    }
}

/// A token bucket: `repair_rate` a second, at most `repair_burst`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bucket {
    tokens: u64,
    refilled: Mono,
}

impl Bucket {
    pub(super) fn full(cfg: &ServerConfig, now: Mono) -> Bucket {
        Bucket {
            tokens: u64::from(cfg.repair_burst),
            refilled: now,
        }
    }

    /// Takes up to `n` tokens; how many it got.
    pub(super) fn take(&mut self, cfg: &ServerConfig, now: Mono, n: u64) -> u64 {
        let elapsed = now.saturating_duration_since(self.refilled).as_nanos();
        let refill = elapsed * u128::from(cfg.repair_rate) / 1_000_000_000;
        if refill > 0 {
            self.tokens = (self.tokens as u128 + refill).min(u128::from(cfg.repair_burst)) as u64;
            self.refilled = now;
        }
        let got = n.min(self.tokens);
        self.tokens -= got;
        got
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn at(ns: u64) -> Mono {
        Mono::from_nanos(ns)
    }

    fn cfg(rate: u32, burst: u32, percent: u32) -> ServerConfig {
        ServerConfig {
            repair_rate: rate,
            repair_burst: burst,
            channel_repair_percent: percent,
            ..ServerConfig::new(b"key".to_vec())
        }
    }

    #[test]
    fn a_budget_starts_at_four_bursts_and_is_spent_in_whole_symbols() {
        let cfg = cfg(2000, 10, 400);
        let mut b = Budget::full(&cfg);
        assert_eq!(b.centi, 4000);
        assert_eq!(b.allow(&cfg, 100), 40);
        assert_eq!(b.allow(&cfg, 7), 7);
        b.spend(30);
        assert_eq!(b.allow(&cfg, 100), 10);
        b.spend(u64::MAX);
        assert_eq!(b.centi, 0, "spending saturates");
        assert_eq!(b.allow(&cfg, 100), 0);
    }

    #[test]
    fn a_budget_earns_per_new_packet_up_to_its_cap() {
        let cfg = cfg(2000, 10, 150);
        let mut b = Budget::full(&cfg);
        b.spend(20);
        assert_eq!(b.centi, 2000);
        b.earn(&cfg, 3);
        assert_eq!(b.centi, 2450, "three packets earn 1.5 symbols each");
        assert_eq!(b.allow(&cfg, 100), 24, "half a symbol is not allowed");
        b.earn(&cfg, 3);
        b.earn(&cfg, 1);
        assert_eq!(b.centi, 2450, "packets counted before earn nothing again");
        assert_eq!(b.sent_seen, 3, "a lower total does not move the count back");
        b.earn(&cfg, 4);
        assert_eq!(b.centi, 2600);
        b.earn(&cfg, u64::MAX);
        assert_eq!(b.centi, 4000, "capped at four bursts of 10");
    }

    #[test]
    fn no_channel_percent_means_no_channel_cap() {
        let cfg = cfg(2000, 10, 0);
        let mut b = Budget::full(&cfg);
        b.spend(u64::MAX);
        b.earn(&cfg, 1_000);
        assert_eq!(b.centi, 0, "nothing is earned");
        assert_eq!(b.allow(&cfg, 12_345), 12_345, "and nothing refused");
    }

    #[test]
    fn a_bucket_gives_its_burst_then_its_rate() {
        let cfg = cfg(2000, 1000, 400);
        let mut b = Bucket::full(&cfg, at(5 * MS));
        assert_eq!(b.take(&cfg, at(5 * MS), 600), 600);
        assert_eq!(b.take(&cfg, at(5 * MS), 600), 400, "the burst is 1000");
        assert_eq!(b.take(&cfg, at(5 * MS), 1), 0);
        // 2000 a second: 200 in 100 ms.
        assert_eq!(b.take(&cfg, at(105 * MS), 300), 200);
        assert_eq!((b.tokens, b.refilled), (0, at(105 * MS)));
    }

    #[test]
    fn a_bucket_refills_whole_tokens_and_never_beyond_its_burst() {
        let cfg = cfg(2000, 1000, 400);
        let mut b = Bucket::full(&cfg, at(0));
        assert_eq!(b.take(&cfg, at(0), 1000), 1000);
        // Half a millisecond makes one token; less makes none and keeps the time it ran.
        assert_eq!(b.take(&cfg, at(499_999), 5), 0);
        assert_eq!(b.refilled, Mono::ZERO);
        assert_eq!(b.take(&cfg, at(500_000), 5), 1);
        assert_eq!(b.refilled, at(500_000));
        // 1.5 tokens' worth gives one, and the half left over is not carried.
        assert_eq!(b.take(&cfg, at(1_250_000), 5), 1);
        assert_eq!(b.take(&cfg, at(1_500_000), 5), 0);
        // Time going back refills nothing.
        assert_eq!(b.take(&cfg, at(0), 5), 0);
        assert_eq!(b.refilled, at(1_250_000));
        // Ten idle seconds fill no more than the burst.
        assert_eq!(b.take(&cfg, at(10_000 * MS), 5000), 1000);
    }
}
