// SPDX-License-Identifier: MPL-2.0

//! `fec-payloader`: cuts the stream into source blocks and pushes datagram-sized packets of
//! output symbols (see docs/fec-format.md). The block logic lives in `fanout_fec::Sender`.

use std::sync::{LazyLock, Mutex};

use fanout_fec::{BufferMeta, Codec, Mode, Sender, SenderConfig};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use crate::{FecCodec, FecMode, REPAIR_REQUEST};

mod carousel;
mod repair;

use carousel::{Carousel, Interrupt};

pub static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "fec-payloader",
        gst::DebugColorFlags::empty(),
        Some("fanout FEC payloader: source blocks to fountain-coded packets"),
    )
});

use fanout_fec::sender::{
    DEFAULT_DESCRIPTION_INTERVAL, DEFAULT_MAX_BLOCK_TIME, DEFAULT_MAX_K, DEFAULT_REPAIR_PERCENT,
    DEFAULT_STREAM_WINDOW, DEFAULT_SYMBOL_SIZE,
};
const DEFAULT_CAROUSEL_BITRATE: u64 = 10_000_000;

#[derive(Debug, Clone)]
struct Settings {
    codec: FecCodec,
    mode: FecMode,
    symbol_size: u32,
    max_block_symbols: u32,
    max_block_time: u64,
    repair_percent: u32,
    flow: u32,
    first_repair_esi: u32,
    send_source: bool,
    window_blocks: u32,
    description_interval: u32,
    carousel_rounds: i32,
    carousel_bitrate: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            codec: FecCodec::RaptorQ,
            mode: FecMode::Stream,
            symbol_size: DEFAULT_SYMBOL_SIZE.into(),
            max_block_symbols: DEFAULT_MAX_K.into(),
            max_block_time: DEFAULT_MAX_BLOCK_TIME,
            repair_percent: DEFAULT_REPAIR_PERCENT,
            flow: 0,
            first_repair_esi: 0,
            send_source: true,
            window_blocks: 0,
            description_interval: DEFAULT_DESCRIPTION_INTERVAL,
            carousel_rounds: -1,
            carousel_bitrate: DEFAULT_CAROUSEL_BITRATE,
        }
    }
}

impl Settings {
    fn sender_config(&self) -> SenderConfig {
        let mode = match self.mode {
            FecMode::Stream => Mode::Stream,
            FecMode::Carousel => Mode::Carousel,
        };
        SenderConfig {
            flow: self.flow,
            codec: match self.codec {
                FecCodec::RaptorQ => Codec::RaptorQ,
                FecCodec::ReedSolomon => Codec::ReedSolomon,
                FecCodec::None => Codec::None,
            },
            symbol_size: self.symbol_size.min(u32::from(u16::MAX)) as u16,
            max_k: self.max_block_symbols.min(u32::from(u16::MAX)) as u16,
            repair_percent: self.repair_percent,
            mode,
            window: match (self.window_blocks, mode) {
                (0, Mode::Stream) => DEFAULT_STREAM_WINDOW,
                (n, _) => n as usize,
            },
            first_repair: self.first_repair_esi,
            send_source: self.send_source,
            description_interval: self.description_interval.max(1),
            max_block_time: self.max_block_time,
        }
    }
}

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
}

impl State {
    fn describe(&mut self) -> Result<(), String> {
        match self.caps.clone() {
            Some(caps) => self.sender.set_stream(caps, self.time_segment),
            None => Ok(()),
        }
    }
}

pub struct FecPayloader {
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    /// Statistics of the last run, readable after stopping.
    last_stats: Mutex<Option<gst::Structure>>,
    /// Serializes pushes from the streaming thread and from repair requests.
    push_lock: Mutex<()>,
    /// The rounds after EOS in carousel mode, run on the source pad's task.
    carousel: Mutex<Option<Carousel>>,
    /// Wakes the carousel task from its pacing wait when stopping or flushing.
    interrupt: Interrupt,
}

