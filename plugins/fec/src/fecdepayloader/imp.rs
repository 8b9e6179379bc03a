// SPDX-License-Identifier: MPL-2.0

//! `fec-depayloader`: rebuilds the original buffers from any sufficient subset of packets,
//! whatever order, duplicates or number of senders they come in. The block logic lives in
//! `fanout_fec::Receiver`; this file owns pads, caps, the latency timer and messages.
//!
//! Lock order: `push_lock`, then `state`, then `timeline`; `settings` is read alone.

use std::str::FromStr;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use fanout_element_kit::settings::{self as kit, Properties};
use fanout_element_kit::stats::Stats;
use fanout_fec::receiver::Missing;
use fanout_fec::{Mono, Output, Receiver, ReceiverConfig, ReceiverStats};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

mod settings;
mod timeline;

use settings::Settings;

use crate::packing;
use timeline::Timeline;

pub static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "fec-depayloader",
        gst::DebugColorFlags::empty(),
        Some("fanout FEC depayloader: fountain-coded packets back to buffers"),
    )
});

/// Lost-block warnings go on the bus at most this often.
const WARNING_INTERVAL: Duration = Duration::from_secs(5);
/// How often the loss goes upstream while there is any (a sender forgets it after 3 s).
const LOSS_INTERVAL: Duration = Duration::from_secs(1);

struct State {
    receiver: Receiver,
    /// Whether caps and segment went out.
    configured: bool,
    last_warning: Option<Instant>,
    /// Blocks lost (and about how many bytes, and the first) not yet said on the bus.
    lost_since_warning: u64,
    lost_bytes_since_warning: u64,
    first_lost_since_warning: Option<u64>,
    caps_errors: u64,
    /// Buffers dropped because downstream refused the stream's caps (or none were usable).
    unnegotiated: u64,
    /// A refusal was said on the bus; said again only after buffers went through.
    refusal_warned: bool,
    timer: Option<Timer>,
    block_missing_sent: u64,
    /// When the loss is next told upstream, and what was told last.
    next_loss: Mono,
    loss_told: f64,
    /// Running time at which the output's segment starts (moved on at a sender restart, so
    /// the new stream's times, from 0 again, run on from where the old one ended).
    segment_base: u64,
    time_segment: bool,
}

/// The wake-up for the block waited for.
struct Timer {
    deadline: Mono,
    id: gst::SingleShotClockId,
}

pub struct FecDepayloader {
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    /// Serializes pushes from the streaming thread and the latency timer.
    push_lock: Mutex<()>,
    timeline: Mutex<Timeline>,
    /// Live while running, the last run's after; on the bus once a second.
    stats: Stats,
}

impl FecDepayloader {
    fn now(&self) -> Mono {
        Mono::from_nanos(self.timeline.lock().unwrap().now())
    }

    fn sink_chain(
        &self,
        _pad: &gst::Pad,
        buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        self.process(std::iter::once(buffer.as_ref()))
    }

    fn sink_chain_list(
        &self,
        _pad: &gst::Pad,
        list: gst::BufferList,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        self.process(list.iter())
    }

