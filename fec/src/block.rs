//! What a source block carries: the input buffers cut into pieces, each with the buffer's
//! boundaries, timestamps and flags, so the receiver restores every buffer exactly.
//!
//! A piece is `flags (u8)`, then on the first piece of a buffer the buffer flags and the
//! present timestamps as LEB128 varints, then the piece length (varint) and its bytes.
//! A block is a run of pieces, zero-padded to K symbols: a zero flags byte ends the run.

use fanout_wire::varint;

pub const PIECE_START: u8 = 0x01;
pub const PIECE_END: u8 = 0x02;
const HAS_PTS: u8 = 0x04;
const HAS_DTS: u8 = 0x08;
const HAS_DURATION: u8 = 0x10;
/// Set on every piece, so that padding (zero) ends the block.
const PIECE: u8 = 0x20;
const KNOWN_FLAGS: u8 = 0x3f;

/// Timestamps and flags of one input buffer (GStreamer `GstBufferFlags` bits, opaque here).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BufferMeta {
    pub pts: Option<u64>,
    pub dts: Option<u64>,
    pub duration: Option<u64>,
    pub flags: u32,
}

/// One piece as read back from a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece<'a> {
    /// First piece of a buffer: `meta` is valid.
    pub start: bool,
    /// Last piece of a buffer.
    pub end: bool,
    pub meta: BufferMeta,
    pub data: &'a [u8],
}

/// Appends a piece header to `out`; the caller appends `len` bytes of data after it.
pub fn put_piece_header(out: &mut Vec<u8>, start: bool, end: bool, meta: &BufferMeta, len: usize) {
    let mut flags = PIECE;
    if start {
        flags |= PIECE_START;
        flags |= if meta.pts.is_some() { HAS_PTS } else { 0 };
        flags |= if meta.dts.is_some() { HAS_DTS } else { 0 };
        flags |= if meta.duration.is_some() {
            HAS_DURATION
        } else {
            0
        };
    }
    if end {
        flags |= PIECE_END;
    }
    out.push(flags);
    if start {
        varint::put(out, u64::from(meta.flags));
        for v in [meta.pts, meta.dts, meta.duration].into_iter().flatten() {
            varint::put(out, v);
        }
    }
    varint::put(out, len as u64);
}

/// Length of the header [`put_piece_header`] would write.
pub fn piece_header_len(start: bool, meta: &BufferMeta, len: usize) -> usize {
    let mut n = 1 + varint::len(len as u64);
    if start {
        n += varint::len(u64::from(meta.flags));
        n += [meta.pts, meta.dts, meta.duration]
            .into_iter()
            .flatten()
            .map(varint::len)
            .sum::<usize>();
    }
    n
}

fn next_varint(block: &[u8], pos: &mut usize) -> Option<u64> {
    let mut rest = block.get(*pos..)?;
    let v = varint::get(&mut rest).ok()?;
    *pos = block.len() - rest.len();
    Some(v)
}

/// Reads the pieces of a decoded block; `None` if the content is malformed.
pub fn parse_pieces(block: &[u8]) -> Option<Vec<Piece<'_>>> {
    let mut pieces = Vec::new();
    let mut pos = 0;
    while pos < block.len() {
        let flags = block[pos];
        pos += 1;
        if flags == 0 {
            // Padding: the rest must be zero too.
            return block[pos..].iter().all(|&b| b == 0).then_some(pieces);
        }
        if flags & !KNOWN_FLAGS != 0
            || flags & PIECE == 0
            || (flags & PIECE_START == 0 && flags & 0x1c != 0)
        {
            return None;
        }
        let mut meta = BufferMeta::default();
        if flags & PIECE_START != 0 {
            meta.flags = u32::try_from(next_varint(block, &mut pos)?).ok()?;
            // 2^64 - 1 is GStreamer's "no time": never a time a sender can have had.
            let mut time = |present: u8| -> Option<Option<u64>> {
                if flags & present == 0 {
                    return Some(None);
                }
                let t = next_varint(block, &mut pos)?;
                (t != u64::MAX).then_some(Some(t))
            };
            meta.pts = time(HAS_PTS)?;
            meta.dts = time(HAS_DTS)?;
            meta.duration = time(HAS_DURATION)?;
        }
        let len = usize::try_from(next_varint(block, &mut pos)?).ok()?;
        let data = block.get(pos..pos.checked_add(len)?)?;
        pos += len;
        pieces.push(Piece {
            start: flags & PIECE_START != 0,
            end: flags & PIECE_END != 0,
            meta,
            data,
        });
    }
    Some(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_round_trip() {
        let meta = BufferMeta {
            pts: Some(90_000_000_000),
            dts: None,
            duration: Some(40_000_000),
            flags: 0x2000,
        };
        let mut block = Vec::new();
        put_piece_header(&mut block, true, true, &meta, 3);
        block.extend_from_slice(b"abc");
        put_piece_header(&mut block, true, false, &BufferMeta::default(), 2);
        block.extend_from_slice(b"de");
        put_piece_header(&mut block, false, true, &BufferMeta::default(), 1);
        block.extend_from_slice(b"f");
        let content = block.len();
        block.resize(content + 5, 0);
        let pieces = parse_pieces(&block).unwrap();
        assert_eq!(pieces.len(), 3);
        assert_eq!(pieces[0].meta, meta);
        assert!(pieces[0].start && pieces[0].end);
        assert_eq!(pieces[1].data, b"de");
        assert!(!pieces[2].start && pieces[2].end);
        assert_eq!(
            piece_header_len(true, &meta, 3),
            // Less the data (3 + 2 + 1) and the two later headers (3 + 2).
            content - 11
        );
    }

    #[test]
    fn header_length_is_what_is_written() {
        for v in [
            0u64,
            1,
            127,
            128,
            16383,
            16384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let meta = BufferMeta {
                pts: Some(v),
                dts: None,
                duration: Some(v / 3),
                flags: v as u32,
            };
            for start in [false, true] {
                let mut out = Vec::new();
                put_piece_header(&mut out, start, false, &meta, (v % 100_000) as usize);
                assert_eq!(
                    out.len(),
                    piece_header_len(start, &meta, (v % 100_000) as usize),
                    "{v}"
                );
            }
        }
    }

    #[test]
    fn malformed_blocks_are_refused() {
        assert!(parse_pieces(&[0x21, 0x00, 0x05, b'a']).is_none());
        assert!(parse_pieces(&[0x80]).is_none());
        assert!(parse_pieces(&[0x01, 0x00, 0x00]).is_none());
        assert!(parse_pieces(&[0x21, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_none());
        assert!(parse_pieces(&[0x00, 0x00, 0x01]).is_none());
        assert_eq!(parse_pieces(&[]).unwrap(), vec![]);
        assert_eq!(parse_pieces(&[0, 0, 0]).unwrap(), vec![]);
    }
}
