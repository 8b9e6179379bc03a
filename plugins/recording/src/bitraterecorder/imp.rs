// SPDX-License-Identifier: MPL-2.0

//! `bitrate-recorder`: passes every buffer downstream unchanged while a
//! thread of its own writes it to a fanout store as it arrives.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, LazyLock, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use fanout_store::{RecordMeta, Writer, WriterConfig};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::writer_thread::{self, Msg, Shared};

pub static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "bitrate-recorder",
        gst::DebugColorFlags::empty(),
        Some("fanout recorder writing a stream to disk at its own bitrate"),
    )
});

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstFanoutOnDiskError")]
pub enum OnDiskError {
    #[enum_value(
        name = "Stop recording, post a warning, keep the stream flowing downstream",
        nick = "stop-recording"
    )]
    StopRecording = 0,
    #[enum_value(name = "Post an error: the pipeline fails", nick = "error")]
    Error = 1,
}

const DEFAULT_FLUSH_INTERVAL: u64 = 250_000_000;
const DEFAULT_MAX_SEGMENT_TIME: u64 = 10_000_000_000;
const DEFAULT_MAX_BACKLOG_BYTES: u64 = 64 << 20;

#[derive(Debug, Clone)]
struct Settings {
    location: Option<PathBuf>,
    flush_interval: u64,
    max_segment_time: u64,
    max_size_time: u64,
    max_size_bytes: u64,
    max_backlog_bytes: u64,
    on_disk_error: OnDiskError,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            location: None,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            max_segment_time: DEFAULT_MAX_SEGMENT_TIME,
            max_size_time: 0,
            max_size_bytes: 0,
            max_backlog_bytes: DEFAULT_MAX_BACKLOG_BYTES,
            on_disk_error: OnDiskError::StopRecording,
        }
    }
}

/// What the streaming thread needs per buffer, under one lock. Settings
/// are fixed from READY on, so the ones used here are copied in at start.
struct Running {
    tx: Sender<Msg>,
    thread: JoinHandle<()>,
    shared: Arc<Shared>,
    max_backlog_bytes: u64,
    on_disk_error: OnDiskError,
    /// Whether input without caps or timestamps was seen (and said once on the bus).
    untimed_seen: bool,
}

pub struct BitrateRecorder {
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    settings: Mutex<Settings>,
    running: Mutex<Option<Running>>,
    /// The input segment, to turn buffer times into running times.
    segment: Mutex<gst::FormattedSegment<gst::ClockTime>>,
    shared: Mutex<Arc<Shared>>,
}

impl BitrateRecorder {
    fn shared(&self) -> Arc<Shared> {
        self.shared.lock().unwrap().clone()
    }

    fn send(&self, msg: Msg) -> bool {
        match &*self.running.lock().unwrap() {
            Some(r) => r.tx.send(msg).is_ok(),
            None => false,
        }
    }

