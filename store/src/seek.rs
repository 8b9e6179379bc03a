//! Where a seek lands, the one rule for the store's index and the in-memory window.

/// Offered the buffers in store order, keeps where a seek to store time `target` lands: the
/// last keyframe at or before `target` (among buffers sharing a time, the first keyframe),
/// else the oldest buffer offered.
pub struct KeyframeSeek<T> {
    target: u64,
    best: Option<(u64, T)>,
}

impl<T> KeyframeSeek<T> {
    pub fn new(target: u64) -> Self {
        KeyframeSeek { target, best: None }
    }

    /// Offers the next buffer (`landing` makes what is kept of it). False once no later
    /// buffer can change where the seek lands.
    pub fn offer(&mut self, st: u64, keyframe: bool, landing: impl FnOnce() -> T) -> bool {
        match &self.best {
            Some(_) if st > self.target => return false,
            None => self.best = Some((st, landing())),
            Some((best_st, _)) if keyframe && st > *best_st => self.best = Some((st, landing())),
            Some(_) => {}
        }
        true
    }

    /// The store time landed on and what was kept of that buffer.
    pub fn landing(self) -> Option<(u64, T)> {
        self.best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn land(buffers: &[(u64, bool)], target: u64) -> Option<usize> {
        let mut seek = KeyframeSeek::new(target);
        for (i, &(st, key)) in buffers.iter().enumerate() {
            if !seek.offer(st, key, || i) {
                break;
            }
        }
        seek.landing().map(|(_, i)| i)
    }

    #[test]
    fn lands_on_the_last_keyframe_at_or_before() {
        let gop = [(0, true), (10, false), (20, true), (30, false), (40, false)];
        assert_eq!(land(&gop, 35), Some(2));
        assert_eq!(land(&gop, 20), Some(2));
        assert_eq!(land(&gop, 19), Some(0));
        // Older than everything: the oldest.
        assert_eq!(land(&gop[1..], 5), Some(0));
        // Among equal times, the first keyframe.
        assert_eq!(land(&[(0, true), (5, true), (5, true)], 9), Some(1));
        assert_eq!(land(&[], 9), None);
    }
}
