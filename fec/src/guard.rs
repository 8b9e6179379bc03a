//! What keeps a bare receiver (no session, anyone may send to it) from being steered by forged
//! packets: where the stream really is, which flow keeps coming, and whether an attack lasts.
//! Each piece is GStreamer-free state the [`crate::Receiver`] feeds with packets and the time.

use std::time::Duration;

use fanout_wire::time::Mono;

/// Blocks beyond the one waited for that count as "near": the stream is there. A block
/// further ahead moves nothing (the blocks before it are not given up) until the stream near
/// the block waited for has gone silent, as in an outage the sender has moved on from.
pub const NEAR_BLOCKS: u64 = 16;

/// When the stream was last seen near the block waited for, and how long its usual pauses
/// are (a sparse stream pauses longer than the latency between blocks).
#[derive(Debug, Default, Clone, Copy)]
pub struct Presence {
    last: Option<Mono>,
    /// The longest recent pause between two near packets, decaying by 1/16 each packet.
    gap: Duration,
}

impl Presence {
    /// A packet for a block near the one waited for arrived at `now`.
    pub fn seen(&mut self, now: Mono) {
        if let Some(last) = self.last {
            let gap = now.saturating_duration_since(last);
            self.gap = gap.max(self.gap - self.gap / 16);
        }
        self.last = Some(self.last.map_or(now, |l| l.max(now)));
    }

    /// When the last packet came, if any did.
    pub fn last(&self) -> Option<Mono> {
        self.last
    }

    /// The block waited for is known from `now` on: the stream counts as near from then.
    pub fn start(&mut self, now: Mono) {
        self.last.get_or_insert(now);
    }

    /// From when the stream counts as gone from near the block waited for: `latency` (at least
    /// twice its usual pause) after its last near packet.
    pub fn silent_from(&self, latency: Duration) -> Mono {
        let quiet = latency.max(self.gap.saturating_mul(2));
        self.last.unwrap_or(Mono::ZERO) + quiet
    }
}

/// Whether `block` is near `next` (within [`NEAR_BLOCKS`] either way).
pub fn near(block: u64, next: u64) -> bool {
    block.abs_diff(next) <= NEAR_BLOCKS
}

/// How long flows are counted before the one followed is weighed against the others, and
/// the span over which an attack is measured.
pub const WINDOW: Duration = Duration::from_secs(1);
/// Flows counted at once at most (others are not counted until a window ends).
const MAX_FLOWS: usize = 8;

/// `flow = -1`: follows the flow that keeps coming, not the first packet seen. Per window,
/// another flow with more than twice the packets of the one followed (and at least 8) takes
/// over; before anything was given out, one with more than twice as many so far (plus 2).
#[derive(Debug, Default)]
pub struct FlowFollower {
    counts: Vec<(u32, u64)>,
    since: Option<Mono>,
}

impl FlowFollower {
    /// Counts a packet of `flow` at `now`; returns the flow to follow instead of `current`.
    pub fn packet(&mut self, flow: u32, current: u32, started: bool, now: Mono) -> Option<u32> {
        let since = *self.since.get_or_insert(now);
        match self.counts.iter().position(|(f, _)| *f == flow) {
            Some(i) => self.counts[i].1 = self.counts[i].1.saturating_add(1),
            None if self.counts.len() < MAX_FLOWS => self.counts.push((flow, 1)),
            None => (),
        }
        let count = |f: u32| self.counts.iter().find(|(g, _)| *g == f).map_or(0, |c| c.1);
        let ours = count(current);
        let (best, most) = self
            .counts
            .iter()
            .filter(|(f, _)| *f != current)
            .max_by_key(|(_, n)| *n)
            .copied()?;
        let ended = now.saturating_duration_since(since) >= WINDOW;
        let switch = if started {
            ended && most >= 8 && most > ours.saturating_mul(2)
        } else {
            most > ours.saturating_mul(2).saturating_add(2)
        };
        if ended || switch {
            self.counts.clear();
            self.since = Some(now);
        }
        switch.then_some(best)
    }
}

/// Says once that packets which look forged (malformed, contradicting, out of range,
/// outvoted...) keep coming: at least [`ATTACK_MIN`] a second for [`ATTACK_SECONDS`]
/// seconds in a row.
#[derive(Debug, Default)]
pub struct AttackWatch {
    since: Option<Mono>,
    at_start: u64,
    seconds: u32,
    said: bool,
}

pub const ATTACK_MIN: u64 = 10;
pub const ATTACK_SECONDS: u32 = 5;

impl AttackWatch {
    /// `suspect`: the running count of suspect packets. True once, when the attack is said.
    pub fn update(&mut self, suspect: u64, now: Mono) -> bool {
        let since = *self.since.get_or_insert(now);
        if now.saturating_duration_since(since) < WINDOW {
            return false;
        }
        let busy = suspect.saturating_sub(self.at_start) >= ATTACK_MIN;
        self.seconds = if busy {
            self.seconds.saturating_add(1)
        } else {
            0
        };
        self.since = Some(now);
        self.at_start = suspect;
        if self.seconds >= ATTACK_SECONDS && !self.said {
            self.said = true;
            return true;
        }
        false
    }
}
