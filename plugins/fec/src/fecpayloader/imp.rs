// SPDX-License-Identifier: MPL-2.0

//! `fec-payloader`: cuts the stream into source blocks and pushes datagram-sized packets of
//! output symbols (see docs/fec-format.md). The block logic lives in `fanout_fec::Sender`.
//!
//! Lock order: `push_lock`, then `carousel`, then `state`; `settings` is read alone. A
//! repair request builds its packets under `state` alone and only *tries* `push_lock`: if
//! the streaming thread is pushing, it takes them along with its next list.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex};

use fanout_element_kit::settings::{self as kit, Properties};
use fanout_element_kit::stats::Stats;
use fanout_fec::packing::Packets;
use fanout_fec::{BufferMeta, Mono, Sender, SenderError};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use crate::{packing, REPAIR_REQUEST};

mod block_timer;
mod carousel;
mod repair;
mod settings;

use settings::Settings;

use block_timer::BlockTimer;
use carousel::{Carousel, Interrupt};

pub static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "fec-payloader",
        gst::DebugColorFlags::empty(),
        Some("fanout FEC payloader: source blocks to fountain-coded packets"),
    )
});

#[derive(Default)]
struct Counters {
    buffers_in: u64,
    bytes_in: u64,
    packets_out: u64,
    repair_requests: u64,
    repair_requests_refused: u64,
    carousel_rounds: u64,
}

/// Streaming state, from READY to READY.
struct State {
    sender: Sender,
    caps: Option<String>,
    time_segment: bool,
    segment: gst::FormattedSegment<gst::ClockTime>,
    segment_sent: bool,
    /// Packets answering repair requests, waiting for the streaming thread.
    repairs: Vec<gst::Buffer>,
    counters: Counters,
    /// The sender's clock, for keeping recent blocks repairable.
    started: std::time::Instant,
    /// Packets made and not yet pushed, in memory reused from block to block.
    out: Packets,
    recycler: packing::Recycler,
}

impl State {
    /// Tells the sender the time before it makes blocks.
    fn tick(&mut self) {
        let now = self.started.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
        self.sender.set_now(Mono::from_nanos(now));
    }

    fn describe(&mut self) -> Result<(), SenderError> {
        match self.caps.clone() {
            Some(caps) => self.sender.set_stream(caps, self.time_segment),
            None => Ok(()),
        }
    }

    /// The packets made, as downstream takes them (a buffer each, or one per block),
    /// stamped with `pts`, the running time of the input that completed them.
    fn take_packets(&mut self, block: bool, pts: Option<gst::ClockTime>) -> gst::BufferList {
        self.counters.packets_out += self.out.len() as u64;
        if self.out.is_empty() {
            return gst::BufferList::new();
        }
        let buffers = self.recycler.buffers(&mut self.out, block);
        let mut list = gst::BufferList::new_sized(buffers.len());
        let l = list.get_mut().unwrap();
        for mut b in buffers {
            b.get_mut().unwrap().set_pts(pts);
            l.add(b);
        }
        list
    }
}

pub struct FecPayloader {
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    /// Serializes pushes from the streaming thread and from repair requests.
    push_lock: Mutex<()>,
    /// The rounds after EOS in carousel mode, run on the source pad's task.
    carousel: Mutex<Option<Carousel>>,
    /// Wakes the carousel task from its pacing wait when stopping or flushing.
    interrupt: Interrupt,
    /// Live while running, the last run's after; on the bus once a second.
    stats: Stats,
    /// Downstream takes a block's packets in one buffer (caps `packing=block`).
    block: AtomicBool,
    /// Closes a block that waited `max-block-time` for more live input, in PLAYING.
    block_timer: BlockTimer,
    /// Upstream is live: asked in PLAYING, with the first input there (a live source says
    /// so only once its caps are set); `None` until then.
    live: Mutex<Option<bool>>,
    /// A push from the block timer's thread that failed, for the streaming thread to return.
    timer_flow: Mutex<Option<gst::FlowError>>,
}

impl FecPayloader {
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

