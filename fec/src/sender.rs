//! The sending side: cuts buffers into source blocks and turns blocks into symbol packets,
//! keeping recent blocks to answer repair requests and to run a carousel.

use std::collections::VecDeque;
use std::time::Duration;

use fanout_wire::time::{nanos, Mono};

use crate::block::{piece_header_len, put_piece_header, BufferMeta};
use crate::codec::BlockEncoder;
use crate::description::{Description, Mode, MAX_CAPS_LEN};
use crate::packet::{self, SymbolHeader, ALIGNMENT, FLAG_REPAIR, MAX_ESI, MAX_SYMBOL_SIZE};
use crate::packing::PacketOut;
use crate::sizing::{repair_count, MAX_SOURCE_SYMBOLS};
use crate::Codec;

#[derive(Debug, Clone)]
pub struct SenderConfig {
    pub flow: u32,
    pub codec: Codec,
    pub symbol_size: u16,
    pub max_k: u16,
    pub repair_percent: u32,
    pub mode: Mode,
    /// Blocks kept after sending, for repair requests and the carousel; 0 keeps all.
    pub window: usize,
    /// Stream mode: a block is also kept until this long (on the clock given by
    /// [`Sender::set_now`]) after it was sent, so a burst (a catch-up after a hold) stays
    /// repairable for the round trip of a loss report; zero: by count only.
    pub window_time: Duration,
    /// Index of the first repair symbol of each block, so that several senders of one flow
    /// can send disjoint repair symbols.
    pub first_repair: u32,
    /// Send the K source symbols of each block (off for a sender that adds repair only).
    pub send_source: bool,
    /// Repeat the stream description every this many packets, and in stream mode (once the
    /// start's quicker repeats are over) no sooner than `description_time` of the stream
    /// (by the buffers' PTS or DTS) after the last one: a fast stream pays for fewer, and one
    /// read from a file as fast as it goes gets as many per second of it as a live one. Zero,
    /// or buffers without timestamps: by count only.
    pub description_interval: u32,
    pub description_time: Duration,
    /// A block closes once its buffers span this long (by their PTS or DTS); zero: only
    /// when full.
    pub max_block_time: Duration,
}

/// Defaults of the sender, and so of `fec-payloader`'s properties.
pub const DEFAULT_SYMBOL_SIZE: u16 = 1400;
pub const DEFAULT_MAX_K: u16 = 100;
pub const DEFAULT_REPAIR_PERCENT: u32 = 25;
pub const DEFAULT_DESCRIPTION_INTERVAL: u32 = 64;
/// Four descriptions a second at most: 0.2 % of a 5.8 Mbit/s stream instead of 1.6 %, and a
/// receiver joining late waits a quarter of a second more at most.
pub const DEFAULT_DESCRIPTION_TIME: Duration = Duration::from_millis(250);
pub const DEFAULT_MAX_BLOCK_TIME: Duration = Duration::from_millis(100);
/// Blocks kept for repair requests in stream mode: 1.6 s at the default max block time, many
/// round trips.
pub const DEFAULT_STREAM_WINDOW: usize = 16;
/// Kept by time besides: a second covers loss reports from receivers with the default
/// 200 ms latency, with room.
pub const DEFAULT_WINDOW_TIME: Duration = Duration::from_secs(1);
/// What the time rule may keep at most (the count rule alone decides past it).
pub const MAX_WINDOW_TIME_BYTES: usize = 64 << 20;

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            flow: 0,
            codec: Codec::RaptorQ,
            symbol_size: DEFAULT_SYMBOL_SIZE,
            max_k: DEFAULT_MAX_K,
            repair_percent: DEFAULT_REPAIR_PERCENT,
            mode: Mode::Stream,
            window: DEFAULT_STREAM_WINDOW,
            window_time: Duration::ZERO,
            first_repair: 0,
            send_source: true,
            description_interval: DEFAULT_DESCRIPTION_INTERVAL,
            // By count only unless asked: `fec-payloader` asks (its clock runs with the stream).
            description_time: Duration::ZERO,
            max_block_time: DEFAULT_MAX_BLOCK_TIME,
        }
    }
}

