// SPDX-License-Identifier: MPL-2.0

//! A TCP receiver's frames waiting for its writer thread. Bounded: when the receiver falls
//! behind, its *oldest* data frames go (the fountain code makes up for any of them); control
//! frames (JOINED, END...) are never dropped, but a receiver that leaves
//! [`MAX_CONTROL`] of them unread (it sends and does not read) is closed. Pushing never
//! blocks.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Control frames waiting at most: a receiver answers a few at a time (JOINED, CHANNEL,
/// END); one this far behind is sending requests without reading the answers.
pub const MAX_CONTROL: usize = 256;

#[derive(Default)]
struct Inner {
    control: VecDeque<Vec<u8>>,
    data: VecDeque<Vec<u8>>,
    closed: bool,
}

pub struct SendQueue {
    inner: Mutex<Inner>,
    ready: Condvar,
    limit: usize,
    pub dropped: AtomicU64,
}

impl SendQueue {
    /// Holds at most `limit` data frames.
    pub fn new(limit: usize) -> SendQueue {
        SendQueue {
            inner: Mutex::default(),
            ready: Condvar::new(),
            limit: limit.max(1),
            dropped: AtomicU64::new(0),
        }
    }

    pub fn push_data(&self, frame: Vec<u8>) {
        let mut q = self.inner.lock().unwrap();
        if q.closed {
            return;
        }
        if q.data.len() >= self.limit {
            q.data.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        q.data.push_back(frame);
        drop(q);
        self.ready.notify_one();
    }

    /// Queues a control frame; closes the queue instead if [`MAX_CONTROL`] are waiting.
    pub fn push_control(&self, frame: Vec<u8>) {
        let mut q = self.inner.lock().unwrap();
        if q.closed {
            return;
        }
        if q.control.len() >= MAX_CONTROL {
            drop(q);
            self.close();
            return;
        }
        q.control.push_back(frame);
        drop(q);
        self.ready.notify_one();
    }

    /// The next frame, control first; `None` when closed, or after `wait` with nothing.
    pub fn pop(&self, wait: Duration) -> Option<Vec<u8>> {
        let mut q = self.inner.lock().unwrap();
        loop {
            if q.closed {
                return None;
            }
            if let Some(f) = q.control.pop_front().or_else(|| q.data.pop_front()) {
                return Some(f);
            }
            let (guard, timeout) = self.ready.wait_timeout(q, wait).unwrap();
            q = guard;
            if timeout.timed_out() && q.control.is_empty() && q.data.is_empty() {
                return None;
            }
        }
    }

    pub fn close(&self) {
        let mut q = self.inner.lock().unwrap();
        q.closed = true;
        q.control.clear();
        q.data.clear();
        drop(q);
        self.ready.notify_all();
    }

    pub fn is_closed(&self) -> bool {
        self.inner.lock().unwrap().closed
    }

    pub fn is_empty(&self) -> bool {
        let q = self.inner.lock().unwrap();
        q.control.is_empty() && q.data.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Duration = Duration::ZERO;

    #[test]
    fn the_oldest_data_goes_when_full_and_control_is_kept_and_first() {
        let q = SendQueue::new(3);
        for i in 0..5u8 {
            q.push_data(vec![i]);
        }
        q.push_control(vec![100]);
        assert_eq!(q.dropped.load(Ordering::Relaxed), 2);
        let got: Vec<u8> = std::iter::from_fn(|| q.pop(NOW)).map(|f| f[0]).collect();
        assert_eq!(got, vec![100, 2, 3, 4]);
    }

    #[test]
    fn a_receiver_that_leaves_its_control_frames_unread_is_closed() {
        let q = SendQueue::new(3);
        for i in 0..MAX_CONTROL {
            q.push_control(vec![i as u8]);
        }
        assert!(!q.is_closed());
        q.push_control(vec![0]);
        assert!(q.is_closed());
        assert_eq!(q.pop(NOW), None);
    }

    #[test]
    fn a_closed_queue_takes_nothing_and_wakes_its_writer() {
        let q = std::sync::Arc::new(SendQueue::new(3));
        let w = {
            let q = q.clone();
            std::thread::spawn(move || q.pop(Duration::from_secs(60)))
        };
        std::thread::sleep(Duration::from_millis(20));
        q.close();
        assert_eq!(w.join().unwrap(), None);
        q.push_data(vec![1]);
        assert!(q.is_empty());
        assert!(q.is_closed());
    }
}
