// SPDX-License-Identifier: MPL-2.0

//! `offset-tee`: one input, any number of outputs, each running its own offset behind the
//! input. The input goes through the same writing path as `bitrate-recorder` into a store;
//! recent buffers also stay in a small in-memory window. Each output is a source pad with a
//! task of its own (see `output.rs`), so no output ever holds up the input or another.
//!
//! Lock order: a pad's `output`, then `input` (an idle task waits on `data` with `output`
//! held), then the pad's `settings`, `wait` or `stats`. The element's `settings` and `store`
//! are read and released before a step takes `output`; `segment`, `recording` and `input`
//! are taken one after the other on the streaming thread, never nested.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex};

use fanout_element_kit::pads;
use fanout_element_kit::settings::{self as kit, Properties};
use fanout_element_kit::stats::Stats;
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::input::{window_record, Anchor, Held, Input};
use super::output::InputView;
use super::pad::OffsetTeeSrcPad;
use super::settings::Settings;
use super::CAT;
use crate::recording::{self, Msg, Recording};

/// The store keeps the largest offset plus this much, when no retention is set.
const RETENTION_MARGIN: u64 = 10_000_000_000;

/// The store in use: `location`, or a private directory removed on stop.
struct Store {
    dir: Arc<Path>,
    _private: Option<tempfile::TempDir>,
}

pub struct OffsetTee {
    sinkpad: gst::Pad,
    settings: Mutex<Settings>,
    input: Mutex<Input>,
    /// Wakes the outputs when input arrives.
    data: Condvar,
    recording: Mutex<Option<Recording>>,
    store: Mutex<Option<Store>>,
    segment: Mutex<gst::FormattedSegment<gst::ClockTime>>,
    stopping: AtomicBool,
    stats: Stats,
}

impl OffsetTee {
    /// One step of `pad`'s task, on what the element holds now.
    fn output_step(&self, pad: &OffsetTeeSrcPad) {
        let (sync, eos_mode) = {
            let s = self.settings.lock().unwrap();
            (s.sync, s.eos_mode)
        };
        let obj = self.obj();
        let view = InputView {
            element: obj.upcast_ref(),
            sinkpad: &self.sinkpad,
            input: &self.input,
            data: &self.data,
            location: self.store.lock().unwrap().as_ref().map(|s| s.dir.clone()),
            sync,
            eos_mode,
            stopping: &self.stopping,
        };
        view.output_step(pad);
    }

    fn src_pads(&self) -> Vec<OffsetTeeSrcPad> {
        self.obj()
            .src_pads()
            .into_iter()
            .filter_map(|p| p.downcast::<OffsetTeeSrcPad>().ok())
            .collect()
    }

