// SPDX-License-Identifier: MPL-2.0

//! The writing thread of a recording: takes buffers as they arrive, writes them
//! straight away (in batches when the disk is slower than the stream), makes
//! them durable every `flush-interval`, and reports statistics every second.
//! The streaming thread only hands buffers over, so a slow disk never
//! stalls the onward stream.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fanout_element_kit::stats::STATS_INTERVAL;
use fanout_store::{Item, RecordMeta, Writer};
use gst::glib;
use gst::prelude::*;

use super::OnDiskError;

pub enum Msg {
    Buffer(gst::Buffer, RecordMeta),
    Caps(String),
    Tags(String),
    /// New retention limits (0 = none), from the next write on.
    Retention {
        max_size_time: u64,
        max_size_bytes: u64,
    },
    /// End of stream: close and sync, then answer, so EOS goes downstream
    /// only once the recording is complete on disk.
    Eos(mpsc::SyncSender<()>),
}

/// Counters shared between the streaming thread, the writing thread and the
/// `stats` property.
#[derive(Default)]
pub struct Shared {
    pub bytes_in: AtomicU64,
    pub buffers_in: AtomicU64,
    pub bytes_written: AtomicU64,
    pub buffers_written: AtomicU64,
    /// Bytes handed over but not yet written.
    pub backlog_bytes: AtomicU64,
    pub backlog_buffers: AtomicU64,
    /// Bytes that reached the recorder after recording stopped.
    pub bytes_not_recorded: AtomicU64,
    pub segments: AtomicU64,
    pub store_bytes: AtomicU64,
    pub store_time: AtomicU64,
    pub syncs: AtomicU64,
    /// Cleared when a disk error stops the recording.
    pub recording: AtomicBool,
    /// Set when a disk error with `on-disk-error=error` must fail the stream.
    pub failed: AtomicBool,
    /// Input and write bitrates over the last second.
    pub rates: Mutex<Rates>,
}

impl Shared {
    pub fn new() -> Self {
        Shared {
            recording: AtomicBool::new(true),
            ..Default::default()
        }
    }

    /// Takes the store's size from the writer.
    pub fn update_store(&self, writer: &Writer) {
        self.segments
            .store(writer.segment_count() as u64, Ordering::Relaxed);
        self.store_bytes
            .store(writer.store_bytes(), Ordering::Relaxed);
        self.store_time
            .store(writer.store_span(), Ordering::Relaxed);
    }

    pub fn structure(&self) -> gst::Structure {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let Rates {
            input: input_bitrate,
            write: write_bitrate,
        } = *self.rates.lock().unwrap();
        gst::Structure::builder("fanout-bitrate-recorder-stats")
            .field("bytes-in", get(&self.bytes_in))
            .field("buffers-in", get(&self.buffers_in))
            .field("bytes-written", get(&self.bytes_written))
            .field("buffers-written", get(&self.buffers_written))
            .field("bytes-not-recorded", get(&self.bytes_not_recorded))
            .field("input-bitrate", input_bitrate)
            .field("write-bitrate", write_bitrate)
            .field("backlog-bytes", get(&self.backlog_bytes))
            .field("backlog-buffers", get(&self.backlog_buffers))
            .field("segments", get(&self.segments))
            .field("store-bytes", get(&self.store_bytes))
            .field("store-time", get(&self.store_time))
            .field("syncs", get(&self.syncs))
            .field("recording", self.recording.load(Ordering::Relaxed))
            .build()
    }
}

/// Bits per second.
#[derive(Debug, Default, Clone, Copy)]
pub struct Rates {
    pub input: u64,
    pub write: u64,
}

/// The counters at the last statistics, to compute rates from.
struct LastCounts {
    bytes_in: u64,
    bytes_written: u64,
    at: Instant,
}

pub struct Config {
    pub flush_interval: Duration,
    pub on_disk_error: OnDiskError,
    /// The element's debug category.
    pub cat: gst::DebugCategory,
}

