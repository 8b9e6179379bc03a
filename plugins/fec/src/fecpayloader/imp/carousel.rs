// SPDX-License-Identifier: MPL-2.0

//! After EOS in carousel mode, fresh rounds over the kept blocks go out from the source pad's
//! own task (as `raptorqenc` releases its delayed packets), so upstream's thread returns at
//! once; stopping and flushing end the rounds without waiting for the pacing. In stream mode
//! with `repair-linger`, the same task holds EOS back while repair requests are answered.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use fanout_fec::CarouselRounds;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::{FecPayloader, CAT};
use crate::FecMode;

/// The rounds in progress (none: a stream-mode linger), and the EOS they hold back.
pub struct Carousel {
    rounds: Option<CarouselRounds>,
    started: Instant,
    linger: Duration,
    eos: gst::Event,
}

/// A flag and a condition variable: the pacing wait ends early once it is set.
#[derive(Default)]
pub struct Interrupt {
    set: Mutex<bool>,
    wake: Condvar,
}

impl Interrupt {
    pub fn set(&self) {
        *self.set.lock().unwrap() = true;
        self.wake.notify_all();
    }

    pub fn clear(&self) {
        *self.set.lock().unwrap() = false;
    }

    /// Waits until `deadline`; false if interrupted first.
    fn wait_until(&self, deadline: Instant) -> bool {
        let mut set = self.set.lock().unwrap();
        while !*set {
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            set = self.wake.wait_timeout(set, deadline - now).unwrap().0;
        }
        false
    }
}

impl FecPayloader {
    /// In carousel mode with rounds to go, takes the EOS and starts the rounds on the source
    /// pad's task; otherwise gives the event back, to go on at once.
    pub(super) fn start_carousel(&self, eos: gst::Event) -> Result<(), gst::Event> {
        let (mode, rounds, bitrate, linger, linger_set) = {
            let s = self.settings.lock().unwrap();
            (
                s.mode,
                s.carousel_rounds,
                s.carousel_bitrate,
                s.repair_linger,
                s.repair_linger_set,
            )
        };
        let rounds = match mode {
            FecMode::Carousel if rounds != 0 => {
                Some(CarouselRounds::new(u64::try_from(rounds).ok(), bitrate))
            }
            // The default lingers only where repair requests can come back (a session-sink).
            FecMode::Stream
                if linger > 0 && (linger_set || crate::has_repair_path(&self.srcpad)) =>
            {
                None
            }
            _ => return Err(eos),
        };
        self.interrupt.clear();
        *self.carousel.lock().unwrap() = Some(Carousel {
            rounds,
            started: Instant::now(),
            linger: Duration::from_nanos(linger),
            eos,
        });
        let weak = self.obj().downgrade();
        let started = self.srcpad.start_task(move || {
            if let Some(obj) = weak.upgrade() {
                obj.imp().carousel_step();
            }
        });
        if started.is_err() {
            let eos = self.carousel.lock().unwrap().take().map(|c| c.eos);
            gst::element_imp_warning!(
                self,
                gst::CoreError::Thread,
                ("Cannot start the carousel task: the stream ends without carousel rounds"),
                ["the source pad's task did not start"]
            );
            return Err(eos.expect("set above"));
        }
        Ok(())
    }

    /// Ends the rounds (stop, flush): wakes the task and waits for it to leave.
    pub(super) fn stop_carousel(&self) {
        self.interrupt.set();
        let _ = self.srcpad.stop_task();
        *self.carousel.lock().unwrap() = None;
    }

    /// One step of the task: a fresh round of the next kept block, then the pacing wait.
    fn carousel_step(&self) {
        let linger_end = match self.carousel.lock().unwrap().as_ref() {
            Some(c) if c.rounds.is_none() => Some(c.started + c.linger),
            _ => None,
        };
        if let Some(end) = linger_end {
            // Repair requests push their packets themselves meanwhile.
            if self.interrupt.wait_until(end) {
                gst::debug!(CAT, imp = self, "repair linger over");
                self.finish_carousel();
            } else {
                let _ = self.srcpad.pause_task();
            }
            return;
        }
        let _push = self.push_lock.lock().unwrap();
        let (due, packets, repairs) = {
            let mut carousel = self.carousel.lock().unwrap();
            let mut guard = self.state.lock().unwrap();
            let (Some(c), Some(state)) = (
                carousel
                    .as_mut()
                    .and_then(|c| c.rounds.as_mut().map(|r| (r, c.started))),
                guard.as_mut(),
            ) else {
                drop((carousel, guard));
                let _ = self.srcpad.pause_task();
                return;
            };
            let (rounds, started) = c;
            let due = rounds.step(&mut state.sender, &mut state.out);
            state.counters.carousel_rounds = rounds.rounds_done;
            (
                due.map(|after| started + after),
                state.take_packets(self.block(), None),
                std::mem::take(&mut state.repairs),
            )
        };
        let pushed = self.push_repairs(repairs).and_then(|_| {
            if packets.is_empty() {
                return Ok(gst::FlowSuccess::Ok);
            }
            self.srcpad.push_list(packets)
        });
        drop(_push);
        match (pushed, due) {
            (Err(gst::FlowError::Flushing), _) => {
                gst::debug!(CAT, imp = self, "carousel paused: flushing");
                let _ = self.srcpad.pause_task();
            }
            (Err(e), _) => {
                gst::debug!(CAT, imp = self, "carousel ends: downstream returned {e:?}");
                self.finish_carousel();
            }
            (Ok(_), None) => {
                gst::debug!(CAT, imp = self, "carousel rounds done");
                self.finish_carousel();
            }
            (Ok(_), Some(deadline)) => {
                if !self.interrupt.wait_until(deadline) {
                    let _ = self.srcpad.pause_task();
                }
            }
        }
    }

    /// Sends the EOS held back and leaves the task paused.
    fn finish_carousel(&self) {
        let eos = self.carousel.lock().unwrap().take().map(|c| c.eos);
        if let Some(eos) = eos {
            self.srcpad.push_event(eos);
        }
        let _ = self.srcpad.pause_task();
    }
}
