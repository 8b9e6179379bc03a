// SPDX-License-Identifier: MPL-2.0

//! When each recorded buffer is due and which timestamps it leaves with.
//! GStreamer-free so the arithmetic of rebasing and looping is unit-tested.
//!
//! Output time is store time plus a shift. The shift is fixed by the first
//! buffer (so it leaves at `origin`) and moved at each loop so the next play
//! starts right where the previous one ended: timestamps never jump back.

use fanout_store::{BufferRecord, MAX_STORE_GAP};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    /// Output time at which the buffer is due.
    pub at: u64,
    pub pts: Option<u64>,
    pub dts: Option<u64>,
    /// Store time went back, or jumped ahead more than a recorder ever writes (damage or a
    /// crafted file): the buffer continues right after the one before, a discontinuity.
    pub jumped: bool,
}

#[derive(Debug, Default)]
pub struct Playout {
    shift: Option<i128>,
    /// The next buffer continues right after `end` (a new loop begins).
    join: bool,
    /// Output time at which the last placed buffer ends.
    end: u64,
    last_at: Option<u64>,
    /// Last non-zero spacing between buffers, the length given to a buffer
    /// without a duration when a loop must continue after it.
    gap: u64,
    /// Store time of the last placed buffer.
    last_st: Option<u64>,
}

impl Playout {
    /// Places `rec`. `origin` gives the output time of the first buffer
    /// placed after a reset (live: the running time now).
    pub fn place(&mut self, rec: &BufferRecord, origin: impl FnOnce() -> u64) -> Placed {
        // Store time only goes forward, by at most a day: anything else is damage.
        let jumped = self
            .last_st
            .is_some_and(|last| rec.st < last || rec.st - last > MAX_STORE_GAP);
        self.join |= jumped;
        self.last_st = Some(rec.st);
        let st = i128::from(rec.st);
        let shift = match self.shift {
            Some(_) if self.join => i128::from(self.end) - st,
            Some(s) => s,
            None => i128::from(origin()) - st,
        };
        self.shift = Some(shift);
        self.join = false;
        let at = clamp(st + shift);
        if let Some(last) = self.last_at {
            if at > last {
                self.gap = at - last;
            }
        }
        self.last_at = Some(at);
        self.end = self.end.max(
            at.saturating_add(rec.duration.unwrap_or(self.gap))
                .min(MAX_TIME),
        );
        // Keep each timestamp's distance to the pacing time as recorded.
        let pace = i128::from(rec.pace_time().unwrap_or(rec.st));
        let rebase = |t: Option<u64>| t.map(|t| clamp(i128::from(t) - pace + st + shift));
        Placed {
            at,
            pts: rebase(rec.pts),
            dts: rebase(rec.dts),
            jumped,
        }
    }

    /// The next buffer starts a new play of the recording, continuing after
    /// the end of this one.
    pub fn join_next(&mut self) {
        self.join = true;
    }

    /// Forget the timeline (after a seek): the next buffer leaves at its origin.
    pub fn reset(&mut self) {
        *self = Playout::default();
    }
}

/// The largest valid `GstClockTime` (2^64 - 1 means "none").
pub const MAX_TIME: u64 = u64::MAX - 1;

/// Times come from store files, which may be crafted: kept within what GStreamer can carry.
fn clamp(t: i128) -> u64 {
    t.clamp(0, i128::from(MAX_TIME)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn rec(st: u64, pts: u64, dts: Option<u64>, duration: Option<u64>) -> BufferRecord {
        BufferRecord {
            st,
            pts: Some(pts),
            dts,
            duration,
            ..Default::default()
        }
    }

    #[test]
    fn first_buffer_leaves_at_origin_and_spacing_is_kept() {
        let mut p = Playout::default();
        // Recorded with running times around 5 s, stored from store time 0.
        let a = p.place(&rec(0, 5_000 * MS, None, None), || 100 * MS);
        let b = p.place(&rec(40 * MS, 5_040 * MS, None, None), || unreachable!());
        assert_eq!((a.at, a.pts), (100 * MS, Some(100 * MS)));
        assert_eq!((b.at, b.pts), (140 * MS, Some(140 * MS)));
    }

    #[test]
    fn pts_dts_distance_survives_rebasing() {
        let mut p = Playout::default();
        let a = p.place(&rec(0, 5_080 * MS, Some(5_000 * MS), None), || 0);
        assert_eq!((a.at, a.dts, a.pts), (0, Some(0), Some(80 * MS)));
    }

    #[test]
    fn loops_continue_after_the_last_buffer() {
        let mut p = Playout::default();
        p.place(&rec(1_000 * MS, 0, None, Some(40 * MS)), || 0);
        p.place(&rec(1_040 * MS, 40 * MS, None, Some(40 * MS)), || 0);
        p.join_next();
        let again = p.place(&rec(1_000 * MS, 0, None, Some(40 * MS)), || 0);
        assert_eq!(again.at, 80 * MS);
        let next = p.place(&rec(1_040 * MS, 40 * MS, None, Some(40 * MS)), || 0);
        assert_eq!(next.at, 120 * MS);
    }

    #[test]
    fn loop_without_durations_uses_the_buffer_spacing() {
        let mut p = Playout::default();
        for i in 0..3 {
            p.place(&rec(i * 10 * MS, i * 10 * MS, None, None), || 0);
        }
        p.join_next();
        assert_eq!(p.place(&rec(0, 0, None, None), || 0).at, 30 * MS);
    }

    #[test]
    fn extreme_recorded_times_stay_valid_clock_times() {
        let mut p = Playout::default();
        let max = u64::MAX - 1;
        let a = p.place(&rec(max, max, Some(0), Some(max)), || max);
        let b = p.place(&rec(max, max, None, None), || unreachable!());
        p.join_next();
        let c = p.place(&rec(0, 0, None, Some(u64::MAX - 1)), || 0);
        for placed in [a, b, c] {
            assert!(placed.at <= MAX_TIME);
            assert!(placed.pts.unwrap() <= MAX_TIME);
        }
        assert_eq!(c.at, MAX_TIME);
    }

    #[test]
    fn a_jump_of_more_than_a_day_continues_right_after_the_buffer_before() {
        let mut p = Playout::default();
        p.place(&rec(0, 0, None, Some(40 * MS)), || 0);
        let far = 1 << 62;
        let a = p.place(&rec(far, far, None, Some(40 * MS)), || 0);
        assert!(a.jumped);
        assert_eq!((a.at, a.pts), (40 * MS, Some(40 * MS)));
        let b = p.place(&rec(far + 40 * MS, far + 40 * MS, None, None), || 0);
        assert!(!b.jumped);
        assert_eq!(b.at, 80 * MS);
        // A day's gap is kept: the recording plays at its own pace.
        let c = p.place(&rec(far + MAX_STORE_GAP, 0, None, None), || 0);
        assert!(!c.jumped);
        // Back in store time: on right after the buffer before too.
        let d = p.place(&rec(0, 0, None, Some(40 * MS)), || 0);
        assert!(d.jumped);
        assert!(d.at >= c.at, "never back");
    }

    #[test]
    fn reset_takes_a_new_origin() {
        let mut p = Playout::default();
        p.place(&rec(0, 0, None, None), || 0);
        p.reset();
        assert_eq!(p.place(&rec(7 * MS, 7 * MS, None, None), || 500).at, 500);
    }
}
