//! Block packing's packet list (docs/fec-format.md, "Between elements"): where each packet
//! of a buffer that holds many is, as big-endian (offset u32, length u32) pairs. The list
//! travels in a buffer meta, which any element or application can set: it is untrusted.

use std::ops::Range;

/// Packets one buffer may hold at most: a block of 8192 symbols with its repair, and room.
pub const MAX_PACKETS: usize = 32_768;
/// The longest packet: a UDP payload.
pub const MAX_PACKET: usize = 65_507;

/// Why a packet list was refused: it did not come from us, or came damaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadPackets {
    /// The field is missing, empty, or not bytes of whole pairs.
    Malformed,
    TooMany(usize),
    /// Packet `index` is empty, too long, overlaps the one before or ends past the buffer.
    OutOfPlace(usize),
}

impl std::fmt::Display for BadPackets {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            BadPackets::Malformed => write!(f, "a packet list empty or not of whole pairs"),
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

impl std::error::Error for BadPackets {}

/// Where a [`Sender`](crate::Sender) puts the packets it makes: a `Vec` each, or end to end
/// in one allocation ([`Packets`]), which becomes a block-packed buffer without a copy.
pub trait PacketOut {
    /// Appends the packet `write` appends to the bytes it is given.
    fn put_with(&mut self, write: impl FnOnce(&mut Vec<u8>));

    /// Appends a packet made elsewhere.
    fn put(&mut self, packet: &[u8]) {
        self.put_with(|out| out.extend_from_slice(packet));
    }

    /// Says the packets appended since the last end are one block's (with the descriptions
    /// sent among them).
    fn end_block(&mut self) {}

    /// The bytes of the packets appended so far, all told.
    fn size(&self) -> usize;
}

impl PacketOut for Vec<Vec<u8>> {
    fn put_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        let mut p = Vec::new();
        write(&mut p);
        if !p.is_empty() {
            self.push(p);
        }
    }

    fn size(&self) -> usize {
        self.iter().map(Vec::len).sum()
    }
}

/// Packets end to end in one `Vec`, with where each ends. Its memory is meant to be reused:
/// a fresh block-sized allocation per block costs page faults about as much as encoding it,
/// and a `Vec` per packet costs an allocation and a copy more.
#[derive(Debug, Default)]
pub struct Packets {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    /// Packets before each block's end.
    block_ends: Vec<usize>,
}

impl PacketOut for Packets {
    fn put_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        let start = self.bytes.len();
        write(&mut self.bytes);
        if self.bytes.len() > start {
            self.ends.push(self.bytes.len());
        }
    }

    fn size(&self) -> usize {
        self.bytes.len()
    }

    fn end_block(&mut self) {
        if self.block_ends.last().copied().unwrap_or(0) < self.ends.len() {
            self.block_ends.push(self.ends.len());
        }
    }
}

impl Packets {
    /// No packets, in `bytes`' memory (cleared).
    pub fn in_memory(mut bytes: Vec<u8>) -> Packets {
        bytes.clear();
        Packets {
            bytes,
            ..Packets::default()
        }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Which packets (indices) each block has; packets after the last block's end are one
    /// more.
    pub fn blocks(&self) -> Vec<Range<usize>> {
        let mut ends = self.block_ends.clone();
        if ends.last().copied().unwrap_or(0) < self.ends.len() {
            ends.push(self.ends.len());
        }
        spans(&ends)
    }

    /// The packets' memory and their places, leaving this empty (and without memory).
    pub fn take(&mut self) -> (Vec<u8>, Vec<Range<usize>>) {
        let places = spans(&self.ends);
        self.ends.clear();
        self.block_ends.clear();
        (std::mem::take(&mut self.bytes), places)
    }
}

/// The ranges that end at each of `ends`, one after the other from 0.
fn spans(ends: &[usize]) -> Vec<Range<usize>> {
    let starts = std::iter::once(0).chain(ends.iter().copied());
    starts
        .zip(ends.iter().copied())
        .map(|(s, e)| s..e)
        .collect()
}

/// The list of `places`, as [`ranges`] reads it.
pub fn write(places: &[Range<usize>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(places.len() * 8);
    for r in places {
        let start = u32::try_from(r.start).unwrap_or(u32::MAX);
        let len = u32::try_from(r.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&start.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
    }
    out
}

/// The (offset, length) pairs in `places` as ranges within `size` bytes, in order, apart.
pub fn ranges(places: &[u8], size: usize) -> Result<Vec<Range<usize>>, BadPackets> {
    // A buffer listing no packet at all is not one of ours either.
    if places.is_empty() || !places.len().is_multiple_of(8) {
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
    fn packets_end_to_end_are_the_packets_put() {
        let mut p = Packets::in_memory(vec![9; 100]);
        assert!(p.is_empty());
        p.put(b"abc");
        p.end_block();
        p.end_block();
        p.put_with(|_| {});
        p.put_with(|out| out.extend_from_slice(b"de"));
        assert_eq!(
            p.blocks(),
            [0..1, 1..2],
            "the last packets are a block of their own"
        );
        p.end_block();
        assert_eq!(p.blocks(), [0..1, 1..2]);
        assert_eq!(p.len(), 2, "writing nothing is no packet");
        assert_eq!(p.size(), 5);
        let (bytes, places) = p.take();
        assert_eq!((bytes, places), (b"abcde".to_vec(), vec![0..3, 3..5]));
        assert!(p.is_empty() && p.size() == 0);
        assert!(p.blocks().is_empty());
        let mut v: Vec<Vec<u8>> = Vec::new();
        v.put(b"x");
        v.put_with(|_| {});
        assert_eq!(v, [b"x".to_vec()]);
    }

    #[test]
    fn packets_are_in_order_apart_and_inside_or_refused() {
        assert_eq!(ranges(&places(&[(0, 3), (5, 2)]), 7), Ok(vec![0..3, 5..7]));
        assert_eq!(ranges(&[], 7), Err(BadPackets::Malformed));
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
        let list = vec![0..3, 5..7, 9..100];
        assert_eq!(ranges(&write(&list), 100), Ok(list));
    }
}
