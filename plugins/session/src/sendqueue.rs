// SPDX-License-Identifier: MPL-2.0

//! A TCP receiver's frames waiting for its writer thread: a [`DropOldest`] queue where,
//! when the receiver falls behind, its *oldest* data frames go (the fountain code makes up
//! for any of them); control frames (JOINED, END...) are never dropped and go first, but a
//! receiver that leaves [`MAX_CONTROL`] of them unread (it sends and does not read) is
//! closed. Pushing never blocks.

use crate::drop_oldest::{DropOldest, Entry, Order};

/// Control frames waiting at most: a receiver answers a few at a time (JOINED, CHANNEL,
/// END); one this far behind is sending requests without reading the answers.
pub const MAX_CONTROL: usize = 256;

pub enum Frame {
    Control(Vec<u8>),
    Data(Vec<u8>),
}

impl Frame {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Frame::Control(b) | Frame::Data(b) => b,
        }
    }
}

impl Entry for Frame {
    fn droppable(&self) -> bool {
        matches!(self, Frame::Data(_))
    }

    fn bytes(&self) -> usize {
        Frame::bytes(self).len()
    }
}

pub type SendQueue = DropOldest<Frame>;

/// A queue of at most `limit` data frames and `limit_bytes` of them (the newest always).
pub fn send_queue(limit: usize, limit_bytes: usize) -> SendQueue {
    DropOldest::new(Order::KeptFirst, limit, limit_bytes, MAX_CONTROL)
}
