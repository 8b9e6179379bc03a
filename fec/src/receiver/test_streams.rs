//! Streams for the receiver's tests: what a sender makes of a run of buffers.

use crate::packet::{self, write_symbol, Packet};
use crate::{BufferMeta, Mono, Sender};

pub const MS: u64 = 1_000_000;
/// One block every 100 ms, as `fec-payloader`'s default `max-block-time` makes them.
pub const BLOCK_TIME: u64 = 100 * MS;

/// `ns` on the receiver's clock.
pub fn at(ns: u64) -> Mono {
    Mono::from_nanos(ns)
}

/// `n` buffers through `sender`, one block each: the packets of each block (descriptions
/// included) and the buffers themselves; `seed` varies their bytes.
pub fn blocks_of(mut sender: Sender, n: u64, seed: u64) -> (Vec<Vec<Vec<u8>>>, Vec<Vec<u8>>) {
    let mut blocks = Vec::new();
    let mut input = Vec::new();
    for i in 0..n {
        let data: Vec<u8> = (0..3000 + i * 7)
            .map(|b| (b * 31 + i + seed) as u8)
            .collect();
        let meta = BufferMeta {
            pts: Some(i * BLOCK_TIME),
            duration: Some(BLOCK_TIME),
            ..BufferMeta::default()
        };
        let mut packets = Vec::new();
        sender.push_buffer(&meta, &data, &mut packets);
        sender.flush(&mut packets);
        blocks.push(packets);
        input.push(data);
    }
    (blocks, input)
}

/// A genuine symbol packet moved to another block number (valid checksum).
pub fn moved(p: &[u8], block: u64) -> Vec<u8> {
    let Ok(Packet::Symbol { mut header, data }) = packet::parse(p) else {
        panic!("not a symbol");
    };
    header.block = block;
    let mut out = Vec::new();
    write_symbol(&mut out, &header, data);
    out
}
