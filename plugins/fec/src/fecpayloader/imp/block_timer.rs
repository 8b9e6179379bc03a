// SPDX-License-Identifier: MPL-2.0

//! With live input in PLAYING, a block with data in it waits at most `max-block-time` for
//! more input: a live source that stalls still gets its last block out without waiting for
//! its next buffer or EOS. A steady source never lets the alarm go off (its blocks close by
//! their timestamps, the same in every payloader of the stream). The wait is on the pipeline clock (so a
//! test clock drives it) and on a thread of ours: closing the block pushes, which must not
//! block the clock's own thread.

use std::ops::ControlFlow;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use fanout_element_kit::worker::{Stop, Turns, Worker};
use gst::prelude::*;

/// How long the thread sleeps with nothing armed before it looks at its stop flag.
const IDLE: Duration = Duration::from_millis(50);

#[derive(Default)]
struct Armed {
    /// The block the alarm is for, and the alarm.
    alarm: Option<(u64, gst::SingleShotClockId)>,
    /// The id the thread waits on (perhaps an alarm since moved): unscheduled to wake it.
    waiting: Option<gst::SingleShotClockId>,
    /// Alarms are set only in PLAYING: an input being taken as the element pauses must not
    /// set one after the pause cleared them.
    playing: bool,
    stopped: bool,
}

impl Armed {
    /// No alarm, and the thread woken from the one it waits on.
    fn clear(&mut self) {
        self.alarm = None;
        if let Some(id) = self.waiting.take() {
            id.unschedule();
        }
    }
}

#[derive(Default)]
struct Shared {
    armed: Mutex<Armed>,
    wake: Condvar,
}

/// One alarm at a time, for the block being built; fired on the timer's thread. Moving it
/// later (every input does) does not wake the thread: when the old time comes, it sees
/// the alarm moved and waits again.
#[derive(Default)]
pub struct BlockTimer {
    shared: Arc<Shared>,
    worker: Mutex<Option<Worker>>,
}

struct Waiting<F> {
    shared: Arc<Shared>,
    fire: F,
}

impl<F: Fn(u64) + Send + 'static> Turns for Waiting<F> {
    fn turn(&mut self, _stop: &Stop) -> ControlFlow<()> {
        let (block, id) = {
            let mut armed = self.shared.armed.lock().unwrap();
            if armed.alarm.is_none() && !armed.stopped {
                armed = self.shared.wake.wait_timeout(armed, IDLE).unwrap().0;
            }
            if armed.stopped {
                return ControlFlow::Break(());
            }
            let Some((block, id)) = armed.alarm.clone() else {
                return ControlFlow::Continue(());
            };
            armed.waiting = Some(id.clone());
            (block, id)
        };
        // Disarmed or re-armed meanwhile (unscheduled): the next turn takes the new alarm.
        let res = id.wait().0;
        let fired = {
            let mut armed = self.shared.armed.lock().unwrap();
            armed.waiting = None;
            let current = armed
                .alarm
                .as_ref()
                .is_some_and(|(b, a)| *b == block && a.time() == id.time());
            let fired = current && res != Err(gst::ClockError::Unscheduled) && !armed.stopped;
            if fired {
                armed.alarm = None;
            }
            fired
        };
        if fired {
            (self.fire)(block);
        }
        ControlFlow::Continue(())
    }
}

impl BlockTimer {
    /// Starts the timer's thread; `fire(block)` runs on it when an alarm goes off.
    pub fn start(&self, fire: impl Fn(u64) + Send + 'static) -> std::io::Result<()> {
        self.stop();
        *self.shared.armed.lock().unwrap() = Armed::default();
        let worker = Worker::spawn(
            "fec-pay-block",
            Waiting {
                shared: self.shared.clone(),
                fire,
            },
        )?;
        *self.worker.lock().unwrap() = Some(worker);
        Ok(())
    }

    /// Stops the thread and waits for it (a `fire` under way finishes first).
    pub fn stop(&self) {
        {
            let mut armed = self.shared.armed.lock().unwrap();
            armed.stopped = true;
            armed.clear();
        }
        self.shared.wake.notify_all();
        if let Some(worker) = self.worker.lock().unwrap().take() {
            worker.join();
        }
    }

    /// Alarms may be set from now on (PAUSED to PLAYING).
    pub fn play(&self) {
        self.shared.armed.lock().unwrap().playing = true;
    }

    /// No alarm, none set until [`Self::play`] (PLAYING to PAUSED).
    pub fn pause(&self) {
        let mut armed = self.shared.armed.lock().unwrap();
        armed.playing = false;
        armed.clear();
    }

    pub fn playing(&self) -> bool {
        self.shared.armed.lock().unwrap().playing
    }

    /// Sets the alarm for `block` at `clock`'s now plus `after`, if playing.
    pub fn arm(&self, block: u64, clock: &gst::Clock, after: Duration) {
        let mut armed = self.shared.armed.lock().unwrap();
        if armed.stopped || !armed.playing {
            return;
        }
        // `ClockTime::MAX` at most: u64::MAX is no time at all.
        let max = u128::from(gst::ClockTime::MAX.nseconds());
        let after = gst::ClockTime::from_nseconds(after.as_nanos().min(max) as u64);
        let at = clock.time().saturating_add(after).min(gst::ClockTime::MAX);
        if let Some(id) = armed.waiting.take_if(|id| id.time() > at) {
            // Earlier than the one waited for (a new clock): the thread must not sleep on.
            id.unschedule();
        }
        armed.alarm = Some((block, clock.new_single_shot_id(at)));
        self.shared.wake.notify_all();
    }

    /// No alarm until the next `arm` (flushing, EOS).
    pub fn disarm(&self) {
        self.shared.armed.lock().unwrap().clear();
    }
}