/// Packets as buffers, stamped with the running time of the input that completed them.
fn packet_buffers(
    packets: Vec<Vec<u8>>,
    pts: Option<gst::ClockTime>,
) -> impl Iterator<Item = gst::Buffer> {
    packets.into_iter().map(move |p| {
        let mut b = gst::Buffer::from_mut_slice(p);
        b.get_mut().unwrap().set_pts(pts);
        b
    })
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

    /// Takes input buffers under one lock and pushes their packets as one list.
    fn process<'a>(
        &self,
        buffers: impl Iterator<Item = &'a gst::BufferRef>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let _push = self.push_lock.lock().unwrap();
        let (list, repairs) = {
            let mut guard = self.state.lock().unwrap();
            let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
            if state.caps.is_none() {
                // Input without caps (a plain filesrc): described as such, output without caps.
                state.caps = Some(String::new());
                state
                    .describe()
                    .map_err(|_| gst::FlowError::NotNegotiated)?;
            }
            let mut packets = Vec::new();
            for buffer in buffers {
                self.take_buffer(state, buffer, &mut packets)?;
            }
            (packets, std::mem::take(&mut state.repairs))
        };
        if list.is_empty() && repairs.is_empty() {
            return Ok(gst::FlowSuccess::Ok);
        }
        self.ensure_segment()?;
        self.push_repairs(repairs)?;
        if list.is_empty() {
            return Ok(gst::FlowSuccess::Ok);
        }
        let list = gst::BufferList::from_iter(list);
        gst::trace!(CAT, imp = self, "pushing {} packets", list.len());
        self.srcpad.push_list(list)
    }

    fn take_buffer(
        &self,
        state: &mut State,
        buffer: &gst::BufferRef,
        out: &mut Vec<gst::Buffer>,
    ) -> Result<(), gst::FlowError> {
        let rt = |t: Option<gst::ClockTime>| t.and_then(|t| state.segment.to_running_time(t));
        let pts = rt(buffer.pts());
        let meta = BufferMeta {
            pts: pts.map(gst::ClockTime::nseconds),
            dts: rt(buffer.dts()).map(gst::ClockTime::nseconds),
            duration: buffer.duration().map(gst::ClockTime::nseconds),
            flags: buffer.flags().bits(),
        };
        let mut packets = Vec::new();
        let map = buffer.map_readable().map_err(|_| {
            gst::element_imp_error!(
                self,
                gst::StreamError::Failed,
                ["Cannot read an input buffer"]
            );
            gst::FlowError::Error
        })?;
        state.sender.push_buffer(&meta, &map, &mut packets);
        state.counters.buffers_in += 1;
        state.counters.bytes_in += map.len() as u64;
        state.counters.packets_out += packets.len() as u64;
        out.extend(packet_buffers(packets, pts));
        Ok(())
    }

    fn push_repairs(&self, repairs: Vec<gst::Buffer>) -> Result<gst::FlowSuccess, gst::FlowError> {
        if repairs.is_empty() {
            return Ok(gst::FlowSuccess::Ok);
        }
        let mut list = gst::BufferList::new_sized(repairs.len());
        list.get_mut().unwrap().extend(repairs);
        self.srcpad.push_list(list)
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
            let mut packets = Vec::new();
            state.sender.flush(&mut packets);
            state.counters.packets_out += packets.len() as u64;
            packet_buffers(packets, None).collect()
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
                ["Cannot describe the stream: {e}"]
            );
        }
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        use gst::EventView;
        gst::log!(CAT, obj = pad, "event {event:?}");
        match event.view() {
            EventView::Caps(c) => {
                if let Some(state) = self.state.lock().unwrap().as_mut() {
                    state.caps = Some(c.caps().to_string());
                }
                self.update_description();
                let caps = gst::Caps::builder("application/x-fanout-fec")
                    .field("flow", self.settings.lock().unwrap().flow)
                    .build();
                self.srcpad.push_event(gst::event::Caps::new(&caps))
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
                let _ = self.flush_block();
                match self.start_carousel(event) {
                    // The task sends EOS on after the rounds: upstream's thread returns now.
                    Ok(()) => true,
                    Err(event) => gst::Pad::event_default(pad, Some(&*self.obj()), event),
                }
            }
            EventView::FlushStart(_) => {
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
                gst::Pad::event_default(pad, Some(&*self.obj()), event)
            }
            // Packets carry their own timing; a gap in the input is no packet at all.
            EventView::Gap(_) => true,
            _ => gst::Pad::event_default(pad, Some(&*self.obj()), event),
        }
    }

    fn src_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        if let gst::EventView::CustomUpstream(e) = event.view() {
            if let Some(s) = e.structure().filter(|s| s.name() == REPAIR_REQUEST) {
                self.repair_request(s);
                return true;
            }
        }
        gst::Pad::event_default(pad, Some(&*self.obj()), event)
    }

    fn current_stats(&self) -> gst::Structure {
        let running = self.state.lock().unwrap().is_some();
        crate::live_or_last_stats(running, &self.last_stats, || self.stats())
    }

    fn stats(&self) -> gst::Structure {
        let guard = self.state.lock().unwrap();
        let mut s = gst::Structure::builder("application/x-fanout-fec-payloader-stats");
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
        });
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
            last_stats: Mutex::new(None),
            push_lock: Mutex::new(()),
            carousel: Mutex::new(None),
            interrupt: Interrupt::default(),
        }
    }
}

