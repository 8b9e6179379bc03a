// SPDX-License-Identifier: MPL-2.0

//! One streaming task per source pad, fed by the servers' session and group threads
//! through a bounded queue: a sink prerolling or syncing on one channel never stops the
//! others, nor the session. A queue that overflows drops its oldest packets (the fountain
//! code makes that harmless).

use std::sync::Arc;
use std::time::Duration;

use gst::prelude::*;

use super::batch::Batch;
use super::CAT;
use crate::drop_oldest::{DropOldest, Entry, Order};
use gstfanoutfec::packing;

/// Packets queued per pad at most (about 6 MB of 1.4 kB packets).
pub const MAX_QUEUED: usize = 4096;

pub enum Item {
    /// Stream-start, caps (if known) and segment before the next buffer.
    Setup(Option<gst::Caps>),
    Buffer(gst::Buffer),
    /// Packets read together: one buffer or a list, as downstream takes them.
    Batch {
        batch: Batch,
        pts: Option<gst::ClockTime>,
        discont: bool,
    },
    Eos,
}

impl Entry for Item {
    fn droppable(&self) -> bool {
        matches!(self, Item::Buffer(_) | Item::Batch { .. })
    }

    fn bytes(&self) -> usize {
        match self {
            Item::Buffer(b) => b.size(),
            Item::Batch { batch, .. } => batch.bytes(),
            _ => 0,
        }
    }
}

/// A pad's packets, in order, before its task.
pub type PadQueue = DropOldest<Item>;

pub fn pad_queue() -> PadQueue {
    DropOldest::new(Order::Fifo, MAX_QUEUED, usize::MAX, MAX_QUEUED)
}

/// Our packets' caps get the packing downstream prefers; true for blocks. Other caps (the
/// server's input was not ours) stay as they are, and go buffer by buffer.
fn with_packing(pad: &gst::Pad, caps: &mut gst::Caps) -> bool {
    let ours = caps
        .structure(0)
        .is_some_and(|s| s.name() == "application/x-fanout-fec");
    if !ours {
        return false;
    }
    let flow = caps.structure(0).and_then(|s| s.get::<u32>("flow").ok());
    let block = packing::downstream_accepts_blocks(pad, flow);
    let packing = if block {
        packing::BLOCK
    } else {
        packing::DATAGRAM
    };
    if let Some(s) = caps.make_mut().structure_mut(0) {
        s.set(packing::PACKING, packing);
    }
    block
}

/// Starts `pad`'s task, pushing what `queue` gets; a fatal flow error goes on the bus once.
pub fn start(element: &gst::Element, pad: &gst::Pad, queue: Arc<PadQueue>) {
    let (weak, p) = (element.downgrade(), pad.clone());
    // Whether downstream takes a batch as one buffer (packing=block), asked with the caps.
    let mut block = false;
    let started = pad.start_task(move || {
        let Some(item) = queue.pop(Duration::from_millis(100)) else {
            if queue.is_closed() {
                let _ = p.pause_task();
            }
            return;
        };
        let ret = match item {
            Item::Setup(caps) => {
                if p.sticky_event::<gst::event::StreamStart>(0).is_none() {
                    let name = weak.upgrade().map(|e| e.name()).unwrap_or_default();
                    let id = format!("{name}/{}", p.name());
                    p.push_event(gst::event::StreamStart::builder(&id).build());
                }
                let segment = p.sticky_event::<gst::event::Segment>(0);
                let new_caps = caps.is_some();
                if let Some(mut caps) = caps {
                    block = with_packing(&p, &mut caps);
                    p.push_event(gst::event::Caps::new(&caps));
                }
                match segment {
                    // Caps that became known mid-stream come before a segment again.
                    Some(s) if new_caps => {
                        p.push_event(s);
                    }
                    Some(_) => (),
                    None => {
                        let segment = gst::FormattedSegment::<gst::ClockTime>::new();
                        p.push_event(gst::event::Segment::new(&segment));
                    }
                }
                Ok(gst::FlowSuccess::Ok)
            }
            Item::Buffer(b) => p.push(b),
            Item::Batch {
                batch,
                pts,
                discont,
            } => match block {
                true => p.push(batch.into_block(pts, discont)),
                false => p.push_list(batch.into_list(pts, discont)),
            },
            Item::Eos => {
                p.push_event(gst::event::Eos::new());
                Ok(gst::FlowSuccess::Ok)
            }
        };
        match ret {
            Ok(_) | Err(gst::FlowError::Flushing) | Err(gst::FlowError::Eos) => (),
            Err(gst::FlowError::NotLinked) => gst::trace!(CAT, obj = p, "not linked"),
            Err(e) => {
                if let Some(element) = weak.upgrade() {
                    gst::element_error!(
                        element,
                        gst::StreamError::Failed,
                        ("streaming on {} stopped, reason {e:?}", p.name()),
                        ["downstream returned {e:?}"]
                    );
                }
                let _ = p.pause_task();
            }
        }
    });
    if let Err(e) = started {
        gst::element_error!(
            element,
            gst::CoreError::Thread,
            ("cannot start {}: {e}", pad.name()),
            ["the pad's task did not start: {e}"]
        );
    }
}