    fn process<'a>(
        &self,
        packets: impl Iterator<Item = &'a gst::BufferRef>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let _push = self.push_lock.lock().unwrap();
        let mut outputs = Vec::new();
        let missing = {
            let mut guard = self.state.lock().unwrap();
            let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
            let now = self.now();
            for packet in packets {
                // A packet that cannot be mapped is as good as lost.
                let Ok(map) = packet.map_readable() else {
                    continue;
                };
                match packing::packets(packet) {
                    None => state.receiver.push(&map, now, &mut outputs),
                    Some(Ok(places)) => {
                        for p in places {
                            state.receiver.push(&map[p], now, &mut outputs);
                        }
                    }
                    // Not from an element of ours: the whole buffer is one bad packet.
                    Some(Err(why)) => {
                        state.receiver.stats.packets += 1;
                        state.receiver.stats.malformed += 1;
                        gst::debug!(CAT, imp = self, "block buffer refused: {why}");
                    }
                }
            }
            let mut missing = Vec::new();
            state.receiver.missing(now, &mut missing);
            let mut events = Self::block_missing(state, missing);
            events.extend(Self::loss_due(state, now));
            events
        };
        let ret = self.push_outputs(outputs);
        self.ask_upstream(missing);
        self.schedule_timer();
        self.stats.post_when_due(&*self.obj(), || self.stats());
        ret
    }

    /// Blocks due for a repair request now, as `fanout-block-missing` events.
    fn block_missing(state: &mut State, missing: Vec<Missing>) -> Vec<gst::Event> {
        let Some(flow) = state.receiver.flow() else {
            return Vec::new();
        };
        state.block_missing_sent += missing.len() as u64;
        missing
            .into_iter()
            .map(|m| crate::block_missing(flow, m.block, m.needed))
            .collect()
    }

    /// Once a second, while the stream loses anything (and once more when it stops), the
    /// loss goes upstream as `fanout-loss`, if this receiver asks for repairs at all.
    fn loss_due(state: &mut State, now: Mono) -> Option<gst::Event> {
        let flow = state.receiver.flow()?;
        if now < state.next_loss || !state.receiver.reports() {
            return None;
        }
        let loss = state.receiver.observed_loss();
        if loss == 0.0 && state.loss_told == 0.0 {
            return None;
        }
        state.next_loss = now.saturating_add(LOSS_INTERVAL);
        state.loss_told = loss;
        Some(crate::loss(flow, loss))
    }

    fn ask_upstream(&self, events: Vec<gst::Event>) {
        for e in events {
            gst::log!(CAT, imp = self, "asking upstream: {:?}", e.structure());
            self.sinkpad.push_event(e);
        }
    }

    /// Wakes up when the block waited for is due, if no packet completes it first.
    fn schedule_timer(&self) {
        let mut guard = self.state.lock().unwrap();
        let Some(state) = guard.as_mut() else { return };
        let Some(deadline) = state.receiver.poll_timeout() else {
            return;
        };
        if state.timer.as_ref().is_some_and(|t| t.deadline <= deadline) {
            return;
        }
        if let Some(timer) = state.timer.take() {
            timer.id.unschedule();
        }
        let id = self.timeline.lock().unwrap().alarm(deadline.as_nanos());
        let weak = self.obj().downgrade();
        let scheduled = id.wait_async(move |_clock, _time, _id| {
            if let Some(obj) = weak.upgrade() {
                obj.imp().on_timer();
            }
        });
        if scheduled.is_ok() {
            state.timer = Some(Timer { deadline, id });
        }
    }

    fn on_timer(&self) {
        let _push = self.push_lock.lock().unwrap();
        let mut outputs = Vec::new();
        let missing = {
            let mut guard = self.state.lock().unwrap();
            let Some(state) = guard.as_mut() else { return };
            state.timer = None;
            let now = self.now();
            state.receiver.handle_timeout(now, &mut outputs);
            // Repair requests go upstream once the rest went downstream.
            let mut missing = Vec::new();
            outputs.retain(|o| match o {
                Output::Missing(m) => {
                    missing.push(*m);
                    false
                }
                _ => true,
            });
            Self::block_missing(state, missing)
        };
        let _ = self.push_outputs(outputs);
        self.ask_upstream(missing);
        self.schedule_timer();
    }

    fn push_outputs(&self, outputs: Vec<Output>) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut list = gst::BufferList::new();
        for output in outputs {
            match output {
                Output::Description(desc) => {
                    self.push_list(&mut list)?;
                    self.configure(&desc.caps, desc.time_segment);
                }
                Output::Buffer {
                    meta,
                    data,
                    discont,
                } => {
                    let mut buffer = gst::Buffer::from_slice(data);
                    {
                        let b = buffer.get_mut().unwrap();
                        let ts = |v: Option<u64>| v.map(gst::ClockTime::from_nseconds);
                        b.set_pts(ts(meta.pts));
                        b.set_dts(ts(meta.dts));
                        b.set_duration(ts(meta.duration));
                        let mut flags = gst::BufferFlags::from_bits_truncate(meta.flags);
                        flags.set(
                            gst::BufferFlags::DISCONT,
                            discont || flags.contains(gst::BufferFlags::DISCONT),
                        );
                        b.set_flags(flags);
                    }
                    list.get_mut().unwrap().add(buffer);
                }
                Output::Gap { start, duration } => {
                    self.push_list(&mut list)?;
                    let start = gst::ClockTime::from_nseconds(start);
                    let gap = gst::event::Gap::builder(start)
                        .duration(gst::ClockTime::from_nseconds(duration))
                        .build();
                    self.srcpad.push_event(gap);
                }
                Output::Lost {
                    first,
                    count,
                    bytes,
                } => {
                    self.lost(first, count, bytes);
                }
                Output::Restart {
                    stream,
                    lost_blocks,
                    lost_bytes,
                    partial_buffers,
                    resume,
                } => {
                    self.push_list(&mut list)?;
                    self.restarted(stream, lost_blocks, lost_bytes, partial_buffers, resume);
                }
                // Taken out before: they go upstream.
                Output::Missing(_) => (),
                Output::Attack { suspect } => {
                    gst::element_imp_warning!(
                        self,
                        gst::StreamError::Decode,
                        ("Packets that look forged keep arriving ({suspect} so far: malformed, of another flow, contradicting the stream, far out of range or outvoted): dropped and counted in the stats; said once"),
                        ["see the stats fields malformed, other-flow, inconsistent, out-of-range, unconfirmed, outvoted"]
                    );
                }
            }
        }
        self.push_list(&mut list)
    }

    fn push_list(&self, list: &mut gst::BufferList) -> Result<gst::FlowSuccess, gst::FlowError> {
        if list.is_empty() {
            return Ok(gst::FlowSuccess::Ok);
        }
        let configured = self
            .state
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|s| s.configured);
        let list = std::mem::replace(list, gst::BufferList::new());
        let count = list.len() as u64;
        let ret = match configured {
            true => self.srcpad.push_list(list),
            // No usable caps yet (they did not parse): nothing can go out.
            false => Err(gst::FlowError::NotNegotiated),
        };
        let mut guard = self.state.lock().unwrap();
        let Some(state) = guard.as_mut() else {
            return ret;
        };
        if ret != Err(gst::FlowError::NotNegotiated) {
            state.refusal_warned &= ret.is_err();
            return ret;
        }
        // Caps from a forged or faulty description must not end the pipeline: the buffers
        // are dropped, counted and said once, until a description downstream takes.
        state.unnegotiated = state.unnegotiated.saturating_add(count);
        if !std::mem::replace(&mut state.refusal_warned, true) {
            drop(guard);
            gst::element_imp_warning!(
                self,
                gst::StreamError::Format,
                ("Downstream refuses the caps of the stream description (or it had none usable): buffers are dropped until a description it takes arrives"),
                ["counted in the stats field unnegotiated"]
            );
        }
        Ok(gst::FlowSuccess::Ok)
    }

    /// The sender restarted: said on the bus (an element message `fanout-fec-sender-restarted`
    /// for applications, and a line: a warning if anything of the old stream was dropped), and
    /// a new segment so the new stream's times run on from the old one's end.
    fn restarted(&self, stream: u64, blocks: u64, bytes: u64, partial: u64, resume: Option<u64>) {
        let segment = {
            let mut guard = self.state.lock().unwrap();
            let Some(state) = guard.as_mut() else { return };
            state.segment_base = state.segment_base.saturating_add(resume.unwrap_or(0));
            (state.configured && state.time_segment).then_some(state.segment_base)
        };
        if let Some(base) = segment {
            let mut segment = gst::FormattedSegment::<gst::ClockTime>::new();
            segment.set_base(gst::ClockTime::from_nseconds(base));
            self.srcpad.push_event(gst::event::Segment::new(&segment));
        }
        let structure = gst::Structure::builder("fanout-fec-sender-restarted")
            .field("stream", stream)
            .field("lost-blocks", blocks)
            .field("lost-bytes", bytes)
            .field("partial-buffers", partial)
            .build();
        let _ = self.obj().post_message(
            gst::message::Element::builder(structure)
                .src(&*self.obj())
                .build(),
        );
        let line = format!(
            "The sender restarted (new stream {stream:016x}): following the new stream from its first block; of the old one, {blocks} block(s) (about {bytes} bytes) were given up and {partial} buffer(s) cut short at the switch"
        );
        gst::info!(CAT, imp = self, "{line}");
        let msg = if blocks > 0 || partial > 0 {
            gst::message::Warning::builder(gst::StreamError::Decode, &line)
                .src(&*self.obj())
                .build()
        } else {
            gst::message::Info::builder(gst::StreamError::Decode, &line)
                .src(&*self.obj())
                .build()
        };
        let _ = self.obj().post_message(msg);
    }

    fn lost(&self, first: u64, count: u64, bytes: u64) {
        {
            let mut guard = self.state.lock().unwrap();
            let Some(state) = guard.as_mut() else { return };
            state.lost_since_warning = state.lost_since_warning.saturating_add(count);
            state.lost_bytes_since_warning = state.lost_bytes_since_warning.saturating_add(bytes);
            state.first_lost_since_warning.get_or_insert(first);
        }
        gst::debug!(
            CAT,
            imp = self,
            "blocks {first}..{} lost (about {bytes} bytes)",
            first.saturating_add(count)
        );
        self.warn_lost(false);
    }

    /// Says on the bus which blocks were lost and how much since the last warning: at most
    /// every [`WARNING_INTERVAL`], or now (`force`, at the end of the stream).
    fn warn_lost(&self, force: bool) {
        let warn = {
            let mut guard = self.state.lock().unwrap();
            let Some(state) = guard.as_mut() else { return };
            let due = force
                || state
                    .last_warning
                    .is_none_or(|t| t.elapsed() >= WARNING_INTERVAL);
            if !due || state.lost_since_warning == 0 {
                return;
            }
            state.last_warning = Some(Instant::now());
            (
                std::mem::take(&mut state.lost_since_warning),
                std::mem::take(&mut state.lost_bytes_since_warning),
                state.first_lost_since_warning.take().unwrap_or(0),
                state.receiver.stats.blocks_lost,
            )
        };
        let (recent, bytes, first, total) = warn;
        gst::element_imp_warning!(
            self,
            gst::StreamError::Decode,
            ("{recent} block(s) from block {first} (about {bytes} bytes) could not be rebuilt in time ({total} lost in all): too much loss for the repair sent, or latency too short"),
            ["counted in the stats fields blocks-lost and lost-bytes"]
        );
    }

    /// At the end of the stream: what was rebuilt and lost, on the bus (stats and a line).
    fn post_summary(&self) {
        let stats = self.stats();
        let st = self
            .state
            .lock()
            .unwrap()
            .as_ref()
            .map(|s| s.receiver.stats);
        let Some(st) = st else {
            return;
        };
        fanout_element_kit::stats::post_stats(&*self.obj(), stats);
        let line = format!(
            "stream ended: {} blocks rebuilt ({} with repair), {} lost (about {} bytes); {} buffers, {} bytes out",
            st.blocks_decoded, st.blocks_recovered, st.blocks_lost, st.lost_bytes, st.buffers, st.bytes_out
        );
        gst::info!(CAT, imp = self, "{line}");
        let msg = gst::message::Info::builder(gst::CoreError::Failed, &line)
            .debug(&line)
            .src(&*self.obj())
            .build();
        let _ = self.obj().post_message(msg);
    }

    /// Caps of the original stream and a segment from zero, in the input's format. Caps that
    /// do not parse are a warning and leave the output as it was (a forged description must
    /// not end the pipeline).
    fn configure(&self, caps: &str, time_segment: bool) {
        let caps = match gst::Caps::from_str(caps) {
            // The input had no caps (a plain file): neither has the output.
            _ if caps.is_empty() => None,
            Ok(c) if c.is_fixed() => Some(c),
            _ => {
                if let Some(s) = self.state.lock().unwrap().as_mut() {
                    s.caps_errors += 1;
                }
                gst::element_imp_warning!(
                    self,
                    gst::StreamError::Format,
                    ("The stream description carries caps that do not parse, ignored: {caps}"),
                    ["counted in the stats field caps-errors"]
                );
                return;
            }
        };
        gst::info!(CAT, imp = self, "stream caps {caps:?}");
        let first = {
            let mut guard = self.state.lock().unwrap();
            let Some(state) = guard.as_mut() else { return };
            state.time_segment = time_segment;
            !std::mem::replace(&mut state.configured, true)
        };
        if self
            .srcpad
            .sticky_event::<gst::event::StreamStart>(0)
            .is_none()
        {
            // Upstream sent none (an appsrc, say): one of our own.
            let id = self.srcpad.create_stream_id(&*self.obj(), None);
            self.srcpad.push_event(gst::event::StreamStart::new(&id));
        }
        if let Some(caps) = caps {
            if !self.srcpad.push_event(gst::event::Caps::new(&caps)) {
                gst::warning!(CAT, imp = self, "downstream refuses {caps:?}");
            }
        }
        if first {
            let segment = if time_segment {
                gst::FormattedSegment::<gst::ClockTime>::new().upcast()
            } else {
                gst::FormattedSegment::<gst::format::Bytes>::new().upcast()
            };
            self.srcpad.push_event(gst::event::Segment::new(&segment));
        }
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        use gst::EventView;
        gst::log!(CAT, obj = pad, "event {event:?}");
        match event.view() {
            // Our caps and segment come from the stream description.
            EventView::Caps(_) | EventView::Segment(_) => true,
            EventView::StreamStart(_) => gst::Pad::event_default(pad, Some(&*self.obj()), event),
            EventView::FlushStop(_) => {
                // Blocks in flight are gone: start over, as a receiver joining now would.
                self.stop();
                self.start();
                gst::Pad::event_default(pad, Some(&*self.obj()), event)
            }
            EventView::Eos(_) => {
                let _push = self.push_lock.lock().unwrap();
                let mut outputs = Vec::new();
                if let Some(state) = self.state.lock().unwrap().as_mut() {
                    state.receiver.finish(&mut outputs);
                }
                let _ = self.push_outputs(outputs);
                self.warn_lost(true);
                self.post_summary();
                let configured = self
                    .state
                    .lock()
                    .unwrap()
                    .as_ref()
                    .is_some_and(|s| s.configured);
                if !configured {
                    gst::element_imp_warning!(
                        self,
                        gst::StreamError::Demux,
                        ("The stream ended before any stream description arrived: nothing could be rebuilt"),
                        ["EOS before the first description"]
                    );
                }
                gst::Pad::event_default(pad, Some(&*self.obj()), event)
            }
            _ => gst::Pad::event_default(pad, Some(&*self.obj()), event),
        }
    }

    fn src_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Latency(q) = query.view_mut() {
            if !self.sinkpad.peer_query(q.query_mut()) {
                return false;
            }
            let (live, min, max) = q.result();
            let ours = gst::ClockTime::from_nseconds(self.settings.lock().unwrap().latency);
            q.set(live, min + ours, max.map(|m| m + ours));
            return true;
        }
        gst::Pad::query_default(pad, Some(&*self.obj()), query)
    }

    fn current_stats(&self) -> gst::Structure {
        let running = self.state.lock().unwrap().is_some();
        self.stats.read(running, || self.stats())
    }

    fn stats(&self) -> gst::Structure {
        let guard = self.state.lock().unwrap();
        let st: ReceiverStats = guard.as_ref().map(|s| s.receiver.stats).unwrap_or_default();
        gst::Structure::builder("fanout-fec-depayloader-stats")
            .field("packets", st.packets)
            .field("malformed", st.malformed)
            .field("other-flow", st.other_flow)
            .field("duplicates", st.duplicates)
            .field("late", st.late)
            .field("surplus", st.surplus)
            .field("inconsistent", st.inconsistent)
            .field("out-of-range", st.out_of_range)
            .field("excess", st.excess)
            .field("symbols", st.symbols)
            .field("blocks-decoded", st.blocks_decoded)
            .field("blocks-recovered", st.blocks_recovered)
            .field("blocks-lost", st.blocks_lost)
            .field("bad-blocks", st.bad_blocks)
            .field("buffers", st.buffers)
            .field("bytes-out", st.bytes_out)
            .field("lost-bytes", st.lost_bytes)
            .field("partial-buffers-dropped", st.partial_buffers_dropped)
            .field("descriptions", st.descriptions)
            .field("resyncs", st.resyncs)
            .field("unconfirmed", st.unconfirmed)
            .field("outvoted", st.outvoted)
            .field("unconfirmed-descriptions", st.unconfirmed_descriptions)
            .field("flow-switches", st.flow_switches)
            .field("restarts", st.restarts)
            .field("restart-replayed", st.restart_replayed)
            .field("caps-errors", guard.as_ref().map_or(0, |s| s.caps_errors))
            .field("unnegotiated", guard.as_ref().map_or(0, |s| s.unnegotiated))
            .field(
                "block-missing-sent",
                guard.as_ref().map_or(0, |s| s.block_missing_sent),
            )
            .field(
                "observed-loss",
                guard.as_ref().map_or(0.0, |s| s.receiver.observed_loss()),
            )
            .build()
    }

    fn start(&self) {
        self.stats.started();
        let settings = *self.settings.lock().unwrap();
        let receiver = Receiver::new(ReceiverConfig {
            flow: u32::try_from(settings.flow).ok(),
            latency: Duration::from_nanos(settings.latency),
            // Asked well before the block is given up.
            report_delay: Duration::from_nanos(settings.repair_delay.min(settings.latency / 2)),
            ..ReceiverConfig::default()
        });
        *self.state.lock().unwrap() = Some(State {
            receiver,
            configured: false,
            last_warning: None,
            lost_since_warning: 0,
            lost_bytes_since_warning: 0,
            first_lost_since_warning: None,
            caps_errors: 0,
            unnegotiated: 0,
            refusal_warned: false,
            timer: None,
            block_missing_sent: 0,
            next_loss: Mono::ZERO,
            loss_told: 0.0,
            segment_base: 0,
            time_segment: false,
        });
    }

    fn stop(&self) {
        let _push = self.push_lock.lock().unwrap();
        self.stats.stopped(self.stats());
        if let Some(state) = self.state.lock().unwrap().take() {
            if let Some(timer) = state.timer {
                timer.id.unschedule();
            }
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for FecDepayloader {
    const NAME: &'static str = "GstFanoutFecDepayloader";
    type Type = super::FecDepayloader;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        let sinkpad = gst::Pad::builder_from_template(&klass.pad_template("sink").unwrap())
            .chain_function(|pad, parent, buffer| {
                FecDepayloader::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |imp| imp.sink_chain(pad, buffer),
                )
            })
            .chain_list_function(|pad, parent, list| {
                FecDepayloader::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |imp| imp.sink_chain_list(pad, list),
                )
            })
            .event_function(|pad, parent, event| {
                FecDepayloader::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.sink_event(pad, event),
                )
            })
            .build();
        let srcpad = gst::Pad::builder_from_template(&klass.pad_template("src").unwrap())
            .query_function(|pad, parent, query| {
                FecDepayloader::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.src_query(pad, query),
                )
            })
            .build();
        FecDepayloader {
            sinkpad,
            srcpad,
            settings: Mutex::new(Settings::default()),
            state: Mutex::new(None),
            push_lock: Mutex::new(()),
            timeline: Mutex::new(Timeline::default()),
            stats: Stats::default(),
        }
    }
}