    /// Takes input buffers and pushes the packets each completes as it completes them: a
    /// block's buffer goes out (and its memory comes back) before the next is made.
    fn process<'a>(
        &self,
        buffers: impl Iterator<Item = &'a gst::BufferRef>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let _push = self.push_lock.lock().unwrap();
        if let Some(e) = self.timer_flow.lock().unwrap().take() {
            return Err(e);
        }
        {
            let mut guard = self.state.lock().unwrap();
            let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
            if state.caps.is_none() {
                // Input without caps (a plain filesrc): described as such, output without
                // caps (so a buffer per packet: nothing downstream could know otherwise).
                state.caps = Some(String::new());
                state
                    .describe()
                    .map_err(|_| gst::FlowError::NotNegotiated)?;
            }
            state.tick();
        }
        let mut ret = Ok(gst::FlowSuccess::Ok);
        for buffer in buffers {
            let (list, repairs) = {
                let mut guard = self.state.lock().unwrap();
                let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
                let pts = self.take_buffer(state, buffer)?;
                if state.out.is_empty() && state.repairs.is_empty() {
                    continue;
                }
                (
                    state.take_packets(self.block(), pts),
                    std::mem::take(&mut state.repairs),
                )
            };
            ret = self
                .ensure_segment()
                .and_then(|_| self.push_repairs(repairs))
                .and_then(|ok| match list.is_empty() {
                    true => Ok(ok),
                    false => {
                        gst::trace!(CAT, imp = self, "pushing {} buffers", list.len());
                        self.srcpad.push_list(list)
                    }
                });
            if ret.is_err() {
                break;
            }
        }
        if self.block_timer.playing() && self.upstream_live() {
            self.arm_block_timer();
        }
        self.stats.post_when_due(&*self.obj(), || self.stats());
        ret
    }

    fn upstream_live(&self) -> bool {
        if let Some(live) = *self.live.lock().unwrap() {
            return live;
        }
        let live = self.ask_upstream_live();
        *self.live.lock().unwrap() = Some(live);
        live
    }

    fn ask_upstream_live(&self) -> bool {
        let mut q = gst::query::Latency::new();
        let live = self.sinkpad.peer_query(&mut q) && q.result().0;
        gst::debug!(
            CAT,
            imp = self,
            "upstream is live: {live} (a live source says so once it has caps)"
        );
        live
    }

    /// A push of ours off the input's flow (a block that waited, the last block at EOS)
    /// failed: said on the bus, as no return to upstream carries it.
    fn push_failed(&self, e: gst::FlowError, what: &str) {
        if matches!(e, gst::FlowError::Flushing | gst::FlowError::Eos) {
            return;
        }
        gst::element_imp_error!(
            self,
            gst::StreamError::Failed,
            ("Cannot push {what}: downstream returned {e:?}"),
            ["the packets of that block are lost"]
        );
    }

    /// Live, in PLAYING, a block left with data in it goes out if no input comes for
    /// `max-block-time`. (Not for input at file speed: its blocks depend on the input alone,
    /// as payloaders that share their blocks need.)
    fn arm_block_timer(&self) {
        let (block, after) = {
            let guard = self.state.lock().unwrap();
            let Some(state) = guard.as_ref() else { return };
            let after = state.sender.config().max_block_time;
            if state.sender.pending() == 0 || after.is_zero() {
                return;
            }
            (state.sender.next_block(), after)
        };
        if let Some(clock) = self.obj().clock() {
            gst::trace!(
                CAT,
                imp = self,
                "block {block} goes out in {after:?} without more input"
            );
            self.block_timer.arm(block, &clock, after);
        }
    }

    /// The block timer went off: `block`, if it is still being built, goes out as it is.
    fn close_waiting_block(&self, block: u64) {
        let _push = self.push_lock.lock().unwrap();
        let list = {
            let mut guard = self.state.lock().unwrap();
            let Some(state) = guard.as_mut() else { return };
            // Paused since the alarm went off: the block waits for PLAYING again.
            if state.sender.next_block() != block
                || state.sender.pending() == 0
                || !self.block_timer.playing()
            {
                return;
            }
            gst::debug!(
                CAT,
                imp = self,
                "no input for max-block-time: block {block} goes out with {} bytes",
                state.sender.pending()
            );
            state.tick();
            state.sender.flush(&mut state.out);
            state.take_packets(self.block(), None)
        };
        let ret = self
            .ensure_segment()
            .and_then(|_| self.srcpad.push_list(list));
        if let Err(e) = ret {
            self.push_failed(e, "a block that waited max-block-time for input");
            // And returned to upstream with its next input.
            if e != gst::FlowError::Flushing {
                *self.timer_flow.lock().unwrap() = Some(e);
            }
        }
        self.stats.post_when_due(&*self.obj(), || self.stats());
    }

    /// Gives `buffer` to the sender; the running time of its start.
    fn take_buffer(
        &self,
        state: &mut State,
        buffer: &gst::BufferRef,
    ) -> Result<Option<gst::ClockTime>, gst::FlowError> {
        let rt = |t: Option<gst::ClockTime>| t.and_then(|t| state.segment.to_running_time(t));
        let pts = rt(buffer.pts());
        let meta = BufferMeta {
            pts: pts.map(gst::ClockTime::nseconds),
            dts: rt(buffer.dts()).map(gst::ClockTime::nseconds),
            duration: buffer.duration().map(gst::ClockTime::nseconds),
            flags: buffer.flags().bits(),
        };
        let map = buffer.map_readable().map_err(|_| {
            gst::element_imp_error!(
                self,
                gst::StreamError::Failed,
                ("Cannot read an input buffer"),
                ["mapping the buffer readable failed"]
            );
            gst::FlowError::Error
        })?;
        state.sender.push_buffer(&meta, &map, &mut state.out);
        state.counters.buffers_in += 1;
        state.counters.bytes_in += map.len() as u64;
        Ok(pts)
    }

    fn push_repairs(&self, repairs: Vec<gst::Buffer>) -> Result<gst::FlowSuccess, gst::FlowError> {
        if repairs.is_empty() {
            return Ok(gst::FlowSuccess::Ok);
        }
        let mut list = gst::BufferList::new_sized(repairs.len());
        list.get_mut().unwrap().extend(repairs);
        self.srcpad.push_list(list)
    }

    /// Our caps, with the packing downstream prefers: blocks only where it says so first.
    fn push_caps(&self) -> bool {
        let flow = self.settings.lock().unwrap().flow;
        let block = packing::downstream_takes_blocks(&self.srcpad, Some(flow));
        self.block.store(block, Ordering::Relaxed);
        let packing = if block {
            packing::BLOCK
        } else {
            packing::DATAGRAM
        };
        gst::debug!(CAT, imp = self, "packing={packing}");
        self.srcpad
            .push_event(gst::event::Caps::new(&packing::caps(Some(flow), packing)))
    }

    pub(super) fn block(&self) -> bool {
        self.block.load(Ordering::Relaxed)
    }

    /// Our own time segment goes out once, before the first packet.
    fn ensure_segment(&self) -> Result<(), gst::FlowError> {
        let send = {
            let mut guard = self.state.lock().unwrap();
            let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
            !std::mem::replace(&mut state.segment_sent, true)
        };
        if send {
            let segment = gst::FormattedSegment::<gst::ClockTime>::new();
            self.srcpad.push_event(gst::event::Segment::new(&segment));
        }
        Ok(())
    }

    fn flush_block(&self) -> Result<gst::FlowSuccess, gst::FlowError> {
        let _push = self.push_lock.lock().unwrap();
        let list: gst::BufferList = {
            let mut guard = self.state.lock().unwrap();
            let Some(state) = guard.as_mut() else {
                return Ok(gst::FlowSuccess::Ok);
            };
            state.tick();
            state.sender.flush(&mut state.out);
            state.take_packets(self.block(), None)
        };
        if list.is_empty() {
            return Ok(gst::FlowSuccess::Ok);
        }
        self.ensure_segment()?;
        self.srcpad.push_list(list)
    }

    fn update_description(&self) {
        let mut guard = self.state.lock().unwrap();
        let Some(state) = guard.as_mut() else { return };
        if let Err(e) = state.describe() {
            drop(guard);
            gst::element_imp_warning!(
                self,
                gst::StreamError::Format,
                ("Cannot describe the stream: {e}"),
                ["{e:?}"]
            );
        }
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        use gst::EventView;
        gst::log!(CAT, obj = pad, "event {event:?}");
        match event.view() {
            EventView::Caps(c) => {
                // New caps, perhaps a new source: asked again.
                *self.live.lock().unwrap() = None;
                if let Some(state) = self.state.lock().unwrap().as_mut() {
                    state.caps = Some(c.caps().to_string());
                }
                self.update_description();
                self.push_caps()
            }
            EventView::Segment(s) => {
                let segment = s.segment();
                if let Some(state) = self.state.lock().unwrap().as_mut() {
                    state.time_segment = segment.format() == gst::Format::Time;
                    state.segment = segment
                        .downcast_ref::<gst::ClockTime>()
                        .cloned()
                        .unwrap_or_default();
                }
                self.update_description();
                // Our own segment (time, running time of the input) goes out with the first packet.
                true
            }
            EventView::Eos(_) => {
                self.block_timer.disarm();
                if let Err(e) = self.flush_block() {
                    self.push_failed(e, "the last block at EOS");
                }
                match self.start_carousel(event) {
                    // The task sends EOS on after the rounds: upstream's thread returns now.
                    Ok(()) => true,
                    Err(event) => gst::Pad::event_default(pad, Some(&*self.obj()), event),
                }
            }
            EventView::FlushStart(_) => {
                self.block_timer.disarm();
                let ret = gst::Pad::event_default(pad, Some(&*self.obj()), event);
                self.stop_carousel();
                ret
            }
            EventView::FlushStop(_) => {
                if let Some(state) = self.state.lock().unwrap().as_mut() {
                    // What was flushed does not go out; block numbers go on.
                    state.sender.discard_pending();
                    state.segment_sent = false;
                }
                *self.timer_flow.lock().unwrap() = None;
                gst::Pad::event_default(pad, Some(&*self.obj()), event)
            }
            // Packets carry their own timing; a gap in the input is no packet at all.
            EventView::Gap(_) => true,
            _ => gst::Pad::event_default(pad, Some(&*self.obj()), event),
        }
    }

    fn src_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        if event.type_() == gst::EventType::CustomUpstream
            && event
                .structure()
                .is_some_and(|s| s.name() == REPAIR_REQUEST)
        {
            self.repair_request(&event);
            return true;
        }
        gst::Pad::event_default(pad, Some(&*self.obj()), event)
    }

    fn current_stats(&self) -> gst::Structure {
        let running = self.state.lock().unwrap().is_some();
        self.stats.read(running, || self.stats())
    }

    fn stats(&self) -> gst::Structure {
        let guard = self.state.lock().unwrap();
        let mut s = gst::Structure::builder("fanout-fec-payloader-stats");
        if let Some(state) = guard.as_ref() {
            let c = &state.counters;
            let st = state.sender.stats;
            s = s
                .field("buffers-in", c.buffers_in)
                .field("bytes-in", c.bytes_in)
                .field("packets-out", c.packets_out)
                .field("blocks", st.blocks)
                .field("source-packets", st.source_packets)
                .field("repair-packets", st.repair_packets)
                .field("description-packets", st.description_packets)
                .field("padding-bytes", st.padding_bytes)
                .field("repair-requests", c.repair_requests)
                .field("repair-requests-refused", c.repair_requests_refused)
                .field("carousel-rounds", c.carousel_rounds);
        }
        s.build()
    }

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        self.stats.started();
        let settings = self.settings.lock().unwrap().clone();
        let sender = Sender::new(settings.sender_config())
            .map_err(|e| gst::error_msg!(gst::LibraryError::Settings, ["{e}"]))?;
        self.interrupt.clear();
        *self.state.lock().unwrap() = Some(State {
            sender,
            caps: None,
            time_segment: false,
            segment: gst::FormattedSegment::new(),
            segment_sent: false,
            repairs: Vec::new(),
            counters: Counters::default(),
            started: std::time::Instant::now(),
            out: Packets::default(),
            recycler: packing::Recycler::default(),
        });
        *self.timer_flow.lock().unwrap() = None;
        let weak = self.obj().downgrade();
        self.block_timer
            .start(move |block| {
                if let Some(obj) = weak.upgrade() {
                    obj.imp().close_waiting_block(block);
                }
            })
            .map_err(|e| {
                gst::error_msg!(
                    gst::CoreError::Thread,
                    ["Cannot start the block timer's thread: {e}"]
                )
            })?;
        Ok(())
    }
}

