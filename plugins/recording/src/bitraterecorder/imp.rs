// SPDX-License-Identifier: MPL-2.0

//! `bitrate-recorder`: passes every buffer downstream unchanged while a
//! thread of its own writes it to a fanout store as it arrives.
//!
//! Lock order: none nested. `settings`, `running`, `segment` and `shared` are each taken
//! alone; ending a stream waits for the writing thread with no lock held.

use std::sync::{Arc, LazyLock, Mutex};

use fanout_element_kit::settings::{self as kit, Properties};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use crate::recording::{self, Blurbs, Msg, Recording, RecordingSettings, Shared};

pub static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "bitrate-recorder",
        gst::DebugColorFlags::empty(),
        Some("fanout recorder writing a stream to disk at its own bitrate"),
    )
});

pub struct BitrateRecorder {
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    settings: Mutex<RecordingSettings>,
    running: Mutex<Option<Recording>>,
    /// The input segment, to turn buffer times into running times.
    segment: Mutex<gst::FormattedSegment<gst::ClockTime>>,
    shared: Mutex<Arc<Shared>>,
}

impl BitrateRecorder {
    fn shared(&self) -> Arc<Shared> {
        self.shared.lock().unwrap().clone()
    }

    fn send(&self, msg: Msg) -> bool {
        self.running
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|r| r.send(msg))
    }

    fn sink_chain(
        &self,
        _pad: &gst::Pad,
        buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let meta = recording::record_meta(
            &self.segment.lock().unwrap(),
            &buffer,
            recording::arrival(self.obj().upcast_ref()),
        );
        let (handover, shared, policy) = {
            let mut running = self.running.lock().unwrap();
            let r = running.as_mut().ok_or(gst::FlowError::Flushing)?;
            (
                r.record(&buffer, meta)?,
                r.shared().clone(),
                r.on_disk_error(),
            )
        };
        // Told outside the lock: a bus handler may stop the pipeline.
        if handover.first_untimed && self.sinkpad.current_caps().is_none() {
            self.warn_untimed();
        }
        if let Some(backlog) = handover.overflow {
            Recording::report_overflow(self.obj().upcast_ref(), &shared, policy, backlog)?;
        }
        self.srcpad.push(buffer)
    }

    fn warn_untimed(&self) {
        gst::element_imp_warning!(
            self,
            gst::StreamError::Format,
            ("The input has neither caps nor timestamps: it is recorded as it arrives, and a file read at full speed plays back in a flash"),
            ["For a TS file, let tsparse stamp it from the PCR: filesrc ! tsparse set-timestamps=true ! bitrate-recorder"]
        );
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        use gst::EventView;
        gst::log!(CAT, obj = pad, "event {event:?}");
        match event.view() {
            EventView::Caps(c) => {
                self.send(Msg::Caps(c.caps().to_string()));
            }
            EventView::Tag(t) => {
                self.send(Msg::Tags(t.tag().to_string()));
            }
            EventView::Segment(s) => {
                // Byte segments (a file source) have no running time: times
                // then come from arrival.
                *self.segment.lock().unwrap() = s
                    .segment()
                    .downcast_ref::<gst::ClockTime>()
                    .cloned()
                    .unwrap_or_default();
            }
            EventView::Eos(_) => Recording::finish_stream(&self.running),
            _ => {}
        }
        gst::Pad::event_default(pad, Some(&*self.obj()), event)
    }

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        let Some(location) = settings.location.clone() else {
            return Err(gst::error_msg!(
                gst::ResourceError::NotFound,
                ("No location set: bitrate-recorder needs a directory to record into"),
                ["property location is unset or empty"]
            ));
        };
        let config = settings.config(location, settings.max_size_time, settings.max_size_bytes);
        let recording = Recording::start(self.obj().upcast_ref(), *CAT, &config)?;
        *self.shared.lock().unwrap() = recording.shared().clone();
        *self.running.lock().unwrap() = Some(recording);
        Ok(())
    }

    fn stop(&self) {
        let recording = self.running.lock().unwrap().take();
        if let Some(recording) = recording {
            recording.stop(self.obj().upcast_ref(), *CAT);
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for BitrateRecorder {
    const NAME: &'static str = "GstBitrateRecorder";
    type Type = super::BitrateRecorder;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        let templ = klass.pad_template("sink").unwrap();
        let sinkpad = gst::Pad::builder_from_template(&templ)
            .chain_function(|pad, parent, buffer| {
                BitrateRecorder::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |this| this.sink_chain(pad, buffer),
                )
            })
            .event_function(|pad, parent, event| {
                BitrateRecorder::catch_panic_pad_function(
                    parent,
                    || false,
                    |this| this.sink_event(pad, event),
                )
            })
            .flags(gst::PadFlags::PROXY_CAPS | gst::PadFlags::PROXY_ALLOCATION)
            .build();
        let templ = klass.pad_template("src").unwrap();
        let srcpad = gst::Pad::builder_from_template(&templ)
            .flags(gst::PadFlags::PROXY_CAPS | gst::PadFlags::PROXY_ALLOCATION)
            .build();
        BitrateRecorder {
            sinkpad,
            srcpad,
            settings: Mutex::new(RecordingSettings::default()),
            running: Mutex::new(None),
            segment: Mutex::new(gst::FormattedSegment::new()),
            shared: Mutex::new(Arc::new(Shared::new())),
        }
    }
}

