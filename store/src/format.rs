//! Byte layout of index files, as documented in `docs/store-format.md`.
//!
//! Everything here is pure: encoding into a `Vec<u8>` and decoding from a
//! byte slice, so the parser can be unit-tested and fuzzed without files.

use fanout_wire::varint;

/// First bytes of every index file.
pub const INDEX_MAGIC: [u8; 4] = *b"FOIX";
pub const FORMAT_VERSION: u16 = 1;
pub const HEADER_LEN: usize = 40;
/// Length prefix, type byte, trailing checksum.
pub const RECORD_OVERHEAD: usize = 4 + 1 + 4;
/// Caps or tag strings larger than this are refused when writing and taken as
/// corruption when reading, so a damaged length field cannot make a reader
/// allocate gigabytes.
pub const MAX_PAYLOAD: usize = 1 << 20;
/// The largest buffer a store holds (256 MiB): a recorder refuses larger ones, and a reader
/// takes a record naming more as corruption, so a crafted index cannot make it allocate
/// gigabytes for one buffer.
pub const MAX_BUFFER_SIZE: u32 = 1 << 28;

pub const SUMMARY_PAYLOAD_LEN: usize = 32;
/// Size of a closing record (segment-end or stream-end), read from the tail
/// of a closed segment to learn its summary without scanning it.
pub const CLOSING_RECORD_LEN: usize = RECORD_OVERHEAD + SUMMARY_PAYLOAD_LEN;

/// `GST_BUFFER_FLAG_DELTA_UNIT`: the buffer cannot be decoded on its own.
/// Flags are stored as GStreamer's `GstBufferFlags` bits, which are ABI.
pub const FLAG_DELTA_UNIT: u32 = 0x2000;

/// What the data file of a segment holds, which decides its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    /// Any stream: `.bin`.
    Raw,
    /// MPEG transport stream: `.ts`, playable by any TS tool.
    MpegTs,
}

impl DataKind {
    pub fn extension(self) -> &'static str {
        match self {
            DataKind::Raw => "bin",
            DataKind::MpegTs => "ts",
        }
    }

    fn code(self) -> u8 {
        match self {
            DataKind::Raw => 0,
            DataKind::MpegTs => 1,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(DataKind::Raw),
            1 => Some(DataKind::MpegTs),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub seq: u64,
    pub data_kind: DataKind,
    /// Random per writer session: tells appended recordings apart.
    pub session: u64,
    /// Store time of the segment's first buffer.
    pub first_st: u64,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&INDEX_MAGIC);
        b[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[6] = self.data_kind.code();
        b[8..16].copy_from_slice(&self.seq.to_le_bytes());
        b[16..24].copy_from_slice(&self.session.to_le_bytes());
        b[24..32].copy_from_slice(&self.first_st.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..36]);
        b[36..40].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<Self, &'static str> {
        if b.len() < HEADER_LEN {
            return Err("index header is truncated");
        }
        if b[0..4] != INDEX_MAGIC {
            return Err("not a fanout index file (bad magic)");
        }
        if crc32c::crc32c(&b[0..36]) != u32_at(b, 36) {
            return Err("index header checksum mismatch");
        }
        let version = u16::from_le_bytes([b[4], b[5]]);
        if version != FORMAT_VERSION {
            return Err("unsupported index format version");
        }
        let data_kind = DataKind::from_code(b[6]).ok_or("unknown data kind in index header")?;
        Ok(SegmentHeader {
            seq: u64_at(b, 8),
            data_kind,
            session: u64_at(b, 16),
            first_st: u64_at(b, 24),
        })
    }
}

/// One recorded buffer. Times are nanoseconds; `None` where the buffer had none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BufferRecord {
    /// Store time: monotonic across the whole store, the time axis of seeks,
    /// pacing and retention.
    pub st: u64,
    /// Running times of the buffer as it was recorded.
    pub pts: Option<u64>,
    pub dts: Option<u64>,
    pub duration: Option<u64>,
    /// Running time (pipeline clock) at which the buffer reached the recorder.
    pub arrival: Option<u64>,
    /// Byte offset of the payload in the segment's data file.
    pub offset: u64,
    pub size: u32,
    /// `GstBufferFlags` bits.
    pub flags: u32,
    /// CRC-32C of the payload.
    pub data_crc: u32,
}

