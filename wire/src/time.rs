//! Monotonic time for the sans-IO state machines: a point on the caller's clock ([`Mono`])
//! and [`Duration`]s between points. The machines never read a clock; their callers convert
//! at the edge (GStreamer clock times and element properties stay `u64` nanoseconds).

use std::fmt;
use std::ops::{Add, AddAssign, Sub};
use std::time::Duration;

/// A point on a monotonic clock: nanoseconds since an origin the caller picks (its start,
/// a pipeline's base time...). Only points of one clock compare.
///
/// Arithmetic saturates, as every computation on times taken from outside must: `+`
/// stops at [`Mono::MAX`], `-` at [`Mono::ZERO`], and
/// [`saturating_duration_since`](Mono::saturating_duration_since) at zero.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mono(u64);

impl Mono {
    /// The clock's origin.
    pub const ZERO: Mono = Mono(0);
    /// Later than any time a clock reaches: "never", where a time is needed.
    pub const MAX: Mono = Mono(u64::MAX);

    pub const fn from_nanos(ns: u64) -> Mono {
        Mono(ns)
    }

    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// How long after `earlier` this is; zero if it is not after it.
    pub const fn saturating_duration_since(self, earlier: Mono) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// `d` later, at most [`Mono::MAX`].
    pub const fn saturating_add(self, d: Duration) -> Mono {
        Mono(self.0.saturating_add(nanos(d)))
    }

    /// `d` earlier, at least [`Mono::ZERO`].
    pub const fn saturating_sub(self, d: Duration) -> Mono {
        Mono(self.0.saturating_sub(nanos(d)))
    }
}

impl Add<Duration> for Mono {
    type Output = Mono;
    /// Saturating: [`Mono::saturating_add`].
    fn add(self, d: Duration) -> Mono {
        self.saturating_add(d)
    }
}

impl AddAssign<Duration> for Mono {
    fn add_assign(&mut self, d: Duration) {
        *self = self.saturating_add(d);
    }
}

impl Sub<Duration> for Mono {
    type Output = Mono;
    /// Saturating: [`Mono::saturating_sub`].
    fn sub(self, d: Duration) -> Mono {
        self.saturating_sub(d)
    }
}

/// The nanoseconds since the origin, as [`Duration`] prints them (`1.5s`).
impl fmt::Display for Mono {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&Duration::from_nanos(self.0), f)
    }
}

/// `d` in nanoseconds, at most `u64::MAX` (584 years): the unit of GStreamer clock times,
/// element properties and the wire formats.
pub const fn nanos(d: Duration) -> u64 {
    let ns = d.as_nanos();
    if ns > u64::MAX as u128 {
        u64::MAX
    } else {
        ns as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn points_and_durations_add_and_compare() {
        let t = Mono::from_nanos(5_000_000);
        assert_eq!(t + 3 * MS, Mono::from_nanos(8_000_000));
        assert_eq!((t + MS).as_nanos(), 6_000_000);
        assert_eq!(t - 2 * MS, Mono::from_nanos(3_000_000));
        let mut u = t;
        u += MS;
        assert!(t < u && u <= Mono::MAX && Mono::ZERO < t);
        assert_eq!(u.saturating_duration_since(t), MS);
        assert_eq!(t.saturating_duration_since(u), Duration::ZERO);
        assert_eq!(t.to_string(), "5ms");
        assert_eq!(Mono::default(), Mono::ZERO);
    }

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Mono::MAX + MS, Mono::MAX);
        assert_eq!(Mono::from_nanos(u64::MAX - 1) + Duration::MAX, Mono::MAX);
        assert_eq!(Mono::from_nanos(1) - MS, Mono::ZERO);
        assert_eq!(Mono::ZERO - Duration::MAX, Mono::ZERO);
        assert_eq!(
            Mono::MAX.saturating_duration_since(Mono::ZERO),
            Duration::from_nanos(u64::MAX)
        );
        assert_eq!(nanos(Duration::MAX), u64::MAX);
        assert_eq!(nanos(Duration::from_nanos(u64::MAX)), u64::MAX);
        assert_eq!(nanos(Duration::from_secs(30)), 30_000_000_000);
        assert_eq!(nanos(Duration::ZERO), 0);
    }
}
