//! Hand-made blocks and symbols for the in-crate tests of the receiver's parts.

use std::time::Duration;

use fanout_wire::time::Mono;

use super::{Receiver, ReceiverConfig};
use crate::block::{put_piece_header, BufferMeta};
use crate::description::{Description, Mode};
use crate::packet::{write_symbol, SymbolHeader};
use crate::Codec;

pub const MS: u64 = 1_000_000;

/// `ns` on the receiver's clock.
pub fn at(ns: u64) -> Mono {
    Mono::from_nanos(ns)
}

/// `ns` nanoseconds.
pub fn d(ns: u64) -> Duration {
    Duration::from_nanos(ns)
}
/// Symbol size of every hand-made block.
pub const T: u16 = 64;

/// A receiver whose description (codec, `mode`, symbol size [`T`]) is in force already.
pub fn described(cfg: ReceiverConfig, codec: Codec, mode: Mode) -> Receiver {
    let mut rx = Receiver::new(cfg);
    let desc = Description {
        codec,
        mode,
        symbol_size: T,
        caps: "application/x-test".into(),
        ..Description::default()
    };
    rx.set_description(desc, &mut Vec::new());
    rx
}

/// The header of symbol `esi` of `block`, a block of `k` symbols of [`T`] bytes.
pub fn header(codec: Codec, block: u64, esi: u32, k: u64) -> SymbolHeader {
    SymbolHeader {
        flow: 0,
        codec,
        flags: 0,
        pool: 0,
        block,
        esi,
        transfer_length: k * u64::from(T),
        symbol_size: T,
    }
}

/// Symbol `esi` of `block` as a datagram, its bytes all `esi`.
pub fn datagram(codec: Codec, block: u64, esi: u32, k: u64) -> Vec<u8> {
    let mut out = Vec::new();
    write_symbol(
        &mut out,
        &header(codec, block, esi, k),
        &[esi as u8; T as usize],
    );
    out
}

/// A piece of block content: (first piece, last piece, the buffer's meta, bytes).
pub type Piece<'a> = (bool, bool, BufferMeta, &'a [u8]);

/// Block content made of `pieces`, unpadded.
pub fn content(pieces: &[Piece]) -> Vec<u8> {
    let mut out = Vec::new();
    for (start, end, meta, data) in pieces {
        put_piece_header(&mut out, *start, *end, meta, data.len());
        out.extend_from_slice(data);
    }
    out
}

/// A buffer's meta: `pts` and `duration` (ns).
pub fn timed(pts: u64, duration: u64) -> BufferMeta {
    BufferMeta {
        pts: Some(pts),
        duration: Some(duration),
        ..BufferMeta::default()
    }
}