impl BufferRecord {
    pub fn is_keyframe(&self) -> bool {
        self.flags & FLAG_DELTA_UNIT == 0
    }

    /// End of the payload in the data file. Decoding checked that it fits a `u64`.
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(u64::from(self.size))
    }

    /// Store time at which the buffer ends (its duration may come from a crafted file).
    pub fn end_st(&self) -> u64 {
        self.st.saturating_add(self.duration.unwrap_or(0))
    }

    /// The buffer's time on its original running-time axis, the one `st` was
    /// derived from (`st - pace_time` is constant within a continuous run).
    pub fn pace_time(&self) -> Option<u64> {
        self.dts.or(self.pts).or(self.arrival)
    }

    /// Appends the compact payload: times as deltas to the previous buffer
    /// of the segment, the byte offset implied by the previous buffer's end.
    fn encode_payload(&self, out: &mut Vec<u8>, ctx: &mut Context) {
        debug_assert_eq!(self.offset, ctx.next_offset, "buffers are contiguous");
        debug_assert!(self.st >= ctx.st, "store time never goes back");
        let times = [self.pts, self.dts, self.duration, self.arrival];
        let present = times
            .iter()
            .enumerate()
            .fold(0u8, |bits, (i, t)| bits | (u8::from(t.is_some()) << i));
        out.push(present);
        varint::put(out, self.st - ctx.st);
        for (t, prev) in times.iter().zip(ctx.times.iter_mut()) {
            if let Some(t) = *t {
                varint::put(out, zigzag(t.wrapping_sub(*prev) as i64));
                *prev = t;
            }
        }
        varint::put(out, u64::from(self.size));
        varint::put(out, u64::from(self.flags));
        out.extend_from_slice(&self.data_crc.to_le_bytes());
        ctx.st = self.st;
        ctx.next_offset = self.end();
    }

    fn decode_payload(p: &[u8], ctx: &mut Context) -> Result<Self, DecodeError> {
        const BAD: DecodeError = DecodeError::Corrupt("malformed buffer record");
        let (&present, mut rest) = p.split_first().ok_or(BAD)?;
        if present & !0x0f != 0 {
            return Err(BAD);
        }
        let mut next = *ctx;
        next.st = next.st.checked_add(get_varint(&mut rest)?).ok_or(BAD)?;
        let mut times = [None; 4];
        for (i, (t, prev)) in times.iter_mut().zip(next.times.iter_mut()).enumerate() {
            if present & (1 << i) != 0 {
                *prev = prev.wrapping_add(unzigzag(get_varint(&mut rest)?) as u64);
                // 2^64 - 1 is GStreamer's "no time": no recorder writes it.
                if *prev == u64::MAX {
                    return Err(BAD);
                }
                *t = Some(*prev);
            }
        }
        let size = u32::try_from(get_varint(&mut rest)?)
            .ok()
            .filter(|&s| s <= MAX_BUFFER_SIZE)
            .ok_or(DecodeError::Corrupt("buffer larger than a store holds"))?;
        let flags = u32::try_from(get_varint(&mut rest)?).map_err(|_| BAD)?;
        let crc: [u8; 4] = rest.try_into().map_err(|_| BAD)?;
        let rec = BufferRecord {
            st: next.st,
            pts: times[0],
            dts: times[1],
            duration: times[2],
            arrival: times[3],
            offset: next.next_offset,
            size,
            flags,
            data_crc: u32::from_le_bytes(crc),
        };
        next.next_offset = next.next_offset.checked_add(u64::from(size)).ok_or(BAD)?;
        *ctx = next;
        Ok(rec)
    }
}

/// What buffer records are coded against: the previous buffer of the same
/// segment. A reader decodes a segment's records in order from its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Context {
    st: u64,
    /// Last pts, dts, duration and arrival seen, 0 before any.
    times: [u64; 4],
    next_offset: u64,
}

impl Context {
    /// The context at the start of a segment.
    pub fn new(header: &SegmentHeader) -> Self {
        Context {
            st: header.first_st,
            ..Default::default()
        }
    }

    /// Data bytes covered by the buffers decoded so far.
    pub fn data_len(&self) -> u64 {
        self.next_offset
    }
}

