//! The loss the stream sees on its way here, measured on the symbols sent with each block
//! (its source symbols and proactive repair): what a loss report has to allow for, since its
//! answer comes the same way.

use super::pending::Variant;
use crate::description::Description;
use crate::sizing;

/// Symbols the estimate spans, about: older ones weigh half each time this many more came.
const WINDOW: f64 = 4000.0;
/// Symbols measured before the estimate is used at all.
const MIN_SAMPLE: f64 = 50.0;
/// The most loss asks are sized for: beyond it the link is broken, not lossy, and a
/// report asking for many times the block would only crowd out other receivers.
pub const MAX_LOSS: f64 = 0.5;

#[derive(Debug, Default, Clone, Copy)]
pub(super) struct LossEstimate {
    sent: f64,
    got: f64,
}

impl LossEstimate {
    /// A block was rebuilt or given up: of the symbols sent with it up to the last one that
    /// came (their ESIs run 0 … K + repair − 1, in order), those that came.
    pub fn sample(&mut self, v: &Variant, desc: &Description) {
        let k = u16::try_from(v.k).unwrap_or(u16::MAX);
        let repair = sizing::repair_count(
            v.params.codec,
            k,
            desc.max_k,
            u32::from(desc.repair_percent),
        );
        let bound = v.k.saturating_add(repair);
        let with_block = v.seen.iter().filter(|&&esi| esi < bound);
        let (got, last) = with_block.fold((0u32, 0u32), |(n, m), &esi| (n + 1, m.max(esi)));
        if got == 0 {
            return;
        }
        self.add(f64::from(last) + 1.0, f64::from(got));
    }

    fn add(&mut self, sent: f64, got: f64) {
        self.sent += sent;
        self.got += got;
        if self.sent > WINDOW {
            self.sent /= 2.0;
            self.got /= 2.0;
        }
    }

    /// The share of symbols lost, 0 until enough were measured, at most [`MAX_LOSS`].
    pub fn loss(&self) -> f64 {
        if self.sent < MIN_SAMPLE {
            return 0.0;
        }
        ((self.sent - self.got) / self.sent).clamp(0.0, MAX_LOSS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_the_share_lost_over_a_sliding_window() {
        let mut e = LossEstimate::default();
        e.add(10.0, 9.0);
        assert_eq!(e.loss(), 0.0, "too little measured");
        for _ in 0..100 {
            e.add(100.0, 90.0);
        }
        assert!((e.loss() - 0.1).abs() < 1e-9, "{}", e.loss());
        // The link got clean: the estimate follows within a few windows.
        for _ in 0..200 {
            e.add(100.0, 100.0);
        }
        assert!(e.loss() < 0.001, "{}", e.loss());
        for _ in 0..200 {
            e.add(100.0, 10.0);
        }
        assert_eq!(e.loss(), MAX_LOSS);
    }
}
