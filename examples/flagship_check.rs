//! The flagship's end check: what each receiver got, as pieces of the recording, and how far
//! behind the source it arrived.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use fanout_examples::{pieces, Piece};
use gst::prelude::*;

/// When each byte passed a pad: (bytes so far, the time the buffer ending there passed).
#[derive(Clone, Default)]
pub struct Arrivals(Arc<Mutex<Vec<(usize, Instant)>>>);

impl Arrivals {
    /// Logs what `pad`, a source pad, pushes. (On a sink pad without a chain-list function
    /// a list would be seen twice: as the list, then buffer by buffer.)
    pub fn watch(&self, pad: &gst::Pad) {
        let log = self.0.clone();
        let types = gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST;
        pad.add_probe(types, move |_, info| {
            let sizes: Vec<usize> = match &info.data {
                Some(gst::PadProbeData::Buffer(b)) => vec![b.size()],
                Some(gst::PadProbeData::BufferList(l)) => l.iter().map(|b| b.size()).collect(),
                _ => Vec::new(),
            };
            let now = Instant::now();
            let mut log = log.lock().unwrap();
            for size in sizes {
                let end = log.last().map_or(0, |l| l.0) + size;
                log.push((end, now));
            }
            gst::PadProbeReturn::Ok
        });
    }

    /// When the buffer holding byte `pos` passed.
    fn at(&self, pos: usize) -> Option<Instant> {
        let log = self.0.lock().unwrap();
        let i = log.partition_point(|(end, _)| *end <= pos);
        log.get(i).map(|l| l.1)
    }
}

pub struct Check {
    pub pieces: Option<Vec<Piece>>,
    pub len: usize,
    sent: usize,
    /// Median seconds from the source to this receiver, over its first piece.
    pub delay: Option<f64>,
}

impl Check {
    pub fn new(got: &[u8], sent: &[u8], arrived: &Arrivals, input: &Arrivals) -> Check {
        let pieces = pieces(got, sent);
        let delay = pieces
            .as_ref()
            .and_then(|p| p.first().copied())
            .and_then(|first| {
                let step = (first.len / 200).max(1);
                let mut d: Vec<f64> = (0..first.len)
                    .step_by(step)
                    .filter_map(|i| {
                        let rx = arrived.at(i)?;
                        let tx = input.at(first.at + i)?;
                        Some(rx.saturating_duration_since(tx).as_secs_f64())
                    })
                    .collect();
                d.sort_by(f64::total_cmp);
                d.get(d.len() / 2).copied()
            });
        Check {
            pieces,
            len: got.len(),
            sent: sent.len(),
            delay,
        }
    }

    /// The whole recording, from its first byte to its last, in one piece.
    pub fn is_whole(&self) -> bool {
        self.pieces.as_deref()
            == Some(
                &[Piece {
                    at: 0,
                    len: self.sent,
                }][..],
            )
    }

    pub fn describe(&self) -> String {
        match &self.pieces {
            _ if self.is_whole() => {
                format!("the whole recording, byte for byte ({} bytes)", self.len)
            }
            None => format!("{} bytes, not all of them from the recording", self.len),
            Some(p) => {
                let runs: Vec<String> = p
                    .iter()
                    .map(|p| format!("{}..{}", p.at, p.at + p.len))
                    .collect();
                format!(
                    "{} bytes: the recording's bytes {}",
                    self.len,
                    runs.join(" then ")
                )
            }
        }
    }
}
