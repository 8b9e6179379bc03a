// SPDX-License-Identifier: MPL-2.0

//! fanout's session protocol (docs/session-protocol.md), sans-IO in the style of
//! quinn-proto: [`Server`] and [`Client`] are state machines fed datagrams and the time,
//! handing back datagrams to send, timers and events. Sockets and threads belong to the
//! `session-sink` and `session-src` elements.

pub mod client;
pub mod cookie;
pub mod fallback;
pub mod frame;
pub mod message;
pub mod report;
pub mod seal;
pub mod server;

pub use client::{Client, ClientConfig, ClientEvent};
pub use fallback::{Fallback, Transport};
pub use frame::{frame, Deframer};
pub use message::{ChannelInfo, LostEntry, Message, Reason, Security, Stay};
pub use report::Reports;
pub use server::{
    Event, JoinRequest, Now, Peer, RemoveReason, RepairTo, Server, ServerConfig, Transmit,
};
