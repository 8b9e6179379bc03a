// SPDX-License-Identifier: MPL-2.0

//! What `session-sink`'s threads share while it runs: the streaming threads send from it,
//! the TCP threads queue to it, and everything they have for the control thread goes through
//! its [`ToControl`] channel. The control thread's own state is in `control.rs`.
//!
//! Lock order: a pad's locks, then `snapshot` or a group sender. `snapshot` is held only to
//! copy or swap an `Arc`; a group sender's slot also while its socket is made, once. Neither
//! is held across a send or a call out.

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use gst::glib;
use gst::prelude::*;

use super::hold::Hold;
use super::tcp::Conn;
use crate::multicast;
use crate::timebase::Timebase;
use crate::udp_fanout::{Fanout, Target, Targets};

/// A control frame from a TCP receiver, for the control thread.
#[derive(Debug)]
pub(super) struct TcpFrame {
    pub from: SocketAddr,
    pub data: Vec<u8>,
}

/// TCP frames waiting for the control thread at most: past it the connections' readers
/// wait, and so do their peers (TCP flow control), as a flood of frames must not grow
/// memory or starve the control thread's timers.
pub(super) const MAX_TCP_FRAMES_WAITING: usize = 256;

/// What other threads tell the control thread, which owns the protocol state.
#[derive(Debug)]
pub(super) enum ToControl {
    /// A TCP connection closed: its receiver is out.
    Closed(SocketAddr),
    /// A channel's stream ended: its receivers hear END.
    Ended(u16),
    /// Receivers whose sends keep failing.
    Evict(Vec<u64>),
    /// Symbols of a block went out to everyone: receivers that told a loss get repair up
    /// front for it.
    Sent(BlockSent),
}

/// Symbols of one block sent on a channel (source and proactive repair).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BlockSent {
    pub channel: u16,
    pub flow: u32,
    pub block: u64,
    /// K, and symbols beyond K a decoder wants (2 for RaptorQ).
    pub k: u32,
    pub margin: u32,
    pub symbols: u32,
}

/// Where a repair packet goes; carried through `fec-payloader` in the repair request's
/// `destination` and back in the packet's meta.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Destination {
    /// The channel's multicast group.
    Group,
    /// One receiver, by its id.
    Receiver(u64),
}

/// The group's destination value: a string, so no receiver id can be taken for it.
const GROUP: &str = "group";

impl Destination {
    pub fn to_send_value(self) -> glib::SendValue {
        match self {
            Destination::Group => GROUP.to_send_value(),
            Destination::Receiver(id) => id.to_send_value(),
        }
    }

    /// The destination a packet's meta names; `None` for a value no session-sink made.
    pub fn from_value(v: &glib::Value) -> Option<Destination> {
        if let Ok(id) = v.get::<u64>() {
            return Some(Destination::Receiver(id));
        }
        (v.get::<&str>().ok()? == GROUP).then_some(Destination::Group)
    }
}

/// Who gets what, as the streaming threads see it; replaced whole when receivers change.
#[derive(Default)]
pub(super) struct Snapshot {
    /// UDP receivers taking unicast copies, per channel.
    pub channels: HashMap<u16, Targets>,
    /// TCP receivers, per channel.
    pub tcp: HashMap<u16, Vec<Arc<Conn>>>,
    /// The channel's multicast group, as one target.
    pub groups: HashMap<u16, Targets>,
    /// Every receiver of the channel (for repairs to one of them).
    pub members: HashMap<u16, HashSet<u64>>,
    /// UDP receivers by id.
    pub by_id: HashMap<u64, Arc<Target>>,
    /// TCP receivers by id, with their target (its id the receiver's).
    pub conns: HashMap<u64, (Arc<Conn>, Arc<Target>)>,
}

/// How multicast groups are sent to.
#[derive(Debug, Clone, Copy)]
pub(super) struct GroupSettings {
    pub ttl: u32,
    pub iface: multicast::Iface,
    pub looped: bool,
    pub gso: bool,
}

pub(super) struct Shared {
    /// The protocol's time line (see `crate::timebase`), and where on it the server started.
    pub time: Arc<Timebase>,
    pub start: Instant,
    pub socket: Arc<UdpSocket>,
    pub fanout: Fanout,
    /// Senders to IPv4 and IPv6 groups (made on first use: most servers need neither).
    group_v4: Mutex<Option<Arc<Fanout>>>,
    group_v6: Mutex<Option<Arc<Fanout>>>,
    group_settings: GroupSettings,
    pub snapshot: Mutex<Arc<Snapshot>>,
    /// `wait-for-clients`: data waits here until enough receivers joined.
    pub hold: Hold,
    pub gso_refusal_told: AtomicBool,
    pub tcp_queue: usize,
    pub tcp_queue_bytes: usize,
    to_control: Sender<ToControl>,
    tcp_frames: SyncSender<TcpFrame>,
}

impl Shared {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        time: Arc<Timebase>,
        socket: Arc<UdpSocket>,
        gso: bool,
        group_settings: GroupSettings,
        hold: Hold,
        tcp_queue: usize,
        tcp_queue_bytes: usize,
        to_control: Sender<ToControl>,
        tcp_frames: SyncSender<TcpFrame>,
    ) -> Shared {
        Shared {
            start: time.now(),
            time,
            fanout: Fanout::new(socket.clone(), gso),
            socket,
            group_v4: Mutex::default(),
            group_v6: Mutex::default(),
            group_settings,
            snapshot: Mutex::default(),
            hold,
            gso_refusal_told: AtomicBool::new(false),
            tcp_queue,
            tcp_queue_bytes,
            to_control,
            tcp_frames,
        }
    }

    /// Tells the control thread; nothing to do once it is gone.
    pub fn tell(&self, m: ToControl) {
        let _ = self.to_control.send(m);
    }

    /// Hands a TCP frame to the control thread, waiting while it is behind; false once it
    /// is gone.
    pub fn tcp_frame(&self, frame: TcpFrame) -> bool {
        self.tcp_frames.send(frame).is_ok()
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.lock().unwrap().clone()
    }

    /// The sender for `group`'s address family; made on first use.
    pub fn group_fanout(&self, group: SocketAddr) -> std::io::Result<Arc<Fanout>> {
        let slot = match group {
            SocketAddr::V4(_) => &self.group_v4,
            SocketAddr::V6(_) => &self.group_v6,
        };
        let mut slot = slot.lock().unwrap();
        if let Some(f) = slot.as_ref() {
            return Ok(f.clone());
        }
        let g = self.group_settings;
        let socket = multicast::sender(group.is_ipv6(), g.ttl, g.iface, g.looped)?;
        let f = Arc::new(Fanout::new(Arc::new(socket), g.gso));
        *slot = Some(f.clone());
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_destination_is_never_a_receivers() {
        gst::init().unwrap();
        for d in [
            Destination::Group,
            Destination::Receiver(0),
            Destination::Receiver(u64::MAX),
        ] {
            assert_eq!(Destination::from_value(&d.to_send_value()), Some(d));
        }
        assert_eq!(Destination::from_value(&"groups".to_value()), None);
        assert_eq!(Destination::from_value(&7u32.to_value()), None);
    }
}
