//! The recent past of a stream, kept in memory beside the store: readers that keep up are
//! served from here (`offset-tee`'s outputs, sharing the buffers), readers that fall behind
//! read the store. A buffer is named by its [`Position`], the same whether it is read from
//! here or from the store.

use std::collections::VecDeque;

use crate::seek::KeyframeSeek;

/// A buffer's place in the store: its store time and, since several buffers can share one
/// (untimed buffers take the time of the one before), how many before it had the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub st: u64,
    pub ordinal: u32,
}

/// Gives positions to buffers in store order.
#[derive(Debug, Default, Clone, Copy)]
pub struct Positions {
    last: Option<Position>,
}

impl Positions {
    pub fn next(&mut self, st: u64) -> Position {
        let ordinal = match self.last {
            Some(last) if last.st == st => last.ordinal.saturating_add(1),
            _ => 0,
        };
        let position = Position { st, ordinal };
        self.last = Some(position);
        position
    }
}

/// How much the window keeps at most.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: usize,
    /// Store time between the oldest and the newest entry.
    pub max_span: u64,
}

pub struct Entry<T> {
    pub position: Position,
    pub item: T,
    size: usize,
}

pub struct Window<T> {
    entries: VecDeque<Entry<T>>,
    bytes: usize,
    limits: Limits,
}

impl<T> Window<T> {
    pub fn new(limits: Limits) -> Window<T> {
        Window {
            entries: VecDeque::new(),
            bytes: 0,
            limits,
        }
    }

    /// Adds the newest buffer and forgets the oldest past the limits (always keeping one).
    pub fn push(&mut self, position: Position, size: usize, item: T) {
        self.entries.push_back(Entry {
            position,
            item,
            size,
        });
        self.bytes = self.bytes.saturating_add(size);
        while self.entries.len() > 1 {
            let oldest = &self.entries[0];
            let span = position.st.saturating_sub(oldest.position.st);
            if self.bytes <= self.limits.max_bytes && span <= self.limits.max_span {
                break;
            }
            self.bytes = self.bytes.saturating_sub(oldest.size);
            self.entries.pop_front();
        }
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    pub fn newest(&self) -> Option<&Entry<T>> {
        self.entries.back()
    }

    pub fn oldest(&self) -> Option<&Entry<T>> {
        self.entries.front()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The entry at `position`, if the window still (or already) holds it.
    pub fn get(&self, position: Position) -> Option<&Entry<T>> {
        let i = self
            .entries
            .binary_search_by(|e| e.position.cmp(&position))
            .ok()?;
        self.entries.get(i)
    }

    /// The entry following `position`, if the window holds both: an output that had
    /// `position` goes on here.
    pub fn after(&self, position: Position) -> Option<&Entry<T>> {
        let i = match self.entries.binary_search_by(|e| e.position.cmp(&position)) {
            Ok(i) => i + 1,
            // Not held: the window cannot tell what followed it.
            Err(_) => return None,
        };
        self.entries.get(i)
    }

    /// Where a seek to store time `st` lands, by the store's rule ([`KeyframeSeek`]): the last
    /// keyframe at or before `st`, if the window reaches back to `st` and holds one.
    pub fn keyframe_at_or_before(
        &self,
        st: u64,
        is_keyframe: impl Fn(&T) -> bool,
    ) -> Option<&Entry<T>> {
        if self.oldest()?.position.st > st {
            return None;
        }
        let mut seek = KeyframeSeek::new(st);
        for (i, e) in self.entries.iter().enumerate() {
            if !seek.offer(e.position.st, is_keyframe(&e.item), || i) {
                break;
            }
        }
        let (_, i) = seek.landing()?;
        self.entries.get(i).filter(|e| is_keyframe(&e.item))
    }

    /// The oldest entry at or after store time `st`, if the window reaches back to `st`.
    pub fn at_or_after(&self, st: u64) -> Option<&Entry<T>> {
        if self.oldest()?.position.st > st {
            return None;
        }
        let i = self.entries.partition_point(|e| e.position.st < st);
        self.entries.get(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(entries: &[u64]) -> Window<usize> {
        let mut w = Window::new(Limits {
            max_bytes: 1000,
            max_span: 100,
        });
        let mut p = Positions::default();
        for (i, &st) in entries.iter().enumerate() {
            w.push(p.next(st), 10, i);
        }
        w
    }

    #[test]
    fn equal_store_times_get_ordinals() {
        let mut p = Positions::default();
        let got: Vec<_> = [5, 5, 5, 7, 7, 9].iter().map(|&st| p.next(st)).collect();
        assert_eq!(got[2], Position { st: 5, ordinal: 2 });
        assert_eq!(got[3], Position { st: 7, ordinal: 0 });
        assert_eq!(got[4], Position { st: 7, ordinal: 1 });
    }

    #[test]
    fn limits_forget_the_oldest() {
        let w = window(&[0, 50, 120, 130]);
        // Span 100: 0 and 50 are gone once 130 is in.
        assert_eq!(w.oldest().unwrap().position.st, 50);
        let mut small = Window::new(Limits {
            max_bytes: 25,
            max_span: u64::MAX,
        });
        for i in 0..5 {
            small.push(Position { st: i, ordinal: 0 }, 10, ());
        }
        assert_eq!(small.bytes(), 20);
        assert_eq!(small.oldest().unwrap().position.st, 3);
    }

    #[test]
    fn lookups_by_position() {
        let w = window(&[10, 10, 20, 30, 40]);
        let p = |st, ordinal| Position { st, ordinal };
        assert_eq!(w.get(p(10, 1)).unwrap().item, 1);
        assert_eq!(w.after(p(10, 1)).unwrap().item, 2);
        assert!(w.after(p(40, 0)).is_none(), "nothing newer yet");
        assert!(w.after(p(15, 0)).is_none(), "never held");
        assert!(w.get(p(5, 0)).is_none());
        // Where an output delayed to a store time starts.
        assert_eq!(w.at_or_after(10).unwrap().item, 0);
        assert_eq!(w.at_or_after(25).unwrap().item, 3);
        assert!(w.at_or_after(45).is_none(), "not there yet");
        assert!(w.at_or_after(5).is_none(), "older than the window");
    }

    #[test]
    fn keyframe_seeks_land_as_in_the_store() {
        // Items are indices; every third a keyframe: 0, 3, 6.
        let w = window(&[10, 20, 30, 40, 50, 60, 70]);
        let key = |i: &usize| i.is_multiple_of(3);
        assert_eq!(w.keyframe_at_or_before(55, key).unwrap().item, 3);
        assert_eq!(w.keyframe_at_or_before(70, key).unwrap().item, 6);
        assert!(
            w.keyframe_at_or_before(5, key).is_none(),
            "older than the window"
        );
        let late = window(&[20, 30, 40]);
        let key_at_0 = |i: &usize| *i == 0;
        assert_eq!(late.keyframe_at_or_before(35, key_at_0).unwrap().item, 0);
        // No keyframe held at or before: the store must say.
        assert!(late.keyframe_at_or_before(35, |_| false).is_none());
    }
}
