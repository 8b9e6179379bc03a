// SPDX-License-Identifier: MPL-2.0

//! The time the sessions' threads run their protocol timers on: the pipeline's clock once
//! the element has one, the monotonic clock before. A pipeline on the system clock (the
//! default) sees no difference; an application (or a test, with `gst_check::TestClock`)
//! that gives the pipeline another clock drives expiry, keepalives, ENDs, reports, the
//! hold's timeout and the receivers' timeouts with it.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use gst::prelude::*;

#[derive(Debug)]
struct State {
    /// The pipeline's clock, its time when it came, and the time elapsed then.
    clock: Option<(gst::Clock, gst::ClockTime, Duration)>,
    /// The last time given: a clock that steps back (a network clock, say) stalls the
    /// timers until it catches up instead of running them backwards.
    last: Duration,
}

#[derive(Debug)]
pub struct Timebase {
    origin: Instant,
    /// The wall clock at `origin`: absolute times (a receiver's "stay until") are measured
    /// on the same time line as the rest.
    origin_unix: Duration,
    state: Mutex<State>,
}

impl Default for Timebase {
    fn default() -> Self {
        Timebase {
            origin: Instant::now(),
            origin_unix: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default(),
            state: Mutex::new(State {
                clock: None,
                last: Duration::ZERO,
            }),
        }
    }
}

impl Timebase {
    /// The element's clock changed (`None`: taken away, back to the monotonic clock).
    pub fn set_clock(&self, clock: Option<&gst::Clock>) {
        let mut s = self.state.lock().unwrap();
        let elapsed = self.elapsed_locked(&mut s);
        s.clock = clock.map(|c| (c.clone(), c.time(), elapsed));
    }

    /// Now, as an `Instant` on this time line: compare it only with others from here.
    pub fn now(&self) -> Instant {
        self.origin + self.elapsed()
    }

    /// `at` (from [`Self::now`]) in nanoseconds since the Unix epoch.
    pub fn unix_at(&self, at: Instant) -> u64 {
        let d = self
            .origin_unix
            .saturating_add(at.saturating_duration_since(self.origin));
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
    }

    fn elapsed(&self) -> Duration {
        self.elapsed_locked(&mut self.state.lock().unwrap())
    }

    fn elapsed_locked(&self, s: &mut State) -> Duration {
        let e = match &s.clock {
            None => self.origin.elapsed(),
            Some((clock, at, base)) => {
                let t = clock.time().saturating_sub(*at);
                base.saturating_add(Duration::from_nanos(t.nseconds()))
            }
        };
        s.last = s.last.max(e);
        s.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_clock_it_is_given_from_where_it_was() {
        gst::init().unwrap();
        let tb = Timebase::default();
        let clock = gst_check::TestClock::with_start_time(gst::ClockTime::from_seconds(100));
        tb.set_clock(Some(clock.upcast_ref()));
        let t0 = tb.now();
        clock.advance_time(30_000_000);
        assert_eq!(tb.now() - t0, Duration::from_millis(30));
        assert_eq!(tb.unix_at(tb.now()) - tb.unix_at(t0), 30_000_000);
        // A clock that starts earlier than the last one does not take time back.
        let earlier = gst_check::TestClock::new();
        tb.set_clock(Some(earlier.upcast_ref()));
        assert_eq!(tb.now() - t0, Duration::from_millis(30));
        earlier.advance_time(5_000_000);
        assert_eq!(tb.now() - t0, Duration::from_millis(35));
    }
}