#[glib::object_subclass]
impl ObjectSubclass for FecPayloader {
    const NAME: &'static str = "GstFanoutFecPayloader";
    type Type = super::FecPayloader;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        let sinkpad = gst::Pad::builder_from_template(&klass.pad_template("sink").unwrap())
            .chain_function(|pad, parent, buffer| {
                FecPayloader::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |imp| imp.sink_chain(pad, buffer),
                )
            })
            .chain_list_function(|pad, parent, list| {
                FecPayloader::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |imp| imp.sink_chain_list(pad, list),
                )
            })
            .event_function(|pad, parent, event| {
                FecPayloader::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.sink_event(pad, event),
                )
            })
            .flags(gst::PadFlags::PROXY_ALLOCATION)
            .build();
        let srcpad = gst::Pad::builder_from_template(&klass.pad_template("src").unwrap())
            .event_function(|pad, parent, event| {
                FecPayloader::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.src_event(pad, event),
                )
            })
            .build();
        FecPayloader {
            sinkpad,
            srcpad,
            settings: Mutex::new(Settings::default()),
            state: Mutex::new(None),
            push_lock: Mutex::new(()),
            carousel: Mutex::new(None),
            interrupt: Interrupt::default(),
            stats: Stats::default(),
            block: AtomicBool::new(false),
            block_timer: BlockTimer::default(),
            live: Mutex::new(None),
            timer_flow: Mutex::new(None),
        }
    }
}