    fn sink_chain(
        &self,
        _pad: &gst::Pad,
        buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let (overflow, untimed) = {
            let mut running = self.running.lock().unwrap();
            let Some(r) = running.as_mut() else {
                return Err(gst::FlowError::Flushing);
            };
            let shared = &r.shared;
            if shared.failed.load(Ordering::Relaxed) {
                return Err(gst::FlowError::Error);
            }
            let size = buffer.size() as u64;
            let untimed = !r.untimed_seen && buffer.pts().is_none() && buffer.dts().is_none();
            r.untimed_seen |= untimed;
            let untimed = untimed && self.sinkpad.current_caps().is_none();
            shared.bytes_in.fetch_add(size, Ordering::Relaxed);
            shared.buffers_in.fetch_add(1, Ordering::Relaxed);
            let backlog = shared.backlog_bytes.load(Ordering::Relaxed);
            let overflows = r.max_backlog_bytes > 0 && backlog + size > r.max_backlog_bytes;
            let mut recorded = false;
            if shared.recording.load(Ordering::Relaxed) && !overflows {
                shared.backlog_bytes.fetch_add(size, Ordering::Relaxed);
                shared.backlog_buffers.fetch_add(1, Ordering::Relaxed);
                // A reference, not a copy: the same buffer goes downstream.
                recorded =
                    r.tx.send(Msg::Buffer(buffer.clone(), self.meta(&buffer)))
                        .is_ok();
                if !recorded {
                    shared.backlog_bytes.fetch_sub(size, Ordering::Relaxed);
                    shared.backlog_buffers.fetch_sub(1, Ordering::Relaxed);
                }
            }
            if !recorded {
                shared.bytes_not_recorded.fetch_add(size, Ordering::Relaxed);
            }
            (
                overflows.then(|| (shared.clone(), r.on_disk_error, backlog)),
                untimed,
            )
        };
        if untimed {
            self.warn_untimed();
        }
        // Told outside the lock: a bus handler may stop the pipeline.
        if let Some((shared, policy, backlog)) = overflow {
            writer_thread::report_disk_error(
                &self.obj(),
                &shared,
                policy,
                &format!(
                    "the disk cannot keep up with the stream: {backlog} bytes wait to be \
                     written (max-backlog-bytes)"
                ),
                false,
            );
            if shared.failed.load(Ordering::Relaxed) {
                return Err(gst::FlowError::Error);
            }
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

    fn meta(&self, buffer: &gst::BufferRef) -> RecordMeta {
        let segment = self.segment.lock().unwrap();
        let rt = |t: Option<gst::ClockTime>| {
            t.and_then(|t| segment.to_running_time(t))
                .map(gst::ClockTime::nseconds)
        };
        RecordMeta {
            pts: rt(buffer.pts()),
            dts: rt(buffer.dts()),
            duration: buffer.duration().map(gst::ClockTime::nseconds),
            arrival: self
                .obj()
                .current_running_time()
                .map(gst::ClockTime::nseconds),
            flags: buffer.flags().bits(),
        }
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
            EventView::Eos(_) => {
                let (done, wait) = mpsc::sync_channel(1);
                if self.send(Msg::Eos(done)) {
                    // The recording is complete on disk before EOS moves on,
                    // and any disk error is on the bus before it.
                    let _ = wait.recv();
                }
            }
            _ => {}
        }
        gst::Pad::event_default(pad, Some(&*self.obj()), event)
    }

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        let Some(location) = settings.location.clone() else {
            return Err(gst::error_msg!(
                gst::ResourceError::NotFound,
                ["No location set: bitrate-recorder needs a directory to record into"]
            ));
        };
        let config = WriterConfig {
            max_segment_time: settings.max_segment_time,
            max_size_time: settings.max_size_time,
            max_size_bytes: settings.max_size_bytes,
        };
        let mut writer = Writer::open(&location, config).map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::OpenWrite,
                (
                    "Could not open recording {} for writing",
                    location.display()
                ),
                ["{}", e]
            )
        })?;
        for warning in writer.take_warnings() {
            gst::element_imp_warning!(
                self,
                gst::ResourceError::Read,
                ("Repaired recording {}", location.display()),
                ["{}", warning]
            );
        }
        gst::info!(
            CAT,
            imp = self,
            "recording into {} ({} segments there already)",
            location.display(),
            writer.segment_count()
        );
        let shared = Arc::new(Shared::new());
        shared.update_store(&writer);
        *self.shared.lock().unwrap() = shared.clone();
        let (tx, rx) = mpsc::channel();
        let element = self.obj().downgrade();
        let config = writer_thread::Config {
            flush_interval: Duration::from_nanos(settings.flush_interval.max(1_000_000)),
            on_disk_error: settings.on_disk_error,
        };
        let thread = std::thread::Builder::new()
            .name("fanout-recorder".into())
            .spawn(move || writer_thread::run(writer, rx, shared, element, config))
            .map_err(|e| {
                gst::error_msg!(
                    gst::CoreError::Failed,
                    ["Could not start the writing thread: {}", e]
                )
            })?;
        *self.running.lock().unwrap() = Some(Running {
            tx,
            thread,
            shared: self.shared(),
            max_backlog_bytes: settings.max_backlog_bytes,
            untimed_seen: false,
            on_disk_error: settings.on_disk_error,
        });
        Ok(())
    }

    fn stop(&self) {
        let running = self.running.lock().unwrap().take();
        if let Some(Running { tx, thread, .. }) = running {
            drop(tx);
            // The thread writes what is queued, closes the store and ends.
            if thread.join().is_err() {
                gst::error!(CAT, imp = self, "the writing thread panicked");
            }
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
            settings: Mutex::new(Settings::default()),
            running: Mutex::new(None),
            segment: Mutex::new(gst::FormattedSegment::new()),
            shared: Mutex::new(Arc::new(Shared::new())),
        }
    }
}

