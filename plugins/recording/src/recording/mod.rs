// SPDX-License-Identifier: MPL-2.0

//! The writing path every element that records shares: a store opened (and repaired) at
//! start, a thread of its own that writes buffers as they arrive and makes them durable every
//! flush interval, a bounded backlog, and the `on-disk-error` policy. The streaming thread
//! only hands buffers over, so a slow disk never stalls it.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use fanout_store::{RecordMeta, StoreClock, Writer, WriterConfig};
use gst::glib;
use gst::prelude::*;

mod settings;
mod writer_thread;

pub use settings::{Blurbs, RecordingSettings};
pub use writer_thread::{Msg, Shared};

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

pub const DEFAULT_FLUSH_INTERVAL: u64 = 250_000_000;
pub const DEFAULT_MAX_BACKLOG_BYTES: u64 = 64 << 20;

/// What a recording is started with (from the element's properties).
#[derive(Debug, Clone)]
pub struct RecordingConfig {
    pub location: PathBuf,
    pub flush_interval: u64,
    pub store: WriterConfig,
    pub max_backlog_bytes: u64,
    pub on_disk_error: OnDiskError,
}

/// What handing one buffer over found, for the caller to tell outside its locks (a bus
/// handler may stop the pipeline).
#[derive(Debug, Default)]
pub struct Handover {
    /// The backlog was full (`max-backlog-bytes`): the recording stops, as the policy says.
    pub overflow: Option<u64>,
    /// The first buffer without timestamps arrived.
    pub first_untimed: bool,
    /// The buffer's store time (whether or not it could be recorded).
    pub st: u64,
}

/// A recording in progress: `bitrate-recorder` runs one from NULL→READY to READY→NULL,
/// `offset-tee` from READY→PAUSED to PAUSED→READY.
pub struct Recording {
    tx: Sender<Msg>,
    thread: JoinHandle<()>,
    shared: Arc<Shared>,
    max_backlog_bytes: u64,
    on_disk_error: OnDiskError,
    untimed_seen: bool,
    /// Run here, so the streaming thread knows each buffer's store time as it hands it over.
    clock: StoreClock,
}