    fn sink_chain(&self, buffer: gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let arrival = recording::arrival(self.obj().upcast_ref());
        let meta = recording::record_meta(&self.segment.lock().unwrap(), &buffer, arrival);
        let (handover, shared, policy) = {
            let mut recording = self.recording.lock().unwrap();
            let r = recording.as_mut().ok_or(gst::FlowError::Flushing)?;
            (
                r.record(&buffer, meta)?,
                r.shared().clone(),
                r.on_disk_error(),
            )
        };
        if let Some(backlog) = handover.overflow {
            Recording::report_overflow(self.obj().upcast_ref(), &shared, policy, backlog)?;
        }
        let size = buffer.size();
        let st = handover.st;
        let mut input = self.input.lock().unwrap();
        let position = input.positions.next(st);
        if input.anchor.is_none() {
            let arrival = arrival.map_or(0, gst::ClockTime::nseconds);
            let timestamp = meta.dts.or(meta.pts).unwrap_or(arrival);
            input.anchor = Some(Anchor::new(arrival, st, timestamp));
        }
        let held = Held {
            buffer,
            rec: window_record(st, &meta, size),
            position,
            caps: input.caps.clone(),
        };
        input.window.push(position, size, held);
        drop(input);
        self.data.notify_all();
        Ok(gst::FlowSuccess::Ok)
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        use gst::EventView;
        gst::log!(CAT, obj = pad, "event {event:?}");
        match event.view() {
            EventView::Caps(c) => {
                let caps = c.caps().to_string();
                self.send(Msg::Caps(caps.clone()));
                self.input.lock().unwrap().caps = Some(caps.into());
                true
            }
            EventView::Tag(t) => {
                self.send(Msg::Tags(t.tag().to_string()));
                true
            }
            EventView::Segment(s) => {
                *self.segment.lock().unwrap() = s
                    .segment()
                    .downcast_ref::<gst::ClockTime>()
                    .cloned()
                    .unwrap_or_default();
                true
            }
            // Each output sends its own stream-start, caps and segment, at its own time.
            EventView::StreamStart(_) => true,
            EventView::CustomDownstream(e)
                if e.structure()
                    .is_some_and(|s| s.name() == crate::OFFSETS_EVENT) =>
            {
                super::offsets::apply(self.obj().upcast_ref(), e.structure().unwrap());
                true
            }
            EventView::Eos(_) => {
                Recording::finish_stream(&self.recording);
                {
                    let mut input = self.input.lock().unwrap();
                    input.ended = true;
                    input.last_st = input.window.newest().map(|e| e.position.st);
                }
                self.data.notify_all();
                // Outputs waiting for a buffer's time look again: in `end` mode they stop.
                for p in self.src_pads() {
                    p.imp().wake();
                }
                true
            }
            EventView::FlushStart(_) => {
                let ret = gst::Pad::event_default(pad, Some(&*self.obj()), event);
                for p in self.src_pads() {
                    p.imp().wake();
                    let _ = p.pause_task();
                }
                ret
            }
            EventView::FlushStop(_) => {
                *self.input.lock().unwrap() = Input::default();
                let ret = gst::Pad::event_default(pad, Some(&*self.obj()), event);
                for p in self.src_pads() {
                    p.imp().output.lock().unwrap().reset();
                    self.start_output(&p);
                }
                ret
            }
            _ => gst::Pad::event_default(pad, Some(&*self.obj()), event),
        }
    }

    fn send(&self, msg: Msg) {
        if let Some(r) = self.recording.lock().unwrap().as_ref() {
            r.send(msg);
        }
    }

    fn start_output(&self, pad: &OffsetTeeSrcPad) {
        let weak_tee = self.obj().downgrade();
        let weak_pad = pad.downgrade();
        let res = pad.start_task(move || {
            if let (Some(tee), Some(pad)) = (weak_tee.upgrade(), weak_pad.upgrade()) {
                tee.imp().output_step(&pad);
            }
        });
        if let Err(e) = res {
            gst::element_imp_error!(
                self,
                gst::CoreError::Thread,
                ("Cannot start output {}", pad.name()),
                ["cannot start its task: {e}"]
            );
        }
    }

    fn stop_output(&self, pad: &OffsetTeeSrcPad) {
        pad.imp().wake();
        self.data.notify_all();
        let _ = pad.stop_task();
    }

    /// Retention that follows the largest offset, unless `max-size-*` is set.
    fn retention(&self) -> (u64, u64) {
        let s = self.settings.lock().unwrap().recording.clone();
        if s.max_size_time > 0 || s.max_size_bytes > 0 {
            return (s.max_size_time, s.max_size_bytes);
        }
        drop(s);
        let largest = self
            .src_pads()
            .iter()
            .map(|p| p.imp().settings.lock().unwrap().offset)
            .max()
            .unwrap_or(0);
        (largest.saturating_add(RETENTION_MARGIN), 0)
    }

