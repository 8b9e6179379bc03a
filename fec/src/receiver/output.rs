//! What a [`Receiver`](super::Receiver) hands back: outputs and counters.

use std::ops::Range;
use std::sync::Arc;

use super::Missing;
use crate::block::BufferMeta;
use crate::description::Description;

/// The bytes of one rebuilt buffer: a range of a decoded block, shared without a copy, or,
/// for a buffer spanning blocks, bytes of its own.
#[derive(Debug, Clone)]
pub enum Payload {
    Shared(Arc<Vec<u8>>, Range<usize>),
    Owned(Vec<u8>),
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        match self {
            Payload::Shared(block, range) => &block[range.clone()],
            Payload::Owned(v) => v,
        }
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.as_ref() == other.as_ref()
    }
}

impl Eq for Payload {}

#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    /// The stream description changed (first one included).
    Description(Description),
    /// One original buffer; `discont` after a loss.
    Buffer {
        meta: BufferMeta,
        data: Payload,
        discont: bool,
    },
    /// Blocks `first..first + count` could not be rebuilt in time; they held about `bytes`
    /// (their padded length; for blocks of which nothing arrived, a guess from the latest).
    Lost { first: u64, count: u64, bytes: u64 },
    /// After a loss, the time (ns) the lost buffers covered: from the end of the last buffer
    /// given out to the start of the next one.
    Gap { start: u64, duration: u64 },
    /// Packets that look forged have kept coming for seconds (said once): `suspect` of them.
    Attack { suspect: u64 },
    /// A block waited for is short of symbols: a repair request should ask for `needed`
    /// more of it ([`Receiver::missing`](super::Receiver::missing) gives the same).
    Missing(Missing),
    /// The sender restarted (a new stream identity, confirmed, while the stream followed had
    /// stopped): what was held of the old stream went out or was given up (`lost_blocks`,
    /// about `lost_bytes`, and `partial_buffers` cut short), and the new stream starts over
    /// at its own blocks (the next buffer has `discont`; new caps follow as a description
    /// if they changed). `resume`: where the old stream's output ended (its last buffer's
    /// PTS + duration), from which the new stream's times may be made to run on.
    Restart {
        stream: u64,
        lost_blocks: u64,
        lost_bytes: u64,
        partial_buffers: u64,
        resume: Option<u64>,
    },
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReceiverStats {
    pub packets: u64,
    /// Truncated, garbage, wrong version or checksum, or invalid header.
    pub malformed: u64,
    pub other_flow: u64,
    pub duplicates: u64,
    /// For blocks already given up: they came too late to help.
    pub late: u64,
    /// For blocks already rebuilt and given out: repair symbols that were not needed.
    pub surplus: u64,
    /// Contradicting the stream description (codec, symbol size, K above its maximum) or
    /// what the first packets of the same block said.
    pub inconsistent: u64,
    /// Too far ahead of the block being waited for.
    pub out_of_range: u64,
    /// Refused: the block has more symbols than any decoding needs, or memory is full.
    pub excess: u64,
    pub symbols: u64,
    pub blocks_decoded: u64,
    /// Decoded blocks that needed repair symbols.
    pub blocks_recovered: u64,
    pub blocks_lost: u64,
    /// Decodings whose content did not parse (a faulty or forged sender).
    pub bad_blocks: u64,
    pub buffers: u64,
    /// Bytes of the buffers given out.
    pub bytes_out: u64,
    /// About how many bytes the lost blocks held (see [`Output::Lost`]).
    pub lost_bytes: u64,
    /// Buffers cut by a lost block and dropped.
    pub partial_buffers_dropped: u64,
    pub descriptions: u64,
    pub resyncs: u64,
    /// Symbols of a block far ahead of the stream dropped when the stream did not reach it
    /// within the latency (a forged block number).
    pub unconfirmed: u64,
    /// Rebuilt variants of a block dropped for another one with more packets (forged).
    pub outvoted: u64,
    /// New descriptions dropped before they were confirmed (another came first).
    pub unconfirmed_descriptions: u64,
    /// Times `flow: None` left the flow it followed for one that kept coming.
    pub flow_switches: u64,
    /// Times the sender restarted (a new stream identity) and the receiver started over.
    pub restarts: u64,
    /// Symbols of a restarted sender that came before its restart was confirmed, taken
    /// into the new stream then (also counted `late`, `surplus` or `out-of-range` when they
    /// came).
    pub restart_replayed: u64,
}

impl ReceiverStats {
    /// Packets that look forged or foreign, for the attack watch (other flows only when
    /// following whichever keeps coming: a set flow shares its port on purpose).
    pub fn suspect(&self, following: bool) -> u64 {
        let other = if following { self.other_flow } else { 0 };
        [
            self.malformed,
            other,
            self.inconsistent,
            self.out_of_range,
            self.bad_blocks,
            self.unconfirmed,
            self.outvoted,
            self.unconfirmed_descriptions,
        ]
        .iter()
        .fold(0u64, |a, b| a.saturating_add(*b))
    }
}
