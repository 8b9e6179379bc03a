// SPDX-License-Identifier: MPL-2.0

//! What a [`Server`](super::Server) hands back: datagrams to send and events.

use super::Peer;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: Peer,
    pub data: Vec<u8>,
}

/// Who a repair goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepairTo {
    Receiver(u64),
    /// The channel's multicast group: several of its receivers miss the block.
    Group,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveReason {
    Left,
    Expired,
    /// Taken out by the server itself (its sends kept failing).
    Evicted,
    /// Taken out by the application.
    Removed,
}

impl RemoveReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RemoveReason::Left => "left",
            RemoveReason::Expired => "expired",
            RemoveReason::Evicted => "evicted",
            RemoveReason::Removed => "removed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Added {
        id: u64,
        peer: Peer,
    },
    Removed {
        id: u64,
        peer: Peer,
        reason: RemoveReason,
    },
    /// Send `count` fresh repair symbols of `block` of `flow` on `channel` to `to`.
    Repair {
        to: RepairTo,
        channel: u16,
        flow: u32,
        block: u64,
        count: u32,
    },
}
