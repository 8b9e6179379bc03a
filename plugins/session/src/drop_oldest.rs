// SPDX-License-Identifier: MPL-2.0

//! The one queue between a thread that must never wait and a slower one that takes from it:
//! a TCP receiver's frames before its writer thread, a `session-src` pad's packets before
//! its streaming task. Bounded in entries and in bytes; when full, the *oldest* droppable
//! entry goes (the fountain code makes up for any packet) and is counted. Entries that must
//! not be lost (control frames, caps, EOS) are kept: in order with the rest, or ahead of
//! them ([`Order`]). Pushing never blocks.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// What the queue needs to know of an entry.
pub trait Entry {
    /// May go when the queue is full.
    fn droppable(&self) -> bool;
    /// What it counts against the byte limit.
    fn bytes(&self) -> usize;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Everything in the order pushed (a pad's caps before its buffers).
    Fifo,
    /// Kept entries ahead of the droppable ones (a receiver's answers before its data).
    KeptFirst,
}

struct Inner<T> {
    /// `Order::KeptFirst`: the kept entries; unused with `Fifo`.
    kept: VecDeque<T>,
    items: VecDeque<T>,
    /// Bytes of the droppable entries waiting.
    bytes: usize,
    /// Droppable entries waiting.
    droppable: usize,
    closed: bool,
}

pub struct DropOldest<T> {
    inner: Mutex<Inner<T>>,
    ready: Condvar,
    order: Order,
    limit: usize,
    limit_bytes: usize,
    /// Kept entries waiting at most: past it the queue closes (a peer that sends requests
    /// and never reads the answers).
    max_kept: usize,
    dropped: AtomicU64,
}

impl<T: Entry> DropOldest<T> {
    /// Holds at most `limit` droppable entries and `limit_bytes` of them (the newest one
    /// always), and `max_kept` kept ones.
    pub fn new(order: Order, limit: usize, limit_bytes: usize, max_kept: usize) -> Self {
        DropOldest {
            inner: Mutex::new(Inner {
                kept: VecDeque::new(),
                items: VecDeque::new(),
                bytes: 0,
                droppable: 0,
                closed: false,
            }),
            ready: Condvar::new(),
            order,
            limit: limit.max(1),
            limit_bytes,
            max_kept,
            dropped: AtomicU64::new(0),
        }
    }