/// First repair index at most: half the 24-bit ESI space, so that repair symbols have room.
pub const MAX_FIRST_REPAIR: u32 = 1 << 23;

/// Why a sender cannot be made with a configuration, or cannot describe a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderError {
    /// `symbol_size` is 0, not a multiple of [`ALIGNMENT`], or above [`MAX_SYMBOL_SIZE`].
    SymbolSize(u16),
    /// `max_k` is 0 or above [`MAX_SOURCE_SYMBOLS`].
    MaxK(u16),
    /// `first_repair` is not below [`MAX_FIRST_REPAIR`].
    FirstRepair(u32),
    /// Codec none with a carousel or repair-only sending: both need repair symbols.
    NoRepairSymbols,
    /// Caps (their length in bytes given) longer than a description carries.
    CapsTooLong(usize),
}

/// The texts say what the element's properties are called.
impl std::fmt::Display for SenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SenderError::SymbolSize(_) => write!(
                f,
                "symbol-size must be a multiple of {ALIGNMENT} between {ALIGNMENT} and {MAX_SYMBOL_SIZE}"
            ),
            SenderError::MaxK(_) => write!(
                f,
                "max-block-symbols must be between 1 and {MAX_SOURCE_SYMBOLS}"
            ),
            SenderError::FirstRepair(_) => {
                write!(f, "first-repair-esi must be below {MAX_FIRST_REPAIR}")
            }
            SenderError::NoRepairSymbols => f.write_str(
                "codec none has no repair symbols: no carousel, no repair-only sending",
            ),
            SenderError::CapsTooLong(_) => write!(f, "caps longer than {MAX_CAPS_LEN} bytes"),
        }
    }
}

impl std::error::Error for SenderError {}

impl SenderConfig {
    pub fn check(&self) -> Result<(), SenderError> {
        let t = usize::from(self.symbol_size);
        if t == 0 || t % ALIGNMENT != 0 || t > MAX_SYMBOL_SIZE {
            return Err(SenderError::SymbolSize(self.symbol_size));
        }
        if self.max_k == 0 || self.max_k > MAX_SOURCE_SYMBOLS {
            return Err(SenderError::MaxK(self.max_k));
        }
        if self.first_repair >= MAX_FIRST_REPAIR {
            return Err(SenderError::FirstRepair(self.first_repair));
        }
        if self.codec == Codec::None && (self.mode == Mode::Carousel || !self.send_source) {
            return Err(SenderError::NoRepairSymbols);
        }
        Ok(())
    }
}

struct SentBlock {
    number: u64,
    k: u16,
    repair: u32,
    pool: u16,
    /// The block's bytes, padded to K symbols.
    data: Vec<u8>,
    /// Made when repair symbols are wanted. In stream mode it is dropped once the block's own
    /// repair is out, and made again only for a repair request: the window holds bytes, not
    /// codec state several times their size, and encoding reuses memory still in the cache.
    encoder: Option<BlockEncoder>,
    /// Index of the next fresh repair symbol.
    next_repair: u32,
    /// When it was sent ([`Sender::set_now`]'s clock).
    sent_at: Mono,
}

/// Why a repair request was not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepairRefused {
    NoCode,
    UnknownBlock,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SenderStats {
    pub blocks: u64,
    pub source_packets: u64,
    pub repair_packets: u64,
    pub description_packets: u64,
    pub padding_bytes: u64,
}

