//! The datagram format (docs/fec-format.md): symbol packets and stream-description fragments.
//!
//! Every packet starts with an 8-byte common header and ends with a CRC-32C of everything
//! before it, so a corrupt datagram is dropped instead of poisoning a decoded block.

use crate::codec::BlockParams;
use crate::Codec;

pub const MAGIC: [u8; 2] = *b"FO";
/// 3: the stream description carries the sender's random stream identity; 2 did not; 1
/// numbered SBNs modulo 256.
pub const VERSION: u8 = 3;
pub const TYPE_SYMBOL: u8 = 1;
pub const TYPE_DESCRIPTION: u8 = 2;

/// Common header: magic, version, type, flow id.
pub const COMMON_HEADER: usize = 8;
/// Symbol packet header: common header, codec, flags, recovery pool, block number,
/// RFC 6330 FEC Payload ID (4 bytes) and OTI (12 bytes).
pub const SYMBOL_HEADER: usize = 36;
/// Description fragment header: common header, version, fragment index/count, total length.
pub const DESCRIPTION_HEADER: usize = 16;
pub const CRC_LEN: usize = 4;

/// Largest datagram we emit: a 1500-byte MTU less IPv6 (40) and UDP (8) headers.
pub const MAX_DATAGRAM: usize = 1452;
/// Largest symbol size that keeps a symbol packet within [`MAX_DATAGRAM`], rounded down to
/// the symbol alignment.
pub const MAX_SYMBOL_SIZE: usize = (MAX_DATAGRAM - SYMBOL_HEADER - CRC_LEN) / ALIGNMENT * ALIGNMENT;
const _: () = assert!(SYMBOL_HEADER + MAX_SYMBOL_SIZE + CRC_LEN <= MAX_DATAGRAM);

/// RFC 6330 symbol alignment (Al) we use for every codec.
pub const ALIGNMENT: usize = 8;

/// Block numbers stay below 2^63, so a receiver's arithmetic on them cannot overflow.
pub const MAX_BLOCK: u64 = (1 << 63) - 1;

/// The ESI field is 24 bits wide (RFC 6330 section 3.2).
pub const MAX_ESI: u32 = (1 << 24) - 1;

pub const FLAG_REPAIR: u8 = 0x01;

/// Everything a symbol packet says about its source block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymbolHeader {
    pub flow: u32,
    pub codec: Codec,
    pub flags: u8,
    /// Reed-Solomon: number of recovery shards the block was encoded with; 0 otherwise.
    pub pool: u16,
    pub block: u64,
    pub esi: u32,
    /// F: length of the serialized source block, padding excluded.
    pub transfer_length: u64,
    pub symbol_size: u16,
}

impl SymbolHeader {
    /// What every packet of the block must agree on.
    pub fn params(&self) -> BlockParams {
        BlockParams {
            codec: self.codec,
            transfer_length: self.transfer_length,
            symbol_size: self.symbol_size,
            pool: self.pool,
        }
    }

    /// Number of source symbols K of the block: ceil(F / T).
    pub fn source_symbols(&self) -> u32 {
        self.params().source_symbols()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    Symbol {
        header: SymbolHeader,
        data: &'a [u8],
    },
    Description {
        flow: u32,
        version: u32,
        index: u8,
        count: u8,
        total_len: u16,
        data: &'a [u8],
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    Truncated,
    BadMagic,
    UnsupportedVersion(u8),
    UnknownType(u8),
    BadChecksum,
    /// Header fields that contradict each other or RFC 6330 limits.
    Invalid(&'static str),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::Truncated => f.write_str("truncated packet"),
            ParseError::BadMagic => f.write_str("not a fanout FEC packet"),
            ParseError::UnsupportedVersion(v) => write!(f, "unsupported packet version {v}"),
            ParseError::UnknownType(t) => write!(f, "unknown packet type {t}"),
            ParseError::BadChecksum => f.write_str("checksum mismatch"),
            ParseError::Invalid(why) => write!(f, "invalid packet: {why}"),
        }
    }
}

impl std::error::Error for ParseError {}

fn be_u16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be_u64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().unwrap())
}

fn common_header(out: &mut Vec<u8>, kind: u8, flow: u32) {
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(kind);
    out.extend_from_slice(&flow.to_be_bytes());
}

