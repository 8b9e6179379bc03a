// SPDX-License-Identifier: MPL-2.0

//! `fanout-repair-request`: fresh repair symbols of one kept block, tagged for one receiver.

use fanout_fec::RepairRefused;
use gst::subclass::prelude::*;

use super::{FecPayloader, CAT};

impl FecPayloader {
    /// `fanout-repair-request`: fresh repair symbols for one block, tagged for one receiver.
    pub(super) fn repair_request(&self, event: &gst::EventRef) {
        let Some((flow, block, count)) = crate::parse_repair_request(event) else {
            gst::warning!(
                CAT,
                imp = self,
                "ignoring malformed repair request {event:?}"
            );
            return;
        };
        let destination = event
            .structure()
            .and_then(|s| s.value("destination").ok().cloned());
        {
            let mut guard = self.state.lock().unwrap();
            let Some(state) = guard.as_mut() else { return };
            if flow != state.sender.config().flow {
                return;
            }
            state.counters.repair_requests += 1;
            // A request cannot make the payloader send more than two blocks' worth at once:
            // enough for a whole block lost, asked with room for loss on the way back.
            let count = count.min(u32::from(state.sender.config().max_k).saturating_mul(2));
            match state.sender.repair(block, count) {
                Ok(packets) => {
                    state.counters.packets_out += packets.len() as u64;
                    for p in packets {
                        let mut b = gst::Buffer::from_mut_slice(p);
                        if let Some(d) = &destination {
                            crate::set_packet_destination(b.get_mut().unwrap(), d);
                        }
                        state.repairs.push(b);
                    }
                }
                Err(why) => {
                    state.counters.repair_requests_refused += 1;
                    let why = match why {
                        RepairRefused::NoCode => "codec none has no repair symbols",
                        RepairRefused::UnknownBlock => "block no longer (or not yet) kept",
                    };
                    gst::debug!(
                        CAT,
                        imp = self,
                        "repair request for block {block} refused: {why}"
                    );
                    return;
                }
            }
        }
        // Pushed now if the streaming thread is not pushing; otherwise it takes them along.
        if let Ok(_push) = self.push_lock.try_lock() {
            let repairs = self
                .state
                .lock()
                .unwrap()
                .as_mut()
                .map(|s| std::mem::take(&mut s.repairs))
                .unwrap_or_default();
            if self.ensure_segment().is_ok() {
                let _ = self.push_repairs(repairs);
            }
        }
    }
}
