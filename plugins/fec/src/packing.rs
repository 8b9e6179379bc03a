// SPDX-License-Identifier: MPL-2.0

//! Block packing: many packets in one buffer, where downstream takes it (caps field
//! `packing=block`), with a meta giving where each packet is. Making, pushing and freeing a
//! `GstBuffer` per datagram costs about what encoding it does; one per block does not.
//! `packing=datagram` (a buffer per packet) stays the default for anything else.

use std::ops::Range;

use gst::glib;
use gst::prelude::*;

/// The caps field, and its two values.
pub const PACKING: &str = "packing";
pub const BLOCK: &str = "block";
pub const DATAGRAM: &str = "datagram";

/// Name of the custom buffer meta listing the packets of a block-packed buffer: field
/// `packets`, bytes of big-endian (offset u32, length u32) pairs, in order.
pub const PACKETS_META: &str = "FanoutPacketsMeta";

/// Packets one buffer may hold at most: a block of 8192 symbols with its repair, and room.
pub const MAX_PACKETS: usize = 32_768;
/// The longest packet: a UDP payload.
pub const MAX_PACKET: usize = 65_507;

/// Why a buffer's packet list was refused: it did not come from us, or came damaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadPackets {
    /// The field is missing or not bytes of whole pairs.
    Malformed,
    TooMany(usize),
    /// Packet `index` is empty, too long, overlaps the one before or ends past the buffer.
    OutOfPlace(usize),
}

impl std::fmt::Display for BadPackets {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            BadPackets::Malformed => write!(f, "a packet list that is not whole pairs"),
            BadPackets::TooMany(n) => {
                write!(f, "{n} packets in one buffer (at most {MAX_PACKETS})")
            }
            BadPackets::OutOfPlace(i) => {
                write!(
                    f,
                    "packet {i} empty, too long, overlapping or past the buffer"
                )
            }
        }
    }
}

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

/// Packets laid end to end in one buffer, with their meta.
pub fn block_buffer(packets: &[Vec<u8>]) -> gst::Buffer {
    let total = packets.iter().map(Vec::len).sum();
    let mut data = Vec::with_capacity(total);
    let mut places = Vec::with_capacity(packets.len() * 8);
    for p in packets {
        places.extend_from_slice(&(data.len() as u32).to_be_bytes());
        places.extend_from_slice(&(p.len() as u32).to_be_bytes());
        data.extend_from_slice(p);
    }
    let mut buffer = gst::Buffer::from_mut_slice(data);
    set_packets(buffer.get_mut().unwrap(), places);
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

/// The (offset, length) pairs in `places` as ranges within `size` bytes, in order, apart.
pub fn ranges(places: &[u8], size: usize) -> Result<Vec<Range<usize>>, BadPackets> {
    if !places.len().is_multiple_of(8) {
        return Err(BadPackets::Malformed);
    }
    let n = places.len() / 8;
    if n > MAX_PACKETS {
        return Err(BadPackets::TooMany(n));
    }
    let mut out = Vec::with_capacity(n);
    let mut end = 0usize;
    for (i, pair) in places.chunks_exact(8).enumerate() {
        let offset = u32::from_be_bytes(pair[..4].try_into().unwrap()) as usize;
        let len = u32::from_be_bytes(pair[4..].try_into().unwrap()) as usize;
        let stop = offset.checked_add(len).filter(|&s| s <= size);
        match stop {
            Some(stop) if len > 0 && len <= MAX_PACKET && offset >= end => {
                out.push(offset..stop);
                end = stop;
            }
            _ => return Err(BadPackets::OutOfPlace(i)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn places(pairs: &[(u32, u32)]) -> Vec<u8> {
        pairs
            .iter()
            .flat_map(|(o, l)| o.to_be_bytes().into_iter().chain(l.to_be_bytes()))
            .collect()
    }

    #[test]
    fn packets_are_in_order_apart_and_inside_or_refused() {
        assert_eq!(ranges(&places(&[(0, 3), (5, 2)]), 7), Ok(vec![0..3, 5..7]));
        assert_eq!(ranges(&[], 7), Ok(vec![]));
        assert_eq!(ranges(&[0; 7], 7), Err(BadPackets::Malformed));
        assert_eq!(
            ranges(&places(&[(0, 3), (2, 2)]), 7),
            Err(BadPackets::OutOfPlace(1))
        );
        assert_eq!(
            ranges(&places(&[(0, 0)]), 7),
            Err(BadPackets::OutOfPlace(0))
        );
        assert_eq!(
            ranges(&places(&[(5, 3)]), 7),
            Err(BadPackets::OutOfPlace(0))
        );
        assert_eq!(
            ranges(&places(&[(u32::MAX, u32::MAX)]), usize::MAX),
            Err(BadPackets::OutOfPlace(0)),
            "no overflow"
        );
        let many = places(&vec![(0, 1); MAX_PACKETS + 1]);
        assert_eq!(ranges(&many, 1), Err(BadPackets::TooMany(MAX_PACKETS + 1)));
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
        set_packets(bad.get_mut().unwrap(), places(&[(0, 3)]));
        assert_eq!(packets(&bad), Some(Err(BadPackets::OutOfPlace(0))));
    }
}