pub struct Sender {
    cfg: SenderConfig,
    next_block: u64,
    building: Vec<u8>,
    /// Timestamp of the first buffer in the block being built.
    block_start: Option<u64>,
    window: VecDeque<SentBlock>,
    /// Bytes of the blocks in the window.
    window_bytes: usize,
    /// The time now, for `window_time`.
    now: Mono,
    carousel_next: u64,
    description: Option<Description>,
    description_version: u32,
    since_description: u32,
    /// Symbol packets between two descriptions now: 8 at the start, doubling up to
    /// `description_interval`, so a receiver (or one that saw the sender restart) has the
    /// description confirmed soon.
    description_gap: u32,
    /// The latest buffer timestamp, and the one when the last description went out.
    stream_time: Option<u64>,
    described_at: Option<u64>,
    /// This run's stream identity (random at each start).
    stream: u64,
    pub stats: SenderStats,
}

/// Symbol packets between the first two descriptions of a run (then doubling).
pub const FIRST_DESCRIPTION_GAP: u32 = 8;

/// A random stream identity for a new run of a sender.
pub fn random_stream_id() -> u64 {
    // Without the system's random numbers (never seen), time and process still differ
    // from one start to the next.
    getrandom::u64().unwrap_or_else(|_| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        t ^ u64::from(std::process::id()).rotate_left(32)
    })
}

impl Sender {
    pub fn new(cfg: SenderConfig) -> Result<Sender, SenderError> {
        cfg.check()?;
        let cfg_interval = cfg.description_interval;
        Ok(Sender {
            building: Vec::with_capacity(cfg.block_capacity()),
            cfg,
            next_block: 0,
            block_start: None,
            window: VecDeque::new(),
            window_bytes: 0,
            now: Mono::ZERO,
            carousel_next: 0,
            description: None,
            description_version: 0,
            since_description: 0,
            description_gap: FIRST_DESCRIPTION_GAP.min(cfg_interval),
            stream_time: None,
            described_at: None,
            stream: random_stream_id(),
            stats: SenderStats::default(),
        })
    }

    /// The time now, for keeping blocks by `window_time`.
    pub fn set_now(&mut self, now: Mono) {
        self.now = self.now.max(now);
    }

    pub fn config(&self) -> &SenderConfig {
        &self.cfg
    }

    /// This run's stream identity, carried in the description.
    pub fn stream_id(&self) -> u64 {
        self.stream
    }

    /// Sets the stream identity (tests; a new sender picks a random one).
    pub fn set_stream_id(&mut self, stream: u64) {
        self.stream = stream;
        if let Some(d) = &mut self.description {
            d.stream = stream;
            self.description_version = self.description_version.wrapping_add(1);
        }
    }

    /// Sets what the stream description says; it is sent with the next packet.
    pub fn set_stream(&mut self, caps: String, time_segment: bool) -> Result<(), SenderError> {
        if caps.len() > MAX_CAPS_LEN {
            return Err(SenderError::CapsTooLong(caps.len()));
        }
        self.description = Some(Description {
            codec: self.cfg.codec,
            mode: self.cfg.mode,
            time_segment,
            symbol_size: self.cfg.symbol_size,
            max_k: self.cfg.max_k,
            repair_percent: self.cfg.repair_percent.min(u32::from(u16::MAX)) as u16,
            first_block: 0,
            stream: self.stream,
            caps,
        });
        self.description_version = self.description_version.wrapping_add(1);
        self.since_description = u32::MAX;
        Ok(())
    }

    /// Bytes waiting in the block being built.
    pub fn pending(&self) -> usize {
        self.building.len()
    }

    /// The next block number to be closed.
    pub fn next_block(&self) -> u64 {
        self.next_block
    }

