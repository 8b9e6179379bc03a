// SPDX-License-Identifier: MPL-2.0

//! Packets of one channel read together (a GRO read holds many), left where they were read
//! (between their DATA headers and tags) in one buffer, until a pad's task hands them on: as
//! one buffer listing them where downstream takes `packing=block`, else as a list of buffers
//! sharing that memory.

use std::ops::Range;

use gstfanoutfec::packing::{self, PacketOut};

/// A read of fewer packets than this is copied out, so a lone datagram does not hold a whole
/// read's memory (64 kB) while it waits in a queue.
const SHARE_FROM: usize = 4;

#[derive(Debug, Clone)]
pub(crate) struct Batch {
    pub buffer: gst::Buffer,
    /// Where each packet is in `buffer`, in order.
    pub places: Vec<Range<usize>>,
}

impl Batch {
    /// The packets at `places` in `read` (a read of `total` packets), shared or copied out.
    pub fn of(read: &gst::Buffer, places: Vec<Range<usize>>, total: usize) -> Batch {
        if total >= SHARE_FROM {
            return Batch {
                buffer: read.clone(),
                places,
            };
        }
        let map = read.map_readable().expect("a buffer we made");
        let packets: Vec<&[u8]> = places.iter().map(|r| &map[r.clone()]).collect();
        Batch::copied(&packets)
    }

    /// Packets copied into a buffer of their own.
    pub fn copied(packets: &[&[u8]]) -> Batch {
        let mut end_to_end = packing::Packets::default();
        for p in packets {
            end_to_end.put(p);
        }
        let (data, places) = end_to_end.take();
        Batch {
            buffer: gst::Buffer::from_mut_slice(data),
            places,
        }
    }

    pub fn len(&self) -> usize {
        self.places.len()
    }

    pub fn bytes(&self) -> usize {
        self.places.iter().map(|r| r.len()).sum()
    }

    /// Packet `i` as a buffer of its own, sharing the memory.
    pub fn packet(&self, i: usize) -> Option<gst::Buffer> {
        let r = self.places.get(i)?;
        self.buffer
            .copy_region(gst::BufferCopyFlags::MEMORY, r.clone())
            .ok()
    }

    /// One buffer listing its packets (block packing); `pts` and `discont` on it.
    pub fn into_block(self, pts: Option<gst::ClockTime>, discont: bool) -> gst::Buffer {
        let mut buffer = self.buffer.copy();
        let b = buffer.make_mut();
        packing::set_packets(b, packing::write(&self.places));
        b.set_pts(pts);
        if discont {
            b.set_flags(gst::BufferFlags::DISCONT);
        }
        buffer
    }

    /// A buffer per packet, sharing the memory; `pts` on each, `discont` on the first.
    pub fn into_list(self, pts: Option<gst::ClockTime>, discont: bool) -> gst::BufferList {
        let mut list = gst::BufferList::new_sized(self.places.len());
        let l = list.get_mut().unwrap();
        for i in 0..self.places.len() {
            let Some(mut p) = self.packet(i) else {
                continue;
            };
            let b = p.make_mut();
            b.set_pts(pts);
            if discont && i == 0 {
                b.set_flags(gst::BufferFlags::DISCONT);
            }
            l.add(p);
        }
        list
    }
}

/// The buffer reads go into, made again only once the last one went downstream (a read of
/// a few datagrams is copied out, so its buffer serves the next read).
#[derive(Default)]
pub(crate) struct Spare(Option<gst::Buffer>);

impl Spare {
    pub fn take(&mut self) -> std::io::Result<gst::Buffer> {
        match self.0.take() {
            Some(mut b) => {
                b.get_mut()
                    .expect("kept only when ours alone")
                    .set_size(crate::gro::MAX_READ);
                Ok(b)
            }
            None => gst::Buffer::with_size(crate::gro::MAX_READ).map_err(std::io::Error::other),
        }
    }

    /// Kept only if nothing holds its memory: packets handed on share it (a list of
    /// buffers, or a block buffer, each referring to the read's memory, not to the buffer).
    pub fn keep(&mut self, buffer: gst::Buffer) {
        if buffer.is_writable() && buffer.is_all_memory_writable() {
            self.0 = Some(buffer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read() -> gst::Buffer {
        gst::Buffer::from_slice((0..100u8).collect::<Vec<_>>())
    }

    #[test]
    fn a_big_read_is_shared_a_small_one_copied_and_both_come_out_whole() {
        gst::init().unwrap();
        gstfanoutfec::plugin_register_static().unwrap();
        let places = vec![2..10, 20..30, 40..50, 60..61];
        let shared = Batch::of(&read(), places.clone(), 4);
        assert_eq!(shared.buffer.size(), 100, "shared");
        let copied = Batch::of(&read(), places[..2].to_vec(), 2);
        assert_eq!(copied.buffer.size(), 18, "copied");
        assert_eq!((shared.len(), shared.bytes()), (4, 29));
        let list = shared.clone().into_list(None, true);
        let got: Vec<Vec<u8>> = list
            .iter()
            .map(|b| b.map_readable().unwrap().to_vec())
            .collect();
        let want: Vec<Vec<u8>> = places
            .iter()
            .map(|r| (r.start as u8..r.end as u8).collect())
            .collect();
        assert_eq!(got, want);
        assert!(list
            .get(0)
            .unwrap()
            .flags()
            .contains(gst::BufferFlags::DISCONT));
        let block = shared.into_block(None, false);
        let listed = packing::packets(&block).unwrap().unwrap();
        assert_eq!(listed, places);
        assert_eq!(Batch::copied(&[&[1, 2], &[3]]).places, [0..2, 2..3]);
    }

    #[test]
    fn a_read_buffer_is_read_into_again_only_when_no_packet_holds_its_memory() {
        gst::init().unwrap();
        let mut spare = Spare::default();
        let buffer = spare.take().unwrap();
        let batch = Batch {
            buffer: buffer.clone(),
            places: vec![0..10, 10..20],
        };
        let list = batch.into_list(None, false);
        // The batch's buffer is gone, its packets share the memory: not for the next read.
        spare.keep(buffer);
        assert!(spare.0.is_none());
        drop(list);
        let buffer = spare.take().unwrap();
        spare.keep(buffer);
        assert!(spare.0.is_some(), "nobody else: kept");
    }
}
