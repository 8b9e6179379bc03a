//! The stream description: which one is in force, and what a new one changes.

use fanout_wire::time::Mono;

use super::{Output, Receiver};
use crate::codec::BlockParams;
use crate::confirm::{fits, same_but_window};
use crate::description::{Description, Mode};

impl Receiver {
    /// A description assembled: the one in force again, or a new one, which takes effect only
    /// once confirmed (anyone can send one; see [`Candidates`]). The first one also when
    /// symbols that fit it are held already or a block that fits it is rebuilt, if no other
    /// competes. A window moving forward within what was received takes effect at once.
    pub(super) fn offer_description(
        &mut self,
        desc: Description,
        now: Mono,
        out: &mut Vec<Output>,
    ) {
        if self.description.as_ref() == Some(&desc) {
            self.described.seen(now);
            self.stats.unconfirmed_descriptions += self.candidates.current_arrived();
            return;
        }
        if let Some(current) = &self.description {
            let newest = self.blocks.keys().next_back().copied().unwrap_or(0);
            let newest = newest.max(self.next.unwrap_or(0));
            // Stream mode reads the window for nothing but a late packet's name.
            let plausible = desc.mode == Mode::Stream
                || (desc.first_block >= current.first_block
                    && desc.first_block <= newest.saturating_add(1));
            if same_but_window(current, &desc) {
                self.described.seen(now);
                self.stats.unconfirmed_descriptions += self.candidates.current_arrived();
                if plausible {
                    self.set_description(desc, out);
                }
                return;
            }
        }
        let current = self.description.is_some();
        let (confirmed, dropped) = self.candidates.arrived(desc, self.description.as_ref());
        self.stats.unconfirmed_descriptions += dropped;
        if let Some(desc) = confirmed {
            self.described.seen(now);
            return self.set_description(desc, out);
        }
        if !current {
            let held: Vec<BlockParams> = self
                .blocks
                .values()
                .flat_map(|b| b.variants.iter().map(|v| v.params))
                .collect();
            if let Some(desc) = held
                .iter()
                .find_map(|p| self.candidates.take_only_fitting(p))
            {
                self.described.seen(now);
                self.set_description(desc, out);
            }
        }
    }

    pub(super) fn set_description(&mut self, desc: Description, out: &mut Vec<Output>) {
        self.stats.descriptions += 1;
        if self
            .description
            .as_ref()
            .is_none_or(|d| !same_but_window(d, &desc))
        {
            // The others start over against the one now in force.
            self.stats.unconfirmed_descriptions += self.candidates.clear();
        }
        // Variants held that contradict it were not the sender's.
        for block in self.blocks.values_mut() {
            block.variants.retain(|v| {
                let keep = fits(Some(&desc), &v.params);
                if !keep {
                    let held = match &v.decoded {
                        Some(d) => d.len(),
                        None => v.seen.len() * usize::from(v.params.symbol_size),
                    };
                    let held = held.min(block.bytes);
                    block.bytes -= held;
                    self.buffered -= held;
                    self.stats.inconsistent += v.seen.len() as u64;
                }
                keep
            });
            // Its time runs from the first packet of what is left.
            if let Some(t) = block.variants.iter().map(|v| v.first_seen).min() {
                block.first_seen = t;
            }
        }
        // A block left with nothing was never the sender's: it is made anew by its packets.
        let empty: Vec<u64> = self
            .blocks
            .iter()
            .filter(|(_, b)| b.variants.is_empty())
            .map(|(&n, _)| n)
            .collect();
        for n in empty {
            self.remove(n);
        }
        let caps_changed = self.description.as_ref().map(|d| &d.caps) != Some(&desc.caps);
        if self.next.is_none() {
            self.next = match desc.mode {
                Mode::Carousel => Some(desc.first_block),
                Mode::Stream => self.blocks.keys().next().copied(),
            };
            if let Some(next) = self.next {
                self.blocks = self.blocks.split_off(&next);
                self.buffered = self.blocks.values().map(|b| b.bytes).sum();
                self.mark_far();
            }
        }
        if caps_changed
            || self.description.as_ref().map(|d| d.time_segment) != Some(desc.time_segment)
        {
            out.push(Output::Description(desc.clone()));
        }
        self.description = Some(desc);
    }
}