    /// Adds one buffer; blocks that are full or span `max_block_time` are closed and their
    /// packets appended to `out`.
    pub fn push_buffer(&mut self, meta: &BufferMeta, data: &[u8], out: &mut impl PacketOut) {
        let ts = meta.pts.or(meta.dts);
        if ts.is_some() {
            self.stream_time = ts;
        }
        if let (Some(start), Some(now)) = (self.block_start, ts) {
            let span = nanos(self.cfg.max_block_time);
            if span > 0 && now >= start.saturating_add(span) {
                self.close_block(out);
            }
        }
        if self.building.is_empty() {
            self.block_start = ts;
        }
        let capacity = self.cfg.block_capacity();
        let mut rest = data;
        let mut start = true;
        loop {
            let room = capacity - self.building.len();
            let header = piece_header_len(start, meta, rest.len());
            if room < header + usize::from(!rest.is_empty()) {
                self.close_block(out);
                continue;
            }
            let n = rest.len().min(room - header);
            let end = n == rest.len();
            put_piece_header(&mut self.building, start, end, meta, n);
            self.building.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            start = false;
            if self.building.len() + 2 > capacity {
                self.close_block(out);
                // What is left of this buffer opens the next block.
                self.block_start = ts;
            }
            if end {
                break;
            }
        }
    }

    /// Drops the block being built (after a flush).
    pub fn discard_pending(&mut self) {
        self.building.clear();
        self.block_start = None;
    }

    /// Closes the block being built (if any) and appends its packets to `out`.
    pub fn flush(&mut self, out: &mut impl PacketOut) {
        self.close_block(out);
    }

    fn close_block(&mut self, out: &mut impl PacketOut) {
        if self.building.is_empty() {
            return;
        }
        let t = usize::from(self.cfg.symbol_size);
        // As many symbols as the content fills, no more: only the last one is padded. (A new
        // K costs RaptorQ an encoding plan, about one encode; it keeps the last 64.)
        let k = u16::try_from(self.building.len().div_ceil(t))
            .unwrap_or(self.cfg.max_k)
            .min(self.cfg.max_k);
        let mut data = std::mem::take(&mut self.building);
        self.stats.padding_bytes += (usize::from(k) * t - data.len()) as u64;
        data.resize(usize::from(k) * t, 0);

        let repair = repair_count(self.cfg.codec, k, self.cfg.max_k, self.cfg.repair_percent);
        let pool = match (self.cfg.codec, self.cfg.mode) {
            (Codec::ReedSolomon, Mode::Stream) => (2 * repair).max(1),
            (Codec::ReedSolomon, Mode::Carousel) => (2 * repair).max(u32::from(k)),
            _ => 0,
        }
        .min(u32::from(u16::MAX)) as u16;
        let number = self.next_block;
        let block = SentBlock {
            number,
            k,
            repair,
            pool,
            data,
            encoder: None,
            next_repair: self.cfg.first_repair,
            sent_at: self.now,
        };
        // Every codec is systematic: the source symbols are the block itself.
        if self.cfg.send_source {
            for (esi, symbol) in block.data.chunks_exact(t).enumerate() {
                let header = self.symbol_header(&block, esi as u32);
                self.stats.source_packets += 1;
                self.emit(out, |p| packet::append_symbol(p, &header, symbol));
            }
        }
        // Counted only now: a description sent with the source packets names this block as
        // the oldest one still going out.
        self.next_block += 1;
        self.stats.blocks += 1;
        self.window_bytes = self.window_bytes.saturating_add(block.data.len());
        self.window.push_back(block);
        let newest = self.window.len() - 1;
        self.send_repair(newest, repair, out);
        out.end_block();
        if self.cfg.mode == Mode::Stream {
            self.window[newest].encoder = None;
        }
        let keep = self.cfg.window;
        while keep > 0 && self.window.len() > keep && !self.recent(&self.window[0]) {
            let old = self.window.pop_front().expect("longer than keep");
            self.window_bytes = self.window_bytes.saturating_sub(old.data.len());
            // The oldest block's memory holds the next one: no block-sized allocation (and
            // its page faults) per block once the window is full.
            if self.building.capacity() == 0 {
                self.building = old.data;
                self.building.clear();
            }
        }
        if self.building.capacity() == 0 {
            self.building.reserve(self.cfg.block_capacity());
        }
        if self.cfg.mode == Mode::Carousel && self.window.len() > 1 {
            // A live carousel: each new block is followed by a fresh round of an older one.
            self.carousel_round(out);
        }
    }

