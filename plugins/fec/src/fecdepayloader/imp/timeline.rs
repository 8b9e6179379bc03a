// SPDX-License-Identifier: MPL-2.0

//! The receiver's time: the pipeline clock (the system clock while there is none), kept
//! continuous when the pipeline hands over another clock, so that deadlines already set
//! still fall where they should.

use gst::prelude::*;

pub struct Timeline {
    clock: gst::Clock,
    /// Added to the clock's time to give the receiver's time.
    offset: i128,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline {
            clock: gst::SystemClock::obtain(),
            offset: 0,
        }
    }
}

fn clamp(t: i128) -> u64 {
    t.clamp(0, i128::from(gst::ClockTime::MAX.nseconds())) as u64
}

impl Timeline {
    pub fn now(&self) -> u64 {
        clamp(i128::from(self.clock.time().nseconds()) + self.offset)
    }

    /// Goes on with `clock` (the system clock for `None`) from the time reached now.
    pub fn switch(&mut self, clock: Option<&gst::Clock>) {
        let clock = clock.cloned().unwrap_or_else(gst::SystemClock::obtain);
        if clock == self.clock {
            return;
        }
        let now = self.now();
        self.offset = i128::from(now) - i128::from(clock.time().nseconds());
        self.clock = clock;
    }

    /// A single-shot clock id for receiver time `t`.
    pub fn alarm(&self, t: u64) -> gst::SingleShotClockId {
        let at = gst::ClockTime::from_nseconds(clamp(i128::from(t) - self.offset));
        self.clock.new_single_shot_id(at)
    }
}
