// SPDX-License-Identifier: MPL-2.0

//! The loss each receiver tells (LOSS), and repair sent to it up front for that loss:
//! with each new block, so that a lossy receiver has enough without asking and a clean one
//! pays nothing.

use std::collections::HashMap;
use std::time::Duration;

use fanout_wire::time::Mono;

use super::{Now, Server};
use crate::message::MAX_LOSS;

/// How long a LOSS counts: receivers send one a second while they lose anything.
pub const LOSS_FRESH: Duration = Duration::from_secs(3);

/// The losses one receiver told, per channel: (channel, loss in 1/10000, when).
#[derive(Debug, Default)]
pub(super) struct Losses(Vec<(u16, u16, Mono)>);

impl Losses {
    pub fn set(&mut self, channel: u16, loss: u16, at: Mono) {
        let loss = loss.min(MAX_LOSS);
        match self.0.iter_mut().find(|(c, ..)| *c == channel) {
            Some(e) => *e = (channel, loss, at),
            None => self.0.push((channel, loss, at)),
        }
    }

    fn get(&self, channel: u16, now: Mono) -> Option<u16> {
        let &(_, loss, at) = self.0.iter().find(|(c, ..)| *c == channel)?;
        (now < at.saturating_add(LOSS_FRESH) && loss > 0).then_some(loss)
    }
}

impl Server {
    /// Receivers of `channel` that take it as unicast and told a loss lately: their ids
    /// and the share of packets they lose (0 to 0.5).
    #[must_use]
    pub fn unicast_losses(&self, channel: u16, now: Mono) -> Vec<(u64, f64)> {
        let from_group = self.group_of(channel).is_some();
        self.clients
            .values()
            .filter(|c| c.channels.contains(&channel) && !(c.multicast && from_group))
            .filter_map(|c| Some((c.id, f64::from(c.losses.get(channel, now)?) / 10_000.0)))
            .collect()
    }

    /// What the receivers taking `channel` from its group lose, as one: the median of what
    /// they told (one that told nothing lately loses nothing), so a few lossy members leave
    /// the rest to their reports; `None` for a channel without a group or members.
    #[must_use]
    pub fn group_loss(&self, channel: u16, now: Mono) -> Option<f64> {
        self.group_of(channel)?;
        let mut losses: Vec<u16> = self
            .clients
            .values()
            .filter(|c| c.multicast && c.channels.contains(&channel))
            .map(|c| c.losses.get(channel, now).unwrap_or(0))
            .collect();
        if losses.is_empty() {
            return None;
        }
        losses.sort_unstable();
        Some(f64::from(losses[(losses.len() - 1) / 2]) / 10_000.0)
    }

    /// Sends the channel's group `count` repair symbols of a block up front, within the
    /// group's and the channel's budgets.
    pub fn top_up_group(&mut self, now: Now, channel: u16, flow: u32, block: u64, count: u16) {
        let sent = self.repair_group(now, (channel, flow, block), count);
        self.stats.top_up_symbols += sent;
    }

    /// Repair up front with a block of `channel` that went out with `sent` symbols: for its
    /// group by the median of what its members told, and for each unicast receiver that
    /// told a loss, what `want(loss)` (the symbols in all at that loss) lacks. Losses come
    /// in steps of 1/10000: receivers that told the same share one `want`.
    pub fn top_up_block(
        &mut self,
        now: Now,
        (channel, flow, block): (u16, u32, u64),
        sent: u32,
        want: impl Fn(f64) -> u32,
    ) {
        let mut asks: HashMap<u64, u16> = HashMap::new();
        let mut extra = |loss: f64| {
            *asks.entry(loss.to_bits()).or_insert_with(|| {
                u16::try_from(want(loss).saturating_sub(sent)).unwrap_or(u16::MAX)
            })
        };
        if let Some(loss) = self.group_loss(channel, now.mono) {
            let count = extra(loss);
            if count > 0 {
                self.top_up_group(now, channel, flow, block, count);
            }
        }
        for (id, loss) in self.unicast_losses(channel, now.mono) {
            let count = extra(loss);
            if count > 0 {
                self.top_up(now, id, channel, flow, block, count);
            }
        }
    }

    /// Sends receiver `id` `count` repair symbols of a block up front, within its and the
    /// channel's repair budgets, as for a LOST.
    pub fn top_up(&mut self, now: Now, id: u64, channel: u16, flow: u32, block: u64, count: u16) {
        let granted = self.stats.repair_symbols_granted;
        self.repair_receiver(now, id, (channel, flow, block), count);
        self.stats.top_up_symbols += self.stats.repair_symbols_granted - granted;
    }
}