    fn symbol_header(&self, block: &SentBlock, esi: u32) -> SymbolHeader {
        SymbolHeader {
            flow: self.cfg.flow,
            codec: self.cfg.codec,
            flags: if esi >= u32::from(block.k) {
                FLAG_REPAIR
            } else {
                0
            },
            pool: block.pool,
            block: block.number,
            esi,
            transfer_length: u64::from(block.k) * u64::from(self.cfg.symbol_size),
            symbol_size: self.cfg.symbol_size,
        }
    }

    /// Appends the packet `write` makes, after a description when one is due.
    fn emit(&mut self, out: &mut impl PacketOut, write: impl FnOnce(&mut Vec<u8>)) {
        let ramping = self.description_gap < self.cfg.description_interval;
        let forced = self.since_description == u32::MAX;
        let timely = match (self.described_at, self.stream_time) {
            // Time going back (a new segment) counts as time enough.
            (Some(t), Some(now)) if self.cfg.mode == Mode::Stream => {
                now < t || now >= t.saturating_add(nanos(self.cfg.description_time))
            }
            _ => true,
        };
        if self.since_description >= self.description_gap && (ramping || forced || timely) {
            if let Some(desc) = &mut self.description {
                let first_block = self.window.front().map_or(self.next_block, |b| b.number);
                if desc.first_block != first_block {
                    // A receiver reassembles fragments by version: new bytes, new version.
                    desc.first_block = first_block;
                    self.description_version = self.description_version.wrapping_add(1);
                }
                let packets = desc.packets(self.cfg.flow, self.description_version);
                self.stats.description_packets += packets.len() as u64;
                for p in &packets {
                    out.put(p);
                }
                if self.since_description != u32::MAX {
                    self.description_gap = self
                        .description_gap
                        .saturating_mul(2)
                        .min(self.cfg.description_interval);
                }
                self.since_description = 0;
                self.described_at = self.stream_time;
            }
        }
        self.since_description = self.since_description.saturating_add(1);
        out.put_with(write);
    }

    /// Sent less than `window_time` ago, within the bytes the time rule may keep.
    fn recent(&self, block: &SentBlock) -> bool {
        self.cfg.mode == Mode::Stream
            && !self.cfg.window_time.is_zero()
            && self.window_bytes <= MAX_WINDOW_TIME_BYTES
            && self.now < block.sent_at + self.cfg.window_time
    }

    /// `count` fresh repair symbols of window entry `i`, with their ESIs.
    fn repair_symbols(&mut self, i: usize, count: u32) -> Vec<(u32, Vec<u8>)> {
        let t = usize::from(self.cfg.symbol_size);
        let (codec, symbol_size) = (self.cfg.codec, self.cfg.symbol_size);
        let block = &mut self.window[i];
        if codec == Codec::None || count == 0 {
            return Vec::new();
        }
        // Repair ESIs are K + n (RFC 6330) and must stay below 2^24; room is left below the
        // top so that K + n never reaches it.
        let last = MAX_ESI - u32::from(block.k) - 512;
        if block.next_repair.saturating_add(count) > last {
            block.next_repair = self.cfg.first_repair.min(last - count.min(last));
        }
        let SentBlock {
            data,
            encoder,
            pool,
            k,
            ..
        } = block;
        let encoder =
            encoder.get_or_insert_with(|| BlockEncoder::new(codec, data, symbol_size, *pool));
        let symbols = encoder.repair_symbols(u32::from(*k), block.next_repair, count, t);
        block.next_repair += count;
        self.stats.repair_packets += symbols.len() as u64;
        symbols
    }

    /// `count` fresh repair packets of window entry `i`.
    fn repair_packets(&mut self, i: usize, count: u32) -> Vec<Vec<u8>> {
        let symbols = self.repair_symbols(i, count);
        let mut packets = Vec::with_capacity(symbols.len());
        for (esi, symbol) in &symbols {
            let header = self.symbol_header(&self.window[i], *esi);
            packets.put_with(|p| packet::append_symbol(p, &header, symbol));
        }
        packets
    }