    /// An output's offset changed (or an output came or went): retention follows.
    fn offsets_changed(&self) {
        let (max_size_time, max_size_bytes) = self.retention();
        self.send(Msg::Retention {
            max_size_time,
            max_size_bytes,
        });
    }

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().recording.clone();
        let store = match settings.location.clone() {
            Some(dir) => Store {
                dir: dir.into(),
                _private: None,
            },
            None => {
                let private = tempfile::Builder::new()
                    .prefix("fanout-offset-tee-")
                    .tempdir()
                    .map_err(|e| {
                        gst::error_msg!(
                            gst::ResourceError::OpenWrite,
                            ("Cannot make a private directory for the store"),
                            ["{e}"]
                        )
                    })?;
                Store {
                    dir: private.path().into(),
                    _private: Some(private),
                }
            }
        };
        let (max_size_time, max_size_bytes) = self.retention();
        let mut config = settings.config(store.dir.to_path_buf(), max_size_time, max_size_bytes);
        // Its own retention never eats a recording it was pointed at.
        config.store.keep_existing = settings.max_size_time == 0 && settings.max_size_bytes == 0;
        let recording = Recording::start(self.obj().upcast_ref(), *CAT, &config)?;
        *self.store.lock().unwrap() = Some(store);
        let stored_before = recording
            .shared()
            .segments
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0;
        *self.input.lock().unwrap() = Input {
            stored_before,
            ..Input::default()
        };
        *self.recording.lock().unwrap() = Some(recording);
        self.stopping.store(false, Ordering::SeqCst);
        Ok(())
    }

    fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        for p in self.src_pads() {
            self.stop_output(&p);
            p.imp().output.lock().unwrap().reset();
        }
        self.stats.stopped(self.live_stats());
        let recording = self.recording.lock().unwrap().take();
        if let Some(recording) = recording {
            recording.stop(self.obj().upcast_ref(), *CAT);
        }
        // A private store goes with it.
        *self.store.lock().unwrap() = None;
    }

    /// Live while recording, the last run's once stopped.
    fn stats(&self) -> gst::Structure {
        let running = self.recording.lock().unwrap().is_some();
        self.stats.read(running, || self.live_stats())
    }

    fn live_stats(&self) -> gst::Structure {
        let recording = self.recording.lock().unwrap();
        let Some(r) = recording.as_ref() else {
            return gst::Structure::new_empty("fanout-offset-tee-stats");
        };
        let store = r.shared().structure();
        drop(recording);
        let mut s = gst::Structure::builder("fanout-offset-tee-stats");
        for field in [
            "bytes-in",
            "buffers-in",
            "bytes-written",
            "store-bytes",
            "store-time",
            "segments",
            "recording",
        ] {
            if let Ok(v) = store.value(field) {
                s = s.field(field, v.clone());
            }
        }
        for p in self.src_pads() {
            let offset = p.imp().settings.lock().unwrap().offset;
            let o = *p.imp().stats.lock().unwrap();
            s = s.field(
                p.name().as_str(),
                gst::Structure::builder("output")
                    .field("offset", offset)
                    .field("position", o.position)
                    .field("lag", o.lag)
                    .field("buffers", o.buffers)
                    .field("bytes", o.bytes)
                    .field("disconts", o.disconts)
                    .field("loops", o.loops)
                    .field("from-store", o.from_store)
                    .build(),
            );
        }
        s.build()
    }
}

#[glib::object_subclass]
impl ObjectSubclass for OffsetTee {
    const NAME: &'static str = "GstFanoutOffsetTee";
    type Type = super::OffsetTee;
    type ParentType = gst::Element;
    type Interfaces = (gst::ChildProxy,);

    fn with_class(klass: &Self::Class) -> Self {
        let sinkpad = gst::Pad::builder_from_template(&klass.pad_template("sink").unwrap())
            .chain_function(|_pad, parent, buffer| {
                OffsetTee::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |tee| tee.sink_chain(buffer),
                )
            })
            .event_function(|pad, parent, event| {
                OffsetTee::catch_panic_pad_function(
                    parent,
                    || false,
                    |tee| tee.sink_event(pad, event),
                )
            })
            .build();
        OffsetTee {
            sinkpad,
            settings: Mutex::new(Settings::default()),
            input: Mutex::new(Input::default()),
            data: Condvar::new(),
            recording: Mutex::new(None),
            store: Mutex::new(None),
            segment: Mutex::new(gst::FormattedSegment::new()),
            stopping: AtomicBool::new(false),
            stats: Stats::default(),
        }
    }
}