fn get_varint(b: &mut &[u8]) -> Result<u64, DecodeError> {
    varint::get(b).map_err(|_| DecodeError::Corrupt("malformed number in buffer record"))
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Carried by the record that closes a segment, so a closed segment's extent
/// is known from its last 41 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SegmentSummary {
    pub first_st: u64,
    pub end_st: u64,
    pub data_bytes: u64,
    pub buffers: u64,
}

impl SegmentSummary {
    fn encode_payload(&self, out: &mut Vec<u8>) {
        for v in [self.first_st, self.end_st, self.data_bytes, self.buffers] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }

    fn decode_payload(p: &[u8]) -> Self {
        SegmentSummary {
            first_st: u64_at(p, 0),
            end_st: u64_at(p, 8),
            data_bytes: u64_at(p, 16),
            buffers: u64_at(p, 24),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Buffer(BufferRecord),
    /// Caps of the buffers that follow, as `gst_caps_to_string` writes them.
    Caps(String),
    /// Tags, as `gst_tag_list_to_string` writes them.
    Tags(String),
    /// The segment is complete; the recording continues in the next one.
    SegmentEnd(SegmentSummary),
    /// The recording was finished (EOS or a clean stop).
    StreamEnd(SegmentSummary),
}

const T_BUFFER: u8 = 1;
const T_CAPS: u8 = 2;
const T_TAGS: u8 = 3;
const T_SEGMENT_END: u8 = 4;
const T_STREAM_END: u8 = 5;

impl Record {
    /// Appends the framed record (length, type, payload, checksum) to `out`.
    /// Buffer records are coded against `ctx`, which they advance.
    pub fn encode(&self, out: &mut Vec<u8>, ctx: &mut Context) {
        let start = out.len();
        out.extend_from_slice(&[0u8; 5]);
        let ty = match self {
            Record::Buffer(b) => {
                b.encode_payload(out, ctx);
                T_BUFFER
            }
            Record::Caps(s) => {
                out.extend_from_slice(s.as_bytes());
                T_CAPS
            }
            Record::Tags(s) => {
                out.extend_from_slice(s.as_bytes());
                T_TAGS
            }
            Record::SegmentEnd(s) => {
                s.encode_payload(out);
                T_SEGMENT_END
            }
            Record::StreamEnd(s) => {
                s.encode_payload(out);
                T_STREAM_END
            }
        };
        let len = (out.len() - start - 5) as u32;
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        out[start + 4] = ty;
        let crc = crc32c::crc32c(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
    }
}

/// Why a record could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes end inside the record: a tail still being written, or torn.
    Incomplete,
    /// The record is complete but wrong: checksum, length or type.
    Corrupt(&'static str),
}

/// Decodes the record at the start of `b`, returning it and its framed length.
/// A buffer record is decoded against `ctx`, which it advances; nothing
/// changes on error.
pub fn decode_record(b: &[u8], ctx: &mut Context) -> Result<(Record, usize), DecodeError> {
    if b.len() < 5 {
        return Err(DecodeError::Incomplete);
    }
    let len = u32_at(b, 0) as usize;
    if len > MAX_PAYLOAD {
        return Err(DecodeError::Corrupt("record length out of range"));
    }
    let total = len + RECORD_OVERHEAD;
    if b.len() < total {
        return Err(DecodeError::Incomplete);
    }
    if crc32c::crc32c(&b[..5 + len]) != u32_at(b, 5 + len) {
        return Err(DecodeError::Corrupt("record checksum mismatch"));
    }
    let p = &b[5..5 + len];
    let fixed = |want: usize| {
        if len == want {
            Ok(())
        } else {
            Err(DecodeError::Corrupt(
                "record has the wrong length for its type",
            ))
        }
    };
    let text = || {
        String::from_utf8(p.to_vec()).map_err(|_| DecodeError::Corrupt("record text is not UTF-8"))
    };
    let record = match b[4] {
        T_BUFFER => Record::Buffer(BufferRecord::decode_payload(p, ctx)?),
        T_CAPS => Record::Caps(text()?),
        T_TAGS => Record::Tags(text()?),
        T_SEGMENT_END => {
            fixed(SUMMARY_PAYLOAD_LEN)?;
            Record::SegmentEnd(SegmentSummary::decode_payload(p))
        }
        T_STREAM_END => {
            fixed(SUMMARY_PAYLOAD_LEN)?;
            Record::StreamEnd(SegmentSummary::decode_payload(p))
        }
        _ => return Err(DecodeError::Corrupt("unknown record type")),
    };
    Ok((record, total))
}

/// The framed length of the record at the start of `b` if it is complete and its checksum
/// holds, whatever its payload: how a reader finds where records resume after damage.
pub fn valid_frame(b: &[u8]) -> Option<usize> {
    let len = usize::try_from(u32_at(b.get(..4)?, 0)).ok()?;
    if len > MAX_PAYLOAD {
        return None;
    }
    let total = len + RECORD_OVERHEAD;
    let body = b.get(..5 + len)?;
    (crc32c::crc32c(body) == u32_at(b.get(..total)?, 5 + len)).then_some(total)
}

/// Steps over a damaged record at the start of `b` when the record right after it is
/// intact, so one bad record does not hide the rest of a segment. A damaged buffer record
/// still has to decode (its size places every later buffer in the data file); `ctx` then
/// advances as if it were whole, and the data checksums of the buffers after it tell whether
/// that guess was right. Returns the damaged record's framed length and, for a buffer, what
/// it decoded to; `None` where the damage cannot be stepped over.
pub fn step_over_damage(b: &[u8], ctx: &mut Context) -> Option<(usize, Option<BufferRecord>)> {
    let len = usize::try_from(u32_at(b.get(..4)?, 0)).ok()?;
    if len > MAX_PAYLOAD {
        return None;
    }
    let total = len + RECORD_OVERHEAD;
    // The end of the index, or an intact record, must follow.
    let rest = b.get(total..)?;
    if !rest.is_empty() && valid_frame(rest).is_none() {
        return None;
    }
    match b[4] {
        T_BUFFER => {
            let mut next = *ctx;
            let rec = BufferRecord::decode_payload(&b[5..5 + len], &mut next).ok()?;
            *ctx = next;
            Some((total, Some(rec)))
        }
        T_CAPS | T_TAGS => Some((total, None)),
        _ => None,
    }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(offset: u64) -> BufferRecord {
        BufferRecord {
            st: 5,
            pts: Some(1),
            dts: None,
            duration: Some(40_000_000),
            arrival: Some(7),
            offset,
            size: 188,
            flags: FLAG_DELTA_UNIT,
            data_crc: 0xdead_beef,
        }
    }

    fn encoded(r: &Record, ctx: &mut Context) -> Vec<u8> {
        let mut b = Vec::new();
        r.encode(&mut b, ctx);
        b
    }

    #[test]
    fn records_round_trip() {
        let summary = SegmentSummary {
            first_st: 1,
            end_st: 2,
            data_bytes: 3,
            buffers: 4,
        };
        let mut enc = Context::default();
        let mut dec = Context::default();
        for r in [
            Record::Buffer(sample(0)),
            Record::Caps("video/mpegts, systemstream=(boolean)true".into()),
            Record::Buffer(sample(188)),
            Record::Tags(String::new()),
            Record::SegmentEnd(summary),
            Record::StreamEnd(summary),
        ] {
            let b = encoded(&r, &mut enc);
            assert_eq!(decode_record(&b, &mut dec), Ok((r, b.len())));
        }
        assert_eq!(enc, dec);
    }

    #[test]
    fn buffer_times_are_deltas_and_offsets_implied() {
        let mut ctx = Context::default();
        let first = BufferRecord {
            st: 0,
            pts: Some(3_600_000_000_000),
            arrival: Some(3_600_010_000_000),
            size: 1316,
            ..Default::default()
        };
        let next = BufferRecord {
            st: 40_000_000,
            pts: Some(3_600_040_000_000),
            arrival: Some(3_600_050_000_000),
            offset: 1316,
            ..first
        };
        encoded(&Record::Buffer(first), &mut ctx);
        // Three 40 ms steps cost 4 bytes each: 29 bytes in all. TS buffers
        // sharing a PTS, 0.5 ms apart, take about 22.
        assert_eq!(encoded(&Record::Buffer(next), &mut ctx).len(), 29);
        let mut enc = Context::default();
        let b = [first, next].map(|r| encoded(&Record::Buffer(r), &mut enc));
        let mut dec = Context::default();
        assert_eq!(
            decode_record(&b[0], &mut dec).unwrap().0,
            Record::Buffer(first)
        );
        assert_eq!(
            decode_record(&b[1], &mut dec).unwrap().0,
            Record::Buffer(next)
        );
        // Decoded without the one before, it lands elsewhere: context matters.
        let Record::Buffer(alone) = decode_record(&b[1], &mut Context::default()).unwrap().0 else {
            panic!()
        };
        assert_eq!(alone.offset, 0);
    }

    #[test]
    fn extreme_values_round_trip() {
        let r = BufferRecord {
            st: u64::MAX,
            pts: Some(0),
            dts: Some(u64::MAX - 1),
            duration: Some(u64::MAX - 1),
            arrival: Some(1),
            offset: 0,
            size: MAX_BUFFER_SIZE,
            flags: u32::MAX,
            data_crc: 0,
        };
        let b = encoded(&Record::Buffer(r), &mut Context::default());
        assert_eq!(
            decode_record(&b, &mut Context::default()),
            Ok((Record::Buffer(r), b.len()))
        );
        // A size no recorder writes is corruption: nobody allocates it.
        let huge = BufferRecord {
            size: MAX_BUFFER_SIZE + 1,
            ..r
        };
        let b = encoded(&Record::Buffer(huge), &mut Context::default());
        assert!(matches!(
            decode_record(&b, &mut Context::default()),
            Err(DecodeError::Corrupt(_))
        ));
        // 2^64 - 1 is GStreamer's "none", never a recorded time: taken as corruption.
        let none = BufferRecord {
            duration: Some(u64::MAX),
            ..r
        };
        let b = encoded(&Record::Buffer(none), &mut Context::default());
        assert!(matches!(
            decode_record(&b, &mut Context::default()),
            Err(DecodeError::Corrupt(_))
        ));
    }

    #[test]
    fn closing_record_has_documented_size() {
        let b = encoded(
            &Record::StreamEnd(SegmentSummary::default()),
            &mut Context::default(),
        );
        assert_eq!(b.len(), CLOSING_RECORD_LEN);
    }

    #[test]
    fn every_truncation_is_incomplete_and_every_bit_flip_is_detected() {
        let b = encoded(&Record::Buffer(sample(0)), &mut Context::default());
        for cut in 0..b.len() {
            let mut ctx = Context::default();
            assert_eq!(
                decode_record(&b[..cut], &mut ctx),
                Err(DecodeError::Incomplete),
                "{cut}"
            );
            assert_eq!(ctx, Context::default(), "no change on error");
        }
        for byte in 0..b.len() {
            for bit in 0..8 {
                let mut c = b.clone();
                c[byte] ^= 1 << bit;
                // A flipped length bit may make the record look longer (Incomplete),
                // anything else must fail the checksum; never a wrong record.
                assert!(
                    decode_record(&c, &mut Context::default()).is_err(),
                    "byte {byte} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn overlong_numbers_are_refused() {
        let mut b: &[u8] = &[0x80, 0x00];
        assert!(get_varint(&mut b).is_err());
        let mut b: &[u8] = &[0xff; 10];
        assert!(get_varint(&mut b).is_err());
        let mut b: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(get_varint(&mut b), Ok(u64::MAX));
        for v in [0i64, 1, -1, i64::MAX, i64::MIN] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }

    #[test]
    fn header_round_trip_and_rejects_damage() {
        let h = SegmentHeader {
            seq: 42,
            data_kind: DataKind::MpegTs,
            session: 99,
            first_st: 1_000,
        };
        let b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        let mut c = b;
        c[10] ^= 1;
        assert!(SegmentHeader::decode(&c).is_err());
        assert!(SegmentHeader::decode(&b[..20]).is_err());
    }

    #[test]
    fn absurd_length_is_corrupt_not_an_allocation() {
        let b = [0xff, 0xff, 0xff, 0x7f, 1, 0, 0];
        assert!(matches!(
            decode_record(&b, &mut Context::default()),
            Err(DecodeError::Corrupt(_))
        ));
    }
}