    fn send_repair(&mut self, i: usize, count: u32, out: &mut impl PacketOut) {
        for (esi, symbol) in self.repair_symbols(i, count) {
            let header = self.symbol_header(&self.window[i], esi);
            self.emit(out, |p| packet::append_symbol(p, &header, &symbol));
        }
    }

    /// Sends a full fresh round (K + repair new symbols) of the next window block in turn;
    /// false if the window is empty or the codec has no repair.
    pub fn carousel_round(&mut self, out: &mut impl PacketOut) -> bool {
        if self.window.is_empty() || self.cfg.codec == Codec::None {
            return false;
        }
        let i = self
            .window
            .iter()
            .position(|b| b.number >= self.carousel_next)
            .unwrap_or(0);
        self.carousel_next = self.window[i].number + 1;
        let count = u32::from(self.window[i].k) + self.window[i].repair;
        self.send_repair(i, count, out);
        out.end_block();
        true
    }

    /// Blocks kept for repair requests and the carousel.
    pub fn window_blocks(&self) -> usize {
        self.window.len()
    }

    /// Fresh repair symbols for `block`, for a receiver that lost some: the packets are
    /// returned rather than appended, so the caller can tag them for that receiver.
    pub fn repair(&mut self, block: u64, count: u32) -> Result<Vec<Vec<u8>>, RepairRefused> {
        if self.cfg.codec == Codec::None {
            return Err(RepairRefused::NoCode);
        }
        let i = self
            .window
            .iter()
            .position(|b| b.number == block)
            .ok_or(RepairRefused::UnknownBlock)?;
        Ok(self.repair_packets(i, count))
    }
}