impl ObjectImpl for BitrateRecorder {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("location")
                    .nick("Location")
                    .blurb(
                        "Directory of the recording (created if missing). A recording already \
                         there is continued after its end",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("flush-interval")
                    .nick("Flush interval")
                    .blurb(
                        "Make written data durable (fdatasync) at least this often, in ns; \
                         bounds what a power cut can lose",
                    )
                    .minimum(1_000_000)
                    .default_value(DEFAULT_FLUSH_INTERVAL)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("max-segment-time")
                    .nick("Max segment time")
                    .blurb(
                        "Start a new segment file at the first keyframe after this much time, \
                         in ns (0 = one segment). Retention removes whole segments",
                    )
                    .default_value(DEFAULT_MAX_SEGMENT_TIME)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("max-size-time")
                    .nick("Max size time")
                    .blurb("Keep at most this much of the recording, in ns (0 = keep all)")
                    .default_value(0)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("max-size-bytes")
                    .nick("Max size bytes")
                    .blurb("Keep at most this many bytes of the recording (0 = keep all)")
                    .default_value(0)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("max-backlog-bytes")
                    .nick("Max backlog bytes")
                    .blurb(
                        "Bytes allowed to wait for a slow disk before on-disk-error applies \
                         (0 = unlimited)",
                    )
                    .default_value(DEFAULT_MAX_BACKLOG_BYTES)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default(
                    "on-disk-error",
                    OnDiskError::StopRecording,
                )
                .nick("On disk error")
                .blurb("What a write error or a full disk does")
                .mutable_ready()
                .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb(
                        "bytes-in, bytes-written, input-bitrate and write-bitrate (bit/s), \
                         backlog-bytes, segments, store-bytes, store-time, recording; also \
                         posted as an element message every second",
                    )
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        match pspec.name() {
            "location" => s.location = crate::location_from_value(value),
            "flush-interval" => s.flush_interval = value.get().unwrap(),
            "max-segment-time" => s.max_segment_time = value.get().unwrap(),
            "max-size-time" => s.max_size_time = value.get().unwrap(),
            "max-size-bytes" => s.max_size_bytes = value.get().unwrap(),
            "max-backlog-bytes" => s.max_backlog_bytes = value.get().unwrap(),
            "on-disk-error" => s.on_disk_error = value.get().unwrap(),
            _ => unimplemented!(),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "location" => s
                .location
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned())
                .to_value(),
            "flush-interval" => s.flush_interval.to_value(),
            "max-segment-time" => s.max_segment_time.to_value(),
            "max-size-time" => s.max_size_time.to_value(),
            "max-size-bytes" => s.max_size_bytes.to_value(),
            "max-backlog-bytes" => s.max_backlog_bytes.to_value(),
            "on-disk-error" => s.on_disk_error.to_value(),
            "stats" => {
                drop(s);
                self.shared().structure().to_value()
            }
            _ => unimplemented!(),
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
