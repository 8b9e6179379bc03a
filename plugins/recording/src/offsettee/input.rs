// SPDX-License-Identifier: MPL-2.0

//! What the input side of `offset-tee` shares with its outputs: the in-memory window of
//! recent buffers, and how store time maps to this run's running time.

use std::sync::Arc;

use fanout_store::window::{Limits, Position, Positions, Window};
use fanout_store::BufferRecord;

/// What the in-memory window holds at most: outputs further behind read the store.
const WINDOW: Limits = Limits {
    max_bytes: 16 << 20,
    max_span: 2_000_000_000,
};

/// A buffer in the window, as an output takes it.
#[derive(Clone)]
pub struct Held {
    pub buffer: gst::Buffer,
    pub rec: BufferRecord,
    pub position: Position,
    pub caps: Option<Arc<str>>,
}

/// How store time maps to the running time of this run, taken from its first buffer.
#[derive(Debug, Clone, Copy)]
pub struct Anchor {
    pub first_arrival: u64,
    /// Store time of this run's first buffer.
    pub first_st: u64,
    /// Running time at which a store time arrived, less that store time.
    release_shift: i128,
    /// The running time a store time had as a timestamp, less that store time.
    time_shift: i128,
    /// How long after its own timestamp a buffer arrives: outputs leave that much after the
    /// timestamp they carry, as the input did.
    pub lateness: u64,
}

fn clamp(t: i128) -> u64 {
    t.clamp(0, i128::from(crate::playout::MAX_TIME)) as u64
}

impl Anchor {
    pub fn new(arrival: u64, st: u64, timestamp: u64) -> Anchor {
        let release_shift = i128::from(arrival) - i128::from(st);
        let time_shift = i128::from(timestamp) - i128::from(st);
        Anchor {
            first_arrival: arrival,
            first_st: st,
            release_shift,
            time_shift,
            lateness: clamp(release_shift - time_shift),
        }
    }

    /// The store time the input reaches at running time `rt`.
    pub fn store_time_at(&self, rt: u64) -> u64 {
        clamp(i128::from(rt) - self.release_shift)
    }

    /// The running time, as a timestamp, at which an output `offset` behind has store time
    /// `st`. Added before clamping: what was stored before this run has a time before its
    /// start, which the offset brings forward again.
    pub fn time_of(&self, st: u64, offset: u64) -> u64 {
        clamp(i128::from(st) + self.time_shift + i128::from(offset))
    }
}

/// What the input side shares with the outputs.
pub struct Input {
    pub window: Window<Held>,
    pub anchor: Option<Anchor>,
    pub caps: Option<Arc<str>>,
    pub positions: Positions,
    /// The input ended and what it sent is in the store.
    pub ended: bool,
    /// Store time of the input's last buffer, once it ended.
    pub last_st: Option<u64>,
    /// The store held a recording before this run (a restart with `location`).
    pub stored_before: bool,
}

impl Default for Input {
    fn default() -> Self {
        Input {
            window: Window::new(WINDOW),
            anchor: None,
            caps: None,
            positions: Positions::default(),
            ended: false,
            last_st: None,
            stored_before: false,
        }
    }
}

/// The store record of a buffer held in the window.
pub fn window_record(st: u64, meta: &fanout_store::RecordMeta, size: usize) -> BufferRecord {
    BufferRecord {
        st,
        pts: meta.pts,
        dts: meta.dts,
        duration: meta.duration,
        arrival: meta.arrival,
        offset: 0,
        size: u32::try_from(size).unwrap_or(u32::MAX),
        flags: meta.flags,
        data_crc: 0,
    }
}
