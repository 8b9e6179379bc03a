// SPDX-License-Identifier: MPL-2.0

//! How long the sessions' threads block on a socket before they look at their timers.

use std::time::Duration;

use fanout_session::Mono;

/// The longest wait: stop requests, stats and slow timers are looked at this often.
pub const TICK: Duration = Duration::from_millis(20);

/// How long to wait for input when a timer is due at `deadline` (same clock as `now`):
/// until then, at most a tick, at least 1 ms (a read timeout cannot be 0). Timers that
/// pace repairs (gathering rounds, a multicast receiver's back-off) must not run a tick late.
pub fn until(deadline: Option<Mono>, now: Mono) -> Duration {
    deadline.map_or(TICK, |d| {
        d.saturating_duration_since(now)
            .clamp(Duration::from_millis(1), TICK)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_until_the_deadline_within_bounds() {
        let at = Mono::from_nanos;
        assert_eq!(until(None, at(5)), TICK);
        assert_eq!(
            until(Some(at(5_000_000)), at(2_000_000)),
            Duration::from_millis(3)
        );
        assert_eq!(until(Some(at(1)), at(2)), Duration::from_millis(1));
        assert_eq!(until(Some(Mono::MAX), Mono::ZERO), TICK);
    }
}
