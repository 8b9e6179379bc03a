//! The three codecs behind one interface: an encoder hands out symbols by ESI, a decoder
//! takes symbols in any order and returns the block once it has enough.

use raptorq::{
    EncodingPacket, ObjectTransmissionInformation, PayloadId, SourceBlockDecoder,
    SourceBlockEncoder,
};
use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

use crate::packet::ALIGNMENT;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum Codec {
    /// Output symbols are the input symbols; no repair.
    None = 0,
    /// RFC 6330 RaptorQ: rateless, any K (+ a symbol or two) symbols rebuild the block.
    #[default]
    RaptorQ = 1,
    /// Reed-Solomon over GF(2^16): exactly any K symbols, but a fixed recovery pool per block.
    ReedSolomon = 2,
}

impl Codec {
    pub fn from_u8(v: u8) -> Option<Codec> {
        match v {
            0 => Some(Codec::None),
            1 => Some(Codec::RaptorQ),
            2 => Some(Codec::ReedSolomon),
            _ => None,
        }
    }

    /// Symbols beyond K a receiver should have to decode with high probability.
    pub fn overhead(self) -> u32 {
        match self {
            // RFC 6330: K+2 received symbols fail about once in a million.
            Codec::RaptorQ => 2,
            Codec::ReedSolomon | Codec::None => 0,
        }
    }
}

fn oti(transfer_length: u64, symbol_size: u16) -> ObjectTransmissionInformation {
    ObjectTransmissionInformation::new(transfer_length, symbol_size, 1, 1, ALIGNMENT as u8)
}

/// What a codec computed from a block to make repair symbols; the block's bytes are kept
/// beside it by the caller.
pub enum BlockEncoder {
    /// No code: no repair symbols.
    None,
    RaptorQ(Box<SourceBlockEncoder>),
    /// The whole recovery pool, computed at once.
    ReedSolomon {
        recovery: Vec<u8>,
        pool: u32,
    },
}

impl BlockEncoder {
    /// `data` is the block padded to K * T bytes (so F = K * T); `pool` is the number of
    /// Reed-Solomon recovery shards.
    pub fn new(codec: Codec, data: &[u8], symbol_size: u16, pool: u16) -> BlockEncoder {
        let t = usize::from(symbol_size);
        debug_assert_eq!(data.len() % t, 0);
        match codec {
            Codec::None => BlockEncoder::None,
            Codec::RaptorQ => {
                let config = oti(data.len() as u64, symbol_size);
                BlockEncoder::RaptorQ(Box::new(SourceBlockEncoder::new(0, &config, data)))
            }
            Codec::ReedSolomon => {
                let k = data.len() / t;
                let mut encoder = ReedSolomonEncoder::new(k, usize::from(pool), t)
                    .expect("Reed-Solomon parameters are checked by the sender");
                for shard in data.chunks_exact(t) {
                    encoder.add_original_shard(shard).expect("shard size");
                }
                let result = encoder.encode().expect("all shards added");
                let mut recovery = Vec::with_capacity(usize::from(pool) * t);
                for shard in result.recovery_iter() {
                    recovery.extend_from_slice(shard);
                }
                drop(result);
                BlockEncoder::ReedSolomon {
                    recovery,
                    pool: u32::from(pool),
                }
            }
        }
    }

    /// `count` repair symbols of a block of `k` source symbols, starting with the `first`-th,
    /// with their ESIs.
    pub fn repair_symbols(
        &self,
        k: u32,
        first: u32,
        count: u32,
        symbol_size: usize,
    ) -> Vec<(u32, Vec<u8>)> {
        match self {
            BlockEncoder::None => Vec::new(),
            // Repair ESIs are K + n (RFC 6330 5.3.1; the crate encodes ISI K' + n internally),
            // never repeating while below 2^24.
            BlockEncoder::RaptorQ(encoder) => encoder
                .repair_packets(first, count)
                .into_iter()
                .map(|p| {
                    let (id, data) = p.split();
                    (id.encoding_symbol_id(), data)
                })
                .collect(),
            BlockEncoder::ReedSolomon { recovery, pool } => (0..count)
                .map(|i| {
                    // The pool is fixed: past its end the same recovery shards come round.
                    let n = (first.wrapping_add(i) % pool) as usize;
                    let shard = recovery[n * symbol_size..(n + 1) * symbol_size].to_vec();
                    (k + n as u32, shard)
                })
                .collect(),
        }
    }
}

/// What a decoder needs to know of a block; every symbol packet of the block says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockParams {
    pub codec: Codec,
    /// F: the block's length in bytes (K * T: the padded block).
    pub transfer_length: u64,
    /// T.
    pub symbol_size: u16,
    /// Reed-Solomon: the number of recovery shards; 0 otherwise.
    pub pool: u16,
}