impl Recording {
    /// Opens the store (cutting a torn tail, said on the bus) and starts the writing thread.
    /// The writing thread posts `element`'s `stats` property every second and reports disk
    /// errors against its `location`.
    pub fn start(
        element: &gst::Element,
        cat: gst::DebugCategory,
        config: &RecordingConfig,
    ) -> Result<Recording, gst::ErrorMessage> {
        let location = &config.location;
        let mut writer = Writer::open(location, config.store).map_err(|e| {
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
            gst::element_warning!(
                element,
                gst::ResourceError::Read,
                ("Repaired recording {}", location.display()),
                ["{}", warning]
            );
        }
        for notice in writer.take_notices() {
            gst::element_info!(
                element,
                gst::ResourceError::Read,
                ("Kept an earlier recording in {}", location.display()),
                ["{}", notice]
            );
        }
        gst::info!(
            cat,
            obj = element,
            "recording into {} ({} segments there already)",
            location.display(),
            writer.segment_count()
        );
        let shared = Arc::new(Shared::new());
        shared.update_store(&writer);
        let clock = writer.store_clock();
        let (tx, rx) = mpsc::channel();
        let weak = element.downgrade();
        let thread_config = writer_thread::Config {
            flush_interval: Duration::from_nanos(config.flush_interval.max(1_000_000)),
            on_disk_error: config.on_disk_error,
            cat,
        };
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("fanout-recorder".into())
            .spawn(move || writer_thread::run(writer, rx, thread_shared, weak, thread_config))
            .map_err(|e| {
                gst::error_msg!(
                    gst::CoreError::Failed,
                    ("Could not start recording"),
                    ["cannot start the writing thread: {}", e]
                )
            })?;
        Ok(Recording {
            tx,
            thread,
            shared,
            max_backlog_bytes: config.max_backlog_bytes,
            on_disk_error: config.on_disk_error,
            untimed_seen: false,
            clock,
        })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn on_disk_error(&self) -> OnDiskError {
        self.on_disk_error
    }

    /// Hands a reference to `buffer` (not a copy) to the writing thread, unless the
    /// recording stopped or the backlog is full. `Err` once a disk error failed the stream.
    pub fn record(
        &mut self,
        buffer: &gst::Buffer,
        mut meta: RecordMeta,
    ) -> Result<Handover, gst::FlowError> {
        let st = self.clock.next(&meta);
        meta.st = Some(st);
        let shared = &self.shared;
        if shared.failed.load(Ordering::Relaxed) {
            return Err(gst::FlowError::Error);
        }
        let size = buffer.size() as u64;
        let first_untimed = !self.untimed_seen && buffer.pts().is_none() && buffer.dts().is_none();
        self.untimed_seen |= first_untimed;
        shared.bytes_in.fetch_add(size, Ordering::Relaxed);
        shared.buffers_in.fetch_add(1, Ordering::Relaxed);
        let backlog = shared.backlog_bytes.load(Ordering::Relaxed);
        let overflows =
            self.max_backlog_bytes > 0 && backlog.saturating_add(size) > self.max_backlog_bytes;
        let mut recorded = false;
        if shared.recording.load(Ordering::Relaxed) && !overflows {
            shared.backlog_bytes.fetch_add(size, Ordering::Relaxed);
            shared.backlog_buffers.fetch_add(1, Ordering::Relaxed);
            recorded = self.tx.send(Msg::Buffer(buffer.clone(), meta)).is_ok();
            if !recorded {
                shared.backlog_bytes.fetch_sub(size, Ordering::Relaxed);
                shared.backlog_buffers.fetch_sub(1, Ordering::Relaxed);
            }
        }
        if !recorded {
            shared.bytes_not_recorded.fetch_add(size, Ordering::Relaxed);
        }
        Ok(Handover {
            overflow: overflows.then_some(backlog),
            first_untimed,
            st,
        })
    }

    /// Tells an overflow found by [`Recording::record`]; `Err` if the policy fails the stream.
    pub fn report_overflow(
        element: &gst::Element,
        shared: &Shared,
        policy: OnDiskError,
        backlog: u64,
    ) -> Result<(), gst::FlowError> {
        writer_thread::report_disk_error(
            element,
            shared,
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
        Ok(())
    }

    /// Caps and tags go into the store's index, in order with the buffers.
    pub fn send(&self, msg: Msg) -> bool {
        self.tx.send(msg).is_ok()
    }

    /// Closes the stream of the recording in `slot`, if there is one, and waits until it is
    /// durable (not holding the lock), so EOS goes on only once the recording is complete on
    /// disk and any disk error is on the bus before it.
    pub fn finish_stream(slot: &Mutex<Option<Recording>>) {
        let Some(tx) = slot.lock().unwrap().as_ref().map(|r| r.tx.clone()) else {
            return;
        };
        let (done, wait) = mpsc::sync_channel(1);
        if tx.send(Msg::Eos(done)).is_ok() {
            let _ = wait.recv();
        }
    }

    /// Writes what is queued, closes the store and ends the thread.
    pub fn stop(self, element: &gst::Element, cat: gst::DebugCategory) {
        drop(self.tx);
        if self.thread.join().is_err() {
            gst::element_error!(
                element,
                gst::LibraryError::Failed,
                ("The recording stopped abnormally: what was queued may not be on disk"),
                ["the writing thread panicked"]
            );
            gst::error!(cat, obj = element, "the writing thread panicked");
        }
    }
}

/// When a buffer arrives, as running time; `None` before the element is PLAYING. Going to
/// PLAYING, a pipeline gives its elements the clock before their base time, so a running time
/// read then is the clock's absolute time: store time would jump by the machine's uptime.
pub fn arrival(element: &gst::Element) -> Option<gst::ClockTime> {
    if element.current_state() != gst::State::Playing {
        return None;
    }
    element.current_running_time()
}

/// The record of `buffer`: its times as running times of `segment`, and its arrival.
pub fn record_meta(
    segment: &gst::FormattedSegment<gst::ClockTime>,
    buffer: &gst::BufferRef,
    arrival: Option<gst::ClockTime>,
) -> RecordMeta {
    let rt = |t: Option<gst::ClockTime>| {
        t.and_then(|t| segment.to_running_time(t))
            .map(gst::ClockTime::nseconds)
    };
    RecordMeta {
        st: None,
        pts: rt(buffer.pts()),
        dts: rt(buffer.dts()),
        duration: buffer.duration().map(gst::ClockTime::nseconds),
        arrival: arrival.map(gst::ClockTime::nseconds),
        flags: buffer.flags().bits(),
    }
}
