// SPDX-License-Identifier: MPL-2.0

//! Stats on the bus: every fanout element posts its `stats` structure, named
//! `fanout-<element>-stats`, as an element message about once a second while data flows.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use gst::prelude::*;

/// How often stats go on the bus.
pub const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// Says when the next stats message is due; shared by the threads of one element.
#[derive(Debug, Default)]
pub struct StatsTicker {
    next: Mutex<Option<Instant>>,
}

impl StatsTicker {
    /// True about once per [`STATS_INTERVAL`]: the first call starts the count.
    pub fn due(&self) -> bool {
        let now = Instant::now();
        let mut next = self.next.lock().unwrap();
        match *next {
            Some(t) if now < t => false,
            Some(_) => {
                *next = Some(now + STATS_INTERVAL);
                true
            }
            None => {
                *next = Some(now + STATS_INTERVAL);
                false
            }
        }
    }

    /// Starts the count again (a new run).
    pub fn reset(&self) {
        *self.next.lock().unwrap() = None;
    }
}

/// Posts `stats` from `element` as an element message.
pub fn post_stats(element: &impl IsA<gst::Element>, stats: gst::Structure) {
    let element = element.as_ref();
    let _ = element.post_message(gst::message::Element::builder(stats).src(element).build());
}

/// An element's `stats` property and bus messages: live while it runs, those of its last run
/// once it stopped, and posted about once a second.
#[derive(Debug, Default)]
pub struct Stats {
    ticker: StatsTicker,
    last: Mutex<Option<gst::Structure>>,
}

impl Stats {
    /// A new run: the count of seconds starts again.
    pub fn started(&self) {
        self.ticker.reset();
    }

    /// The run ended with `last`: the property reads it from now on.
    pub fn stopped(&self, last: gst::Structure) {
        *self.last.lock().unwrap() = Some(last);
    }

    /// What the property reads: `live()` while `running` (or before any run ended), else the
    /// last run's.
    pub fn read(&self, running: bool, live: impl FnOnce() -> gst::Structure) -> gst::Structure {
        // Not held while `live` runs: it takes the element's own locks.
        let last = self.last.lock().unwrap().clone();
        match last {
            Some(last) if !running => last,
            _ => live(),
        }
    }

    /// Posts `make()` from `element` if a second has passed since the last post.
    pub fn post_when_due(
        &self,
        element: &impl IsA<gst::Element>,
        make: impl FnOnce() -> gst::Structure,
    ) {
        if self.ticker.due() {
            post_stats(element, make());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_while_running_the_last_run_once_stopped() {
        gst::init().unwrap();
        let s = Stats::default();
        let live = || gst::Structure::new_empty("live");
        assert_eq!(s.read(false, live).name(), "live", "no run ended yet");
        s.stopped(gst::Structure::new_empty("last"));
        assert_eq!(s.read(false, live).name(), "last");
        assert_eq!(s.read(true, live).name(), "live");
    }

    #[test]
    fn due_once_an_interval_after_the_first_call() {
        let t = StatsTicker::default();
        assert!(!t.due());
        assert!(!t.due());
        *t.next.lock().unwrap() = Some(Instant::now());
        assert!(t.due());
        assert!(!t.due());
        t.reset();
        assert!(!t.due());
    }
}
