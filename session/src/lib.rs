// SPDX-License-Identifier: MPL-2.0

//! fanout's session protocol (docs/session-protocol.md), sans-IO in the style of
//! quinn-proto: [`Server`] and [`Client`] are state machines fed datagrams and the time,
//! handing back datagrams to send, timers and events. Sockets and threads belong to the
//! `session-sink` and `session-src` elements.
//!
//! # One timer and one output convention
//!
//! Every state machine here ([`Server`], [`Client`], [`Fallback`], [`Reports`]) keeps its
//! own timer the same way:
//!
//! - `poll_timeout()` says when `handle_timeout(now)` next needs calling (`None`: not until
//!   an input changes that). Calling `handle_timeout` earlier does nothing, so a caller may
//!   call it whenever it wakes.
//! - What a machine has to say is queued, and drained by its `poll_*` methods until they
//!   return `None`: [`Server::poll_transmit`] and [`Server::poll_event`],
//!   [`Client::poll_transmit`] and [`Client::poll_event`], [`Fallback::poll_change`],
//!   [`Reports::poll_report`]. Drain them after every input and every `handle_timeout`.
//! - An input returns only what answers that input at once and cannot wait in a queue: a
//!   DATA payload borrowed from the datagram ([`Client::handle_datagram`]), a JOIN for the
//!   application to accept or refuse ([`Server::handle_datagram`]).
//!
//! "Now" and deadlines are points of one monotonic clock the caller picks ([`Mono`]);
//! intervals are [`Duration`](std::time::Duration)s. The server is also told Unix time, for
//! JOINs that stay until an absolute time ([`Now`]). What goes on the wire, and element
//! properties, stay nanoseconds: callers convert at the edge.

pub mod client;
pub mod cookie;
pub mod fallback;
pub mod frame;
pub mod message;
pub mod report;
pub mod seal;
pub mod server;

/// The monotonic time the machines are fed, re-exported: [`time::Mono`].
pub use fanout_wire::time;

pub use client::{Client, ClientConfig, ClientEvent};
pub use fallback::{Fallback, Transport};
pub use frame::{frame, Deframer};
pub use message::{ChannelInfo, LostEntry, Message, Reason, Security, Stay};
pub use report::Reports;
pub use server::{
    Event, JoinRequest, Now, Peer, RemoveReason, RepairTo, Server, ServerConfig, Transmit,
};
pub use time::Mono;