/// The checksum of the packet that starts at `start` of `out`.
fn finish(out: &mut Vec<u8>, start: usize) {
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// Writes one symbol packet into `out` (cleared first).
pub fn write_symbol(out: &mut Vec<u8>, h: &SymbolHeader, symbol: &[u8]) {
    out.clear();
    append_symbol(out, h, symbol);
}

/// Appends one symbol packet to `out`, after the packets already there.
pub fn append_symbol(out: &mut Vec<u8>, h: &SymbolHeader, symbol: &[u8]) {
    debug_assert_eq!(symbol.len(), usize::from(h.symbol_size));
    debug_assert!(h.esi <= MAX_ESI);
    let start = out.len();
    out.reserve(SYMBOL_HEADER + symbol.len() + CRC_LEN);
    common_header(out, TYPE_SYMBOL, h.flow);
    out.push(h.codec as u8);
    out.push(h.flags);
    out.extend_from_slice(&h.pool.to_be_bytes());
    out.extend_from_slice(&h.block.to_be_bytes());
    // RFC 6330 3.2 FEC Payload ID: SBN (8 bits), ESI (24 bits). Every block is an object of
    // its own, identified by the block number as FLUTE identifies objects by TOI: SBN 0.
    out.extend_from_slice(&h.esi.to_be_bytes());
    // RFC 6330 3.3.2 Common FEC OTI: F (40 bits), reserved (8 bits), T (16 bits).
    out.extend_from_slice(&h.transfer_length.to_be_bytes()[3..]);
    out.push(0);
    out.extend_from_slice(&h.symbol_size.to_be_bytes());
    // RFC 6330 3.3.3 Scheme-Specific OTI: Z = 1 source block, N = 1 sub-block, Al.
    out.push(1);
    out.extend_from_slice(&1u16.to_be_bytes());
    out.push(ALIGNMENT as u8);
    out.extend_from_slice(symbol);
    finish(out, start);
}

/// Writes one description fragment into `out` (cleared first).
pub fn write_description(
    out: &mut Vec<u8>,
    flow: u32,
    version: u32,
    index: u8,
    count: u8,
    total_len: u16,
    data: &[u8],
) {
    out.clear();
    common_header(out, TYPE_DESCRIPTION, flow);
    out.extend_from_slice(&version.to_be_bytes());
    out.push(index);
    out.push(count);
    out.extend_from_slice(&total_len.to_be_bytes());
    out.extend_from_slice(data);
    finish(out, 0);
}

/// Largest description fragment payload per datagram.
pub const MAX_DESCRIPTION_FRAGMENT: usize = MAX_DATAGRAM - DESCRIPTION_HEADER - CRC_LEN;

/// Parses and checks one datagram. Never panics, whatever the bytes.
pub fn parse(buf: &[u8]) -> Result<Packet<'_>, ParseError> {
    parse_with(buf, true)
}

/// As [`parse`], without the checksum: for a packet made in this process (a sender's own
/// output on its way to the network), where reading its header is all that is wanted.
pub fn parse_unchecked(buf: &[u8]) -> Result<Packet<'_>, ParseError> {
    parse_with(buf, false)
}