impl ObjectImpl for FecPayloader {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecEnum::builder_with_default("codec", FecCodec::RaptorQ)
                    .nick("Codec")
                    .blurb("Fountain code: raptorq (RFC 6330, rateless), reed-solomon (exactly any K, fixed recovery pool), none (source symbols only)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("mode", FecMode::Stream)
                    .nick("Mode")
                    .blurb("stream: each block once, as source plus repair symbols; carousel: kept blocks keep coming round with fresh repair symbols, for late joiners")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("symbol-size")
                    .nick("Symbol size")
                    .blurb("Bytes per symbol (T), a multiple of 8; one symbol per packet, which stays within a 1500-byte MTU up to 1408")
                    .minimum(8)
                    .maximum(fanout_fec::packet::MAX_SYMBOL_SIZE as u32)
                    .default_value(DEFAULT_SYMBOL_SIZE.into())
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-block-symbols")
                    .nick("Max block symbols")
                    .blurb("Source symbols per full block (K): larger blocks protect better and cost more latency and CPU")
                    .minimum(1)
                    .maximum(u32::from(fanout_fec::MAX_SOURCE_SYMBOLS))
                    .default_value(DEFAULT_MAX_K.into())
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("max-block-time")
                    .nick("Max block time")
                    .blurb("A block closes once its buffers span this long (ns; input with timestamps), or when full; 0 = only when full")
                    .default_value(DEFAULT_MAX_BLOCK_TIME)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("repair-percent")
                    .nick("Repair percent")
                    .blurb("Repair symbols sent with a full block, in % of its source symbols; smaller blocks get enough more to survive the same loss")
                    .maximum(1000)
                    .default_value(DEFAULT_REPAIR_PERCENT)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("flow")
                    .nick("Flow")
                    .blurb("Flow id carried in every packet, so several flows can share one transport")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("first-repair-esi")
                    .nick("First repair ESI")
                    .maximum(fanout_fec::sender::MAX_FIRST_REPAIR - 1)
                    .blurb("Index of the first repair symbol of each block: payloaders of one flow given disjoint ranges send symbols a receiver can merge")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("send-source")
                    .nick("Send source symbols")
                    .blurb("Send each block's source symbols; off for a payloader that adds repair symbols to another's")
                    .default_value(true)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("window-blocks")
                    .nick("Window blocks")
                    .blurb("Blocks kept after sending, to answer repair requests and to go round in carousel mode; 0 = 16 in stream mode, all in carousel mode")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("description-interval")
                    .nick("Description interval")
                    .blurb("Repeat the stream description (caps, codec parameters) every this many packets, for receivers joining late")
                    .minimum(1)
                    .default_value(DEFAULT_DESCRIPTION_INTERVAL)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecInt::builder("carousel-rounds")
                    .nick("Carousel rounds")
                    .blurb("Carousel mode: rounds over the kept blocks after the input ends, before EOS goes on (-1 = until stopped)")
                    .minimum(-1)
                    .default_value(-1)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("carousel-bitrate")
                    .nick("Carousel bitrate")
                    .blurb("Carousel mode: bits per second of the rounds after the input ends (0 = as fast as downstream takes them)")
                    .default_value(DEFAULT_CAROUSEL_BITRATE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("buffers-in, bytes-in, packets-out, blocks, source-packets, repair-packets, description-packets, padding-bytes, repair-requests, repair-requests-refused, carousel-rounds")
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        match pspec.name() {
            "codec" => s.codec = value.get().unwrap(),
            "mode" => s.mode = value.get().unwrap(),
            "symbol-size" => s.symbol_size = value.get().unwrap(),
            "max-block-symbols" => s.max_block_symbols = value.get().unwrap(),
            "max-block-time" => s.max_block_time = value.get().unwrap(),
            "repair-percent" => s.repair_percent = value.get().unwrap(),
            "flow" => s.flow = value.get().unwrap(),
            "first-repair-esi" => s.first_repair_esi = value.get().unwrap(),
            "send-source" => s.send_source = value.get().unwrap(),
            "window-blocks" => s.window_blocks = value.get().unwrap(),
            "description-interval" => s.description_interval = value.get().unwrap(),
            "carousel-rounds" => s.carousel_rounds = value.get().unwrap(),
            "carousel-bitrate" => s.carousel_bitrate = value.get().unwrap(),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        if pspec.name() == "stats" {
            return self.current_stats().to_value();
        }
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "codec" => s.codec.to_value(),
            "mode" => s.mode.to_value(),
            "symbol-size" => s.symbol_size.to_value(),
            "max-block-symbols" => s.max_block_symbols.to_value(),
            "max-block-time" => s.max_block_time.to_value(),
            "repair-percent" => s.repair_percent.to_value(),
            "flow" => s.flow.to_value(),
            "first-repair-esi" => s.first_repair_esi.to_value(),
            "send-source" => s.send_source.to_value(),
            "window-blocks" => s.window_blocks.to_value(),
            "description-interval" => s.description_interval.to_value(),
            "carousel-rounds" => s.carousel_rounds.to_value(),
            "carousel-bitrate" => s.carousel_bitrate.to_value(),
            other => unreachable!("unknown property {other}"),
        }
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
            gst::StateChange::PausedToReady => self.stop_carousel(),
            _ => (),
        }
        let ret = self.parent_change_state(transition)?;
        if transition == gst::StateChange::PausedToReady {
            *self.last_stats.lock().unwrap() = Some(self.stats());
            *self.state.lock().unwrap() = None;
        }
        Ok(ret)
    }
}
