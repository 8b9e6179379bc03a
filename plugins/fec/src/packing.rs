// SPDX-License-Identifier: MPL-2.0

//! Block packing: many packets in one buffer, where downstream takes it (caps field
//! `packing=block`), with a meta giving where each packet is. Making, pushing and freeing a
//! `GstBuffer` per datagram costs about what encoding it does; one per block does not.
//! `packing=datagram` (a buffer per packet) stays the default for anything else.

use std::ops::Range;
use std::sync::{Arc, Mutex, Weak};

pub use fanout_fec::packing::{
    ranges, write, BadPackets, PacketOut, Packets, MAX_PACKET, MAX_PACKETS,
};
use gst::glib;
use gst::prelude::*;

/// The caps field, and its two values.
pub const PACKING: &str = "packing";
pub const BLOCK: &str = "block";
pub const DATAGRAM: &str = "datagram";

/// Name of the custom buffer meta listing the packets of a block-packed buffer: field
/// `packets`, bytes of big-endian (offset u32, length u32) pairs, in order.
pub const PACKETS_META: &str = "FanoutPacketsMeta";

pub(crate) fn register() {
    if !gst::meta::CustomMeta::is_registered(PACKETS_META) {
        gst::meta::CustomMeta::register(PACKETS_META, &[]);
    }
}

/// Caps of a stream of our packets with `packing`.
pub fn caps(flow: Option<u32>, packing: &str) -> gst::Caps {
    let mut b = gst::Caps::builder("application/x-fanout-fec");
    if let Some(flow) = flow {
        b = b.field("flow", flow);
    }
    b.field(PACKING, packing).build()
}

/// Whether `caps` (fixed) say block packing.
pub fn is_block(caps: &gst::CapsRef) -> bool {
    caps.structure(0)
        .and_then(|s| s.get::<&str>(PACKING).ok())
        .is_some_and(|p| p == BLOCK)
}

/// What downstream of `pad` prefers: block packing only if it says so first (an element of
/// ours); `udpsink`, `multiudpsink`, `fakesink` and anything that takes any caps get
/// datagrams.
pub fn downstream_takes_blocks(pad: &gst::Pad, flow: Option<u32>) -> bool {
    let mut filter = caps(flow, DATAGRAM);
    filter.merge(caps(flow, BLOCK));
    let allowed = pad.peer_query_caps(Some(&filter));
    !allowed.is_empty() && {
        let mut allowed = allowed;
        allowed.fixate();
        is_block(&allowed)
    }
}

/// Whether downstream of `pad` takes blocks at all: it prefers them, or it takes only our
/// packets and blocks among them (`fec-depayloader`). A sink that takes anything gets
/// datagrams. For a source of packets read from the network (`session-src`), where a buffer
/// per packet would only cost.
pub fn downstream_accepts_blocks(pad: &gst::Pad, flow: Option<u32>) -> bool {
    if downstream_takes_blocks(pad, flow) {
        return true;
    }
    let allowed = pad.peer_query_caps(None);
    !allowed.is_any() && allowed.can_intersect(&caps(flow, BLOCK))
}

/// The payloader's packet memory, back for the packets after next once downstream lets go
/// of every buffer made from it: a fresh block-sized allocation per block costs page faults
/// about as much as encoding it.
#[derive(Debug, Default)]
pub struct Recycler {
    spares: Arc<Mutex<Vec<Vec<u8>>>>,
    /// The size of the last packets taken, for a fresh memory when no spare is back yet.
    last: usize,
}

/// Memories kept for reuse at most, and the largest kept (a huge push's is let go).
const SPARES: usize = 4;
const MAX_SPARE: usize = 8 << 20;

/// Packets' memory, which goes back to its recycler when every buffer sharing it is freed.
struct Recycled {
    data: Vec<u8>,
    home: Weak<Mutex<Vec<Vec<u8>>>>,
}

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl AsMut<[u8]> for Recycled {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        if self.data.capacity() > MAX_SPARE {
            return;
        }
        if let Some(Ok(mut spares)) = self.home.upgrade().as_ref().map(|h| h.lock()) {
            if spares.len() < SPARES {
                spares.push(std::mem::take(&mut self.data));
            }
        }
    }
}

impl Recycler {
    /// Memory for the next packets: one given back, or one the size of the last.
    pub fn spare(&self) -> Vec<u8> {
        match self.spares.lock().unwrap().pop() {
            Some(mut spare) => {
                spare.clear();
                spare
            }
            None => Vec::with_capacity(self.last),
        }
    }