impl ObjectImpl for FecDepayloader {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let mut specs = Settings::param_specs();
            specs.push(
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("fanout-fec-depayloader-stats, also posted on the bus every second and at EOS: packets, malformed, other-flow, duplicates, late (symbols of blocks already given up), surplus (unneeded repair symbols of blocks already rebuilt: normal), inconsistent (contradicting the description or the block's first packets), out-of-range, excess, symbols, blocks-decoded, blocks-recovered (needed repair), blocks-lost, bad-blocks, buffers, bytes-out, lost-bytes (about), partial-buffers-dropped, descriptions, resyncs, unconfirmed (symbols of blocks far ahead the stream never reached: forged), outvoted (rebuilt variants of a block dropped for one with more packets: forged), unconfirmed-descriptions (new descriptions replaced before their repetition confirmed them), flow-switches (flow=-1 followed another flow that kept coming), restarts (the sender restarted: a new stream identity, confirmed while the old stream had stopped; the old one ended, the new one followed from its first block), restart-replayed (symbols of the restarted sender that came before its restart was confirmed, taken into the new stream then), caps-errors (caps that did not parse, ignored), unnegotiated (buffers dropped while downstream refused the caps), block-missing-sent, observed-loss (double: the share of the symbols sent with each block lost on the way lately, 0 to 0.5; fanout-block-missing asks for enough to make up for it)")
                    .read_only()
                    .build(),
            );
            specs
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let res = self.settings.lock().unwrap().set(pspec.name(), value);
        kit::log_set_error(*CAT, &*self.obj(), res);
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let got = match pspec.name() {
            "stats" => Ok(self.current_stats().to_value()),
            name => self.settings.lock().unwrap().get(name),
        };
        kit::or_default(*CAT, &*self.obj(), pspec, got)
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.add_pad(&self.sinkpad).unwrap();
        obj.add_pad(&self.srcpad).unwrap();
    }
}

impl GstObjectImpl for FecDepayloader {}

impl ElementImpl for FecDepayloader {
    fn set_clock(&self, clock: Option<&gst::Clock>) -> bool {
        self.timeline.lock().unwrap().switch(clock);
        // A timer set on the old clock is set again on the new one.
        if let Some(timer) = self
            .state
            .lock()
            .unwrap()
            .as_mut()
            .and_then(|s| s.timer.take())
        {
            timer.id.unschedule();
        }
        self.schedule_timer();
        self.parent_set_clock(clock)
    }

    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "FEC depayloader",
                "Codec/Depayloader/Network",
                "Rebuilds the original buffers (bytes, timestamps, flags) from any sufficient subset of \
                 fanout FEC packets, merging symbols from several sessions or senders",
                "The fanout developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            vec![
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &gst::Caps::new_empty_simple("application/x-fanout-fec"),
                )
                .unwrap(),
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &gst::Caps::new_any(),
                )
                .unwrap(),
            ]
        });
        TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        if transition == gst::StateChange::ReadyToPaused {
            self.start();
        }
        let ret = self.parent_change_state(transition)?;
        if transition == gst::StateChange::PausedToReady {
            self.stop();
        }
        Ok(ret)
    }
}
