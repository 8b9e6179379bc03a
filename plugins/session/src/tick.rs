// SPDX-License-Identifier: MPL-2.0

//! How long the sessions' threads block on a socket before they look at their timers.

use std::time::Duration;

/// The longest wait: stop requests, stats and slow timers are looked at this often.
pub const TICK: Duration = Duration::from_millis(20);

/// How long to wait for input when a timer is due at `deadline` (ns, same clock as `now`):
/// until then, at most a tick, at least 1 ms (a read timeout cannot be 0). Timers that
/// pace repairs (gathering rounds, a multicast receiver's back-off) must not run a tick late.
pub fn until(deadline: Option<u64>, now: u64) -> Duration {
    deadline.map_or(TICK, |d| {
        Duration::from_nanos(d.saturating_sub(now)).clamp(Duration::from_millis(1), TICK)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_until_the_deadline_within_bounds() {
        assert_eq!(until(None, 5), TICK);
        assert_eq!(until(Some(5_000_000), 2_000_000), Duration::from_millis(3));
        assert_eq!(until(Some(1), 2), Duration::from_millis(1));
        assert_eq!(until(Some(u64::MAX), 0), TICK);
    }
}