/// Messages taken in one go; bounds the memory mapped at once.
const BATCH: usize = 4096;
const GATHER: Duration = Duration::from_millis(5);

pub fn run(
    mut writer: Writer,
    rx: Receiver<Msg>,
    shared: Arc<Shared>,
    element: glib::WeakRef<gst::Element>,
    config: Config,
) {
    let mut unsynced_since: Option<Instant> = None;
    let mut next_stats = Instant::now() + STATS_INTERVAL;
    let mut last_counts = LastCounts {
        bytes_in: 0,
        bytes_written: 0,
        at: Instant::now(),
    };
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let now = Instant::now();
        let sync_due = unsynced_since.map(|t| t + config.flush_interval);
        let deadline = sync_due.map_or(next_stats, |s| s.min(next_stats));
        match rx.recv_timeout(deadline.saturating_duration_since(now)) {
            Ok(msg) => {
                if !matches!(msg, Msg::Eos(_)) {
                    // Let a few milliseconds of stream gather: one writev()
                    // per interval instead of a wake-up and three system
                    // calls per buffer, and still steady at any scale that
                    // matters to a disk.
                    std::thread::sleep(GATHER);
                }
                batch.push(msg);
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(msg) => batch.push(msg),
                        Err(_) => break,
                    }
                }
                let mut recorded = false;
                if shared.recording.load(Ordering::Relaxed) {
                    match process(&mut writer, &batch, &shared) {
                        Ok(wrote) => {
                            recorded = true;
                            if wrote {
                                unsynced_since.get_or_insert_with(Instant::now);
                            }
                        }
                        Err(err) => disk_error(&element, &shared, &config, err),
                    }
                }
                release(&batch, &shared, recorded);
                for msg in batch.drain(..) {
                    if let Msg::Eos(done) = msg {
                        let _ = done.send(());
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let now = Instant::now();
        if sync_due.is_some_and(|due| now >= due) && shared.recording.load(Ordering::Relaxed) {
            unsynced_since = None;
            match writer.sync() {
                Ok(()) => {
                    shared.syncs.fetch_add(1, Ordering::Relaxed);
                }
                Err(err) => disk_error(&element, &shared, &config, err),
            }
        }
        if now >= next_stats {
            next_stats = now + STATS_INTERVAL;
            post_stats(&element, &shared, &mut last_counts, &writer);
        }
    }
    match element.upgrade() {
        Some(element) => gst::debug!(config.cat, obj = element, "writing thread done"),
        None => gst::debug!(config.cat, "writing thread done, its element gone"),
    }
    // Dropping the writer closes the segment and makes it durable.
}

/// Writes one batch. Returns whether anything was written.
fn process(
    writer: &mut Writer,
    batch: &[Msg],
    shared: &Shared,
) -> Result<bool, fanout_store::Error> {
    // Map every memory of every buffer: the bytes go to writev() as they are.
    let maps: Vec<Vec<gst::memory::MemoryMap<gst::memory::Readable>>> = batch
        .iter()
        .map(|m| match m {
            Msg::Buffer(buf, _) => buf
                .iter_memories()
                .filter_map(|mem| mem.map_readable().ok())
                .collect(),
            _ => Vec::new(),
        })
        .collect();
    let parts: Vec<Vec<&[u8]>> = maps
        .iter()
        .map(|ms| ms.iter().map(|m| m.as_slice()).collect())
        .collect();
    let mut items = Vec::with_capacity(batch.len());
    let mut bytes = 0u64;
    let mut buffers = 0u64;
    for (msg, parts) in batch.iter().zip(&parts) {
        match msg {
            Msg::Buffer(buf, meta) => {
                bytes += buf.size() as u64;
                buffers += 1;
                items.push(Item::Buffer(*meta, parts));
            }
            Msg::Caps(c) => items.push(Item::Caps(c)),
            Msg::Tags(t) => items.push(Item::Tags(t)),
            Msg::Retention {
                max_size_time,
                max_size_bytes,
            } => {
                writer.write(&items)?;
                items.clear();
                writer.set_retention(*max_size_time, *max_size_bytes);
            }
            Msg::Eos(_) => {
                writer.write(&items)?;
                items.clear();
                writer.end_stream()?;
                writer.sync()?;
            }
        }
    }
    writer.write(&items)?;
    shared.bytes_written.fetch_add(bytes, Ordering::Relaxed);
    shared.buffers_written.fetch_add(buffers, Ordering::Relaxed);
    shared.update_store(writer);
    Ok(buffers > 0)
}

/// Takes the batch's buffers off the backlog, written or not.
fn release(batch: &[Msg], shared: &Shared, recorded: bool) {
    let mut bytes = 0;
    let mut buffers = 0;
    for m in batch {
        if let Msg::Buffer(buf, _) = m {
            bytes += buf.size() as u64;
            buffers += 1;
        }
    }
    shared.backlog_bytes.fetch_sub(bytes, Ordering::Relaxed);
    shared.backlog_buffers.fetch_sub(buffers, Ordering::Relaxed);
    if !recorded {
        shared
            .bytes_not_recorded
            .fetch_add(bytes, Ordering::Relaxed);
    }
}

fn disk_error(
    element: &glib::WeakRef<gst::Element>,
    shared: &Shared,
    config: &Config,
    err: fanout_store::Error,
) {
    let Some(element) = element.upgrade() else {
        return;
    };
    report_disk_error(
        &element,
        shared,
        config.on_disk_error,
        &err.to_string(),
        err.is_disk_full(),
    );
}

/// Stops the recording and tells the application, as `on-disk-error` says.
/// Shared with the streaming thread, which calls it when the backlog overflows.
pub fn report_disk_error(
    element: &gst::Element,
    shared: &Shared,
    policy: OnDiskError,
    what: &str,
    disk_full: bool,
) {
    // Once: the writing thread and the streaming thread may both meet the fault.
    if !shared.recording.swap(false, Ordering::Relaxed) {
        return;
    }
    let location = element
        .property::<Option<String>>("location")
        .unwrap_or_default();
    let (domain, problem) = if disk_full {
        (
            gst::ResourceError::NoSpaceLeft,
            format!("no space left on the disk holding {location}"),
        )
    } else {
        (
            gst::ResourceError::Write,
            format!("could not write the recording to {location}"),
        )
    };
    match policy {
        OnDiskError::StopRecording => gst::element_warning!(
            element,
            domain,
            ("Recording stopped: {}", problem),
            [
                "{}. on-disk-error=stop-recording: the recording is kept as written so far \
                 and the stream keeps flowing downstream",
                what
            ]
        ),
        OnDiskError::Error => {
            shared.failed.store(true, Ordering::Relaxed);
            gst::element_error!(
                element,
                domain,
                ("Recording failed: {}", problem),
                ["{}. on-disk-error=error: the pipeline fails", what]
            );
        }
    }
}

fn post_stats(
    element: &glib::WeakRef<gst::Element>,
    shared: &Shared,
    last: &mut LastCounts,
    writer: &Writer,
) {
    let now = Instant::now();
    let secs = now.duration_since(last.at).as_secs_f64().max(1e-3);
    let bytes_in = shared.bytes_in.load(Ordering::Relaxed);
    let bytes_written = shared.bytes_written.load(Ordering::Relaxed);
    let rate = |bytes: u64, before: u64| (bytes.saturating_sub(before) as f64 * 8.0 / secs) as u64;
    *shared.rates.lock().unwrap() = Rates {
        input: rate(bytes_in, last.bytes_in),
        write: rate(bytes_written, last.bytes_written),
    };
    *last = LastCounts {
        bytes_in,
        bytes_written,
        at: now,
    };
    shared.update_store(writer);
    if let Some(element) = element.upgrade() {
        // The element's own statistics: a recorder's are these, others add their own.
        let stats = element.property::<gst::Structure>("stats");
        let msg = gst::message::Element::builder(stats).src(&element).build();
        let _ = element.post_message(msg);
    }
}
