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

#[cfg(test)]
mod tests {
    use super::*;

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