fn parse_with(buf: &[u8], check: bool) -> Result<Packet<'_>, ParseError> {
    if buf.len() < COMMON_HEADER + CRC_LEN {
        return Err(ParseError::Truncated);
    }
    if buf[..2] != MAGIC {
        return Err(ParseError::BadMagic);
    }
    if buf[2] != VERSION {
        return Err(ParseError::UnsupportedVersion(buf[2]));
    }
    let kind = buf[3];
    let min = match kind {
        TYPE_SYMBOL => SYMBOL_HEADER,
        TYPE_DESCRIPTION => DESCRIPTION_HEADER,
        other => return Err(ParseError::UnknownType(other)),
    };
    if buf.len() < min + CRC_LEN {
        return Err(ParseError::Truncated);
    }
    let (body, crc) = buf.split_at(buf.len() - CRC_LEN);
    if check && crc32c::crc32c(body) != be_u32(crc) {
        return Err(ParseError::BadChecksum);
    }
    let flow = be_u32(&body[4..8]);
    if kind == TYPE_DESCRIPTION {
        let (index, count) = (body[12], body[13]);
        if count == 0 || index >= count {
            return Err(ParseError::Invalid("fragment index out of range"));
        }
        return Ok(Packet::Description {
            flow,
            version: be_u32(&body[8..12]),
            index,
            count,
            total_len: be_u16(&body[14..16]),
            data: &body[DESCRIPTION_HEADER..],
        });
    }

    let codec = Codec::from_u8(body[8]).ok_or(ParseError::Invalid("unknown codec"))?;
    let block = be_u64(&body[12..20]);
    if block > MAX_BLOCK {
        return Err(ParseError::Invalid("block number beyond 2^63 - 1"));
    }
    let payload_id = be_u32(&body[20..24]);
    if payload_id >> 24 != 0 {
        return Err(ParseError::Invalid("SBN is not 0"));
    }
    let transfer_length =
        u64::from_be_bytes([0, 0, 0, body[24], body[25], body[26], body[27], body[28]]);
    let symbol_size = be_u16(&body[30..32]);
    let (z, n, al) = (body[32], be_u16(&body[33..35]), body[35]);
    if z != 1 || n != 1 || usize::from(al) != ALIGNMENT {
        return Err(ParseError::Invalid("unsupported source block partitioning"));
    }
    if symbol_size == 0 || usize::from(symbol_size) % ALIGNMENT != 0 {
        return Err(ParseError::Invalid("symbol size"));
    }
    let data = &body[SYMBOL_HEADER..];
    if data.len() != usize::from(symbol_size) {
        return Err(ParseError::Invalid(
            "payload length differs from the symbol size",
        ));
    }
    let header = SymbolHeader {
        flow,
        codec,
        flags: body[9],
        pool: be_u16(&body[10..12]),
        block,
        esi: payload_id & MAX_ESI,
        transfer_length,
        symbol_size,
    };
    let k = header.source_symbols();
    if transfer_length == 0 || k > u32::from(crate::MAX_SOURCE_SYMBOLS) {
        return Err(ParseError::Invalid("transfer length"));
    }
    let repair = header.flags & FLAG_REPAIR != 0;
    match codec {
        Codec::None if repair || header.esi >= k => {
            return Err(ParseError::Invalid("repair symbol without a code"))
        }
        Codec::ReedSolomon if header.pool == 0 => {
            return Err(ParseError::Invalid(
                "Reed-Solomon block without recovery shards",
            ))
        }
        Codec::ReedSolomon if header.esi >= k + u32::from(header.pool) => {
            return Err(ParseError::Invalid(
                "Reed-Solomon ESI beyond the recovery shards",
            ))
        }
        _ => (),
    }
    Ok(Packet::Symbol { header, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> SymbolHeader {
        SymbolHeader {
            flow: 7,
            codec: Codec::RaptorQ,
            flags: 0,
            pool: 0,
            block: 0x1_0000_0102,
            esi: 3,
            transfer_length: 10_000,
            symbol_size: 1000,
        }
    }

    #[test]
    fn symbol_round_trip() {
        let mut out = Vec::new();
        let sym = vec![0xab; 1000];
        write_symbol(&mut out, &header(), &sym);
        assert_eq!(out.len(), SYMBOL_HEADER + 1000 + CRC_LEN);
        // SBN 0: each block is an RFC 6330 object of its own.
        assert_eq!(out[20], 0);
        match parse(&out).unwrap() {
            Packet::Symbol { header: h, data } => {
                assert_eq!(h, header());
                assert_eq!(h.source_symbols(), 10);
                assert_eq!(data, &sym[..]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn appended_packets_are_each_the_packet_written_alone() {
        let mut alone = Vec::new();
        write_symbol(&mut alone, &header(), &[7; 1000]);
        let mut out = b"before".to_vec();
        append_symbol(&mut out, &header(), &[7; 1000]);
        assert_eq!(&out[..6], b"before");
        assert_eq!(&out[6..], &alone[..]);
        assert!(parse(&out[6..]).is_ok());
    }

    #[test]
    fn damage_is_detected() {
        let mut out = Vec::new();
        write_symbol(&mut out, &header(), &[1; 1000]);
        for cut in [0, 3, 8, 39, out.len() - 1] {
            assert!(parse(&out[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = out.clone();
        flipped[100] ^= 1;
        assert_eq!(parse(&flipped), Err(ParseError::BadChecksum));
        // Unchecked, the same header reads; everything else is still checked.
        assert!(
            matches!(parse_unchecked(&flipped), Ok(Packet::Symbol { header: h, .. }) if h == header())
        );
        assert!(parse_unchecked(&out[..39]).is_err());
        let mut v2 = out.clone();
        v2[2] = VERSION + 1;
        assert_eq!(parse(&v2), Err(ParseError::UnsupportedVersion(VERSION + 1)));
        assert_eq!(parse(b"garbage garbage garbage"), Err(ParseError::BadMagic));
    }

    #[test]
    fn a_transfer_length_whose_k_wraps_a_u32_is_refused() {
        // K = 2^32 + 100: as a u32 it would wrap to 100 and pass for a small block.
        let h = SymbolHeader {
            transfer_length: 8 * ((1 << 32) + 100),
            symbol_size: 8,
            ..header()
        };
        let mut out = Vec::new();
        write_symbol(&mut out, &h, &[0; 8]);
        assert_eq!(parse(&out), Err(ParseError::Invalid("transfer length")));
    }

    #[test]
    fn description_round_trip() {
        let mut out = Vec::new();
        write_description(&mut out, 9, 4, 1, 2, 20, b"0123456789");
        assert_eq!(
            parse(&out).unwrap(),
            Packet::Description {
                flow: 9,
                version: 4,
                index: 1,
                count: 2,
                total_len: 20,
                data: b"0123456789"
            }
        );
    }
}