impl ObjectImpl for OffsetTee {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let mut specs = Settings::param_specs();
            specs.push(
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("fanout-offset-tee-stats, also posted on the bus every second: bytes-in, buffers-in, bytes-written, store-bytes, store-time, segments, recording; per output (a field named after the pad): offset, position (store time), lag (ns behind schedule), buffers, bytes, disconts, loops, from-store")
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
            "stats" => Ok(self.stats().to_value()),
            name => self.settings.lock().unwrap().get(name),
        };
        kit::or_default(*CAT, &*self.obj(), pspec, got)
    }

    fn constructed(&self) {
        self.parent_constructed();
        self.obj().add_pad(&self.sinkpad).unwrap();
    }
}

impl GstObjectImpl for OffsetTee {}

/// The outputs as children, so `gst-launch-1.0` sets their properties:
/// `offset-tee name=t src_1::offset=3600000000000`.
impl ChildProxyImpl for OffsetTee {
    fn child_by_index(&self, index: u32) -> Option<glib::Object> {
        pads::child_by_index(self.obj().upcast_ref(), gst::PadDirection::Src, index)
    }

    fn children_count(&self) -> u32 {
        pads::children_count(self.obj().upcast_ref(), gst::PadDirection::Src)
    }

    fn child_by_name(&self, name: &str) -> Option<glib::Object> {
        pads::child_by_name(self.obj().upcast_ref(), name)
    }
}

impl ElementImpl for OffsetTee {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Offset tee",
                "Generic",
                "One input, any number of outputs each delayed by its own offset (pad property \
                 offset, changeable while playing; loop after the input ends), backed by a \
                 store on disk, not RAM",
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
                gst::PadTemplate::with_gtype(
                    "src_%u",
                    gst::PadDirection::Src,
                    gst::PadPresence::Request,
                    &gst::Caps::new_any(),
                    OffsetTeeSrcPad::static_type(),
                )
                .unwrap(),
            ]
        });
        TEMPLATES.as_ref()
    }

    fn request_new_pad(
        &self,
        templ: &gst::PadTemplate,
        name: Option<&str>,
        _caps: Option<&gst::Caps>,
    ) -> Option<gst::Pad> {
        let obj = self.obj();
        let (name, _) = pads::request_name(obj.upcast_ref(), "src_", name, u32::MAX)?;
        let pad = gst::PadBuilder::<OffsetTeeSrcPad>::from_template(templ)
            .name(name.as_str())
            .build();
        // Retention follows the offsets.
        let tee = obj.downgrade();
        pad.connect_notify(Some("offset"), move |_, _| {
            if let Some(tee) = tee.upgrade() {
                tee.imp().offsets_changed();
            }
        });
        if !pads::add_requested(obj.upcast_ref(), &pad) {
            return None;
        }
        let running =
            obj.current_state() >= gst::State::Paused || obj.pending_state() >= gst::State::Paused;
        if running && self.recording.lock().unwrap().is_some() {
            // Never `input` then `output`: the tasks take them the other way round.
            let late_join = self.input.lock().unwrap().anchor.is_some();
            pad.imp().output.lock().unwrap().late_join = late_join;
            self.start_output(&pad);
        }
        self.offsets_changed();
        Some(pad.upcast())
    }

    fn release_pad(&self, pad: &gst::Pad) {
        if let Some(p) = pad.downcast_ref::<OffsetTeeSrcPad>() {
            self.stop_output(p);
        }
        pads::remove_requested(self.obj().upcast_ref(), pad);
        self.offsets_changed();
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        match transition {
            gst::StateChange::ReadyToPaused => self.start().map_err(|e| {
                self.post_error_message(e);
                gst::StateChangeError
            })?,
            gst::StateChange::PausedToReady => self.stop(),
            _ => (),
        }
        let mut ret = self.parent_change_state(transition)?;
        if transition == gst::StateChange::ReadyToPaused {
            for p in self.src_pads() {
                self.start_output(&p);
            }
        }
        // Outputs release their buffers on the clock, as a live source does: a delayed output
        // has nothing to preroll with, and its sink must not hold the others back.
        if matches!(
            transition,
            gst::StateChange::ReadyToPaused | gst::StateChange::PlayingToPaused
        ) {
            ret = gst::StateChangeSuccess::NoPreroll;
        }
        Ok(ret)
    }
}
