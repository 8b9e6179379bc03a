//! What keeps a bare receiver (no session, anyone may send to it) from being steered by forged
//! packets: where the stream really is, which flow keeps coming, and whether an attack lasts.
//! Each piece is GStreamer-free state the [`crate::Receiver`] feeds with packets and the time.

/// Blocks beyond the one waited for that count as "near": the stream is there. A block
/// further ahead moves nothing (the blocks before it are not given up) until the stream near
/// the block waited for has gone silent, as in an outage the sender has moved on from.
pub const NEAR_BLOCKS: u64 = 16;

/// When the stream was last seen near the block waited for, and how long its usual pauses
/// are (a sparse stream pauses longer than the latency between blocks).
#[derive(Debug, Default, Clone, Copy)]
pub struct Presence {
    last: Option<u64>,
    /// The longest recent pause between two near packets, decaying by 1/16 each packet.
    gap: u64,
}

impl Presence {
    /// A packet for a block near the one waited for arrived at `now`.
    pub fn seen(&mut self, now: u64) {
        if let Some(last) = self.last {
            let gap = now.saturating_sub(last);
            self.gap = gap.max(self.gap - self.gap / 16);
        }
        self.last = Some(self.last.map_or(now, |l| l.max(now)));
    }

    /// From when the stream counts as gone from near the block waited for: `latency` (at least
    /// twice its usual pause) after its last near packet.
    pub fn silent_from(&self, latency: u64) -> u64 {
        let quiet = latency.max(self.gap.saturating_mul(2));
        self.last.unwrap_or(0).saturating_add(quiet)
    }
}

/// Whether `block` is near `next` (within [`NEAR_BLOCKS`] either way).
pub fn near(block: u64, next: u64) -> bool {
    block.abs_diff(next) <= NEAR_BLOCKS
}
