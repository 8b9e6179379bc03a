// SPDX-License-Identifier: MPL-2.0

//! `wait-for-clients`: the data of every channel waits until that many receivers have
//! joined or `wait-timeout` passed, so receivers started before the stream get its first
//! byte. The streaming threads wait here; the control thread opens it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// `want` receivers are awaited until `deadline` (none: for ever).
    Waiting {
        want: u32,
        deadline: Option<Instant>,
    },
    Open,
    /// Stopping: waiters leave with `Flushing`.
    Stopped,
}

/// Why the hold opened, for the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Opened {
    Joined { want: u32 },
    TimedOut { want: u32, joined: usize },
}

#[derive(Debug)]
pub(super) struct Hold {
    state: Mutex<State>,
    wake: Condvar,
}

impl Hold {
    /// Waits for `want` receivers (0: open at once) for `timeout` ns from `now` (0: for
    /// ever), on the element's time line.
    pub fn new(want: u32, timeout: u64, now: Instant) -> Hold {
        let state = match want {
            0 => State::Open,
            _ => State::Waiting {
                want,
                deadline: (timeout > 0)
                    .then(|| now.checked_add(Duration::from_nanos(timeout)))
                    .flatten(),
            },
        };
        Hold {
            state: Mutex::new(state),
            wake: Condvar::new(),
        }
    }

    /// Blocks a streaming thread until the hold opens; `Err` when stopping, or when its pad
    /// starts `flushing` (then [`Self::wake_all`]).
    pub fn wait(&self, flushing: &AtomicBool) -> Result<(), gst::FlowError> {
        let mut s = self.state.lock().unwrap();
        loop {
            match *s {
                State::Open => return Ok(()),
                State::Stopped => return Err(gst::FlowError::Flushing),
                State::Waiting { .. } if flushing.load(Ordering::SeqCst) => {
                    return Err(gst::FlowError::Flushing)
                }
                State::Waiting { .. } => s = self.wake.wait(s).unwrap(),
            }
        }
    }

    /// Wakes the waiters to look at their pad's flushing flag.
    pub fn wake_all(&self) {
        let _s = self.state.lock().unwrap();
        self.wake.notify_all();
    }

    /// The control thread's check, with the receivers in now: opens when enough joined or
    /// the time is up at `now`, and says which.
    pub fn check(&self, joined: usize, now: Instant) -> Option<Opened> {
        let mut s = self.state.lock().unwrap();
        let State::Waiting { want, deadline } = *s else {
            return None;
        };
        let opened = if joined >= want as usize {
            Opened::Joined { want }
        } else if deadline.is_some_and(|d| now >= d) {
            Opened::TimedOut { want, joined }
        } else {
            return None;
        };
        *s = State::Open;
        self.wake.notify_all();
        Some(opened)
    }

    pub fn is_waiting(&self) -> bool {
        matches!(*self.state.lock().unwrap(), State::Waiting { .. })
    }

    /// The stream ended while waiting: opens. True if it was waiting.
    pub fn end(&self) -> bool {
        let mut s = self.state.lock().unwrap();
        if !matches!(*s, State::Waiting { .. }) {
            return false;
        }
        *s = State::Open;
        self.wake.notify_all();
        true
    }

    /// Lets every waiter go with `Flushing`: the element stops.
    pub fn stop(&self) {
        *self.state.lock().unwrap() = State::Stopped;
        self.wake.notify_all();
    }
}

/// Bits per second the held data goes out at when the hold opens: four times the rate it
/// came at (`bytes` over `span` ns of its timestamps), at least 20 Mbit/s, 100 Mbit/s when its
/// timestamps say nothing. A burst at line rate overruns receivers' socket buffers, and what
/// they lose before their first block or after their last is lost to them unseen.
pub(super) fn release_rate(bytes: usize, span: Option<u64>) -> u64 {
    const MIN: u64 = 20_000_000;
    match span.filter(|&s| s > 0) {
        Some(span) => {
            let bits = (bytes as u128).saturating_mul(8 * 4 * 1_000_000_000) / u128::from(span);
            (bits.min(u128::from(u64::MAX)) as u64).max(MIN)
        }
        None => 100_000_000,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn opens_when_enough_joined_and_releases_waiters() {
        let t = Instant::now();
        let hold = Arc::new(Hold::new(2, 0, t));
        let h = hold.clone();
        let waiter = std::thread::spawn(move || h.wait(&AtomicBool::new(false)));
        assert_eq!(hold.check(1, t), None);
        assert_eq!(hold.check(2, t), Some(Opened::Joined { want: 2 }));
        assert_eq!(waiter.join().unwrap(), Ok(()));
        assert_eq!(hold.check(0, t), None, "opened once");
        assert_eq!(hold.wait(&AtomicBool::new(true)), Ok(()));
    }

    #[test]
    fn opens_at_the_deadline_with_who_joined() {
        let t = Instant::now();
        let hold = Hold::new(3, 1_000_000, t);
        assert_eq!(hold.check(1, t + Duration::from_micros(999)), None);
        let at = t + Duration::from_millis(1);
        assert_eq!(
            hold.check(1, at),
            Some(Opened::TimedOut { want: 3, joined: 1 })
        );
        assert!(!hold.is_waiting());
    }

    #[test]
    fn nothing_to_wait_for_is_open_and_flushing_or_stopping_lets_waiters_go() {
        assert_eq!(
            Hold::new(0, 0, Instant::now()).wait(&AtomicBool::new(false)),
            Ok(())
        );
        let hold = Arc::new(Hold::new(1, 0, Instant::now()));
        let flushing = Arc::new(AtomicBool::new(false));
        let (h, f) = (hold.clone(), flushing.clone());
        let waiter = std::thread::spawn(move || h.wait(&f));
        flushing.store(true, Ordering::SeqCst);
        hold.wake_all();
        assert_eq!(waiter.join().unwrap(), Err(gst::FlowError::Flushing));
        assert!(hold.is_waiting(), "a flush does not open the hold");
        let h = hold.clone();
        let waiter = std::thread::spawn(move || h.wait(&AtomicBool::new(false)));
        hold.stop();
        assert_eq!(waiter.join().unwrap(), Err(gst::FlowError::Flushing));
        // An absurd timeout waits for ever instead of overflowing.
        assert!(Hold::new(1, u64::MAX, Instant::now()).is_waiting());
    }

    #[test]
    fn the_end_of_the_stream_opens_it() {
        let hold = Hold::new(5, 0, Instant::now());
        assert!(hold.end());
        assert!(!hold.end() && !hold.is_waiting());
        assert_eq!(hold.wait(&AtomicBool::new(false)), Ok(()));
    }

    #[test]
    fn held_data_goes_out_at_four_times_its_rate_at_least_20_mbit() {
        // 1 MB over 1 s: 8 Mbit/s, released at 32.
        assert_eq!(release_rate(1_000_000, Some(1_000_000_000)), 32_000_000);
        assert_eq!(release_rate(1_000, Some(1_000_000_000)), 20_000_000);
        assert_eq!(release_rate(1_000, None), 100_000_000);
        assert_eq!(release_rate(1_000, Some(0)), 100_000_000);
        assert_eq!(release_rate(usize::MAX, Some(1)), u64::MAX);
    }
}