    /// `packets` as buffers sharing their memory (no copy): with `block`, one per block with
    /// the packet list, else one per packet. `packets` is left empty, in a spare memory.
    pub fn buffers(&mut self, packets: &mut Packets, block: bool) -> Vec<gst::Buffer> {
        let blocks = packets.blocks();
        let (data, places) = packets.take();
        self.last = data.len().min(MAX_SPARE);
        *packets = Packets::in_memory(self.spare());
        let home = Arc::downgrade(&self.spares);
        let size = data.len();
        let memory = gst::Memory::from_mut_slice(Recycled { data, home });
        let region = |range: Range<usize>| {
            let mut b = gst::Buffer::new();
            let whole = range == (0..size);
            let part = if whole {
                memory.clone()
            } else {
                memory.share(range)
            };
            b.get_mut().unwrap().append_memory(part);
            b
        };
        if !block {
            return places.into_iter().map(region).collect();
        }
        blocks
            .into_iter()
            .map(|packets| {
                let places = &places[packets];
                let start = places[0].start;
                let end = places[places.len() - 1].end;
                let mut b = region(start..end);
                let rebased: Vec<_> = places
                    .iter()
                    .map(|r| r.start - start..r.end - start)
                    .collect();
                set_packets(b.get_mut().unwrap(), write(&rebased));
                b
            })
            .collect()
    }
}

/// Packets laid end to end in one buffer, with their meta.
pub fn block_buffer(packets: &[Vec<u8>]) -> gst::Buffer {
    let mut end_to_end = Packets::default();
    for p in packets {
        end_to_end.put(p);
    }
    let (data, places) = end_to_end.take();
    let mut buffer = gst::Buffer::from_mut_slice(data);
    set_packets(buffer.get_mut().unwrap(), write(&places));
    buffer
}

/// Lists the packets of `buffer`: `places` as (offset, length) pairs, big-endian u32 each.
pub fn set_packets(buffer: &mut gst::BufferRef, places: Vec<u8>) {
    if let Ok(mut meta) = gst::meta::CustomMeta::add(buffer, PACKETS_META) {
        meta.mut_structure()
            .set("packets", glib::Bytes::from_owned(places));
    }
}

/// Where the packets of `buffer` are: `None` for a buffer without the meta (one packet);
/// checked as untrusted (any element, or an application, may put a meta on a buffer).
pub fn packets(buffer: &gst::BufferRef) -> Option<Result<Vec<Range<usize>>, BadPackets>> {
    let meta = gst::meta::CustomMeta::from_buffer(buffer, PACKETS_META).ok()?;
    let Ok(places) = meta.structure().get::<glib::Bytes>("packets") else {
        return Some(Err(BadPackets::Malformed));
    };
    Some(ranges(&places, buffer.size()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_go_out_sharing_one_memory_which_comes_back_once_every_buffer_is_freed() {
        gst::init().unwrap();
        crate::register_metas();
        let mut recycler = Recycler::default();
        let mut packets = Packets::default();
        packets.put(&[1; 1000]);
        packets.put(&[2; 500]);
        packets.end_block();
        packets.put(&[3; 300]);
        let made = recycler.buffers(&mut packets, true);
        assert!(packets.is_empty());
        // A buffer per block, each listing its own packets.
        assert_eq!(
            made.iter().map(|b| b.size()).collect::<Vec<_>>(),
            [1500, 300]
        );
        assert_eq!(
            self::packets(&made[0]).unwrap().unwrap(),
            [0..1000, 1000..1500]
        );
        let only: Vec<_> = std::iter::once(0..300).collect();
        assert_eq!(self::packets(&made[1]).unwrap().unwrap(), only);
        assert_eq!(made[1].map_readable().unwrap().as_slice(), [3; 300]);
        let first = made[0].map_readable().unwrap().as_ptr();
        let second = made[1].clone();
        drop(made);
        let fresh = recycler.spare();
        assert_ne!(fresh.as_ptr(), first, "one still held: not back yet");
        drop(second);
        let spare = recycler.spare();
        assert_eq!(
            (spare.as_ptr(), spare.len()),
            (first, 0),
            "the same memory, empty"
        );

        // A buffer per packet, in the same memory again.
        let mut packets = Packets::in_memory(spare);
        packets.put(&[4; 10]);
        packets.put(&[5; 20]);
        let made = recycler.buffers(&mut packets, false);
        assert_eq!(made.iter().map(|b| b.size()).collect::<Vec<_>>(), [10, 20]);
        assert!(made.iter().all(|b| self::packets(b).is_none()));
        assert_eq!(made[0].map_readable().unwrap().as_ptr(), first);
        drop(recycler);
        drop(made);
    }

    #[test]
    fn a_block_buffer_lists_its_packets_and_a_plain_one_is_one_packet() {
        gst::init().unwrap();
        register();
        let b = block_buffer(&[vec![1, 2, 3], vec![4], vec![5, 6]]);
        let r = packets(&b).unwrap().unwrap();
        let map = b.map_readable().unwrap();
        let got: Vec<&[u8]> = r.iter().map(|r| &map[r.clone()]).collect();
        assert_eq!(got, [&[1u8, 2, 3][..], &[4], &[5, 6]]);
        assert!(packets(&gst::Buffer::from_slice([1u8])).is_none());
        // A meta whose list does not fit its buffer is refused, not followed.
        let mut bad = gst::Buffer::from_slice([1u8, 2]);
        let past_the_end = std::iter::once(0..3).collect::<Vec<_>>();
        set_packets(bad.get_mut().unwrap(), write(&past_the_end));
        assert_eq!(packets(&bad), Some(Err(BadPackets::OutOfPlace(0))));
    }
}