impl ObjectImpl for FecPayloader {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let mut specs = Settings::param_specs();
            specs.push(
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("fanout-fec-payloader-stats, also posted on the bus every second while data flows: buffers-in, bytes-in, packets-out, blocks, source-packets, repair-packets, description-packets, padding-bytes, repair-requests, repair-requests-refused, carousel-rounds")
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

impl GstObjectImpl for FecPayloader {}

impl ElementImpl for FecPayloader {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "FEC payloader",
                "Codec/Payloader/Network",
                "Cuts a stream into source blocks and emits datagram-sized packets of fountain-code \
                 (RaptorQ, Reed-Solomon) symbols, any K(+ε) of which rebuild a block",
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
                    &gst::Caps::new_any(),
                )
                .unwrap(),
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &gst::Caps::new_empty_simple("application/x-fanout-fec"),
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
        match transition {
            gst::StateChange::ReadyToPaused => {
                self.start().map_err(|e| {
                    self.post_error_message(e);
                    gst::StateChangeError
                })?;
            }
            gst::StateChange::PausedToReady => {
                self.block_timer.stop();
                self.stop_carousel();
            }
            gst::StateChange::PlayingToPaused => self.block_timer.pause(),
            _ => (),
        }
        let ret = self.parent_change_state(transition)?;
        if transition == gst::StateChange::PausedToPlaying {
            // Asked now for a block begun while paused (it waits from now), else with the
            // next input.
            let live = self.ask_upstream_live();
            *self.live.lock().unwrap() = live.then_some(true);
            self.block_timer.play();
            if live {
                self.arm_block_timer();
            }
        }
        if transition == gst::StateChange::PausedToReady {
            self.stats.stopped(self.stats());
            *self.state.lock().unwrap() = None;
        }
        Ok(ret)
    }
}