    /// Queues `entry`; a closed queue takes nothing. Too many kept entries close it.
    pub fn push(&self, entry: T) {
        let mut q = self.inner.lock().unwrap();
        if q.closed {
            return;
        }
        if !entry.droppable() {
            let kept = match self.order {
                Order::KeptFirst => q.kept.len(),
                Order::Fifo => q.items.len() - q.droppable,
            };
            if kept >= self.max_kept {
                drop(q);
                self.close();
                return;
            }
            match self.order {
                Order::KeptFirst => q.kept.push_back(entry),
                Order::Fifo => q.items.push_back(entry),
            }
        } else {
            q.bytes += entry.bytes();
            q.droppable += 1;
            q.items.push_back(entry);
            while q.droppable > self.limit || (q.bytes > self.limit_bytes && q.droppable > 1) {
                let Some(i) = q.items.iter().position(Entry::droppable) else {
                    break;
                };
                let old = q.items.remove(i).expect("found");
                q.bytes -= old.bytes();
                q.droppable -= 1;
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        drop(q);
        self.ready.notify_one();
    }

    /// The next entry; `None` when closed, or after `wait` with nothing.
    pub fn pop(&self, wait: Duration) -> Option<T> {
        let mut q = self.inner.lock().unwrap();
        loop {
            if q.closed {
                return None;
            }
            if let Some(e) = q.kept.pop_front() {
                return Some(e);
            }
            if let Some(e) = q.items.pop_front() {
                if e.droppable() {
                    q.bytes -= e.bytes();
                    q.droppable -= 1;
                }
                return Some(e);
            }
            let (guard, timeout) = self.ready.wait_timeout(q, wait).unwrap();
            q = guard;
            if timeout.timed_out() && q.kept.is_empty() && q.items.is_empty() {
                return None;
            }
        }
    }

    /// Closes the queue and wakes its taker; returns the droppable bytes it still held.
    pub fn close(&self) -> usize {
        let mut q = self.inner.lock().unwrap();
        let held = q.bytes;
        q.closed = true;
        // Given back, not only emptied: a queue may have held megabytes.
        q.kept = VecDeque::new();
        q.items = VecDeque::new();
        q.bytes = 0;
        q.droppable = 0;
        drop(q);
        self.ready.notify_all();
        held
    }

    pub fn is_closed(&self) -> bool {
        self.inner.lock().unwrap().closed
    }

    pub fn is_empty(&self) -> bool {
        let q = self.inner.lock().unwrap();
        q.kept.is_empty() && q.items.is_empty()
    }

    /// Entries dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Duration = Duration::ZERO;

    /// A frame: kept if its first byte is 100 or more.
    impl Entry for Vec<u8> {
        fn droppable(&self) -> bool {
            self[0] < 100
        }
        fn bytes(&self) -> usize {
            self.len()
        }
    }

    fn drain(q: &DropOldest<Vec<u8>>) -> Vec<u8> {
        std::iter::from_fn(|| q.pop(NOW)).map(|f| f[0]).collect()
    }

    #[test]
    fn the_oldest_droppable_goes_when_full_and_kept_ones_go_first() {
        let q = DropOldest::new(Order::KeptFirst, 3, usize::MAX, 256);
        for i in 0..5u8 {
            q.push(vec![i]);
        }
        q.push(vec![100]);
        assert_eq!(q.dropped(), 2);
        assert_eq!(drain(&q), [100, 2, 3, 4]);
    }

    #[test]
    fn in_fifo_order_kept_entries_stay_where_they_were_pushed() {
        let q = DropOldest::new(Order::Fifo, 3, usize::MAX, 256);
        q.push(vec![100]);
        for i in 0..5u8 {
            q.push(vec![i]);
        }
        q.push(vec![101]);
        assert_eq!(q.dropped(), 2);
        assert_eq!(drain(&q), [100, 2, 3, 4, 101]);
    }

    #[test]
    fn the_oldest_goes_past_the_byte_limit_too() {
        let q = DropOldest::new(Order::KeptFirst, 100, 1000, 256);
        for i in 0..5u8 {
            q.push(vec![i; 400]);
        }
        assert_eq!(q.dropped(), 3);
        assert_eq!(drain(&q), [3, 4]);
        // One entry larger than the limit still goes out.
        q.push(vec![9; 5000]);
        assert_eq!(q.pop(NOW).map(|f| f.len()), Some(5000));
    }

    #[test]
    fn a_taker_that_leaves_its_kept_entries_unread_is_closed() {
        for order in [Order::KeptFirst, Order::Fifo] {
            let q = DropOldest::new(order, 3, usize::MAX, 256);
            for _ in 0..256 {
                q.push(vec![100]);
            }
            assert!(!q.is_closed());
            q.push(vec![100]);
            assert!(q.is_closed());
            assert_eq!(q.pop(NOW), None);
        }
    }

    #[test]
    fn a_closed_queue_takes_nothing_and_wakes_its_taker() {
        let q = std::sync::Arc::new(DropOldest::<Vec<u8>>::new(Order::Fifo, 3, usize::MAX, 8));
        let w = {
            let q = q.clone();
            std::thread::spawn(move || q.pop(Duration::from_secs(60)))
        };
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(q.close(), 0);
        assert_eq!(w.join().unwrap(), None);
        q.push(vec![1]);
        assert!(q.is_empty() && q.is_closed());
        let q = DropOldest::new(Order::Fifo, 3, usize::MAX, 8);
        q.push(vec![1, 1]);
        q.push(vec![100]);
        assert_eq!(q.close(), 2, "the droppable bytes it still held");
    }
}
