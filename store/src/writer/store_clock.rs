//! Store time: buffer times mapped onto one monotonic axis for the whole store.

use super::RecordMeta;
use crate::MAX_STORE_GAP;

/// Maps buffer times to store time: monotonic across discontinuities and
/// across recordings appended to the same store. The writer keeps one; an element that must
/// know each buffer's store time as it hands it over takes a copy from
/// [`super::Writer::store_clock`], runs it in its streaming thread and gives the writer the
/// result (`RecordMeta::st`).
#[derive(Debug, Default, Clone)]
pub struct StoreClock {
    last_pace: Option<u64>,
    pub(super) last_st: u64,
    pub(super) end_st: u64,
}

impl StoreClock {
    /// The store time of the next buffer.
    pub fn next(&mut self, m: &RecordMeta) -> u64 {
        let pace = m.dts.or(m.pts).or(m.arrival);
        let st = match (pace, self.last_pace) {
            (Some(p), Some(lp)) if p >= lp && p - lp <= MAX_STORE_GAP => {
                self.last_st.saturating_add(p - lp)
            }
            // New recording, time went backwards or jumped more than a day ahead: carry on
            // where the store ends.
            (Some(_), _) => self.end_st,
            // Untimed buffers share the time of the one before.
            (None, _) => self.last_st,
        };
        self.accept(st, m)
    }

    /// Takes a store time computed elsewhere, kept monotonic.
    pub(super) fn accept(&mut self, st: u64, m: &RecordMeta) -> u64 {
        let st = st.max(self.last_st);
        if let Some(pace) = m.dts.or(m.pts).or(m.arrival) {
            self.last_pace = Some(pace);
        }
        self.last_st = st;
        self.end_st = self.end_st.max(st.saturating_add(m.duration.unwrap_or(0)));
        st
    }

    /// Where the store ends: the end of the latest buffer.
    pub fn end(&self) -> u64 {
        self.end_st
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_clock_is_monotonic_and_continues_across_jumps() {
        let mut c = StoreClock::default();
        let m = |pts: Option<u64>, duration: Option<u64>| RecordMeta {
            pts,
            duration,
            ..Default::default()
        };
        assert_eq!(c.next(&m(Some(1000), Some(10))), 0);
        assert_eq!(c.next(&m(Some(1010), Some(10))), 10);
        assert_eq!(c.next(&m(None, None)), 10);
        // Backwards: carry on where the store ends.
        assert_eq!(c.next(&m(Some(5), Some(10))), 20);
        assert_eq!(c.next(&m(Some(15), None)), 30);
        // Forward gaps are kept: the recording plays back at its own pace.
        assert_eq!(c.next(&m(Some(1015), None)), 1030);
        // A jump of more than a day is a discontinuity, not a gap to keep.
        assert_eq!(c.next(&m(Some(1015 + MAX_STORE_GAP + 1), None)), 1030);
        assert_eq!(c.next(&m(Some(1025 + MAX_STORE_GAP + 1), None)), 1040);
    }

    #[test]
    fn dts_is_preferred_over_pts_then_arrival() {
        let mut c = StoreClock::default();
        let first = RecordMeta {
            pts: Some(500),
            dts: Some(100),
            arrival: Some(9000),
            ..Default::default()
        };
        let second = RecordMeta {
            pts: Some(300),
            dts: Some(140),
            arrival: Some(9999),
            ..Default::default()
        };
        assert_eq!(c.next(&first), 0);
        assert_eq!(c.next(&second), 40);
    }
}
