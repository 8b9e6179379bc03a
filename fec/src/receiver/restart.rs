//! Starting over: a restarted sender (a new stream identity, confirmed once the old stream
//! stopped), a run of packets out of range, another flow followed; the symbols kept
//! meanwhile for the new stream.

use std::time::Duration;

use fanout_wire::time::Mono;

use super::{Output, Receiver};
use crate::description::{Description, DescriptionAssembler};
use crate::guard::Presence;
use crate::packet::SymbolHeader;

/// Consecutive out-of-range packets after which the sender is taken to have restarted.
pub(super) const RESYNC_AFTER: u32 = 256;

/// How long symbols behind the stream are kept while a description of another stream
/// (a restarted sender) is weighed: they are the new stream's first blocks.
const STASH_AGE: Duration = Duration::from_secs(10);

/// A symbol behind the stream followed, kept in case it is a restarted sender's.
pub(super) struct Stashed {
    pub(super) at: Mono,
    pub(super) header: SymbolHeader,
    pub(super) data: Vec<u8>,
}

impl Receiver {
    /// A description of another stream (a restarted sender) takes effect once confirmed as
    /// any change is, and only when the stream in force has stopped: nothing came at its
    /// position for `latency` (at least twice its usual pause) — the receiver then starts
    /// over at the new stream's blocks — or its description has not come for as long (a
    /// sender of the same blocks taking over: the description changes, nothing is dropped).
    /// A running sender keeps both coming, so no forged packet resets the receiver.
    pub(super) fn check_restart(&mut self, now: Mono, out: &mut Vec<Output>) {
        let Some(stream) = self.description.as_ref().map(|d| d.stream) else {
            return;
        };
        if !self.candidates.other_stream(stream) {
            self.stash.clear();
            self.stash_bytes = 0;
            return;
        }
        let latency = self.cfg.latency;
        let stopped = now >= self.ahead.silent_from(latency);
        let undescribed = now >= self.described.silent_from(latency);
        if !stopped && !undescribed {
            return;
        }
        let Some(desc) = self.candidates.take_new_stream(stream) else {
            return;
        };
        match stopped {
            true => self.restart(desc, out),
            false => self.set_description(desc, out),
        }
        self.described = Presence::default();
        self.described.seen(now);
    }

    /// The sender restarted: the old stream ends (what is rebuilt goes out, the rest is
    /// given up, as at its end), the new one starts as a receiver joining now would, with
    /// the symbols it sent since the old stream's last packet.
    pub(super) fn restart(&mut self, desc: Description, out: &mut Vec<Output>) {
        let (lost, lost_bytes, partial) = (
            self.stats.blocks_lost,
            self.stats.lost_bytes,
            self.stats.partial_buffers_dropped,
        );
        self.end_of_stream(out);
        let resume = self.last_end;
        let since = self.ahead.last();
        let stash = std::mem::take(&mut self.stash);
        self.stash_bytes = 0;
        self.resync();
        self.stats.resyncs -= 1;
        self.stats.restarts += 1;
        self.last_end = None;
        self.presence = Presence::default();
        self.ahead = Presence::default();
        out.push(Output::Restart {
            stream: desc.stream,
            lost_blocks: self.stats.blocks_lost - lost,
            lost_bytes: self.stats.lost_bytes.saturating_sub(lost_bytes),
            partial_buffers: self.stats.partial_buffers_dropped - partial,
            resume,
        });
        self.set_description(desc, out);
        for s in stash {
            if since.is_none_or(|t| s.at > t) {
                self.stats.restart_replayed += 1;
                self.add_symbol(&s.header, &s.data, s.at);
            }
        }
    }

    /// Keeps a symbol behind the stream while a description of another stream is weighed:
    /// if that is a restarted sender's, it is one of its first blocks. Bounded by
    /// [`STASH_AGE`] and a quarter of `max_buffered_bytes`.
    pub(super) fn stash_symbol(&mut self, h: &SymbolHeader, data: &[u8], now: Mono) {
        let Some(stream) = self.description.as_ref().map(|d| d.stream) else {
            return;
        };
        let limit = self.cfg.max_buffered_bytes / 4;
        if !self.candidates.other_stream(stream) || data.len() > limit {
            return;
        }
        while let Some(first) = self.stash.front() {
            if self.stash_bytes + data.len() <= limit
                && now.saturating_duration_since(first.at) <= STASH_AGE
            {
                break;
            }
            self.stash_bytes -= first.data.len();
            self.stash.pop_front();
        }
        self.stash_bytes += data.len();
        self.stash.push_back(Stashed {
            at: now,
            header: *h,
            data: data.to_vec(),
        });
    }

    /// Leaves the flow followed for `flow`: everything of the old one is dropped, and the
    /// new one starts as a receiver joining now would (with its own description).
    pub(super) fn follow(&mut self, flow: u32) {
        self.stats.flow_switches += 1;
        self.flow = Some(flow);
        self.resync();
        self.stats.resyncs -= 1;
        self.description = None;
        self.stats.unconfirmed_descriptions += self.candidates.clear();
        self.descriptions = DescriptionAssembler::default();
        self.presence = Presence::default();
        self.ahead = Presence::default();
        self.described = Presence::default();
        self.stash.clear();
        self.stash_bytes = 0;
    }

    pub(super) fn resync(&mut self) {
        self.stats.resyncs += 1;
        self.blocks.clear();
        self.absent.clear();
        self.given_up.clear();
        self.last_k = None;
        self.buffered = 0;
        self.started = false;
        self.next = None;
        self.out_of_range_run = 0;
        self.flush_partial();
    }
}
