//! fanout's on-disk store, shared by `bitrate-recorder`, `bitrate-player` and
//! `offset-tee`: append-only data segments plus a checksummed time index,
//! crash-safe, readable while written, trimmed by retention.
//!
//! The byte layout is specified in `docs/store-format.md`. This crate knows
//! nothing of GStreamer: the elements translate buffers and caps to and from
//! the plain values used here.

pub mod craft;
mod format;
mod reader;
mod seek;
mod segment;
mod sparse;
pub mod window;
mod writer;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

pub use format::{
    decode_record, step_over_damage, valid_frame, BufferRecord, Context, DataKind, DecodeError,
    Record, SegmentHeader, SegmentSummary, FLAG_DELTA_UNIT, MAX_BUFFER_SIZE,
};
pub use reader::{Entry, Next, Reader};
pub use seek::KeyframeSeek;
pub use writer::{Item, RecordMeta, StoreClock, Writer, WriterConfig};

/// The longest store-time jump between two buffers a recorder writes (a day): a source
/// silent longer continues right where the store ends. A longer jump in a file is damage;
/// players take it as a discontinuity and retention does not count it.
pub const MAX_STORE_GAP: u64 = 24 * 3600 * 1_000_000_000;

/// Store time no recording reaches (2^62 ns, 146 years): a segment said to end later is
/// damage, and the store time does not go on from it.
pub const MAX_PLAUSIBLE_ST: u64 = 1 << 62;

/// Held (exclusively) by the writer for as long as it records.
pub const LOCK_FILE: &str = "writer.lock";

impl DataKind {
    /// The data kind for caps as `gst_caps_to_string` writes them.
    pub fn for_caps(caps: &str) -> Self {
        let name = caps.split([',', ';']).next().unwrap_or("").trim();
        if name == "video/mpegts" {
            DataKind::MpegTs
        } else {
            DataKind::Raw
        }
    }
}

#[derive(Debug)]
pub enum Error {
    /// An I/O error, with the path (or what) it concerns.
    Io(String, io::Error),
    /// Another writer records into this store.
    Busy(PathBuf),
    /// The directory holds no store (no lock file).
    NotAStore(PathBuf),
    /// A caps or tag string, or a buffer, too large for an index record.
    TooLarge(usize),
    /// An earlier write failed; the writer takes no more.
    Failed,
    /// `read_data` without a current segment.
    NoSegment,
}

impl Error {
    pub(crate) fn io(path: &Path, e: io::Error) -> Self {
        Error::Io(path.display().to_string(), e)
    }

    /// True if the disk is full or over quota.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Error::Io(_, e) if matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Error::Io(what, e) => write!(f, "{what}: {e}"),
            Error::Busy(dir) => write!(
                f,
                "{}: another recorder is writing to this store",
                dir.display()
            ),
            Error::NotAStore(dir) => write!(
                f,
                "{}: not a fanout recording (no {LOCK_FILE})",
                dir.display()
            ),
            Error::TooLarge(n) => write!(f, "{n} bytes are too large for one index record"),
            Error::Failed => write!(f, "the store stopped taking writes after an earlier error"),
            Error::NoSegment => write!(f, "no segment is being read"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(_, e) => Some(e),
            _ => None,
        }
    }
}
