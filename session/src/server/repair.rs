// SPDX-License-Identifier: MPL-2.0

//! Answering loss reports: a unicast receiver's at once, from its own bucket and its
//! channel's budget; a multicast receiver's gathered with the others' of the same block
//! ([`super::gather`]), then answered once.

use super::gather::{BlockKey, Gathered};
use super::{Event, Now, Peer, RepairTo, Server};
use crate::message::LostEntry;

impl Server {
    pub(super) fn lost(&mut self, now: Now, from: Peer, entries: &[LostEntry]) {
        let client = &self.clients[&from];
        let (id, multicast) = (client.id, client.multicast);
        for e in entries {
            if !self.clients[&from].channels.contains(&e.channel) || e.needed == 0 {
                continue;
            }
            self.stats.repair_symbols_asked += u64::from(e.needed);
            let key = (e.channel, e.flow, e.block);
            if multicast && self.group_of(e.channel).is_some() {
                self.gather(now, id, key, e.needed);
            } else {
                self.repair_receiver(now, id, key, e.needed);
            }
        }
    }

    pub(super) fn repair_receiver(&mut self, now: Now, id: u64, key: BlockKey, needed: u16) {
        let Some(channel) = self.channels.iter_mut().find(|c| c.info.index == key.0) else {
            return;
        };
        let allowed = channel.budget.allow(&self.cfg, u64::from(needed));
        self.stats.repairs_over_budget += u64::from(needed) - allowed;
        let Some(client) = self.by_id.get(&id).and_then(|p| self.clients.get_mut(p)) else {
            return;
        };
        let count = client.bucket.take(&self.cfg, now.mono, allowed);
        channel.budget.spend(count);
        if count == 0 {
            return;
        }
        self.stats.repair_symbols_granted += count;
        self.events.push_back(Event::Repair {
            to: RepairTo::Receiver(id),
            channel: key.0,
            flow: key.1,
            block: key.2,
            count: count as u32,
        });
    }

    /// A multicast receiver's report: gathered with the others' of the same block, so
    /// that one group repair answers all of them.
    fn gather(&mut self, now: Now, id: u64, key: BlockKey, needed: u16) {
        let window = self.cfg.group_window;
        match self.gathering.report(now.mono, window, id, key, needed) {
            // Sent before the group repair reached it.
            Gathered::Covered => self.stats.group_reports_covered += 1,
            Gathered::Full => self.repair_receiver(now, id, key, needed),
            Gathered::Opened | Gathered::Joined => (),
        }
    }

    /// Answers the rounds whose window is over: one reporter gets its own repair, several
    /// get the largest need, once, to the group.
    pub(super) fn close_rounds(&mut self, now: Now) {
        for (key, r) in self.gathering.close(now.mono) {
            if !r.several {
                self.repair_receiver(now, r.first, key, r.needed);
                continue;
            }
            let count = self.repair_group(now, key, r.needed);
            if count > 0 {
                let until = now.mono + self.cfg.group_hold;
                self.gathering.served(key, until, count as u16);
            }
        }
        self.gathering.forget_served(now.mono);
    }

    /// Up to `needed` fresh symbols of a block to the channel's group, within the group's
    /// and the channel's budgets; how many.
    pub(super) fn repair_group(&mut self, now: Now, key: BlockKey, needed: u16) -> u64 {
        let Some(c) = self.channels.iter_mut().find(|c| c.info.index == key.0) else {
            return 0;
        };
        let allowed = c.budget.allow(&self.cfg, u64::from(needed));
        self.stats.repairs_over_budget += u64::from(needed) - allowed;
        let count = c.bucket.take(&self.cfg, now.mono, allowed);
        c.budget.spend(count);
        if count == 0 {
            return 0;
        }
        self.stats.group_repairs += count;
        self.stats.repair_symbols_granted += count;
        self.events.push_back(Event::Repair {
            to: RepairTo::Group,
            channel: key.0,
            flow: key.1,
            block: key.2,
            count: count as u32,
        });
        count
    }
}