impl SenderConfig {
    /// Bytes of buffer data and piece headers one block holds.
    pub fn block_capacity(&self) -> usize {
        usize::from(self.max_k) * usize::from(self.symbol_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(cfg: SenderConfig) -> SenderError {
        let Err(e) = Sender::new(cfg.clone()) else {
            panic!("taken: {cfg:?}");
        };
        assert_eq!(cfg.check(), Err(e));
        e
    }

    #[test]
    fn a_bad_configuration_is_refused_with_the_property_to_change() {
        let d = SenderConfig::default;
        let symbol_size = "symbol-size must be a multiple of 8 between 8 and 1408";
        for t in [0, 12, 1416] {
            let e = refused(SenderConfig {
                symbol_size: t,
                ..d()
            });
            assert_eq!(e, SenderError::SymbolSize(t));
            assert_eq!(e.to_string(), symbol_size);
        }
        for k in [0, MAX_SOURCE_SYMBOLS + 1] {
            let e = refused(SenderConfig { max_k: k, ..d() });
            assert_eq!(e, SenderError::MaxK(k));
            assert_eq!(
                e.to_string(),
                "max-block-symbols must be between 1 and 8192"
            );
        }
        let e = refused(SenderConfig {
            first_repair: MAX_FIRST_REPAIR,
            ..d()
        });
        assert_eq!(e, SenderError::FirstRepair(1 << 23));
        assert_eq!(e.to_string(), "first-repair-esi must be below 8388608");
        for (mode, send_source) in [(Mode::Carousel, true), (Mode::Stream, false)] {
            let e = refused(SenderConfig {
                codec: Codec::None,
                mode,
                send_source,
                ..d()
            });
            assert_eq!(e, SenderError::NoRepairSymbols);
            assert_eq!(
                e.to_string(),
                "codec none has no repair symbols: no carousel, no repair-only sending"
            );
        }
        let edges = [
            SenderConfig {
                symbol_size: 8,
                max_k: 1,
                ..d()
            },
            SenderConfig {
                symbol_size: 1408,
                max_k: MAX_SOURCE_SYMBOLS,
                first_repair: MAX_FIRST_REPAIR - 1,
                ..d()
            },
            SenderConfig {
                codec: Codec::None,
                ..d()
            },
        ];
        for cfg in edges {
            assert_eq!(cfg.check(), Ok(()), "{cfg:?}");
        }
    }

    #[test]
    fn caps_too_long_for_a_description_are_refused() {
        let mut sender = Sender::new(SenderConfig::default()).unwrap();
        let e = sender.set_stream("x".repeat(MAX_CAPS_LEN + 1), true);
        assert_eq!(e, Err(SenderError::CapsTooLong(MAX_CAPS_LEN + 1)));
        let text = format!("caps longer than {MAX_CAPS_LEN} bytes");
        assert_eq!(e.unwrap_err().to_string(), text);
        assert_eq!(sender.set_stream("x".repeat(MAX_CAPS_LEN), true), Ok(()));
        let boxed: Box<dyn std::error::Error> = Box::new(SenderError::MaxK(0));
        assert_eq!(
            boxed.to_string(),
            "max-block-symbols must be between 1 and 8192"
        );
    }

    /// Descriptions sent (as their first fragment) by a sender fed `blocks` buffers of 10
    /// symbols each, 10 ms of stream apart.
    fn description_times(cfg: SenderConfig, blocks: u64) -> Vec<u64> {
        let mut sender = Sender::new(cfg).unwrap();
        sender
            .set_stream("application/x-test".into(), true)
            .unwrap();
        let mut times = Vec::new();
        for i in 0..blocks {
            let mut out = Vec::new();
            let meta = BufferMeta {
                pts: Some(i * 10_000_000),
                ..BufferMeta::default()
            };
            sender.push_buffer(&meta, &[i as u8; 14_000], &mut out);
            sender.flush(&mut out);
            let described = out
                .iter()
                .any(|p| matches!(packet::parse(p), Ok(packet::Packet::Description { .. })));
            if described {
                times.push(i * 10);
            }
        }
        times
    }

    #[test]
    fn descriptions_go_by_count_at_the_start_then_no_sooner_than_description_time() {
        let cfg = SenderConfig {
            repair_percent: 0,
            ..SenderConfig::default()
        };
        // 1000 packets a second: 64 packets are 64 ms.
        let by_count = description_times(cfg.clone(), 100);
        let timed = description_times(
            SenderConfig {
                description_time: Duration::from_millis(250),
                ..cfg
            },
            100,
        );
        assert!(by_count.len() >= 15, "{by_count:?}");
        // The start is the same (the first at once, then 8 and 16 packets later: a receiver
        // gets going soon)...
        assert_eq!(timed[..3], by_count[..3], "{timed:?}");
        // ...then 250 ms apart at least.
        let gaps: Vec<u64> = timed[2..].windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|&g| g >= 250), "{timed:?}");
        assert_eq!(timed, [0, 20, 50, 300, 550, 800]);
    }

    #[test]
    fn timestamps_that_go_back_do_not_hold_descriptions_back() {
        let mut sender = Sender::new(SenderConfig {
            repair_percent: 0,
            description_time: Duration::from_millis(250),
            ..SenderConfig::default()
        })
        .unwrap();
        sender
            .set_stream("application/x-test".into(), true)
            .unwrap();
        let is_description =
            |p: &Vec<u8>| matches!(packet::parse(p), Ok(packet::Packet::Description { .. }));
        // 2 s of stream, then a new segment from 0: 64 packets later, a description.
        let mut after_restart = 0;
        for (i, pts) in (0..200).chain(0..8).enumerate() {
            let mut out = Vec::new();
            let meta = BufferMeta {
                pts: Some(pts * 10_000_000),
                ..BufferMeta::default()
            };
            sender.push_buffer(&meta, &[1; 14_000], &mut out);
            sender.flush(&mut out);
            if i >= 200 && out.iter().any(is_description) {
                after_restart += 1;
            }
        }
        assert_eq!(after_restart, 1);
    }
}
