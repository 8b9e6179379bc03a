// SPDX-License-Identifier: MPL-2.0

//! A server's channels: their keys and repair credit, and telling their receivers of a
//! change, a keepalive or an end.

use std::net::SocketAddr;
use std::sync::Arc;

use fanout_wire::time::Mono;

use super::budget::{Bucket, Budget};
use super::{Server, Transmit};
use crate::message::{self, ChannelInfo, Message};
use crate::seal::{ChannelKey, Sealer};
use crate::Security;

pub(super) struct Channel {
    pub(super) info: ChannelInfo,
    /// Seals its DATA; `None` without authentication.
    pub(super) sealer: Option<Arc<Sealer>>,
    /// Repair credit of the channel's group, like a receiver's.
    pub(super) bucket: Bucket,
    /// Repair credit of the whole channel, earned by the packets it sends.
    pub(super) budget: Budget,
}

impl Server {
    /// Channel `index` has sent `total` packets so far (repairs not counted): its overall
    /// repair budget grows with them.
    pub fn note_sent(&mut self, index: u16, total: u64) {
        if let Some(c) = self.channels.iter_mut().find(|c| c.info.index == index) {
            c.budget.earn(&self.cfg, total);
        }
    }

    /// What seals channel `index`'s DATA; `None` without authentication or such a channel.
    /// The same for the channel's whole life: senders keep it.
    pub fn sealer(&self, index: u16) -> Option<Arc<Sealer>> {
        let c = self.channels.iter().find(|c| c.info.index == index)?;
        c.sealer.clone()
    }

    /// Adds or updates a channel; its receivers are told of a change (CHANNEL).
    pub fn set_channel(&mut self, index: u16, name: &str, caps: &str, group: Option<SocketAddr>) {
        let info = ChannelInfo {
            index,
            name: name.to_owned(),
            caps: caps.to_owned(),
            group,
        };
        match self.channels.iter_mut().find(|c| c.info.index == index) {
            Some(c) if c.info == info => return,
            Some(c) => {
                if c.info.group != info.group {
                    // Who takes unicast copies changes.
                    self.generation += 1;
                }
                c.info = info.clone();
            }
            None => {
                let sealer = (self.security != Security::None).then(|| {
                    let key = ChannelKey::random(self.cfg.key_len, self.kek.is_some());
                    Arc::new(Sealer::new(key))
                });
                self.channels.push(Channel {
                    info: info.clone(),
                    sealer,
                    bucket: Bucket::full(&self.cfg, Mono::ZERO),
                    budget: Budget::full(&self.cfg),
                });
                // Receivers that asked for every channel before this one existed (an edge
                // that has not joined its origin yet) take it too; CHANNEL tells them, and
                // they join again for its key.
                let mut added = false;
                for c in self.clients.values_mut().filter(|c| c.every) {
                    c.channels.push(index);
                    added = true;
                }
                if added {
                    self.generation += 1;
                    self.tell_members(&info);
                }
                return;
            }
        }
        self.tell_members(&info);
    }

    /// A channel that sent nothing for a while: its receivers get CHANNEL again, unchanged,
    /// so they know the server is there and keep their sessions without a new handshake.
    pub fn keepalive(&mut self, channel: u16) {
        if let Some(c) = self.channels.iter().find(|c| c.info.index == channel) {
            let info = c.info.clone();
            self.tell_members(&info);
        }
    }

    fn tell_members(&mut self, info: &ChannelInfo) {
        for (addr, c) in &self.clients {
            if c.channels.contains(&info.index) {
                let m = Message::Channel {
                    session: c.session,
                    info: info.clone(),
                };
                self.transmits.push_back(Transmit {
                    to: *addr,
                    data: message::write(&m),
                });
            }
        }
    }

    /// Removes a channel; its receivers get END (and drop its key: a channel made again
    /// under the same number has a new one).
    pub fn remove_channel(&mut self, index: u16) {
        self.end_channel(index);
        self.channels.retain(|c| c.info.index != index);
        for c in self.clients.values_mut() {
            c.channels.retain(|&i| i != index);
        }
        self.generation += 1;
    }

    pub fn group_of(&self, channel: u16) -> Option<SocketAddr> {
        self.channels
            .iter()
            .find(|c| c.info.index == channel)
            .and_then(|c| c.info.group)
    }

    /// Tells every receiver of `channel` that its stream ended. END is not acknowledged:
    /// callers send it a few times.
    pub fn end_channel(&mut self, channel: u16) {
        for (addr, c) in &self.clients {
            if c.channels.contains(&channel) {
                let m = Message::End {
                    session: c.session,
                    channel,
                };
                self.transmits.push_back(Transmit {
                    to: *addr,
                    data: message::write(&m),
                });
            }
        }
    }
}