impl ObjectImpl for BitrateRecorder {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let mut specs = RecordingSettings::param_specs(Blurbs {
                location: "Directory of the recording (created if missing). A recording already \
                           there is continued after its end",
                retention: "Keep at most this much of the recording, in ns (0 = keep all)",
                on_disk_error: "What a write error or a full disk does",
            });
            specs.push(
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb(
                        "fanout-bitrate-recorder-stats, also posted on the bus every second: \
                         bytes-in, buffers-in, bytes-written, buffers-written, \
                         bytes-not-recorded, input-bitrate and write-bitrate (bit/s), \
                         backlog-bytes, backlog-buffers, segments, store-bytes, store-time, \
                         syncs, recording",
                    )
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
        match pspec.name() {
            "stats" => self.shared().structure().to_value(),
            name => {
                let got = self.settings.lock().unwrap().get(name);
                kit::or_default(*CAT, &*self.obj(), pspec, got)
            }
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.add_pad(&self.sinkpad).unwrap();
        obj.add_pad(&self.srcpad).unwrap();
    }
}

impl GstObjectImpl for BitrateRecorder {}

impl ElementImpl for BitrateRecorder {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static ELEMENT_METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Bitrate recorder",
                "Generic/File",
                "Passes a stream on unchanged while writing it to disk at the rate it arrives. \
                 Store time follows the buffers' timestamps, else their arrival: to record a TS \
                 file at its own pace, stamp it from the PCR with \
                 filesrc ! tsparse set-timestamps=true ! bitrate-recorder",
                "The fanout developers",
            )
        });
        Some(&*ELEMENT_METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst::Caps::new_any();
            vec![
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &caps,
                )
                .unwrap(),
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &caps,
                )
                .unwrap(),
            ]
        });
        PAD_TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        if transition == gst::StateChange::NullToReady {
            // Open here, before any player in the same pipeline starts, so
            // the recording exists for a player that follows it.
            if let Err(err) = self.start() {
                self.post_error_message(err);
                return Err(gst::StateChangeError);
            }
        }
        let res = self.parent_change_state(transition);
        match transition {
            gst::StateChange::ReadyToNull => self.stop(),
            gst::StateChange::ReadyToPaused => {
                *self.segment.lock().unwrap() = gst::FormattedSegment::new();
            }
            _ => {}
        }
        if res.is_err() && transition == gst::StateChange::NullToReady {
            self.stop();
        }
        res
    }
}
