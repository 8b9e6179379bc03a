//! The carousel after the input ended: rounds of fresh repair symbols over every kept block,
//! paced to a bitrate, for receivers that join late or lost too much.

use std::time::Duration;

use crate::packing::PacketOut;
use crate::Sender;

/// Bits per second of the rounds after the input ends: `fec-payloader`'s `carousel-bitrate`.
pub const DEFAULT_CAROUSEL_BITRATE: u64 = 10_000_000;

/// Spreads what is sent over time: everything sent so far is due to have gone out this long
/// after the start.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pacer {
    /// Bits per second; 0 = unpaced.
    bitrate: u64,
    bits: u128,
}

impl Pacer {
    pub fn new(bitrate: u64) -> Pacer {
        Pacer { bitrate, bits: 0 }
    }

    pub fn sent(&mut self, bytes: usize) {
        self.bits = self.bits.saturating_add(bytes as u128 * 8);
    }

    /// How long after the start what was sent has gone out at the bitrate (zero when
    /// unpaced).
    pub fn due(&self) -> Duration {
        if self.bitrate == 0 {
            return Duration::ZERO;
        }
        let ns = self.bits.saturating_mul(1_000_000_000) / u128::from(self.bitrate);
        Duration::from_nanos(ns.min(u128::from(u64::MAX)) as u64)
    }
}

/// Rounds after the end of the input, one block at a time.
#[derive(Debug)]
pub struct CarouselRounds {
    /// Rounds still to send; `None` = until stopped.
    left: Option<u64>,
    /// Blocks of the current round already sent.
    sent_in_round: usize,
    pacer: Pacer,
    pub rounds_done: u64,
}

impl CarouselRounds {
    pub fn new(rounds: Option<u64>, bitrate: u64) -> CarouselRounds {
        CarouselRounds {
            left: rounds,
            sent_in_round: 0,
            pacer: Pacer::new(bitrate),
            rounds_done: 0,
        }
    }

    /// Appends a fresh round of the next kept block to `out`. Returns when (after the first
    /// step) the next step is due, or `None` once every round is done (or nothing is kept).
    pub fn step(&mut self, sender: &mut Sender, out: &mut impl PacketOut) -> Option<Duration> {
        let blocks = sender.window_blocks();
        if self.left == Some(0) || blocks == 0 {
            return None;
        }
        let before = out.size();
        if !sender.carousel_round(out) {
            return None;
        }
        self.pacer.sent(out.size() - before);
        self.sent_in_round += 1;
        if self.sent_in_round >= blocks {
            self.sent_in_round = 0;
            self.rounds_done += 1;
            self.left = self.left.map(|n| n - 1);
        }
        Some(self.pacer.due())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BufferMeta, Mode, SenderConfig};

    #[test]
    fn pacing_spreads_bits_over_time() {
        let ns = Duration::from_nanos;
        let mut p = Pacer::new(8_000_000);
        assert_eq!(p.due(), ns(0));
        p.sent(1000);
        assert_eq!(p.due(), ns(1_000_000));
        p.sent(usize::MAX);
        assert!(p.due() > ns(1_000_000));
        assert_eq!(Pacer::new(0).due(), ns(0));
    }

    #[test]
    fn rounds_cover_every_kept_block_then_end() {
        let mut sender = Sender::new(SenderConfig {
            mode: Mode::Carousel,
            window: 0,
            max_block_time: Duration::ZERO,
            max_k: 4,
            ..SenderConfig::default()
        })
        .unwrap();
        let mut out = Vec::new();
        for i in 0..3u8 {
            sender.push_buffer(&BufferMeta::default(), &[i; 5000], &mut out);
        }
        sender.flush(&mut out);
        let blocks = sender.window_blocks();
        assert!(blocks > 2);
        let mut rounds = CarouselRounds::new(Some(2), 1_000_000);
        out.clear();
        let mut last_due = Duration::ZERO;
        let mut steps = 0;
        while let Some(due) = rounds.step(&mut sender, &mut out) {
            assert!(due > last_due);
            last_due = due;
            steps += 1;
        }
        assert_eq!(steps, 2 * blocks);
        assert_eq!(rounds.rounds_done, 2);
        let bits: usize = out.iter().map(|p| p.len() * 8).sum();
        assert_eq!(last_due, Duration::from_nanos(bits as u64 * 1000));
    }
}
