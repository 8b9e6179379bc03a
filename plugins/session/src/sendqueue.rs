// SPDX-License-Identifier: MPL-2.0

//! A TCP receiver's frames waiting for its writer thread. Bounded in frames and in bytes:
//! when the receiver falls behind, its *oldest* data frames go (the fountain code makes up for any of them); control
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
    /// Bytes of the data frames waiting.
    bytes: usize,
    closed: bool,
}

pub struct SendQueue {
    inner: Mutex<Inner>,
    ready: Condvar,
    limit: usize,
    limit_bytes: usize,
    pub dropped: AtomicU64,
}

impl SendQueue {
    /// Holds at most `limit` data frames and `limit_bytes` of them (the newest frame always).
    pub fn new(limit: usize, limit_bytes: usize) -> SendQueue {
        SendQueue {
            inner: Mutex::default(),
            ready: Condvar::new(),
            limit: limit.max(1),
            limit_bytes,
            dropped: AtomicU64::new(0),
        }
    }

    pub fn push_data(&self, frame: Vec<u8>) {
        let mut q = self.inner.lock().unwrap();
        if q.closed {
            return;
        }
        q.bytes += frame.len();
        q.data.push_back(frame);
        while q.data.len() > self.limit || (q.bytes > self.limit_bytes && q.data.len() > 1) {
            let old = q.data.pop_front().expect("more than one");
            q.bytes -= old.len();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
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
            if let Some(f) = q.control.pop_front() {
                return Some(f);
            }
            if let Some(f) = q.data.pop_front() {
                q.bytes -= f.len();
                return Some(f);
            }
            let (guard, timeout) = self.ready.wait_timeout(q, wait).unwrap();
            q = guard;
            if timeout.timed_out() && q.control.is_empty() && q.data.is_empty() {
                return None;
            }
        }
    }

    /// Closes the queue; returns the data bytes it still held.
    pub fn close(&self) -> usize {
        let mut q = self.inner.lock().unwrap();
        let held = q.bytes;
        q.closed = true;
        // Given back, not only emptied: a queue may have held megabytes.
        q.control = VecDeque::new();
        q.data = VecDeque::new();
        q.bytes = 0;
        drop(q);
        self.ready.notify_all();
        held
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
        let q = SendQueue::new(3, usize::MAX);
        for i in 0..5u8 {
            q.push_data(vec![i]);
        }
        q.push_control(vec![100]);
        assert_eq!(q.dropped.load(Ordering::Relaxed), 2);
        let got: Vec<u8> = std::iter::from_fn(|| q.pop(NOW)).map(|f| f[0]).collect();
        assert_eq!(got, vec![100, 2, 3, 4]);
    }

    #[test]
    fn the_oldest_data_goes_past_the_byte_limit_too() {
        let q = SendQueue::new(100, 1000);
        for i in 0..5u8 {
            q.push_data(vec![i; 400]);
        }
        assert_eq!(q.dropped.load(Ordering::Relaxed), 3);
        let got: Vec<u8> = std::iter::from_fn(|| q.pop(NOW)).map(|f| f[0]).collect();
        assert_eq!(got, vec![3, 4]);
        // One frame larger than the limit still goes out.
        q.push_data(vec![9; 5000]);
        assert_eq!(q.pop(NOW).map(|f| f.len()), Some(5000));
    }

    #[test]
    fn a_receiver_that_leaves_its_control_frames_unread_is_closed() {
        let q = SendQueue::new(3, usize::MAX);
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
        let q = std::sync::Arc::new(SendQueue::new(3, usize::MAX));
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