impl BlockParams {
    /// K = ceil(F / T), saturating: F and T come from a packet, and a K past `u32::MAX` must
    /// not wrap into a small one that passes the checks.
    pub fn source_symbols(&self) -> u32 {
        let k = self
            .transfer_length
            .div_ceil(u64::from(self.symbol_size.max(1)));
        u32::try_from(k).unwrap_or(u32::MAX)
    }
}

/// Collects the symbols of one block until it can be rebuilt.
pub enum BlockDecoder {
    Collect {
        symbols: Vec<Option<Vec<u8>>>,
        have: u32,
    },
    /// Every block is a one-block RFC 6330 object: SBN 0.
    RaptorQ(Box<SourceBlockDecoder>),
    /// The decoder (and its work space) is made only once K symbols are in, so that memory
    /// follows the symbols received, not the K a packet claims.
    ReedSolomon {
        originals: Vec<Option<Vec<u8>>>,
        have_original: u32,
        recovery: Vec<(usize, Vec<u8>)>,
        pool: u16,
        symbol_size: u16,
    },
}

impl BlockDecoder {
    /// Parameters come from a parsed (so already validated) symbol header.
    pub fn new(params: &BlockParams) -> Option<Self> {
        let BlockParams {
            codec,
            transfer_length,
            symbol_size,
            pool,
        } = *params;
        let k = params.source_symbols() as usize;
        Some(match codec {
            Codec::None => BlockDecoder::Collect {
                symbols: vec![None; k],
                have: 0,
            },
            Codec::RaptorQ => {
                let config = oti(transfer_length, symbol_size);
                BlockDecoder::RaptorQ(Box::new(SourceBlockDecoder::new(
                    0,
                    &config,
                    transfer_length,
                )))
            }
            Codec::ReedSolomon => {
                // Checked now so that a block the codec cannot handle fails at its first packet.
                ReedSolomonDecoder::supports(k, usize::from(pool)).then_some(())?;
                BlockDecoder::ReedSolomon {
                    originals: vec![None; k],
                    have_original: 0,
                    recovery: Vec::new(),
                    pool,
                    symbol_size,
                }
            }
        })
    }

    /// Adds a symbol (the caller has dropped duplicates); returns the K * T block bytes once
    /// decodable.
    pub fn add(&mut self, esi: u32, symbol: &[u8]) -> Option<Vec<u8>> {
        match self {
            BlockDecoder::Collect { symbols, have } => {
                let slot = symbols.get_mut(esi as usize)?;
                if slot.replace(symbol.to_vec()).is_none() {
                    *have += 1;
                }
                if *have as usize == symbols.len() {
                    joined(symbols)
                } else {
                    None
                }
            }
            BlockDecoder::RaptorQ(decoder) => decoder.decode(std::iter::once(EncodingPacket::new(
                PayloadId::new(0, esi),
                symbol.to_vec(),
            ))),
            BlockDecoder::ReedSolomon {
                originals,
                have_original,
                recovery,
                pool,
                symbol_size,
            } => {
                let k = originals.len();
                let esi = esi as usize;
                if esi < k {
                    if originals[esi].replace(symbol.to_vec()).is_none() {
                        *have_original += 1;
                    }
                } else if esi - k < usize::from(*pool) {
                    recovery.push((esi - k, symbol.to_vec()));
                }
                let have = *have_original as usize;
                if have + recovery.len() < k {
                    return None;
                }
                if have < k {
                    let mut decoder =
                        ReedSolomonDecoder::new(k, usize::from(*pool), usize::from(*symbol_size))
                            .ok()?;
                    for (i, shard) in originals.iter().enumerate() {
                        if let Some(shard) = shard {
                            decoder.add_original_shard(i, shard).ok()?;
                        }
                    }
                    for (i, shard) in recovery.iter() {
                        decoder.add_recovery_shard(*i, shard).ok()?;
                    }
                    let result = decoder.decode().ok()?;
                    for (i, shard) in result.restored_original_iter() {
                        originals[i] = Some(shard.to_vec());
                    }
                }
                joined(originals)
            }
        }
    }
}

/// The block from its symbols (a copy per symbol, not per byte); `None` if one is missing.
fn joined(symbols: &mut [Option<Vec<u8>>]) -> Option<Vec<u8>> {
    let len = symbols
        .iter()
        .map(|s| s.as_ref().map(Vec::len))
        .sum::<Option<usize>>()?;
    let mut block = Vec::with_capacity(len);
    for s in symbols.iter_mut().filter_map(Option::take) {
        block.extend_from_slice(&s);
    }
    Some(block)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_is_joined_only_from_every_symbol_and_none_is_lost_otherwise() {
        let mut some = vec![Some(vec![1, 2]), None, Some(vec![5, 6])];
        assert_eq!(joined(&mut some), None);
        assert!(some[0].is_some() && some[2].is_some(), "nothing taken");
        some[1] = Some(vec![3, 4]);
        assert_eq!(joined(&mut some), Some(vec![1, 2, 3, 4, 5, 6]));
    }
}
